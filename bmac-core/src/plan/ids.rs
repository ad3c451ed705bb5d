//! The planner's id → graph-node map and the hasher it uses.
//!
//! Planning hashes every step id a few times (its own node, each dependency, each state
//! entry), so the hash function is a large share of planning time. Ids are short ASCII paths
//! chosen by the spec's author, not by an attacker over the network, and the map lives only
//! for one `plan()` call, so the DoS resistance of std's SipHash buys nothing here; a
//! multiply-rotate hash over 8-byte words (the Fx hash rustc uses for its own tables) is
//! several times faster on such keys.
//!
//! The map is keyed by the id's text (`&str`), not by `&StepId`: a probe then reads the key's
//! bytes straight from the bucket's pointer, one memory access fewer per lookup than going
//! through the `StepId` first, which counts at 100k steps, where the ids no longer fit in cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Step id (its text) → plan-graph node.
pub(crate) type NodeIndexMap<'a> = HashMap<&'a str, u32, BuildHasherDefault<IdHasher>>;

/// An empty map with room for `capacity` ids.
pub(crate) fn node_index_map<'a>(capacity: usize) -> NodeIndexMap<'a> {
    HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}

/// The Fx multiply-rotate hash (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepId;
    use std::hash::BuildHasher;

    fn hash(id: &str) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(StepId::new(id).unwrap())
    }

    #[test]
    fn distinct_ids_hash_apart_and_the_map_finds_them() {
        // Same prefix, lengths across the 8-byte word boundary, a trailing difference.
        let ids = [
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgj",
            "s1",
            "s10",
            "s01",
        ];
        let hashes: std::collections::HashSet<u64> = ids.iter().map(|i| hash(i)).collect();
        assert_eq!(hashes.len(), ids.len());
        let mut map = node_index_map(0);
        for (i, id) in ids.iter().enumerate() {
            map.insert(*id, i as u32);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id), Some(&(i as u32)));
        }
        assert_eq!(map.get("abcdefgk"), None);
    }
}

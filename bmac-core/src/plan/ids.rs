//! The planner's id → graph-node index ([`IdIndex`]) and the hash it uses.
//!
//! Planning looks every step id up a few times (its own node, each dependency, each state
//! entry), and at 100k steps those lookups are most of the planner's memory traffic. So the
//! index is built for that:
//! - *small buckets*: the table (hashbrown's `HashTable`) stores only the `u32` node index;
//!   the id text of node `i` lives at `ids[i]`. A 100k-step table is ~640 KB and stays in L2,
//!   where a map of `&str → u32` buckets would not. The planner sizes the table for the spec
//!   up front, so it grows (re-hashing ids) only when deletions add nodes;
//! - *no string compare when ids are shared*: a dependency usually names its step with a
//!   clone of the same [`StepId`](crate::step::StepId) (one `Arc<str>`); equal pointers and
//!   lengths are equal ids, decided without reading the text;
//! - *a fast hash*: ids are short ASCII paths chosen by the spec's author, not by an attacker
//!   over the network, and the index lives for one `plan()` call, so the DoS resistance of
//!   std's SipHash buys nothing; a multiply-rotate over 8-byte words (the Fx hash rustc uses
//!   for its own tables), finished with a folded multiply so that the low bits the table
//!   indexes by depend on every byte, is several times faster on such keys.

use hashbrown::hash_table::{Entry, HashTable};

/// Step id (its text) → plan-graph node, numbering nodes in insertion order.
#[derive(Debug, Default)]
pub(crate) struct IdIndex<'a> {
    table: HashTable<u32>,
    ids: Vec<&'a str>,
}

impl<'a> IdIndex<'a> {
    /// An empty index with room for `capacity` ids.
    pub fn with_capacity(capacity: usize) -> Self {
        IdIndex {
            table: HashTable::with_capacity(capacity),
            ids: Vec::with_capacity(capacity),
        }
    }

    /// Gives `id` the next node index and returns it, or returns the index it already has
    /// as an error.
    pub fn insert(&mut self, id: &'a str) -> Result<u32, u32> {
        let hash = hash_id(id);
        let IdIndex { table, ids } = self;
        let next = ids.len() as u32;
        match table.entry(
            hash,
            |&i| same_id(ids[i as usize], id),
            |&i| hash_id(ids[i as usize]),
        ) {
            Entry::Occupied(existing) => Err(*existing.get()),
            Entry::Vacant(slot) => {
                slot.insert(next);
                ids.push(id);
                Ok(next)
            }
        }
    }

    /// The node of `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.table
            .find(hash_id(id), |&i| same_id(self.ids[i as usize], id))
            .copied()
    }

    /// Number of ids.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Equal ids: the same text, found without reading it when both are the same allocation.
#[inline]
fn same_id(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[inline]
fn add(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// The hash of an id's text (see the module docs).
#[inline]
pub(crate) fn hash_id(id: &str) -> u64 {
    let bytes = id.as_bytes();
    // The length first: "a" and "a\0" (not valid ids, but) never share a word stream.
    let mut hash = add(0, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = add(hash, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Byte by byte into a register: copying the tail into a stack buffer first makes
        // the word's load wait on a store it cannot forward from (ids are mostly tails).
        let word = rest
            .iter()
            .rev()
            .fold(0u64, |w, &b| (w << 8) | u64::from(b));
        hash = add(hash, word);
    }
    // The multiply-rotate rounds mix well only into the *high* bits (a product's low bits
    // depend only on its inputs' low bits), and the table picks buckets by the low bits: fold
    // the high half of one more multiply into the low half, or ids that differ only after
    // their first bytes (`s1` … `s99999`) would pile into a few buckets.
    let wide = u128::from(hash) * u128::from(SEED);
    (wide as u64) ^ ((wide >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_hash_apart_and_the_index_finds_them() {
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
        let hashes: std::collections::HashSet<u64> = ids.iter().map(|i| hash_id(i)).collect();
        assert_eq!(hashes.len(), ids.len());
        let mut index = IdIndex::with_capacity(0);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.insert(id), Ok(i as u32));
        }
        assert_eq!(index.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some(i as u32));
            // Another allocation with the same text is the same id.
            let copy = String::from(*id);
            assert_eq!(index.get(&copy), Some(i as u32));
        }
        let again = "s10".to_string();
        assert_eq!(index.insert(&again), Err(6));
        assert_eq!(index.get("abcdefgk"), None);
        assert_eq!(index.get("s2"), None);
    }

    #[test]
    fn grows_past_its_capacity() {
        let ids: Vec<String> = (0..1000).map(|i| format!("step.{i}")).collect();
        let mut index = IdIndex::with_capacity(4);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.insert(id), Ok(i as u32));
        }
        assert!(ids
            .iter()
            .enumerate()
            .all(|(i, id)| index.get(id) == Some(i as u32)));
    }

    #[test]
    fn numbered_ids_spread_over_buckets_and_tags() {
        // What a table of 2^17 buckets sees: the low 17 bits pick the bucket, the top 7 the
        // tag. 100k random hashes would fill ~70k buckets and all 128 tags.
        const N: usize = 100_000;
        let mut buckets = std::collections::HashSet::new();
        let mut tags = std::collections::HashSet::new();
        for i in 0..N {
            let h = hash_id(&format!("pool.s{i}"));
            buckets.insert(h & ((1 << 17) - 1));
            tags.insert(h >> 57);
        }
        assert!(buckets.len() > 60_000, "{} buckets used", buckets.len());
        assert_eq!(tags.len(), 128);
    }
}

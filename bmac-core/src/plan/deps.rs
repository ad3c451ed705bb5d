//! [`Deps`]: the indices of the nodes a plan node waits for, stored inline when few.
//!
//! Almost every step of a real plan (and every step of a chain, a fan-out or a diamond) has
//! at most a handful of dependencies, and a plan is built once and then only read. So `Deps`
//! keeps up to [`INLINE`] indices inside the node itself and spills to one boxed slice
//! beyond that: planning 100k steps makes no allocation per node for its dependencies, and the
//! node stays as small as with a `Vec` (24 bytes).
//!
//! It reads as a `[u32]` (deref), iterates, compares with slices, arrays and vectors, and
//! serialises as a plain JSON array, exactly as the `Vec<u32>` it replaced did. The planner
//! stores dependencies sorted without repeats; `Deps` itself keeps whatever order it is given
//! (saved plans are checked on load, see `file`).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many indices fit without an allocation.
pub const INLINE: usize = 5;

/// Indices of the plan nodes a node waits for. See the module docs.
#[derive(Clone)]
pub struct Deps(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, items: [u32; INLINE] },
    Heap(Box<[u32]>),
}

// The point of the type: no larger than the `Vec<u32>` it replaces.
const _: () = assert!(std::mem::size_of::<Deps>() <= std::mem::size_of::<Vec<u32>>());

impl Deps {
    /// No dependencies.
    pub const fn new() -> Self {
        Deps(Repr::Inline {
            len: 0,
            items: [0; INLINE],
        })
    }

    /// The indices as a slice.
    pub fn as_slice(&self) -> &[u32] {
        match &self.0 {
            Repr::Inline { len, items } => &items[..usize::from(*len)],
            Repr::Heap(items) => items,
        }
    }

    /// Appends an index. Cheap while the dependencies fit inline; beyond that each push
    /// copies them (plans are built whole, not grown one dependency at a time).
    pub fn push(&mut self, index: u32) {
        match &mut self.0 {
            Repr::Inline { len, items } if usize::from(*len) < INLINE => {
                items[usize::from(*len)] = index;
                *len += 1;
            }
            _ => {
                let mut all = Vec::with_capacity(self.len() + 1);
                all.extend_from_slice(self.as_slice());
                all.push(index);
                self.0 = Repr::Heap(all.into_boxed_slice());
            }
        }
    }
}

impl Default for Deps {
    fn default() -> Self {
        Deps::new()
    }
}

impl Deref for Deps {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        self.as_slice()
    }
}

impl From<&[u32]> for Deps {
    fn from(items: &[u32]) -> Self {
        if items.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..items.len()].copy_from_slice(items);
            Deps(Repr::Inline {
                // INLINE is far below u8::MAX.
                len: items.len() as u8,
                items: inline,
            })
        } else {
            Deps(Repr::Heap(items.into()))
        }
    }
}

impl From<Vec<u32>> for Deps {
    fn from(items: Vec<u32>) -> Self {
        if items.len() <= INLINE {
            Deps::from(items.as_slice())
        } else {
            Deps(Repr::Heap(items.into_boxed_slice()))
        }
    }
}

impl FromIterator<u32> for Deps {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut deps = Deps::new();
        let mut iter = iter.into_iter();
        for index in iter.by_ref() {
            if deps.len() == INLINE {
                let mut all = deps.to_vec();
                all.push(index);
                all.extend(iter);
                return Deps::from(all);
            }
            deps.push(index);
        }
        deps
    }
}

impl<'a> IntoIterator for &'a Deps {
    type Item = &'a u32;
    type IntoIter = std::slice::Iter<'a, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for Deps {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Deps {}

impl PartialEq<[u32]> for Deps {
    fn eq(&self, other: &[u32]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u32]> for Deps {
    fn eq(&self, other: &&[u32]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u32; N]> for Deps {
    fn eq(&self, other: &[u32; N]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u32>> for Deps {
    fn eq(&self, other: &Vec<u32>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for Deps {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Deps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u32>::deserialize(d).map(Deps::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_same_inline_and_spilled() {
        for n in [0usize, 1, INLINE, INLINE + 1, 40] {
            let items: Vec<u32> = (0..n as u32).map(|i| i * 3).collect();
            let collected: Deps = items.iter().copied().collect();
            let pushed = items.iter().fold(Deps::new(), |mut d, &i| {
                d.push(i);
                d
            });
            for deps in [collected, pushed, Deps::from(items.clone())] {
                assert_eq!(deps, items);
                assert_eq!(deps.len(), n);
                assert_eq!((&deps).into_iter().count(), n);
                let json = serde_json::to_string(&deps).unwrap();
                assert_eq!(json, serde_json::to_string(&items).unwrap());
                assert_eq!(serde_json::from_str::<Deps>(&json).unwrap(), deps);
            }
        }
    }

    #[test]
    fn a_non_array_is_rejected() {
        assert!(serde_json::from_str::<Deps>("{\"a\": 1}").is_err());
        assert!(serde_json::from_str::<Deps>("[-1]").is_err());
    }
}

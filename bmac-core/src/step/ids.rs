//! [`StepIds`]: a step's explicit dependencies, a list of ids kept inside the step when it
//! holds one.
//!
//! Most steps depend on one other step (a node pool on its cluster, an add-on on its
//! namespace) or on none, and the planner reads every step's dependencies once. In a `Vec`
//! each list is an allocation of its own, somewhere else on the heap: at 100k steps, one more
//! cache miss per step. So a single id lives in the step itself, and only a longer list
//! spills to a `Vec`; the type is no larger than the `Vec<StepId>` it replaced.
//!
//! It reads as a `[StepId]` (deref), iterates, collects, compares with slices, arrays and
//! vectors, and serialises as a plain JSON array, exactly as that `Vec` did. It keeps the
//! order it is given and does not remove repeats ([`Step::depends_on`](super::Step::depends_on)
//! adds an id only once).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::StepId;

/// A short list of step ids, stored inline when it holds one. See the module docs.
#[derive(Clone, Default)]
pub struct StepIds(Repr);

#[derive(Clone)]
enum Repr {
    One(StepId),
    Many(Vec<StepId>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Many(Vec::new())
    }
}

// The point of the type: no larger than the `Vec<StepId>` it replaces.
const _: () = assert!(std::mem::size_of::<StepIds>() <= std::mem::size_of::<Vec<StepId>>());

impl StepIds {
    /// No ids.
    pub const fn new() -> Self {
        StepIds(Repr::Many(Vec::new()))
    }

    /// The ids as a slice.
    pub fn as_slice(&self) -> &[StepId] {
        match &self.0 {
            Repr::One(id) => std::slice::from_ref(id),
            Repr::Many(ids) => ids,
        }
    }

    /// Whether there are none (also what serde asks before leaving the field out).
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Appends an id.
    pub fn push(&mut self, id: StepId) {
        match &mut self.0 {
            Repr::Many(ids) if ids.is_empty() => self.0 = Repr::One(id),
            Repr::Many(ids) => ids.push(id),
            Repr::One(_) => {
                let Repr::One(first) = std::mem::take(&mut self.0) else {
                    unreachable!("matched as one id")
                };
                self.0 = Repr::Many(vec![first, id]);
            }
        }
    }

    /// The ids as a vector.
    pub fn into_vec(self) -> Vec<StepId> {
        match self.0 {
            Repr::One(id) => vec![id],
            Repr::Many(ids) => ids,
        }
    }
}

impl Deref for StepIds {
    type Target = [StepId];
    fn deref(&self) -> &[StepId] {
        self.as_slice()
    }
}

impl From<Vec<StepId>> for StepIds {
    fn from(mut ids: Vec<StepId>) -> Self {
        if ids.len() == 1 {
            if let Some(id) = ids.pop() {
                return StepIds(Repr::One(id));
            }
        }
        StepIds(Repr::Many(ids))
    }
}

impl From<StepIds> for Vec<StepId> {
    fn from(ids: StepIds) -> Self {
        ids.into_vec()
    }
}

impl FromIterator<StepId> for StepIds {
    fn from_iter<I: IntoIterator<Item = StepId>>(iter: I) -> Self {
        let mut ids = StepIds::new();
        ids.extend(iter);
        ids
    }
}

impl Extend<StepId> for StepIds {
    fn extend<I: IntoIterator<Item = StepId>>(&mut self, iter: I) {
        for id in iter {
            self.push(id);
        }
    }
}

impl<'a> IntoIterator for &'a StepIds {
    type Item = &'a StepId;
    type IntoIter = std::slice::Iter<'a, StepId>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl IntoIterator for StepIds {
    type Item = StepId;
    type IntoIter = std::vec::IntoIter<StepId>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl PartialEq for StepIds {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for StepIds {}

impl PartialEq<[StepId]> for StepIds {
    fn eq(&self, other: &[StepId]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<[StepId; N]> for StepIds {
    fn eq(&self, other: &[StepId; N]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<StepId>> for StepIds {
    fn eq(&self, other: &Vec<StepId>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for StepIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for StepIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for StepIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<StepId>::deserialize(d).map(StepIds::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<StepId> {
        (0..n)
            .map(|i| StepId::new(format!("s{i}")).unwrap())
            .collect()
    }

    #[test]
    fn reads_the_same_inline_and_spilled() {
        for n in [0usize, 1, 2, 9] {
            let items = ids(n);
            let collected: StepIds = items.iter().cloned().collect();
            let pushed = items.iter().cloned().fold(StepIds::new(), |mut d, id| {
                d.push(id);
                d
            });
            for list in [collected, pushed, StepIds::from(items.clone())] {
                assert_eq!(list, items);
                assert_eq!(list.len(), n);
                assert_eq!(list.is_empty(), n == 0);
                assert_eq!((&list).into_iter().count(), n);
                assert_eq!(format!("{list:?}"), format!("{items:?}"));
                let json = serde_json::to_string(&list).unwrap();
                assert_eq!(json, serde_json::to_string(&items).unwrap());
                assert_eq!(serde_json::from_str::<StepIds>(&json).unwrap(), list);
                assert_eq!(list.clone().into_vec(), items);
                assert_eq!(list.into_iter().collect::<Vec<_>>(), items);
            }
        }
    }

    #[test]
    fn one_id_is_kept_inline() {
        let list = StepIds::from(ids(1));
        assert!(matches!(list.0, Repr::One(_)));
        let mut grown = list.clone();
        grown.push(StepId::new("t").unwrap());
        assert!(matches!(&grown.0, Repr::Many(v) if v.len() == 2));
        assert_eq!(grown[0], list[0]);
    }

    #[test]
    fn what_is_not_an_array_of_ids_is_rejected() {
        assert!(serde_json::from_str::<StepIds>("{\"a\": 1}").is_err());
        assert!(serde_json::from_str::<StepIds>("[\"no..id\"]").is_err());
    }
}

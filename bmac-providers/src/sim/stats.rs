//! Counters of what a [`super::SimProvider`] did, per step kind and in total — how tests and
//! benches assert behaviour a user would notice ("the second run created nothing", "two
//! throttles were injected and retried") without parsing logs.
//!
//! Invariant: `total` is always the field-wise sum of `by_kind`.

use std::collections::BTreeMap;

/// What happened to resources of one kind (or all kinds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Resources created (including replacements of a resource of another kind).
    pub creates: u64,
    /// Resources changed in place.
    pub updates: u64,
    /// Applies that found the resource already in the desired shape and changed nothing.
    pub unchanged: u64,
    /// Resources removed (destroying something already gone does not count).
    pub destroys: u64,
    /// Observe calls.
    pub observes: u64,
    /// Faults injected by fault rules.
    pub faults_injected: u64,
    /// Cluster tokens minted for in-cluster calls of this kind.
    pub tokens_minted: u64,
    /// In-cluster calls of this kind refused with `401 Unauthorized` (each followed by one
    /// re-mint and retry).
    pub unauthorized: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.creates += other.creates;
        self.updates += other.updates;
        self.unchanged += other.unchanged;
        self.destroys += other.destroys;
        self.observes += other.observes;
        self.faults_injected += other.faults_injected;
        self.tokens_minted += other.tokens_minted;
        self.unauthorized += other.unauthorized;
    }
}

/// Counters per step kind and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// The sum over every kind.
    pub total: Counters,
    /// Per step kind.
    pub by_kind: BTreeMap<String, Counters>,
}

impl SimStats {
    /// The counters of one kind (all zero if nothing of that kind happened).
    pub fn kind(&self, kind: &str) -> Counters {
        self.by_kind.get(kind).copied().unwrap_or_default()
    }

    /// Records one event for `kind`, keeping `total` in step.
    pub(crate) fn record(&mut self, kind: &str, event: impl Fn(&mut Counters)) {
        let mut delta = Counters::default();
        event(&mut delta);
        self.total.add(&delta);
        match self.by_kind.get_mut(kind) {
            Some(c) => c.add(&delta),
            None => {
                self.by_kind.insert(kind.to_owned(), delta);
            }
        }
    }
}

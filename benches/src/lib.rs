//! bmac-benches: ratio benchmarks for the performance issue ("bmac has to stay fast where
//! Terraform slows down").
//!
//! Every figure is a *ratio* against a reference measured in the same run on the same input,
//! because the machines this runs on are shared and noisy; absolute times are printed beside
//! them for orientation only. Five tables, one module each:
//!
//! 1. [`planning`] — `Planner::plan` ÷ `petgraph::algo::toposort` on the same graph;
//! 2. [`scheduling`] — executor overhead per step against a minimal hand-written scheduler and
//!    the `dagrs` crate, with steps that return at once;
//! 3. [`critical_path`] — wall time ÷ lower bound on tokio's paused clock, for bmac's
//!    longest-path-first order, FIFO and level-by-level;
//! 4. [`journal`] — appending to the `LocalStore` journal against rewriting the whole state per
//!    step; resuming a 100k-record journal; recovering a torn last record;
//! 5. [`memory`] — peak RSS per step of a 100k-step plan + apply, measured in a child process.
//!
//! Each table carries its targets' [`Verdict`](table::Verdict)s. Timing is never asserted in
//! tests; the quick mode ([`suite::Options::quick`]) exists so the test suite can check that
//! every table is produced and its structural invariants hold.
//!
//! Times are the minimum over a few repetitions: noise on a shared machine only ever adds
//! time, so the minimum is the most stable estimate of the cost itself.

pub mod critical_path;
pub mod graphs;
pub mod journal;
pub mod memory;
pub mod planning;
pub mod scheduling;
pub mod suite;
pub mod table;

use std::time::{Duration, Instant};

/// The seed every benchmark graph and latency derives from.
pub const SEED: u64 = 0x00b1_ac00;

/// Runs `f` `reps` times (at least once) and returns the shortest time it reported.
pub fn min_of(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..reps.max(1)).map(|_| f()).min().unwrap_or_default()
}

/// Times `f` once, returning its result and the elapsed time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// An error of the benchmark harness itself (a run that did not complete, a probe that could
/// not be started): the message says which measurement and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl BenchError {
    /// An error with `context` prefixed to `cause`.
    pub fn new(context: &str, cause: impl std::fmt::Display) -> Self {
        BenchError(format!("{context}: {cause}"))
    }
}

//! Tests of the executor, as unit tests so they can seal plans without the planner.
//!
//! Time-dependent tests run on tokio's paused clock: sleeps advance virtual time instantly
//! and deterministically, so exact wall times can be asserted.

mod support;

mod cancel;
mod errors;
mod failure;
mod inline;
mod long_ops;
mod perf;
mod props;
mod refresh;
mod resume;
mod retry;
mod scheduling;
mod secrets;
mod wakeups;

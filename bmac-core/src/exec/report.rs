//! What a finished run tells its caller: [`RunReport`].
//!
//! The report is the summary the coordinator builds as it goes (counts, failures and skips in
//! the order they happened); it carries no outputs, so it holds no secrets.

use std::time::Duration;

use serde::Serialize;

use crate::event::{Counts, Outcome, SkipReason};
use crate::step::StepId;

/// The result of [`Executor::run`](super::Executor::run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// Step counts.
    pub counts: Counts,
    /// Wall time of the run.
    pub duration: Duration,
    /// Steps that failed, in the order they failed.
    pub failures: Vec<StepFailure>,
    /// Steps that did not run, in the order they were given up.
    pub skipped: Vec<StepSkip>,
}

impl RunReport {
    /// Whether every step succeeded.
    pub fn is_success(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }

    /// The failure of one step, if it failed.
    pub fn failure(&self, id: &str) -> Option<&StepFailure> {
        self.failures.iter().find(|f| f.id.as_str() == id)
    }

    /// Why a step was skipped, if it was.
    pub fn skip_reason(&self, id: &str) -> Option<&SkipReason> {
        self.skipped
            .iter()
            .find(|s| s.id.as_str() == id)
            .map(|s| &s.reason)
    }
}

/// One failed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepFailure {
    /// The step.
    pub id: StepId,
    /// The error, with its causes.
    pub error: String,
}

/// One step that never ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSkip {
    /// The step.
    pub id: StepId,
    /// Why.
    pub reason: SkipReason,
}

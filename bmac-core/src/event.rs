//! The public events of a run, what reporters (progress bars, JSON lines, an embedder's
//! callback) consume.
//!
//! These are deliberately not the executor's internal messages: the coordinator translates
//! what it learns into `Event`s and sends them down an unbounded channel, so a slow reporter
//! never holds up scheduling. Events carry no secrets: outputs are redacted before they get
//! here, and credentials are minted inside providers and never reach them. Every event
//! serialises to one JSON object (`--output json` prints one per line). The enums that will
//! grow are `#[non_exhaustive]`: match them with a wildcard arm.

use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::exec::StepError;
use crate::plan::{Action, Summary};
use crate::step::{Outputs, StepId};

/// Why a step did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// A step it depends on failed (or was itself skipped).
    DependencyFailed {
        /// The failed dependency.
        dependency: StepId,
    },
    /// Fail-fast: another step failed, so no new steps start.
    FailFast,
    /// The run was cancelled before the step started.
    Cancelled,
}

/// Why a run stopped early. Ordered: a later reason outranks an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// A step failed under fail-fast.
    StepFailed,
    /// The user asked (Ctrl-C, or the embedder's token).
    Requested,
    /// The grace period ran out and running steps were abandoned.
    GraceExpired,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step succeeded.
    Succeeded,
    /// At least one step failed.
    Failed,
    /// Stopped by cancellation.
    Cancelled,
}

/// Step counts at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Steps whose provider call succeeded.
    pub succeeded: usize,
    /// Steps with nothing to do (planned no-op, or unchanged once inputs were known).
    pub unchanged: usize,
    /// Steps in doubt that were found existing as desired and adopted without a call.
    pub adopted: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps that never started.
    pub skipped: usize,
}

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The plan is ready.
    PlanReady {
        /// Its counts.
        summary: Summary,
    },
    /// Execution begins.
    RunStarted {
        /// Nodes in the plan.
        steps: usize,
        /// Parallelism cap.
        parallelism: usize,
    },
    /// A provider call begins.
    StepStarted {
        /// The step.
        id: StepId,
        /// Its kind.
        kind: String,
        /// What it does.
        action: Action,
    },
    /// A retryable error; the step will be tried again after `delay`.
    StepRetrying {
        /// The step.
        id: StepId,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Wait before the next attempt.
        #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
        delay: Duration,
        /// The error.
        error: String,
    },
    /// A long call reported how it is going (`cluster CREATING, 6m12s`), or the executor is
    /// waiting for a resource observed pending.
    StepProgress {
        /// The step.
        id: StepId,
        /// What the provider said.
        message: String,
        /// When it said it (RFC 3339, UTC).
        at: String,
    },
    /// A step finished successfully.
    StepSucceeded {
        /// The step.
        id: StepId,
        /// What it did.
        action: Action,
        /// False when it turned out to have nothing to do (fingerprint unchanged) or was
        /// adopted from an in-doubt state without a call.
        changed: bool,
        /// Wall time of the step including retries.
        #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
        duration: Duration,
        /// Its outputs, secrets redacted.
        outputs: Outputs,
    },
    /// A step failed for good.
    StepFailed {
        /// The step.
        id: StepId,
        /// The error, with its class, code and causes.
        error: StepError,
        /// Wall time including retries.
        #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
        duration: Duration,
    },
    /// A step did not run.
    StepSkipped {
        /// The step.
        id: StepId,
        /// Why.
        #[serde(flatten)]
        reason: SkipReason,
    },
    /// The run is stopping early.
    Cancelling {
        /// Why.
        reason: CancelReason,
    },
    /// The run is over.
    RunFinished {
        /// How it ended.
        outcome: Outcome,
        /// Step counts.
        counts: Counts,
        /// Wall time.
        #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
        duration: Duration,
    },
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_millis(u64::deserialize(d)?))
}

/// Where events go: an unbounded channel, so the coordinator never waits on a reporter.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<Event>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_tagged_json_without_secrets() {
        let e = Event::StepSucceeded {
            id: StepId::new("cluster").unwrap(),
            action: Action::Create,
            changed: true,
            duration: Duration::from_millis(1500),
            outputs: Outputs::new()
                .with("endpoint", "https://x")
                .with_sensitive("token", "s3cr3t")
                .redacted(),
        };
        let j = serde_json::to_string(&e).unwrap();
        assert!(j.contains(r#""event":"step_succeeded""#), "{j}");
        assert!(j.contains(r#""duration":1500"#), "{j}");
        assert!(!j.contains("s3cr3t"), "{j}");
        let back: Event = serde_json::from_str(&j).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn cancel_reasons_are_ordered() {
        assert!(CancelReason::StepFailed < CancelReason::Requested);
        assert!(CancelReason::Requested < CancelReason::GraceExpired);
    }
}

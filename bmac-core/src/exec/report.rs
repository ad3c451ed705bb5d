//! What a finished run tells its caller: [`RunReport`].
//!
//! The report is the summary the coordinator builds as it goes (counts, failures and skips in
//! the order they happened); it carries no outputs, so it holds no secrets.
//!
//! A failure keeps its structure ([`StepError`]): the class (retryable or permanent), the
//! provider's error code, the message and the chain of causes — through the report, the
//! [`Event::StepFailed`](crate::event::Event::StepFailed) event and the JSON output. Shown to
//! people it reads as one line, the message followed by each cause it does not already say.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{Counts, Outcome, SkipReason};
use crate::provider::{ErrorClass, ProviderError};
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
    /// The error, with its class, code and causes.
    pub error: StepError,
}

/// Why a step failed, with its structure kept: what a [`ProviderError`] said, or what the
/// engine found (an input that cannot be resolved, a journal that cannot be written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepError {
    /// Whether retrying could have helped (it was retried as far as the policy allows).
    pub class: ErrorClass,
    /// The provider's error code (`AccessDeniedException`, `RESOURCE_EXHAUSTED`), or the
    /// engine's (`bmac::timeout`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What went wrong.
    pub message: String,
    /// The chain of underlying errors, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

impl StepError {
    /// A failure the engine found itself: permanent, no code, no causes.
    pub fn engine(message: impl Into<String>) -> Self {
        StepError {
            class: ErrorClass::Permanent,
            code: None,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// A provider's error, with its chain of causes.
    pub fn from_provider(error: &ProviderError) -> Self {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        StepError {
            class: error.class,
            code: error.code.clone(),
            message: error.message.clone(),
            causes,
        }
    }
}

impl fmt::Display for StepError {
    /// The message, then each cause whose text the message does not already carry
    /// (providers often write `format!("cannot …: {e}")` and attach `e` as the source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut shown = self.message.clone();
        for cause in &self.causes {
            if !shown.contains(cause.as_str()) {
                write!(f, ": {cause}")?;
                shown.push_str(": ");
                shown.push_str(cause);
            }
        }
        Ok(())
    }
}

impl From<&ProviderError> for StepError {
    fn from(error: &ProviderError) -> Self {
        StepError::from_provider(error)
    }
}

/// One step that never ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSkip {
    /// The step.
    pub id: StepId,
    /// Why.
    pub reason: SkipReason,
}

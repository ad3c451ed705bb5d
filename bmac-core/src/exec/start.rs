//! How a ready node starts: the coordinator's decision, made without any I/O.
//!
//! Most steps have an obvious first provider call, and the coordinator journals its intent
//! itself before spawning the task — intents of many ready steps then share one append, and a
//! task costs one round trip (spawn, report). The coordinator resolves the node's inputs (it
//! owns the finished outputs) and computes its fingerprint, which the intent records. Steps
//! that must look before they leap — in doubt, or calling with a secret that state keeps only
//! as a digest (re-read from its producer just before the call) — are handed to their task,
//! which observes and journals on its own.

use crate::plan::Action;
use crate::state::{Operation, RecordKind};
use crate::step::Outputs;

use super::report::StepError;
use super::shared::{prior_outputs, resolve_inputs, Planned, Shared, TaskMode};

/// What to do with a ready node.
#[derive(Debug)]
pub(crate) enum Start {
    /// A planned no-op: done, with its recorded outputs (no event).
    Complete(Outputs),
    /// An update whose fingerprint, once inputs are known, did not move: done, no call.
    Unchanged(Outputs),
    /// It cannot start (an input cannot be resolved).
    Fail(StepError),
    /// Journal this intent, then spawn the task.
    Journal(RecordKind, TaskMode),
    /// Spawn the task now; it journals for itself.
    Spawn(TaskMode),
}

/// Decides how node `i` starts.
pub(crate) fn decide(shared: &Shared, i: u32) -> Start {
    let node = &shared.plan.nodes()[i as usize];
    match &node.action {
        Action::NoOp => Start::Complete(prior_outputs(node)),
        _ if node.in_doubt => Start::Spawn(TaskMode::Converge),
        action => {
            let inputs = match resolve_inputs(shared, i) {
                Ok(inputs) => inputs,
                Err(message) => return Start::Fail(StepError::engine(message)),
            };
            // A call needs every input's value; one known only by its digest is re-read by the
            // task. (The fingerprint needs only digests, so an unchanged update needs no call.)
            let rereads = inputs.0.values().any(|v| v.value().is_none());
            if *action == Action::Delete {
                if rereads {
                    return Start::Spawn(TaskMode::Converge);
                }
                if node.prior.is_none() {
                    return Start::Fail(StepError::engine(format!(
                        "step `{}` is planned for deletion but state has no record of what was applied",
                        node.step.id
                    )));
                }
                let intent = destroy_intent();
                let call = Planned::Delete;
                return Start::Journal(intent, TaskMode::Journaled { inputs, call });
            }
            let fingerprint = node.step.fingerprint(&inputs);
            match action {
                Action::Replace { .. } if node.prior.is_some() => {
                    let call = Planned::Replace(fingerprint);
                    Start::Journal(destroy_intent(), TaskMode::Journaled { inputs, call })
                }
                Action::Update { .. } if node.prior_fingerprint() == Some(fingerprint) => {
                    Start::Unchanged(prior_outputs(node))
                }
                _ if rereads => Start::Spawn(TaskMode::Converge),
                _ => {
                    let intent = RecordKind::Intent {
                        op: Operation::Apply,
                        fingerprint: Some(fingerprint),
                    };
                    let call = Planned::Apply(fingerprint);
                    Start::Journal(intent, TaskMode::Journaled { inputs, call })
                }
            }
        }
    }
}

fn destroy_intent() -> RecordKind {
    RecordKind::Intent {
        op: Operation::Destroy,
        fingerprint: None,
    }
}

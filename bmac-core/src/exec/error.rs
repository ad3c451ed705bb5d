//! Why a run could not start or could not be trusted to finish: [`ExecError`].
//!
//! Step failures are *not* errors of `run` — they are part of a [`RunReport`](super::RunReport)
//! (the run itself worked, a step did not). `ExecError` is for what stops the engine: the lock
//! is held, the plan is stale, a step has no provider, or the journal cannot be written. The
//! last one ends the run on purpose: no provider call may happen without a durable intent.

use crate::state::{LockInfo, StateError};
use crate::step::StepId;

/// What stopped a run. User-facing: every variant has a code and a help line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ExecError {
    /// Another run holds the state lock.
    #[error("cannot apply: the state is locked by {holder}{}", if *stale { " (its process is gone: the lock looks stale)" } else { "" })]
    #[diagnostic(
        code(bmac::exec::locked),
        help(
            "wait for that run to finish; if it died, break the lock with `bmac state unlock {}`",
            holder.id
        )
    )]
    Locked {
        /// Who holds it.
        holder: Box<LockInfo>,
        /// The holder ran on this host and its process is gone.
        stale: bool,
    },

    /// The state moved since the plan was made.
    #[error(
        "the plan is stale: it was made against state `{plan_lineage}` at serial {plan_serial}, \
         but the state is now `{state_lineage}` at serial {state_serial}"
    )]
    #[diagnostic(
        code(bmac::exec::stale_plan),
        help("another apply changed the state since this plan was made; run `bmac plan` again")
    )]
    StalePlan {
        /// Lineage the plan was made against.
        plan_lineage: String,
        /// Serial the plan was made against.
        plan_serial: u64,
        /// Lineage of the state now.
        state_lineage: String,
        /// Serial of the state now.
        state_serial: u64,
    },

    /// A step's kind has no provider.
    #[error("no provider serves kind `{kind}` (needed by step `{step}`)")]
    #[diagnostic(
        code(bmac::exec::no_provider),
        help("register a provider for `{kind}` (or a fallback) in `Providers` before running")
    )]
    NoProvider {
        /// The step.
        step: StepId,
        /// Its kind.
        kind: String,
    },

    /// The plan's dependency indices break the sealed-plan invariant.
    #[error("the plan is malformed: node {node} (`{step}`) depends on node {dependency}, which does not come before it")]
    #[diagnostic(
        code(bmac::exec::invalid_plan),
        help("plans must come from the planner; re-create it with `bmac plan`")
    )]
    InvalidPlan {
        /// The node's index.
        node: usize,
        /// Its step.
        step: StepId,
        /// The offending dependency index.
        dependency: u32,
    },

    /// The journal could not be written; the run stopped.
    #[error("the run stopped because the state journal could not be written")]
    #[diagnostic(
        code(bmac::exec::journal),
        help(
            "no provider call was made without a recorded intent; fix the state storage and \
             apply again — finished steps are not repeated, interrupted ones are observed first"
        )
    )]
    Journal {
        /// The store's error.
        #[source]
        source: Box<StateError>,
    },

    /// Loading the state, or releasing the lock, failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(Box<StateError>),
}

impl From<StateError> for ExecError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Locked { holder, stale } => ExecError::Locked {
                holder: Box::new(holder),
                stale,
            },
            other => ExecError::State(Box::new(other)),
        }
    }
}

//! Plans: what a run will do, decided before it starts and sealed.
//!
//! The [`Planner`] turns the desired steps and the current [`State`](crate::state::State)
//! into a [`Plan`]: a DAG whose nodes are steps with an [`Action`] each, whose edges say
//! "finish this before starting that". A `Plan` can only be made by the planner (or read back
//! from a file the planner wrote, re-validated on the way in): it is the only thing the
//! executor accepts, so an unplanned graph can never run.
//!
//! Invariants of a sealed plan:
//! - nodes are stored in a topological order: every dependency of node `i` has an index `< i`;
//! - deletions (steps in state but gone from the spec) have their edges reversed — a step is
//!   destroyed only after everything that depended on it;
//! - it remembers the state it was made against (`lineage`, `serial`); applying it against a
//!   state that moved since is refused.

mod build;
mod dag;
mod deps;
mod diag;
mod diff;
mod file;
mod graph;
mod ids;
mod order;
mod seal;
mod select;

pub use build::Planner;
pub use deps::Deps;
pub use diag::{
    CycleError, DuplicateStepError, InvalidPlanFile, PlanError, Sources, StaleError,
    UnknownDepError, UnknownTargetError,
};
pub(crate) use diff::{changed_fields, moved_pointers};
pub use graph::{GraphFormat, MAX_INDENT_DEPTH};

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::provider::Prior;
use crate::step::{Fingerprint, Step, StepId};

/// What a plan does with one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Up to date; its recorded outputs feed its dependents.
    NoOp,
    /// Does not exist yet.
    Create,
    /// Exists; changes in place.
    Update {
        /// Config fields (JSON pointers) that differ from the last apply.
        fields: Vec<String>,
        /// Config is unchanged or not only, but a step it takes inputs from changes: the
        /// executor compares fingerprints once inputs are resolved and skips the call when
        /// nothing moved.
        inputs_may_change: bool,
    },
    /// Must be destroyed and created again.
    Replace {
        /// The changed fields that force replacement.
        fields: Vec<String>,
    },
    /// In state, gone from the spec (or a `destroy` run): destroyed.
    Delete,
}

impl Action {
    /// The Terraform-style marker: `+`, `~`, `-/+`, `-` or blank.
    pub fn symbol(&self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update { .. } => "~",
            Action::Replace { .. } => "-/+",
            Action::Delete => "-",
        }
    }

    /// Whether the step calls a provider at all.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::NoOp)
    }
}

/// One node of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    /// The step (for deletions: as last applied, from state), shared with the journal
    /// record that says it was applied.
    pub step: Arc<Step>,
    /// What to do.
    pub action: Action,
    /// What the last apply left, if anything (with its fingerprint, see
    /// [`prior_fingerprint`](Self::prior_fingerprint)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<Prior>,
    /// A crash or failure left the step in doubt: observe before acting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_doubt: bool,
    /// Indices of the nodes that must finish first (all smaller than this node's index),
    /// sorted, each once; stored inline when few (see [`Deps`]).
    pub deps: Deps,
}

impl PlanNode {
    /// The fingerprint of the last apply, if any: the executor skips an update whose
    /// resolved fingerprint equals it.
    pub fn prior_fingerprint(&self) -> Option<Fingerprint> {
        self.prior.as_ref().and_then(Prior::fingerprint)
    }
}

/// The state a plan was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    /// The state's lineage (empty for a state never written).
    pub lineage: String,
    /// The state's serial.
    pub serial: u64,
}

/// Counts of planned actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Steps to create (replacements count here and in `destroy`, as Terraform counts them).
    pub create: usize,
    /// Steps to update in place.
    pub update: usize,
    /// Steps to destroy.
    pub destroy: usize,
    /// Steps left alone.
    pub unchanged: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to destroy.",
            self.create, self.update, self.destroy
        )
    }
}

/// A sealed plan. See the module docs for its invariants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Format version of the serialised plan.
    version: u32,
    state: StateRef,
    nodes: Vec<PlanNode>,
}

impl Plan {
    /// The current format version.
    pub const FORMAT_VERSION: u32 = 2;

    /// The state it was made against.
    pub fn state_ref(&self) -> &StateRef {
        &self.state
    }

    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[PlanNode] {
        &self.nodes
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the plan has no nodes at all.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node for a step id (a linear scan; plans are walked, not queried, in hot paths).
    pub fn node(&self, id: &StepId) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| &n.step.id == id)
    }

    /// Whether any node changes anything.
    pub fn has_changes(&self) -> bool {
        self.nodes.iter().any(|n| n.action.is_change())
    }

    /// Counts of actions.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for n in &self.nodes {
            match n.action {
                Action::NoOp => s.unchanged += 1,
                Action::Create => s.create += 1,
                Action::Update { .. } => s.update += 1,
                Action::Replace { .. } => {
                    s.create += 1;
                    s.destroy += 1
                }
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    /// Serialises the plan as JSON (what `plan --out` writes).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serialises")
    }

    /// Seals nodes the planner built. Callers guarantee the topological-order invariant.
    pub(crate) fn seal(state: StateRef, nodes: Vec<PlanNode>) -> Self {
        debug_assert!(nodes
            .iter()
            .enumerate()
            .all(|(i, n)| n.deps.iter().all(|&d| (d as usize) < i)));
        Plan {
            version: Plan::FORMAT_VERSION,
            state,
            nodes,
        }
    }
}

//! Saved plans: reading a plan file back, and refusing to apply a plan to a state that moved.
//!
//! A plan file is untrusted input (it sat on disk, maybe in CI artifacts, maybe edited), so
//! [`Plan::from_json`] re-checks every invariant the planner guarantees before handing out a
//! `Plan`: the format version, unique step ids, dependency indices in range and smaller than
//! the node's own index (the stored order is topological), no index listed twice, and every
//! dependency of a step that is not deleted present in the plan and listed among its deps
//! (the planner always keeps a selected step's dependencies, so an edited file cannot make a
//! step run before, or without, the step whose outputs it reads). A file that
//! fails any check is an [`PlanError::InvalidFile`], never a panic and never an invalid plan.
//!
//! [`Plan::check_fresh`] compares the state's lineage and serial with those the plan was made
//! against, as Terraform does with saved plans.

use std::collections::HashMap;

use serde::Deserialize;

use super::diag::{InvalidPlanFile, StaleError};
use super::{Action, Plan, PlanError, PlanNode, StateRef};
use crate::state::State;
use crate::step::StepId;

/// Just the version, read first so that a newer format fails with a clear message rather
/// than with whatever field it renamed.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    version: u32,
    state: StateRef,
    nodes: Vec<PlanNode>,
}

impl Plan {
    /// Reads a plan written by [`Plan::to_json`], re-validating everything.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let parse_error = |e: serde_json::Error| {
            PlanError::InvalidFile(InvalidPlanFile {
                reason: e.to_string(),
                source: Some(e),
            })
        };
        let header: Header = serde_json::from_str(text).map_err(parse_error)?;
        if header.version != Plan::FORMAT_VERSION {
            return Err(PlanError::invalid(format!(
                "format version {} is not supported (this bmac reads version {})",
                header.version,
                Plan::FORMAT_VERSION
            )));
        }
        let file: PlanFile = serde_json::from_str(text).map_err(parse_error)?;
        validate(&file.nodes)?;
        Ok(Plan {
            version: file.version,
            state: file.state,
            nodes: file.nodes,
        })
    }

    /// Refuses, with [`PlanError::Stale`], when `state` is not the state this plan was made
    /// against (another lineage, or records appended since).
    pub fn check_fresh(&self, state: &State) -> Result<(), PlanError> {
        if self.state.lineage == state.lineage && self.state.serial == state.serial {
            return Ok(());
        }
        Err(PlanError::Stale(StaleError {
            planned: self.state.clone(),
            current: StateRef {
                lineage: state.lineage.clone(),
                serial: state.serial,
            },
        }))
    }
}

/// The invariants of a sealed plan (see the module docs).
fn validate(nodes: &[PlanNode]) -> Result<(), PlanError> {
    let mut index: HashMap<&StepId, usize> = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(&node.step.id, i).is_some() {
            return Err(PlanError::invalid(format!(
                "step `{}` appears more than once",
                node.step.id
            )));
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let id = &node.step.id;
        let mut previous: Option<u32> = None;
        for &d in &node.deps {
            if d as usize >= i {
                return Err(PlanError::invalid(format!(
                    "step `{id}` (node {i}) lists dependency {d}, which is not an earlier node"
                )));
            }
            // The planner writes deps sorted; sorted and strictly increasing means no repeats.
            if previous.is_some_and(|p| p >= d) {
                return Err(PlanError::invalid(format!(
                    "the dependencies of step `{id}` are repeated or out of order"
                )));
            }
            previous = Some(d);
        }
        if node.action == Action::Delete {
            // Deletion order comes from state, which the file does not carry.
            continue;
        }
        let named = node
            .step
            .deps
            .iter()
            .chain(node.step.inputs.values().map(|r| &r.step));
        for dep in named {
            let listed = index
                .get(dep)
                .is_some_and(|&j| node.deps.binary_search(&(j as u32)).is_ok());
            if !listed {
                return Err(PlanError::invalid(format!(
                    "step `{id}` depends on `{dep}`, which the plan does not run before it"
                )));
            }
        }
    }
    Ok(())
}

//! Sealing: moving each planned step into the plan, in the final order, with its action.
//!
//! The plan's nodes are built straight into one vector of exactly the right length, in the
//! stored order; nothing goes through `Option` slots or a second collect. The spec steps come
//! shared (`Arc<Step>`) and each node takes its handle, never a copy of the step: the input
//! vector is first permuted in place (following the permutation's cycles, one swap per
//! misplaced step) so that it lists the kept steps in plan order, and is then consumed front
//! to back. When the order is the spec order — the common case: specs are mostly written
//! dependencies first — there is nothing to permute. A deleted step's node shares the step
//! state recorded.
//!
//! Each spec step arrives diffed against its state entry (see `diff`); the order puts its
//! input sources first, so whether one of them changes is known when the step is reached, and
//! the rule for that is applied in the same visit that moves the step into its node. Each
//! node's dependency list is its incoming edges mapped to plan positions, sorted and without
//! repeats (a step may name the same dependency in `depends_on` and in a reference), stored
//! inline in the node (see `deps`). Priors are shared with state, not copied.

use std::sync::Arc;

use super::dag::{Adjacency, PlanGraph};
use super::diag::EdgeKind;
use super::diff::{with_changing_inputs, Diff};
use super::{Action, Deps, PlanNode};
use crate::provider::Prior;
use crate::state::AppliedStep;
use crate::step::Step;

/// A step only state knows (a deletion node): its last apply.
pub(crate) struct Removed<'s> {
    pub applied: &'s Arc<AppliedStep>,
    pub in_doubt: bool,
}

/// Everything sealing reads besides the steps it consumes.
pub(crate) struct Sealing<'a, 's> {
    pub graph: &'a PlanGraph,
    pub adj: &'a Adjacency,
    /// Node indices, every dependency before its dependent.
    pub order: &'a [u32],
    /// Nodes below this are spec steps (node `v` is `steps[v]`).
    pub spec_len: usize,
    /// Spec step `v` diffed against its state entry, as if no input source changed (`None`,
    /// or empty for all: nothing in state). Sealing takes each diff.
    pub recorded: &'a mut [Option<Diff>],
    /// Node `spec_len + k` is `removed[k]`.
    pub removed: &'a [Removed<'s>],
    /// Nodes kept only for a deletion to read (no-ops whatever their diff; empty: none).
    pub noop: &'a [bool],
}

/// Position of a node the selection dropped.
const DROPPED: u32 = u32::MAX;

/// The plan nodes, in `order`.
pub(crate) fn seal(s: Sealing<'_, '_>, steps: Vec<Arc<Step>>) -> Vec<PlanNode> {
    let n = s.graph.node_count();
    let order = s.order;
    let identity = order.len() == n && order.iter().enumerate().all(|(k, &v)| k == v as usize);
    // position[v]: where node v lands (DROPPED if it does not); not needed for the identity.
    let position: Vec<u32> = if identity {
        Vec::new()
    } else {
        let mut position = vec![DROPPED; n];
        for (k, &v) in order.iter().enumerate() {
            position[v as usize] = k as u32;
        }
        position
    };
    let mut steps = if s.spec_len == 0 {
        Vec::new()
    } else if identity {
        steps
    } else {
        in_plan_order(steps, s.spec_len, order)
    };
    let mut steps = steps.drain(..);
    // changes[v]: spec step v's diff changes something (what its dependents' diffs ask).
    let mut changes = vec![false; s.spec_len];
    let mut nodes: Vec<PlanNode> = Vec::with_capacity(order.len());
    let mut deps: Vec<u32> = Vec::new();
    for &v in order {
        let i = v as usize;
        deps.clear();
        let mut upstream_changes = false;
        for &e in s.adj.incoming(v) {
            let edge = s.graph.edge(e);
            upstream_changes |= edge.kind == EdgeKind::Input && changes[edge.from as usize];
            let at = if identity {
                edge.from
            } else {
                position[edge.from as usize]
            };
            if at != DROPPED {
                deps.push(at);
            }
        }
        if deps.len() > 1 {
            deps.sort_unstable();
            deps.dedup();
        }
        let (step, mut action, prior, in_doubt) = if i < s.spec_len {
            // The permutation holds every kept spec step, in order; this never skips.
            let Some(step) = steps.next() else { continue };
            let (mut action, prior, in_doubt) = match s.recorded.get_mut(i).and_then(Option::take) {
                Some(d) => (d.action, d.prior, d.in_doubt),
                None => (Action::Create, None, false),
            };
            if upstream_changes {
                action = with_changing_inputs(action);
            }
            changes[i] = action.is_change();
            (step, action, prior, in_doubt)
        } else {
            let Some(r) = s.removed.get(i - s.spec_len) else {
                continue;
            };
            (
                Arc::clone(&r.applied.step),
                Action::Delete,
                Some(Prior::recorded(Arc::clone(r.applied))),
                r.in_doubt,
            )
        };
        if s.noop.get(i).copied().unwrap_or(false) {
            action = Action::NoOp;
        }
        nodes.push(PlanNode {
            step,
            action,
            prior,
            in_doubt,
            deps: Deps::from(deps.as_slice()),
        });
    }
    nodes
}

/// `steps` permuted in place so that the spec steps kept in `order` come first, in that
/// order; the dropped ones are cut off.
fn in_plan_order<T>(mut steps: Vec<T>, spec_len: usize, order: &[u32]) -> Vec<T> {
    // dest[i]: where spec step i goes. Kept steps by rank in `order`, dropped ones after.
    let mut dest = vec![DROPPED; spec_len];
    let mut kept = 0u32;
    for &v in order {
        if (v as usize) < spec_len {
            dest[v as usize] = kept;
            kept += 1;
        }
    }
    for (next, d) in (kept..).zip(dest.iter_mut().filter(|d| **d == DROPPED)) {
        *d = next;
    }
    // Follow each cycle of the permutation: swap the step at i to where it belongs until
    // the step that belongs at i arrives. Every swap places one step for good.
    for i in 0..spec_len {
        while dest[i] as usize != i {
            let j = dest[i] as usize;
            steps.swap(i, j);
            dest.swap(i, j);
        }
    }
    steps.truncate(kept as usize);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{Kind, StepId};

    fn steps(n: usize) -> Vec<Step> {
        (0..n)
            .map(|i| {
                let id = StepId::new(format!("s{i}")).unwrap();
                Step::new(id, Kind::new("k"), &serde_json::json!({})).unwrap()
            })
            .collect()
    }

    fn ids(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn permutes_into_order_and_drops_the_rest() {
        // Spec steps 0..5, node 5 a deletion; order keeps 3, 0, 4 (and the deletion).
        let out = in_plan_order(steps(5), 5, &[3, 5, 0, 4]);
        assert_eq!(ids(&out), ["s3", "s0", "s4"]);
        let out = in_plan_order(steps(4), 4, &[1, 2, 3, 0]);
        assert_eq!(ids(&out), ["s1", "s2", "s3", "s0"]);
        let out = in_plan_order(steps(3), 3, &[]);
        assert!(out.is_empty());
    }
}

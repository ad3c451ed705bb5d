//! The [`Planner`]: desired steps + state → a sealed [`Plan`].
//!
//! The passes, each linear in steps + edges (ids map to graph indices through one hash map
//! with a fast id hasher, see `ids`; state is matched to steps in one pass over it; nothing
//! compares every step with every other, nothing recurses):
//! 1. *spec graph* — one petgraph node per step, in spec order; an edge from each dependency
//!    (explicit `deps` and input references alike) to its dependent. Duplicate ids and
//!    unknown dependencies are rejected here, all unknown ones in one diagnostic.
//! 2. *order + diff* — Kahn's pass over the spec graph rejects a cycle (listing it, naming an
//!    edge to cut) or yields an order in which every step is diffed after the steps it takes
//!    inputs from, so "an input source changes" is known when the step is diffed.
//! 3. *deletions* — each step applied in state but gone from the spec (every applied step in
//!    `destroy` mode) becomes a `Delete` node, ordered *after* every node of a step that,
//!    per state, depended on it: dependents go first, then what they used. A step that
//!    stays in the spec but stopped using a removed one is updated before it is deleted. A
//!    state entry that was never applied (an intent with no result) and left the spec is not
//!    planned: state holds no kind or config to destroy it with.
//! 4. *selection* — `target` / `exclude` over that plan graph (see `select`).
//! 5. *seal* — Kahn's pass over the selected nodes fixes the stored order (every dependency
//!    before its dependent); steps are moved, not cloned, into the plan.
//!
//! `destroy` mode does not read the spec at all (a broken spec must not block a teardown);
//! it plans the deletion of everything in state, or of the targets and their dependents.

use std::collections::HashSet;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::Direction::Incoming;

use super::diag::{self, CycleEdge, DuplicateStepError, EdgeKind, PlanError, Sources, Unknown};
use super::diff::diff;
use super::ids::{node_index_map, NodeIndexMap};
use super::order::{toposort, Order};
use super::select::select;
use super::{Action, Plan, PlanNode, StateRef};
use crate::state::{AppliedStep, State, StepState};
use crate::step::{Step, StepId};

/// Builds a [`Plan`] from the desired steps and the current state.
///
/// ```
/// # use bmac_core::{plan::Planner, state::State, step::{Kind, Step, StepId}};
/// let id = StepId::new("cluster").unwrap();
/// let step = Step::new(id, Kind::new("cluster"), &serde_json::json!({"region": "eu"})).unwrap();
/// let plan = Planner::new(vec![step], &State::default()).plan().unwrap();
/// assert_eq!(plan.summary().create, 1);
/// ```
#[derive(Debug)]
pub struct Planner<'s> {
    steps: Vec<Step>,
    state: &'s State,
    targets: Vec<StepId>,
    excludes: Vec<StepId>,
    destroy: bool,
    sources: Option<Sources>,
}

/// Where a plan node comes from.
enum Origin<'s> {
    /// The spec step at this index.
    Spec(usize),
    /// A step only state knows: its last apply.
    Removed(&'s AppliedStep),
}

/// A plan node before sealing.
struct Draft<'s> {
    origin: Origin<'s>,
    action: Action,
    applied: Option<&'s AppliedStep>,
    in_doubt: bool,
}

impl<'s> Planner<'s> {
    /// A planner for `steps` against `state`.
    pub fn new(steps: Vec<Step>, state: &'s State) -> Self {
        Planner {
            steps,
            state,
            targets: Vec::new(),
            excludes: Vec::new(),
            destroy: false,
            sources: None,
        }
    }

    /// Plans only this step and what it depends on (may be given more than once).
    pub fn target(mut self, id: StepId) -> Self {
        self.targets.push(id);
        self
    }

    /// Leaves out this step and everything that depends on it (may be given more than once).
    pub fn exclude(mut self, id: StepId) -> Self {
        self.excludes.push(id);
        self
    }

    /// Plans destroying everything in state (with targets: the targets and everything that
    /// depends on them).
    pub fn destroy(mut self) -> Self {
        self.destroy = true;
        self
    }

    /// The spec file and spans, so diagnostics point into it.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Makes the plan.
    pub fn plan(self) -> Result<Plan, PlanError> {
        let Planner {
            steps,
            state,
            targets,
            excludes,
            destroy,
            sources,
        } = self;
        let sources = sources.as_ref();
        let mut graph: DiGraph<(), EdgeKind> = DiGraph::new();
        let mut index = node_index_map(steps.len() + state.steps.len());
        let mut drafts: Vec<Draft<'_>> = Vec::new();

        if !destroy {
            add_spec(&steps, &mut graph, &mut index, sources)?;
            let order = match toposort(&graph, |_| true) {
                Order::Sorted(order) => order,
                Order::Cycle(edges) => {
                    return Err(cycle_error(&graph, &edges, &steps, &drafts, sources))
                }
            };
            drafts = diff_all(
                &steps,
                &recorded_entries(&steps, state, &index),
                &index,
                &order,
            );
        }
        add_deletions(state, &mut graph, &mut index, &mut drafts);

        let resolve = |flag: &'static str, ids: &[StepId]| {
            ids.iter()
                .map(|id| {
                    index.get(id).copied().ok_or_else(|| {
                        diag::unknown_target_error(flag, id, destroy, index.keys().copied())
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let targets = resolve("target", &targets)?;
        let excludes = resolve("exclude", &excludes)?;
        let mut keep = select(&graph, &targets, &excludes);
        keep_input_sources(&steps, &index, &mut drafts, &mut keep);
        let order = match toposort(&graph, |v| keep[v.index()]) {
            Order::Sorted(order) => order,
            Order::Cycle(edges) => {
                return Err(cycle_error(&graph, &edges, &steps, &drafts, sources))
            }
        };
        let state_ref = StateRef {
            lineage: state.lineage.clone(),
            serial: state.serial,
        };
        Ok(Plan::seal(state_ref, seal(&graph, &order, steps, drafts)))
    }
}

/// A kept deletion reads its inputs from what the steps that produced them recorded. When the
/// selection leaves such a step out (`destroy --target` keeps a step's dependents, not what it
/// depends on), the step stays in the plan as a no-op — there to be read, not destroyed.
fn keep_input_sources(
    steps: &[Step],
    index: &NodeIndexMap<'_>,
    drafts: &mut [Draft<'_>],
    keep: &mut [bool],
) {
    let mut sources: Vec<usize> = Vec::new();
    for (v, draft) in drafts.iter().enumerate() {
        if !keep[v] || draft.action != Action::Delete {
            continue;
        }
        let step = match draft.origin {
            Origin::Spec(i) => &steps[i],
            Origin::Removed(applied) => &applied.step,
        };
        sources.extend(
            step.inputs
                .values()
                .filter_map(|r| index.get(&r.step))
                .map(|u| u.index())
                .filter(|&u| !keep[u]),
        );
    }
    for u in sources {
        keep[u] = true;
        drafts[u].action = Action::NoOp;
    }
}

/// Pass 1: nodes and edges of the spec steps.
fn add_spec<'a>(
    steps: &'a [Step],
    graph: &mut DiGraph<(), EdgeKind>,
    index: &mut NodeIndexMap<'a>,
    sources: Option<&Sources>,
) -> Result<(), PlanError> {
    graph.reserve_nodes(steps.len());
    for step in steps {
        let v = graph.add_node(());
        if index.insert(&step.id, v).is_some() {
            return Err(PlanError::DuplicateStep(Box::new(DuplicateStepError {
                id: step.id.clone(),
                src: sources.map(Sources::named),
                span: sources.and_then(|s| s.steps.get(&step.id).copied()),
            })));
        }
    }
    let mut unknown: Vec<Unknown<'a>> = Vec::new();
    let mut reported: HashSet<(&StepId, &StepId)> = HashSet::new();
    // One `depends_on` item of a spec entry is an edge of each of the entry's steps: a typo
    // there is one mistake, reported once.
    let mut reported_at: HashSet<(usize, usize, &StepId)> = HashSet::new();
    for (i, step) in steps.iter().enumerate() {
        let v = NodeIndex::new(i);
        let named = step.deps.iter().map(|d| (d, None, EdgeKind::Deps)).chain(
            step.inputs
                .iter()
                .map(|(name, r)| (&r.step, Some(name.as_str()), EdgeKind::Input)),
        );
        for (dep, input, kind) in named {
            match index.get(dep) {
                Some(&u) => {
                    graph.add_edge(u, v, kind);
                }
                None => {
                    let written_at = sources
                        .and_then(|s| s.edges.get(&(step.id.clone(), dep.clone())))
                        .map(|span| (span.offset(), span.len()));
                    let first_there =
                        written_at.is_none_or(|(at, len)| reported_at.insert((at, len, dep)));
                    if first_there && reported.insert((&step.id, dep)) {
                        unknown.push(Unknown {
                            step: &step.id,
                            missing: dep,
                            input,
                        });
                    }
                }
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(diag::unknown_deps_error(
            &unknown,
            steps.iter().map(|s| &s.id),
            sources,
        ))
    }
}

/// What state records for each spec step (by node index), found in one pass over state:
/// one hash lookup per state entry instead of an ordered-map search per step.
fn recorded_entries<'s>(
    steps: &[Step],
    state: &'s State,
    index: &NodeIndexMap<'_>,
) -> Vec<Option<&'s StepState>> {
    let mut recorded = vec![None; steps.len()];
    for (id, entry) in &state.steps {
        if let Some(slot) = index.get(id).and_then(|v| recorded.get_mut(v.index())) {
            *slot = Some(entry);
        }
    }
    recorded
}

/// Pass 2: the action of every spec step, diffed in dependency order so that whether an
/// input source changes is known. `recorded[i]` is what state holds for step `i`.
fn diff_all<'s>(
    steps: &[Step],
    recorded: &[Option<&'s StepState>],
    index: &NodeIndexMap<'_>,
    order: &[NodeIndex],
) -> Vec<Draft<'s>> {
    let mut drafts: Vec<Option<Draft<'s>>> = (0..steps.len()).map(|_| None).collect();
    for v in order {
        let i = v.index();
        let step = &steps[i];
        let upstream_changes = step.inputs.values().any(|r| {
            index
                .get(&r.step)
                .and_then(|u| drafts[u.index()].as_ref())
                .is_some_and(|d| d.action.is_change())
        });
        let d = diff(step, recorded[i], upstream_changes);
        drafts[i] = Some(Draft {
            origin: Origin::Spec(i),
            action: d.action,
            applied: d.applied,
            in_doubt: d.in_doubt,
        });
    }
    // The order covers every node of an acyclic graph, so every slot is filled.
    drafts.into_iter().flatten().collect()
}

/// Pass 3: a `Delete` node for each applied step without a node yet, placed after the nodes
/// of every step that (per state) depended on it.
fn add_deletions<'s: 'a, 'a>(
    state: &'s State,
    graph: &mut DiGraph<(), EdgeKind>,
    index: &mut NodeIndexMap<'a>,
    drafts: &mut Vec<Draft<'s>>,
) {
    let before = drafts.len();
    for (id, entry) in &state.steps {
        // A step never applied has nothing recorded to destroy it with.
        let Some(applied) = &entry.applied else {
            continue;
        };
        if index.contains_key(id) {
            continue;
        }
        index.insert(id, graph.add_node(()));
        drafts.push(Draft {
            origin: Origin::Removed(applied),
            action: Action::Delete,
            applied: Some(applied),
            in_doubt: entry.in_doubt,
        });
    }
    if drafts.len() == before {
        // Nothing is deleted, so no recorded edge can point at a deletion.
        return;
    }
    for (id, entry) in &state.steps {
        let (Some(applied), Some(&dependent)) = (&entry.applied, index.get(id)) else {
            continue;
        };
        let recorded = applied
            .step
            .deps
            .iter()
            .chain(applied.step.inputs.values().map(|r| &r.step));
        for dep in recorded {
            if let Some(&d) = index.get(dep) {
                if d != dependent && drafts[d.index()].action == Action::Delete {
                    graph.add_edge(dependent, d, EdgeKind::Recorded);
                }
            }
        }
    }
}

/// Pass 5: plan nodes in `order`, steps moved out of the spec (deletions cloned from state).
fn seal(
    graph: &DiGraph<(), EdgeKind>,
    order: &[NodeIndex],
    steps: Vec<Step>,
    drafts: Vec<Draft<'_>>,
) -> Vec<PlanNode> {
    const DROPPED: u32 = u32::MAX;
    let mut position = vec![DROPPED; graph.node_count()];
    for (i, v) in order.iter().enumerate() {
        position[v.index()] = i as u32;
    }
    let mut steps: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let mut slots: Vec<Option<PlanNode>> = (0..order.len()).map(|_| None).collect();
    for (v, draft) in drafts.into_iter().enumerate() {
        let at = position[v];
        if at == DROPPED {
            continue;
        }
        let step = match draft.origin {
            Origin::Spec(i) => steps.get_mut(i).and_then(Option::take),
            Origin::Removed(applied) => Some(applied.step.clone()),
        };
        let Some(step) = step else { continue };
        let mut deps: Vec<u32> = graph
            .neighbors_directed(NodeIndex::new(v), Incoming)
            .map(|u| position[u.index()])
            .filter(|&p| p != DROPPED)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        slots[at as usize] = Some(PlanNode {
            step,
            prior: draft.applied.map(AppliedStep::prior),
            prior_fingerprint: draft.applied.map(|a| a.fingerprint),
            in_doubt: draft.in_doubt,
            action: draft.action,
            deps,
        });
    }
    slots.into_iter().flatten().collect()
}

/// The cycle error for `edges` (see [`Order::Cycle`]), naming each edge's kind.
fn cycle_error(
    graph: &DiGraph<(), EdgeKind>,
    edges: &[EdgeIndex],
    steps: &[Step],
    drafts: &[Draft<'_>],
    sources: Option<&Sources>,
) -> PlanError {
    let step_of = |v: NodeIndex| -> Option<&Step> {
        match drafts.get(v.index()).map(|d| &d.origin) {
            Some(Origin::Removed(applied)) => Some(&applied.step),
            Some(Origin::Spec(i)) => steps.get(*i),
            None => steps.get(v.index()),
        }
    };
    let cycle: Vec<CycleEdge<'_>> = edges
        .iter()
        .filter_map(|&e| {
            let (dep, dependent) = graph.edge_endpoints(e)?;
            let from = step_of(dependent)?;
            let to = &step_of(dep)?.id;
            let input = from
                .inputs
                .iter()
                .find(|(_, r)| &r.step == to)
                .map(|(name, _)| name.as_str());
            let kind = match graph.edge_weight(e) {
                Some(EdgeKind::Recorded) => EdgeKind::Recorded,
                // A pair linked by a reference stays linked when `depends_on` is cut.
                _ if input.is_some() => EdgeKind::Input,
                _ => EdgeKind::Deps,
            };
            Some(CycleEdge {
                from: &from.id,
                to,
                kind,
                input,
            })
        })
        .collect();
    diag::cycle_error(&cycle, sources)
}

//! The [`Planner`]: desired steps + state → a sealed [`Plan`].
//!
//! The passes, each linear in steps + edges (ids map to graph indices through one hash index
//! with a fast id hash, see `ids`; the graph is an edge list with flat adjacency tables, see
//! `dag`; state is matched to steps in one pass over it; nothing compares every step with
//! every other, nothing recurses):
//! 1. *spec graph* — one node per step, in spec order; an edge from each dependency
//!    (explicit `deps` and input references alike) to its dependent. Duplicate ids and
//!    unknown dependencies are rejected here, all unknown ones in one diagnostic. A spec
//!    written dependencies first is read in one visit per step (see `add_spec`).
//! 2. *order* — Kahn's pass over the spec graph rejects a cycle (listing it, naming an edge
//!    to cut) or yields an order in which every step comes after the steps it takes inputs
//!    from. State is matched to the spec steps.
//! 3. *deletions* — each step applied in state but gone from the spec (every applied step in
//!    `destroy` mode) becomes a `Delete` node, ordered *after* every node of a step that,
//!    per state, depended on it: dependents go first, then what they used. A step that
//!    stays in the spec but stopped using a removed one is updated before it is deleted. A
//!    state entry that was never applied (an intent with no result) and left the spec is not
//!    planned: state holds no kind or config to destroy it with.
//! 4. *selection* — `target` / `exclude` over that plan graph (see `select`).
//! 5. *seal* — Kahn's pass over the selected nodes fixes the stored order (every dependency
//!    before its dependent; when neither deletions nor a selection changed the graph, the
//!    order of pass 2 is reused). Walking that order, each spec step is diffed against its
//!    state entry (after its input sources, so "an input source changes" is known) and moved
//!    into its plan node in the same visit; see `seal`.
//!
//! Nothing here copies a step: a node shares its spec step with the caller (steps are passed
//! as `Arc<Step>`, or boxed once on the way in), and its prior is a shared handle on the
//! state's own record ([`Prior::recorded`](crate::provider::Prior::recorded)).
//!
//! `destroy` mode does not read the spec at all (a broken spec must not block a teardown);
//! it plans the deletion of everything in state, or of the targets and their dependents.

use std::collections::HashSet;
use std::sync::Arc;

use super::dag::PlanGraph;
use super::diag::{self, CycleEdge, DuplicateStepError, EdgeKind, PlanError, Sources, Unknown};
use super::ids::IdIndex;
use super::order::{toposort, Order};
use super::seal::{seal, Removed, Sealing};
use super::select::select;
use super::{Plan, StateRef};
use crate::state::{State, StepState};
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
    steps: Vec<Arc<Step>>,
    state: &'s State,
    targets: Vec<StepId>,
    excludes: Vec<StepId>,
    destroy: bool,
    sources: Option<Sources>,
}

impl<'s> Planner<'s> {
    /// A planner for `steps` against `state`.
    ///
    /// Steps come owned, or already shared as `Arc<Step>` (the form a spec expansion hands
    /// out). A plan node shares its step with whoever else holds it: a shared step is
    /// planned without a copy, an owned one is boxed once.
    pub fn new<S: Into<Arc<Step>>>(steps: impl IntoIterator<Item = S>, state: &'s State) -> Self {
        Planner {
            steps: steps.into_iter().map(Into::into).collect(),
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
        // In `destroy` mode the spec is not read at all: its steps are no nodes.
        let spec: &[Arc<Step>] = if destroy { &[] } else { &steps };
        let mut index = IdIndex::with_capacity(if destroy {
            state.steps.len()
        } else {
            spec.len()
        });
        let mut graph = add_spec(spec, &mut index, sources)?;
        let mut adj = graph.adjacency();
        let mut order = match toposort(&graph, &adj, None) {
            Order::Sorted(order) => order,
            Order::Cycle(edges) => return Err(cycle_error(&graph, &edges, spec, &[], sources)),
        };
        let (recorded, matched) = recorded_entries(spec, state, &index);

        // Every state entry matched a spec step: nothing can be deleted.
        let removed = if matched < state.steps.len() {
            add_deletions(state, &recorded, &mut graph, &mut index)
        } else {
            Vec::new()
        };
        let mut changed = !removed.is_empty();
        if changed {
            adj = graph.adjacency();
        }
        let known = || {
            spec.iter()
                .map(|s| &s.id)
                .chain(removed.iter().map(|r| &r.applied.step.id))
        };
        let resolve = |flag: &'static str, ids: &[StepId]| {
            ids.iter()
                .map(|id| {
                    index
                        .get(id.as_str())
                        .ok_or_else(|| diag::unknown_target_error(flag, id, destroy, known()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let targets = resolve("target", &targets)?;
        let excludes = resolve("exclude", &excludes)?;
        let (keep, noop) = if targets.is_empty() && excludes.is_empty() {
            (None, Vec::new())
        } else {
            let mut keep = select(&graph, &adj, &targets, &excludes);
            let noop = keep_input_sources(spec, &removed, &index, &mut keep);
            changed = true;
            (Some(keep), noop)
        };
        drop(index);
        if changed {
            order = match toposort(&graph, &adj, keep.as_deref()) {
                Order::Sorted(order) => order,
                Order::Cycle(edges) => {
                    return Err(cycle_error(&graph, &edges, spec, &removed, sources))
                }
            };
        }
        let state_ref = StateRef {
            lineage: state.lineage.clone(),
            serial: state.serial,
        };
        let sealing = Sealing {
            graph: &graph,
            adj: &adj,
            order: &order,
            spec_len: spec.len(),
            recorded: &recorded,
            removed: &removed,
            noop: &noop,
        };
        let nodes = seal(sealing, steps);
        Ok(Plan::seal(state_ref, nodes))
    }
}

/// The step of node `v`: a spec step, or (from `spec.len()` on) a removed one's last apply.
fn step_of<'a>(spec: &'a [Arc<Step>], removed: &'a [Removed<'_>], v: u32) -> Option<&'a Step> {
    let v = v as usize;
    match v.checked_sub(spec.len()) {
        None => spec.get(v).map(|s| &**s),
        Some(r) => removed.get(r).map(|r| &*r.applied.step),
    }
}

/// A kept deletion reads its inputs from what the steps that produced them recorded. When the
/// selection leaves such a step out (`destroy --target` keeps a step's dependents, not what it
/// depends on), the step stays in the plan as a no-op — there to be read, not destroyed.
/// Returns, per node, whether it is kept only for that (empty when none is).
fn keep_input_sources(
    spec: &[Arc<Step>],
    removed: &[Removed<'_>],
    index: &IdIndex<'_>,
    keep: &mut [bool],
) -> Vec<bool> {
    let mut sources: Vec<usize> = Vec::new();
    // Deletions are the nodes from `spec.len()` on.
    for v in spec.len()..keep.len() {
        if !keep[v] {
            continue;
        }
        let Some(step) = step_of(spec, removed, v as u32) else {
            continue;
        };
        sources.extend(
            step.inputs
                .values()
                .filter_map(|r| index.get(r.step.as_str()))
                .map(|u| u as usize)
                .filter(|&u| !keep[u]),
        );
    }
    if sources.is_empty() {
        return Vec::new();
    }
    let mut noop = vec![false; keep.len()];
    for u in sources {
        keep[u] = true;
        noop[u] = true;
    }
    noop
}

/// Pass 1: nodes and edges of the spec steps. The edges come in the order "by dependent,
/// `depends_on` then references" whichever way the spec is written, and every dependency
/// that names no step is reported in one diagnostic.
///
/// Specs are mostly written dependencies first, so each step is visited once: its id is
/// indexed (a duplicate is an error) and its dependencies looked up, all already indexed.
/// At the first dependency on a step further down, the visit only indexes the remaining
/// ids, and the edges are then added in a second visit, when every id is known.
fn add_spec<'a>(
    steps: &'a [Arc<Step>],
    index: &mut IdIndex<'a>,
    sources: Option<&Sources>,
) -> Result<PlanGraph, PlanError> {
    let mut graph = PlanGraph::with_capacity(steps.len(), steps.len());
    let first = graph.add_nodes(steps.len());
    let mut forward = false;
    for (v, step) in (first..).zip(steps) {
        if index.insert(step.id.as_str()) != Ok(v) {
            return Err(PlanError::DuplicateStep(Box::new(DuplicateStepError {
                id: step.id.clone(),
                src: sources.map(Sources::named),
                span: sources.and_then(|s| s.steps.get(&step.id).copied()),
            })));
        }
        if forward {
            continue;
        }
        for (dep, _, kind) in named_deps(step) {
            match index.get(dep.as_str()) {
                Some(u) => {
                    graph.add_edge(u, v, kind);
                }
                None => {
                    forward = true;
                    break;
                }
            }
        }
    }
    if !forward {
        return Ok(graph);
    }
    graph.clear_edges();
    // Dependencies that name no step: (dependent, named dependency, input).
    let mut missing: Vec<(&'a Step, &'a StepId, Option<&'a str>)> = Vec::new();
    for (v, step) in (first..).zip(steps) {
        for (dep, input, kind) in named_deps(step) {
            match index.get(dep.as_str()) {
                Some(u) => {
                    graph.add_edge(u, v, kind);
                }
                None => missing.push((step, dep, input)),
            }
        }
    }
    if missing.is_empty() {
        return Ok(graph);
    }
    let mut unknown: Vec<Unknown<'a>> = Vec::new();
    let mut reported: HashSet<(&StepId, &StepId)> = HashSet::new();
    // One `depends_on` item of a spec entry is an edge of each of the entry's steps: a typo
    // there is one mistake, reported once.
    let mut reported_at: HashSet<(usize, usize, &StepId)> = HashSet::new();
    for (step, dep, input) in missing {
        let written_at = sources
            .and_then(|s| s.edges.get(&(step.id.clone(), dep.clone())))
            .map(|span| (span.offset(), span.len()));
        let first_there = written_at.is_none_or(|(at, len)| reported_at.insert((at, len, dep)));
        if first_there && reported.insert((&step.id, dep)) {
            unknown.push(Unknown {
                step: &step.id,
                missing: dep,
                input,
            });
        }
    }
    Err(diag::unknown_deps_error(
        &unknown,
        steps.iter().map(|s| &s.id),
        sources,
    ))
}

/// The steps `step` names: its `depends_on`, then its input references (with the input's
/// name), each with the kind of edge it makes.
fn named_deps(step: &Step) -> impl Iterator<Item = (&StepId, Option<&str>, EdgeKind)> {
    step.deps.iter().map(|d| (d, None, EdgeKind::Deps)).chain(
        step.inputs
            .iter()
            .map(|(name, r)| (&r.step, Some(name.as_str()), EdgeKind::Input)),
    )
}

/// What state records for each spec step (by node index), found in one pass over state:
/// one hash lookup per state entry instead of an ordered-map search per step. Also returns
/// how many state entries belong to a spec step.
fn recorded_entries<'s>(
    steps: &[Arc<Step>],
    state: &'s State,
    index: &IdIndex<'_>,
) -> (Vec<Option<&'s StepState>>, usize) {
    if state.steps.is_empty() || steps.is_empty() {
        return (Vec::new(), 0);
    }
    let mut recorded = vec![None; steps.len()];
    let mut matched = 0;
    for (id, entry) in &state.steps {
        if let Some(slot) = index
            .get(id.as_str())
            .and_then(|v| recorded.get_mut(v as usize))
        {
            *slot = Some(entry);
            matched += 1;
        }
    }
    (recorded, matched)
}

/// Pass 3: a `Delete` node for each applied step without a node yet, placed after the nodes
/// of every step that (per state) depended on it. Returns the removed steps' records, one per
/// new node (node `spec.len() + k` is `removed[k]`).
fn add_deletions<'s: 'a, 'a>(
    state: &'s State,
    recorded: &[Option<&'s StepState>],
    graph: &mut PlanGraph,
    index: &mut IdIndex<'a>,
) -> Vec<Removed<'s>> {
    let first = graph.node_count() as u32;
    // A step never applied has nothing recorded to destroy it with. The rest are numbered by
    // id, not in state's order (the order concurrent steps happened to finish in), so that
    // the same state always gives the same plan.
    let mut gone: Vec<(&'s StepId, &'s StepState)> = state
        .steps
        .iter()
        .filter(|(id, entry)| entry.applied.is_some() && index.get(id.as_str()).is_none())
        .collect();
    gone.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut removed = Vec::with_capacity(gone.len());
    for (id, entry) in gone {
        let Some(applied) = &entry.applied else {
            continue;
        };
        // New ids are numbered on from the spec's: this is node `first + removed.len()`.
        if index.insert(id.as_str()).is_err() {
            continue;
        }
        removed.push(Removed {
            applied,
            in_doubt: entry.in_doubt,
        });
    }
    if removed.is_empty() {
        return removed;
    }
    graph.add_nodes(removed.len());
    // Dependents by node number (spec steps, then deletions), so the edges too come in an
    // order that does not depend on how state happens to be laid out.
    let dependents = (0..first)
        .zip(recorded.iter().map(|e| e.and_then(|e| e.applied.as_ref())))
        .chain((first..).zip(removed.iter().map(|r| Some(r.applied))));
    for (dependent, applied) in dependents {
        let Some(applied) = applied else {
            continue;
        };
        let recorded = applied
            .step
            .deps
            .iter()
            .chain(applied.step.inputs.values().map(|r| &r.step));
        for dep in recorded {
            // Only deletions are nodes from `first` on.
            if let Some(d) = index.get(dep.as_str()) {
                if d != dependent && d >= first {
                    graph.add_edge(dependent, d, EdgeKind::Recorded);
                }
            }
        }
    }
    removed
}

/// The cycle error for `edges` (see [`Order::Cycle`]), naming each edge's kind.
fn cycle_error(
    graph: &PlanGraph,
    edges: &[u32],
    spec: &[Arc<Step>],
    removed: &[Removed<'_>],
    sources: Option<&Sources>,
) -> PlanError {
    let cycle: Vec<CycleEdge<'_>> = edges
        .iter()
        .filter_map(|&e| {
            let edge = graph.edge(e);
            let from = step_of(spec, removed, edge.to)?;
            let to = &step_of(spec, removed, edge.from)?.id;
            let input = from
                .inputs
                .iter()
                .find(|(_, r)| &r.step == to)
                .map(|(name, _)| name.as_str());
            let kind = match edge.kind {
                EdgeKind::Recorded => EdgeKind::Recorded,
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

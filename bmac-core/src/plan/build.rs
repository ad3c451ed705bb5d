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
//!    from.
//!
//!    *state* — state is matched to the spec steps, and each step found there is diffed
//!    against its entry (everything but "an input source changes", which pass 5 adds; see
//!    `diff`). This needs an index of the spec's ids, not the graph: for a large spec
//!    against a non-empty state it starts on a second thread, which indexes the ids again
//!    for itself, while this one runs passes 1 and 2; state entries are handed out in
//!    chunks, and this thread takes its share once the graph is done. Each side reads its
//!    own data (state records there, dependency lists and the graph here), so at 100k steps
//!    the two wait on memory side by side rather than one after the other; indexing the ids
//!    twice costs less than either side waiting for the other's index.
//! 3. *deletions* — each step applied in state but gone from the spec (every applied step in
//!    `destroy` mode) becomes a `Delete` node, ordered *after* every node of a step that,
//!    per state, depended on it: dependents go first, then what they used. A step that
//!    stays in the spec but stopped using a removed one is updated before it is deleted. A
//!    state entry that was never applied (an intent with no result) and left the spec is not
//!    planned: state holds no kind or config to destroy it with.
//! 4. *selection* — `target` / `exclude` over that plan graph (see `select`).
//! 5. *seal* — Kahn's pass over the selected nodes fixes the stored order (every dependency
//!    before its dependent; when neither deletions nor a selection changed the graph, the
//!    order of pass 2 is reused). Walking that order, each spec step takes its diff — an
//!    update now when one of its input sources changes, which is known by then since the
//!    sources come first — and moves into its plan node; see `seal`.
//!
//! Nothing here copies a step: a node shares its spec step with the caller (steps are passed
//! as `Arc<Step>`, or boxed once on the way in), and its prior is a shared handle on the
//! state's own record ([`Prior::recorded`](crate::provider::Prior::recorded)).
//!
//! `destroy` mode does not read the spec at all (a broken spec must not block a teardown);
//! it plans the deletion of everything in state, or of the targets and their dependents.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::dag::{Adjacency, PlanGraph};
use super::diag::{self, CycleEdge, DuplicateStepError, EdgeKind, PlanError, Sources, Unknown};
use super::diff::{diff, Diff};
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
    threads: usize,
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
            threads: 2,
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

    /// At most this many threads, the calling one included (default 2; more are not used).
    /// With 1, planning never leaves the calling thread — for an embedder whose other cores
    /// are busy, where a second thread would only compete with them.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Makes the plan.
    ///
    /// A large spec (32k steps or more) planned against a non-empty state uses a second
    /// thread, unless [`threads`](Self::threads) says 1 or the machine has one core: state is
    /// matched and diffed there while this thread builds and orders the spec graph (see the
    /// module docs). The plan is the same either way.
    pub fn plan(self) -> Result<Plan, PlanError> {
        let second_thread = self.threads > 1
            && !self.destroy
            && self.steps.len() >= PARALLEL_FROM
            && !self.state.steps.is_empty()
            && cores() > 1;
        self.plan_on(second_thread, true)
    }

    /// [`plan`](Self::plan), matching and diffing state on a second thread or not; with
    /// `here_too`, this thread takes the matching when it gets there first.
    fn plan_on(self, second_thread: bool, here_too: bool) -> Result<Plan, PlanError> {
        let Planner {
            steps,
            state,
            targets,
            excludes,
            destroy,
            sources,
            threads: _,
        } = self;
        let sources = sources.as_ref();
        // In `destroy` mode the spec is not read at all: its steps are no nodes.
        let spec: &[Arc<Step>] = if destroy { &[] } else { &steps };
        let mut index = IdIndex::with_capacity(if destroy {
            state.steps.len()
        } else {
            spec.len()
        });
        // The spec graph, and state matched and diffed (see the module docs). State entries
        // are handed out in chunks: the second thread takes them as soon as it has its own
        // index, this one once the graph is done. A second thread that starts late finds
        // them taken, and the plan costs what it costs on one thread.
        let (graph, (mut recorded, matched)) = if second_thread {
            let chunks = Chunks::new(state.steps.len());
            let index = &mut index;
            let (graph, there) = both(
                || {
                    let graph = ordered(add_spec(spec, index, sources)?, spec, sources)?;
                    let mut mine = Vec::new();
                    let matched = if here_too {
                        chunks.match_all(spec, state, index, |v, d| mine.push((v, d)))
                    } else {
                        0
                    };
                    Ok((graph, mine, matched))
                },
                || {
                    if chunks.done() {
                        return None;
                    }
                    // An index of its own; a duplicate id fails the plan on the other side.
                    let mut own = IdIndex::with_capacity(spec.len());
                    index_spec(spec, &mut own, None, None).ok()?;
                    let mut recorded = Vec::new();
                    let matched = chunks.match_into(spec, state, &own, &mut recorded);
                    Some((recorded, matched))
                },
            );
            let (graph, mine, matched_here) = graph?;
            let (mut recorded, matched_there) = there.unwrap_or_default();
            if recorded.is_empty() && !mine.is_empty() {
                recorded.resize_with(spec.len(), || None);
            }
            for (v, d) in mine {
                recorded[v] = Some(d);
            }
            (graph, (recorded, matched_here + matched_there))
        } else {
            let graph = ordered(add_spec(spec, &mut index, sources)?, spec, sources)?;
            (graph, match_state(spec, state, &index))
        };
        let (mut graph, mut adj, mut order) = graph;
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
            recorded: &mut recorded,
            removed: &removed,
            noop: &noop,
        };
        let nodes = seal(sealing, steps);
        Ok(Plan::seal(state_ref, nodes))
    }
}

/// Pass 2 over the spec graph: its adjacency tables and Kahn's order, or the cycle error.
fn ordered(
    graph: PlanGraph,
    spec: &[Arc<Step>],
    sources: Option<&Sources>,
) -> Result<(PlanGraph, Adjacency, Vec<u32>), PlanError> {
    let adj = graph.adjacency();
    match toposort(&graph, &adj, None) {
        Order::Sorted(order) => Ok((graph, adj, order)),
        Order::Cycle(edges) => Err(cycle_error(&graph, &edges, spec, &[], sources)),
    }
}

/// From how many spec steps a second thread pays for itself. Starting one costs tens of
/// microseconds, and on a shared virtual machine the second core is not always free at
/// once (10k-step plans measured up to twice as slow with one): worth it for a plan of
/// tens of milliseconds, not for one of about one (10k steps against a full state).
const PARALLEL_FROM: usize = 32 * 1024;

/// How many threads can run at once here (asked once).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Runs `a` on this thread and `b` on a second one, and returns both results. When no
/// thread can be started, `b` runs here after `a`; a panic in `b` is resumed here.
fn both<A, B: Send>(a: impl FnOnce() -> A, b: impl Fn() -> B + Sync) -> (A, B) {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("bmac-plan".into())
            .spawn_scoped(scope, &b);
        let a = a();
        let b = match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => b(),
        };
        (a, b)
    })
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
/// ids, and the edges are then added in a second visit ([`add_edges`]), when every id is
/// known.
fn add_spec<'a>(
    steps: &'a [Arc<Step>],
    index: &mut IdIndex<'a>,
    sources: Option<&Sources>,
) -> Result<PlanGraph, PlanError> {
    let mut graph = PlanGraph::with_capacity(steps.len(), steps.len());
    if !index_spec(steps, index, sources, Some(&mut graph))? {
        add_edges(steps, index, &mut graph, sources)?;
    }
    Ok(graph)
}

/// Indexes the ids of the spec steps (a duplicate is an error). With a graph, also gives
/// each a node and adds its edges while all its dependencies are known; returns whether
/// every edge was added (never, without a graph).
fn index_spec<'a>(
    steps: &'a [Arc<Step>],
    index: &mut IdIndex<'a>,
    sources: Option<&Sources>,
    mut graph: Option<&mut PlanGraph>,
) -> Result<bool, PlanError> {
    if let Some(graph) = graph.as_deref_mut() {
        graph.add_nodes(steps.len());
    }
    let mut complete = graph.is_some();
    for (v, step) in (0..).zip(steps) {
        if index.insert(step.id.as_str()) != Ok(v) {
            return Err(PlanError::DuplicateStep(Box::new(DuplicateStepError {
                id: step.id.clone(),
                src: sources.map(Sources::named),
                span: sources.and_then(|s| s.steps.get(&step.id).copied()),
            })));
        }
        let Some(graph) = graph.as_deref_mut().filter(|_| complete) else {
            continue;
        };
        for (dep, _, kind) in named_deps(step) {
            match index.get(dep.as_str()) {
                Some(u) => {
                    graph.add_edge(u, v, kind);
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
    }
    Ok(complete)
}

/// The edges of the spec steps, once every id is indexed and has its node (replacing any
/// edges already added).
fn add_edges<'a>(
    steps: &'a [Arc<Step>],
    index: &IdIndex<'a>,
    graph: &mut PlanGraph,
    sources: Option<&Sources>,
) -> Result<(), PlanError> {
    graph.clear_edges();
    // Dependencies that name no step: (dependent, named dependency, input).
    let mut missing: Vec<(&'a Step, &'a StepId, Option<&'a str>)> = Vec::new();
    for (v, step) in (0..).zip(steps) {
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
        return Ok(());
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

/// State matched to the spec, in one pass over state: one hash lookup per state entry
/// instead of an ordered-map search per step. Each spec step with a state entry is diffed
/// against it (see [`diff`]). Returns the diffs by node index (`None`: nothing in state) and
/// how many state entries belong to a spec step.
fn match_state(
    steps: &[Arc<Step>],
    state: &State,
    index: &IdIndex<'_>,
) -> (Vec<Option<Diff>>, usize) {
    let mut recorded = Vec::new();
    let matched = Chunks::new(state.steps.len()).match_into(steps, state, index, &mut recorded);
    (recorded, matched)
}

/// State entries (by position) handed out in chunks to whichever thread asks next.
struct Chunks {
    next: AtomicUsize,
    len: usize,
}

impl Chunks {
    /// Entries per chunk: large enough that asking is rare, small enough that the two
    /// threads finish close together.
    const SIZE: usize = 2048;

    fn new(len: usize) -> Self {
        Chunks {
            next: AtomicUsize::new(0),
            len,
        }
    }

    /// Whether every chunk has been handed out.
    fn done(&self) -> bool {
        self.next.load(Ordering::Relaxed) >= self.len
    }

    /// [`match_all`](Self::match_all) into `recorded`, by node (sized for the spec at the
    /// first match).
    fn match_into(
        &self,
        steps: &[Arc<Step>],
        state: &State,
        index: &IdIndex<'_>,
        recorded: &mut Vec<Option<Diff>>,
    ) -> usize {
        self.match_all(steps, state, index, |v, d| {
            if recorded.is_empty() {
                recorded.resize_with(steps.len(), || None);
            }
            recorded[v] = Some(d);
        })
    }

    /// Matches and diffs chunk after chunk until none is left (see [`match_state`]), giving
    /// each diff to `put` with its node; returns how many entries matched a spec step.
    fn match_all(
        &self,
        steps: &[Arc<Step>],
        state: &State,
        index: &IdIndex<'_>,
        mut put: impl FnMut(usize, Diff),
    ) -> usize {
        if steps.is_empty() {
            return 0;
        }
        let mut matched = 0;
        loop {
            let start = self.next.fetch_add(Self::SIZE, Ordering::Relaxed);
            if start >= self.len {
                return matched;
            }
            for k in start..(start + Self::SIZE).min(self.len) {
                let Some((id, entry)) = state.steps.get_index(k) else {
                    continue;
                };
                let Some(v) = index.get(id.as_str()).map(|v| v as usize) else {
                    continue;
                };
                if let Some(step) = steps.get(v) {
                    put(v, diff(step, Some(entry)));
                    matched += 1;
                }
            }
        }
    }
}

/// Pass 3: a `Delete` node for each applied step without a node yet, placed after the nodes
/// of every step that (per state) depended on it. Returns the removed steps' records, one per
/// new node (node `spec.len() + k` is `removed[k]`).
fn add_deletions<'s: 'a, 'a>(
    state: &'s State,
    recorded: &[Option<Diff>],
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
        .zip(
            recorded
                .iter()
                .map(|d| d.as_ref().and_then(|d| d.prior.as_ref()?.record())),
        )
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::plan::{Action, Summary};
    use crate::state::AppliedStep;
    use crate::step::{Kind, Outputs, Ref};

    fn id(text: &str) -> StepId {
        StepId::new(text).unwrap()
    }

    /// 600 steps, each depending on the one before and every fifth taking an input from the
    /// one 7 back, with `kind` and `n` setting what they are.
    fn spec(kind: &Kind, n: i64) -> Vec<Step> {
        (0..600)
            .map(|i| {
                let s = Step::new(id(&format!("s{i}")), kind.clone(), &json!({"n": n, "i": i}))
                    .unwrap();
                match i {
                    0 => s,
                    _ if i % 5 == 0 && i >= 7 => s
                        .depends_on(id(&format!("s{}", i - 1)))
                        .input("up", Ref::new(id(&format!("s{}", i - 7)), "out")),
                    _ => s.depends_on(id(&format!("s{}", i - 1))),
                }
            })
            .collect()
    }

    /// A state that applied `steps`, some of them left in doubt.
    fn applied(steps: Vec<Step>) -> State {
        let mut state = State::default();
        for (i, step) in steps.into_iter().enumerate() {
            let applied = AppliedStep {
                fingerprint: step.config_fingerprint(),
                outputs: Outputs::new().with("out", i),
                step: Arc::new(step),
            };
            state.steps.insert(
                applied.step.id.clone(),
                StepState {
                    applied: Some(Arc::new(applied)),
                    in_doubt: i % 97 == 5,
                    last_error: None,
                    checkpoint: None,
                },
            );
        }
        state
    }

    #[test]
    fn an_index_of_its_own_matches_state_as_the_plan_does() {
        let kind = Kind::with_replace_on("k", ["/n"]);
        let state = applied(spec(&kind, 1));
        let mut steps: Vec<Arc<Step>> = spec(&kind, 2).into_iter().map(Arc::new).collect();
        steps.swap(3, 300);
        let mut index = IdIndex::with_capacity(steps.len());
        let graph = add_spec(&steps, &mut index, None).unwrap();
        assert!(ordered(graph, &steps, None).is_ok());
        let mut own = IdIndex::with_capacity(steps.len());
        assert!(!index_spec(&steps, &mut own, None, None).unwrap());
        let summary = |(diffs, matched): (Vec<Option<Diff>>, usize)| {
            let actions: Vec<Option<Action>> =
                diffs.into_iter().map(|d| d.map(|d| d.action)).collect();
            (actions, matched)
        };
        let (actions, matched) = summary(match_state(&steps, &state, &index));
        assert_eq!(matched, 600);
        assert!(actions
            .iter()
            .all(|a| matches!(a, Some(Action::Replace { .. }))));
        assert_eq!(
            summary(match_state(&steps, &state, &own)),
            (actions, matched)
        );
    }

    #[test]
    fn a_second_thread_makes_the_same_plan() {
        let kind = Kind::with_replace_on("k", ["/n"]);
        let other = Kind::new("other");
        // State: the same steps, a few more that left the spec, some recorded out of order.
        let mut before = spec(&kind, 1);
        before.extend(
            (0..20).map(|i| Step::new(id(&format!("gone{i}")), kind.clone(), &json!({})).unwrap()),
        );
        before.swap(10, 400);
        let state = applied(before);
        // Spec: some steps changed (a replace, an update, another kind), some new, one
        // naming a step further down.
        let mut steps = spec(&kind, 1);
        steps[3] = Step::new(id("s3"), kind.clone(), &json!({"n": 2, "i": 3})).unwrap();
        steps[50].config["i"] = json!(-1);
        steps[51].kind = other.clone();
        steps[52] = steps[52].clone().depends_on(id("new"));
        steps.push(
            Step::new(id("new"), other, &json!({}))
                .unwrap()
                .depends_on(id("s0")),
        );
        fn both_ways<'s>(planner: &dyn Fn() -> Planner<'s>) -> Summary {
            let one = planner().plan_on(false, true);
            // Matched and diffed on the second thread, or by whichever gets there first.
            for two in [
                planner().plan_on(true, false),
                planner().plan_on(true, true),
            ] {
                match (&one, two) {
                    (Ok(one), Ok(two)) => {
                        assert_eq!(one.nodes(), two.nodes());
                        assert_eq!(one.summary(), two.summary());
                    }
                    (one, two) => panic!("{one:?} against {two:?}"),
                }
            }
            one.map(|one| one.summary()).unwrap_or_default()
        }
        let summary = both_ways(&|| Planner::new(steps.clone(), &state));
        assert!(summary.create >= 1 && summary.update >= 1 && summary.destroy >= 20);
        assert!(summary.unchanged > 0);
        let targeted = both_ways(&|| Planner::new(steps.clone(), &state).target(id("s60")));
        assert!(targeted.unchanged < summary.unchanged && targeted.destroy < summary.destroy);
        let excluded = both_ways(&|| Planner::new(steps.clone(), &state).exclude(id("s500")));
        assert!(excluded.destroy >= 20);
        // Errors are the same too.
        let error = |steps: Vec<Step>| {
            let one = Planner::new(steps.clone(), &state)
                .plan_on(false, true)
                .unwrap_err();
            let two = Planner::new(steps, &state)
                .plan_on(true, false)
                .unwrap_err();
            assert_eq!(one.to_string(), two.to_string());
            one
        };
        let mut cyclic = steps.clone();
        cyclic[1] = cyclic[1].clone().depends_on(id("s2"));
        assert!(matches!(error(cyclic), PlanError::Cycle(_)));
        let mut unknown = steps.clone();
        unknown[9] = unknown[9].clone().depends_on(id("nowhere"));
        assert!(matches!(error(unknown), PlanError::UnknownDep(_)));
    }
}

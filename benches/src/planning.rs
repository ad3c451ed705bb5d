//! Table 1 — planning: `Planner::plan` ÷ `petgraph::algo::toposort` on the same graph.
//!
//! For each shape and size the steps are built once (spec expansion is not planning), shared
//! as `Arc<Step>` — the form a spec expansion hands out and a plan keeps; each repetition gets
//! its own vector of those handles, made outside the timed region. The timed region is exactly
//! `Planner::new(steps, &state).threads(n).plan()` —
//! graph build, validation (duplicates, unknown deps, cycles), diff and sealing — against an
//! empty state (everything `Create`) and against a *full* state in which every step was
//! applied with its current config (everything `NoOp`, so every step is diffed for real). That
//! state is built from a second expansion of the same graph, so — like a state read back from
//! a journal — it shares no step, config or id with the spec. The plan is dropped outside the
//! timed region too. From 32k steps a plan against a state uses a second thread by default
//! (`threads(2)`); the full-state plan is also timed with `threads(1)` and shown beside it.
//!
//! The reference is `toposort(&g, None)` on a petgraph `DiGraph` of the same nodes and edges,
//! built beforehand: the least any planner must do.
//!
//! Targets (judged on the default, two threads): ratio ≤ 10, and flat — for each shape, the
//! largest ratio across sizes within 2× of the smallest. The 100k chain's graph is built and
//! ordered on the calling thread: reaching the end of the table means it did not overflow the
//! stack.

use std::sync::Arc;
use std::time::Duration;

use bmac_core::plan::{Plan, Planner};
use bmac_core::state::{AppliedStep, State, StepState, StepStates};
use bmac_core::step::{Inputs, Outputs, Step};

use crate::graphs::{Dag, Shape};
use crate::table::{duration, ratio, Table};
use crate::{timed, BenchError, SEED};

/// The most a plan may cost, in toposorts.
pub const TARGET_RATIO: f64 = 10.0;
/// The most the ratio may grow from the smallest size to the largest.
pub const TARGET_FLATNESS: f64 = 2.0;

/// One measured shape × size.
#[derive(Debug, Clone)]
pub struct PlanRow {
    /// The shape.
    pub shape: Shape,
    /// Steps.
    pub steps: usize,
    /// Edges.
    pub edges: usize,
    /// `petgraph::algo::toposort` alone.
    pub toposort: Duration,
    /// Planning against an empty state.
    pub empty: Duration,
    /// Planning against a state holding every step as applied.
    pub full: Duration,
    /// The same on the calling thread only (`Planner::threads(1)`; the same as `full` below
    /// the size at which a plan uses a second thread).
    pub full_one_thread: Duration,
}

impl PlanRow {
    /// Empty-state plan ÷ toposort.
    pub fn empty_ratio(&self) -> f64 {
        self.empty.as_secs_f64() / self.toposort.as_secs_f64().max(1e-9)
    }

    /// Full-state plan ÷ toposort.
    pub fn full_ratio(&self) -> f64 {
        self.full.as_secs_f64() / self.toposort.as_secs_f64().max(1e-9)
    }

    /// Full-state plan on one thread ÷ toposort.
    pub fn full_one_thread_ratio(&self) -> f64 {
        self.full_one_thread.as_secs_f64() / self.toposort.as_secs_f64().max(1e-9)
    }
}

/// A state in which every step of `steps` was applied with its current config.
pub fn full_state(steps: &[Step]) -> State {
    let steps_state: StepStates = steps
        .iter()
        .map(|s| {
            let applied = AppliedStep {
                step: Arc::new(s.clone()),
                fingerprint: s.fingerprint(&Inputs::default()),
                outputs: Outputs::new().with("id", format!("sim-{}", s.id)),
            };
            (
                s.id.clone(),
                StepState {
                    applied: Some(Arc::new(applied)),
                    in_doubt: false,
                    last_error: None,
                    checkpoint: None,
                },
            )
        })
        .collect();
    State {
        lineage: "bench".to_owned(),
        serial: 2 * steps.len() as u64,
        steps: steps_state,
    }
}

/// Plans `steps` against `state` once, checking the plan is whole; returns the time the
/// planner took (dropping the plan is not timed).
fn plan_once(
    steps: &[Arc<Step>],
    state: &State,
    threads: usize,
    check: impl Fn(&Plan) -> bool,
) -> Result<Duration, BenchError> {
    let input = steps.to_vec();
    let (plan, took) = timed(|| Planner::new(input, state).threads(threads).plan());
    let plan = plan.map_err(|e| BenchError::new("planning failed", e))?;
    if plan.len() != steps.len() || !check(&plan) {
        return Err(BenchError(format!(
            "the plan of {} steps is not what the state implies: {}",
            steps.len(),
            plan.summary()
        )));
    }
    drop(plan);
    Ok(took)
}

/// Measures one shape at one size.
pub fn measure(shape: Shape, n: usize, reps: usize) -> Result<PlanRow, BenchError> {
    let dag = Dag::generate(shape, n, SEED);
    let steps: Vec<Arc<Step>> = dag.to_steps().into_iter().map(Arc::new).collect();
    let graph = dag.to_petgraph();
    let empty_state = State::default();
    let state = full_state(&dag.to_steps());
    let toposort_once = || {
        let (order, took) = timed(|| petgraph::algo::toposort(&graph, None));
        match order {
            Ok(order) if order.len() == n => Ok(took),
            _ => Err(BenchError(format!("toposort of the {shape} graph failed"))),
        }
    };
    let empty_once = || plan_once(&steps, &empty_state, 2, |p| p.summary().create == n);
    let full_once = |threads| plan_once(&steps, &state, threads, |p| p.summary().unchanged == n);
    // The four are measured in turns, so that a burst of load from elsewhere on the machine
    // slows each of them about as often; each keeps its fastest run. Each timed run follows
    // an untimed one of the same kind, so none of them starts with caches the others filled.
    let (mut toposort, mut empty) = (Duration::MAX, Duration::MAX);
    let (mut full, mut full_one_thread) = (Duration::MAX, Duration::MAX);
    for _ in 0..reps.max(1) {
        toposort_once()?;
        toposort = toposort.min(toposort_once()?);
        empty_once()?;
        empty = empty.min(empty_once()?);
        full_once(2)?;
        full = full.min(full_once(2)?);
        full_once(1)?;
        full_one_thread = full_one_thread.min(full_once(1)?);
    }
    Ok(PlanRow {
        shape,
        steps: n,
        edges: dag.edge_count(),
        toposort,
        empty,
        full,
        full_one_thread,
    })
}

/// Repetitions (turns of the four): few for the smoke test. The large graphs get as many
/// as the small ones — a 100k-step plan uses a second core, which on a shared machine is
/// not free for every turn, and a turn of all four takes well under a second.
fn reps_for(quick: bool) -> usize {
    if quick {
        2
    } else {
        20
    }
}

/// Runs the planning table over `sizes` (ascending).
pub fn run(sizes: &[usize], quick: bool) -> Result<(Table, Vec<PlanRow>), BenchError> {
    let mut rows = Vec::new();
    for shape in Shape::PLANNING {
        for &n in sizes {
            eprintln!("planning: {shape} × {n}");
            rows.push(measure(shape, n, reps_for(quick))?);
        }
    }
    Ok((table(&rows), rows))
}

fn table(rows: &[PlanRow]) -> Table {
    let mut t = Table::new(
        "1. Planning: plan ÷ petgraph::algo::toposort",
        &[
            "shape",
            "steps",
            "edges",
            "toposort",
            "plan (empty state)",
            "ratio",
            "plan (full state)",
            "ratio ",
            "same, one thread",
            "ratio  ",
        ],
    );
    for r in rows {
        t.row(vec![
            r.shape.to_string(),
            r.steps.to_string(),
            r.edges.to_string(),
            duration(r.toposort),
            duration(r.empty),
            ratio(r.empty_ratio()),
            duration(r.full),
            ratio(r.full_ratio()),
            duration(r.full_one_thread),
            ratio(r.full_one_thread_ratio()),
        ]);
    }
    t.note(
        "Plan = Planner::plan (graph build, validation, diff, seal); empty state: all Create; \
         full state: every step applied with its current config (all NoOp). From 32k steps a plan \
         against a state matches and diffs it on a second thread; \"one thread\" is the same plan with \
         Planner::threads(1) (the targets are judged on the default). \
         Fastest of 20 runs; the four are measured in turns, each timed run right after an untimed one of the same kind.",
    );
    let worst = rows
        .iter()
        .flat_map(|r| [(r, r.empty_ratio()), (r, r.full_ratio())])
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((r, worst)) = worst {
        t.verdict(
            format!("plan ÷ toposort ≤ {TARGET_RATIO}"),
            worst <= TARGET_RATIO,
            format!("worst {worst:.2} ({} × {})", r.shape, r.steps),
        );
    }
    let mut spread: Option<(Shape, f64)> = None;
    for shape in Shape::PLANNING {
        for pick in [PlanRow::empty_ratio, PlanRow::full_ratio] {
            let ratios: Vec<f64> = rows.iter().filter(|r| r.shape == shape).map(pick).collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            if !ratios.is_empty() && spread.is_none_or(|(_, s)| hi / lo > s) {
                spread = Some((shape, hi / lo));
            }
        }
    }
    if let Some((shape, s)) = spread {
        t.verdict(
            format!("flat: largest ÷ smallest ratio across sizes ≤ {TARGET_FLATNESS}"),
            s <= TARGET_FLATNESS,
            format!("worst spread {s:.2}× ({shape})"),
        );
    }
    if let Some(chain) = rows
        .iter()
        .filter(|r| r.shape == Shape::Chain)
        .max_by_key(|r| r.steps)
    {
        t.verdict(
            format!("no stack overflow on the {}-step chain", chain.steps),
            true,
            format!(
                "planned in {} (empty) / {} (full) on the calling thread",
                duration(chain.empty),
                duration(chain.full)
            ),
        );
    }
    if let Some(slowest) = rows.iter().max_by_key(|r| r.empty.max(r.full)) {
        let worst = slowest.empty.max(slowest.full);
        t.verdict(
            format!("{} steps plan in well under a second", slowest.steps),
            worst < Duration::from_millis(500),
            format!("slowest {} ({})", duration(worst), slowest.shape),
        );
    }
    t
}

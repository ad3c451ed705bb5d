//! Table 2 — scheduling overhead: nanoseconds per step when every step returns at once.
//!
//! Three schedulers run the same graph with the same parallelism cap on the same runtime (a
//! multi-thread tokio runtime with one worker per core):
//! - **bmac**: `Executor::run` of a sealed plan (all `Create`) against a provider whose calls
//!   return immediately, journaling to a [`MemoryStore`] (no fsync measured, but every
//!   `Intent`/`Applied` record is still built, sent and folded into the state);
//! - **baseline**: the least a correct scheduler can do, written here — dependency counters, a
//!   FIFO ready queue, a `Semaphore` for the cap and spawned tasks collected in a
//!   `FuturesUnordered`;
//! - **dagrs**: the `dagrs` crate's `Graph`, supplied by the caller as an
//!   [`ExternalScheduler`] (it is a dev-dependency, so it lives in the bench target).
//!
//! The timed region for bmac is the whole `run` (including building its run topology and
//! taking the store's lock); planning is not included. For dagrs it is `async_start` (graph
//! construction excluded).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bmac_core::exec::Executor;
use bmac_core::plan::{Plan, Planner};
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError, Providers,
};
use bmac_core::state::{MemoryStore, State, StateStore};
use bmac_core::step::Outputs;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::graphs::{Dag, Shape};
use crate::table::{ratio, Table};
use crate::{min_of, BenchError, SEED};

/// The parallelism cap every scheduler gets.
pub const CAP: usize = 64;
/// The most scheduling may cost per step.
pub const TARGET_NS_PER_STEP: f64 = 2000.0;

/// A third-party scheduler run on the same graph: returns the time it took to run every node
/// of the graph with at most `cap` running at once, and how many nodes ran.
pub trait ExternalScheduler {
    /// The scheduler's name for the table (with its version).
    fn name(&self) -> String;
    /// Runs `dag` on `rt` with at most `cap` nodes running at once.
    fn run(&self, dag: &Dag, cap: usize, rt: &Runtime) -> Result<(Duration, usize), String>;
}

/// A provider whose every call returns at once.
#[derive(Debug, Default)]
pub struct InstantProvider;

#[async_trait]
impl Provider for InstantProvider {
    fn name(&self) -> &str {
        "instant"
    }

    async fn apply(&self, _req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        Ok(Outputs::new())
    }

    async fn observe(&self, _req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(Observed::Absent)
    }

    async fn destroy(&self, _req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// The plan that creates every step of `dag`.
pub fn plan_of(dag: &Dag) -> Result<Plan, BenchError> {
    Planner::new(dag.to_steps(), &State::default())
        .plan()
        .map_err(|e| BenchError::new("planning the scheduling graph failed", e))
}

/// One bmac run of `plan` journaling to a `MemoryStore`; returns its time after checking
/// every step succeeded.
pub fn run_bmac(plan: Plan, cap: usize, rt: &Runtime) -> Result<Duration, BenchError> {
    let store = MemoryStore::new();
    let took = run_bmac_into(plan, cap, rt, &store)?;
    drop(store);
    Ok(took)
}

/// One bmac run of `plan` (provider calls return at once) journaling to `store`; returns its
/// time after checking every step succeeded.
pub fn run_bmac_into(
    plan: Plan,
    cap: usize,
    rt: &Runtime,
    store: &dyn StateStore,
) -> Result<Duration, BenchError> {
    let n = plan.len();
    let executor =
        Executor::new(Providers::new().fallback(Arc::new(InstantProvider))).parallelism(cap);
    let start = Instant::now();
    let report = rt
        .block_on(executor.run(plan, store))
        .map_err(|e| BenchError::new("the bmac run failed", e))?;
    let took = start.elapsed();
    if report.counts.succeeded != n {
        return Err(BenchError(format!(
            "bmac ran {} of {n} steps",
            report.counts.succeeded
        )));
    }
    Ok(took)
}

/// The minimal scheduler: dependency counters, a FIFO ready queue, a semaphore for the cap,
/// spawned tasks in a `FuturesUnordered`. Returns how many steps ran.
pub async fn run_baseline(dag: &Dag, children: &[Vec<u32>], cap: usize) -> usize {
    let mut pending: Vec<u32> = dag.parents.iter().map(|p| p.len() as u32).collect();
    let mut ready: VecDeque<u32> = (0..dag.len() as u32)
        .filter(|&i| pending[i as usize] == 0)
        .collect();
    let permits = Arc::new(Semaphore::new(cap));
    let mut running = FuturesUnordered::new();
    let mut done = 0;
    loop {
        while let Some(&i) = ready.front() {
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                break;
            };
            ready.pop_front();
            running.push(tokio::spawn(async move {
                let _permit = permit;
                std::hint::black_box(i)
            }));
        }
        let Some(finished) = running.next().await else {
            break;
        };
        // A step task that panicked never completes its dependents; the count shows it.
        let Ok(i) = finished else { continue };
        done += 1;
        for &c in &children[i as usize] {
            let left = &mut pending[c as usize];
            *left -= 1;
            if *left == 0 {
                ready.push_back(c);
            }
        }
    }
    done
}

/// The tokio runtime a row was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// One worker thread per core; the run's own future is driven by `block_on`'s thread, so
    /// every message between a step task and the coordinator crosses threads.
    MultiThread,
    /// Everything on one thread: what is left is the schedulers' own work.
    CurrentThread,
}

impl Flavour {
    /// A runtime of this flavour.
    pub fn runtime(self) -> Result<Runtime, BenchError> {
        match self {
            Flavour::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        }
        .enable_all()
        .build()
        .map_err(|e| BenchError::new("cannot start a tokio runtime", e))
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::MultiThread => "multi-thread",
            Flavour::CurrentThread => "current-thread",
        })
    }
}

/// A row of the table.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    /// Which graph.
    pub graph: String,
    /// The runtime.
    pub runtime: Flavour,
    /// Steps.
    pub steps: usize,
    /// bmac's time per step, ns.
    pub bmac_ns: f64,
    /// The baseline's time per step, ns.
    pub baseline_ns: f64,
    /// The external scheduler's time per step, ns, or why it could not run.
    pub external_ns: Result<f64, String>,
}

/// Measures one graph.
pub fn measure(
    label: &str,
    dag: &Dag,
    reps: usize,
    rt: &Runtime,
    external: Option<&dyn ExternalScheduler>,
) -> Result<ScheduleRow, BenchError> {
    let n = dag.len();
    let per_step = |d: Duration| d.as_nanos() as f64 / n as f64;
    let plan = plan_of(dag)?;
    let mut failure = None;
    let bmac = min_of(reps, || {
        run_bmac(plan.clone(), CAP, rt).unwrap_or_else(|e| {
            failure = Some(e);
            Duration::ZERO
        })
    });
    let children = dag.children();
    let baseline = min_of(reps, || {
        let start = Instant::now();
        let ran = rt.block_on(run_baseline(dag, &children, CAP));
        let took = start.elapsed();
        if ran != n {
            failure = Some(BenchError(format!("the baseline ran {ran} of {n} steps")));
        }
        took
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let external_ns = match external {
        None => Err("not run".to_owned()),
        Some(ext) => {
            let mut best: Result<Duration, String> = Err("no run".to_owned());
            for _ in 0..reps.max(1) {
                match ext.run(dag, CAP, rt) {
                    Ok((took, ran)) if ran == n => {
                        best = Ok(best.map_or(took, |b: Duration| b.min(took)));
                    }
                    Ok((_, ran)) => {
                        best = Err(format!("ran {ran} of {n} nodes"));
                        break;
                    }
                    Err(e) => {
                        best = Err(e);
                        break;
                    }
                }
            }
            best.map(per_step)
        }
    };
    Ok(ScheduleRow {
        graph: label.to_owned(),
        runtime: Flavour::MultiThread,
        steps: n,
        bmac_ns: per_step(bmac),
        baseline_ns: per_step(baseline),
        external_ns,
    })
}

/// The graphs of the table: a random DAG, independent steps, a chain.
pub fn graphs(quick: bool) -> Vec<(String, Dag)> {
    let (big, chain) = if quick { (1_000, 200) } else { (10_000, 1_000) };
    [
        (Shape::Random, big),
        (Shape::Independent, big),
        (Shape::Chain, chain),
    ]
    .into_iter()
    .map(|(shape, n)| (format!("{shape} {n}"), Dag::generate(shape, n, SEED)))
    .collect()
}

/// Runs the scheduling table.
pub fn run(
    quick: bool,
    external: Option<&dyn ExternalScheduler>,
) -> Result<(Table, Vec<ScheduleRow>), BenchError> {
    let reps = if quick { 2 } else { 5 };
    let mut rows = Vec::new();
    for flavour in [Flavour::MultiThread, Flavour::CurrentThread] {
        let rt = flavour.runtime()?;
        for (label, dag) in graphs(quick) {
            eprintln!("scheduling: {label}, {flavour}");
            let mut row = measure(&label, &dag, reps, &rt, external)?;
            row.runtime = flavour;
            rows.push(row);
        }
    }
    let ext_name = external.map_or_else(|| "external".to_owned(), |e| e.name());
    Ok((table(&rows, &ext_name), rows))
}

fn table(rows: &[ScheduleRow], ext_name: &str) -> Table {
    let ext_col = format!("{ext_name} ns/step");
    let mut t = Table::new(
        format!("2. Scheduling overhead: steps that return at once, cap {CAP}"),
        &[
            "graph",
            "runtime",
            "bmac ns/step",
            "baseline ns/step",
            &ext_col,
            "bmac ÷ baseline",
            &format!("bmac ÷ {ext_name}"),
        ],
    );
    for r in rows {
        let (ext, vs) = match &r.external_ns {
            Ok(ns) => (format!("{ns:.0}"), ratio(r.bmac_ns / ns)),
            Err(e) => (format!("n/a ({e})"), "n/a".to_owned()),
        };
        t.row(vec![
            r.graph.clone(),
            r.runtime.to_string(),
            format!("{:.0}", r.bmac_ns),
            format!("{:.0}", r.baseline_ns),
            ext,
            ratio(r.bmac_ns / r.baseline_ns),
            vs,
        ]);
    }
    t.note(
        "bmac: Executor::run with MemoryStore (Intent + Applied journaled per step), provider \
         returns at once. Baseline: dependency counters + FuturesUnordered + Semaphore, spawned \
         tasks. Each graph on a multi-thread tokio runtime (one worker per core) and on a \
         current-thread one. Minimum of 5 runs.",
    );
    if let Some(worst) = rows.iter().max_by(|a, b| a.bmac_ns.total_cmp(&b.bmac_ns)) {
        t.verdict(
            format!("bmac under {TARGET_NS_PER_STEP:.0} ns per step"),
            worst.bmac_ns < TARGET_NS_PER_STEP,
            format!(
                "worst {:.0} ns ({}, {})",
                worst.bmac_ns, worst.graph, worst.runtime
            ),
        );
    }
    let slower: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.external_ns {
            Ok(ns) if r.bmac_ns >= *ns => Some(format!(
                "{} {} ({:.2}×)",
                r.graph,
                r.runtime,
                r.bmac_ns / ns
            )),
            Err(e) => Some(format!(
                "{} {}: {ext_name} did not run ({e})",
                r.graph, r.runtime
            )),
            Ok(_) => None,
        })
        .collect();
    let best = rows
        .iter()
        .filter_map(|r| r.external_ns.as_ref().ok().map(|ns| r.bmac_ns / ns))
        .fold(0.0f64, f64::max);
    t.verdict(
        format!("faster than {ext_name} on every graph"),
        slower.is_empty(),
        if slower.is_empty() {
            format!("bmac ÷ {ext_name} at most {best:.2}")
        } else {
            format!("not faster on {}", slower.join(", "))
        },
    );
    t
}

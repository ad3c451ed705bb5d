//! Table 3 — critical path: wall time ÷ lower bound on tokio's paused clock.
//!
//! A seeded random DAG (up to 8 parents per step) gets seeded log-normal step latencies
//! (median 1 s, σ = 1). Every step's provider call sleeps its latency on a paused clock, so
//! a run's "wall time" is virtual, exact and free of machine noise — it measures only the
//! *order* steps were started in. The provider's `expected_duration` is the step's latency,
//! which is what bmac's longest-remaining-path order weighs.
//!
//! Lower bound = max(critical path, total work ÷ cap): no schedule can beat either. Rows:
//! - **bmac critical path**: `SchedulingOrder::CriticalPath` (the default);
//! - **bmac FIFO**: `SchedulingOrder::Fifo`, steps start in the order they became ready;
//! - **level-by-level**: written here — every step of depth *d* (longest path from a root)
//!   runs, at most `cap` at once, and depth *d + 1* starts only when all of depth *d* ended.
//!
//! Target: bmac's critical-path order within 1.05 of the lower bound at every cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::exec::{Executor, SchedulingOrder};
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError, Providers,
};
use bmac_core::state::MemoryStore;
use bmac_core::step::{Outputs, Step};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::graphs::{lognormal_latencies, step_index, Dag, Shape};
use crate::scheduling::plan_of;
use crate::table::{duration, ratio, Table};
use crate::{BenchError, SEED};

/// The parallelism caps measured.
pub const CAPS: [usize; 3] = [4, 16, 64];
/// The most bmac's order may exceed the lower bound by.
pub const TARGET_RATIO: f64 = 1.05;
/// The median step latency.
pub const MEDIAN: Duration = Duration::from_secs(1);
/// σ of the latencies' logarithm.
pub const SIGMA: f64 = 1.0;

/// A provider that sleeps each step's seeded latency and reports it as its estimate.
#[derive(Debug)]
pub struct LatencyProvider {
    latencies: Vec<Duration>,
}

impl LatencyProvider {
    /// A provider where step `s<i>` takes `latencies[i]`.
    pub fn new(latencies: Vec<Duration>) -> Self {
        LatencyProvider { latencies }
    }

    fn latency(&self, step: &Step) -> Result<Duration, ProviderError> {
        step_index(&step.id)
            .and_then(|i| self.latencies.get(i).copied())
            .ok_or_else(|| ProviderError::permanent(format!("no latency for `{}`", step.id)))
    }
}

#[async_trait]
impl Provider for LatencyProvider {
    fn name(&self) -> &str {
        "latency"
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        self.latency(step).ok()
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        tokio::time::sleep(self.latency(req.step)?).await;
        Ok(Outputs::new())
    }

    async fn observe(&self, _req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(Observed::Absent)
    }

    async fn destroy(&self, _req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A current-thread runtime whose clock starts paused (it advances only when every task
/// waits on a timer).
fn paused_runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| BenchError::new("cannot start a paused tokio runtime", e))
}

/// Virtual wall time of a bmac run in `order`.
pub fn run_bmac(
    dag: &Dag,
    latencies: &[Duration],
    cap: usize,
    order: SchedulingOrder,
) -> Result<Duration, BenchError> {
    let plan = plan_of(dag)?;
    let provider = Arc::new(LatencyProvider::new(latencies.to_vec()));
    let executor = Executor::new(Providers::new().fallback(provider))
        .parallelism(cap)
        .order(order)
        .seed(SEED);
    let store = MemoryStore::new();
    let rt = paused_runtime()?;
    let (report, took) = rt.block_on(async {
        let start = Instant::now();
        let report = executor.run(plan, &store).await;
        (report, start.elapsed())
    });
    let report = report.map_err(|e| BenchError::new("the bmac run failed", e))?;
    if report.counts.succeeded != dag.len() {
        return Err(BenchError(format!(
            "bmac ran {} of {} steps",
            report.counts.succeeded,
            dag.len()
        )));
    }
    Ok(took)
}

/// Virtual wall time of the level-by-level baseline.
pub fn run_levels(dag: &Dag, latencies: &[Duration], cap: usize) -> Result<Duration, BenchError> {
    let levels = dag.levels();
    let mut by_level: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, l) in levels.iter().enumerate() {
        by_level.entry(*l).or_default().push(i);
    }
    let depth = levels.iter().max().map_or(0, |d| d + 1);
    let rt = paused_runtime()?;
    Ok(rt.block_on(async {
        let start = Instant::now();
        for level in 0..depth {
            let mut waiting = by_level.remove(&level).unwrap_or_default().into_iter();
            let mut running = FuturesUnordered::new();
            loop {
                while running.len() < cap {
                    let Some(i) = waiting.next() else { break };
                    running.push(tokio::time::sleep(latencies[i]));
                }
                if running.next().await.is_none() {
                    break;
                }
            }
        }
        start.elapsed()
    }))
}

/// One cap's row.
#[derive(Debug, Clone)]
pub struct CriticalRow {
    /// The cap.
    pub cap: usize,
    /// The longest weighted path.
    pub critical_path: Duration,
    /// Total work ÷ cap.
    pub work_per_cap: Duration,
    /// bmac, longest-path first.
    pub bmac: Duration,
    /// bmac, FIFO.
    pub fifo: Duration,
    /// Level by level.
    pub levels: Duration,
}

impl CriticalRow {
    /// max(critical path, work ÷ cap).
    pub fn lower_bound(&self) -> Duration {
        self.critical_path.max(self.work_per_cap)
    }

    /// `d` ÷ the lower bound.
    pub fn ratio(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.lower_bound().as_secs_f64().max(1e-9)
    }
}

/// Runs the critical-path table.
pub fn run(quick: bool) -> Result<(Table, Vec<CriticalRow>), BenchError> {
    let n = if quick { 200 } else { 1_000 };
    let dag = Dag::generate(Shape::Random, n, SEED);
    let latencies = lognormal_latencies(n, SEED, MEDIAN, SIGMA);
    let critical_path = dag.critical_path(&latencies);
    let work: Duration = latencies.iter().sum();
    let mut rows = Vec::new();
    for cap in CAPS {
        eprintln!("critical path: cap {cap}");
        rows.push(CriticalRow {
            cap,
            critical_path,
            work_per_cap: work / cap as u32,
            bmac: run_bmac(&dag, &latencies, cap, SchedulingOrder::CriticalPath)?,
            fifo: run_bmac(&dag, &latencies, cap, SchedulingOrder::Fifo)?,
            levels: run_levels(&dag, &latencies, cap)?,
        });
    }
    Ok((table(&rows, n, work), rows))
}

fn table(rows: &[CriticalRow], n: usize, work: Duration) -> Table {
    let mut t = Table::new(
        format!("3. Critical path: wall time ÷ lower bound, random DAG of {n} steps"),
        &[
            "cap",
            "critical path",
            "work ÷ cap",
            "bmac critical-path",
            "ratio",
            "bmac FIFO",
            "ratio ",
            "level-by-level",
            "ratio  ",
        ],
    );
    for r in rows {
        t.row(vec![
            r.cap.to_string(),
            duration(r.critical_path),
            duration(r.work_per_cap),
            duration(r.bmac),
            ratio(r.ratio(r.bmac)),
            duration(r.fifo),
            ratio(r.ratio(r.fifo)),
            duration(r.levels),
            ratio(r.ratio(r.levels)),
        ]);
    }
    t.note(format!(
        "Seeded log-normal latencies (median {}, σ = {SIGMA}), total work {}; tokio paused \
         clock, so times are virtual and exact. Lower bound = max(critical path, work ÷ cap).",
        duration(MEDIAN),
        duration(work)
    ));
    if let Some(worst) = rows
        .iter()
        .max_by(|a, b| a.ratio(a.bmac).total_cmp(&b.ratio(b.bmac)))
    {
        let r = worst.ratio(worst.bmac);
        t.verdict(
            format!("bmac critical-path order ≤ {TARGET_RATIO} × lower bound at every cap"),
            r <= TARGET_RATIO,
            format!("worst {r:.3} (cap {})", worst.cap),
        );
    }
    t
}

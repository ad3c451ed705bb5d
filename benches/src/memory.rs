//! Table 5 — memory: peak RSS per step of planning and applying a large graph.
//!
//! A peak (VmHWM) only ever grows, so every measurement runs in a process of its own: the
//! benchmark re-executes itself (or the `bmac-memory-probe` binary) with
//! `--memory-probe <steps> <local|memory> <scratch dir>`; the child ([`probe`]) reads its
//! resident size (VmRSS) first, then builds a seeded random DAG of spec-less steps in code,
//! plans it against an empty state and applies it with the executor's defaults on the
//! simulated cloud (`SimProvider`, speed 0, in-memory `SimCloud`), journaling to a
//! `LocalStore` in a temporary directory or to a `MemoryStore`. It then prints one line with
//! the baseline and the peak (VmHWM); the parent ([`measure`]) parses it.
//!
//! Bytes per step = (peak − baseline) ÷ steps. With `MemoryStore` the store itself keeps every
//! record in memory, so that row measures the engine *plus* an in-memory journal.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bmac_core::exec::Executor;
use bmac_core::plan::Planner;
use bmac_core::provider::Providers;
use bmac_core::state::{LocalStore, MemoryStore, State, StateStore};
use bmac_providers::{SimCloud, SimConfig, SimProvider};

use crate::graphs::{Dag, Shape};
use crate::table::{bytes, Table};
use crate::{BenchError, SEED};

/// The most memory a step may cost.
pub const TARGET_BYTES_PER_STEP: f64 = 2048.0;
/// The argument that makes a benchmark binary act as the probe.
pub const PROBE_FLAG: &str = "--memory-probe";
/// The prefix of the probe's result line.
const RESULT_PREFIX: &str = "bmac-memory-probe";

/// Which state store the probe journals to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStore {
    /// `LocalStore` in a temporary directory.
    Local,
    /// `MemoryStore`.
    Memory,
}

impl fmt::Display for ProbeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeStore::Local => "local",
            ProbeStore::Memory => "memory",
        })
    }
}

impl std::str::FromStr for ProbeStore {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(ProbeStore::Local),
            "memory" => Ok(ProbeStore::Memory),
            other => Err(BenchError(format!(
                "unknown probe store `{other}` (expected local or memory)"
            ))),
        }
    }
}

/// What one probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// Steps planned and applied.
    pub steps: usize,
    /// The store.
    pub store: ProbeStore,
    /// Resident size before building the steps, KiB.
    pub baseline_kib: u64,
    /// Peak resident size at the end, KiB.
    pub peak_kib: u64,
    /// Steps the run reported as succeeded.
    pub succeeded: usize,
}

impl ProbeReport {
    /// (peak − baseline) ÷ steps, in bytes.
    pub fn bytes_per_step(&self) -> f64 {
        (self.peak_kib.saturating_sub(self.baseline_kib) * 1024) as f64 / self.steps.max(1) as f64
    }

    fn line(&self) -> String {
        format!(
            "{RESULT_PREFIX} steps={} store={} baseline_kib={} peak_kib={} succeeded={}",
            self.steps, self.store, self.baseline_kib, self.peak_kib, self.succeeded
        )
    }

    fn parse(text: &str) -> Result<Self, BenchError> {
        let line = text
            .lines()
            .find(|l| l.starts_with(RESULT_PREFIX))
            .ok_or_else(|| BenchError(format!("the probe printed no result line: {text:?}")))?;
        let field = |name: &str| -> Result<&str, BenchError> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| BenchError(format!("the probe's line lacks `{name}`: {line}")))
        };
        let number = |name: &str| -> Result<u64, BenchError> {
            field(name)?
                .parse()
                .map_err(|e| BenchError::new(&format!("the probe's `{name}`"), e))
        };
        Ok(ProbeReport {
            steps: number("steps")? as usize,
            store: field("store")?.parse()?,
            baseline_kib: number("baseline_kib")?,
            peak_kib: number("peak_kib")?,
            succeeded: number("succeeded")? as usize,
        })
    }
}

/// A `kB` field of `/proc/self/status`.
pub fn status_kib(field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| BenchError::new("reading /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError(format!("/proc/self/status has no `{field}`")))
}

/// The measurement itself; runs in the probe process.
pub fn probe(steps: usize, kind: ProbeStore, scratch: &Path) -> Result<ProbeReport, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::new("starting a runtime", e))?;
    let dir = tempfile::Builder::new()
        .prefix("bmac-bench-memory-")
        .tempdir_in(scratch)
        .map_err(|e| BenchError::new("creating a scratch directory", e))?;
    let config = SimConfig {
        seed: SEED,
        speed: 0.0,
        ..SimConfig::default()
    };
    let sim = SimProvider::with_cloud(config, Arc::new(SimCloud::in_memory()))
        .map_err(|e| BenchError::new("configuring the simulated cloud", e))?;
    let local;
    let memory;
    let store: &dyn StateStore = match kind {
        ProbeStore::Local => {
            local = LocalStore::open(dir.path()).map_err(|e| BenchError::new("opening", e))?;
            &local
        }
        ProbeStore::Memory => {
            memory = MemoryStore::new();
            &memory
        }
    };
    let baseline_kib = status_kib("VmRSS")?;

    let spec = Dag::generate(Shape::Random, steps, SEED).to_steps();
    let plan = Planner::new(spec, &State::default())
        .plan()
        .map_err(|e| BenchError::new("planning", e))?;
    let executor = Executor::new(Providers::new().fallback(Arc::new(sim))).seed(SEED);
    let report = rt
        .block_on(executor.run(plan, store))
        .map_err(|e| BenchError::new("applying", e))?;
    let peak_kib = status_kib("VmHWM")?;
    Ok(ProbeReport {
        steps,
        store: kind,
        baseline_kib,
        peak_kib,
        succeeded: report.counts.succeeded,
    })
}

/// The probe's entry point: `args` are what follows [`PROBE_FLAG`]. Prints the result line;
/// returns the process exit code.
pub fn probe_main(args: &[String]) -> i32 {
    let run = || -> Result<ProbeReport, BenchError> {
        let [steps, store, scratch] = args else {
            return Err(BenchError(format!(
                "usage: {PROBE_FLAG} <steps> <local|memory> <scratch dir>, got {args:?}"
            )));
        };
        let steps: usize = steps
            .parse()
            .map_err(|e| BenchError::new("the step count", e))?;
        let store: ProbeStore = store.parse()?;
        probe(steps, store, Path::new(scratch))
    };
    match run() {
        Ok(report) => {
            println!("{}", report.line());
            0
        }
        Err(e) => {
            eprintln!("memory probe failed: {e}");
            1
        }
    }
}

/// Runs one probe in a child process `exe` and parses its result.
pub fn measure(
    exe: &Path,
    steps: usize,
    store: ProbeStore,
    scratch: &Path,
) -> Result<ProbeReport, BenchError> {
    let out = Command::new(exe)
        .arg(PROBE_FLAG)
        .arg(steps.to_string())
        .arg(store.to_string())
        .arg(scratch)
        .output()
        .map_err(|e| BenchError::new(&format!("starting the probe {}", exe.display()), e))?;
    if !out.status.success() {
        return Err(BenchError(format!(
            "the memory probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    ProbeReport::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Runs the memory table: one probe per store.
pub fn run(
    quick: bool,
    exe: &Path,
    scratch: &Path,
) -> Result<(Table, Vec<ProbeReport>), BenchError> {
    let steps = if quick { 2_000 } else { 100_000 };
    let mut reports = Vec::new();
    for store in [ProbeStore::Local, ProbeStore::Memory] {
        eprintln!("memory: {steps} steps, {store} store");
        reports.push(measure(exe, steps, store, scratch)?);
    }
    Ok((table(&reports), reports))
}

fn table(reports: &[ProbeReport]) -> Table {
    let mut t = Table::new(
        "5. Memory: peak RSS per step, plan + apply on the simulated cloud",
        &[
            "steps",
            "state store",
            "baseline RSS",
            "peak RSS",
            "bytes per step",
        ],
    );
    for r in reports {
        t.row(vec![
            r.steps.to_string(),
            match r.store {
                ProbeStore::Local => "LocalStore (tempdir)".to_owned(),
                ProbeStore::Memory => "MemoryStore".to_owned(),
            },
            bytes(r.baseline_kib * 1024),
            bytes(r.peak_kib * 1024),
            format!("{:.0}", r.bytes_per_step()),
        ]);
    }
    t.note(
        "One child process per row; VmRSS before building the steps, VmHWM after the apply. \
         Seeded random DAG (up to 8 parents), spec-less steps built in code, planned against \
         an empty state, applied with the executor's defaults on SimProvider (speed 0, \
         in-memory SimCloud).",
    );
    for r in reports {
        t.verdict(
            format!(
                "under {TARGET_BYTES_PER_STEP:.0} bytes per step ({} steps, {} store)",
                r.steps, r.store
            ),
            r.bytes_per_step() < TARGET_BYTES_PER_STEP,
            format!("{:.0} bytes per step", r.bytes_per_step()),
        );
    }
    t
}

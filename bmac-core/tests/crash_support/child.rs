//! The child side of the crash tests: what one `bmac apply` does, in a process the parent
//! may SIGKILL at any moment.
//!
//! It loads the state from a [`LocalStore`] in the test directory, plans the scenario's steps
//! against it, and runs the plan with parallelism 8 against the [`Cloud`]. It tells the parent
//! what it is doing on stdout, one `bmac-crash-child: …` line per milestone, and exits:
//! - 0 after a run that succeeded (`done …` line with the report's counts);
//! - [`EXIT_LOCKED`] when the state is locked (`locked pid=… stale=…` line);
//! - [`EXIT_RUN_FAILED`] when steps failed (one `failure …` line each);
//! - by panic (101) on anything else, with the error on stderr.
//!
//! Compaction is set low ([`COMPACT_EVERY`]) so kills also land around snapshot writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bmac_core::exec::ExecError;
use bmac_core::{LocalStore, Planner, Providers, StateStore};

use super::cloud::{Cloud, Hang};
use super::scenario::Scenario;

/// Set (to anything) in the child's environment; the child entry does nothing without it.
pub const ENV_CHILD: &str = "BMAC_CRASH_CHILD";
/// The test directory (state in `state/`, the cloud in `cloud.log`).
pub const ENV_DIR: &str = "BMAC_CRASH_DIR";
/// The [`Scenario`], encoded.
pub const ENV_SCENARIO: &str = "BMAC_CRASH_SCENARIO";
/// Optional: a [`Hang`], encoded: a step whose apply hangs before or after its side effect.
pub const ENV_HANG: &str = "BMAC_CRASH_HANG";

/// Exit code when the state is locked.
pub const EXIT_LOCKED: i32 = 3;
/// Exit code when the run finished with failed steps.
pub const EXIT_RUN_FAILED: i32 = 4;
/// The prefix of every line the parent reads.
pub const MARK: &str = "bmac-crash-child:";

/// Records per journal before the store compacts it: low, so compactions happen mid-test.
pub const COMPACT_EVERY: usize = 200;

/// Where the state store lives under the test directory.
pub fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// Where the cloud file lives under the test directory.
pub fn cloud_file(dir: &Path) -> PathBuf {
    dir.join("cloud.log")
}

/// Runs the child if this process was started as one; returns `false` otherwise.
pub fn run_if_child() -> bool {
    if std::env::var_os(ENV_CHILD).is_none() {
        return false;
    }
    let dir = PathBuf::from(std::env::var_os(ENV_DIR).expect("the parent sets BMAC_CRASH_DIR"));
    let scenario = std::env::var(ENV_SCENARIO).expect("the parent sets BMAC_CRASH_SCENARIO");
    let scenario = Scenario::decode(&scenario).unwrap_or_else(|e| panic!("{e}"));
    let hang = std::env::var(ENV_HANG)
        .ok()
        .map(|h| Hang::decode(&h).unwrap_or_else(|e| panic!("{e}")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = runtime.block_on(apply(&dir, scenario, hang));
    if code != 0 {
        std::process::exit(code);
    }
    true
}

async fn apply(dir: &Path, scenario: Scenario, hang: Option<Hang>) -> i32 {
    let store = LocalStore::builder(state_dir(dir))
        .compact_every(COMPACT_EVERY)
        .open()
        .unwrap_or_else(|e| panic!("opening the state store: {e:?}"));
    let loaded = store
        .load()
        .await
        .unwrap_or_else(|e| panic!("loading state: {e:?}"));
    let steps = scenario.steps();
    let plan = Planner::new(steps, &loaded.state)
        .plan()
        .unwrap_or_else(|e| panic!("planning: {e:?}"));
    let cloud = Cloud::open(cloud_file(dir), scenario.seed(), hang)
        .unwrap_or_else(|e| panic!("opening the cloud file: {e}"));
    let executor =
        bmac_core::Executor::new(Providers::new().fallback(Arc::new(cloud))).parallelism(8);
    let summary = plan.summary();
    println!(
        "{MARK} running pid={} create={} update={} unchanged={} in_doubt={} warnings={}",
        std::process::id(),
        summary.create,
        summary.update,
        summary.unchanged,
        plan.nodes().iter().filter(|n| n.in_doubt).count(),
        loaded.warnings.len(),
    );
    match executor.run(plan, &store).await {
        Ok(report) => {
            let c = report.counts;
            println!(
                "{MARK} done succeeded={} unchanged={} adopted={} failed={} skipped={}",
                c.succeeded, c.unchanged, c.adopted, c.failed, c.skipped
            );
            for f in &report.failures {
                println!("{MARK} failure {} {}", f.id, f.error);
            }
            if report.is_success() {
                0
            } else {
                EXIT_RUN_FAILED
            }
        }
        Err(ExecError::Locked { holder, stale }) => {
            println!(
                "{MARK} locked pid={} stale={stale} id={}",
                holder.pid, holder.id
            );
            EXIT_LOCKED
        }
        Err(e) => panic!("the run could not start or finish: {e:?}"),
    }
}

//! The benchmark as a smoke test: every table is produced at quick sizes and its structural
//! invariants hold. Timing is never asserted — these machines are too noisy for that — only
//! what must be true on any machine: every scheduler ran every step, no schedule beat the
//! lower bound, the journal counted its fsyncs and recovered its torn record, the probe
//! measured in a child process.

#[path = "../benches/dagrs_runner.rs"]
mod dagrs_runner;

use std::path::Path;

use bmac_benches::graphs::Shape;
use bmac_benches::memory::{self, ProbeStore};
use bmac_benches::scheduling::ExternalScheduler;
use bmac_benches::suite::{self, Options};
use bmac_benches::{critical_path, journal, planning, scheduling};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory")
}

#[test]
fn planning_table_covers_every_shape_and_size() {
    let (table, rows) = planning::run(&[50, 400], true).expect("planning runs");
    assert_eq!(rows.len(), Shape::PLANNING.len() * 2);
    assert_eq!(table.rows.len(), rows.len());
    for r in &rows {
        assert!(r.toposort > std::time::Duration::ZERO && r.empty > std::time::Duration::ZERO);
        assert!(r.full_ratio().is_finite() && r.empty_ratio().is_finite());
    }
    // Diamonds and random DAGs have more edges than steps; a chain has one fewer.
    let edges = |shape, n| {
        rows.iter()
            .find(|r| r.shape == shape && r.steps == n)
            .unwrap()
            .edges
    };
    assert_eq!(edges(Shape::Chain, 400), 399);
    assert!(edges(Shape::Random, 400) > 400);
    assert_eq!(table.verdicts.len(), 4, "{table}");
}

#[test]
fn every_scheduler_runs_every_step() {
    let dagrs = dagrs_runner::Dagrs;
    let (table, rows) = scheduling::run(true, Some(&dagrs)).expect("scheduling runs");
    assert_eq!(rows.len(), 6, "three graphs on two runtimes");
    for r in &rows {
        // `measure` fails when a scheduler ran fewer steps than the graph has; here the
        // external one must have run too, not been skipped.
        assert!(r.external_ns.is_ok(), "{}: {:?}", r.graph, r.external_ns);
        assert!(r.bmac_ns > 0.0 && r.baseline_ns > 0.0);
    }
    assert!(table.to_string().contains("dagrs 0.9 ns/step"), "{table}");
}

#[test]
fn the_dagrs_adapter_respects_dependencies_and_cap() {
    let dag = bmac_benches::graphs::Dag::generate(Shape::Diamond, 100, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, ran) = dagrs_runner::Dagrs.run(&dag, 4, &rt).expect("dagrs runs");
    assert_eq!(ran, 100);
}

#[test]
fn no_schedule_beats_the_lower_bound() {
    let (table, rows) = critical_path::run(true).expect("critical path runs");
    assert_eq!(rows.len(), critical_path::CAPS.len());
    for r in &rows {
        for (name, wall) in [("bmac", r.bmac), ("fifo", r.fifo), ("levels", r.levels)] {
            assert!(
                wall >= r.lower_bound(),
                "{name} at cap {} beat the lower bound: {wall:?} < {:?}",
                r.cap,
                r.lower_bound()
            );
        }
        // Level-by-level waits for whole levels; it can never beat a list schedule that
        // starts steps as soon as their own dependencies are done by much — but it may tie.
        assert!(r.levels >= r.critical_path);
    }
    // The paused clock makes the figures exact: a second run gives the same times.
    let (_, again) = critical_path::run(true).expect("critical path runs again");
    assert_eq!(
        rows.iter()
            .map(|r| (r.bmac, r.fifo, r.levels))
            .collect::<Vec<_>>(),
        again
            .iter()
            .map(|r| (r.bmac, r.fifo, r.levels))
            .collect::<Vec<_>>()
    );
    assert!(table.to_string().contains("level-by-level"));
}

#[test]
fn journal_table_counts_fsyncs_bytes_and_recovers_a_torn_record() {
    let dir = scratch();
    let (table, r) = journal::run(true, dir.path()).expect("journal runs");
    let sizes = journal::Sizes::new(true);
    assert_eq!(
        r.append_fsyncs, sizes.appends as u64,
        "one fsync per awaited append"
    );
    assert_eq!(
        r.rewrites_done, sizes.appends,
        "quick mode rewrites at every size"
    );
    // The run journals an intent and a completion per step, sharing syncs between steps.
    assert_eq!(r.run_records, 2 * sizes.appends as u64);
    assert!(
        r.run_fsyncs >= 1 && r.run_fsyncs < r.run_records,
        "{} syncs for {} records",
        r.run_fsyncs,
        r.run_records
    );
    assert!(r.run_bytes > 0 && r.rewrite_bytes > 5 * r.run_bytes);
    // Rewriting the whole state each time writes quadratically more than appending.
    assert!(
        r.rewrite_bytes > 20 * r.append_bytes,
        "{} vs {}",
        r.rewrite_bytes,
        r.append_bytes
    );
    assert_eq!(r.torn_warnings, 1);
    assert_eq!(r.torn_serial, sizes.torn_records as u64 - 1);
    assert_eq!(r.torn_continued_serial, sizes.torn_records as u64);
    let recovered = table
        .verdicts
        .iter()
        .find(|v| v.target.contains("torn"))
        .unwrap();
    assert!(recovered.met, "{table}");
}

#[test]
fn memory_probe_runs_in_a_child_process() {
    let dir = scratch();
    let exe = Path::new(env!("CARGO_BIN_EXE_bmac-memory-probe"));
    for store in [ProbeStore::Local, ProbeStore::Memory] {
        let r = memory::measure(exe, 500, store, dir.path()).expect("the probe runs");
        assert_eq!((r.steps, r.succeeded, r.store), (500, 500, store));
        assert!(r.peak_kib >= r.baseline_kib && r.baseline_kib > 0, "{r:?}");
    }
    let err = memory::measure(exe, 10, ProbeStore::Local, Path::new("/nonexistent/dir"))
        .expect_err("a scratch dir that cannot exist");
    assert!(err.to_string().contains("probe failed"), "{err}");
}

#[test]
fn the_quick_suite_prints_all_five_tables() {
    let dir = scratch();
    let dagrs = dagrs_runner::Dagrs;
    let options = Options {
        quick: true,
        probe_exe: Some(env!("CARGO_BIN_EXE_bmac-memory-probe").into()),
        scratch: dir.path().to_owned(),
        external: Some(&dagrs as &dyn ExternalScheduler),
        print: false,
        only: Vec::new(),
    };
    let tables: Vec<_> = suite::run(&options)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every table is measured");
    let titles: Vec<&str> = tables.iter().map(|t| t.title.as_str()).collect();
    for (i, t) in tables.iter().enumerate() {
        assert!(t.title.starts_with(&format!("{}.", i + 1)), "{titles:?}");
        assert!(!t.rows.is_empty() && !t.verdicts.is_empty(), "{t}");
        for row in &t.rows {
            assert_eq!(row.len(), t.headers.len());
        }
    }
    assert_eq!(tables.len(), 5);
}

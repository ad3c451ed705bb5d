//! When the cloud misbehaves, through the CLI: a step that fails for good (exit 1, fail-fast
//! stops new steps, `--keep-going` builds everything that does not depend on the failure and
//! skips exactly what does), throttling retried until it passes, and drift found by
//! `bmac drift` (exit 2). Faults come from the sim's `BMAC_SIM_FAULTS`; drift from a `tamper`
//! line appended to the sim's cloud log — an edit made outside bmac.

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::{events, finished, ids, text, Sandbox};

/// Every step of the quickstart fixture.
const STEPS: usize = 28;
/// The CNI fails every apply, for good.
const CNI_BROKEN: (&str, &str) = ("BMAC_SIM_FAULTS", "cni:permanent:1");

/// Every step that depends on `root`, directly or not.
fn dependents_of(root: &str, edges: &[(String, String)]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![root.to_owned()];
    while let Some(id) = frontier.pop() {
        for (step, dep) in edges {
            if *dep == id && found.insert(step.clone()) {
                frontier.push(step.clone());
            }
        }
    }
    found
}

#[test]
fn a_failed_step_fails_the_apply_and_the_next_apply_finishes_the_job() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_with_env(&["apply", "--auto-approve"], &[CNI_BROKEN], 1);
    let progress = text(&out.stderr);
    assert!(
        progress.contains("cni: FAILED after "),
        "the failure is named: {progress}"
    );
    assert!(
        progress.contains("simulated fault `cni:permanent:1`"),
        "{progress}"
    );
    assert!(
        progress.contains("Stopping: a step failed, so no new steps start"),
        "{progress}"
    );
    assert!(
        progress.contains("node_pool.workers: skipped ("),
        "{progress}"
    );
    let last = progress.lines().last().unwrap_or_default();
    assert!(last.starts_with("Apply failed. "), "{progress}");
    assert!(last.contains(" 1 failed, "), "{progress}");

    // Steps the failed run finished; a step whose intent was journalled but that never
    // started before fail-fast stopped the run is in doubt, and rightly observed again.
    let built = sandbox.ids_with_status("applied");
    assert!(!built.contains("node_pool.workers"));
    let resumed = sandbox.apply_json();
    let started: BTreeSet<_> = ids(&resumed, "step_started").into_iter().collect();
    assert!(started.contains("cni"));
    assert!(
        started.iter().all(|id| id == "cni" || !built.contains(id)),
        "steps built by the failed run ran again: {started:?} vs {built:?}"
    );
    assert_eq!(finished(&resumed)["outcome"], "succeeded");
    assert_eq!(sandbox.state_ids().len(), STEPS);
}

#[test]
fn keep_going_builds_everything_that_does_not_depend_on_the_failure() {
    let sandbox = Sandbox::new("quickstart.toml");
    let edges = sandbox.dependency_edges();
    let downstream = dependents_of("cni", &edges);
    assert!(downstream.contains("node_pool.workers") && downstream.contains("policy.engine"));

    let out = sandbox.run_with_env(
        &[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--keep-going",
        ],
        &[CNI_BROKEN],
        1,
    );
    let run = events(&out.stdout);
    assert_eq!(ids(&run, "step_failed"), ["cni"]);
    let skipped: BTreeSet<_> = ids(&run, "step_skipped").into_iter().collect();
    assert_eq!(
        skipped, downstream,
        "exactly what depends on cni is skipped"
    );
    for e in run.iter().filter(|e| e["event"] == "step_skipped") {
        assert_eq!(e["reason"], "dependency_failed", "{e}");
    }
    let succeeded: BTreeSet<_> = ids(&run, "step_succeeded").into_iter().collect();
    assert_eq!(succeeded.len(), STEPS - 1 - downstream.len());
    assert!(succeeded.is_disjoint(&downstream));
    let end = finished(&run);
    assert_eq!(end["outcome"], "failed");
    assert_eq!(end["counts"]["failed"], 1);
    assert_eq!(end["counts"]["skipped"], downstream.len());
}

#[test]
fn throttled_calls_are_retried_and_reported() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_with_env(
        &["apply", "--auto-approve"],
        &[("BMAC_SIM_FAULTS", "node_pool:throttle:1:2")],
        0,
    );
    let progress = text(&out.stderr);
    for pool in ["node_pool.workers", "node_pool.system"] {
        for attempt in [1, 2] {
            assert!(
                progress.contains(&format!("{pool}: attempt {attempt} failed (429 ")),
                "{progress}"
            );
        }
        assert!(progress.contains(&format!("{pool}: created after ")));
    }
    let retry_line = progress
        .lines()
        .find(|l| l.starts_with("node_pool.workers: attempt 1 failed"))
        .unwrap_or_default();
    assert_masked_snapshot!("retry_line", retry_line);
    assert!(
        progress.contains("Apply complete! 28 changed"),
        "{progress}"
    );
}

/// Someone scales the workers pool to 7 by hand: a `tamper` op in the sim's cloud log, the
/// format `bmac-providers/src/sim/cloud.rs` replays.
fn scale_workers_by_hand(sandbox: &Sandbox) {
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(sandbox.state_dir().join("sim-cloud.log"))
        .expect("open the sim cloud log");
    writeln!(
        log,
        r#"{{"op":"tamper","id":"node_pool.workers","pointer":"/scaling/desired","value":7}}"#
    )
    .expect("append a tamper op");
}

#[test]
fn drift_reports_an_edit_made_outside_bmac() {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let clean = sandbox.run_expecting(&["drift"], 0);
    assert_eq!(
        text(&clean.stdout),
        "No drift: everything bmac built is as it was applied.\n"
    );

    scale_workers_by_hand(&sandbox);

    let drifted = sandbox.run_expecting(&["drift"], 2);
    let report = text(&drifted.stdout);
    assert!(report.contains("~ node_pool.workers (node_pool) changed outside bmac:"));
    assert!(report.contains("/scaling/desired: applied 3 → now 7"));
    assert_masked_snapshot!("drift_report", report);

    let json = sandbox.run_expecting(&["--output", "json", "drift"], 2);
    let report = events(&json.stdout);
    let steps = report[0]["steps"].as_array().expect("a list of steps");
    let moved: Vec<_> = steps.iter().filter(|s| s["status"] != "in_sync").collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["id"], "node_pool.workers");
    assert_eq!(moved[0]["fields"][0]["actual"], 7);
}

/// What the drift report promises: `bmac apply` puts back what the spec says (it refreshes
/// from the cloud before planning), touching only the step that moved; with `--refresh=false`
/// it plans against recorded state alone and sees nothing to do.
#[test]
fn apply_repairs_drift() {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    scale_workers_by_hand(&sandbox);
    sandbox.run_expecting(&["drift"], 2);
    let blind = sandbox.run_expecting(&["plan", "--refresh=false", "--detailed-exitcode"], 0);
    assert!(text(&blind.stdout).contains("No changes."));
    let plan = sandbox.run_expecting(&["plan", "--detailed-exitcode"], 2);
    assert!(
        text(&plan.stdout).contains("~ node_pool.workers"),
        "{}",
        text(&plan.stdout)
    );
    assert!(
        text(&plan.stdout).contains("/scaling/desired: 7 → 3"),
        "{}",
        text(&plan.stdout)
    );

    let repaired = sandbox.apply_json();
    assert_eq!(ids(&repaired, "step_started"), ["node_pool.workers"]);
    sandbox.run_expecting(&["drift"], 0);
}

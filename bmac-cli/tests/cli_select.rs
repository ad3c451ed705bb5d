//! Working on part of the graph: `--target` (a step and what it depends on), `--exclude` (a
//! step and what depends on it), `destroy --target` (a step and its dependents), mistyped ids,
//! and `bmac graph`, the view a user reads to choose them.

mod common;

use std::collections::BTreeSet;

use common::{events, finished, ids, text, Sandbox};

/// Every step of the quickstart fixture.
const STEPS: usize = 28;

/// The step ids a rendered plan lists.
fn planned(plan: &str) -> BTreeSet<String> {
    plan.lines()
        .filter(|l| l.starts_with("    ") && l.contains(" will be "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

#[test]
fn graph_text_shows_each_step_under_what_it_waits_for() {
    let sandbox = Sandbox::new("quickstart.toml");
    let graph = text(&sandbox.run_expecting(&["graph"], 0).stdout);
    assert_eq!(graph.lines().count(), STEPS);
    assert_masked_snapshot!("graph_text", graph);
    for format in ["dot", "mermaid"] {
        let out = sandbox.run_expecting(&["graph", "--format", format], 0);
        let rendered = text(&out.stdout);
        assert!(
            rendered.contains("node_pool.workers (node_pool)"),
            "{format}: {rendered}"
        );
    }
    // Against the recorded state: once built, nothing is marked for creation.
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let built = text(&sandbox.run_expecting(&["graph"], 0).stdout);
    assert_eq!(built.lines().count(), STEPS);
    assert!(built.lines().all(|l| l.starts_with(' ')), "{built}");
}

#[test]
fn target_plans_a_step_with_what_it_depends_on() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["plan", "--target", "node_pool.workers"], 0);
    let plan = text(&out.stdout);
    assert_eq!(
        planned(&plan),
        BTreeSet::from(["cluster", "cni", "node_pool.workers"].map(str::to_owned))
    );
    assert_masked_snapshot!("target_node_pool", plan);

    let applied = sandbox.run_expecting(
        &[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--target",
            "node_pool.workers",
        ],
        0,
    );
    let built: BTreeSet<_> = ids(&events(&applied.stdout), "step_succeeded")
        .into_iter()
        .collect();
    assert_eq!(built, planned(&plan));
    assert_eq!(sandbox.state_ids(), built);
}

#[test]
fn exclude_leaves_out_a_step_and_everything_depending_on_it() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["plan", "--exclude", "cni"], 0);
    let plan = planned(&text(&out.stdout));
    for gone in [
        "cni",
        "node_pool.workers",
        "policy.engine",
        "manifest.web-config",
    ] {
        assert!(!plan.contains(gone), "{gone} should be excluded: {plan:?}");
    }
    for kept in [
        "cluster",
        "audit.archive",
        "namespace.web",
        "storage_class.fast",
    ] {
        assert!(plan.contains(kept), "{kept} should stay: {plan:?}");
    }
}

#[test]
fn a_mistyped_target_gets_a_suggestion_and_a_malformed_one_a_clear_error() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["plan", "--target", "node_pool.worker"], 3);
    let err = text(&out.stderr);
    assert!(err.contains("bmac::plan::unknown_target"), "{err}");
    assert!(err.contains("did you mean `node_pool.workers`?"), "{err}");

    let out = sandbox.run_expecting(&["plan", "--target", "bad id!"], 1);
    let err = text(&out.stderr);
    assert!(err.contains("bmac::cli::step_id"), "{err}");
    assert!(err.contains("invalid step id `bad id!`"), "{err}");
}

/// `destroy --target cni` plans cni and its dependents (node pools, the policy engine, its
/// policies, the manifest) and leaves the rest — including `cluster`, whose outputs (endpoint,
/// credentials) those deletions read: the planner keeps it in the plan as a no-op.
#[test]
fn destroy_target_removes_the_step_and_its_dependents_only() {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let out = sandbox.run_expecting(
        &[
            "--output",
            "json",
            "destroy",
            "--auto-approve",
            "--target",
            "cni",
        ],
        0,
    );
    let run = events(&out.stdout);
    assert_eq!(finished(&run)["outcome"], "succeeded");
    let gone: BTreeSet<_> = ids(&run, "step_succeeded").into_iter().collect();
    assert!(gone.contains("cni") && gone.contains("node_pool.workers"));
    assert!(!gone.contains("cluster"));
    let left = sandbox.state_ids();
    assert_eq!(left.len(), STEPS - gone.len());
    assert!(left.is_disjoint(&gone));
}

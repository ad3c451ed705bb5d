//! The life of a cluster through the CLI, on the simulated cloud: plan a fresh state, apply,
//! re-apply (nothing to do, no provider call), change one node pool (only that step updates),
//! destroy (dependents before their dependencies), and the saved-plan round trip with its
//! staleness check. Orders are checked on `--output json` events; rendered text is
//! snapshot-tested where it is deterministic (plans) and as sorted lines where concurrent
//! steps interleave (apply progress).

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use common::{events, finished, ids, positions, text, Sandbox};
use serde_json::Value;

/// Every step of the quickstart fixture.
const STEPS: usize = 28;

#[test]
fn plan_on_a_fresh_state_lists_every_step_as_a_create() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["plan"], 0);
    let plan = text(&out.stdout);
    assert!(plan.ends_with("Plan: 28 to add, 0 to change, 0 to destroy.\n"));
    assert_eq!(plan.matches(" will be created\n").count(), STEPS);
    assert_masked_snapshot!("fresh_plan", plan);

    // A second plan renders identically: the plan text does not depend on hash order.
    let again = sandbox.run_expecting(&["plan"], 0);
    assert_eq!(text(&again.stdout), plan);

    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 2);
    let json = sandbox.run_expecting(&["--output", "json", "plan"], 0);
    let ready = events(&json.stdout);
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(ready[0]["event"], "plan_ready");
    assert!(
        !sandbox.state_dir().join("journal.log").exists(),
        "planning must not write state"
    );
}

/// Asserts that for every edge `(step, dependency)`, `first(dependency)` comes before
/// `then(step)` when `forward`, or `first(step)` before `then(dependency)` when not.
fn assert_ordered(
    events: &[Value],
    edges: &[(String, String)],
    finish: &str,
    start: &str,
    forward: bool,
) {
    let finished_at = positions(events, finish);
    let started_at = positions(events, start);
    for (step, dep) in edges {
        let (before, after) = if forward { (dep, step) } else { (step, dep) };
        let done = finished_at
            .get(before)
            .unwrap_or_else(|| panic!("`{before}` never reached {finish}"));
        let begun = started_at
            .get(after)
            .unwrap_or_else(|| panic!("`{after}` never reached {start}"));
        assert!(
            done < begun,
            "`{after}` started (event {begun}) before `{before}` finished (event {done})"
        );
    }
}

#[test]
fn apply_reapply_change_one_pool_destroy() {
    let sandbox = Sandbox::new("quickstart.toml");
    let edges = sandbox.dependency_edges();
    assert!(edges.len() > STEPS, "the graph has its edges: {edges:?}");

    // Apply: every step created, each after all it depends on.
    let applied = sandbox.apply_json();
    let created = ids(&applied, "step_succeeded");
    assert_eq!(created.len(), STEPS);
    assert_eq!(created.iter().collect::<BTreeSet<_>>().len(), STEPS);
    assert_ordered(&applied, &edges, "step_succeeded", "step_started", true);
    let done = finished(&applied);
    assert_eq!(done["outcome"], "succeeded");
    assert_eq!(done["counts"]["succeeded"], STEPS);
    assert_eq!(sandbox.state_ids().len(), STEPS);
    let puts_after_apply = sandbox.cloud_puts();
    assert_eq!(puts_after_apply.len(), STEPS, "one cloud write per step");

    // Re-apply: nothing to do, and no provider call at all.
    let again = sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    assert_eq!(
        text(&again.stdout),
        "No changes. The cluster matches the spec.\n"
    );
    assert_eq!(text(&again.stderr), "", "no step ran");
    let again = sandbox.run_expecting(&["--output", "json", "apply", "--auto-approve"], 0);
    assert!(ids(&events(&again.stdout), "step_started").is_empty());
    assert_eq!(
        sandbox.cloud_puts(),
        puts_after_apply,
        "nothing was written"
    );
    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 0);

    // Change one field of one node pool: the plan shows exactly that field of that step.
    sandbox.edit_spec("max = 10\ndesired = 3\n", "max = 10\ndesired = 5\n");
    let plan = sandbox.run_expecting(&["plan", "--detailed-exitcode"], 2);
    let plan = text(&plan.stdout);
    assert!(plan.contains("~ node_pool.workers (node_pool) will be updated in place"));
    assert!(plan.contains("~ /scaling/desired: 3 → 5"));
    assert_masked_snapshot!("one_pool_changed_plan", plan);

    // Apply it: exactly that step runs, and it reports a change.
    let updated = sandbox.apply_json();
    assert_eq!(ids(&updated, "step_started"), ["node_pool.workers"]);
    let changed: Vec<_> = updated
        .iter()
        .filter(|e| e["event"] == "step_succeeded" && e["changed"] == true)
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(changed, ["node_pool.workers"]);
    assert_eq!(
        updated[0]["event"], "plan_ready",
        "scripts get the counts first"
    );
    assert_eq!(updated[0]["summary"]["update"], 1);
    let started = updated.iter().find(|e| e["event"] == "step_started");
    assert_eq!(
        started.map(|e| &e["action"]["action"]),
        Some(&"update".into())
    );
    let counts = &finished(&updated)["counts"];
    assert_eq!(counts["succeeded"], 1);
    assert_eq!(counts["unchanged"], STEPS - 1);
    let new_puts = &sandbox.cloud_puts()[puts_after_apply.len()..];
    assert_eq!(new_puts, [("node_pool.workers".to_owned(), 2)]);
    let shown = sandbox.run_expecting(&["state", "show", "node_pool.workers"], 0);
    assert!(text(&shown.stdout).contains("\"desired\": 5"));
    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 0);

    // Destroy: every step, each before anything it depends on.
    let out = sandbox.run_expecting(&["--output", "json", "destroy", "--auto-approve"], 0);
    let destroyed = events(&out.stdout);
    let gone = ids(&destroyed, "step_succeeded");
    assert_eq!(gone.len(), STEPS);
    assert!(destroyed
        .iter()
        .filter(|e| e["event"] == "step_started")
        .all(|e| e["action"]["action"] == "delete"));
    assert_ordered(&destroyed, &edges, "step_succeeded", "step_started", false);
    assert_eq!(finished(&destroyed)["outcome"], "succeeded");

    let listing = sandbox.run_expecting(&["state", "list"], 0);
    assert_eq!(text(&listing.stdout), "The state is empty.\n");
    let nothing_left = sandbox.run_expecting(&["destroy", "--auto-approve"], 0);
    assert_eq!(
        text(&nothing_left.stdout),
        "No changes. The cluster matches the spec.\n"
    );
}

#[test]
fn human_apply_reports_each_step_and_a_summary() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let plan = sandbox.run_expecting(&["plan"], 0);
    assert_eq!(
        text(&plan.stdout),
        "No changes. The cluster matches the spec.\n"
    );
    // stdout is the plan that was applied.
    assert!(text(&out.stdout).ends_with("Plan: 28 to add, 0 to change, 0 to destroy.\n"));
    // stderr: one line per event; concurrent steps interleave, so compare sorted lines.
    let progress = text(&out.stderr);
    let last = progress.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "Apply complete! 28 changed, 0 unchanged, 0 adopted, 0 failed, 0 skipped in "
        ),
        "{progress}"
    );
    let mut lines: Vec<_> = progress.lines().collect();
    lines.sort_unstable();
    assert_masked_snapshot!("apply_progress_sorted", lines.join("\n"));

    // Destroy shows its plan (every step, `-`) and closes with its own summary line.
    let out = sandbox.run_expecting(&["destroy", "--auto-approve"], 0);
    let plan = text(&out.stdout);
    assert_eq!(plan.matches(" will be destroyed\n").count(), STEPS);
    assert_masked_snapshot!("destroy_plan", plan);
    let progress = text(&out.stderr);
    assert_eq!(progress.matches(": destroyed after ").count(), STEPS);
    let last = progress.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Destroy complete! 28 changed, 0 unchanged"),
        "{progress}"
    );
}

#[test]
fn a_saved_plan_applies_once_and_a_stale_one_is_refused() {
    let sandbox = Sandbox::new("quickstart.toml");
    let saved = sandbox.run_expecting(&["plan", "--out", "first.json"], 0);
    assert!(text(&saved.stdout)
        .ends_with("Saved the plan to first.json; apply it with `bmac apply first.json`.\n"));
    let mode = std::fs::metadata(sandbox.path().join("first.json"))
        .expect("the plan file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "plan files are private");
    sandbox.run_expecting(&["plan", "--out", "second.json"], 0);

    let applied = sandbox.run_expecting(&["apply", "--auto-approve", "first.json"], 0);
    assert!(text(&applied.stderr).contains("Apply complete! 28 changed"));

    // The second plan was made against the empty state, which has moved on since.
    let stale = sandbox.run_expecting(&["apply", "--auto-approve", "second.json"], 1);
    let err = text(&stale.stderr);
    assert!(err.contains("bmac::plan::stale"), "{err}");
    assert!(err.contains("run `bmac plan` again"), "{err}");
    assert_eq!(
        sandbox.cloud_puts().len(),
        STEPS,
        "the stale plan built nothing"
    );

    std::fs::write(sandbox.path().join("edited.json"), "{\"not\": \"a plan\"}")
        .expect("write a broken plan file");
    let broken = sandbox.run_expecting(&["apply", "--auto-approve", "edited.json"], 1);
    assert!(text(&broken.stderr).contains("bmac::plan::invalid_file"));
    let missing = sandbox.run_expecting(&["apply", "--auto-approve", "missing.json"], 1);
    assert!(text(&missing.stderr).contains("cannot read the plan file missing.json"));
}

#[test]
fn secrets_stay_hidden_in_state_events_and_files() {
    let sandbox = Sandbox::new("quickstart.toml");
    // Cluster tokens that rotate on every call and live 50 ms of the fixture's scaled time:
    // every in-cluster call mints (or re-mints after a 401), in memory only.
    let rotating = [
        ("BMAC_SIM_TOKEN_USES", "1"),
        ("BMAC_SIM_TOKEN_TTL_MS", "50000"),
    ];
    let plan_file = sandbox.path().join("first.plan.json");
    sandbox.run_with_env(
        &["plan", "--out", plan_file.to_str().expect("utf-8 path")],
        &rotating,
        0,
    );
    let applied = sandbox.run_with_env(
        &["--output", "json", "apply", "--auto-approve"],
        &rotating,
        0,
    );
    let again = sandbox.run_with_env(&["plan", "--detailed-exitcode"], &rotating, 0);
    assert!(
        text(&again.stdout).contains("No changes"),
        "{}",
        text(&again.stdout)
    );

    let shown = sandbox.run_expecting(&["state", "show", "cluster"], 0);
    let shown = text(&shown.stdout);
    // The cluster's credentials are where to mint a token, shown as they are.
    assert!(shown.contains("credentials = {"), "{shown}");
    assert!(shown.contains("\"type\":\"sim\""), "{shown}");
    assert!(shown.contains("endpoint = \"https://"), "{shown}");
    assert_masked_snapshot!("state_show_cluster", shown);

    let mut written = vec![
        ("events".to_owned(), applied.stdout.clone()),
        ("state show".to_owned(), shown.into_bytes()),
        (
            "plan file".to_owned(),
            std::fs::read(&plan_file).expect("read the plan file"),
        ),
    ];
    for entry in std::fs::read_dir(sandbox.state_dir()).expect("list .bmac") {
        let path = entry.expect("a state file").path();
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is private", path.display());
        written.push((
            path.display().to_string(),
            std::fs::read(&path).expect("read a state file"),
        ));
    }
    assert!(written
        .iter()
        .any(|(name, _)| name.ends_with("sim-cloud.log")));
    for (name, bytes) in &written {
        assert!(!text(bytes).contains("simtok."), "{name} holds a token");
    }

    let unknown = sandbox.run_expecting(&["state", "show", "clustr"], 1);
    let err = text(&unknown.stderr);
    assert!(err.contains("no step `clustr` in state"), "{err}");
    assert!(err.contains("bmac state list"), "{err}");
}

#[test]
fn apply_and_destroy_refuse_to_prompt_without_a_terminal() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run(&["apply"]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("stdin is not a terminal"), "{err}");
    assert!(err.contains("--auto-approve"), "{err}");
    assert!(sandbox.state_ids().is_empty(), "nothing was applied");

    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let out = sandbox.run(&["destroy"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("stdin is not a terminal"));
    assert_eq!(sandbox.state_ids().len(), STEPS, "nothing was destroyed");
}

#[test]
fn a_cluster_change_rechecks_what_reads_its_outputs_and_changes_only_the_cluster() {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let before = sandbox.cloud_puts().len();
    sandbox.edit_spec("version = \"1.30\"", "version = \"1.31\"");

    // The plan cannot know the cluster's new outputs, so every step reading them is marked.
    let plan = text(&sandbox.run_expecting(&["plan"], 0).stdout);
    assert!(plan.contains(
        "~ cluster (cluster) will be updated in place\n        ~ /version: \"1.30\" → \"1.31\"\n"
    ));
    let maybe = plan
        .matches("(inputs from changing steps: known after apply)")
        .count();
    assert!(maybe > 10, "{plan}");
    assert!(plan.ends_with(&format!(
        "Plan: 0 to add, {} to change, 0 to destroy.\n",
        maybe + 1
    )));

    // At apply time the outputs turn out the same: only the cluster changes.
    let run = sandbox.apply_json();
    let changed: Vec<_> = run
        .iter()
        .filter(|e| e["event"] == "step_succeeded" && e["changed"] == true)
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(changed, ["cluster"]);
    let counts = &finished(&run)["counts"];
    assert_eq!(counts["succeeded"], 1);
    assert_eq!(counts["unchanged"], STEPS - 1);
    let new_puts = &sandbox.cloud_puts()[before..];
    assert_eq!(new_puts, [("cluster".to_owned(), 2)]);
    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 0);
}

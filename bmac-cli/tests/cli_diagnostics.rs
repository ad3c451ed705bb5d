//! `bmac validate` and `bmac lint` on broken specs: exit code 3, and diagnostics a user can act
//! on — file:line:col, a code, the offending text underlined, a help line. The rendered
//! diagnostics are snapshot-tested whole (miette's graphical output without colour, as a pipe
//! gets it), so a regression in wording or in the spans shows up as a diff.

mod common;

use common::{events, text, unwrapped, Sandbox};

#[test]
fn a_valid_spec_validates_and_names_its_step_count() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["validate"], 0);
    assert_eq!(text(&out.stdout), "The spec is valid: 28 steps.\n");
    assert!(
        !sandbox.state_dir().exists(),
        "validate must not create state"
    );
}

#[test]
fn an_unknown_field_points_at_its_line_and_suggests_the_field_meant() {
    let sandbox = Sandbox::new("unknown_field.toml");
    let out = sandbox.run_expecting(&["validate"], 3);
    let err = text(&out.stderr);
    assert!(err.contains("bmac::spec::unknown_field"), "{err}");
    assert!(err.contains("[bmac.toml:7:1]"), "{err}");
    assert!(
        err.contains("unknown field `verison` in `[cluster]`"),
        "{err}"
    );
    assert!(err.contains("help: did you mean `version`?"), "{err}");
    assert_masked_snapshot!("unknown_field", err);
}

#[test]
fn a_dependency_cycle_is_listed_in_order_with_the_edge_to_cut() {
    let sandbox = Sandbox::new("cycle.toml");
    let out = sandbox.run_expecting(&["validate"], 3);
    let err = text(&out.stderr);
    assert!(err.contains("bmac::plan::cycle"), "{err}");
    // miette wraps the message at 80 columns; unwrap it before looking for the whole cycle.
    let message = unwrapped(&err);
    assert!(
        message.contains(
            "dependency cycle: namespace.ingest → namespace.store → namespace.serve → namespace.ingest"
        ),
        "{err}"
    );
    assert!(
        message.contains("cut the edge `namespace.ingest → namespace.store`"),
        "{err}"
    );
    assert_masked_snapshot!("cycle", err);
}

#[test]
fn an_unknown_dependency_suggests_the_step_meant() {
    let sandbox = Sandbox::new("unknown_dep.toml");
    let out = sandbox.run_expecting(&["validate"], 3);
    let err = text(&out.stderr);
    assert!(err.contains("bmac::plan::unknown_dep"), "{err}");
    assert!(err.contains("[bmac.toml:14:15]"), "{err}");
    assert!(
        err.contains("help: did you mean `namespace.payments`?"),
        "{err}"
    );
    assert_masked_snapshot!("unknown_dep", err);
}

#[test]
fn plan_and_apply_refuse_an_invalid_graph_with_the_same_exit_code() {
    let sandbox = Sandbox::new("cycle.toml");
    let plan = sandbox.run_expecting(&["plan"], 3);
    assert!(text(&plan.stderr).contains("bmac::plan::cycle"));
    let apply = sandbox.run_expecting(&["apply", "--auto-approve", "--allow-lint-errors"], 3);
    assert!(text(&apply.stderr).contains("bmac::plan::cycle"));
    assert!(
        !sandbox.state_dir().join("sim-cloud.log").exists(),
        "nothing may be built from an invalid graph"
    );
}

#[test]
fn a_missing_spec_file_and_broken_toml_are_invalid_specs() {
    let sandbox = Sandbox::with_spec("[cluster\nname = \"x\"\n");
    let syntax = sandbox.run_expecting(&["validate"], 3);
    let err = text(&syntax.stderr);
    assert!(err.contains("bmac::spec::syntax"), "{err}");
    assert!(err.contains("[bmac.toml:1:9]"), "{err}");

    let missing = sandbox.run_expecting(&["--spec", "elsewhere.toml", "validate"], 3);
    let err = text(&missing.stderr);
    assert!(err.contains("bmac::spec::read"), "{err}");
    assert!(err.contains("elsewhere.toml"), "{err}");
}

/// The quickstart with its API endpoint opened to the whole internet (BMAC007, an error).
fn open_endpoint() -> Sandbox {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.edit_spec(
        "public_cidrs = [\"203.0.113.0/24\"]",
        "public_cidrs = [\"0.0.0.0/0\"]",
    );
    sandbox
}

/// The quickstart with one storage class unencrypted (BMAC009, a warning).
fn unencrypted_storage() -> Sandbox {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.edit_spec(
        "type = \"sim-nvme\"\nencrypted = true",
        "type = \"sim-nvme\"\nencrypted = false",
    );
    sandbox
}

#[test]
fn lint_fails_a_spec_that_breaks_the_baseline() {
    let sandbox = open_endpoint();
    let out = sandbox.run_expecting(&["lint"], 3);
    let err = text(&out.stderr);
    assert!(err.contains("BMAC007"), "{err}");
    assert!(err.contains("[bmac.toml:10:45]"), "{err}");
    assert!(
        !text(&out.stdout).contains("No baseline errors"),
        "a failing lint must not claim success"
    );
    assert_masked_snapshot!("lint_open_endpoint", err);
}

#[test]
fn lint_passes_the_quickstart() {
    let sandbox = Sandbox::new("quickstart.toml");
    let out = sandbox.run_expecting(&["lint", "--deny", "warnings"], 0);
    assert_eq!(text(&out.stdout), "No baseline errors.\n");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_lint_warning_passes_until_warnings_are_denied() {
    let sandbox = unencrypted_storage();
    let warned = sandbox.run_expecting(&["lint"], 0);
    let err = text(&warned.stderr);
    assert!(
        err.contains("⚠ storage class `fast` is not encrypted"),
        "{err}"
    );
    assert_eq!(text(&warned.stdout), "No baseline errors.\n");

    let denied = sandbox.run_expecting(&["lint", "--deny", "warnings"], 3);
    let err = text(&denied.stderr);
    assert!(
        err.contains("× storage class `fast` is not encrypted"),
        "{err}"
    );
    assert_masked_snapshot!("lint_denied_warning", err);

    let json = sandbox.run_expecting(&["--output", "json", "lint", "--deny", "warnings"], 3);
    let findings = events(&json.stdout);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["rule"], "BMAC009");
    assert_eq!(findings[0]["severity"], "error");
}

#[test]
fn apply_refuses_a_spec_failing_the_baseline_unless_told_otherwise() {
    let sandbox = open_endpoint();
    let refused = sandbox.run_expecting(&["apply", "--auto-approve"], 3);
    let err = text(&refused.stderr);
    assert!(err.contains("BMAC007"), "{err}");
    assert!(err.contains("--allow-lint-errors"), "{err}");
    assert!(sandbox.state_ids().is_empty(), "nothing may be applied");

    sandbox.run_expecting(&["apply", "--auto-approve", "--allow-lint-errors"], 0);
    assert_eq!(sandbox.state_ids().len(), 28);
}

#[test]
fn endpoint_overrides_are_checked_before_any_provider_call() {
    let sandbox = Sandbox::new("quickstart.toml");
    let bad = sandbox.run_expecting(
        &[
            "--endpoint",
            "eks=127.0.0.1:5000",
            "apply",
            "--auto-approve",
        ],
        1,
    );
    let err = text(&bad.stderr);
    assert!(err.contains("bmac::setup::endpoint"), "{err}");
    assert!(err.contains("--endpoint eks=127.0.0.1:5000"), "{err}");
    assert!(err.contains("http://"), "the help shows the form: {err}");
    assert!(sandbox.state_ids().is_empty(), "nothing was applied");

    // Not SERVICE=URL at all: a usage error from the parser.
    let usage = sandbox.run_expecting(&["--endpoint", "eks", "plan"], 2);
    assert!(
        text(&usage.stderr).contains("SERVICE=URL"),
        "{}",
        text(&usage.stderr)
    );

    // A well-formed override is accepted (the simulated cloud has no endpoints to move).
    sandbox.run_expecting(
        &[
            "--endpoint",
            "eks=http://127.0.0.1:9",
            "--profile",
            "ci",
            "apply",
            "--auto-approve",
        ],
        0,
    );
}

/// A cloud example with local state (its `[state]` names a remote backend, refused first).
fn example_with_local_state(file: &str) -> String {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let spec = std::fs::read_to_string(path).expect("the example");
    let start = spec.find("[state]").expect("a [state] table");
    let end = start
        + spec[start..]
            .find("\n\n")
            .expect("a blank line after [state]");
    format!(
        "{}[state]\nbackend = \"local\"{}",
        &spec[..start],
        &spec[end..]
    )
}

#[test]
fn a_gke_spec_validates_and_plans_without_calling_google() {
    let sandbox = Sandbox::with_spec(&example_with_local_state("gke-baseline.toml"));
    // Nothing needs the provider's credentials to validate or plan an empty state.
    sandbox.run_expecting(&["validate"], 0);
    let out = sandbox.run_expecting(&["plan"], 0);
    let plan = text(&out.stdout);
    assert!(plan.contains("cluster.key"), "{plan}");
    assert!(plan.contains("node_pool.default.role"), "{plan}");
}

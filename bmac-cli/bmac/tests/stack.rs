//! The front door on the simulated cloud: a stack opened from the quickstart is planned,
//! applied (through a callback and through a stream), selected, refreshed after a change made
//! by hand, destroyed, and read back through `outputs()`; a bad spec keeps its diagnostics.
//!
//! Every test keeps its state (and the simulated cloud, which lives beside it) in its own
//! temporary directory, so tests run in parallel.

use std::sync::{Arc, Mutex};

use bmac::core::event::Counts;
use bmac::prelude::*;
use bmac::providers::setup::SIM_CLOUD_FILE;
use bmac::providers::SimCloud;
use bmac::steps::spec::lint::Severity;
use tempfile::TempDir;

const QUICKSTART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/quickstart.toml"
);
const STEPS: usize = 28;

/// The quickstart, its state in a fresh temporary directory.
fn quickstart() -> (Stack, TempDir) {
    let state = tempfile::tempdir().expect("a temporary directory");
    let stack = Stack::open(QUICKSTART, Options::new().state_dir(state.path())).expect("open");
    (stack, state)
}

/// A stack over the same state directory (a fresh process would open this).
fn reopen(state: &TempDir) -> Stack {
    Stack::open(QUICKSTART, Options::new().state_dir(state.path())).expect("reopen")
}

fn id(text: &str) -> StepId {
    StepId::new(text).expect("a step id")
}

/// Applies and checks the run succeeded.
async fn apply(stack: &Stack, options: ApplyOptions) -> Counts {
    let report = stack.apply(options).await.expect("apply");
    assert!(report.is_success(), "{report:?}");
    report.counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_plans_applies_and_shows_the_cluster_endpoint() {
    let (stack, _state) = quickstart();
    let plan = stack.plan(&PlanOptions::new()).await.expect("plan");
    assert_eq!(plan.summary().create, STEPS);
    assert!(stack.outputs().await.expect("outputs").is_empty());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let options = ApplyOptions::new().on_event(move |e| log.lock().unwrap().push(e.clone()));
    let counts = apply(&stack, options).await;
    assert_eq!(counts.succeeded, STEPS);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        matches!(seen.first(), Some(Event::PlanReady { .. })),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(Event::RunFinished { .. })),
        "{seen:?}"
    );

    let outputs = stack.outputs().await.expect("outputs");
    assert_eq!(
        outputs.endpoint(),
        Some("https://quickstart.sim-local-1.sim.bmac.invalid")
    );
    let cluster = outputs.cluster().expect("the cluster");
    assert_eq!(cluster.step.as_str(), "cluster");
    assert!(cluster.ca_data.as_deref().is_some_and(|ca| !ca.is_empty()));
    assert!(cluster.oidc_issuer.is_some());
    // Where to mint tokens, never a token: a plain source naming the simulated cluster.
    let cluster_id = outputs
        .get("cluster", "cluster_id")
        .and_then(|v| v.value())
        .and_then(|v| v.as_str())
        .expect("the cluster's id")
        .to_owned();
    assert_eq!(
        cluster.credentials,
        Some(bmac::steps::CredentialSource::Sim { cluster_id })
    );
    let source = outputs.get("cluster", "credentials").expect("the output");
    assert!(!source.is_sensitive());
    assert!(!source.to_string().contains("simtok."), "{source}");
    assert_eq!(outputs.steps().len(), STEPS);

    // Applied again, from another stack over the same state: nothing to do.
    let again = reopen(&_state);
    assert!(!again.plan(&PlanOptions::new()).await.unwrap().has_changes());
    let counts = apply(&again, ApplyOptions::new()).await;
    assert_eq!((counts.succeeded, counts.unchanged), (0, STEPS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stream_yields_the_events_and_ends_with_the_run() {
    let (stack, _state) = quickstart();
    let mut stream = stack
        .apply_stream(ApplyOptions::new().parallelism(4))
        .await
        .expect("start");
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await {
        events.push(event);
    }
    assert!(
        matches!(events.first(), Some(Event::PlanReady { summary }) if summary.create == STEPS)
    );
    assert!(matches!(
        events.get(1),
        Some(Event::RunStarted {
            steps: STEPS,
            parallelism: 4
        })
    ));
    let Some(Event::RunFinished {
        outcome, counts, ..
    }) = events.last()
    else {
        panic!("the last event is not RunFinished: {:?}", events.last());
    };
    assert_eq!(*outcome, Outcome::Succeeded);
    assert_eq!(counts.succeeded, STEPS);
    let succeeded = events
        .iter()
        .filter(|e| matches!(e, Event::StepSucceeded { .. }))
        .count();
    assert_eq!(succeeded, STEPS);
    // Ended for good, and the report agrees with the last event.
    assert!(stream.next_event().await.is_none());
    let report = stream.finish().await.expect("the report");
    assert_eq!(report.counts, *counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_builds_only_it_and_what_it_depends_on_and_destroy_takes_it_down() {
    let (stack, _state) = quickstart();
    let counts = apply(&stack, ApplyOptions::new().target(id("node_pool.system"))).await;
    let outputs = stack.outputs().await.expect("outputs");
    assert_eq!(counts.succeeded, outputs.steps().len());
    assert!(outputs.step("node_pool.system").is_some());
    assert!(outputs.step("cluster").is_some());
    assert!(outputs.step("node_pool.workers").is_none());
    assert!(outputs.steps().len() < STEPS);

    let destroyed = stack.destroy(ApplyOptions::new()).await.expect("destroy");
    assert!(destroyed.is_success(), "{destroyed:?}");
    assert_eq!(destroyed.counts.succeeded, counts.succeeded);
    assert!(stack.outputs().await.expect("outputs").is_empty());
    assert!(stack.state().await.expect("state").steps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_drift_see_a_change_made_by_hand_and_apply_repairs_it() {
    let (stack, state) = quickstart();
    apply(&stack, ApplyOptions::new()).await;
    assert!(!stack.drift().await.expect("drift").has_drift());
    drop(stack);

    SimCloud::open(state.path().join(SIM_CLOUD_FILE))
        .expect("the simulated cloud")
        .tamper(
            "node_pool.workers",
            "/scaling/desired",
            serde_json::json!(7),
        )
        .expect("scale the workers by hand");

    let stack = reopen(&state);
    let drift = stack.drift().await.expect("drift");
    assert!(drift.has_drift());
    let refreshed = stack.refresh().await.expect("refresh");
    assert!(refreshed.report.has_drift());
    // Refreshing writes nothing: the recorded state still says 3.
    let recorded = stack.state().await.expect("state");
    let workers = recorded.applied(&id("node_pool.workers")).expect("applied");
    assert_eq!(
        workers.step.config.pointer("/scaling/desired"),
        Some(&serde_json::json!(3))
    );

    let blind = stack
        .plan(&PlanOptions::new().refresh(false))
        .await
        .unwrap();
    assert!(!blind.has_changes());
    let plan = stack.plan(&PlanOptions::new()).await.expect("plan");
    let changed: Vec<_> = plan
        .nodes()
        .iter()
        .filter(|n| n.action.is_change())
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].step.id.as_str(), "node_pool.workers");

    let counts = apply(&stack, ApplyOptions::new()).await;
    assert_eq!(counts.succeeded, 1);
    assert!(!stack.drift().await.expect("drift").has_drift());
}

#[tokio::test]
async fn a_bad_spec_file_keeps_its_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bmac.toml");
    let text = std::fs::read_to_string(QUICKSTART)
        .unwrap()
        .replace("version = \"1.30\"", "verison = \"1.30\"");
    std::fs::write(&path, text).unwrap();

    let err = Stack::open(&path, Options::new()).expect_err("an invalid spec");
    assert!(matches!(err, Error::Spec(_)), "{err:?}");
    let report = render(&err);
    assert!(report.contains("bmac::spec::unknown_field"), "{report}");
    assert!(report.contains("bmac.toml:9:1"), "{report}");
    assert!(report.contains("did you mean `version`?"), "{report}");
}

#[tokio::test]
async fn a_remote_backend_is_refused_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bmac.toml");
    let text = std::fs::read_to_string(QUICKSTART).unwrap().replace(
        "backend = \"local\"\npath = \".bmac\"",
        "backend = \"s3\"\nbucket = \"quickstart-state\"",
    );
    std::fs::write(&path, text).unwrap();
    let err = Stack::open(&path, Options::new()).expect_err("a remote backend");
    assert!(
        matches!(&err, Error::Backend { backend } if backend == "s3"),
        "{err:?}"
    );
    assert!(render(&err).contains("bmac::state::backend"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_failing_the_baseline_is_refused_unless_allowed() {
    let state = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(QUICKSTART).unwrap().replace(
        "public_cidrs = [\"203.0.113.0/24\"]",
        "public_cidrs = [\"0.0.0.0/0\"]",
    );
    let spec = Spec::parse("bmac.toml", &text).expect("a valid spec");
    let base = std::path::Path::new(QUICKSTART).parent().unwrap();
    let stack = Stack::from_spec(spec, base, Options::new().state_dir(state.path())).unwrap();
    assert!(stack.lint().iter().any(|f| f.severity == Severity::Error));

    let err = stack.apply(ApplyOptions::new()).await.expect_err("refused");
    let Error::Lint(refusal) = &err else {
        panic!("not a lint refusal: {err:?}");
    };
    assert!(!refusal.findings.is_empty());
    assert!(render(&err).contains("bmac::lint::refused"));
    // Nothing was planned or written.
    assert!(stack.state().await.unwrap().steps.is_empty());

    apply(&stack, ApplyOptions::new().allow_lint_errors(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stack_starts_no_step() {
    let state = tempfile::tempdir().unwrap();
    let cancel = bmac::CancellationToken::new();
    cancel.cancel();
    let options = Options::new().state_dir(state.path()).cancel_token(cancel);
    let stack = Stack::open(QUICKSTART, options).unwrap();
    let report = stack.apply(ApplyOptions::new()).await.expect("a report");
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.counts.succeeded, 0);
}

#[cfg(feature = "kube")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_config_needs_a_cluster_and_says_why_the_sim_cannot_serve_one() {
    let (stack, _state) = quickstart();
    let err = stack.kube_config().await.expect_err("nothing built");
    assert!(matches!(err, Error::NoCluster), "{err:?}");

    apply(&stack, ApplyOptions::new().target(id("cluster"))).await;
    let err = stack
        .kube_config()
        .await
        .expect_err("the simulated cluster has no Kubernetes API");
    assert!(matches!(&err, Error::KubeConfig { step, .. } if step.as_str() == "cluster"));
    let report = render(&err);
    assert!(
        report.contains("no token minter for source type `sim`"),
        "{report}"
    );
}

/// A diagnostic as a terminal without colour shows it.
fn render(err: &Error) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(200)
        .render_report(&mut out, err)
        .expect("render");
    out
}

#[tokio::test]
async fn plan_never_downloads_and_names_the_url_bundles_it_will_fetch_at_apply() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = "https://127.0.0.1:1/releases/argocd-install.yaml";
    let text = format!(
        "[cluster]\nname = \"t\"\nprovider = \"sim\"\n[[namespace]]\nname = \"argocd\"\n\
         [[manifest]]\nname = \"argocd\"\nnamespace = \"argocd\"\n\
         bundle = {{ url = \"{url}\", sha256 = \"{}\" }}\n",
        "e3".repeat(32)
    );
    let spec = bmac::steps::spec::Spec::parse("bmac.toml", &text).expect("spec");
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&warnings);
    let options = Options::new()
        .state_dir(dir.path())
        .on_warning(move |w| sink.lock().unwrap().push(w.to_owned()));
    let stack = Stack::from_spec(spec, dir.path(), options).expect("open");
    // Nothing answers on port 1: a download attempt would fail the plan.
    let plan = stack.plan(&PlanOptions::new()).await.expect("plan");
    assert!(plan.summary().create > 0);
    let warnings = warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(url) && warnings[0].contains("when its step is applied"),
        "{warnings:?}"
    );
}

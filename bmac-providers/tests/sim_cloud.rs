//! The persisted simulated cloud: what one run leaves for the next, and how the op log
//! behaves on disk.

use std::sync::Arc;

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, Provider, StepContext,
};
use bmac_core::step::{Inputs, Kind, Outputs, Step, StepId};
use bmac_providers::sim::{SimCloud, SimConfig, SimError, SimProvider};
use serde_json::{json, Value};

fn step(id: &str, kind: &str, config: Value) -> Step {
    Step::new(StepId::new(id).unwrap(), Kind::new(kind), &config).unwrap()
}

fn at(path: &std::path::Path) -> SimProvider {
    SimProvider::new(SimConfig {
        speed: 0.0,
        cloud_path: Some(path.to_owned()),
        ..SimConfig::default()
    })
    .unwrap()
}

async fn apply(p: &SimProvider, s: &Step) -> Outputs {
    p.apply(ApplyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: None,
        ctx: &StepContext::default(),
    })
    .await
    .unwrap()
}

async fn observe(p: &SimProvider, s: &Step) -> Observed {
    p.observe(ObserveRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: None,
        ctx: &StepContext::default(),
    })
    .await
    .unwrap()
}

async fn destroy(p: &SimProvider, s: &Step) {
    let prior = Prior::new(s.config.clone(), Outputs::new());
    p.destroy(DestroyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: &prior,
        ctx: &StepContext::default(),
    })
    .await
    .unwrap()
}

fn cluster() -> Step {
    step(
        "cluster",
        "cluster",
        json!({"name": "prod", "region": "eu-west-1", "version": "1.31"}),
    )
}

#[tokio::test]
async fn a_second_run_sees_what_the_first_built_and_can_destroy_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".bmac/sim-cloud.log");
    let (c, ns) = (
        cluster(),
        step("ns", "namespace", json!({"name": "payments"})),
    );
    let created = {
        let first = at(&path);
        let out = apply(&first, &c).await;
        apply(&first, &ns).await;
        out
    };

    let second = at(&path);
    assert_eq!(second.cloud().len(), 2);
    match observe(&second, &c).await {
        Observed::Present { config, outputs } => {
            assert_eq!(config, c.config);
            assert_eq!(outputs, created);
            // The cluster hands out where to mint tokens, not a token: a plain value.
            let credentials = outputs.get("credentials").unwrap();
            assert!(!credentials.is_sensitive());
            assert_eq!(credentials.value().unwrap()["type"], json!("sim"));
        }
        other => panic!("the cluster reads as {other:?} between runs"),
    }
    // Re-applying the same spec in the new run converges: nothing is created.
    apply(&second, &c).await;
    assert_eq!(second.stats().total.creates, 0);
    assert_eq!(second.stats().total.unchanged, 1);
    destroy(&second, &c).await;
    drop(second);

    let third = at(&path);
    assert_eq!(observe(&third, &c).await, Observed::Absent);
    let left: Vec<String> = third
        .cloud()
        .resources()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(left, ["ns"]);
}

#[tokio::test]
async fn the_op_log_only_ever_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    let p = at(&path);
    let mut previous = Vec::new();
    for i in 0..100 {
        // Creates, updates and re-applies of a few steps.
        let s = step(
            &format!("pool{}", i % 10),
            "node_pool",
            json!({"scaling": {"desired": i / 20}}),
        );
        apply(&p, &s).await;
        let now = std::fs::read(&path).unwrap();
        assert!(now.len() >= previous.len(), "the log shrank at apply {i}");
        assert_eq!(
            &now[..previous.len()],
            &previous[..],
            "the log was rewritten at apply {i}"
        );
        previous = now;
    }
    let stats = p.stats().total;
    assert_eq!(
        (stats.creates, stats.updates, stats.unchanged),
        (10, 40, 50)
    );
    // One line per change (a node pool's create two: accepted, then done); re-applies write
    // nothing.
    let lines = previous.iter().filter(|b| **b == b'\n').count();
    assert_eq!(lines, 60);
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_and_the_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    apply(&at(&path), &cluster()).await;
    // The process died in the middle of appending the next op.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"op":"put","id":"half","kind":"names"#);
    std::fs::write(&path, &bytes).unwrap();

    let reopened = at(&path);
    let ids: Vec<String> = reopened
        .cloud()
        .resources()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(ids, ["cluster"]);
    // The next append starts on a fresh line, so a later replay is clean.
    apply(&reopened, &step("ns", "namespace", json!({}))).await;
    drop(reopened);
    assert_eq!(at(&path).cloud().len(), 2);
}

#[tokio::test]
async fn a_complete_last_op_missing_only_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    apply(&at(&path), &cluster()).await;
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, bytes.strip_suffix(b"\n").unwrap()).unwrap();

    let reopened = at(&path);
    assert_eq!(reopened.cloud().len(), 1);
    apply(&reopened, &step("ns", "namespace", json!({}))).await;
    drop(reopened);
    let again = at(&path);
    assert_eq!(again.cloud().len(), 2);
    // The cluster's create (accepted, then done) and the namespace.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
}

#[tokio::test]
async fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    {
        let p = at(&path);
        apply(&p, &cluster()).await;
        apply(&p, &step("ns", "namespace", json!({}))).await;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "this is not json");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = SimCloud::open(&path).unwrap_err();
    assert!(
        matches!(err, SimError::CorruptLog { line: 2, .. }),
        "{err:?}"
    );
    let err = SimProvider::new(SimConfig {
        cloud_path: Some(path.clone()),
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[tokio::test]
async fn tampering_shows_up_as_drift_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    let c = cluster();
    apply(&at(&path), &c).await;

    // Someone edits the cluster in the console between runs.
    let console = SimCloud::open(&path).unwrap();
    console
        .tamper("cluster", "/version", json!("1.29"))
        .unwrap();
    console
        .tamper("cluster", "/endpoint", json!({"public": true}))
        .unwrap();
    assert!(matches!(
        console.tamper("nope", "/version", json!("x")),
        Err(SimError::NoSuchResource { .. })
    ));
    assert!(matches!(
        console.tamper("cluster", "/missing/deep", json!("x")),
        Err(SimError::Pointer { .. })
    ));
    drop(console);

    let next = at(&path);
    let Observed::Present { config, .. } = observe(&next, &c).await else {
        panic!("absent");
    };
    assert_eq!(
        config,
        json!({"name": "prod", "region": "eu-west-1", "version": "1.29", "endpoint": {"public": true}})
    );
    assert_ne!(config, c.config);
    assert_eq!(next.cloud().get("cluster").unwrap().generation, 3);
    // Applying the spec again repairs the drift in place.
    apply(&next, &c).await;
    assert_eq!(next.stats().total.updates, 1);
    let Observed::Present { config, .. } = observe(&next, &c).await else {
        panic!("absent");
    };
    assert_eq!(config, c.config);
}

#[cfg(unix)]
#[test]
fn the_cloud_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/cloud.log");
    SimCloud::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_long_log_is_compacted_on_open_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.log");
    {
        let p = at(&path);
        for i in 0..1500 {
            apply(
                &p,
                &step("pool", "node_pool", json!({"scaling": {"desired": i}})),
            )
            .await;
        }
        apply(&p, &cluster()).await;
        p.cloud()
            .tamper("cluster", "/version", json!("1.30"))
            .unwrap();
    }
    let before = std::fs::metadata(&path).unwrap().len();
    let reopened = at(&path);
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after * 100 < before, "{before} → {after}");
    let pool = reopened.cloud().get("pool").unwrap();
    assert_eq!(pool.config, json!({"scaling": {"desired": 1499}}));
    assert_eq!(pool.generation, 1500);
    let c = reopened.cloud().get("cluster").unwrap();
    assert_eq!(c.config["version"], json!("1.30"));
    assert_eq!(
        c.outputs.get("credentials").unwrap().value().unwrap()["cluster_id"],
        c.outputs
            .get("cluster_id")
            .unwrap()
            .value()
            .cloned()
            .unwrap()
    );
    drop(reopened);
    assert_eq!(at(&path).cloud().len(), 2);
}

#[tokio::test]
async fn providers_can_share_one_cloud() {
    let cloud = Arc::new(SimCloud::in_memory());
    let config = SimConfig {
        speed: 0.0,
        ..SimConfig::default()
    };
    let a = SimProvider::with_cloud(config.clone(), cloud.clone()).unwrap();
    let b = SimProvider::with_cloud(config, cloud.clone()).unwrap();
    let c = cluster();
    apply(&a, &c).await;
    assert!(matches!(observe(&b, &c).await, Observed::Present { .. }));
    destroy(&b, &c).await;
    assert!(cloud.is_empty());
    assert_eq!(cloud.path(), None);
}

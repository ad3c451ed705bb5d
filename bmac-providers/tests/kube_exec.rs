//! The kube provider under the real engine: Planner + Executor + LocalStore against a real
//! kube-apiserver (see `kube_e2e.rs` for how to run). An existing cluster taken from a
//! kubeconfig context is hardened, re-planned with nothing to do, changed in one place,
//! checked for drift after a hand edit, and destroyed back to how it was found.

#![cfg(feature = "kube")]

mod kube_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bmac_core::drift::{self, StepDrift};
use bmac_core::{Action, Executor, LocalStore, Planner, Providers, StateStore, Step};
use bmac_providers::kube::KubeProvider;
use bmac_steps::config::*;
use bmac_steps::kinds;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube_support::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const BUNDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kyverno-bundle.yaml"
);

fn mode(level: &str) -> PodSecurityMode {
    PodSecurityMode {
        level: level.into(),
        version: "latest".into(),
    }
}

fn psa(namespace: &str, enforce: &str) -> PodSecurityLabelsConfig {
    PodSecurityLabelsConfig {
        namespace: namespace.into(),
        enforce: mode(enforce),
        audit: mode("restricted"),
        warn: mode("restricted"),
    }
}

fn steps(kubeconfig: &str, app: &str, app_level: &str) -> Vec<Step> {
    let sha: String = Sha256::digest(std::fs::read(BUNDLE).expect("fixture"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let engine = PolicyEngineConfig {
        engine: "kyverno".into(),
        version: "v1.12.5".into(),
        bundle: Some(Bundle {
            source: BUNDLE.into(),
            sha256: sha,
        }),
        image_mirrors: BTreeMap::from([("ghcr.io".to_owned(), "mirror.internal/ghcr".to_owned())]),
    };
    let policy = PolicyConfig {
        name: "disallow-latest".into(),
        engine: "kyverno".into(),
        objects: vec![json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": format!("disallow-latest-{app}")},
            "spec": {"validationFailureAction": "Audit", "rules": [{"name": "no-latest",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "validate": {"message": "pin images", "pattern": {"spec": {"containers": [{"image": "!*:latest"}]}}}}]}
        })],
    };
    vec![
        cluster_step(kubeconfig, "bmac-admin"),
        in_cluster(
            "ns.app",
            kinds::NAMESPACE,
            &NamespaceConfig {
                name: app.into(),
                labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            },
        )
        .depends_on(id("cluster")),
        in_cluster("psa.app", kinds::POD_SECURITY_LABELS, &psa(app, app_level))
            .depends_on(id("ns.app")),
        in_cluster(
            "psa.default",
            kinds::POD_SECURITY_LABELS,
            &psa("default", "baseline"),
        ),
        in_cluster("policy_engine", kinds::POLICY_ENGINE, &engine),
        in_cluster("policy.disallow_latest", kinds::POLICY, &policy)
            .depends_on(id("policy_engine")),
    ]
}

#[tokio::test]
async fn planner_and_executor_harden_an_existing_cluster_and_destroy_leaves_it_as_found() {
    let Some(c) = connect("planner_and_executor_harden_an_existing_cluster").await else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    release_default_pod_security(&c.admin).await;
    let t0 = std::time::Instant::now();
    let app = format!("shop-{}", suffix());
    let default_before = namespace_labels(&c.admin, "default")
        .await
        .expect("default ns");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("state store");
    let providers = Providers::new().route(
        KubeProvider::KINDS.iter().copied(),
        Arc::new(KubeProvider::new()),
    );
    let executor = Executor::new(providers.clone());

    // 1. First run: everything is created.
    let spec = steps(&c.kubeconfig, &app, "restricted");
    let state = store.load().await.expect("load").state;
    let plan = Planner::new(spec.clone(), &state).plan().expect("plan");
    assert!(plan.nodes().iter().all(|n| n.action == Action::Create));
    let report = executor.run(plan, &store).await.expect("run");
    assert!(report.is_success(), "{:?}", report.failures);
    let labels = namespace_labels(&c.admin, &app)
        .await
        .expect("namespace created");
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let deployments: Api<Deployment> = Api::namespaced(c.admin.clone(), "kyverno");
    let image = deployments
        .get("kyverno-admission-controller")
        .await
        .expect("engine deployed")
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].image.clone());
    assert_eq!(
        image.flatten().as_deref(),
        Some("mirror.internal/ghcr/kyverno/kyverno:v1.12.5")
    );
    let first = t0.elapsed();

    // 2. Same spec again: nothing to do, and the API server sees no write.
    let state = store.load().await.expect("load").state;
    let plan = Planner::new(spec.clone(), &state).plan().expect("plan");
    assert!(!plan.has_changes(), "{}", plan.to_json());
    let before = writes(&c.admin).await;
    let report = executor.run(plan, &store).await.expect("run");
    assert!(report.is_success());
    assert_eq!(writes(&c.admin).await, before);

    // 3. One namespace's level changes: one step updates, with exactly one write.
    let changed: Vec<Arc<Step>> = steps(&c.kubeconfig, &app, "baseline")
        .into_iter()
        .map(Arc::new)
        .collect();
    let state = store.load().await.expect("load").state;
    let plan = Planner::new(changed.clone(), &state).plan().expect("plan");
    let updates: Vec<&str> = plan
        .nodes()
        .iter()
        .filter(|n| n.action.is_change())
        .map(|n| n.step.id.as_str())
        .collect();
    assert_eq!(updates, ["psa.app"]);
    let before = writes(&c.admin).await;
    let report = executor.run(plan, &store).await.expect("run");
    assert!(report.is_success(), "{:?}", report.failures);
    assert_eq!(writes(&c.admin).await - before, 1);
    let labels = namespace_labels(&c.admin, &app).await.expect("namespace");
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );

    // 4. Hand edits show as drift: a label, and the engine's image.
    let nss: Api<Namespace> = Api::all(c.admin.clone());
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    nss.patch(
        &app,
        &edit,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "intruder"}}})),
    )
    .await
    .expect("edit label");
    deployments
        .patch(
            "kyverno-admission-controller",
            &edit,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {
            "containers": [{"name": "kyverno", "image": "ghcr.io/kyverno/kyverno:v1.12.5"}]}}}})),
        )
        .await
        .expect("edit image");
    let state = store.load().await.expect("load").state;
    let report = drift::detect(&changed, &state, &providers)
        .await
        .expect("drift");
    let by_id = |id: &str| {
        report
            .steps
            .iter()
            .find(|s| s.id.as_str() == id)
            .map(|s| s.drift.clone())
            .expect("step in report")
    };
    match by_id("ns.app") {
        StepDrift::Drifted { fields } => {
            assert_eq!(fields.len(), 1, "{fields:?}");
            assert_eq!(fields[0].field, "/labels/team");
            assert_eq!(fields[0].actual, Some(json!("intruder")));
        }
        other => panic!("label edit not seen: {other:?}"),
    }
    match by_id("policy_engine") {
        StepDrift::Drifted { fields } => {
            assert_eq!(fields[0].field, "/bundle/sha256");
            let actual = fields[0]
                .actual
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or("");
            assert!(
                actual.contains("Deployment kyverno/kyverno-admission-controller"),
                "{actual}"
            );
        }
        other => panic!("image edit not seen: {other:?}"),
    }
    assert_eq!(by_id("psa.default"), StepDrift::InSync);
    assert!(report.has_drift());

    // 5. Destroy: everything bmac made goes; `default` keeps only its own labels.
    // The executor hands deleted steps the cluster step's *recorded* outputs. The credentials
    // among them are a plain source (the kubeconfig context), so a provider that has read
    // nothing in this process — as in a fresh `bmac destroy` — builds its client from them.
    let fresh = Providers::new().route(
        KubeProvider::KINDS.iter().copied(),
        Arc::new(KubeProvider::new()),
    );
    let executor = Executor::new(fresh);
    let finalizer = NamespaceFinalizer::start(&c.admin);
    let state = store.load().await.expect("load").state;
    let plan = Planner::new(changed, &state)
        .destroy()
        .plan()
        .expect("destroy plan");
    let report = executor.run(plan, &store).await.expect("run");
    assert!(report.is_success(), "{:?}", report.failures);
    drop(finalizer);
    assert!(namespace_labels(&c.admin, &app).await.is_none());
    assert!(namespace_labels(&c.admin, "kyverno").await.is_none());
    assert_eq!(
        namespace_labels(&c.admin, "default")
            .await
            .expect("default"),
        default_before
    );
    c.admin
        .apiserver_version()
        .await
        .expect("the existing cluster itself is untouched");
    eprintln!(
        "timings: first run {first:?}, whole scenario {:?}",
        t0.elapsed()
    );
}

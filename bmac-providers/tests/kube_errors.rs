//! How the kube provider fails against a real kube-apiserver: a field another manager owns on
//! an object bmac did not create, an immutable StorageClass change, a workload that never
//! becomes ready. See `kube_e2e.rs` for how to run.

#![cfg(feature = "kube")]

mod kube_support;

use std::collections::BTreeMap;
use std::time::Duration;

use bmac_providers::kube::{KubeProvider, WaitPolicy};
use bmac_steps::config::*;
use bmac_steps::kinds;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube_support::fixtures::*;
use kube_support::*;

#[tokio::test]
async fn a_label_another_manager_owns_on_a_foreign_namespace_is_not_taken_over() {
    let Some(c) =
        connect("a_label_another_manager_owns_on_a_foreign_namespace_is_not_taken_over").await
    else {
        return;
    };
    let name = format!("foreign-{}", suffix());
    create_namespace(&c.admin, &name, &[("team", "platform")]).await;
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let step = in_cluster(
        "ns.foreign",
        kinds::NAMESPACE,
        &namespace(&name, &[("team", "payments")]),
    );
    let err = run.apply(&step).await.expect_err("conflict");
    assert!(
        !err.is_retryable(),
        "a field conflict does not go away by retrying"
    );
    assert!(err.message.contains("conflict"), "{}", err.message);
    assert!(
        err.message
            .contains("bmac forces its fields only on objects it created"),
        "{}",
        err.message
    );
    let labels = namespace_labels(&c.admin, &name).await.expect("namespace");
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("platform"),
        "their value stands"
    );

    // Agreeing with the other manager is fine, and destroy leaves their label in place.
    let agree = in_cluster(
        "ns.foreign",
        kinds::NAMESPACE,
        &namespace(&name, &[("team", "platform"), ("cost", "42")]),
    );
    run.apply(&agree)
        .await
        .expect("no conflict when values agree");
    run.destroy(&agree).await.expect("destroy");
    let labels = namespace_labels(&c.admin, &name)
        .await
        .expect("namespace is not deleted");
    assert_eq!(
        labels,
        BTreeMap::from([("team".to_owned(), "platform".to_owned())])
    );
    let api: Api<Namespace> = Api::all(c.admin.clone());
    let _ = api.delete(&name, &Default::default()).await;
}

#[tokio::test]
async fn an_in_place_storage_class_parameter_change_is_refused_with_the_servers_reason() {
    let Some(c) = connect("an_in_place_storage_class_parameter_change").await else {
        return;
    };
    let name = format!("slow-{}", suffix());
    let mut cfg = StorageClassConfig {
        name: name.clone(),
        provisioner: "pd.csi.storage.gke.io".into(),
        kind: "pd-standard".into(),
        encrypted: false,
        default: false,
        reclaim_policy: "Retain".into(),
        volume_binding_mode: "Immediate".into(),
        allow_volume_expansion: false,
        parameters: BTreeMap::new(),
    };
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let step = in_cluster("storage_class.slow", kinds::STORAGE_CLASS, &cfg);
    run.apply(&step).await.expect("create");

    // allowVolumeExpansion may change in place …
    cfg.allow_volume_expansion = true;
    let expand = in_cluster("storage_class.slow", kinds::STORAGE_CLASS, &cfg);
    run.apply(&expand).await.expect("mutable field updates");
    // … parameters may not: the planner replaces the step; reaching the server anyway is a
    // permanent error carrying the server's reason.
    cfg.kind = "pd-ssd".into();
    let retype = in_cluster("storage_class.slow", kinds::STORAGE_CLASS, &cfg);
    let err = run.apply(&retype).await.expect_err("immutable");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains("the object is invalid"),
        "{}",
        err.message
    );
    assert!(err.message.contains("parameters"), "{}", err.message);
    run.destroy(&expand).await.expect("destroy");
}

#[tokio::test]
async fn waiting_for_workloads_that_cannot_run_times_out_as_retryable() {
    let Some(c) = connect("waiting_for_workloads_that_cannot_run_times_out_as_retryable").await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    run.provider = KubeProvider::new()
        .wait_for_workloads(true)
        .with_wait_policy(WaitPolicy {
            timeout: Duration::from_millis(800),
            interval: Duration::from_millis(100),
        });
    let step = in_cluster(
        "policy_engine",
        kinds::POLICY_ENGINE,
        &engine(&bundle_sha256()),
    );
    let err = run.apply(&step).await.expect_err("no kubelet: never ready");
    assert!(err.is_retryable(), "{}", err.message);
    assert!(
        err.message
            .contains("Deployment kyverno/kyverno-admission-controller to be ready"),
        "{}",
        err.message
    );
    // The objects were applied before the wait: the CRD is there.
    assert!(crd_exists(&c.admin, "clusterpolicies.kyverno.io").await);
    ensure_no_kyverno(&c.admin).await;
}

//! End-to-end tests of the kube provider against a real kube-apiserver (1.20, see
//! `scripts/kube-env.sh`), through the `Provider` trait. Everything the provider claims to have
//! done is checked by reading the cluster back with kube-rs; "no writes" claims are checked
//! with the API server's own `apiserver_request_total` counter.
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p
//! bmac-providers --features kube --test kube_e2e`.

#![cfg(feature = "kube")]

mod kube_support;

use std::collections::BTreeMap;

use bmac_core::provider::Observed;
use bmac_steps::config::*;
use bmac_steps::kinds;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube_support::fixtures::*;
use kube_support::*;
use serde_json::{json, Value};

#[tokio::test]
async fn existing_cluster_is_taken_from_a_kubeconfig_context() {
    let Some(c) = connect("existing_cluster_is_taken_from_a_kubeconfig_context").await else {
        return;
    };
    let (run, outputs) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster step applies");
    let version = c
        .admin
        .apiserver_version()
        .await
        .expect("version")
        .git_version;
    assert_eq!(
        outputs.get("server_version").and_then(|v| v.value()),
        Some(&json!(version))
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).expect("kubeconfig");
    let server = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone());
    assert_eq!(
        outputs.get("endpoint").and_then(|v| v.value()),
        server.map(Value::from).as_ref()
    );
    // The credentials are a plain source naming the context: no token anywhere in the outputs.
    let credentials = outputs.get("credentials").expect("credentials output");
    assert!(!credentials.is_sensitive());
    assert_eq!(
        credentials.value(),
        Some(&json!({"type": "kubeconfig", "path": c.kubeconfig, "context": "bmac-admin"}))
    );
    let token = admin_token(&c.kubeconfig);
    assert!(!format!("{outputs:?}").contains(&token));

    let step = cluster_step(&c.kubeconfig, "bmac-admin");
    let (config, _) = present(run.observe(&step).await.expect("observe cluster"));
    assert_eq!(config["provider"], json!("kube"));
    assert_eq!(config["context"], json!("bmac-admin"));

    // Destroying the cluster step deletes nothing: the server still answers.
    let mut run = run;
    run.apply(&step).await.expect("re-apply cluster");
    run.destroy(&step).await.expect("destroy is a no-op");
    c.admin
        .apiserver_version()
        .await
        .expect("cluster still there");

    let err = Run::new(&c.kubeconfig, "no-such-context")
        .await
        .err()
        .expect("error");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains("no context \"no-such-context\""),
        "{}",
        err.message
    );

    // A client-certificate context works as well as a token one.
    let (cert_run, cert_outputs) = Run::new(&c.kubeconfig, "bmac-admin-cert")
        .await
        .expect("cert context");
    assert_eq!(
        cert_outputs.get("credentials").and_then(|v| v.value()),
        Some(&json!({"type": "kubeconfig", "path": c.kubeconfig, "context": "bmac-admin-cert"}))
    );
    let default_ns = in_cluster("ns.default", kinds::NAMESPACE, &namespace("default", &[]));
    assert!(matches!(
        cert_run
            .observe(&default_ns)
            .await
            .expect("observe via cert"),
        Observed::Present { .. }
    ));
}

#[tokio::test]
async fn baseline_applies_converges_without_writes_and_destroys_cleanly() {
    let t0 = std::time::Instant::now();
    let Some(c) = connect("baseline_applies_converges_without_writes_and_destroys_cleanly").await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    release_default_pod_security(&c.admin).await;
    let sfx = suffix();
    let app = format!("payments-{sfx}");
    let legacy = format!("legacy-{sfx}");
    // A namespace someone else made, with a label of theirs.
    create_namespace(&c.admin, &legacy, &[("owner", "platform")]).await;
    let default_before = namespace_labels(&c.admin, "default")
        .await
        .expect("default ns");

    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let ns_app = in_cluster(
        "ns.app",
        kinds::NAMESPACE,
        &namespace(&app, &[("team", "payments")]),
    );
    let ns_legacy = in_cluster(
        "ns.legacy",
        kinds::NAMESPACE,
        &namespace(&legacy, &[("team", "platform-ops")]),
    );
    let psa_app = in_cluster(
        "psa.app",
        kinds::POD_SECURITY_LABELS,
        &psa(&app, "restricted", "restricted"),
    );
    let psa_default = in_cluster(
        "psa.default",
        kinds::POD_SECURITY_LABELS,
        &psa("default", "baseline", "restricted"),
    );
    let psa_legacy = in_cluster(
        "psa.legacy",
        kinds::POD_SECURITY_LABELS,
        &psa(&legacy, "baseline", "baseline"),
    );
    let engine_step = in_cluster(
        "policy_engine",
        kinds::POLICY_ENGINE,
        &engine(&bundle_sha256()),
    );
    let policy_name = format!("require-team-{sfx}");
    let policy = in_cluster(
        "policy.require_team",
        kinds::POLICY,
        &PolicyConfig {
            name: policy_name.clone(),
            engine: "kyverno".into(),
            objects: vec![json!({
                "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
                "metadata": {"name": policy_name},
                "spec": {"validationFailureAction": "Enforce", "background": true, "rules": [{
                    "name": "check-team",
                    "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
                    "validate": {"message": "namespaces need a team label",
                                 "pattern": {"metadata": {"labels": {"team": "?*"}}}}
                }]}
            })],
        },
    );
    let sa = in_cluster(
        "sa.api",
        kinds::SERVICE_ACCOUNT,
        &ServiceAccountConfig {
            namespace: app.clone(),
            name: "payments-api".into(),
            role_annotation: "eks.amazonaws.com/role-arn".into(),
            role: None,
        },
    );
    run.set_input(
        "sa.api",
        INPUT_ROLE,
        "arn:aws:iam::123456789012:role/payments-api",
    );
    let sc_name = format!("fast-{sfx}");
    let sc = in_cluster(
        "storage_class.fast",
        kinds::STORAGE_CLASS,
        &StorageClassConfig {
            name: sc_name.clone(),
            provisioner: "ebs.csi.aws.com".into(),
            kind: "gp3".into(),
            encrypted: true,
            default: true,
            reclaim_policy: "Delete".into(),
            volume_binding_mode: "WaitForFirstConsumer".into(),
            allow_volume_expansion: true,
            parameters: BTreeMap::from([("iops".to_owned(), "3000".to_owned())]),
        },
    );
    let manifest = in_cluster(
        "manifest.extras",
        kinds::MANIFEST,
        &ManifestConfig {
            name: "extras".into(),
            objects: vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "payments-settings", "namespace": app},
            "data": {"region": "eu-west-1"}})],
            bundle: None,
            namespace: None,
        },
    );

    // A policy before its engine: no CRD defines the kind anywhere, so retrying cannot help —
    // permanent, naming the object and the API it needs; nothing written.
    let early = run.apply(&policy).await.expect_err("no CRD yet");
    assert!(!early.is_retryable(), "{}", early.message);
    assert!(early.message.contains("ClusterPolicy"), "{}", early.message);
    assert!(
        early.message.contains("needs kyverno.io/v1"),
        "{}",
        early.message
    );

    let steps = [
        &ns_app,
        &ns_legacy,
        &psa_app,
        &psa_default,
        &psa_legacy,
        &engine_step,
        &policy,
        &sa,
        &sc,
        &manifest,
    ];
    for step in steps {
        run.apply(step)
            .await
            .unwrap_or_else(|e| panic!("apply {}: {}", step.id, e.message));
    }
    let first_apply = t0.elapsed();

    // Every object exists — read back from the server, not from outputs.
    let labels = namespace_labels(&c.admin, &app)
        .await
        .expect("app namespace");
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let default_now = namespace_labels(&c.admin, "default")
        .await
        .expect("default");
    assert_eq!(
        default_now
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
    assert_eq!(
        default_now
            .get("pod-security.kubernetes.io/warn")
            .map(String::as_str),
        Some("restricted")
    );
    let legacy_labels = namespace_labels(&c.admin, &legacy).await.expect("legacy");
    assert_eq!(
        legacy_labels.get("owner").map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        legacy_labels.get("team").map(String::as_str),
        Some("platform-ops")
    );
    let crds: Api<CustomResourceDefinition> = Api::all(c.admin.clone());
    let crd = crds
        .get("clusterpolicies.kyverno.io")
        .await
        .expect("CRD installed");
    let established = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(established
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    let deployments: Api<Deployment> = Api::namespaced(c.admin.clone(), "kyverno");
    let d = deployments
        .get("kyverno-admission-controller")
        .await
        .expect("deployment");
    let pod = d.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("mirror.internal:5000/ghcr/kyverno/kyverno:v1.12.5")
    );
    assert_eq!(
        pod.init_containers.unwrap_or_default()[0].image.as_deref(),
        Some("mirror.internal:5000/ghcr/kyverno/kyvernopre:v1.12.5")
    );
    let roles: Api<ClusterRole> = Api::all(c.admin.clone());
    assert!(roles
        .get_opt("kyverno:admission-controller")
        .await
        .expect("GET role")
        .is_some());
    let policies: Api<DynamicObject> = Api::all_with(c.admin.clone(), &cluster_policy_resource());
    let live_policy = policies
        .get(&policy_name)
        .await
        .expect("ClusterPolicy applied");
    assert_eq!(
        live_policy.data["spec"]["validationFailureAction"],
        json!("Enforce")
    );
    let sas: Api<ServiceAccount> = Api::namespaced(c.admin.clone(), &app);
    let live_sa = sas.get("payments-api").await.expect("service account");
    assert_eq!(
        live_sa
            .metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::123456789012:role/payments-api")
    );
    let scs: Api<StorageClass> = Api::all(c.admin.clone());
    let live_sc = scs.get(&sc_name).await.expect("storage class");
    assert_eq!(
        live_sc
            .metadata
            .annotations
            .unwrap_or_default()
            .get("storageclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        live_sc
            .parameters
            .unwrap_or_default()
            .get("encrypted")
            .map(String::as_str),
        Some("true")
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.admin.clone(), &app);
    let cm = cms.get("payments-settings").await.expect("configmap");
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("region")
            .map(String::as_str),
        Some("eu-west-1")
    );

    // Observe rebuilds each step's config from the live objects: no drift right after apply.
    for step in [
        &ns_app,
        &ns_legacy,
        &psa_app,
        &psa_default,
        &engine_step,
        &sa,
        &sc,
    ] {
        let (config, _) = present(run.observe(step).await.expect("observe"));
        assert_eq!(config, step.config, "observed config of {}", step.id);
    }
    for step in [&policy, &manifest] {
        let (config, _) = present(run.observe(step).await.expect("observe"));
        assert_eq!(
            config["objects"], step.config["objects"],
            "observed objects of {}",
            step.id
        );
    }

    // Applying again with the same configs: the server sees zero write requests.
    let before = writes(&c.admin).await;
    let t1 = std::time::Instant::now();
    for step in steps {
        run.apply(step)
            .await
            .unwrap_or_else(|e| panic!("re-apply {}: {}", step.id, e.message));
    }
    let reapply = t1.elapsed();
    let after = writes(&c.admin).await;
    assert_eq!(
        after - before,
        0,
        "re-applying an unchanged baseline wrote to the API server"
    );

    // Destroy, last first; the cluster is left as it was found.
    let finalizer = NamespaceFinalizer::start(&c.admin);
    let t2 = std::time::Instant::now();
    for step in steps.iter().rev() {
        run.destroy(step)
            .await
            .unwrap_or_else(|e| panic!("destroy {}: {}", step.id, e.message));
    }
    let destroy = t2.elapsed();
    drop(finalizer);
    assert!(
        namespace_labels(&c.admin, &app).await.is_none(),
        "bmac's namespace is deleted"
    );
    assert!(
        namespace_labels(&c.admin, "kyverno").await.is_none(),
        "engine namespace is deleted"
    );
    assert!(
        !crd_exists(&c.admin, "clusterpolicies.kyverno.io").await,
        "engine CRD is deleted"
    );
    assert!(roles
        .get_opt("kyverno:admission-controller")
        .await
        .expect("GET")
        .is_none());
    assert!(scs.get_opt(&sc_name).await.expect("GET").is_none());
    let legacy_after = namespace_labels(&c.admin, &legacy)
        .await
        .expect("pre-existing namespace is kept");
    assert_eq!(
        legacy_after,
        BTreeMap::from([("owner".to_owned(), "platform".to_owned())]),
        "only bmac's labels are removed from a namespace bmac did not create"
    );
    assert_eq!(
        namespace_labels(&c.admin, "default")
            .await
            .expect("default"),
        default_before
    );
    eprintln!(
        "timings: first apply {first_apply:?} (incl. setup), re-apply {reapply:?}, destroy {destroy:?}"
    );
    let nss: Api<Namespace> = Api::all(c.admin.clone());
    let _ = nss.delete(&legacy, &Default::default()).await;
}

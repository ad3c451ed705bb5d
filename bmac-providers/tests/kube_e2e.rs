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
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use kube_support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUNDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kyverno-bundle.yaml"
);

fn bundle_sha256() -> String {
    let bytes = std::fs::read(BUNDLE).expect("fixture bundle");
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mode(level: &str) -> PodSecurityMode {
    PodSecurityMode {
        level: level.into(),
        version: "latest".into(),
    }
}

fn psa(namespace: &str, enforce: &str, warn: &str) -> PodSecurityLabelsConfig {
    PodSecurityLabelsConfig {
        namespace: namespace.into(),
        enforce: mode(enforce),
        audit: mode(warn),
        warn: mode(warn),
    }
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn engine(sha256: &str) -> PolicyEngineConfig {
    PolicyEngineConfig {
        engine: "kyverno".into(),
        version: "v1.12.5".into(),
        bundle: Some(Bundle {
            source: BUNDLE.into(),
            sha256: sha256.into(),
        }),
        image_mirrors: BTreeMap::from([(
            "ghcr.io".to_owned(),
            "mirror.internal:5000/ghcr".to_owned(),
        )]),
    }
}

async fn create_namespace(admin: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}
    }))
    .expect("namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create pre-existing namespace");
}

async fn crd_exists(admin: &Client, name: &str) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    api.get_opt(name).await.expect("GET crd").is_some()
}

fn cluster_policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kyverno.io", "v1", "ClusterPolicy"),
        "clusterpolicies",
    )
}

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
    let credentials = outputs.get("credentials").expect("credentials output");
    assert!(credentials.is_sensitive());
    assert!(credentials.value().and_then(|v| v.get("token")).is_some());
    assert!(!format!("{outputs:?}").contains(
        credentials
            .value()
            .and_then(|v| v["token"].as_str())
            .unwrap_or("?")
    ));

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
    let creds = cert_outputs
        .get("credentials")
        .and_then(|v| v.value())
        .expect("creds");
    assert!(creds.get("client_certificate_data").is_some());
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
        },
    );

    // A policy before its engine: the kind is not served yet — retryable, nothing written.
    let early = run.apply(&policy).await.expect_err("no CRD yet");
    assert!(early.is_retryable(), "{}", early.message);
    assert!(early.message.contains("ClusterPolicy"), "{}", early.message);

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

#[tokio::test]
async fn changing_one_namespace_level_updates_exactly_that_namespace() {
    let Some(c) = connect("changing_one_namespace_level_updates_exactly_that_namespace").await
    else {
        return;
    };
    let sfx = suffix();
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("team-{n}-{sfx}"))
        .collect();
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let mut steps = Vec::new();
    for (i, name) in names.iter().enumerate() {
        steps.push(in_cluster(
            &format!("ns.{i}"),
            kinds::NAMESPACE,
            &namespace(name, &[]),
        ));
        steps.push(in_cluster(
            &format!("psa.{i}"),
            kinds::POD_SECURITY_LABELS,
            &psa(name, "restricted", "restricted"),
        ));
    }
    for step in &steps {
        run.apply(step).await.expect("apply");
    }
    let api: Api<Namespace> = Api::all(c.admin.clone());
    let version = |ns: Namespace| ns.metadata.resource_version.unwrap_or_default();
    let mut before = Vec::new();
    for n in &names {
        before.push(version(api.get(n).await.expect("ns")));
    }

    steps[3] = in_cluster(
        "psa.1",
        kinds::POD_SECURITY_LABELS,
        &psa(&names[1], "baseline", "restricted"),
    );
    let writes_before = writes(&c.admin).await;
    for step in &steps {
        run.apply(step).await.expect("apply with one change");
    }
    assert_eq!(
        writes(&c.admin).await - writes_before,
        1,
        "exactly one write request"
    );
    let b = namespace_labels(&c.admin, &names[1]).await.expect("b");
    assert_eq!(
        b.get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
    assert_eq!(
        b.get("pod-security.kubernetes.io/warn").map(String::as_str),
        Some("restricted")
    );
    assert_eq!(version(api.get(&names[0]).await.expect("a")), before[0]);
    assert_ne!(version(api.get(&names[1]).await.expect("b")), before[1]);
    assert_eq!(version(api.get(&names[2]).await.expect("c")), before[2]);

    let _finalizer = NamespaceFinalizer::start(&c.admin);
    for step in steps.iter().rev() {
        run.destroy(step).await.expect("destroy");
    }
    for n in &names {
        assert!(namespace_labels(&c.admin, n).await.is_none());
    }
}

#[tokio::test]
async fn hand_edited_label_shows_as_drift_and_apply_restores_it() {
    let Some(c) = connect("hand_edited_label_shows_as_drift_and_apply_restores_it").await else {
        return;
    };
    let name = format!("drift-{}", suffix());
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let step = in_cluster(
        "ns.drift",
        kinds::NAMESPACE,
        &namespace(&name, &[("team", "payments"), ("tier", "gold")]),
    );
    run.apply(&step).await.expect("apply");
    let api: Api<Namespace> = Api::all(c.admin.clone());

    // 1. A plain merge patch by another client changes bmac's label and adds one of its own.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    api.patch(
        &name,
        &edit,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "hacked", "note": "mine"}}})),
    )
    .await
    .expect("hand edit");
    let (config, _) = present(run.observe(&step).await.expect("observe"));
    assert_eq!(
        config["labels"]["team"],
        json!("hacked"),
        "the edited label shows as moved"
    );
    assert_eq!(config["labels"]["tier"], json!("gold"));
    assert!(
        config["labels"].get("note").is_none(),
        "another manager's label is not bmac's"
    );
    assert_ne!(config, step.config);
    run.apply(&step).await.expect("apply restores");
    let labels = namespace_labels(&c.admin, &name).await.expect("ns");
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        labels.get("note").map(String::as_str),
        Some("mine"),
        "other labels are kept"
    );
    let (config, _) = present(run.observe(&step).await.expect("observe"));
    assert_eq!(config, step.config);

    // 2. A server-side apply by another field manager takes the label over.
    let other = PatchParams::apply("someone-else").force();
    api.patch(
        &name,
        &other,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"tier": "bronze"}}})),
    )
    .await
    .expect("other manager's apply");
    let (config, _) = present(run.observe(&step).await.expect("observe"));
    assert_eq!(config["labels"]["tier"], json!("bronze"));
    run.apply(&step)
        .await
        .expect("apply restores (bmac created the namespace, so it forces)");
    let labels = namespace_labels(&c.admin, &name).await.expect("ns");
    assert_eq!(labels.get("tier").map(String::as_str), Some("gold"));

    // 3. A label removed by hand shows as null and comes back.
    api.patch(
        &name,
        &edit,
        &Patch::Merge(json!({"metadata": {"labels": {"team": null}}})),
    )
    .await
    .expect("remove label");
    let (config, _) = present(run.observe(&step).await.expect("observe"));
    assert_eq!(config["labels"]["team"], Value::Null);
    run.apply(&step).await.expect("apply restores");
    assert_eq!(
        namespace_labels(&c.admin, &name)
            .await
            .expect("ns")
            .get("team")
            .map(String::as_str),
        Some("payments")
    );

    let _finalizer = NamespaceFinalizer::start(&c.admin);
    run.destroy(&step).await.expect("destroy");
    assert!(namespace_labels(&c.admin, &name).await.is_none());
}

#[tokio::test]
async fn bundle_with_wrong_digest_is_refused_before_anything_is_applied() {
    let Some(c) = connect("bundle_with_wrong_digest_is_refused_before_anything_is_applied").await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let wrong = "0f".repeat(32);
    let step = in_cluster("policy_engine", kinds::POLICY_ENGINE, &engine(&wrong));
    let before = writes(&c.admin).await;
    let err = run.apply(&step).await.expect_err("digest mismatch");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains(&wrong),
        "names the expected digest: {}",
        err.message
    );
    assert!(
        err.message.contains(&bundle_sha256()),
        "names the actual digest: {}",
        err.message
    );
    assert_eq!(writes(&c.admin).await, before, "nothing was written");
    assert!(namespace_labels(&c.admin, "kyverno").await.is_none());
    assert!(!crd_exists(&c.admin, "clusterpolicies.kyverno.io").await);
}

#[tokio::test]
async fn limited_credentials_get_a_permission_error_naming_verb_and_resource() {
    let Some(c) =
        connect("limited_credentials_get_a_permission_error_naming_verb_and_resource").await
    else {
        return;
    };
    let name = format!("denied-{}", suffix());
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-limited")
        .await
        .expect("/version is public");
    let step = in_cluster(
        "ns.denied",
        kinds::NAMESPACE,
        &namespace(&name, &[("team", "x")]),
    );
    let err = run.apply(&step).await.expect_err("forbidden");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains(&format!("permission denied: cannot get namespaces \"{name}\" as user \"bmac-limited\"; grant the `get` verb on `namespaces`")),
        "{}",
        err.message
    );
    assert!(!err.message.contains("HTTP"), "{}", err.message);

    // With read access only, the write is what is denied.
    let role_name = format!("bmac-test-read-ns-{}", suffix());
    let roles: Api<DynamicObject> = Api::all_with(
        c.admin.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            "clusterroles",
        ),
    );
    let bindings: Api<DynamicObject> = Api::all_with(
        c.admin.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
        ),
    );
    let pp = PatchParams::apply("bmac-test");
    roles
        .patch(
            &role_name,
            &pp,
            &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": role_name},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]})),
        )
        .await
        .expect("role");
    bindings.patch(&role_name, &pp, &Patch::Apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bmac-limited"}]}))).await.expect("binding");
    let mut denied = None;
    // RBAC changes reach the authorizer's cache within moments.
    for _ in 0..50 {
        let err = run
            .apply(&step)
            .await
            .expect_err("still forbidden to patch");
        if err.message.contains("cannot patch") {
            denied = Some(err);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = bindings.delete(&role_name, &Default::default()).await;
    let _ = roles.delete(&role_name, &Default::default()).await;
    let err = denied.expect("a patch denial once get is allowed");
    assert!(
        err.message.contains(&format!("permission denied: cannot patch namespaces \"{name}\" as user \"bmac-limited\"; grant the `patch` verb on `namespaces`")),
        "{}",
        err.message
    );
    assert!(namespace_labels(&c.admin, &name).await.is_none());
}

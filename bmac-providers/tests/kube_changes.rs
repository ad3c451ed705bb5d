//! The kube provider against a real kube-apiserver when things change: one field of one
//! step, a label edited by hand, a bundle whose digest does not match, credentials without
//! rights. See `kube_e2e.rs` for how to run.

#![cfg(feature = "kube")]

mod kube_support;

use bmac_steps::kinds;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_support::fixtures::*;
use kube_support::*;
use serde_json::{json, Value};

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

#[tokio::test]
async fn destroy_leaves_an_object_it_did_not_create_when_releasing_it_would_break_it() {
    let Some(c) =
        connect("destroy_leaves_an_object_it_did_not_create_when_releasing_it_would_break_it")
            .await
    else {
        return;
    };
    ensure_no_kyverno(&c.admin).await;
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    // Two steps install the same engine: the first creates its objects, the second finds them
    // existing (created by another step) and only adds its fields.
    let first = in_cluster(
        "engine.first",
        kinds::POLICY_ENGINE,
        &engine(&bundle_sha256()),
    );
    let second = in_cluster(
        "engine.second",
        kinds::POLICY_ENGINE,
        &engine(&bundle_sha256()),
    );
    run.apply(&first).await.expect("first install");
    run.apply(&second)
        .await
        .expect("second install over the first");

    // Releasing the second step's fields from the Deployment would leave it without
    // containers (invalid): the object is not the second step's, so it stays as it is.
    run.destroy(&second)
        .await
        .expect("destroy of the second step");
    let deployments = Api::<DynamicObject>::namespaced_with(
        c.admin.clone(),
        "kyverno",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let kept = deployments
        .get_opt("kyverno-admission-controller")
        .await
        .expect("GET deployment");
    assert!(kept.is_some(), "the first step's Deployment is still there");

    // Both steps write as field manager `bmac`, so releasing the second step's fields also
    // released the first's ownership marker: its destroy now treats the objects as not its
    // own too, and still must not fail or break them.
    run.destroy(&first)
        .await
        .expect("destroy of the first step");
    assert!(deployments
        .get_opt("kyverno-admission-controller")
        .await
        .expect("GET deployment")
        .is_some());
    ensure_no_kyverno(&c.admin).await;
}

//! Harness for the CLI's end-to-end tests against a real kube-apiserver
//! (`scripts/kube-env.sh start DIR; . DIR/env`): the cluster side. [`workspace`] is the bmac
//! side (a copied spec, runs of the real `bmac` binary, its JSON events).
//!
//! - [`connect`] finds the server through `$KUBECONFIG` (context `bmac-admin`). With
//!   `BMAC_E2E=1` an unreachable server FAILS the test; without it the test prints a notice and
//!   returns early, so a plain `cargo test` on a machine without a server passes
//!   without pretending to have checked anything.
//! - Tests hold a process-wide lock while they run: they count the API server's own write
//!   counter (`apiserver_request_total`), which parallel tests would disturb, and the policy
//!   engine's CRD and ClusterPolicies are cluster-scoped and shared.
//! - The test API server has no kube-controller-manager, so nothing finalizes a deleted
//!   namespace: it would stay `Terminating` and bmac's destroy would time out waiting for it.
//!   [`NamespaceFinalizer`] plays the namespace controller's last part while a destroy runs (it
//!   clears `spec.finalizers` through the `finalize` subresource, as the controller does once a
//!   namespace is empty; nothing runs pods here, so they are empty).
//!
//! Everything the tests assert about the cluster is read back here with kube-rs, never taken
//! from bmac's state or output.

#![allow(dead_code)]

#[path = "../../../bmac-providers/tests/kube_support/apiserver.rs"]
mod apiserver;
#[path = "../../../bmac-providers/tests/kube_support/exec_plugin.rs"]
mod exec_plugin;
pub mod lifecycle;
pub mod rbac;
pub mod workspace;

pub use apiserver::*;
// Not every test binary that includes this harness runs exec plugins (gcp_cli does not).
#[allow(unused_imports)]
pub use exec_plugin::*;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;
use serde_json::json;

/// The policy engine's CRD, as the example bundle installs it.
pub const KYVERNO_CRD: &str = "clusterpolicies.kyverno.io";

/// A namespace, or `None` when it does not exist.
pub async fn namespace(admin: &Client, name: &str) -> Option<Namespace> {
    let api: Api<Namespace> = Api::all(admin.clone());
    api.get_opt(name).await.expect("GET namespace")
}

/// Every namespace's resourceVersion, by name.
pub async fn namespace_versions(admin: &Client) -> BTreeMap<String, String> {
    let api: Api<Namespace> = Api::all(admin.clone());
    api.list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .map(|ns| {
            (
                ns.metadata.name.unwrap_or_default(),
                ns.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect()
}

/// Creates a namespace with labels, as someone other than bmac would.
pub async fn create_namespace(admin: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(admin.clone());
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .expect("namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create a pre-existing namespace");
}

/// Deletes namespaces and waits until they are gone (finalizing them meanwhile).
pub async fn delete_namespaces(admin: &Client, names: &[&str]) {
    let _finalizer = NamespaceFinalizer::start(admin);
    let api: Api<Namespace> = Api::all(admin.clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    for _ in 0..300 {
        let mut left = false;
        for name in names {
            left |= api.get_opt(name).await.expect("GET namespace").is_some();
        }
        if !left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("namespaces {names:?} could not be removed");
}

/// Whether the policy engine's CRD exists, and whether it is `Established`.
pub async fn crd_established(admin: &Client, name: &str) -> Option<bool> {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = api.get_opt(name).await.expect("GET crd")?;
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    Some(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
    )
}

/// Removes a Kyverno install a failed earlier run left behind (cluster-scoped and shared).
pub async fn ensure_no_kyverno(admin: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let _ = crds.delete(KYVERNO_CRD, &DeleteParams::default()).await;
    delete_namespaces(admin, &["kyverno"]).await;
    for _ in 0..300 {
        if crds.get_opt(KYVERNO_CRD).await.expect("GET crd").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a Kyverno CRD left by an earlier run could not be removed");
}

/// The names of the ClusterPolicies that exist (empty when the CRD is not served).
pub async fn cluster_policies(admin: &Client) -> Vec<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kyverno.io", "v1", "ClusterPolicy"),
        "clusterpolicies",
    );
    let api: Api<DynamicObject> = Api::all_with(admin.clone(), &resource);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The Pod Security labels bmac sets for one level on every mode.
pub fn psa_labels(enforce: &str, audit: &str, warn: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (mode, level) in [("enforce", enforce), ("audit", audit), ("warn", warn)] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            level.to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    labels
}

/// `base` plus `extra` (extra wins).
pub fn merged(base: &[(&str, &str)], extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = base
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.extend(extra.clone());
    out
}

//! Step configs and cluster checks shared by the kube end-to-end tests.

use std::collections::BTreeMap;

use bmac_steps::config::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const BUNDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kyverno-bundle.yaml"
);

pub fn bundle_sha256() -> String {
    let bytes = std::fs::read(BUNDLE).expect("fixture bundle");
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn mode(level: &str) -> PodSecurityMode {
    PodSecurityMode {
        level: level.into(),
        version: "latest".into(),
    }
}

pub fn psa(namespace: &str, enforce: &str, warn: &str) -> PodSecurityLabelsConfig {
    PodSecurityLabelsConfig {
        namespace: namespace.into(),
        enforce: mode(enforce),
        audit: mode(warn),
        warn: mode(warn),
    }
}

pub fn namespace(name: &str, labels: &[(&str, &str)]) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn engine(sha256: &str) -> PolicyEngineConfig {
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

pub async fn create_namespace(admin: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}
    }))
    .expect("namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create pre-existing namespace");
}

pub async fn crd_exists(admin: &Client, name: &str) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    api.get_opt(name).await.expect("GET crd").is_some()
}

pub fn cluster_policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kyverno.io", "v1", "ClusterPolicy"),
        "clusterpolicies",
    )
}

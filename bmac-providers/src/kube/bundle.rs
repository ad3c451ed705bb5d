//! Release bundles: parse, order and mirror-rewrite.
//!
//! A bundle is a release manifest (Kyverno's `install.yaml`, Gatekeeper's `gatekeeper.yaml`,
//! Argo CD's `install.yaml`, Flux's components): multi-document YAML. Invariants:
//! - Only verified bytes are parsed: `fetch.rs` reads, downloads or takes from the cache, and
//!   checks the pinned SHA-256 first, so a tampered or truncated bundle never reaches the
//!   cluster — not even its first object.
//! - CustomResourceDefinitions are applied first (the caller waits for `Established`), then
//!   every other object in bundle order.
//! - Images of workloads (Deployment, DaemonSet, StatefulSet, Job, CronJob, Pod) are rewritten
//!   per `image_mirrors`: the upstream registry host is replaced by the mirror prefix. An
//!   image without a registry host is on `docker.io` (and a one-segment name is under
//!   `library/`), exactly as the container runtime would resolve it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Why a bundle's text cannot be used. Permanent: parsing the same bytes fails the same way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error("bundle `{source_name}`, document {document}: {reason}")]
    Parse {
        source_name: String,
        document: usize,
        reason: String,
    },
}

/// Parses multi-document YAML into objects: empty documents are skipped, `kind: List`
/// documents are flattened, and every object must name `apiVersion`, `kind` and
/// `metadata.name`.
pub(crate) fn parse(source: &str, bytes: &[u8]) -> Result<Vec<Value>, BundleError> {
    let text = std::str::from_utf8(bytes).map_err(|e| BundleError::Parse {
        source_name: source.to_owned(),
        document: 1,
        reason: format!("not UTF-8 text: {e}"),
    })?;
    let mut objects = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let fail = |reason: String| BundleError::Parse {
            source_name: source.to_owned(),
            document: i + 1,
            reason,
        };
        let yaml = serde_yaml::Value::deserialize(document).map_err(|e| fail(e.to_string()))?;
        if yaml.is_null() {
            continue;
        }
        let value = serde_json::to_value(&yaml).map_err(|e| fail(e.to_string()))?;
        let items = match value.get("kind").and_then(Value::as_str) {
            Some("List") => match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
            _ => vec![value],
        };
        for item in items {
            check_object(&item).map_err(|reason| fail(reason.to_owned()))?;
            objects.push(item);
        }
    }
    Ok(objects)
}

fn check_object(v: &Value) -> Result<(), &'static str> {
    if !v.is_object() {
        return Err("not a Kubernetes object (a YAML mapping)");
    }
    for (pointer, what) in [
        ("/apiVersion", "object has no `apiVersion`"),
        ("/kind", "object has no `kind`"),
        ("/metadata/name", "object has no `metadata.name`"),
    ] {
        if v.pointer(pointer).and_then(Value::as_str).is_none() {
            return Err(what);
        }
    }
    Ok(())
}

/// Whether an object is a CustomResourceDefinition.
pub(crate) fn is_crd(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
}

/// The objects in apply order: CRDs first, then the rest in bundle order.
pub(crate) fn apply_order(objects: Vec<Value>) -> Vec<Value> {
    let (mut crds, rest): (Vec<_>, Vec<_>) = objects.into_iter().partition(is_crd);
    crds.extend(rest);
    crds
}

/// Rewrites the container images of workload objects per `mirrors` (upstream host → prefix).
pub(crate) fn rewrite_images(objects: &mut [Value], mirrors: &BTreeMap<String, String>) {
    if mirrors.is_empty() {
        return;
    }
    for object in objects {
        let Some(pod_spec) = pod_spec_pointer(object) else {
            continue;
        };
        let Some(spec) = object.pointer_mut(pod_spec) else {
            continue;
        };
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(Value::Array(containers)) = spec.get_mut(list) else {
                continue;
            };
            for container in containers {
                if let Some(Value::String(image)) = container.get_mut("image") {
                    *image = rewrite_image(image, mirrors);
                }
            }
        }
    }
}

/// Where a workload object keeps its pod spec (`/spec/template/spec` for a Deployment …).
pub(crate) fn pod_spec_pointer(object: &Value) -> Option<&'static str> {
    match object.get("kind").and_then(Value::as_str)? {
        "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "PodTemplate" => Some("/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        "Pod" => Some("/spec"),
        _ => None,
    }
}

/// One image reference rewritten per `mirrors`; images of unmirrored registries are unchanged.
pub(crate) fn rewrite_image(image: &str, mirrors: &BTreeMap<String, String>) -> String {
    let (host, path) = split_registry(image);
    let mirror = mirrors
        .iter()
        .find(|(upstream, _)| canonical_host(upstream) == host)
        .map(|(_, mirror)| mirror.trim_end_matches('/'));
    match mirror {
        Some(prefix) => format!("{prefix}/{path}"),
        None => image.to_owned(),
    }
}

/// Splits an image into its registry host (canonical) and the repository path with tag or
/// digest. `kyverno/kyverno:v1` → (`docker.io`, `kyverno/kyverno:v1`); `nginx` →
/// (`docker.io`, `library/nginx`).
fn split_registry(image: &str) -> (String, String) {
    if let Some((first, rest)) = image.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            return (canonical_host(first), rest.to_owned());
        }
        return ("docker.io".to_owned(), image.to_owned());
    }
    ("docker.io".to_owned(), format!("library/{image}"))
}

fn canonical_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirrors() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "ghcr.io".to_owned(),
                "mirror.internal:5000/ghcr/".to_owned(),
            ),
            (
                "docker.io".to_owned(),
                "mirror.internal:5000/hub".to_owned(),
            ),
        ])
    }

    #[test]
    fn images_are_rewritten_by_registry_host() {
        let m = mirrors();
        assert_eq!(
            rewrite_image("ghcr.io/kyverno/kyverno:v1.12.5", &m),
            "mirror.internal:5000/ghcr/kyverno/kyverno:v1.12.5"
        );
        assert_eq!(
            rewrite_image("nginx:1.25", &m),
            "mirror.internal:5000/hub/library/nginx:1.25"
        );
        assert_eq!(
            rewrite_image("bitnami/kubectl@sha256:abc", &m),
            "mirror.internal:5000/hub/bitnami/kubectl@sha256:abc"
        );
        assert_eq!(
            rewrite_image("index.docker.io/busybox", &m),
            "mirror.internal:5000/hub/busybox"
        );
        assert_eq!(
            rewrite_image("registry.k8s.io/pause:3.9", &m),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(rewrite_image("localhost:5000/x", &m), "localhost:5000/x");
    }

    #[test]
    fn workloads_get_rewritten_other_objects_do_not() {
        let mut objects = vec![
            json!({"kind": "Deployment", "spec": {"template": {"spec": {
                "initContainers": [{"name": "i", "image": "ghcr.io/a/init:1"}],
                "containers": [{"name": "c", "image": "ghcr.io/a/b:1"}]}}}}),
            json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
            json!({"kind": "ConfigMap", "data": {"image": "ghcr.io/a/b:1"}}),
        ];
        rewrite_images(&mut objects, &mirrors());
        assert_eq!(
            objects[0].pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("mirror.internal:5000/ghcr/a/b:1"))
        );
        assert_eq!(
            objects[0].pointer("/spec/template/spec/initContainers/0/image"),
            Some(&json!("mirror.internal:5000/ghcr/a/init:1"))
        );
        assert_eq!(
            objects[1].pointer("/spec/jobTemplate/spec/template/spec/containers/0/image"),
            Some(&json!("mirror.internal:5000/hub/library/busybox"))
        );
        assert_eq!(objects[2]["data"]["image"], json!("ghcr.io/a/b:1"));
    }

    #[test]
    fn multi_document_yaml_parses_in_order_with_crds_first() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: k}\n---\n---\n\
            apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: c}\n\
            ---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ServiceAccount, metadata: {name: s, namespace: k}}\n";
        let objects = apply_order(parse("t", text.as_bytes()).unwrap());
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["CustomResourceDefinition", "Namespace", "ServiceAccount"]
        );
        let err = parse("t", b"apiVersion: v1\nkind: X\n").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
        let err = parse("t", b"a: b\n---\n: [").unwrap_err();
        assert!(err.to_string().contains("document"), "{err}");
    }
}

//! Filling in the defaults of list-map *keys* that manifests leave out, before a server-side
//! apply.
//!
//! Server-side apply merges lists such as a Service's `spec.ports` or a container's `ports` as
//! maps keyed by some of their fields (`port` + `protocol`, `containerPort` + `protocol`). A
//! key field the manifest omits is defaulted by the API server on create, but the apply
//! itself needs it to identify the item: Kubernetes before 1.21 (the test apiserver is 1.20)
//! refuses the patch with HTTP 500 "failed to create typed patch object … associative list
//! with keys has an element that omits key field \"protocol\"", and later servers still apply
//! a port list whose keys they must guess. `kubectl apply` (client-side) never hit this, so
//! release manifests routinely omit `protocol`.
//!
//! What is filled in is exactly the value the API server defaults — `protocol: TCP` — so the
//! object means the same; nothing else is touched and a written value is never replaced. The
//! lists covered (every list-map whose key has a server default in the core API):
//! - `spec.ports[*].protocol` of a `v1` Service;
//! - `ports[*].protocol` of every container and init container in a pod spec — Pods and the
//!   pod templates of Deployments, DaemonSets, StatefulSets, ReplicaSets, Jobs, CronJobs,
//!   ReplicationControllers and PodTemplates.
//!
//! The step's config keeps the object as written; the filled-in copy is only what is sent
//! (and compared with the live object, where the server holds the same default).

use serde_json::Value;

use super::bundle::pod_spec_pointer;

/// The protocol the API server defaults a port to.
const DEFAULT_PROTOCOL: &str = "TCP";

/// Fills in the defaulted list-map keys of `object` (see the module docs).
pub(crate) fn fill_list_keys(object: &mut Value) {
    let core_service = object.get("kind").and_then(Value::as_str) == Some("Service")
        && object.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if core_service {
        if let Some(Value::Array(ports)) = object.pointer_mut("/spec/ports") {
            ports.iter_mut().for_each(default_protocol);
        }
        return;
    }
    let Some(pointer) = pod_spec_pointer(object) else {
        return;
    };
    let Some(pod_spec) = object.pointer_mut(pointer) else {
        return;
    };
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = pod_spec.get_mut(list) else {
            continue;
        };
        for container in containers {
            if let Some(Value::Array(ports)) = container.get_mut("ports") {
                ports.iter_mut().for_each(default_protocol);
            }
        }
    }
}

fn default_protocol(port: &mut Value) {
    if let Value::Object(port) = port {
        port.entry("protocol")
            .or_insert_with(|| Value::from(DEFAULT_PROTOCOL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_ports_without_protocol_get_tcp_and_written_ones_stay() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}});
        fill_list_keys(&mut svc);
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"port": 53, "protocol": "UDP"}])
        );
    }

    #[test]
    fn container_ports_in_every_pod_template_get_tcp() {
        let containers = json!([{"name": "c", "ports": [{"containerPort": 8080}]}]);
        for (kind, pointer) in [
            ("Deployment", "/spec/template/spec"),
            ("StatefulSet", "/spec/template/spec"),
            ("CronJob", "/spec/jobTemplate/spec/template/spec"),
            ("Pod", "/spec"),
        ] {
            let mut object = json!({"apiVersion": "apps/v1", "kind": kind});
            let spec = json!({"containers": containers, "initContainers": containers});
            let mut cursor = &mut object;
            for part in pointer.trim_start_matches('/').split('/') {
                cursor = &mut cursor[part];
            }
            *cursor = spec;
            fill_list_keys(&mut object);
            for list in ["containers", "initContainers"] {
                let port = object
                    .pointer(&format!("{pointer}/{list}/0/ports/0"))
                    .unwrap_or_else(|| panic!("{kind} {list}"));
                assert_eq!(
                    port,
                    &json!({"containerPort": 8080, "protocol": "TCP"}),
                    "{kind}"
                );
            }
        }
    }

    #[test]
    fn other_objects_are_left_alone() {
        let original = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"ports": "[{\"port\": 80}]"}});
        let mut object = original.clone();
        fill_list_keys(&mut object);
        assert_eq!(object, original);
        // A Service of another API group (a CRD named Service) is not the core one.
        let original = json!({"apiVersion": "example.com/v1", "kind": "Service",
            "spec": {"ports": [{"port": 80}]}});
        let mut object = original.clone();
        fill_list_keys(&mut object);
        assert_eq!(object, original);
    }
}

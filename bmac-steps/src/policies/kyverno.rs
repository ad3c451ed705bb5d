//! The baseline policies as Kyverno `ClusterPolicy` objects (`kyverno.io/v1`).
//!
//! Validation rules match Pods and check every container list (`containers`,
//! `initContainers`, `ephemeralContainers`) with Kyverno's conditional anchors: `=(field)`
//! checks a field only when it is present, so a pod that does not mention `privileged` passes
//! `disallow-privileged`, while one that sets it to `true` is rejected. Kyverno compares
//! pattern strings such as `"false"` with booleans by value. `require-non-root` uses
//! `anyPattern`: either the pod sets `runAsNonRoot: true` and no container overrides it, or
//! every container sets it. The namespace-label default is a `mutate` rule whose `+(label)`
//! anchors add a label only when it is absent.

use crate::spec::{BaselinePolicy, PolicyMode};
use serde_json::{json, Map, Value};

use super::{describe, PolicyContext};

/// The `ClusterPolicy` for one baseline policy.
pub fn cluster_policy(policy: BaselinePolicy, cx: &PolicyContext) -> Value {
    let rule = match policy {
        BaselinePolicy::DisallowPrivileged => pod_rule(
            "privileged-containers",
            "Privileged mode is not allowed: unset securityContext.privileged or set it to false.",
            json!({"pattern": containers_pattern(json!({
                "=(securityContext)": {"=(privileged)": "false"}
            }))}),
            cx,
        ),
        BaselinePolicy::DisallowHostNamespaces => pod_rule(
            "host-namespaces",
            "Sharing the host namespaces is not allowed: hostNetwork, hostPID and hostIPC must be unset or false.",
            json!({"pattern": {"spec": {
                "=(hostNetwork)": "false",
                "=(hostPID)": "false",
                "=(hostIPC)": "false",
            }}}),
            cx,
        ),
        BaselinePolicy::RequireNonRoot => {
            let mut pod_level = containers_pattern(json!({
                "=(securityContext)": {"=(runAsNonRoot)": "true"}
            }));
            pod_level["spec"]["securityContext"] = json!({"runAsNonRoot": "true"});
            let container_level = containers_pattern(json!({
                "securityContext": {"runAsNonRoot": "true"}
            }));
            pod_rule(
                "run-as-non-root",
                "Running as root is not allowed: set securityContext.runAsNonRoot to true on the pod or on every container.",
                json!({"anyPattern": [pod_level, container_level]}),
                cx,
            )
        }
        BaselinePolicy::RestrictRegistries => {
            let images = image_patterns(&cx.registries);
            pod_rule(
                "allowed-registries",
                &format!(
                    "Images must come from an allowed registry or mirror ({}), written with the registry host.",
                    cx.registries.join(", ")
                ),
                json!({"pattern": containers_pattern(json!({"image": images}))}),
                cx,
            )
        }
        BaselinePolicy::DefaultPodSecurityLabels => namespace_labels_rule(cx),
    };
    let mut spec = Map::new();
    spec.insert(
        "validationFailureAction".into(),
        json!(match cx.mode {
            PolicyMode::Enforce => "Enforce",
            PolicyMode::Audit => "Audit",
        }),
    );
    spec.insert("background".into(), json!(cx.background));
    if let Some(timeout) = cx.webhook_timeout_seconds {
        spec.insert("webhookTimeoutSeconds".into(), json!(timeout));
    }
    spec.insert("rules".into(), json!([rule]));
    json!({
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": policy.as_str(),
            "labels": {"app.kubernetes.io/managed-by": "bmac"},
            "annotations": {
                "policies.kyverno.io/title": policy.as_str(),
                "policies.kyverno.io/category": "bmac baseline",
                "policies.kyverno.io/description": describe(policy),
            },
        },
        "spec": Value::Object(spec),
    })
}

/// A rule validating Pods outside the excluded namespaces.
fn pod_rule(name: &str, message: &str, check: Value, cx: &PolicyContext) -> Value {
    let mut validate = json!({"message": message});
    if let (Value::Object(v), Value::Object(c)) = (&mut validate, check) {
        v.extend(c);
    }
    let mut rule = json!({
        "name": name,
        "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
        "validate": validate,
    });
    if !cx.excluded_namespaces.is_empty() {
        rule["exclude"] = json!({"any": [{"resources": {"namespaces": cx.excluded_namespaces}}]});
    }
    rule
}

/// A pattern applying `container` to every container list of a Pod.
fn containers_pattern(container: Value) -> Value {
    json!({"spec": {
        "=(ephemeralContainers)": [container.clone()],
        "=(initContainers)": [container.clone()],
        "containers": [container],
    }})
}

/// Kyverno's `a/* | b/*` alternative for the allowed registries (`*` alone allows all).
fn image_patterns(registries: &[String]) -> String {
    if registries.iter().any(|r| r == "*") {
        return "*".to_owned();
    }
    registries
        .iter()
        .map(|r| format!("{}/*", r.trim_end_matches('/')))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The mutate rule adding the default Pod Security labels to namespaces without them.
fn namespace_labels_rule(cx: &PolicyContext) -> Value {
    let labels: Map<String, Value> = cx
        .pod_security
        .labels()
        .into_iter()
        .map(|(k, v)| (format!("+({k})"), Value::String(v)))
        .collect();
    let mut rule = json!({
        "name": "add-pod-security-labels",
        "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
        "mutate": {"patchStrategicMerge": {"metadata": {"labels": labels}}},
    });
    if !cx.excluded_namespaces.is_empty() {
        rule["exclude"] = json!({"any": [{"resources": {"names": cx.excluded_namespaces}}]});
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PodSecurityLabelsConfig, PodSecurityMode};

    fn cx() -> PolicyContext {
        let mode = |level: &str| PodSecurityMode {
            level: level.into(),
            version: "latest".into(),
        };
        PolicyContext {
            mode: PolicyMode::Enforce,
            background: true,
            webhook_timeout_seconds: Some(15),
            registries: vec!["docker.io".into(), "registry.example.com/hub".into()],
            pod_security: PodSecurityLabelsConfig {
                namespace: "*".into(),
                enforce: mode("restricted"),
                audit: mode("restricted"),
                warn: mode("baseline"),
            },
            excluded_namespaces: vec!["kube-system".into(), "kyverno".into()],
        }
    }

    #[test]
    fn every_policy_is_an_enforcing_cluster_policy() {
        for p in BaselinePolicy::ALL {
            let o = cluster_policy(*p, &cx());
            assert_eq!(o["apiVersion"], "kyverno.io/v1");
            assert_eq!(o["kind"], "ClusterPolicy");
            assert_eq!(o["metadata"]["name"], p.as_str());
            assert_eq!(o["spec"]["validationFailureAction"], "Enforce");
            assert_eq!(o["spec"]["background"], true);
            assert_eq!(o["spec"]["webhookTimeoutSeconds"], 15);
            assert_eq!(o["spec"]["rules"].as_array().unwrap().len(), 1);
        }
        let audit = PolicyContext {
            mode: PolicyMode::Audit,
            ..cx()
        };
        let o = cluster_policy(BaselinePolicy::RequireNonRoot, &audit);
        assert_eq!(o["spec"]["validationFailureAction"], "Audit");
    }

    #[test]
    fn privileged_is_checked_in_every_container_list() {
        let o = cluster_policy(BaselinePolicy::DisallowPrivileged, &cx());
        let spec = &o["spec"]["rules"][0]["validate"]["pattern"]["spec"];
        for list in ["containers", "=(initContainers)", "=(ephemeralContainers)"] {
            assert_eq!(
                spec[list][0]["=(securityContext)"]["=(privileged)"], "false",
                "{list}"
            );
        }
        assert_eq!(
            o["spec"]["rules"][0]["exclude"]["any"][0]["resources"]["namespaces"],
            json!(["kube-system", "kyverno"])
        );
    }

    #[test]
    fn host_namespaces_and_non_root() {
        let o = cluster_policy(BaselinePolicy::DisallowHostNamespaces, &cx());
        let spec = &o["spec"]["rules"][0]["validate"]["pattern"]["spec"];
        for f in ["=(hostNetwork)", "=(hostPID)", "=(hostIPC)"] {
            assert_eq!(spec[f], "false");
        }
        let o = cluster_policy(BaselinePolicy::RequireNonRoot, &cx());
        let any = o["spec"]["rules"][0]["validate"]["anyPattern"]
            .as_array()
            .unwrap();
        assert_eq!(any.len(), 2);
        assert_eq!(any[0]["spec"]["securityContext"]["runAsNonRoot"], "true");
        assert_eq!(
            any[1]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"],
            "true"
        );
    }

    #[test]
    fn registries_become_image_alternatives() {
        let o = cluster_policy(BaselinePolicy::RestrictRegistries, &cx());
        let spec = &o["spec"]["rules"][0]["validate"]["pattern"]["spec"];
        assert_eq!(
            spec["containers"][0]["image"],
            "docker.io/* | registry.example.com/hub/*"
        );
        assert_eq!(image_patterns(&["*".into(), "a.io".into()]), "*");
    }

    #[test]
    fn namespace_labels_are_added_only_when_absent() {
        let o = cluster_policy(BaselinePolicy::DefaultPodSecurityLabels, &cx());
        let rule = &o["spec"]["rules"][0];
        assert_eq!(
            rule["match"]["any"][0]["resources"]["kinds"],
            json!(["Namespace"])
        );
        let labels = &rule["mutate"]["patchStrategicMerge"]["metadata"]["labels"];
        assert_eq!(
            labels["+(pod-security.kubernetes.io/enforce)"],
            "restricted"
        );
        assert_eq!(labels["+(pod-security.kubernetes.io/warn)"], "baseline");
        assert_eq!(
            labels["+(pod-security.kubernetes.io/audit-version)"],
            "latest"
        );
        assert_eq!(labels.as_object().unwrap().len(), 6);
    }
}

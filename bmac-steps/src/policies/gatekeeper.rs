//! The baseline policies for OPA Gatekeeper: a `ConstraintTemplate` (Rego) and its constraint
//! for each validation policy, and `AssignMetadata` mutations for the namespace-label default.
//!
//! Templates are named `bmac<policy>` (kind `Bmac<Policy>`), self-contained (each carries its
//! own `containers` helper instead of a shared library, so one can be removed without
//! breaking another) and written in Rego v0 syntax, which every Gatekeeper 3.x evaluates.
//! Constraints match Pods outside the excluded namespaces with `enforcementAction: deny`
//! (`dryrun` in audit mode). Gatekeeper's mutation cannot be a template: the label default is
//! one `AssignMetadata` per label, and `AssignMetadata` by design only adds a label that is
//! missing, which is exactly "add if absent".

use crate::spec::{BaselinePolicy, PolicyMode};
use serde_json::{json, Value};

use super::{describe, PolicyContext};

/// The Rego rule collecting every container of the reviewed Pod.
const CONTAINERS: &str = r#"
containers[c] { c := input.review.object.spec.containers[_] }
containers[c] { c := input.review.object.spec.initContainers[_] }
containers[c] { c := input.review.object.spec.ephemeralContainers[_] }
"#;

const PRIVILEGED: &str = r#"
violation[{"msg": msg}] {
  c := containers[_]
  c.securityContext.privileged == true
  msg := sprintf("container %v may not run privileged", [c.name])
}
"#;

const HOST_NAMESPACES: &str = r#"
violation[{"msg": msg}] {
  field := ["hostNetwork", "hostPID", "hostIPC"][_]
  input.review.object.spec[field] == true
  msg := sprintf("%v is not allowed", [field])
}
"#;

const NON_ROOT: &str = r#"
violation[{"msg": msg}] {
  c := containers[_]
  not non_root(c)
  msg := sprintf("container %v must run as non-root: set runAsNonRoot: true on the pod or the container", [c.name])
}
non_root(c) { c.securityContext.runAsNonRoot == true }
non_root(c) {
  input.review.object.spec.securityContext.runAsNonRoot == true
  not c.securityContext.runAsNonRoot == false
}
"#;

const REGISTRIES: &str = r#"
violation[{"msg": msg}] {
  c := containers[_]
  not allowed(c.image)
  msg := sprintf("image %v of container %v is not from an allowed registry (%v)", [c.image, c.name, input.parameters.registries])
}
allowed(_) { input.parameters.registries[_] == "*" }
allowed(image) {
  r := input.parameters.registries[_]
  startswith(image, concat("", [trim_suffix(r, "/"), "/"]))
}
"#;

/// The objects for one baseline policy, in apply order (template before constraint).
pub fn objects(policy: BaselinePolicy, cx: &PolicyContext) -> Vec<Value> {
    let (rego, parameters) = match policy {
        BaselinePolicy::DisallowPrivileged => (PRIVILEGED, None),
        BaselinePolicy::DisallowHostNamespaces => (HOST_NAMESPACES, None),
        BaselinePolicy::RequireNonRoot => (NON_ROOT, None),
        BaselinePolicy::RestrictRegistries => {
            (REGISTRIES, Some(json!({"registries": cx.registries})))
        }
        BaselinePolicy::DefaultPodSecurityLabels => return namespace_labels(cx),
    };
    let kind = kind_name(policy);
    let template_name = kind.to_ascii_lowercase();
    let package = template_name.clone();
    let mut template = json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {
            "name": template_name,
            "labels": {"app.kubernetes.io/managed-by": "bmac"},
            "annotations": {"description": describe(policy)},
        },
        "spec": {
            "crd": {"spec": {"names": {"kind": kind}}},
            "targets": [{
                "target": "admission.k8s.gatekeeper.sh",
                "rego": format!("package {package}\n{CONTAINERS}{rego}"),
            }],
        },
    });
    if parameters.is_some() {
        template["spec"]["crd"]["spec"]["validation"] = json!({"openAPIV3Schema": {
            "type": "object",
            "properties": {"registries": {"type": "array", "items": {"type": "string"}}},
        }});
    }
    let mut constraint = json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": kind,
        "metadata": {
            "name": policy.as_str(),
            "labels": {"app.kubernetes.io/managed-by": "bmac"},
        },
        "spec": {
            "enforcementAction": enforcement(cx.mode),
            "match": {
                "kinds": [{"apiGroups": [""], "kinds": ["Pod"]}],
                "excludedNamespaces": cx.excluded_namespaces,
            },
        },
    });
    if let Some(parameters) = parameters {
        constraint["spec"]["parameters"] = parameters;
    }
    vec![template, constraint]
}

fn enforcement(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "deny",
        PolicyMode::Audit => "dryrun",
    }
}

/// `disallow-privileged` → `BmacDisallowPrivileged`.
fn kind_name(policy: BaselinePolicy) -> String {
    let mut out = String::from("Bmac");
    for word in policy.as_str().split('-') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// One `AssignMetadata` per Pod Security label.
fn namespace_labels(cx: &PolicyContext) -> Vec<Value> {
    cx.pod_security
        .labels()
        .into_iter()
        .map(|(key, value)| {
            let suffix = key.trim_start_matches("pod-security.kubernetes.io/");
            json!({
                "apiVersion": "mutations.gatekeeper.sh/v1",
                "kind": "AssignMetadata",
                "metadata": {
                    "name": format!("bmac-pod-security-{suffix}"),
                    "labels": {"app.kubernetes.io/managed-by": "bmac"},
                },
                "spec": {
                    "match": {
                        "scope": "Cluster",
                        "kinds": [{"apiGroups": [""], "kinds": ["Namespace"]}],
                        "excludedNamespaces": cx.excluded_namespaces,
                    },
                    "location": format!("metadata.labels.\"{key}\""),
                    "parameters": {"assign": {"value": value}},
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PodSecurityLabelsConfig, PodSecurityMode};

    fn cx(mode: PolicyMode) -> PolicyContext {
        let m = |level: &str| PodSecurityMode {
            level: level.into(),
            version: "v1.30".into(),
        };
        PolicyContext {
            mode,
            background: true,
            webhook_timeout_seconds: None,
            registries: vec!["ghcr.io/acme".into()],
            pod_security: PodSecurityLabelsConfig {
                namespace: "*".into(),
                enforce: m("baseline"),
                audit: m("restricted"),
                warn: m("restricted"),
            },
            excluded_namespaces: vec!["kube-system".into(), "gatekeeper-system".into()],
        }
    }

    #[test]
    fn validation_policies_are_a_template_and_a_matching_constraint() {
        for p in BaselinePolicy::ALL
            .iter()
            .filter(|p| **p != BaselinePolicy::DefaultPodSecurityLabels)
        {
            let objs = objects(*p, &cx(PolicyMode::Enforce));
            assert_eq!(objs.len(), 2, "{p}");
            let (t, c) = (&objs[0], &objs[1]);
            assert_eq!(t["kind"], "ConstraintTemplate");
            let kind = t["spec"]["crd"]["spec"]["names"]["kind"].as_str().unwrap();
            assert_eq!(t["metadata"]["name"], kind.to_ascii_lowercase());
            assert_eq!(c["kind"], kind);
            assert_eq!(c["metadata"]["name"], p.as_str());
            assert_eq!(c["spec"]["enforcementAction"], "deny");
            let rego = t["spec"]["targets"][0]["rego"].as_str().unwrap();
            assert!(
                rego.starts_with(&format!("package {}\n", kind.to_ascii_lowercase())),
                "{rego}"
            );
            assert!(rego.contains("violation[{\"msg\": msg}]"));
        }
        assert_eq!(
            kind_name(BaselinePolicy::RequireNonRoot),
            "BmacRequireNonRoot"
        );
    }

    #[test]
    fn registries_are_constraint_parameters_and_audit_is_dryrun() {
        let objs = objects(BaselinePolicy::RestrictRegistries, &cx(PolicyMode::Audit));
        assert_eq!(
            objs[1]["spec"]["parameters"]["registries"],
            json!(["ghcr.io/acme"])
        );
        assert_eq!(objs[1]["spec"]["enforcementAction"], "dryrun");
        assert_eq!(
            objs[0]["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]["properties"]
                ["registries"]["type"],
            "array"
        );
    }

    #[test]
    fn label_defaults_are_assign_metadata_per_label() {
        let objs = objects(
            BaselinePolicy::DefaultPodSecurityLabels,
            &cx(PolicyMode::Enforce),
        );
        assert_eq!(objs.len(), 6);
        assert!(objs.iter().all(|o| o["kind"] == "AssignMetadata"));
        let enforce = objs
            .iter()
            .find(|o| o["metadata"]["name"] == "bmac-pod-security-enforce")
            .unwrap();
        assert_eq!(
            enforce["spec"]["location"],
            "metadata.labels.\"pod-security.kubernetes.io/enforce\""
        );
        assert_eq!(enforce["spec"]["parameters"]["assign"]["value"], "baseline");
    }
}

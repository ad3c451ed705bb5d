//! Checking that the cluster serves the API of every object a step is about to apply —
//! before the step writes anything.
//!
//! A release manifest written for a newer Kubernetes (Gatekeeper's `policy/v1`
//! PodDisruptionBudget on a 1.20 server, a `batch/v1` CronJob before 1.21) would otherwise
//! apply half its objects and then fail on the first one the server cannot take, leaving a
//! partial install. So every object is resolved through API discovery first, and an object
//! whose group/version/kind is not served is classified:
//! - a CustomResourceDefinition among the step's own objects defines it (or a Gatekeeper
//!   ConstraintTemplate, for its constraint kind) → fine, it is applied after that CRD is
//!   established;
//! - a CRD on the server defines it (applied by an earlier step, not yet established) → the
//!   usual retryable "not served yet";
//! - nothing defines it → a **permanent** error (code [`API_MISSING`]) naming every such object,
//!   the API it needs, and what the server offers in that group instead. Nothing of the step
//!   has been written. A kind from a CRD that a step this one does not depend on creates is
//!   reported the same way; the help says to add the dependency.
//!
//! Why here and not in `bmac plan`: planning has no cluster to ask for a cluster bmac has not
//! built yet, and a bundle given by URL may not have been downloaded (plans never download).
//! This check runs where both are known — when the step is applied — and before its first
//! write, which is the guarantee that matters: nothing of a bundle the cluster cannot take is
//! applied. (`bmac plan` against an existing cluster whose bundle steps were applied before
//! also observes them, and observe resolves the same way.)

use bmac_core::ProviderError;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::objects::{Session, NOT_SERVED};

/// The code of the permanent error for objects whose API the cluster does not serve.
pub(crate) const API_MISSING: &str = "bmac::kube::api_missing";

/// Fails (see the module docs) unless every object's API is served or defined by a CRD.
pub(crate) async fn check(
    s: &Session<'_>,
    objects: &[Value],
    namespace: Option<&str>,
) -> Result<(), ProviderError> {
    let defined_here = crd_kinds(objects);
    let mut server_crds: Option<Vec<(String, String)>> = None;
    let mut missing: Vec<String> = Vec::new();
    for object in objects {
        let err = match s.target_in(object, namespace).await {
            Ok(_) => continue,
            Err(e) if e.code.as_deref() == Some(NOT_SERVED) => e,
            Err(e) => return Err(e),
        };
        let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind) = (text("/apiVersion"), text("/kind"));
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let key = (group.to_owned(), kind.to_owned());
        if defined_here.contains(&key) {
            continue;
        }
        if server_crds.is_none() {
            match crds_on_server(s).await {
                Some(found) => server_crds = Some(found),
                // Cannot tell (no permission to list CRDs): keep the retryable answer.
                None => return Err(err),
            }
        }
        if server_crds.as_ref().is_some_and(|c| c.contains(&key)) {
            return Err(err);
        }
        let name = match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) => format!("{ns}/{}", text("/metadata/name")),
            None => text("/metadata/name").to_owned(),
        };
        let offered = offered(s, group).await;
        missing.push(format!(
            "{api_version} {kind} {name} needs {api_version}, which this server does not serve{offered}"
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let version = s
        .conn
        .client
        .apiserver_version()
        .await
        .map(|v| format!(" (Kubernetes {})", v.git_version))
        .unwrap_or_default();
    Err(ProviderError::permanent(format!(
        "the cluster{version} does not serve the API of {} object(s), so nothing of this step \
         was applied: {}. Use a release built for this Kubernetes version, or upgrade the \
         cluster; a kind from a CustomResourceDefinition another step installs needs \
         `depends_on` that step",
        missing.len(),
        missing.join("; ")
    ))
    .with_code(API_MISSING))
}

/// `(group, kind)` of every kind the step's own objects define: its CustomResourceDefinitions,
/// and its Gatekeeper ConstraintTemplates (whose constraint CRD Gatekeeper's controller makes
/// once the template is applied; until then the constraint is "not served yet", retryable).
fn crd_kinds(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .filter_map(|o| match o.get("kind").and_then(Value::as_str)? {
            "CustomResourceDefinition" => {
                let group = o.pointer("/spec/group")?.as_str()?;
                let kind = o.pointer("/spec/names/kind")?.as_str()?;
                Some((group.to_owned(), kind.to_owned()))
            }
            "ConstraintTemplate" => {
                let kind = o.pointer("/spec/crd/spec/names/kind")?.as_str()?;
                Some((CONSTRAINTS_GROUP.to_owned(), kind.to_owned()))
            }
            _ => None,
        })
        .collect()
}

/// The API group of the constraints Gatekeeper makes from ConstraintTemplates.
const CONSTRAINTS_GROUP: &str = "constraints.gatekeeper.sh";

/// `(group, kind)` of every CRD the server holds, or `None` when they cannot be listed.
async fn crds_on_server(s: &Session<'_>) -> Option<Vec<(String, String)>> {
    let api: Api<CustomResourceDefinition> = Api::all(s.conn.client.clone());
    let list = api.list(&ListParams::default()).await.ok()?;
    Some(
        list.items
            .into_iter()
            .map(|crd| (crd.spec.group, crd.spec.names.kind))
            .collect(),
    )
}

/// `" (it serves policy/v1beta1)"`: the versions the server offers in `group`, if any.
async fn offered(s: &Session<'_>, group: &str) -> String {
    let versions: Vec<String> = if group.is_empty() {
        match s.conn.client.list_core_api_versions().await {
            Ok(v) => v.versions,
            Err(_) => return String::new(),
        }
    } else {
        match s.conn.client.list_api_groups().await {
            Ok(list) => list
                .groups
                .into_iter()
                .filter(|g| g.name == group)
                .flat_map(|g| g.versions.into_iter().map(|v| v.group_version))
                .collect(),
            Err(_) => return String::new(),
        }
    };
    if versions.is_empty() {
        format!(" (it serves no API group {group:?})")
    } else {
        format!(" (it serves {})", versions.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crds_in_the_step_define_their_group_and_kind() {
        let objects = vec![
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "applications.argoproj.io"},
                "spec": {"group": "argoproj.io", "names": {"kind": "Application"}}}),
            json!({"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
                "metadata": {"name": "bmacprivileged"},
                "spec": {"crd": {"spec": {"names": {"kind": "BmacPrivileged"}}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ];
        assert_eq!(
            crd_kinds(&objects),
            [
                ("argoproj.io".to_owned(), "Application".to_owned()),
                (
                    "constraints.gatekeeper.sh".to_owned(),
                    "BmacPrivileged".to_owned()
                )
            ]
        );
    }
}

//! What the CNI vendors' EKS guides require of the AWS VPC CNI's `aws-node` DaemonSet in
//! `kube-system`, done through the API server when a `cni` step installs Cilium or Calico.
//!
//! The guides, and what bmac does for each `mode` ([`Change`]):
//! - **Cilium, `mode = "cni"`** (Cilium's "Installation using Helm", EKS tab: "Cilium will
//!   manage ENIs instead of VPC CNI, so the aws-node DaemonSet has to be patched"): the pod
//!   template gets the nodeSelector `io.cilium/aws-node-enabled: "true"`, which no node has,
//!   so `aws-node` runs nowhere while its DaemonSet stays. Destroy releases bmac's field: the
//!   selector goes and `aws-node` runs on every node again.
//! - **Cilium, `mode = "chaining"`** (Cilium's AWS VPC CNI chaining guide) and any plugin
//!   without a `mode` (an existing cluster where the spec says nothing): `aws-node` is left as
//!   it is.
//! - **Calico, `mode = "cni"`** (Calico's EKS guide, "Install EKS with Calico networking":
//!   "delete the aws-node daemon set to disable AWS VPC networking for pods"): `aws-node` is
//!   deleted. Destroy **cannot recreate it** — bmac never had its manifest — and says so in
//!   a warning: reinstall the VPC CNI (the `vpc-cni` EKS add-on) before pods need networking.
//! - **Calico, `mode = "policy"`** (Calico's EKS guide, "Install EKS with Amazon VPC
//!   networking"): `aws-node` keeps networking pods and annotates them with their IPs — the
//!   `aws-node` container gets `ANNOTATE_POD_IP=true`, and the `aws-node` service account may
//!   patch pods. The guide appends that rule to the `aws-node` ClusterRole; bmac grants it
//!   with its own ClusterRole and ClusterRoleBinding ([`POD_IPS_RBAC`]) instead, since a
//!   ClusterRole's `rules` is one atomic list that server-side apply can only take over whole.
//!   The guide's warning is checked too: a VPC CNI with its own network policy enabled
//!   (`--enable-network-policy=true` on `aws-network-policy-agent`) conflicts with Calico and
//!   is a permanent error before anything changes. Destroy releases the variable and deletes
//!   the RBAC bmac created.
//!
//! Invariants: changes go through server-side apply with the field manager `bmac`, forced on
//! exactly the fields the guide names (the guides' `kubectl patch` / `kubectl set env` take
//! them over the same way; the VPC CNI add-on may hold `ANNOTATE_POD_IP`), and only when the
//! live object is not already as the guide wants — a re-apply writes nothing. A cluster
//! without `aws-node` (not EKS, or the VPC CNI already removed) has nothing to change.

use bmac_core::ProviderError;
use serde_json::{json, Value};

use super::objects::{Create, Session, Target, FIELD_MANAGER};

/// The label in Cilium's nodeSelector for `aws-node`.
const CILIUM_SELECTOR: &str = "io.cilium/aws-node-enabled";
/// The VPC CNI variable Calico's policy-only guide sets.
const ANNOTATE_POD_IP: &str = "ANNOTATE_POD_IP";
/// The name of the ClusterRole and ClusterRoleBinding letting `aws-node` patch pods.
pub(crate) const POD_IPS_RBAC: &str = "bmac-aws-node-pod-ips";

/// What a `cni` step does to `aws-node` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Keep it off every node with Cilium's nodeSelector.
    CiliumSelector,
    /// Delete it (Calico as the CNI).
    Delete,
    /// Set `ANNOTATE_POD_IP=true` and let it patch pods (Calico for policy).
    AnnotatePodIps,
    /// Leave it alone.
    Keep,
}

impl Change {
    /// The change for `plugin` in `mode` (none: leave `aws-node` alone).
    pub(crate) fn of(plugin: &str, mode: Option<&str>) -> Result<Change, ProviderError> {
        match (plugin, mode) {
            (_, None) | ("cilium", Some("chaining")) => Ok(Change::Keep),
            ("cilium", Some("cni")) => Ok(Change::CiliumSelector),
            ("calico", Some("cni")) => Ok(Change::Delete),
            ("calico", Some("policy")) => Ok(Change::AnnotatePodIps),
            (plugin, Some(mode)) => Err(ProviderError::permanent(format!(
                "`mode = {mode:?}` is not a mode of {plugin} (cilium: cni or chaining; calico: \
                 cni or policy)"
            ))),
        }
    }
}

/// `kube-system/aws-node`, by identity.
fn aws_node() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system"}})
}

/// The ClusterRole and ClusterRoleBinding letting the `aws-node` service account patch pods.
fn pod_ips_rbac() -> [Value; 2] {
    [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": POD_IPS_RBAC},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": POD_IPS_RBAC},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": POD_IPS_RBAC},
            "subjects": [{"kind": "ServiceAccount", "name": "aws-node",
                "namespace": "kube-system"}]}),
    ]
}

/// `aws-node` as the server holds it, or `None` when the cluster has none.
async fn live(s: &Session<'_>) -> Result<Option<(Target, Value)>, ProviderError> {
    let target = s.target(&aws_node()).await?;
    Ok(s.get(&target).await?.map(|live| (target, live)))
}

fn selector_set(live: &Value) -> bool {
    let pointer = format!(
        "/spec/template/spec/nodeSelector/{}",
        CILIUM_SELECTOR.replace('/', "~1")
    );
    live.pointer(&pointer).and_then(Value::as_str) == Some("true")
}

/// The pod template's containers named `name`.
fn container<'a>(live: &'a Value, name: &str) -> Option<&'a Value> {
    live.pointer("/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn annotates_pod_ips(live: &Value) -> bool {
    container(live, "aws-node")
        .and_then(|c| c.get("env"))
        .and_then(Value::as_array)
        .is_some_and(|env| {
            env.iter().any(|e| {
                e.get("name").and_then(Value::as_str) == Some(ANNOTATE_POD_IP)
                    && e.get("value").and_then(Value::as_str) == Some("true")
            })
        })
}

/// Calico's guide: the VPC CNI's own network policy conflicts with Calico's.
fn vpc_network_policy_enabled(live: &Value) -> bool {
    container(live, "aws-network-policy-agent")
        .and_then(|c| c.get("args"))
        .and_then(Value::as_array)
        .is_some_and(|args| {
            args.iter()
                .any(|a| a.as_str() == Some("--enable-network-policy=true"))
        })
}

/// Makes `aws-node` what the guide wants; returns what was done (the step's `aws_node` output).
pub(crate) async fn apply(s: &Session<'_>, change: Change) -> Result<String, ProviderError> {
    if change == Change::Keep {
        return Ok("left as it is".to_owned());
    }
    let Some((target, live)) = live(s).await? else {
        return Ok("not in the cluster: nothing to change".to_owned());
    };
    match change {
        Change::Keep => Ok("left as it is".to_owned()),
        Change::CiliumSelector if selector_set(&live) => {
            Ok(format!("nodeSelector {CILIUM_SELECTOR}=true (already set)"))
        }
        Change::CiliumSelector => {
            let mut patch = aws_node();
            patch["spec"] =
                json!({"template": {"spec": {"nodeSelector": {CILIUM_SELECTOR: "true"}}}});
            s.force_apply(&target, &patch, FIELD_MANAGER).await?;
            Ok(format!("nodeSelector {CILIUM_SELECTOR}=true set"))
        }
        Change::Delete => {
            s.delete(&target, &live).await?;
            Ok("deleted".to_owned())
        }
        Change::AnnotatePodIps => annotate_pod_ips(s, &target, &live).await,
    }
}

async fn annotate_pod_ips(
    s: &Session<'_>,
    target: &Target,
    live: &Value,
) -> Result<String, ProviderError> {
    if vpc_network_policy_enabled(live) {
        return Err(ProviderError::permanent(format!(
            "{} runs the VPC CNI's own network policy (`--enable-network-policy=true` on \
             `aws-network-policy-agent`), which Calico's EKS guide says conflicts with Calico; \
             disable it (the vpc-cni add-on's `enableNetworkPolicy`) before installing Calico \
             for policy",
            target.describe()
        )));
    }
    if container(live, "aws-node").is_none() {
        return Err(ProviderError::permanent(format!(
            "{} has no container `aws-node` to set {ANNOTATE_POD_IP} on",
            target.describe()
        )));
    }
    for object in pod_ips_rbac() {
        s.apply(&object, FIELD_MANAGER, Create::Allow).await?;
    }
    if annotates_pod_ips(live) {
        return Ok(format!(
            "{ANNOTATE_POD_IP}=true (already set); pods patch granted by {POD_IPS_RBAC}"
        ));
    }
    let mut patch = aws_node();
    patch["spec"] = json!({"template": {"spec": {"containers": [
        {"name": "aws-node", "env": [{"name": ANNOTATE_POD_IP, "value": "true"}]}]}}});
    s.force_apply(target, &patch, FIELD_MANAGER).await?;
    Ok(format!(
        "{ANNOTATE_POD_IP}=true set; pods patch granted by {POD_IPS_RBAC}"
    ))
}

/// How `aws-node` differs from what the guide wants, or `None` when it does not (or there is
/// nothing to want: no `aws-node`, or `Keep`).
pub(crate) async fn check(
    s: &Session<'_>,
    change: Change,
) -> Result<Option<String>, ProviderError> {
    if change == Change::Keep {
        return Ok(None);
    }
    let Some((target, live)) = live(s).await? else {
        return Ok(None);
    };
    let moved = match change {
        Change::CiliumSelector => (!selector_set(&live)).then(|| {
            format!(
                "{} runs on nodes again: its nodeSelector {CILIUM_SELECTOR}=true is gone",
                target.describe()
            )
        }),
        Change::Delete => Some(format!("{} exists again", target.describe())),
        Change::AnnotatePodIps => {
            let mut missing = Vec::new();
            if !annotates_pod_ips(&live) {
                missing.push(format!("{ANNOTATE_POD_IP}=true"));
            }
            for object in pod_ips_rbac() {
                let t = s.target(&object).await?;
                if s.get(&t).await?.is_none() {
                    missing.push(t.describe());
                }
            }
            (!missing.is_empty())
                .then(|| format!("{} lacks {}", target.describe(), missing.join(", ")))
        }
        Change::Keep => None,
    };
    Ok(moved)
}

/// Undoes what [`apply`] did, as far as it can (see the module docs).
pub(crate) async fn restore(s: &Session<'_>, change: Change) -> Result<(), ProviderError> {
    match change {
        Change::Keep => {}
        Change::CiliumSelector => {
            s.remove(&aws_node(), FIELD_MANAGER).await?;
        }
        Change::AnnotatePodIps => {
            s.remove(&aws_node(), FIELD_MANAGER).await?;
            for object in pod_ips_rbac().iter().rev() {
                s.remove(object, FIELD_MANAGER).await?;
            }
        }
        Change::Delete => {
            if live(s).await?.is_none() {
                tracing::warn!(
                    step = %s.step,
                    "kube-system/aws-node was deleted when Calico became the CNI (Calico's EKS \
                     guide); bmac cannot recreate it: reinstall the VPC CNI (the `vpc-cni` EKS \
                     add-on) before pods need networking"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_what_the_guides_do() {
        assert_eq!(
            Change::of("cilium", Some("cni")).unwrap(),
            Change::CiliumSelector
        );
        assert_eq!(
            Change::of("cilium", Some("chaining")).unwrap(),
            Change::Keep
        );
        assert_eq!(Change::of("calico", Some("cni")).unwrap(), Change::Delete);
        assert_eq!(
            Change::of("calico", Some("policy")).unwrap(),
            Change::AnnotatePodIps
        );
        assert_eq!(Change::of("calico", None).unwrap(), Change::Keep);
        let err = Change::of("cilium", Some("policy")).unwrap_err();
        assert!(
            err.message.contains("not a mode of cilium"),
            "{}",
            err.message
        );
    }

    #[test]
    fn live_fields_are_read_where_the_guides_put_them() {
        let ds = json!({"spec": {"template": {"spec": {
            "nodeSelector": {"io.cilium/aws-node-enabled": "true"},
            "containers": [
                {"name": "aws-node", "env": [{"name": "ANNOTATE_POD_IP", "value": "true"}]},
                {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=true"]}]}}}});
        assert!(selector_set(&ds));
        assert!(annotates_pod_ips(&ds));
        assert!(vpc_network_policy_enabled(&ds));
        let plain = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "aws-node", "env": [{"name": "ANNOTATE_POD_IP", "value": "false"}]},
            {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=false"]}]}}}});
        assert!(!selector_set(&plain));
        assert!(!annotates_pod_ips(&plain));
        assert!(!vpc_network_policy_enabled(&plain));
    }
}

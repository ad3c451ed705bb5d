//! The baseline policies as Kubernetes objects, for Kyverno ([`kyverno`]) and Gatekeeper
//! ([`gatekeeper`]).
//!
//! Each [`BaselinePolicy`] becomes the objects that express it for the chosen engine, built
//! from a [`PolicyContext`] the catalogue fills in from the spec (enforce or audit, the
//! registry allow-list, the Pod Security defaults, the namespaces left alone). The objects are
//! complete and ready to apply; providers do not add to them.
//!
//! Choices shared by both engines:
//! - Pod policies skip `kube-system`, the engine's own namespace and every namespace the spec
//!   exempts from Pod Security: those run the CNI, the engine itself and other system agents
//!   that legitimately need privileges, and blocking their pods would break the cluster.
//! - `restrict-registries` allows an image when it starts with an allowed registry or a
//!   mirror followed by `/`. Images are matched as written: a short name (`nginx`) is not
//!   `docker.io/nginx`, so the policy asks for fully qualified names, which is also what
//!   makes mirrors and the allow-list meaningful. `*` in the allow-list allows everything.
//! - `default-pod-security-labels` only *adds* labels a namespace does not carry yet, so a
//!   namespace's own labels (and bmac's `pod_security_labels` steps) win.

pub mod gatekeeper;
pub mod kyverno;

use crate::spec::{BaselinePolicy, PolicyEngine, PolicyMode};
use serde_json::Value;

use crate::config::PodSecurityLabelsConfig;

/// What the baseline policies are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyContext {
    /// Enforce (reject) or audit (report only).
    pub mode: PolicyMode,
    /// Kyverno: also scan existing resources.
    pub background: bool,
    /// Kyverno: admission webhook timeout, when set.
    pub webhook_timeout_seconds: Option<u32>,
    /// Registry prefixes images may come from: the allow-list followed by the mirrors.
    pub registries: Vec<String>,
    /// The Pod Security labels a namespace gets by default.
    pub pod_security: PodSecurityLabelsConfig,
    /// Namespaces pod policies leave alone (see the module docs).
    pub excluded_namespaces: Vec<String>,
}

/// The namespace each engine installs itself into.
pub fn engine_namespace(engine: PolicyEngine) -> &'static str {
    match engine {
        PolicyEngine::Kyverno => "kyverno",
        PolicyEngine::Gatekeeper => "gatekeeper-system",
    }
}

/// The objects expressing `policy` for `engine`, in apply order.
pub fn objects(engine: PolicyEngine, policy: BaselinePolicy, cx: &PolicyContext) -> Vec<Value> {
    match engine {
        PolicyEngine::Kyverno => vec![kyverno::cluster_policy(policy, cx)],
        PolicyEngine::Gatekeeper => gatekeeper::objects(policy, cx),
    }
}

/// Short human description of a baseline policy (used in annotations and messages).
pub fn describe(policy: BaselinePolicy) -> &'static str {
    match policy {
        BaselinePolicy::DisallowPrivileged => "Containers may not run privileged.",
        BaselinePolicy::DisallowHostNamespaces => {
            "Pods may not share the host's network, PID or IPC namespace."
        }
        BaselinePolicy::RequireNonRoot => {
            "Containers must run as non-root (runAsNonRoot on the pod or every container)."
        }
        BaselinePolicy::RestrictRegistries => {
            "Images must come from an allowed registry or one of its mirrors."
        }
        BaselinePolicy::DefaultPodSecurityLabels => {
            "Namespaces get the cluster's Pod Security labels unless they set their own."
        }
    }
}

//! The typed spec model: one struct per section of `bmac.toml`.
//!
//! Every value here has already been checked: names are valid step-id segments, enums hold
//! one of their variants, numbers are in range, and the cross-field rules of
//! [`validate`](super::validate) hold. Fields that diagnostics (lint, planner) need to point
//! at are [`Spanned`]; every entry that becomes steps carries an [`EntryMeta`] with its id,
//! its span (the table header, or the key for an inline table) and its `depends_on` items.
//!
//! Defaults are chosen to be safe: storage and node disks are encrypted, an absent
//! `endpoint` means a private-only API server, `[audit]` is enabled when present, and
//! `[pod_security]` enforces `baseline` and audits/warns `restricted` unless told otherwise.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;

use miette::SourceSpan;

use bmac_core::step::StepId;

/// A value with the span of its text in the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is written.
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    /// A spanned value.
    pub fn new(value: T, span: SourceSpan) -> Self {
        Spanned { value, span }
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A `depends_on` item: the step id named and where it is written.
pub type DependsOn = (StepId, SourceSpan);

/// What every entry that becomes steps carries.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryMeta {
    /// The entry id (`cluster`, `node_pool.system`, `namespace.payments` …).
    pub id: StepId,
    /// The entry's table header (or key, for inline/implicit tables).
    pub span: SourceSpan,
    /// Explicit dependencies, as written.
    pub depends_on: Vec<DependsOn>,
}

/// Declares a string-valued enum with its spec spelling.
macro_rules! spelled_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every spelling accepted in the spec.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the spec.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the spec spelling.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use spelled_enum;

spelled_enum! {
    /// Where the cluster lives.
    Provider {
        /// The embedded simulated cloud (deterministic; for trying bmac and for tests).
        Sim = "sim",
        /// An existing cluster reached through a kubeconfig context.
        Kube = "kube",
        /// Amazon EKS.
        Eks = "eks",
        /// Google GKE.
        Gke = "gke",
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Entry id `cluster`.
    pub meta: EntryMeta,
    /// Cluster name (a valid step-id segment).
    pub name: Spanned<String>,
    /// Where it lives.
    pub provider: Spanned<Provider>,
    /// Cloud region (required for eks/gke).
    pub region: Option<Spanned<String>>,
    /// Kubernetes `major.minor` version, e.g. `1.30`.
    pub version: Option<Spanned<String>>,
    /// API endpoint access; absent means private only (not allowed for `kube`).
    pub endpoint: Option<Endpoint>,
    /// For `kube`: the kubeconfig file; absent means `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// For `kube`: the kubeconfig context to use (required).
    pub context: Option<String>,
    /// For `eks`: the AWS account id, checked against the caller's credentials.
    pub account: Option<String>,
    /// For `gke`: the GCP project id.
    pub project: Option<Spanned<String>>,
    /// For clouds: an existing key that encrypts Secrets (a KMS key ARN on EKS); absent means
    /// bmac creates one, with rotation.
    pub encryption_key: Option<Spanned<String>>,
    /// For clouds: more principals made cluster admins (IAM role or user ARNs on EKS), beside
    /// the identity that creates the cluster.
    pub admins: Vec<Spanned<String>>,
}

impl Cluster {
    /// The kubeconfig path a `kube` cluster uses: `kubeconfig`, else the first path of
    /// `$KUBECONFIG`, else `$HOME/.kube/config` (None when nothing applies).
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.kubeconfig {
            return Some(p.clone());
        }
        if let Some(env) = std::env::var_os("KUBECONFIG") {
            if let Some(first) = std::env::split_paths(&env).find(|p| !p.as_os_str().is_empty()) {
                return Some(first);
            }
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
    }
}

/// `[cluster.endpoint]`: who can reach the Kubernetes API.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The `endpoint` table.
    pub span: SourceSpan,
    /// Reachable from the internet (restricted to `public_cidrs`).
    pub public: Spanned<bool>,
    /// CIDRs allowed to reach the public endpoint; empty means everyone.
    pub public_cidrs: Vec<Spanned<String>>,
    /// Reachable from inside the VPC.
    pub private: bool,
}

spelled_enum! {
    /// Where bmac keeps its state journal.
    StateBackendKind {
        /// A local directory (the default).
        Local = "local",
        /// An S3 bucket (conditional writes for locking).
        S3 = "s3",
        /// A GCS bucket (generation preconditions for locking).
        Gcs = "gcs",
        /// A Kubernetes Secret + Lease in the managed cluster.
        Kubernetes = "kubernetes",
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Which backend.
    pub backend: StateBackendKind,
    /// `local`: directory, relative to the spec file (default `.bmac`).
    pub path: Option<PathBuf>,
    /// `s3`/`gcs`: the bucket (required there).
    pub bucket: Option<String>,
    /// `s3`/`gcs`: key prefix.
    pub prefix: Option<String>,
    /// `s3`: bucket region.
    pub region: Option<String>,
    /// `kubernetes`: the namespace holding the state Secret (default `bmac-system`).
    pub namespace: Option<String>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackendKind::Local,
            path: None,
            bucket: None,
            prefix: None,
            region: None,
            namespace: None,
        }
    }
}

spelled_enum! {
    /// The error a simulated fault injects.
    FaultError {
        /// Rate limited; retryable.
        Throttle = "throttle",
        /// 5xx; retryable.
        Server = "server",
        /// The call hangs past its deadline.
        Timeout = "timeout",
        /// A permanent failure; not retried.
        Permanent = "permanent",
    }
}

/// `[sim]`: the simulated provider's knobs (only with `provider = "sim"`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Random seed; the same seed gives the same run.
    pub seed: u64,
    /// Latency scale factor (1.0 = realistic, 0.001 = a thousand times faster).
    pub speed: f64,
    /// Injected faults.
    pub faults: Vec<Fault>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            speed: 1.0,
            faults: Vec::new(),
        }
    }
}

/// One injected fault: calls for steps of `kind` (optionally only `step`) fail with `error`
/// with probability `rate`, at most `times` times in total (unbounded when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The step kind it applies to (`node_pool`, `cluster` …).
    pub kind: String,
    /// Only this step, if set.
    pub step: Option<StepId>,
    /// The error injected.
    pub error: FaultError,
    /// Probability per call, in `[0, 1]`.
    pub rate: f64,
    /// Maximum number of injections.
    pub times: Option<u32>,
}

spelled_enum! {
    /// A node taint's effect.
    TaintEffect {
        /// No new pods without a toleration.
        NoSchedule = "NoSchedule",
        /// Avoid scheduling without a toleration.
        PreferNoSchedule = "PreferNoSchedule",
        /// Evict pods without a toleration.
        NoExecute = "NoExecute",
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    pub value: Option<String>,
    /// Effect.
    pub effect: TaintEffect,
}

/// A node pool's root disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    /// Size in GiB (default 50).
    pub size_gb: u32,
    /// Volume type (`gp3`, `pd-ssd` …); provider default when absent.
    pub volume_type: Option<String>,
    /// Encrypted at rest (default true).
    pub encrypted: Spanned<bool>,
}

/// `[[node_pool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePool {
    /// Entry id `node_pool.<name>`.
    pub meta: EntryMeta,
    /// Pool name.
    pub name: String,
    /// Instance / machine types, in preference order (at least one).
    pub instance_types: Vec<Spanned<String>>,
    /// Minimum size.
    pub min: Spanned<u32>,
    /// Maximum size (at least 1).
    pub max: Spanned<u32>,
    /// Desired size; `min` when absent.
    pub desired: Option<Spanned<u32>>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Root disk.
    pub disk: Disk,
}

impl NodePool {
    /// The desired size: `desired`, or `min` when absent.
    pub fn desired_size(&self) -> u32 {
        self.desired.as_ref().map_or(self.min.value, |d| d.value)
    }
}

spelled_enum! {
    /// The CNI plugin.
    CniPlugin {
        /// Whatever the provider installs (VPC CNI on EKS, Dataplane on GKE).
        Default = "default",
        /// Cilium.
        Cilium = "cilium",
        /// Calico.
        Calico = "calico",
    }
}

spelled_enum! {
    /// How a non-default CNI sits beside the provider's own (on EKS: the VPC CNI's `aws-node`
    /// DaemonSet), as the vendors' EKS guides describe it.
    CniMode {
        /// The plugin is the cluster's CNI: Cilium's guide keeps `aws-node` off every node
        /// (a nodeSelector no node has), Calico's deletes it.
        Cni = "cni",
        /// Cilium chained after the VPC CNI (Cilium's "AWS VPC CNI plugin" chaining guide):
        /// `aws-node` keeps running.
        Chaining = "chaining",
        /// Calico for network policy only, beside the VPC CNI (Calico's EKS guide, "Amazon VPC
        /// networking"): `aws-node` keeps running and annotates pods with their IPs.
        Policy = "policy",
    }
}

/// `[cni]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cni {
    /// Entry id `cni`.
    pub meta: EntryMeta,
    /// The plugin.
    pub plugin: Spanned<CniPlugin>,
    /// Pinned chart/plugin version.
    pub version: Option<String>,
    /// Plugin settings (Helm-style values), as JSON.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Where `settings` is written, when it is.
    pub settings_span: Option<miette::SourceSpan>,
    /// The plugin's release bundle (`bundle = { url | path, sha256 }`), installed in-cluster.
    pub bundle: Option<Spanned<super::model_security::Bundle>>,
    /// How the plugin sits beside the provider's CNI.
    pub mode: Option<Spanned<CniMode>>,
}

spelled_enum! {
    /// What happens to a volume when its claim is deleted.
    ReclaimPolicy {
        /// Delete the volume.
        Delete = "Delete",
        /// Keep the volume.
        Retain = "Retain",
    }
}

/// `[[storage_class]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageClass {
    /// Entry id `storage_class.<name>`.
    pub meta: EntryMeta,
    /// Class name.
    pub name: String,
    /// The cluster's default class (at most one).
    pub default: Spanned<bool>,
    /// Volume type (`gp3`, `pd-balanced`, `sim` …).
    pub volume_type: String,
    /// Encrypted at rest (default true).
    pub encrypted: Spanned<bool>,
    /// Customer-managed key (only with `encrypted`).
    pub kms_key: Option<Spanned<String>>,
    /// Reclaim policy (default `Delete`).
    pub reclaim_policy: ReclaimPolicy,
    /// Extra provisioner parameters.
    pub parameters: BTreeMap<String, String>,
}

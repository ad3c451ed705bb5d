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
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;

use miette::SourceSpan;

use crate::step::StepId;

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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
    pub project: Option<String>,
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
    pub instance_types: Vec<String>,
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

spelled_enum! {
    /// A control-plane log stream.
    LogType {
        /// API server.
        Api = "api",
        /// Kubernetes audit log.
        Audit = "audit",
        /// Authenticator.
        Authenticator = "authenticator",
        /// Controller manager.
        ControllerManager = "controller_manager",
        /// Scheduler.
        Scheduler = "scheduler",
    }
}

spelled_enum! {
    /// Where audit logs are archived.
    ArchiveScheme {
        /// `s3://bucket/prefix`.
        S3 = "s3",
        /// `gs://bucket/prefix`.
        Gs = "gs",
        /// `file:///path` (sim and local testing).
        File = "file",
    }
}

/// An audit archive location, from a URL such as `s3://acme-audit/prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The URL as written.
    pub url: String,
    /// Its scheme.
    pub scheme: ArchiveScheme,
    /// Bucket name (for `file`: the directory path).
    pub bucket: String,
    /// Object prefix (may be empty).
    pub prefix: String,
}

/// `[audit.alarm]`: alert on denied requests / anomalies in the audit stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// The `alarm` table.
    pub span: SourceSpan,
    /// Alarm on denied (403) requests.
    pub on_deny: bool,
    /// Alarm on anomalies (privilege escalations, exec into pods, unusual callers).
    pub on_anomaly: bool,
    /// Where to send alerts (SNS topic ARN, Pub/Sub topic, e-mail).
    pub notify: Option<String>,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Entry id `audit`.
    pub meta: EntryMeta,
    /// Control-plane logging on (default true).
    pub enabled: Spanned<bool>,
    /// Log streams (default `api`, `audit`, `authenticator`).
    pub log_types: Vec<Spanned<LogType>>,
    /// Archive location.
    pub archive: Option<Spanned<Archive>>,
    /// Archive retention in days (at least 1).
    pub retention_days: Option<Spanned<u32>>,
    /// Alerting.
    pub alarm: Option<Alarm>,
}

spelled_enum! {
    /// A Pod Security Standards level.
    PsaLevel {
        /// Unrestricted.
        Privileged = "privileged",
        /// Prevents known privilege escalations.
        Baseline = "baseline",
        /// Hardened best practice.
        Restricted = "restricted",
    }
}

/// One Pod Security Admission mode setting (level + version).
#[derive(Debug, Clone, PartialEq)]
pub struct PsaSetting {
    /// The level.
    pub level: Spanned<PsaLevel>,
    /// The policy version: `latest` or `v1.NN`.
    pub version: String,
}

/// A Pod Security override for one namespace (each mode optional).
#[derive(Debug, Clone, PartialEq)]
pub struct PsaOverride {
    /// The override table.
    pub span: SourceSpan,
    /// `enforce` mode.
    pub enforce: Option<PsaSetting>,
    /// `audit` mode.
    pub audit: Option<PsaSetting>,
    /// `warn` mode.
    pub warn: Option<PsaSetting>,
}

/// A `[pod_security.overrides.<namespace>]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceOverride {
    /// The namespace.
    pub namespace: Spanned<String>,
    /// The settings.
    pub settings: PsaOverride,
}

/// `[pod_security]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSecurity {
    /// Entry id `pod_security`.
    pub meta: EntryMeta,
    /// Cluster-wide default `enforce` (default `baseline`).
    pub enforce: PsaSetting,
    /// Cluster-wide default `audit` (default `restricted`).
    pub audit: PsaSetting,
    /// Cluster-wide default `warn` (default `restricted`).
    pub warn: PsaSetting,
    /// Per-namespace overrides.
    pub overrides: Vec<NamespaceOverride>,
    /// Namespaces exempt from Pod Security Admission.
    pub exempt: Vec<Spanned<String>>,
}

spelled_enum! {
    /// The admission policy engine.
    PolicyEngine {
        /// Kyverno.
        Kyverno = "kyverno",
        /// OPA Gatekeeper.
        Gatekeeper = "gatekeeper",
    }
}

spelled_enum! {
    /// What a violated policy does.
    PolicyMode {
        /// Reject the request.
        Enforce = "enforce",
        /// Admit it and report.
        Audit = "audit",
    }
}

spelled_enum! {
    /// A policy of bmac's baseline set.
    BaselinePolicy {
        /// No privileged containers.
        DisallowPrivileged = "disallow-privileged",
        /// No host network/PID/IPC.
        DisallowHostNamespaces = "disallow-host-namespaces",
        /// Containers run as non-root.
        RequireNonRoot = "require-non-root",
        /// Images only from `[registries].allowed`.
        RestrictRegistries = "restrict-registries",
        /// Namespaces get Pod Security labels by default.
        DefaultPodSecurityLabels = "default-pod-security-labels",
    }
}

/// Where a policy engine's install bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// Downloaded from a URL.
    Url(String),
    /// A file, relative to the spec file.
    Path(PathBuf),
}

/// `[policy.bundle]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// Source.
    pub source: BundleSource,
    /// Expected SHA-256 (64 lowercase hex digits).
    pub sha256: Option<Spanned<String>>,
}

/// Where an extra policy's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// A file, relative to the spec file.
    File(PathBuf),
    /// Inline YAML/JSON text.
    Inline(String),
}

/// One `[[policy.extra]]` item.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraPolicy {
    /// Policy name (a valid step-id segment).
    pub name: Spanned<String>,
    /// Its text.
    pub source: TextSource,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Entry id `policy`.
    pub meta: EntryMeta,
    /// The engine.
    pub engine: Spanned<PolicyEngine>,
    /// Pinned engine version.
    pub version: Option<Spanned<String>>,
    /// Install bundle.
    pub bundle: Option<Spanned<Bundle>>,
    /// Baseline policies (all of them when the key is absent).
    pub baseline: Vec<Spanned<BaselinePolicy>>,
    /// Extra policies.
    pub extra: Vec<ExtraPolicy>,
    /// Enforce or audit (default enforce).
    pub mode: PolicyMode,
    /// Kyverno only: background scans.
    pub background: Option<Spanned<bool>>,
    /// Kyverno only: admission webhook timeout.
    pub webhook_timeout_seconds: Option<Spanned<u32>>,
    /// Gatekeeper only: audit interval.
    pub audit_interval_seconds: Option<Spanned<u32>>,
}

/// A registry mirror: pulls from `upstream` are served by `mirror`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// The upstream registry host.
    pub upstream: Spanned<String>,
    /// The mirror (host and optional path).
    pub mirror: Spanned<String>,
}

/// `[registries]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Registries {
    /// Entry id `registries`.
    pub meta: EntryMeta,
    /// Registries images may come from (host, or host/path prefix; `*` allows all).
    pub allowed: Vec<Spanned<String>>,
    /// Mirrors, upstream → mirror.
    pub mirrors: Vec<Mirror>,
    /// Create the mirrors as pull-through caches (ECR / Artifact Registry remote repos).
    pub pull_through_cache: bool,
}

/// What a workload identity grants.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// An existing role (AWS role ARN, GCP service-account e-mail).
    Role(Spanned<String>),
    /// Permissions for a role bmac creates.
    Permissions(Vec<Spanned<String>>),
}

/// `[[workload_identity]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadIdentity {
    /// Entry id `workload_identity.<name>` or `workload_identity.<namespace>-<service_account>`.
    pub meta: EntryMeta,
    /// Optional name.
    pub name: Option<String>,
    /// Namespace of the service account (declared, or a system namespace).
    pub namespace: Spanned<String>,
    /// Kubernetes service account.
    pub service_account: String,
    /// What it grants.
    pub access: Access,
}

/// `[[namespace]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// Entry id `namespace.<name>`.
    pub meta: EntryMeta,
    /// Name (a DNS label).
    pub name: Spanned<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Pod Security override.
    pub pod_security: Option<PsaOverride>,
    /// Exempt from Pod Security Admission.
    pub exempt: Spanned<bool>,
}

/// `[[manifest]]`: extra Kubernetes objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Entry id `manifest.<name>`.
    pub meta: EntryMeta,
    /// Name.
    pub name: String,
    /// Objects from a file (relative to the spec file) or inline YAML/JSON.
    pub source: TextSource,
    /// Span of the `file` / `inline` value.
    pub source_span: SourceSpan,
}

/// Namespaces Kubernetes creates itself; overrides and identities may name them undeclared.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease", "default"];

/// Whether `ns` is a namespace Kubernetes (not the user) owns. `default` counts for
/// declaration checks but not for lint: workloads run there.
pub fn is_system_namespace(ns: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&ns)
}

//! The typed model of the security-baseline and workload sections: `[audit]`,
//! `[pod_security]`, `[policy]`, `[registries]`, `[[workload_identity]]`, `[[namespace]]` and
//! `[[manifest]]`. Same conventions as [`model`](super::model): values are checked, the spans
//! diagnostics need are kept, and defaults are the safe choice.

use std::collections::BTreeMap;
use std::path::PathBuf;

use miette::SourceSpan;

use super::model::{spelled_enum, EntryMeta, Spanned};

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

impl Alarm {
    /// `notify` when it is an ARN (an existing topic), spanned at the alarm table.
    pub fn notify_arn(&self) -> Option<Spanned<String>> {
        self.notify
            .as_ref()
            .filter(|n| n.starts_with("arn:"))
            .map(|n| Spanned::new(n.clone(), self.span))
    }

    /// `notify` when it is an e-mail address (a subscription bmac creates).
    pub fn notify_email(&self) -> Option<&str> {
        self.notify
            .as_deref()
            .filter(|n| !n.starts_with("arn:") && n.contains('@'))
    }
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
    /// How long the log group (the hot copy) keeps audit records; by default 30 days when
    /// there is an archive, `retention_days` (or 90) when there is not.
    pub log_retention_days: Option<Spanned<u32>>,
    /// Whether `destroy` may delete an archive bucket bmac created, with its objects (default
    /// false: the bucket and its records are kept, and destroy says so).
    pub force_destroy: bool,
    /// Whether the archive's retention is made irreversible (default false): a locked Cloud
    /// Storage retention policy, S3 object lock in compliance mode. Nobody — bmac included —
    /// can then shorten it or delete a record before it expires.
    pub lock_retention: bool,
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

/// Where a release bundle (a policy engine's, or a manifest's) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// Downloaded from a URL.
    Url(String),
    /// A file, relative to the spec file.
    Path(PathBuf),
}

/// A release bundle: `[policy.bundle]`, or a `[[manifest]]`'s `bundle`.
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
    /// `[registries.credentials]`: how a pull-through cache authenticates to an upstream —
    /// the ARN of a secret holding the upstream's credentials (never the credentials).
    pub credentials: Vec<RegistryCredential>,
}

/// One `[registries.credentials]` entry: `"docker.io" = "arn:aws:secretsmanager:…"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryCredential {
    /// The upstream registry host (the key).
    pub upstream: Spanned<String>,
    /// Where its credentials are: a secret's ARN (an IAM role's for an ECR upstream).
    pub arn: Spanned<String>,
}

impl Registries {
    /// The credential entry of `upstream` (`docker.io` aliases folded), if any.
    pub fn credential(&self, upstream: &str) -> Option<&RegistryCredential> {
        let host = super::validate::registry_host(upstream);
        self.credentials
            .iter()
            .find(|c| super::validate::registry_host(&c.upstream.value) == host)
    }
}

/// What a workload identity grants.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// An existing role (AWS role ARN, GCP service-account e-mail).
    Role(Spanned<String>),
    /// Permissions for a role bmac creates.
    Permissions(Vec<Spanned<String>>),
}

spelled_enum! {
    /// How EKS binds a workload identity's role to its service account.
    Mechanism {
        /// EKS Pod Identity: an association held by EKS, served to pods by the Pod Identity
        /// agent; the role trusts `pods.eks.amazonaws.com` (the default).
        PodIdentity = "pod_identity",
        /// IAM roles for service accounts: the role trusts the cluster's OIDC issuer for this
        /// one service account, which carries the role in an annotation.
        Irsa = "irsa",
    }
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
    /// How the role is bound (EKS only); Pod Identity when absent.
    pub mechanism: Option<Spanned<Mechanism>>,
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

/// Where a `[[manifest]]`'s objects come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestSource {
    /// A file next to the spec or inline text, read when the spec is expanded.
    Text(TextSource),
    /// A release bundle (`bundle = { url | path, sha256 }`), read — for a URL, downloaded —
    /// and verified by the provider when the step is applied.
    Bundle(Bundle),
}

/// `[[manifest]]`: extra Kubernetes objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Entry id `manifest.<name>`.
    pub meta: EntryMeta,
    /// Name.
    pub name: String,
    /// Objects from a file (relative to the spec file), inline YAML/JSON, or a bundle.
    pub source: ManifestSource,
    /// Span of the `file` / `inline` value, or of the `bundle` table.
    pub source_span: SourceSpan,
    /// The namespace of namespaced objects that name none (as `kubectl apply -n`).
    pub namespace: Option<Spanned<String>>,
}

/// Namespaces Kubernetes creates itself; overrides and identities may name them undeclared.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease", "default"];

/// Whether `ns` is a namespace Kubernetes (not the user) owns. `default` counts for
/// declaration checks but not for lint: workloads run there.
pub fn is_system_namespace(ns: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&ns)
}

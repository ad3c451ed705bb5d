//! The typed desired configuration of each catalogue kind: the contract between the catalogue,
//! which fills these in from the spec, and the providers, which read them back with
//! [`bmac_core::Step::config_as`].
//!
//! Configs are provider-neutral: they say *what* should exist (a namespace with these labels,
//! a node pool of this size), not how a given cloud spells it. They hold no secrets; secrets
//! arrive as sensitive inputs at run time.
//!
//! In-cluster steps (namespaces, PodSecurity labels, the policy engine and its policies,
//! service accounts, storage classes, manifests) take three inputs from the cluster step —
//! [`INPUT_ENDPOINT`], [`INPUT_CA_DATA`] and [`INPUT_CREDENTIALS`] — from which the provider
//! builds its Kubernetes client when the step runs (never at plan time).
//!
//! # Credentials are sources, not values
//! A cluster step's `credentials` output is a [`CredentialSource`]: *how* to mint credentials
//! for the cluster (a kubeconfig context, an exec plugin, the cloud's token API), never a token
//! or a key. It is a plain output: it names no secret, so it is kept in state, shown in plans
//! and hashed into the fingerprint of every in-cluster step — and because it does not change
//! when a token rotates, no fingerprint moves when one does. The provider that runs an
//! in-cluster step mints the token from the source at call time and keeps it in memory only.

mod cloud;
mod registries;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cloud::*;
pub use registries::*;

/// Input name: the API server URL (from the cluster step's `endpoint` output).
pub const INPUT_ENDPOINT: &str = "endpoint";
/// Input name: base64 PEM of the cluster CA (from the cluster step's `ca_data` output).
pub const INPUT_CA_DATA: &str = "ca_data";
/// Input name: the [`CredentialSource`] in-cluster steps authenticate with (from the cluster
/// step's `credentials` output). Embedders and test harnesses may instead pass static
/// credentials as a *sensitive* JSON object with `token`, or `client_certificate_data` and
/// `client_key_data`; no built-in cluster step produces those.
pub const INPUT_CREDENTIALS: &str = "credentials";
/// Input name: the cloud role a service account is bound to (from an `iam_role` step's `arn`).
pub const INPUT_ROLE: &str = "role";
/// Input name: the cluster's OIDC issuer (for IAM role trust policies).
pub const INPUT_OIDC_ISSUER: &str = "oidc_issuer";

/// Input name: the audit log group an archive or alarm reads (from `audit_logging`'s
/// [`OUTPUT_LOG_GROUP`]).
pub const INPUT_LOG_GROUP: &str = "log_group";
/// Input name: the bucket an audit archive writes to (from `object_bucket`'s
/// [`OUTPUT_BUCKET`]).
pub const INPUT_BUCKET: &str = "bucket";

/// Output of `cluster`: the API server URL.
pub const OUTPUT_ENDPOINT: &str = "endpoint";
/// Output of `cluster`: base64 PEM of the cluster CA.
pub const OUTPUT_CA_DATA: &str = "ca_data";
/// Output of `cluster`: the [`CredentialSource`] to authenticate with (a plain value; it
/// holds no secret).
pub const OUTPUT_CREDENTIALS: &str = "credentials";
/// Output of `cluster`: the OIDC issuer URL workload identity trusts.
pub const OUTPUT_OIDC_ISSUER: &str = "oidc_issuer";
/// Output of `iam_role`: the role's identifier (an AWS role ARN, a GCP service-account
/// e-mail, the sim's `arn:sim:` ARN) — what a service account's role annotation carries.
pub const OUTPUT_ARN: &str = "arn";
/// Output of `audit_logging`: the log group (stream) the audit log is delivered to.
pub const OUTPUT_LOG_GROUP: &str = "log_group";
/// Output of `object_bucket`: the bucket's name as the cloud knows it.
pub const OUTPUT_BUCKET: &str = "bucket";

/// Cluster endpoint exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointAccess {
    /// Whether the API endpoint is reachable from the internet.
    pub public: bool,
    /// CIDRs allowed to reach the public endpoint.
    #[serde(default)]
    pub public_cidrs: Vec<String>,
    /// Whether the endpoint is reachable from inside the VPC.
    pub private: bool,
}

/// `cluster`: the control plane (or, for provider `kube`, an existing cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Cluster name.
    pub name: String,
    /// `sim`, `kube`, `eks` or `gke`.
    pub provider: String,
    /// Cloud region (not for `kube`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Endpoint exposure.
    #[serde(default)]
    pub endpoint: EndpointAccess,
    /// Control-plane log types to enable (`api`, `audit`, `authenticator` …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_types: Vec<String>,
    /// For `kube`: path of the kubeconfig (default `$KUBECONFIG`, then `~/.kube/config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// For `kube`: the context naming the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// For clouds: the account (project, subscription) the cluster must be built in; the
    /// provider checks the caller's credentials belong to it before creating anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// For clouds: principals made cluster admins besides the creator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<String>,
    /// Where the CNI is a setting of the cluster (GKE): the data plane, `cilium` for GKE
    /// Dataplane V2 (fixed at creation: a change replaces the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapath: Option<String>,
    /// Where the CNI is a setting of the cluster (GKE): network policy enforcement by `calico`
    /// (switched in place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
}

/// How to mint credentials for a cluster: the `credentials` output of a cluster step and the
/// `credentials` input of every in-cluster step (see the module docs).
///
/// Serialised internally tagged by `type`: `{"type": "kubeconfig", "context": "prod"}`. A source
/// holds no secret — put none in it (an exec plugin's `env` is recorded in state as written).
///
/// Who mints what:
/// - [`Kubeconfig`](Self::Kubeconfig) and [`Exec`](Self::Exec) are minted by the `kube`
///   provider itself, through kube-rs (which runs exec plugins and re-reads token files when
///   their tokens expire);
/// - [`Sim`](Self::Sim) by the simulated cloud;
/// - [`Eks`](Self::Eks), [`Gke`](Self::Gke) and [`Aks`](Self::Aks) are placeholders for the
///   cloud providers, which will register a token minter for their type with the `kube`
///   provider; until one is registered the `kube` provider answers a permanent error naming
///   the missing minter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialSource {
    /// Authenticate as the user of a kubeconfig context, read when a call is made: the file at
    /// `path` (a leading `~/` is the home directory), else `$KUBECONFIG` (several files merged
    /// as kubectl does), else `~/.kube/config`. The user may have a token, a token file, a
    /// client certificate and key (inline or as files) or an exec plugin.
    Kubeconfig {
        /// The kubeconfig file; absent for `$KUBECONFIG`, then `~/.kube/config`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// The context whose user is authenticated as.
        context: String,
    },
    /// Run a program that prints a `client.authentication.k8s.io` `ExecCredential` (the shape
    /// of a kubeconfig's `user.exec`, with snake_case field names). It runs non-interactively.
    Exec {
        /// The program (looked up on `PATH` unless it is a path).
        command: String,
        /// Its arguments.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// Extra environment variables (not secrets: they are recorded in state).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env: Vec<ExecEnvVar>,
        /// The `ExecCredential` version the program speaks
        /// (`client.authentication.k8s.io/v1` or `/v1beta1`).
        api_version: String,
        /// Whether the program is given the cluster's endpoint and CA in
        /// `KUBERNETES_EXEC_INFO`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        provide_cluster_info: bool,
        /// Shown when the program cannot be started (how to install it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        install_hint: Option<String>,
    },
    /// A cluster of the simulated cloud, which mints its token.
    Sim {
        /// The simulated cluster's id.
        cluster_id: String,
    },
    /// An EKS cluster: a token presigned from the caller's AWS credentials (minted by the AWS
    /// provider once it exists).
    Eks {
        /// The EKS cluster name.
        cluster: String,
        /// Its AWS region.
        region: String,
    },
    /// A GKE cluster: an OAuth access token of the caller's Google credentials (minted by the
    /// GCP provider once it exists).
    Gke {
        /// The Google Cloud project.
        project: String,
        /// The cluster's region or zone.
        location: String,
        /// The GKE cluster name.
        cluster: String,
    },
    /// An AKS cluster: an Entra ID token for the AKS server application (minted by the Azure
    /// provider once it exists).
    Aks {
        /// The Azure subscription id.
        subscription_id: String,
        /// The resource group holding the cluster.
        resource_group: String,
        /// The AKS cluster name.
        cluster: String,
    },
}

/// One environment variable of an [`CredentialSource::Exec`] program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnvVar {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl CredentialSource {
    /// A kubeconfig context as a source (`path` absent for `$KUBECONFIG`/`~/.kube/config`).
    pub fn kubeconfig(path: Option<String>, context: impl Into<String>) -> Self {
        CredentialSource::Kubeconfig {
            path,
            context: context.into(),
        }
    }

    /// The source's `type` tag: `kubeconfig`, `exec`, `sim`, `eks`, `gke` or `aks` (what token
    /// minters are registered under).
    pub fn type_name(&self) -> &'static str {
        match self {
            CredentialSource::Kubeconfig { .. } => "kubeconfig",
            CredentialSource::Exec { .. } => "exec",
            CredentialSource::Sim { .. } => "sim",
            CredentialSource::Eks { .. } => "eks",
            CredentialSource::Gke { .. } => "gke",
            CredentialSource::Aks { .. } => "aks",
        }
    }

    /// The source as a JSON value (its serialised form; what the `credentials` output holds).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// For messages: `kubeconfig context "prod" (~/.kube/prod)`, `exec plugin "aws"`,
/// `EKS cluster "shop" in us-east-1`, … — never a secret, as a source holds none.
impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Kubeconfig { path, context } => {
                write!(f, "kubeconfig context {context:?}")?;
                match path {
                    Some(path) => write!(f, " ({path})"),
                    None => Ok(()),
                }
            }
            CredentialSource::Exec { command, .. } => write!(f, "exec plugin {command:?}"),
            CredentialSource::Sim { cluster_id } => write!(f, "simulated cluster {cluster_id:?}"),
            CredentialSource::Eks { cluster, region } => {
                write!(f, "EKS cluster {cluster:?} in {region}")
            }
            CredentialSource::Gke {
                project,
                location,
                cluster,
            } => write!(f, "GKE cluster {cluster:?} in {project}/{location}"),
            CredentialSource::Aks {
                resource_group,
                cluster,
                ..
            } => write!(
                f,
                "AKS cluster {cluster:?} in resource group {resource_group:?}"
            ),
        }
    }
}

/// `cni`: the network plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniConfig {
    /// `default` (the provider's), `cilium` or `calico`.
    pub plugin: String,
    /// Plugin version, when pinned (recorded; the bundle's digest pins what is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Plugin settings, passed through (read by the simulated cloud; a bundle is applied as
    /// it is).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Value>,
    /// The plugin's release bundle, pinned, which the kube provider installs in-cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bundle>,
    /// How the plugin sits beside the provider's CNI (`cni`, `chaining`, `policy`): decides
    /// what is done to the VPC CNI's `aws-node` DaemonSet. Absent: it is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The cluster's provider, where it changes what the install does (`eks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// Node disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Size in GiB.
    pub size_gb: u32,
    /// Volume type (`gp3`, `pd-balanced` …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the disk is encrypted.
    #[serde(default = "yes")]
    pub encrypted: bool,
}

fn yes() -> bool {
    true
}

/// Node pool scaling bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    /// Minimum nodes.
    pub min: u32,
    /// Maximum nodes.
    pub max: u32,
    /// Desired nodes.
    pub desired: u32,
}

/// `node_pool`: a group of worker nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePoolConfig {
    /// Pool name.
    pub name: String,
    /// Instance / machine types.
    pub instance_types: Vec<String>,
    /// Scaling bounds.
    pub scaling: Scaling,
    /// Node labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Node disk.
    pub disk: Disk,
    /// The Kubernetes version the nodes run: the cluster's, so that a cluster upgrade is
    /// followed by one of its pools (absent when the spec pins none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Registries whose pulls the nodes' container runtime sends to a mirror first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<NodeMirror>,
}

/// `storage_class`: a Kubernetes StorageClass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageClassConfig {
    /// Object name.
    pub name: String,
    /// CSI provisioner (`ebs.csi.aws.com`, `pd.csi.storage.gke.io`, or the sim's).
    pub provisioner: String,
    /// Volume type parameter.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether volumes are encrypted.
    pub encrypted: bool,
    /// Whether this is the cluster's default class.
    pub default: bool,
    /// `Delete` or `Retain`.
    pub reclaim_policy: String,
    /// `WaitForFirstConsumer` or `Immediate`.
    pub volume_binding_mode: String,
    /// Whether volumes can grow.
    pub allow_volume_expansion: bool,
    /// Extra provisioner parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

/// `object_bucket`: an object-storage bucket (the audit archive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Bucket name.
    pub name: String,
    /// Days objects are kept.
    pub retention_days: u32,
    /// Versioning + object lock (WORM) on the archive.
    pub object_lock: bool,
    /// Refuse non-TLS access.
    pub require_tls: bool,
    /// Whether destroying the step may delete the bucket with its objects (only a bucket the
    /// step created; default false: the bucket is kept and destroy says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_destroy: bool,
    /// Make the retention irreversible: a locked GCS retention policy, S3 object lock in
    /// compliance mode (instead of an unlocked policy / governance mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lock_retention: bool,
}

/// `audit_logging`: control-plane audit log delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLoggingConfig {
    /// The cluster whose control plane logs (its name; the log group is named after it).
    pub cluster: String,
    /// Log types to deliver.
    pub log_types: Vec<String>,
    /// Days the log group keeps records before they age out (the archive keeps longer).
    pub retention_days: u32,
}

/// `audit_archive`: continuous export of the audit log into the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditArchiveConfig {
    /// Key prefix inside the bucket.
    pub prefix: String,
}

/// `audit_alarm`: an alarm on audit events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAlarmConfig {
    /// What raises the alarm: `deny` (authorization denials), `anomalies`.
    pub on: Vec<String>,
    /// Where alerts go (an SNS topic ARN, a Pub/Sub topic, an e-mail address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// `namespace`: a namespace and its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceConfig {
    /// Namespace name.
    pub name: String,
    /// Labels (PodSecurity labels are applied by a separate step).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// PodSecurity admission levels for one mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSecurityMode {
    /// `privileged`, `baseline` or `restricted`.
    pub level: String,
    /// Policy version (`latest` or `v1.29`).
    pub version: String,
}

/// `pod_security_labels`: the PodSecurity labels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSecurityLabelsConfig {
    /// The namespace labelled.
    pub namespace: String,
    /// `enforce` mode.
    pub enforce: PodSecurityMode,
    /// `audit` mode.
    pub audit: PodSecurityMode,
    /// `warn` mode.
    pub warn: PodSecurityMode,
}

impl PodSecurityLabelsConfig {
    /// The six `pod-security.kubernetes.io/*` labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (mode, m) in [
            ("enforce", &self.enforce),
            ("audit", &self.audit),
            ("warn", &self.warn),
        ] {
            out.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                m.level.clone(),
            );
            out.insert(
                format!("pod-security.kubernetes.io/{mode}-version"),
                m.version.clone(),
            );
        }
        out
    }
}

/// A release bundle (the policy engine's, or a manifest's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Where it is: an `https://` URL or a local path (relative paths are relative to the spec
    /// file, resolved by the catalogue).
    pub source: String,
    /// Expected SHA-256 of the bundle, hex.
    pub sha256: String,
}

/// `policy_engine`: Kyverno or Gatekeeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEngineConfig {
    /// `kyverno` or `gatekeeper`.
    pub engine: String,
    /// Pinned version.
    pub version: String,
    /// The release manifest bundle, verified before anything is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bundle>,
    /// Image registry rewrites (upstream → mirror) applied to the bundle's images.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_mirrors: BTreeMap<String, String>,
}

/// `policy`: one policy of the engine, as the Kubernetes objects that express it
/// (a Kyverno `ClusterPolicy`; a Gatekeeper `ConstraintTemplate` and its constraint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Policy name.
    pub name: String,
    /// `kyverno` or `gatekeeper`.
    pub engine: String,
    /// The objects, in apply order.
    pub objects: Vec<Value>,
}

/// `iam_role`: a cloud role — for a Kubernetes service account (workload identity), or, with
/// a [`purpose`](Self::purpose), for the control plane ([`ROLE_FOR_CLUSTER`]) or a node pool's
/// machines ([`ROLE_FOR_NODES`]), whose cloud-defined permissions the provider attaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IamRoleConfig {
    /// Role name.
    pub name: String,
    /// An existing role to use instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<String>,
    /// Permissions (actions) granted when the role is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// The namespace of the service account allowed to assume it (empty for a cluster or
    /// node role).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The service account allowed to assume it (empty for a cluster or node role).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    /// What the cloud platform assumes it for: [`ROLE_FOR_CLUSTER`] or [`ROLE_FOR_NODES`];
    /// [`ROLE_FOR_IRSA`] for a workload identity assumed through the OIDC issuer; absent for
    /// one the cloud binds (EKS Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The resources `permissions` are granted on (every resource when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Policies the cloud defines, attached by name (`AmazonEBSCSIDriverPolicy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed: Vec<String>,
}

/// `service_account`: a ServiceAccount bound to a cloud role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccountConfig {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The annotation that carries the role (`eks.amazonaws.com/role-arn`,
    /// `iam.gke.io/gcp-service-account`, or the sim's); its value is the `role` input. Empty
    /// when the cloud binds the role outside the cluster (EKS Pod Identity): the account then
    /// carries no annotation and takes no role.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_annotation: String,
    /// The role itself, when the spec names an existing one and no `iam_role` step makes it
    /// (an existing cluster, `provider = "kube"`); otherwise the `role` input carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `manifest`: extra Kubernetes objects — written in the spec (`objects`), or a release
/// `bundle` the provider reads (downloads, for a URL) and verifies when it applies the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestConfig {
    /// Entry name.
    pub name: String,
    /// The objects, in the order written (empty for a bundle).
    #[serde(default)]
    pub objects: Vec<Value>,
    /// The release bundle the objects come from, pinned by its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bundle>,
    /// The namespace of namespaced objects that name none (`default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

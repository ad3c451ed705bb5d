//! The typed configs of what only cloud clusters have — the network, the encryption key of the
//! cluster's Secrets — and the inputs and outputs that wire them to the cluster and its node
//! pools.
//!
//! A cloud cluster step takes [`INPUT_SUBNETS`] (from the network's [`OUTPUT_SUBNETS`]),
//! [`INPUT_ROLE`](super::INPUT_ROLE) (its service role's `arn`, on clouds that have one) and
//! [`INPUT_KEY`] (the key's [`OUTPUT_ARN`](super::OUTPUT_ARN)); a node pool takes its role and
//! the network's [`OUTPUT_PRIVATE_SUBNETS`]. Subnet lists are JSON arrays of ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Input name: the subnets a cluster or node pool is placed in (a JSON array of ids).
pub const INPUT_SUBNETS: &str = "subnets";
/// Input name: the key that encrypts the cluster's Secrets (an `encryption_key`'s `arn`).
pub const INPUT_KEY: &str = "key";

/// Output of `network`: the VPC (network) id.
pub const OUTPUT_VPC_ID: &str = "vpc_id";
/// Output of `network`: every subnet, private first (what a control plane is placed in).
pub const OUTPUT_SUBNETS: &str = "subnets";
/// Output of `network`: the private subnets (where nodes go).
pub const OUTPUT_PRIVATE_SUBNETS: &str = "private_subnets";
/// Output of `network`: the public subnets (for internet-facing load balancers).
pub const OUTPUT_PUBLIC_SUBNETS: &str = "public_subnets";
/// Output of `network`: the zones it spans.
pub const OUTPUT_ZONES: &str = "zones";
/// Output of a VPC-native `network` (GKE): the names of its subnetwork's secondary ranges, as
/// `{"pods": NAME, "services": NAME}`.
pub const OUTPUT_SECONDARY_RANGES: &str = "secondary_ranges";
/// Input name (GKE cluster): the network it is placed in (the network's `vpc_id`).
pub const INPUT_NETWORK: &str = "network";
/// Input name (GKE cluster): the secondary ranges pods and services take addresses from.
pub const INPUT_SECONDARY_RANGES: &str = "secondary_ranges";
/// Input name (GKE cluster): the zones its nodes are placed in (empty: GKE chooses).
pub const INPUT_ZONES: &str = "zones";

/// `iam_role` purpose: the role a managed control plane acts as (EKS's cluster role).
pub const ROLE_FOR_CLUSTER: &str = "cluster";
/// `iam_role` purpose: the role a node pool's machines act as.
pub const ROLE_FOR_NODES: &str = "nodes";
/// `iam_role` purpose: a role one Kubernetes service account assumes with its projected token
/// through the cluster's OIDC issuer (EKS IAM roles for service accounts, IRSA). Without a
/// purpose, a workload role is assumed through the cloud's own binding (EKS Pod Identity).
pub const ROLE_FOR_IRSA: &str = "irsa";

/// Input name: the IAM OIDC provider an IRSA role trusts (an `oidc_provider`'s `arn`).
pub const INPUT_OIDC_PROVIDER: &str = "oidc_provider";

/// The EKS add-ons bmac installs, each with the service account its role is bound to (empty:
/// the add-on needs no AWS role). The VPC CNI is the default `[cni]`; the EBS CSI driver
/// serves every `[[storage_class]]`; the Pod Identity agent serves every Pod Identity binding.
pub const EKS_ADDONS: &[(&str, &str, &str)] = &[
    (EKS_VPC_CNI, "kube-system", "aws-node"),
    (EKS_EBS_CSI, "kube-system", "ebs-csi-controller-sa"),
    (EKS_POD_IDENTITY_AGENT, "", ""),
];
/// The VPC CNI add-on.
pub const EKS_VPC_CNI: &str = "vpc-cni";
/// The EBS CSI driver add-on.
pub const EKS_EBS_CSI: &str = "aws-ebs-csi-driver";
/// The EKS Pod Identity agent add-on.
pub const EKS_POD_IDENTITY_AGENT: &str = "eks-pod-identity-agent";

/// `addon`: a cluster add-on the cloud installs and upgrades (an EKS add-on). With a
/// `service_account`, the add-on's pods act as the role of the `role` input, bound the way
/// the cloud binds workload identities (EKS: a Pod Identity association made with the add-on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonConfig {
    /// The cluster it is installed into.
    pub cluster: String,
    /// The add-on's name (`vpc-cni`, `aws-ebs-csi-driver`, `eks-pod-identity-agent`).
    pub name: String,
    /// A pinned add-on version; the cloud's default for the cluster version when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The add-on's configuration values (its own JSON schema; EKS `configurationValues`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configuration: BTreeMap<String, serde_json::Value>,
    /// The namespace of the service account its role is bound to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The service account its role is bound to (none: the add-on needs no cloud role).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    /// Leave the add-on's software running in the cluster when the step is destroyed (the
    /// VPC CNI: removing it would cut every pod's network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preserve: bool,
}

/// `identity_binding`: the cloud's binding of a role (the `role` input) to a Kubernetes
/// service account (an EKS Pod Identity association).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityBindingConfig {
    /// The cluster whose service account it binds.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
}

/// `oidc_provider`: the cloud IAM's trust in the cluster's OIDC issuer (the
/// [`INPUT_OIDC_ISSUER`](super::INPUT_OIDC_ISSUER) input), which IRSA roles name as their
/// federated principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcProviderConfig {
    /// The cluster whose issuer it trusts.
    pub cluster: String,
    /// The audiences (client ids) tokens may be issued for (`sts.amazonaws.com`).
    pub audiences: Vec<String>,
}

/// `network`: the VPC a cluster and its nodes live in — created, or an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The cluster it is for (names and tags: `kubernetes.io/cluster/<name>`).
    pub cluster: String,
    /// The address range of a created network.
    pub cidr: String,
    /// The zones to span; empty means the first `zone_count` the region offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// How many zones a created network spans when `zones` is empty.
    pub zone_count: u32,
    /// NAT gateways: `single`, `per_zone` or `none`.
    pub nat: String,
    /// Use this network instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<ExistingNetworkConfig>,
    /// The secondary ranges of a VPC-native (GKE) subnetwork; `cidr` is then the nodes' range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<SecondaryRanges>,
}

/// The secondary ranges of a VPC-native subnetwork: where pod and service addresses come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryRanges {
    /// The pods' range of a created subnetwork (its range name is `pods`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pods_cidr: String,
    /// The services' range of a created subnetwork (its range name is `services`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_cidr: String,
    /// Of an existing subnetwork: the name of its pods' range.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pods_range: String,
    /// Of an existing subnetwork: the name of its services' range.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub services_range: String,
}

/// An existing network: its id and its subnets by zone (on GKE: the network and its one
/// regional subnetwork, with the secondary ranges in [`NetworkConfig::secondary`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingNetworkConfig {
    /// The VPC id (a GKE network's name or resource path).
    pub vpc_id: String,
    /// Private subnets by zone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub private_subnets: BTreeMap<String, String>,
    /// GKE: the regional subnetwork's name or resource path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnetwork: String,
    /// Public subnets by zone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub public_subnets: BTreeMap<String, String>,
}

/// `encryption_key`: a customer-managed key (KMS) — created with yearly rotation, or an
/// existing one that is only checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKeyConfig {
    /// The alias a created key gets (`alias/bmac/prod/secrets`).
    pub alias: String,
    /// What it is for (the key's description).
    pub description: String,
    /// Automatic rotation of a created key.
    pub rotation: bool,
    /// Use this key (its ARN) instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<String>,
}

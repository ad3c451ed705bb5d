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

/// `iam_role` purpose: the role a managed control plane acts as (EKS's cluster role).
pub const ROLE_FOR_CLUSTER: &str = "cluster";
/// `iam_role` purpose: the role a node pool's machines act as.
pub const ROLE_FOR_NODES: &str = "nodes";

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
}

/// An existing network: its id and its subnets by zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingNetworkConfig {
    /// The VPC id.
    pub vpc_id: String,
    /// Private subnets by zone.
    pub private_subnets: BTreeMap<String, String>,
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

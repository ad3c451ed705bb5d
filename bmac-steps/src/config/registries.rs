//! The typed configs of image registries: a mirror (or pull-through cache) of an upstream,
//! the registry policy that lets a cluster's nodes fill its caches, and the mirrors a node
//! pool's container runtime is pointed at.
//!
//! A `registry_policy` step takes one input per node pool, named
//! [`INPUT_NODE_ROLE_PREFIX`]`<pool>` (from that pool's role step's `arn` output): the
//! principals the policy grants.

use serde::{Deserialize, Serialize};

/// Input-name prefix of a `registry_policy`'s node roles: `node_role.<pool>`.
pub const INPUT_NODE_ROLE_PREFIX: &str = "node_role.";

/// Output of `registry_mirror`: the URL images are pulled through (`https://HOST/PREFIX`).
pub const OUTPUT_MIRROR_URL: &str = "mirror_url";

/// `registry_mirror`: a mirror / pull-through cache of an upstream registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryMirrorConfig {
    /// The upstream registry (`docker.io`).
    pub upstream: String,
    /// The mirror's host/prefix.
    pub mirror: String,
    /// Whether the mirror is a pull-through cache the build creates.
    pub pull_through_cache: bool,
    /// Where the cache's credentials for the upstream are: the ARN of a secret (of a role, for
    /// an upstream that is itself a cloud registry) — never the credentials themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `registry_policy`: what the registry holding the pull-through caches lets the cluster's
/// nodes do — create the cache repositories and import upstream images on a first pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryPolicyConfig {
    /// The cluster whose nodes are granted (it names the policy's part, so clusters sharing a
    /// registry keep each other's grants).
    pub cluster: String,
    /// The pull-through caches the nodes may fill: their mirrors (`HOST/PREFIX`).
    pub mirrors: Vec<String>,
}

/// One mirror of a node pool's container runtime: pulls of `upstream` images go to `mirror`
/// first, then to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMirror {
    /// The upstream registry host (`docker.io`).
    pub upstream: String,
    /// The mirror (host and optional path).
    pub mirror: String,
}

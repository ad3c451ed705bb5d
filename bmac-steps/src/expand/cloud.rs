//! What a cloud cluster needs before it can exist, and what its node pools need: the network,
//! the control plane's role, the key that encrypts its Secrets, and each pool's node role.
//!
//! Which clouds get which steps is decided here, once, by [`needs`] — not by string inside a
//! provider (DESIGN, real clouds 4):
//! - `network` — every cloud cluster sits in one. EKS always gets a `network` step (bmac
//!   creates a VPC when the spec has no `[network]`, as eksctl does); the simulator only when
//!   the spec has `[network]`, so a spec without one plans as before.
//! - `cluster.role` (`iam_role`, purpose `cluster`) and `node_pool.<name>.role` (purpose
//!   `nodes`) — EKS only: GKE and AKS act through identities the platform manages.
//! - `cluster.key` (`encryption_key`) — EKS: Secrets are envelope-encrypted with a KMS key,
//!   created (with rotation) unless `[cluster] encryption_key` names one.
//! - node mirrors — EKS: node pools carry the registry mirrors (the provider points the
//!   nodes' containerd at them), run after the mirror steps, and pull-through caches get a
//!   `registries.policy` granting the node roles what a first pull through a cache needs;
//!   node pools carry the cluster's version, so an upgrade of the cluster is followed by one
//!   of each node group.
//!
//! Role and key names are derived from the cluster name (`bmac-<cluster>-cluster`,
//! `bmac-<cluster>-<pool>-nodes`, `alias/bmac/<cluster>/secrets`), so a rebuilt state finds
//! the same resources again.

use bmac_core::step::{Ref, Step};

use super::Catalogue;
use crate::config::{
    EncryptionKeyConfig, ExistingNetworkConfig, IamRoleConfig, NetworkConfig, INPUT_KEY,
    INPUT_ROLE, INPUT_SUBNETS, OUTPUT_ARN, OUTPUT_PRIVATE_SUBNETS, OUTPUT_SUBNETS,
    ROLE_FOR_CLUSTER, ROLE_FOR_NODES,
};
use crate::error::CatalogueError;
use crate::kinds;
use crate::spec::{Provider, DEFAULT_ZONES};

/// What a provider's cluster needs from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A `network` step.
    pub network: bool,
    /// Cluster and node roles.
    pub roles: bool,
    /// A Secrets encryption key.
    pub key: bool,
    /// Node pools carry the registry mirrors (their container runtime is configured by the
    /// provider), and pull-through caches get a `registries.policy` granting the node roles.
    pub node_mirrors: bool,
    /// Node pools carry the cluster's Kubernetes version, so that the provider upgrades them
    /// after the control plane (EKS node groups follow `UpdateNodegroupVersion`).
    pub node_versions: bool,
}

/// What the cluster of `provider` needs, given whether the spec has a `[network]`.
pub fn needs(provider: Provider, has_network: bool) -> Needs {
    match provider {
        Provider::Eks => Needs {
            network: true,
            roles: true,
            key: true,
            node_mirrors: true,
            node_versions: true,
        },
        Provider::Sim => Needs {
            network: has_network,
            roles: false,
            key: false,
            node_mirrors: false,
            node_versions: false,
        },
        Provider::Gke | Provider::Kube => Needs {
            network: false,
            roles: false,
            key: false,
            node_mirrors: false,
            node_versions: false,
        },
    }
}

pub(super) fn needs_of(c: &Catalogue<'_>) -> Needs {
    needs(c.spec.cluster.provider.value, c.spec.network.is_some())
}

/// The step id of the network.
const NETWORK: &str = "network";

/// Adds the network, the cluster role and the key; returns the inputs the cluster step takes.
pub(super) fn before_cluster(
    c: &mut Catalogue<'_>,
) -> Result<Vec<(&'static str, Ref)>, CatalogueError> {
    let needs = needs_of(c);
    let spec = c.spec;
    let cl = &spec.cluster;
    let name = cl.name.value.clone();
    let mut inputs = Vec::new();
    if needs.network {
        let (entry, span) = match &spec.network {
            Some(n) => (n.meta.id.clone(), n.meta.span),
            None => (cl.meta.id.clone(), cl.meta.span),
        };
        let config = match &spec.network {
            Some(n) => NetworkConfig {
                cluster: name.clone(),
                cidr: n.cidr.value.clone(),
                zones: n.zones.iter().map(|z| z.value.clone()).collect(),
                zone_count: DEFAULT_ZONES,
                nat: n.nat.as_str().to_owned(),
                existing: n.existing.as_ref().map(|e| ExistingNetworkConfig {
                    vpc_id: e.vpc_id.value.clone(),
                    private_subnets: e
                        .private_subnets
                        .iter()
                        .map(|(z, s)| (z.clone(), s.value.clone()))
                        .collect(),
                    public_subnets: e
                        .public_subnets
                        .iter()
                        .map(|(z, s)| (z.clone(), s.value.clone()))
                        .collect(),
                }),
            },
            None => NetworkConfig {
                cluster: name.clone(),
                cidr: crate::spec::DEFAULT_CIDR.to_owned(),
                zones: Vec::new(),
                zone_count: DEFAULT_ZONES,
                nat: "single".to_owned(),
                existing: None,
            },
        };
        let id = c.id(NETWORK, span)?;
        let step = c.step(id.clone(), kinds::NETWORK, &config)?;
        c.add(&entry, span, step);
        inputs.push((INPUT_SUBNETS, Ref::new(id, OUTPUT_SUBNETS)));
    }
    if needs.roles {
        let role = IamRoleConfig {
            name: format!("bmac-{name}-cluster"),
            existing: None,
            permissions: Vec::new(),
            namespace: String::new(),
            service_account: String::new(),
            purpose: Some(ROLE_FOR_CLUSTER.to_owned()),
        };
        let id = c.id("cluster.role", cl.meta.span)?;
        let step = c.step(id.clone(), kinds::IAM_ROLE, &role)?;
        c.add(&cl.meta.id, cl.meta.span, step);
        inputs.push((INPUT_ROLE, Ref::new(id, OUTPUT_ARN)));
    }
    if needs.key {
        let key = EncryptionKeyConfig {
            alias: format!("alias/bmac/{name}/secrets"),
            description: format!("bmac: encrypts the Secrets of cluster {name}"),
            rotation: true,
            existing: cl.encryption_key.as_ref().map(|k| k.value.clone()),
        };
        let span = cl.encryption_key.as_ref().map_or(cl.meta.span, |k| k.span);
        let id = c.id("cluster.key", span)?;
        let step = c.step(id.clone(), kinds::ENCRYPTION_KEY, &key)?;
        c.add(&cl.meta.id, span, step);
        inputs.push((INPUT_KEY, Ref::new(id, OUTPUT_ARN)));
    }
    Ok(inputs)
}

/// The step id of `pool`'s node role: `node_pool.<name>.role`.
pub(super) fn node_role_id(pool: &crate::spec::NodePool) -> String {
    format!("{}.role", pool.meta.id)
}

/// Adds `pool`'s node role (when its cloud has them) and wires the role and the private
/// subnets into the pool's step.
pub(super) fn node_pool(
    c: &mut Catalogue<'_>,
    pool: &crate::spec::NodePool,
    mut step: Step,
) -> Result<Step, CatalogueError> {
    let needs = needs_of(c);
    if needs.network && c.has(NETWORK) {
        let network = c.id(NETWORK, pool.meta.span)?;
        step = step.input(INPUT_SUBNETS, Ref::new(network, OUTPUT_PRIVATE_SUBNETS));
    }
    if needs.roles {
        let role = IamRoleConfig {
            name: format!("bmac-{}-{}-nodes", c.spec.cluster.name.value, pool.name),
            existing: None,
            permissions: Vec::new(),
            namespace: String::new(),
            service_account: String::new(),
            purpose: Some(ROLE_FOR_NODES.to_owned()),
        };
        let id = c.id(&node_role_id(pool), pool.meta.span)?;
        let role_step = c.step(id.clone(), kinds::IAM_ROLE, &role)?;
        c.add(&pool.meta.id, pool.meta.span, role_step);
        step = step.input(INPUT_ROLE, Ref::new(id, OUTPUT_ARN));
    }
    Ok(step)
}

//! What a cloud cluster needs before it can exist, and what its node pools need: the network,
//! the control plane's role, the key that encrypts its Secrets, and each pool's node role.
//!
//! Which clouds get which steps is decided here, once, by [`needs`] — not by string inside a
//! provider (DESIGN, real clouds 4):
//! - `network` — every cloud cluster sits in one. EKS always gets a `network` step (bmac
//!   creates a VPC when the spec has no `[network]`, as eksctl does); the simulator only when
//!   the spec has `[network]`, so a spec without one plans as before.
//! - `cluster.role` (`iam_role`, purpose `cluster`) — EKS only: GKE's control plane acts
//!   through an identity Google manages. `node_pool.<name>.role` (purpose `nodes`) — EKS (an
//!   IAM role) and GKE (a Google service account per pool, its id from [`gcp_account_id`],
//!   instead of Compute Engine's default account, which holds Editor on the project).
//! - `cluster.key` (`encryption_key`) — EKS: Secrets are envelope-encrypted with a KMS key,
//!   created (with rotation) unless `[cluster] encryption_key` names one.
//! - node mirrors — EKS and GKE: node pools carry the registry mirrors (the provider points
//!   the nodes' containerd at them) and run after the mirror steps; on EKS pull-through caches
//!   also get a `registries.policy` granting the node roles what a first pull through a cache
//!   needs (GKE's node roles already include `roles/artifactregistry.reader`);
//!   node pools carry the cluster's version, so an upgrade of the cluster is followed by one
//!   of each node group.
//!
//! - EKS add-ons (`addon`): the default `[cni]` is the `vpc-cni` add-on (step `cni`, its role
//!   `cni.role`); storage classes are served by the `aws-ebs-csi-driver` add-on (step
//!   `storage.driver`, role `storage.driver.role`, after the node pools: its controller needs
//!   nodes to turn `ACTIVE`); and whatever binds a role through EKS Pod Identity — those two
//!   add-ons and every Pod Identity workload identity — runs after the Pod Identity agent add-on
//!   (`cluster.pod_identity_agent`). Each add-on role trusts `pods.eks.amazonaws.com` and gets
//!   the AWS-managed policy AWS documents for the add-on; the add-on step binds it to the add-on's
//!   service account.
//! - IRSA (`mechanism = "irsa"`): one `cluster.oidc` step (`oidc_provider`) makes IAM trust the
//!   cluster's OIDC issuer; each IRSA role takes its `arn` and the issuer as inputs.
//!
//! - GKE: `network` is VPC-native (a subnetwork with `pods` and `services` secondary ranges),
//!   `cluster.key` is a Cloud KMS key (`bmac-<cluster>/secrets`: key ring and key in the
//!   cluster's region), the CNI is a setting of the cluster (Cilium → Dataplane V2, fixed at
//!   creation; Calico → network policy enforcement) instead of a step, and a workload identity
//!   is a Google service account, an `identity_binding` (its `roles/iam.workloadIdentityUser`
//!   for the Kubernetes account's member of the cluster's workload identity pool, after the
//!   cluster) and the annotated Kubernetes account after it.
//!
//! Role and key names are derived from the cluster name (`bmac-<cluster>-cluster`,
//! `bmac-<cluster>-<pool>-nodes`, `alias/bmac/<cluster>/secrets`), so a rebuilt state finds
//! the same resources again.

use bmac_core::step::{Ref, Step, StepId};

use super::Catalogue;
use crate::config::{
    AddonConfig, EncryptionKeyConfig, ExistingNetworkConfig, IamRoleConfig, NetworkConfig,
    OidcProviderConfig, SecondaryRanges, EKS_ADDONS, EKS_EBS_CSI, EKS_POD_IDENTITY_AGENT,
    EKS_VPC_CNI, INPUT_KEY, INPUT_NETWORK, INPUT_OIDC_ISSUER, INPUT_ROLE, INPUT_SECONDARY_RANGES,
    INPUT_SUBNETS, INPUT_ZONES, OUTPUT_ARN, OUTPUT_OIDC_ISSUER, OUTPUT_PRIVATE_SUBNETS,
    OUTPUT_SECONDARY_RANGES, OUTPUT_SUBNETS, OUTPUT_VPC_ID, OUTPUT_ZONES, ROLE_FOR_CLUSTER,
    ROLE_FOR_NODES,
};
use crate::error::CatalogueError;
use crate::kinds;
use crate::spec::{
    Cni, CniPlugin, Provider, DEFAULT_CIDR, DEFAULT_ZONES, GKE_DEFAULT_CIDR, GKE_DEFAULT_PODS_CIDR,
    GKE_DEFAULT_SERVICES_CIDR,
};

/// What a provider's cluster needs from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A `network` step.
    pub network: bool,
    /// A role the control plane acts as (EKS's cluster role).
    pub cluster_role: bool,
    /// A role (service account) per node pool that its machines act as.
    pub node_roles: bool,
    /// A Secrets encryption key.
    pub key: bool,
    /// Cloud-managed add-ons for the default CNI and the CSI driver, and workload identity
    /// bound by the cloud (EKS Pod Identity) or through the OIDC issuer (IRSA).
    pub addons: bool,
    /// Node pools carry the registry mirrors (their container runtime is configured by the
    /// provider) and come after the mirror steps.
    pub node_mirrors: bool,
    /// Pull-through caches get a `registries.policy` granting the node roles what a first
    /// pull needs (EKS: ECR's registry policy; GKE's node roles already read remote
    /// repositories).
    pub registry_policy: bool,
    /// Node pools carry the cluster's Kubernetes version, so that the provider upgrades them
    /// after the control plane (EKS node groups follow `UpdateNodegroupVersion`).
    pub node_versions: bool,
    /// The CNI is a setting of the cluster itself, not a step (GKE: Dataplane V2 for Cilium,
    /// network policy enforcement for Calico).
    pub cni_in_cluster_config: bool,
    /// A workload identity is bound to its Kubernetes service account by an `identity_binding`
    /// step and the account also carries the role annotation (GKE: `roles/iam.workloadIdentityUser`
    /// for the account's member of the workload identity pool).
    pub annotated_bindings: bool,
}

/// What the cluster of `provider` needs, given whether the spec has a `[network]`.
pub fn needs(provider: Provider, has_network: bool) -> Needs {
    let none = Needs {
        network: false,
        cluster_role: false,
        node_roles: false,
        key: false,
        addons: false,
        node_mirrors: false,
        registry_policy: false,
        node_versions: false,
        cni_in_cluster_config: false,
        annotated_bindings: false,
    };
    match provider {
        Provider::Eks => Needs {
            network: true,
            cluster_role: true,
            node_roles: true,
            key: true,
            addons: true,
            node_mirrors: true,
            registry_policy: true,
            node_versions: true,
            ..none
        },
        Provider::Gke => Needs {
            network: true,
            node_roles: true,
            key: true,
            node_mirrors: true,
            node_versions: true,
            cni_in_cluster_config: true,
            annotated_bindings: true,
            ..none
        },
        Provider::Sim => Needs {
            network: has_network,
            ..none
        },
        Provider::Kube => none,
    }
}

/// A Google service-account id for `name`: lower case, `-` for anything else, 6 to 30
/// characters (a longer name keeps its first 25 and gets a 4-hex digest of the whole, so two
/// long names stay distinct and a rebuilt state derives the same id).
pub fn gcp_account_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut id: String = name
        .chars()
        .map(|ch| match ch.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id.insert(0, 'b');
    }
    if id.len() > 30 {
        let digest = Sha256::digest(name.as_bytes());
        let mut cut: String = id[..25].trim_end_matches('-').to_owned();
        cut.push('-');
        cut.push_str(&format!("{:02x}{:02x}", digest[0], digest[1]));
        id = cut;
    }
    let mut id = id.trim_end_matches('-').to_owned();
    while id.len() < 6 {
        id.push_str("-sa");
    }
    id
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
        let gke = cl.provider.value == Provider::Gke;
        let config = match &spec.network {
            Some(n) => NetworkConfig {
                cluster: name.clone(),
                cidr: n.cidr.value.clone(),
                zones: n.zones.iter().map(|z| z.value.clone()).collect(),
                zone_count: DEFAULT_ZONES,
                nat: n.nat.as_str().to_owned(),
                existing: match (
                    &n.existing,
                    n.gke.as_ref().and_then(|g| g.existing.as_ref()),
                ) {
                    (Some(e), _) => Some(ExistingNetworkConfig {
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
                        subnetwork: String::new(),
                    }),
                    (None, Some(g)) => Some(ExistingNetworkConfig {
                        vpc_id: g.network.value.clone(),
                        private_subnets: Default::default(),
                        public_subnets: Default::default(),
                        subnetwork: g.subnetwork.value.clone(),
                    }),
                    (None, None) => None,
                },
                secondary: n.gke.as_ref().map(|g| match &g.existing {
                    Some(e) => SecondaryRanges {
                        pods_cidr: String::new(),
                        services_cidr: String::new(),
                        pods_range: e.pods_range.value.clone(),
                        services_range: e.services_range.value.clone(),
                    },
                    None => SecondaryRanges {
                        pods_cidr: g.pods_cidr.value.clone(),
                        services_cidr: g.services_cidr.value.clone(),
                        pods_range: String::new(),
                        services_range: String::new(),
                    },
                }),
            },
            None => NetworkConfig {
                cluster: name.clone(),
                cidr: if gke { GKE_DEFAULT_CIDR } else { DEFAULT_CIDR }.to_owned(),
                zones: Vec::new(),
                zone_count: DEFAULT_ZONES,
                nat: "single".to_owned(),
                existing: None,
                secondary: gke.then(|| SecondaryRanges {
                    pods_cidr: GKE_DEFAULT_PODS_CIDR.to_owned(),
                    services_cidr: GKE_DEFAULT_SERVICES_CIDR.to_owned(),
                    pods_range: String::new(),
                    services_range: String::new(),
                }),
            },
        };
        let id = c.id(NETWORK, span)?;
        let step = c.step(id.clone(), kinds::NETWORK, &config)?;
        c.add(&entry, span, step);
        inputs.push((INPUT_SUBNETS, Ref::new(id.clone(), OUTPUT_SUBNETS)));
        if gke {
            inputs.push((INPUT_NETWORK, Ref::new(id.clone(), OUTPUT_VPC_ID)));
            inputs.push((
                INPUT_SECONDARY_RANGES,
                Ref::new(id.clone(), OUTPUT_SECONDARY_RANGES),
            ));
            inputs.push((INPUT_ZONES, Ref::new(id, OUTPUT_ZONES)));
        }
    }
    if needs.cluster_role {
        let role = IamRoleConfig {
            name: format!("bmac-{name}-cluster"),
            existing: None,
            permissions: Vec::new(),
            namespace: String::new(),
            service_account: String::new(),
            purpose: Some(ROLE_FOR_CLUSTER.to_owned()),
            resources: Vec::new(),
            managed: Vec::new(),
        };
        let id = c.id("cluster.role", cl.meta.span)?;
        let step = c.step(id.clone(), kinds::IAM_ROLE, &role)?;
        c.add(&cl.meta.id, cl.meta.span, step);
        inputs.push((INPUT_ROLE, Ref::new(id, OUTPUT_ARN)));
    }
    if needs.key {
        let key = EncryptionKeyConfig {
            // A KMS alias on AWS; a key ring and key (`RING/KEY`) in the region on Google.
            alias: match cl.provider.value {
                Provider::Gke => format!("bmac-{name}/secrets"),
                _ => format!("alias/bmac/{name}/secrets"),
            },
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

/// The predefined roles a GKE node pool's service account holds on the project: GKE's
/// least-privilege node role (logs, metrics, metadata) and pulls from Artifact Registry (the
/// registry mirrors).
pub const GKE_NODE_ROLES: &[&str] = &[
    "roles/container.defaultNodeServiceAccount",
    "roles/artifactregistry.reader",
];

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
    if needs.node_roles {
        let cluster = &c.spec.cluster.name.value;
        let role = IamRoleConfig {
            name: match c.spec.cluster.provider.value {
                // A Google service account per pool, instead of Compute Engine's default one
                // (which holds Editor on the project).
                Provider::Gke => gcp_account_id(&format!("bmac-{cluster}-{}", pool.name)),
                _ => format!("bmac-{cluster}-{}-nodes", pool.name),
            },
            existing: None,
            permissions: Vec::new(),
            namespace: String::new(),
            service_account: String::new(),
            purpose: Some(ROLE_FOR_NODES.to_owned()),
            resources: Vec::new(),
            managed: match c.spec.cluster.provider.value {
                Provider::Gke => GKE_NODE_ROLES.iter().map(|r| (*r).to_owned()).collect(),
                _ => Vec::new(),
            },
        };
        let id = c.id(&node_role_id(pool), pool.meta.span)?;
        let role_step = c.step(id.clone(), kinds::IAM_ROLE, &role)?;
        c.add(&pool.meta.id, pool.meta.span, role_step);
        step = step.input(INPUT_ROLE, Ref::new(id, OUTPUT_ARN));
    }
    Ok(step)
}

/// The step id of the Pod Identity agent add-on.
const AGENT: &str = "cluster.pod_identity_agent";
/// The step id of the IAM OIDC provider.
const OIDC: &str = "cluster.oidc";
/// The step id of the CSI driver add-on.
const STORAGE_DRIVER: &str = "storage.driver";

/// The service account an EKS add-on's role is bound to.
fn addon_account(addon: &str) -> (&'static str, &'static str) {
    EKS_ADDONS
        .iter()
        .find(|(name, _, _)| *name == addon)
        .map_or(("", ""), |(_, ns, sa)| (*ns, *sa))
}

/// An add-on step, after the cluster; with a role (`managed` policies, extra `permissions` on
/// `resources`) bound to the add-on's service account, made from `entry` as `<id>.role`.
#[allow(clippy::too_many_arguments)]
fn addon(
    c: &mut Catalogue<'_>,
    id: &str,
    entry: &StepId,
    span: miette::SourceSpan,
    name: &str,
    version: Option<String>,
    configuration: std::collections::BTreeMap<String, serde_json::Value>,
    role: Option<(&[&str], Vec<String>, Vec<String>)>,
) -> Result<StepId, CatalogueError> {
    let cluster = c.spec.cluster.name.value.clone();
    let (namespace, service_account) = addon_account(name);
    let config = AddonConfig {
        cluster: cluster.clone(),
        name: name.to_owned(),
        version,
        configuration,
        namespace: if role.is_some() {
            namespace.to_owned()
        } else {
            String::new()
        },
        service_account: if role.is_some() {
            service_account.to_owned()
        } else {
            String::new()
        },
        preserve: name == EKS_VPC_CNI,
    };
    let step_id = c.id(id, span)?;
    let mut step = c
        .step(step_id.clone(), kinds::ADDON, &config)?
        .depends_on(c.cluster());
    if let Some((managed, permissions, resources)) = role {
        let role = IamRoleConfig {
            name: format!("bmac-{cluster}-{name}"),
            existing: None,
            permissions,
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            purpose: None,
            resources,
            managed: managed.iter().map(|m| (*m).to_owned()).collect(),
        };
        let role_id = c.id(&format!("{id}.role"), span)?;
        let role_step = c.step(role_id.clone(), kinds::IAM_ROLE, &role)?;
        c.add(entry, span, role_step);
        step = step
            .input(INPUT_ROLE, Ref::new(role_id, OUTPUT_ARN))
            .depends_on(pod_identity_agent(c)?);
    }
    Ok(c.add(entry, span, step))
}

/// The Pod Identity agent add-on step (made on first use); what binds a role through EKS Pod
/// Identity runs after it.
pub(super) fn pod_identity_agent(c: &mut Catalogue<'_>) -> Result<StepId, CatalogueError> {
    let cl = &c.spec.cluster;
    if c.has(AGENT) {
        return c.id(AGENT, cl.meta.span);
    }
    let (entry, span) = (cl.meta.id.clone(), cl.meta.span);
    addon(
        c,
        AGENT,
        &entry,
        span,
        EKS_POD_IDENTITY_AGENT,
        None,
        Default::default(),
        None,
    )
}

/// On a cloud with managed add-ons, the default CNI is one (EKS: `vpc-cni`, its role with
/// `AmazonEKS_CNI_Policy` bound to `kube-system/aws-node`); returns whether it made the step.
pub(super) fn cni_addon(c: &mut Catalogue<'_>, cni: &Cni) -> Result<bool, CatalogueError> {
    if !needs_of(c).addons || cni.plugin.value != CniPlugin::Default {
        return Ok(false);
    }
    let configuration = cni
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    addon(
        c,
        cni.meta.id.as_str(),
        &cni.meta.id.clone(),
        cni.meta.span,
        EKS_VPC_CNI,
        cni.version.clone(),
        configuration,
        Some((&["AmazonEKS_CNI_Policy"], Vec::new(), Vec::new())),
    )?;
    Ok(true)
}

/// The KMS actions the EBS CSI driver needs on a customer-managed key (AWS's documented
/// policy for encrypted volumes).
const EBS_KMS_ACTIONS: &[&str] = &[
    "kms:CreateGrant",
    "kms:ListGrants",
    "kms:RevokeGrant",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// On a cloud with managed add-ons, the CSI driver storage classes need (EKS: the EBS CSI
/// driver add-on, its role with `AmazonEBSCSIDriverPolicy` and, for classes with a
/// `kms_key`, the KMS actions on those keys), after every node pool; returns its id.
pub(super) fn storage_driver(c: &mut Catalogue<'_>) -> Result<Option<StepId>, CatalogueError> {
    let spec = c.spec;
    let Some(first) = spec.storage_classes.first() else {
        return Ok(None);
    };
    if !needs_of(c).addons {
        return Ok(None);
    }
    let keys: Vec<String> = spec
        .storage_classes
        .iter()
        .filter_map(|s| s.kms_key.as_ref().map(|k| k.value.clone()))
        .collect();
    let permissions = if keys.is_empty() {
        Vec::new()
    } else {
        EBS_KMS_ACTIONS.iter().map(|a| (*a).to_owned()).collect()
    };
    let id = addon(
        c,
        STORAGE_DRIVER,
        &first.meta.id.clone(),
        first.meta.span,
        EKS_EBS_CSI,
        None,
        Default::default(),
        Some((
            &["service-role/AmazonEBSCSIDriverPolicy"],
            permissions,
            keys,
        )),
    )?;
    for pool in c.of_kind(kinds::NODE_POOL) {
        c.depend(&id, pool);
    }
    Ok(Some(id))
}

/// The IAM OIDC provider step (made on first use) IRSA roles trust.
pub(super) fn oidc_provider(c: &mut Catalogue<'_>) -> Result<StepId, CatalogueError> {
    let cl = &c.spec.cluster;
    if c.has(OIDC) {
        return c.id(OIDC, cl.meta.span);
    }
    let config = OidcProviderConfig {
        cluster: cl.name.value.clone(),
        audiences: vec!["sts.amazonaws.com".to_owned()],
    };
    let (entry, span) = (cl.meta.id.clone(), cl.meta.span);
    let id = c.id(OIDC, span)?;
    let step = c
        .step(id, kinds::OIDC_PROVIDER, &config)?
        .input(INPUT_OIDC_ISSUER, Ref::new(c.cluster(), OUTPUT_OIDC_ISSUER));
    Ok(c.add(&entry, span, step))
}

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
//! Role and key names are derived from the cluster name (`bmac-<cluster>-cluster`,
//! `bmac-<cluster>-<pool>-nodes`, `alias/bmac/<cluster>/secrets`), so a rebuilt state finds
//! the same resources again.

use bmac_core::step::{Ref, Step, StepId};

use super::Catalogue;
use crate::config::{
    AddonConfig, EncryptionKeyConfig, ExistingNetworkConfig, IamRoleConfig, NetworkConfig,
    OidcProviderConfig, EKS_ADDONS, EKS_EBS_CSI, EKS_POD_IDENTITY_AGENT, EKS_VPC_CNI, INPUT_KEY,
    INPUT_OIDC_ISSUER, INPUT_ROLE, INPUT_SUBNETS, OUTPUT_ARN, OUTPUT_OIDC_ISSUER,
    OUTPUT_PRIVATE_SUBNETS, OUTPUT_SUBNETS, ROLE_FOR_CLUSTER, ROLE_FOR_NODES,
};
use crate::error::CatalogueError;
use crate::kinds;
use crate::spec::{Cni, CniPlugin, Provider, DEFAULT_ZONES};

/// What a provider's cluster needs from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A `network` step.
    pub network: bool,
    /// Cluster and node roles.
    pub roles: bool,
    /// A Secrets encryption key.
    pub key: bool,
    /// Cloud-managed add-ons for the default CNI and the CSI driver, and workload identity
    /// bound by the cloud (EKS Pod Identity) or through the OIDC issuer (IRSA).
    pub addons: bool,
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
            addons: true,
            node_mirrors: true,
            node_versions: true,
        },
        Provider::Sim => Needs {
            network: has_network,
            roles: false,
            key: false,
            addons: false,
            node_mirrors: false,
            node_versions: false,
        },
        Provider::Gke | Provider::Kube => Needs {
            network: false,
            roles: false,
            key: false,
            addons: false,
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
            resources: Vec::new(),
            managed: Vec::new(),
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

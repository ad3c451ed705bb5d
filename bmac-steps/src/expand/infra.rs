//! The infrastructure concerns: the cluster, its CNI, node pools, storage classes and
//! registry mirrors — and the few places where the provider decides a spelling
//! ([`provisioner`], [`role_annotation`], [`default_disk_type`]).
//!
//! Dependencies: the CNI is installed into the cluster; node pools join the cluster and need
//! the CNI before their nodes turn `Ready`; storage classes are in-cluster objects, after the
//! CSI driver where bmac installs one (EKS; see `cloud.rs`); a registry
//! mirror is wired to the cluster it serves. On EKS ([`needs`](super::cloud::needs)) node
//! pools carry the mirrors (the provider configures their container runtime) and come after
//! the mirror steps and the `registries.policy` that lets their roles fill the pull-through
//! caches; they also carry the cluster's version, so a cluster upgrade is followed by one of
//! each pool. The cluster's `log_types` stay empty: control-plane logging belongs to the
//! `audit.logging` step, so toggling audit never touches the cluster.

use crate::spec::{Cni, CniMode, CniPlugin, Provider, Registries, Spanned};

use super::Catalogue;
use crate::config::{
    ClusterConfig, CniConfig, Disk, EndpointAccess, NodeMirror, NodePoolConfig,
    RegistryMirrorConfig, RegistryPolicyConfig, Scaling, StorageClassConfig, Taint,
    INPUT_NODE_ROLE_PREFIX, OUTPUT_ARN,
};
use crate::error::CatalogueError;
use crate::kinds;
use bmac_core::step::{Ref, StepId};

/// The CSI provisioner of storage classes on `provider`. An existing cluster (`kube`) has no
/// known CSI driver, so its classes are `kubernetes.io/no-provisioner` (local volumes) unless
/// the spec names one in the class's `parameters.provisioner`.
pub fn provisioner(provider: Provider) -> &'static str {
    match provider {
        Provider::Sim => "sim.csi.bmac.invalid",
        Provider::Eks => "ebs.csi.aws.com",
        Provider::Gke => "pd.csi.storage.gke.io",
        Provider::Kube => "kubernetes.io/no-provisioner",
    }
}

/// The service-account annotation that binds a cloud role on `provider`. An existing cluster
/// (`kube`) is most often EKS, so it gets the EKS annotation.
pub fn role_annotation(provider: Provider) -> &'static str {
    match provider {
        Provider::Sim => "sim.bmac.invalid/role",
        Provider::Eks | Provider::Kube => "eks.amazonaws.com/role-arn",
        Provider::Gke => "iam.gke.io/gcp-service-account",
    }
}

/// The node disk type used when the spec names none.
pub fn default_disk_type(provider: Provider) -> &'static str {
    match provider {
        Provider::Sim => "sim-ssd",
        Provider::Eks => "gp3",
        Provider::Gke => "pd-balanced",
        Provider::Kube => "default",
    }
}

/// The StorageClass parameter naming a customer-managed encryption key.
fn kms_parameter(provider: Provider) -> &'static str {
    match provider {
        Provider::Eks => "kmsKeyId",
        Provider::Gke => "disk-encryption-kms-key",
        Provider::Sim | Provider::Kube => "kmsKey",
    }
}

pub(super) fn cluster(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let spec = c.spec;
    let cl = &spec.cluster;
    let endpoint = cl.endpoint.as_ref().map_or(
        EndpointAccess {
            public: false,
            public_cidrs: Vec::new(),
            private: true,
        },
        |e| EndpointAccess {
            public: e.public.value,
            public_cidrs: e.public_cidrs.iter().map(|c| c.value.clone()).collect(),
            private: e.private,
        },
    );
    // Where the CNI is a cluster setting (GKE), the plugin lands here instead of in a step.
    let cni = spec
        .cni
        .as_ref()
        .filter(|_| super::cloud::needs_of(c).cni_in_cluster_config)
        .map(|n| n.plugin.value);
    let config = ClusterConfig {
        datapath: (cni == Some(CniPlugin::Cilium)).then(|| "cilium".to_owned()),
        network_policy: (cni == Some(CniPlugin::Calico)).then(|| "calico".to_owned()),
        name: cl.name.value.clone(),
        provider: cl.provider.value.as_str().to_owned(),
        region: cl.region.as_ref().map(|r| r.value.clone()),
        version: cl.version.as_ref().map(|v| v.value.clone()),
        endpoint,
        log_types: Vec::new(),
        kubeconfig: cl.kubeconfig.as_ref().map(|p| p.display().to_string()),
        context: cl.context.clone(),
        account: cl
            .account
            .clone()
            .or_else(|| cl.project.as_ref().map(|p| p.value.clone())),
        admins: cl.admins.iter().map(|a| a.value.clone()).collect(),
    };
    let inputs = super::cloud::before_cluster(c)?;
    let mut step = c.step(c.cluster(), kinds::CLUSTER, &config)?;
    for (name, from) in inputs {
        step = step.input(name, from);
    }
    c.add(&cl.meta.id, cl.meta.span, step);
    Ok(())
}

pub(super) fn cni(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let Some(cni) = &c.spec.cni else {
        return Ok(());
    };
    if super::cloud::needs_of(c).cni_in_cluster_config {
        return Ok(());
    }
    if super::cloud::cni_addon(c, cni)? {
        return Ok(());
    }
    let provider = c.spec.cluster.provider.value;
    if cni.plugin.value == CniPlugin::Default {
        return plain_cni(c, cni);
    }
    let bundle = cni
        .bundle
        .as_ref()
        .map(|b| crate::bundle::pinned(c.spec, &c.base, &b.value, b.span))
        .transpose()?;
    // On EKS the vendors' guides say what becomes of the VPC CNI: Cilium replaces it unless
    // chained; Calico's mode is required by validation.
    let mode = match (provider, cni.mode.as_ref().map(|m| m.value)) {
        (_, Some(m)) => Some(m),
        (Provider::Eks, None) if cni.plugin.value == CniPlugin::Cilium => Some(CniMode::Cni),
        _ => None,
    };
    let config = CniConfig {
        bundle,
        mode: mode.map(|m| m.as_str().to_owned()),
        provider: (provider == Provider::Eks).then(|| provider.as_str().to_owned()),
        ..cni_config(cni)
    };
    // The CNI is installed through the API server, like every in-cluster step.
    let step = c.step(cni.meta.id.clone(), kinds::CNI, &config)?;
    let step = c.in_cluster(step);
    c.add(&cni.meta.id, cni.meta.span, step);
    Ok(())
}

/// The `cni` step of the provider's default plugin (and of the simulated cloud's plugins,
/// which read `settings`): plugin, version and settings as written.
fn plain_cni(c: &mut Catalogue<'_>, cni: &Cni) -> Result<(), CatalogueError> {
    let step = c.step(cni.meta.id.clone(), kinds::CNI, &cni_config(cni))?;
    let step = c.in_cluster(step);
    c.add(&cni.meta.id, cni.meta.span, step);
    Ok(())
}

fn cni_config(cni: &Cni) -> CniConfig {
    CniConfig {
        plugin: cni.plugin.value.as_str().to_owned(),
        version: cni.version.clone(),
        settings: cni
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        bundle: None,
        mode: None,
        provider: None,
    }
}

/// The mirrors a node pool's container runtime is pointed at: every mirror of a whole
/// registry (an upstream with a path cannot be a runtime mirror), where the provider
/// configures the nodes' runtime ([`needs`](super::cloud::needs)).
fn node_mirrors(c: &Catalogue<'_>) -> Vec<NodeMirror> {
    if !super::cloud::needs_of(c).node_mirrors {
        return Vec::new();
    }
    c.spec
        .registries
        .iter()
        .flat_map(|r| &r.mirrors)
        .filter(|m| !m.upstream.value.contains('/'))
        .map(|m| NodeMirror {
            upstream: m.upstream.value.clone(),
            mirror: m.mirror.value.clone(),
        })
        .collect()
}

pub(super) fn node_pools(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let provider = c.spec.cluster.provider.value;
    let cni = c
        .spec
        .cni
        .as_ref()
        .map(|n| n.meta.id.clone())
        .filter(|id| c.has(id.as_str()));
    let mirrors = node_mirrors(c);
    let version = c
        .spec
        .cluster
        .version
        .as_ref()
        .filter(|_| super::cloud::needs_of(c).node_versions)
        .map(|v| v.value.clone());
    for pool in &c.spec.node_pools {
        let config = NodePoolConfig {
            name: pool.name.clone(),
            instance_types: pool
                .instance_types
                .iter()
                .map(|t| t.value.clone())
                .collect(),
            scaling: Scaling {
                min: pool.min.value,
                max: pool.max.value,
                desired: pool.desired_size(),
            },
            labels: pool.labels.clone(),
            taints: pool
                .taints
                .iter()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.as_str().to_owned(),
                })
                .collect(),
            disk: Disk {
                size_gb: pool.disk.size_gb,
                kind: pool
                    .disk
                    .volume_type
                    .clone()
                    .unwrap_or_else(|| default_disk_type(provider).to_owned()),
                encrypted: pool.disk.encrypted.value,
            },
            version: version.clone(),
            mirrors: mirrors.clone(),
        };
        let mut step = c
            .step(pool.meta.id.clone(), kinds::NODE_POOL, &config)?
            .depends_on(c.cluster());
        if let Some(cni) = &cni {
            step = step.depends_on(cni.clone());
        }
        let step = super::cloud::node_pool(c, pool, step)?;
        c.add(&pool.meta.id, pool.meta.span, step);
    }
    Ok(())
}

pub(super) fn storage_classes(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let provider = c.spec.cluster.provider.value;
    let driver = super::cloud::storage_driver(c)?;
    for class in &c.spec.storage_classes {
        let mut parameters = class.parameters.clone();
        let provisioner = match provider {
            Provider::Kube => parameters
                .remove("provisioner")
                .unwrap_or_else(|| provisioner(provider).to_owned()),
            _ => provisioner(provider).to_owned(),
        };
        if let Some(Spanned { value: key, .. }) = &class.kms_key {
            parameters.insert(kms_parameter(provider).to_owned(), key.clone());
        }
        let config = StorageClassConfig {
            name: class.name.clone(),
            provisioner,
            kind: class.volume_type.clone(),
            encrypted: class.encrypted.value,
            default: class.default.value,
            reclaim_policy: class.reclaim_policy.as_str().to_owned(),
            volume_binding_mode: "WaitForFirstConsumer".to_owned(),
            allow_volume_expansion: true,
            parameters,
        };
        let mut step = c.step(class.meta.id.clone(), kinds::STORAGE_CLASS, &config)?;
        if let Some(driver) = &driver {
            step = step.depends_on(driver.clone());
        }
        let step = c.in_cluster(step);
        c.add(&class.meta.id, class.meta.span, step);
    }
    Ok(())
}

/// `registries.mirror.<upstream>`: the upstream host with every character that cannot be in
/// a step id (dots, colons, slashes) turned into `-`.
pub fn mirror_step_id(upstream: &str) -> String {
    let segment: String = upstream
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' {
                ch
            } else {
                '-'
            }
        })
        .collect();
    format!("registries.mirror.{segment}")
}

pub(super) fn registry_mirrors(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let Some(registries) = &c.spec.registries else {
        return Ok(());
    };
    // An existing cluster's mirrors already exist: they are used for the allow-list and for
    // rewriting images, not built.
    if c.spec.cluster.provider.value == Provider::Kube {
        return Ok(());
    }
    let mut made = Vec::new();
    for mirror in &registries.mirrors {
        let id = c.id(
            &mirror_step_id(&mirror.upstream.value),
            mirror.upstream.span,
        )?;
        let config = RegistryMirrorConfig {
            upstream: mirror.upstream.value.clone(),
            mirror: mirror.mirror.value.clone(),
            pull_through_cache: registries.pull_through_cache,
            credential: registries
                .credential(&mirror.upstream.value)
                .filter(|_| registries.pull_through_cache)
                .map(|cred| cred.arn.value.clone()),
        };
        let step = c
            .step(id, kinds::REGISTRY_MIRROR, &config)?
            .depends_on(c.cluster());
        made.push(c.add(&registries.meta.id, mirror.upstream.span, step));
    }
    if !super::cloud::needs_of(c).node_mirrors {
        return Ok(());
    }
    let mut before_nodes = made.clone();
    if registries.pull_through_cache
        && super::cloud::needs_of(c).registry_policy
        && !made.is_empty()
        && !c.spec.node_pools.is_empty()
    {
        before_nodes.push(registry_policy(c, registries, &made)?);
    }
    // Nodes pull through the mirrors from their first boot: pools come after them.
    for pool in &c.spec.node_pools {
        for id in &before_nodes {
            c.depend(&pool.meta.id, id.clone());
        }
    }
    Ok(())
}

/// `registries.policy`: the cluster's node roles may create the cache repositories and import
/// upstream images into them (what a first pull through a cache needs).
fn registry_policy(
    c: &mut Catalogue<'_>,
    registries: &Registries,
    mirrors: &[StepId],
) -> Result<StepId, CatalogueError> {
    let spec = c.spec;
    let config = RegistryPolicyConfig {
        cluster: spec.cluster.name.value.clone(),
        mirrors: registries
            .mirrors
            .iter()
            .map(|m| m.mirror.value.clone())
            .collect(),
    };
    let id = c.id("registries.policy", registries.meta.span)?;
    let mut step = c.step(id, kinds::REGISTRY_POLICY, &config)?;
    for mirror in mirrors {
        step = step.depends_on(mirror.clone());
    }
    for pool in &spec.node_pools {
        let role = c.id(&super::cloud::node_role_id(pool), pool.meta.span)?;
        step = step.input(
            format!("{INPUT_NODE_ROLE_PREFIX}{}", pool.name),
            Ref::new(role, OUTPUT_ARN),
        );
    }
    Ok(c.add(&registries.meta.id, registries.meta.span, step))
}

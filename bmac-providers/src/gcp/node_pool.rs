//! `node_pool` on Google Cloud: a GKE node pool.
//!
//! Create (`nodePools.create`, a GKE operation, checkpointed and waited on): one machine type
//! (validation refuses several), the boot disk's size and type (boot disks are always encrypted;
//! a customer key for them is not wired yet), the pool's own Google service account (input
//! `role`, instead of Compute Engine's default account) with the `cloud-platform` scope (access
//! is then what its IAM roles grant), `GKE_METADATA` (pods see the workload identity metadata
//! server, never the node's credentials), shielded instances with secure boot and integrity
//! monitoring, auto-repair and auto-upgrade, labels and taints as Kubernetes node labels and
//! taints, the cluster's version when the spec pins one, and autoscaling between `min` and `max`
//! nodes in total (`totalMinNodeCount` / `totalMaxNodeCount`: the spec counts the whole pool,
//! not per zone) starting from `desired`. `ALREADY_EXISTS` is adoption.
//!
//! Registry mirrors (the spec's `[registries] mirrors`, Artifact Registry remote repositories —
//! see [`super::registry`]) are the pool's containerd registry hosts (`containerdConfig.
//! registryHosts`, one `hosts.toml` per mirrored upstream on each node): the mirror first, with
//! `pull` and `resolve`, addressed `https://HOST/v2/PROJECT/REPO` with `overridePath`; containerd
//! falls back to the upstream itself when the mirror fails. Caveat, as on EKS: containerd sends
//! the mirror the credentials the kubelet found for the *image's* registry, and GKE's
//! credential provider matches only Google registries, so a pull of `docker.io/library/nginx`
//! reaches a remote repository that does not allow anonymous reads without credentials and
//! falls back to Docker Hub; images named by their mirror (`…-docker.pkg.dev/P/REPO/library/
//! nginx`) authenticate as the node's service account and go through the cache.
//!
//! Update in place, each an operation: autoscaling (`setAutoscaling`), labels and taints
//! (`nodePools.update`), the registry mirrors (`nodePools.update` with `containerdConfig`), the
//! node version (`nodePools.update`). The machine type and disk are
//! replacements (`bmac_steps::kinds`). The desired size is where autoscaling starts; after that
//! the autoscaler owns it and observe does not report it as drift. Updates of a pool share the
//! cluster's one-operation-at-a-time group (GKE refuses concurrent operations on a cluster).

use crate::cloud::Boxed;
use std::collections::BTreeMap;

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{NodeMirror, NodePoolConfig, Taint, INPUT_ROLE, OUTPUT_ARN};
use google_cloud_container_v1::model::containerd_config::registry_host_config::{
    HostCapability, HostConfig,
};
use google_cloud_container_v1::model::containerd_config::RegistryHostConfig;
use google_cloud_container_v1::model::{
    node_pool::Status as PoolStatus, node_taint::Effect, workload_metadata_config,
    ContainerdConfig, NodeConfig, NodeLabels, NodeManagement, NodePool, NodePoolAutoscaling,
    NodeTaint, NodeTaints, ShieldedInstanceConfig, WorkloadMetadataConfig,
};
use serde_json::json;

use super::error::{created, found, Context as _, Created};
use super::operation::{self, Op};
use super::{labels, Clients, Handler};

/// The `node_pool` handler.
pub struct GkeNodePool;

fn pool_path(gcp: &Clients, name: &str) -> String {
    format!(
        "{}/nodePools/{name}",
        super::cluster::path(gcp, &gcp.cluster)
    )
}

async fn get(gcp: &Clients, name: &str) -> Result<Option<NodePool>, ProviderError> {
    found(
        gcp.container
            .get_node_pool()
            .set_name(pool_path(gcp, name))
            .send()
            .boxed()
            .await,
        "container.nodePools.get",
        &format!("node pool {name}"),
    )
}

fn effect(e: &str) -> Effect {
    match e {
        "NoExecute" => Effect::NoExecute,
        "PreferNoSchedule" => Effect::PreferNoSchedule,
        _ => Effect::NoSchedule,
    }
}

fn taints(t: &[Taint]) -> Vec<NodeTaint> {
    t.iter()
        .map(|t| {
            NodeTaint::new()
                .set_key(&t.key)
                .set_value(&t.value)
                .set_effect(effect(&t.effect))
        })
        .collect()
}

fn taints_of(pool: &NodePool) -> Vec<Taint> {
    pool.config
        .iter()
        .flat_map(|c| &c.taints)
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: match t.effect {
                Effect::NoExecute => "NoExecute",
                Effect::PreferNoSchedule => "PreferNoSchedule",
                _ => "NoSchedule",
            }
            .to_owned(),
        })
        .collect()
}

fn labels_of(pool: &NodePool) -> BTreeMap<String, String> {
    pool.config
        .iter()
        .flat_map(|c| &c.labels)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The containerd registry hosts of `mirrors` (see the module docs).
fn containerd(mirrors: &[NodeMirror]) -> ContainerdConfig {
    ContainerdConfig::new().set_registry_hosts(mirrors.iter().map(|m| {
        let (host, override_path) = crate::cloud::containerd_host(&m.mirror);
        RegistryHostConfig::new()
            .set_server(bmac_steps::spec::registry_host(&m.upstream))
            .set_hosts([HostConfig::new()
                .set_host(host)
                .set_capabilities([HostCapability::Pull, HostCapability::Resolve])
                .set_override_path(override_path)])
    }))
}

/// The mirrors a pool's containerd is pointed at (each registry host's first host), in the
/// spec's terms.
fn mirrors_of(pool: &NodePool) -> Vec<NodeMirror> {
    pool.config
        .iter()
        .filter_map(|c| c.containerd_config.as_ref())
        .flat_map(|c| &c.registry_hosts)
        .filter_map(|r| {
            let host = r.hosts.first()?;
            let url = host.host.trim_start_matches("https://");
            let mirror = match url.split_once("/v2/") {
                Some((h, path)) if host.override_path => format!("{h}/{path}"),
                _ => url.to_owned(),
            };
            Some(NodeMirror {
                upstream: r.server.clone(),
                mirror,
            })
        })
        .collect()
}

/// Whether the pool's containerd mirrors are the spec's (upstream aliases folded).
fn same_mirrors(pool: &NodePool, want: &[NodeMirror]) -> bool {
    let key = |m: &NodeMirror| {
        (
            bmac_steps::spec::registry_host(&m.upstream).to_owned(),
            m.mirror.clone(),
        )
    };
    let mut have: Vec<_> = mirrors_of(pool).iter().map(key).collect();
    let mut want: Vec<_> = want.iter().map(key).collect();
    have.sort();
    want.sort();
    have == want
}

fn autoscaling(c: &NodePoolConfig) -> NodePoolAutoscaling {
    NodePoolAutoscaling::new()
        .set_enabled(true)
        .set_total_min_node_count(c.scaling.min as i32)
        .set_total_max_node_count(c.scaling.max as i32)
}

fn bounds(pool: &NodePool) -> Option<(u32, u32)> {
    let a = pool.autoscaling.as_ref().filter(|a| a.enabled)?;
    let (min, max) = if a.total_max_node_count > 0 {
        (a.total_min_node_count, a.total_max_node_count)
    } else {
        (a.min_node_count, a.max_node_count)
    };
    Some((min.max(0) as u32, max.max(0) as u32))
}

fn outputs(gcp: &Clients, c: &NodePoolConfig) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ARN, pool_path(gcp, &c.name))
        .with("name", c.name.as_str())
}

fn body(gcp: &Clients, c: &NodePoolConfig, account: Option<&str>, step: &str) -> NodePool {
    let mut config = NodeConfig::new()
        .set_machine_type(c.instance_types.first().cloned().unwrap_or_default())
        .set_disk_size_gb(c.disk.size_gb as i32)
        .set_disk_type(&c.disk.kind)
        .set_oauth_scopes(["https://www.googleapis.com/auth/cloud-platform"])
        .set_labels(c.labels.clone())
        .set_taints(taints(&c.taints))
        .set_workload_metadata_config(
            WorkloadMetadataConfig::new().set_mode(workload_metadata_config::Mode::GkeMetadata),
        )
        .set_shielded_instance_config(
            ShieldedInstanceConfig::new()
                .set_enable_secure_boot(true)
                .set_enable_integrity_monitoring(true),
        )
        .set_resource_labels(labels::of(&gcp.cluster, step));
    if !c.mirrors.is_empty() {
        config = config.set_containerd_config(containerd(&c.mirrors));
    }
    if let Some(sa) = account {
        config = config.set_service_account(sa);
    }
    let mut pool = NodePool::new()
        .set_name(&c.name)
        .set_initial_node_count(c.scaling.desired.max(c.scaling.min) as i32)
        .set_config(config)
        .set_autoscaling(autoscaling(c))
        .set_management(
            NodeManagement::new()
                .set_auto_repair(true)
                .set_auto_upgrade(true),
        );
    if let Some(v) = &c.version {
        pool = pool.set_version(v);
    }
    pool
}

async fn wait(
    gcp: &Clients,
    ctx: &StepContext,
    op: &google_cloud_container_v1::model::Operation,
    what: String,
) -> Result<(), ProviderError> {
    Op::container(gcp, op).wait(gcp, ctx, &what).await
}

#[async_trait]
impl Handler<Clients> for GkeNodePool {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(4 * 60)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30 * 60)
    }

    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let what = format!("node pool {}", c.name);
        operation::finish_interrupted(gcp, req.ctx, &what).await?;
        let pool = match get(gcp, &c.name).await? {
            Some(p) => p,
            None => {
                let account = req.inputs.str(INPUT_ROLE);
                let made = created(
                    gcp.container
                        .create_node_pool()
                        .set_parent(super::cluster::path(gcp, &gcp.cluster))
                        .set_node_pool(body(gcp, &c, account, req.step.id.as_str()))
                        .send()
                        .boxed()
                        .await,
                    "container.nodePools.create",
                    &what,
                )?;
                if let Created::New(op) = made {
                    wait(gcp, req.ctx, &op, format!("create of {what}")).await?;
                }
                get(gcp, &c.name)
                    .await?
                    .ok_or_else(|| ProviderError::retryable(format!("{what} is not visible yet")))?
            }
        };
        if bounds(&pool) != Some((c.scaling.min, c.scaling.max)) {
            let op = gcp
                .container
                .set_node_pool_autoscaling()
                .set_name(pool_path(gcp, &c.name))
                .set_autoscaling(autoscaling(&c))
                .send()
                .boxed()
                .await
                .on("container.nodePools.setAutoscaling", &what)?;
            wait(gcp, req.ctx, &op, format!("autoscaling update of {what}")).await?;
        }
        if labels_of(&pool) != c.labels || taints_of(&pool) != c.taints {
            let op = gcp
                .container
                .update_node_pool()
                .set_name(pool_path(gcp, &c.name))
                .set_labels(NodeLabels::new().set_labels(c.labels.clone()))
                .set_taints(NodeTaints::new().set_taints(taints(&c.taints)))
                .send()
                .boxed()
                .await
                .on("container.nodePools.update", &what)?;
            wait(
                gcp,
                req.ctx,
                &op,
                format!("labels and taints update of {what}"),
            )
            .await?;
        }
        if !same_mirrors(&pool, &c.mirrors) {
            let op = gcp
                .container
                .update_node_pool()
                .set_name(pool_path(gcp, &c.name))
                .set_containerd_config(containerd(&c.mirrors))
                .send()
                .boxed()
                .await
                .on("container.nodePools.update", &what)?;
            wait(
                gcp,
                req.ctx,
                &op,
                format!("registry mirrors update of {what}"),
            )
            .await?;
        }
        if let Some(v) = &c.version {
            if !pool.version.starts_with(v.as_str()) {
                let op = gcp
                    .container
                    .update_node_pool()
                    .set_name(pool_path(gcp, &c.name))
                    .set_node_version(v)
                    .send()
                    .boxed()
                    .await
                    .on("container.nodePools.update", &what)?;
                wait(gcp, req.ctx, &op, format!("upgrade of {what} to {v}")).await?;
            }
        }
        Ok(outputs(gcp, &c))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let Some(pool) = get(gcp, &c.name).await? else {
            return Ok(Observed::Absent);
        };
        if matches!(
            pool.status,
            PoolStatus::Provisioning | PoolStatus::Reconciling | PoolStatus::Stopping
        ) {
            return Ok(Observed::Pending {
                status: pool.status.name().unwrap_or("PROVISIONING").to_owned(),
            });
        }
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        let (min, max) = bounds(&pool).unwrap_or((0, 0));
        config["scaling"]["min"] = json!(min);
        config["scaling"]["max"] = json!(max);
        config["labels"] = json!(labels_of(&pool));
        config["taints"] = json!(taints_of(&pool));
        if !same_mirrors(&pool, &c.mirrors) {
            config["mirrors"] = json!(mirrors_of(&pool));
        }
        if let Some(pc) = &pool.config {
            config["instance_types"] = json!([pc.machine_type]);
            config["disk"]["size_gb"] = json!(pc.disk_size_gb);
            config["disk"]["type"] = json!(pc.disk_type);
        }
        if let Some(v) = &c.version {
            if !pool.version.starts_with(v.as_str()) {
                config["version"] = json!(pool.version);
            }
        }
        for key in ["labels", "taints", "mirrors"] {
            let empty = config[key].as_object().is_some_and(|o| o.is_empty())
                || config[key].as_array().is_some_and(|a| a.is_empty());
            if empty {
                if let Some(o) = config.as_object_mut() {
                    o.remove(key);
                }
            }
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(gcp, &c),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let what = format!("node pool {}", c.name);
        operation::finish_interrupted(gcp, req.ctx, &what).await?;
        if let Some(op) = found(
            gcp.container
                .delete_node_pool()
                .set_name(pool_path(gcp, &c.name))
                .send()
                .boxed()
                .await,
            "container.nodePools.delete",
            &what,
        )? {
            wait(gcp, req.ctx, &op, format!("delete of {what}")).await?;
        }
        Ok(())
    }
}

//! `cluster` on Google Cloud: a GKE Standard cluster with bmac's baseline.
//!
//! Create (`projects.locations.clusters.create`):
//! - VPC-native in the network's subnetwork (inputs `network`, `subnets`), pods and services
//!   from its named secondary ranges (input `secondary_ranges`), nodes in the input `zones`
//!   when the spec names them;
//! - private nodes always (`networkConfig.defaultEnablePrivateNodes`); the control plane's IP
//!   endpoints (`controlPlaneEndpointsConfig`, the current form of the older private-cluster
//!   and master-authorized-networks fields): public only when `endpoint.public`, authorized
//!   networks from `endpoint.public_cidrs`;
//! - the workload identity pool `PROJECT.svc.id.goog`, shielded nodes, application-layer
//!   Secrets encryption with the key of input `key`, the Compute Engine persistent disk CSI
//!   driver, the release channel `REGULAR` with the spec's version as the initial version,
//!   system-component logging (the control-plane components are `audit.logging`'s), Dataplane V2
//!   for `datapath = "cilium"`, Calico network policy for `network_policy = "calico"`, and the
//!   labels `bmac-cluster` / `bmac-step`;
//! - GKE requires a node pool at creation; like Terraform's `remove_default_node_pool`, the
//!   cluster is created with a one-node `default-pool` (shielded, `GKE_METADATA`) that is deleted
//!   once the cluster runs — the spec's pools are `node_pool` steps.
//!
//! Every change is a GKE operation, checkpointed and waited on ([`super::operation`]), so a
//! killed run resumes polling the same operation. `ALREADY_EXISTS` is adoption.
//!
//! Update in place, one `clusters.update` per field as GKE requires: master authorized networks,
//! private endpoint, the master version; network policy through `setNetworkPolicy` (with its
//! add-on first). Dataplane V2, name, region and project are replacements (`bmac_steps::kinds`).
//!
//! Outputs: `endpoint` (`https://` the public or private endpoint), `ca_data` (the cluster CA,
//! base64 PEM), `oidc_issuer`, `arn` (the cluster's path), `name` and `credentials` — a
//! [`CredentialSource::Gke`] the kube provider mints access tokens from
//! ([`GkeMinter`](super::GkeMinter)). Observe reports `PROVISIONING`, `RECONCILING` and
//! `STOPPING` as pending.

use crate::cloud::Boxed;
use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Inputs, Outputs, ProviderError};
use bmac_steps::config::{
    ClusterConfig, EndpointAccess, INPUT_KEY, INPUT_NETWORK, INPUT_SECONDARY_RANGES, INPUT_SUBNETS,
    INPUT_ZONES, OUTPUT_ARN, OUTPUT_CA_DATA, OUTPUT_CREDENTIALS, OUTPUT_ENDPOINT,
    OUTPUT_OIDC_ISSUER,
};
use bmac_steps::CredentialSource;
use google_cloud_container_v1::model::{
    cluster::Status as ClusterStatus, control_plane_endpoints_config::IPEndpointsConfig,
    database_encryption, logging_component_config, master_authorized_networks_config::CidrBlock,
    network_policy, release_channel, workload_metadata_config, AddonsConfig, Cluster as GkeCluster,
    ClusterUpdate, ControlPlaneEndpointsConfig, DatabaseEncryption, DatapathProvider,
    GcePersistentDiskCsiDriverConfig, IPAllocationPolicy, LoggingComponentConfig, LoggingConfig,
    MasterAuthorizedNetworksConfig, NetworkConfig, NetworkPolicy, NetworkPolicyConfig, NodeConfig,
    NodePool, ReleaseChannel, ShieldedInstanceConfig, ShieldedNodes, WorkloadIdentityConfig,
    WorkloadMetadataConfig,
};
use serde_json::json;

use super::error::{created, found, Context as _};
use super::operation::{self, Op};
use super::{labels, Clients, Handler};
use crate::cloud::{input_list, input_str};

/// The `cluster` handler.
pub struct Cluster;

/// The node pool GKE creates with a cluster, which bmac removes.
pub const DEFAULT_POOL: &str = "default-pool";

/// `projects/P/locations/L/clusters/NAME`.
pub(crate) fn path(gcp: &Clients, name: &str) -> String {
    format!("{}/clusters/{name}", gcp.location_path())
}

/// The cluster, if it exists.
///
/// Boxed: the message is 21 KiB, and moved by value through every caller's frame it costs a
/// debug build its stack.
pub(crate) async fn get(
    gcp: &Clients,
    name: &str,
) -> Result<Option<Box<GkeCluster>>, ProviderError> {
    found(
        gcp.container
            .get_cluster()
            .set_name(path(gcp, name))
            .send()
            .boxed()
            .await,
        "container.clusters.get",
        &format!("cluster {name}"),
    )
    .map(|c| c.map(Box::new))
}

fn ip_endpoints(c: &GkeCluster) -> Option<&IPEndpointsConfig> {
    c.control_plane_endpoints_config
        .as_ref()?
        .ip_endpoints_config
        .as_ref()
}

fn endpoint_of(c: &GkeCluster, access: &EndpointAccess) -> String {
    let ip = ip_endpoints(c);
    let pick = |f: fn(&IPEndpointsConfig) -> &str| ip.map(f).filter(|e| !e.is_empty());
    let host = match access.public {
        false => pick(|i| i.private_endpoint.as_str()),
        true => pick(|i| i.public_endpoint.as_str()),
    }
    .unwrap_or(c.endpoint.as_str());
    format!("https://{host}")
}

/// Whether the cluster's endpoint is reachable from the internet.
fn public(c: &GkeCluster) -> bool {
    ip_endpoints(c)
        .and_then(|i| i.enable_public_endpoint)
        .unwrap_or(true)
}

fn outputs(gcp: &Clients, c: &GkeCluster, access: &EndpointAccess) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ENDPOINT, endpoint_of(c, access))
        .with(
            OUTPUT_CA_DATA,
            c.master_auth
                .as_ref()
                .map(|m| m.cluster_ca_certificate.as_str())
                .unwrap_or_default(),
        )
        .with(
            OUTPUT_OIDC_ISSUER,
            format!("https://container.googleapis.com/v1/{}", path(gcp, &c.name)),
        )
        .with(OUTPUT_ARN, path(gcp, &c.name))
        .with("name", c.name.as_str())
        .with(
            OUTPUT_CREDENTIALS,
            CredentialSource::Gke {
                project: gcp.project.clone(),
                location: gcp.location.clone(),
                cluster: c.name.clone(),
            }
            .to_value(),
        )
}

fn authorized(e: &EndpointAccess) -> MasterAuthorizedNetworksConfig {
    MasterAuthorizedNetworksConfig::new()
        .set_enabled(!e.public_cidrs.is_empty())
        .set_cidr_blocks(e.public_cidrs.iter().map(|c| {
            CidrBlock::new()
                .set_cidr_block(c.clone())
                .set_display_name(format!("bmac {c}"))
        }))
}

/// The control plane's IP endpoints as `e` asks: public or not, and who may reach it.
fn endpoints(e: &EndpointAccess) -> ControlPlaneEndpointsConfig {
    ControlPlaneEndpointsConfig::new().set_ip_endpoints_config(
        IPEndpointsConfig::new()
            .set_enabled(true)
            .set_enable_public_endpoint(e.public)
            .set_authorized_networks_config(authorized(e)),
    )
}

fn authorized_cidrs(c: &GkeCluster) -> Vec<String> {
    ip_endpoints(c)
        .and_then(|i| i.authorized_networks_config.as_ref())
        .filter(|m| m.enabled)
        .map(|m| m.cidr_blocks.iter().map(|b| b.cidr_block.clone()).collect())
        .unwrap_or_default()
}

fn calico(c: &GkeCluster) -> bool {
    c.network_policy.as_ref().is_some_and(|p| p.enabled)
}

fn dataplane_v2(c: &GkeCluster) -> bool {
    c.network_config
        .as_ref()
        .is_some_and(|n| n.datapath_provider == DatapathProvider::AdvancedDatapath)
}

/// The create body (see the module docs).
fn body(
    gcp: &Clients,
    c: &ClusterConfig,
    inputs: &Inputs,
    step: &str,
) -> Result<Box<GkeCluster>, ProviderError> {
    let network = input_str(inputs, INPUT_NETWORK)?;
    let subnet = input_list(inputs, INPUT_SUBNETS)?
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::permanent("input `subnets` is empty"))?;
    let ranges = inputs
        .get(INPUT_SECONDARY_RANGES)
        .and_then(|v| v.value())
        .cloned()
        .unwrap_or_default();
    let range = |k: &str| {
        ranges
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or(k)
            .to_owned()
    };
    let zones = input_list(inputs, INPUT_ZONES).unwrap_or_default();
    let key = input_str(inputs, INPUT_KEY)?;
    let mut cluster = GkeCluster::new()
        .set_name(&c.name)
        .set_description(format!("bmac: cluster {}", c.name))
        .set_node_pools([NodePool::new()
            .set_name(DEFAULT_POOL)
            .set_initial_node_count(1)
            .set_config(
                NodeConfig::new()
                    .set_workload_metadata_config(
                        WorkloadMetadataConfig::new()
                            .set_mode(workload_metadata_config::Mode::GkeMetadata),
                    )
                    .set_shielded_instance_config(
                        ShieldedInstanceConfig::new()
                            .set_enable_secure_boot(true)
                            .set_enable_integrity_monitoring(true),
                    ),
            )])
        .set_network(network)
        .set_subnetwork(subnet)
        .set_locations(zones)
        .set_ip_allocation_policy(
            IPAllocationPolicy::new()
                .set_use_ip_aliases(true)
                .set_cluster_secondary_range_name(range("pods"))
                .set_services_secondary_range_name(range("services")),
        )
        .set_control_plane_endpoints_config(endpoints(&c.endpoint))
        .set_workload_identity_config(
            WorkloadIdentityConfig::new().set_workload_pool(format!("{}.svc.id.goog", gcp.project)),
        )
        .set_shielded_nodes(ShieldedNodes::new().set_enabled(true))
        .set_database_encryption(
            DatabaseEncryption::new()
                .set_state(database_encryption::State::Encrypted)
                .set_key_name(key),
        )
        .set_release_channel(ReleaseChannel::new().set_channel(release_channel::Channel::Regular))
        .set_logging_config(LoggingConfig::new().set_component_config(
            LoggingComponentConfig::new().set_enable_components([
                logging_component_config::Component::SystemComponents,
                logging_component_config::Component::Workloads,
            ]),
        ))
        .set_addons_config(
            AddonsConfig::new()
                .set_gce_persistent_disk_csi_driver_config(
                    GcePersistentDiskCsiDriverConfig::new().set_enabled(true),
                )
                .set_network_policy_config(
                    NetworkPolicyConfig::new().set_disabled(c.network_policy.is_none()),
                ),
        )
        .set_resource_labels(labels::of(&gcp.cluster, step));
    if let Some(v) = &c.version {
        cluster = cluster.set_initial_cluster_version(v);
    }
    let mut network_config = NetworkConfig::new().set_default_enable_private_nodes(true);
    if c.datapath.as_deref() == Some("cilium") {
        network_config = network_config.set_datapath_provider(DatapathProvider::AdvancedDatapath);
    }
    cluster = cluster.set_network_config(network_config);
    if c.network_policy.as_deref() == Some("calico") {
        cluster = cluster.set_network_policy(
            NetworkPolicy::new()
                .set_provider(network_policy::Provider::Calico)
                .set_enabled(true),
        );
    }
    Ok(Box::new(cluster))
}

/// Waits until the cluster is `RUNNING` (an operation on it may still be finishing).
async fn wait_running(
    gcp: &Clients,
    ctx: &StepContext,
    name: &str,
) -> Result<Box<GkeCluster>, ProviderError> {
    crate::cloud::wait::until(ctx, &format!("cluster {name}"), || async {
        use crate::cloud::wait::Poll;
        let c = get(gcp, name).boxed().await?.ok_or_else(|| {
            ProviderError::retryable(format!("cluster {name} is not visible yet"))
        })?;
        match c.status {
            ClusterStatus::Running => Ok(Poll::Done(c)),
            ClusterStatus::Error => Err(ProviderError::permanent(format!(
                "cluster {name} is in ERROR: {}",
                c.conditions
                    .iter()
                    .map(|k| k.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
            .with_code("CLUSTER_ERROR")),
            ref s => Ok(Poll::Waiting(s.name().unwrap_or("PROVISIONING").to_owned())),
        }
    })
    .await
}

/// Removes GKE's `default-pool`, if it is still there.
async fn remove_default_pool(
    gcp: &Clients,
    ctx: &StepContext,
    c: &GkeCluster,
) -> Result<(), ProviderError> {
    if !c.node_pools.iter().any(|p| p.name == DEFAULT_POOL) {
        return Ok(());
    }
    let name = format!("{}/nodePools/{DEFAULT_POOL}", path(gcp, &c.name));
    if let Some(op) = found(
        gcp.container
            .delete_node_pool()
            .set_name(&name)
            .send()
            .boxed()
            .await,
        "container.nodePools.delete",
        &format!("node pool {DEFAULT_POOL} of cluster {}", c.name),
    )? {
        Op::container(gcp, &op)
            .wait(
                gcp,
                ctx,
                &format!("removal of the default node pool of cluster {}", c.name),
            )
            .await?;
    }
    Ok(())
}

/// `1.30` matches `1.30.5-gke.1014001`: the spec pins a minor version, GKE runs a patch of it.
fn version_matches(want: &str, running: &str) -> bool {
    running == want
        || running
            .strip_prefix(want)
            .is_some_and(|r| r.starts_with('.') || r.starts_with('-'))
}

/// Creates the cluster and waits for its operation (`ALREADY_EXISTS` is adoption).
async fn create(
    gcp: &Clients,
    req: &ApplyRequest<'_>,
    c: &ClusterConfig,
) -> Result<(), ProviderError> {
    let cluster = body(gcp, c, req.inputs, req.step.id.as_str())?;
    let made = created(
        gcp.container
            .create_cluster()
            .set_parent(gcp.location_path())
            .set_cluster(*cluster)
            .send()
            .boxed()
            .await,
        "container.clusters.create",
        &format!("cluster {}", c.name),
    )?;
    if let super::error::Created::New(op) = made {
        Op::container(gcp, &op)
            .wait(gcp, req.ctx, &format!("create of cluster {}", c.name))
            .boxed()
            .await?;
    }
    Ok(())
}

/// One in-place change of a running cluster.
pub(crate) enum Change {
    /// A `clusters.update` (GKE takes one field per update).
    Update {
        /// What it does, for progress and errors.
        what: String,
        /// The update (boxed: the message is 14 KiB).
        update: Box<ClusterUpdate>,
    },
    /// `setNetworkPolicy`: Calico enforcement on or off.
    NetworkPolicy(bool),
}

impl Change {
    pub(crate) fn update(what: impl Into<String>, update: ClusterUpdate) -> Change {
        Change::Update {
            what: what.into(),
            update: Box::new(update),
        }
    }

    pub(crate) async fn run(
        self,
        gcp: &Clients,
        ctx: &StepContext,
        name: &str,
    ) -> Result<(), ProviderError> {
        match self {
            Change::Update { what, update } => {
                let op = gcp
                    .container
                    .update_cluster()
                    .set_name(path(gcp, name))
                    .set_update(*update)
                    .send()
                    .boxed()
                    .await
                    .on("container.clusters.update", &format!("cluster {name}"))?;
                Op::container(gcp, &op)
                    .wait(gcp, ctx, &format!("{what} of cluster {name}"))
                    .boxed()
                    .await
            }
            Change::NetworkPolicy(enabled) => {
                let op = gcp
                    .container
                    .set_network_policy()
                    .set_name(path(gcp, name))
                    .set_network_policy(
                        NetworkPolicy::new()
                            .set_provider(network_policy::Provider::Calico)
                            .set_enabled(enabled),
                    )
                    .send()
                    .boxed()
                    .await
                    .on(
                        "container.clusters.setNetworkPolicy",
                        &format!("cluster {name}"),
                    )?;
                Op::container(gcp, &op)
                    .wait(
                        gcp,
                        ctx,
                        &format!("network policy change of cluster {name}"),
                    )
                    .boxed()
                    .await
            }
        }
    }
}

/// What must change in place for `cluster` to be as `c` says, in the order GKE takes it.
fn changes(cluster: &GkeCluster, c: &ClusterConfig) -> Vec<Change> {
    let want = &c.endpoint;
    let mut out = Vec::new();
    if authorized_cidrs(cluster) != want.public_cidrs || public(cluster) != want.public {
        out.push(Change::update(
            "control-plane endpoints update",
            ClusterUpdate::new().set_desired_control_plane_endpoints_config(endpoints(want)),
        ));
    }
    if let Some(v) = &c.version {
        if !version_matches(v, &cluster.current_master_version) {
            out.push(Change::update(
                format!("upgrade to {v}"),
                ClusterUpdate::new().set_desired_master_version(v),
            ));
        }
    }
    let want_calico = c.network_policy.as_deref() == Some("calico");
    if calico(cluster) != want_calico {
        if want_calico {
            // The add-on must be on before enforcement is.
            out.push(Change::update(
                "network policy add-on",
                ClusterUpdate::new().set_desired_addons_config(
                    AddonsConfig::new()
                        .set_network_policy_config(NetworkPolicyConfig::new().set_disabled(false)),
                ),
            ));
        }
        out.push(Change::NetworkPolicy(want_calico));
    }
    out
}

#[async_trait]
impl Handler<Clients> for Cluster {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(8 * 60)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(45 * 60)
    }

    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        operation::finish_interrupted(gcp, req.ctx, &format!("cluster {}", c.name))
            .boxed()
            .await?;
        if get(gcp, &c.name).boxed().await?.is_none() {
            create(gcp, req, &c).boxed().await?;
        }
        let cluster = wait_running(gcp, req.ctx, &c.name).boxed().await?;
        remove_default_pool(gcp, req.ctx, &cluster).boxed().await?;
        let changes = changes(&cluster, &c);
        if changes.is_empty() {
            return Ok(outputs(gcp, &cluster, &c.endpoint));
        }
        for change in changes {
            change.run(gcp, req.ctx, &c.name).boxed().await?;
        }
        let cluster = get(gcp, &c.name).boxed().await?.unwrap_or(cluster);
        Ok(outputs(gcp, &cluster, &c.endpoint))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        let Some(cluster) = get(gcp, &c.name).await? else {
            return Ok(Observed::Absent);
        };
        match cluster.status {
            ClusterStatus::Provisioning | ClusterStatus::Reconciling | ClusterStatus::Stopping => {
                return Ok(Observed::Pending {
                    status: cluster.status.name().unwrap_or("PROVISIONING").to_owned(),
                })
            }
            _ => {}
        }
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["endpoint"]["public"] = json!(public(&cluster));
        config["endpoint"]["public_cidrs"] = json!(authorized_cidrs(&cluster));
        if let Some(v) = &c.version {
            if !version_matches(v, &cluster.current_master_version) {
                config["version"] = json!(cluster.current_master_version);
            }
        }
        config["datapath"] = if dataplane_v2(&cluster) {
            json!("cilium")
        } else {
            serde_json::Value::Null
        };
        config["network_policy"] = if calico(&cluster) {
            json!("calico")
        } else {
            serde_json::Value::Null
        };
        for key in ["datapath", "network_policy"] {
            if config[key].is_null() {
                if let Some(o) = config.as_object_mut() {
                    o.remove(key);
                }
            }
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(gcp, &cluster, &c.endpoint),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        operation::finish_interrupted(gcp, req.ctx, &format!("cluster {}", c.name)).await?;
        let Some(op) = found(
            gcp.container
                .delete_cluster()
                .set_name(path(gcp, &c.name))
                .send()
                .boxed()
                .await,
            "container.clusters.delete",
            &format!("cluster {}", c.name),
        )?
        else {
            return Ok(());
        };
        Op::container(gcp, &op)
            .wait(gcp, req.ctx, &format!("delete of cluster {}", c.name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::version_matches;

    #[test]
    fn a_minor_version_matches_its_patches() {
        assert!(version_matches("1.30", "1.30.5-gke.1014001"));
        assert!(version_matches("1.30.5-gke.1014001", "1.30.5-gke.1014001"));
        assert!(!version_matches("1.30", "1.31.0-gke.1"));
        assert!(!version_matches("1.3", "1.30.5-gke.1"));
    }
}

//! GKE (`container.googleapis.com/v1`): clusters, node pools and their operations, on the
//! `projects/{p}/locations/{l}/…` paths (the ones the client uses when `parent` / `name` is
//! set; the deprecated `projects/{p}/zones/{z}/…` forms are not served).
//!
//! Kept from the real API: every change is an `Operation` (`RUNNING`, then `DONE` after
//! `--delay-ms`); a cluster is `PROVISIONING` → `RUNNING`, `RECONCILING` while an update runs
//! (its new settings appear when the operation is done), `STOPPING` and then gone on delete;
//! a node pool is `PROVISIONING` / `RECONCILING` / `STOPPING` likewise; any change to a
//! cluster with an operation still running is `400 FAILED_PRECONDITION` "Cluster is running
//! incompatible operation …"; 409 `ALREADY_EXISTS` on a duplicate cluster or pool; 404 on
//! unknown ones; 400 for a cluster with neither node pools nor `initialNodeCount`, a location
//! that is neither a region nor a zone, an invalid project id or cluster name, an empty
//! update, and a change of `desiredDatapathProvider` (Dataplane V2 is chosen at creation). On
//! create GKE's own fields are filled: `endpoint` (`--cluster-endpoint`), the CA
//! (`--cluster-ca`), `selfLink`, `id`, versions, `status`, the `default-pool` made from
//! `initialNodeCount`, default logging / monitoring, `createTime`, `etag`.
//! Not kept: the zonal paths, upgrades actually rolling nodes, IP allocation checks,
//! Autopilot, cancel.

// GKE still fills and reads the fields its v1 API marks deprecated (`zone`,
// `initialNodeCount`, `nodeConfig`, `masterAuthorizedNetworksConfig`, …), and so do clients.
#![allow(deprecated)]

use std::collections::BTreeMap;

use google_cloud_container_v1::model::{
    cluster, node_pool, operation, Cluster, ClusterUpdate, CreateClusterRequest,
    CreateNodePoolRequest, DatapathProvider, ListClustersResponse, ListNodePoolsResponse,
    ListOperationsResponse, MasterAuth, NodePool, Operation, ServerConfig,
    SetLoggingServiceRequest, SetNetworkPolicyRequest, SetNodePoolAutoscalingRequest,
    SetNodePoolSizeRequest, UpdateClusterRequest, UpdateNodePoolRequest,
};
use serde_json::Value;

use crate::core::{
    merge_edit, new_id, now_rfc3339, ok, split_path, under, ApiError, Due, Reply, Request,
};
use crate::server::State;

/// The Kubernetes version clusters get when none is asked for.
pub const DEFAULT_VERSION: &str = "1.33.5-gke.1201000";
/// The endpoint clusters report without `--cluster-endpoint` (a documentation address).
const DOC_ENDPOINT: &str = "192.0.2.10";

/// A change to one node pool.
type Change = Box<dyn FnOnce(&mut NodePool) -> Result<(), ApiError>>;

/// Clusters by full name and operations by full name.
#[derive(Debug, Default)]
pub struct Store {
    clusters: BTreeMap<String, Cluster>,
    ops: BTreeMap<String, Op>,
}

#[derive(Debug)]
struct Op {
    op: Operation,
    cluster: String,
    due: Due,
    effect: Effect,
}

#[derive(Debug)]
enum Effect {
    /// The cluster as it is when the operation is done.
    Replace(Box<Cluster>),
    /// The cluster is gone.
    Remove,
}

impl Store {
    /// Completes the operations that are due.
    fn advance(&mut self) {
        for op in self.ops.values_mut() {
            if op.op.status == operation::Status::Done || !op.due.passed() {
                continue;
            }
            op.op.status = operation::Status::Done;
            op.op.end_time = now_rfc3339();
            match std::mem::replace(&mut op.effect, Effect::Remove) {
                Effect::Replace(c) => {
                    self.clusters.insert(op.cluster.clone(), *c);
                }
                Effect::Remove => {
                    self.clusters.remove(&op.cluster);
                }
            }
        }
    }

    fn running_op(&self, cluster: &str) -> Option<&Op> {
        self.ops
            .values()
            .find(|o| o.cluster == cluster && o.op.status != operation::Status::Done)
    }

    fn cluster(&self, name: &str) -> Result<&Cluster, ApiError> {
        self.clusters
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("Not found: {name}.")))
    }
}

fn valid_location(l: &str) -> bool {
    // A region is `area-direction<digit>` (us-central1), a zone adds `-<letter>`.
    let parts: Vec<&str> = l.split('-').collect();
    let region = |p: &[&str]| {
        p.len() == 2
            && p[0].chars().all(|c| c.is_ascii_lowercase())
            && !p[0].is_empty()
            && p[1].chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && p[1].chars().last().is_some_and(|c| c.is_ascii_digit())
            && p[1].chars().all(|c| c.is_ascii_alphanumeric())
    };
    match parts.len() {
        2 => region(&parts),
        3 => {
            region(&parts[..2])
                && parts[2].len() == 1
                && parts[2].as_bytes()[0].is_ascii_lowercase()
        }
        _ => false,
    }
}

fn valid_name(n: &str) -> bool {
    crate::core::valid_id(n, 1, 40)
}

/// Serves a request on the container listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    st.container.advance();
    let (seg, verb) = split_path(&req.path, "v1")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 4 || seg[0] != "projects" || seg[2] != "locations" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let (project, location) = (seg[1], seg[3]);
    st.check_project(project)?;
    if !valid_location(location) {
        return Err(ApiError::invalid(format!(
            "Location \"{location}\" is not a valid region or zone."
        )));
    }
    let parent = format!("projects/{project}/locations/{location}");
    let m = req.method.as_str();
    match (&seg[4..], verb, m) {
        (["serverConfig"], None, "GET") => ok(&server_config()),
        (["clusters"], None, "GET") => {
            let mut resp = ListClustersResponse::default();
            resp.clusters = under(&st.container.clusters, &format!("{parent}/clusters/"));
            ok(&resp)
        }
        (["clusters"], None, "POST") => create_cluster(st, &parent, req),
        (["clusters", c], None, "GET") => {
            ok(st.container.cluster(&format!("{parent}/clusters/{c}"))?)
        }
        (["clusters", c], None, "PUT") => {
            let r: UpdateClusterRequest = req.json()?;
            let update = r.update.unwrap_or_default();
            let name = format!("{parent}/clusters/{c}");
            mutate(st, &name, operation::Type::UpdateCluster, |c| {
                update_cluster(c, update)
            })
        }
        (["clusters", c], None, "DELETE") => delete_cluster(st, &format!("{parent}/clusters/{c}")),
        (["clusters", c], Some("setNetworkPolicy"), "POST") => {
            let r: SetNetworkPolicyRequest = req.json()?;
            mutate(
                st,
                &format!("{parent}/clusters/{c}"),
                operation::Type::UpdateCluster,
                |c| {
                    c.network_policy = r.network_policy;
                    Ok(())
                },
            )
        }
        (["clusters", c], Some("setLogging"), "POST") => {
            let r: SetLoggingServiceRequest = req.json()?;
            mutate(
                st,
                &format!("{parent}/clusters/{c}"),
                operation::Type::UpdateCluster,
                |c| {
                    c.logging_service = r.logging_service;
                    Ok(())
                },
            )
        }
        (["clusters", c, "nodePools"], None, "GET") => {
            let mut resp = ListNodePoolsResponse::default();
            resp.node_pools = st
                .container
                .cluster(&format!("{parent}/clusters/{c}"))?
                .node_pools
                .clone();
            ok(&resp)
        }
        (["clusters", c, "nodePools"], None, "POST") => {
            let r: CreateNodePoolRequest = req.json()?;
            create_node_pool(st, &format!("{parent}/clusters/{c}"), r)
        }
        (["clusters", c, "nodePools", np], verb, m) => {
            let cluster = format!("{parent}/clusters/{c}");
            let (kind, change): (_, Option<Change>) = match (verb, m) {
                (None, "GET") => {
                    let pool = st
                        .container
                        .cluster(&cluster)?
                        .node_pools
                        .iter()
                        .find(|p| p.name == *np);
                    return pool.map_or_else(
                        || {
                            Err(ApiError::not_found(format!(
                                "Not found: {cluster}/nodePools/{np}."
                            )))
                        },
                        ok,
                    );
                }
                (None, "PUT") => {
                    let r: UpdateNodePoolRequest = req.json()?;
                    (
                        operation::Type::UpgradeNodes,
                        Some(Box::new(move |p| update_pool(p, r))),
                    )
                }
                (Some("setAutoscaling"), "POST") => {
                    let r: SetNodePoolAutoscalingRequest = req.json()?;
                    let set = move |p: &mut NodePool| {
                        p.autoscaling = r.autoscaling;
                        Ok(())
                    };
                    (operation::Type::UpdateCluster, Some(Box::new(set)))
                }
                (Some("setSize"), "POST") => {
                    let r: SetNodePoolSizeRequest = req.json()?;
                    if r.node_count < 0 {
                        return Err(ApiError::invalid("node_count must be non-negative."));
                    }
                    let set = move |p: &mut NodePool| {
                        p.initial_node_count = r.node_count;
                        Ok(())
                    };
                    (operation::Type::SetNodePoolSize, Some(Box::new(set)))
                }
                (None, "DELETE") => (operation::Type::DeleteNodePool, None),
                _ => {
                    return Err(ApiError::not_found(format!(
                        "no such method {m} {}",
                        req.path
                    )))
                }
            };
            pool_mutation(st, &cluster, np, kind, change)
        }
        (["operations"], None, "GET") => {
            let mut resp = ListOperationsResponse::default();
            resp.operations = st
                .container
                .ops
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{parent}/operations/")))
                .map(|(_, o)| o.op.clone())
                .collect();
            ok(&resp)
        }
        (["operations", id], None, "GET") => {
            let name = format!("{parent}/operations/{id}");
            let op = st
                .container
                .ops
                .get(&name)
                .ok_or_else(|| ApiError::not_found(format!("Not found: {name}.")))?;
            ok(&op.op)
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

fn server_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.default_cluster_version = DEFAULT_VERSION.into();
    c.valid_master_versions = vec![DEFAULT_VERSION.into(), "1.32.9-gke.1108000".into()];
    c.valid_node_versions = c.valid_master_versions.clone();
    c.default_image_type = "COS_CONTAINERD".into();
    c.valid_image_types = vec!["COS_CONTAINERD".into(), "UBUNTU_CONTAINERD".into()];
    c
}

/// Starts an operation on `cluster` that makes it `after` (or removes it) when done.
fn start_op(st: &mut State, cluster: &str, kind: operation::Type, effect: Effect) -> Operation {
    let (parent, _) = cluster.split_once("/clusters/").unwrap_or((cluster, ""));
    let location = parent.rsplit('/').next().unwrap_or_default().to_string();
    let id = format!("operation-{}", new_id());
    let mut op = Operation::default();
    op.name = id.clone();
    op.zone = location.clone();
    op.location = location;
    op.operation_type = kind;
    op.status = operation::Status::Running;
    op.self_link = format!("https://container.googleapis.com/v1/{parent}/operations/{id}");
    op.target_link = format!("https://container.googleapis.com/v1/{cluster}");
    op.start_time = now_rfc3339();
    st.container.ops.insert(
        format!("{parent}/operations/{id}"),
        Op {
            op: op.clone(),
            cluster: cluster.to_string(),
            due: Due::after(st.config.delay),
            effect,
        },
    );
    op
}

/// Dataplane V2 enforces network policy itself: GKE refuses Calico's on top of it.
fn check_network_policy(c: &Cluster) -> Result<(), ApiError> {
    let advanced = c
        .network_config
        .as_ref()
        .is_some_and(|n| n.datapath_provider == DatapathProvider::AdvancedDatapath);
    if advanced && c.network_policy.as_ref().is_some_and(|p| p.enabled) {
        return Err(ApiError::invalid(
            "Network policy enforcement cannot be enabled on a cluster with Dataplane V2, which enforces network policy itself.",
        ));
    }
    Ok(())
}

fn refuse_if_busy(st: &State, cluster: &str) -> Result<(), ApiError> {
    match st.container.running_op(cluster) {
        Some(op) => Err(ApiError::failed_precondition(format!(
            "Cluster is running incompatible operation {}.",
            op.op.name
        ))),
        None => Ok(()),
    }
}

fn create_cluster(st: &mut State, parent: &str, req: &Request) -> Reply {
    let r: CreateClusterRequest = req.json()?;
    let mut c = r
        .cluster
        .ok_or_else(|| ApiError::invalid("Cluster is required."))?;
    if !valid_name(&c.name) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field \"cluster.name\": \"{}\". Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,38}}[a-z0-9])?)'",
            c.name
        )));
    }
    if c.node_pools.is_empty()
        && c.initial_node_count <= 0
        && c.autopilot.as_ref().is_none_or(|a| !a.enabled)
    {
        return Err(ApiError::invalid(
            "Cluster.initial_node_count must be greater than zero.",
        ));
    }
    if !c.node_pools.is_empty() && c.initial_node_count > 0 {
        return Err(ApiError::invalid(
            "Cluster.initial_node_count and Cluster.node_pools are mutually exclusive.",
        ));
    }
    let name = format!("{parent}/clusters/{}", c.name);
    if st.container.clusters.contains_key(&name) {
        return Err(ApiError::already_exists(format!("Already exists: {name}.")));
    }
    let location = parent.rsplit('/').next().unwrap_or_default().to_string();
    let project = parent.split('/').nth(1).unwrap_or_default().to_string();
    let version = match c.initial_cluster_version.as_str() {
        "" | "latest" | "-" => DEFAULT_VERSION.to_string(),
        v => v.to_string(),
    };
    c.id = new_id() + &new_id()[..8];
    c.location = location.clone();
    c.zone = location;
    c.self_link = format!("https://container.googleapis.com/v1/{name}");
    c.create_time = now_rfc3339();
    c.current_master_version = version.clone();
    c.current_node_version = version.clone();
    c.endpoint = st
        .config
        .cluster_endpoint
        .clone()
        .unwrap_or_else(|| DOC_ENDPOINT.to_string());
    let mut auth = c.master_auth.take().unwrap_or_else(MasterAuth::default);
    auth.cluster_ca_certificate = st
        .config
        .cluster_ca
        .clone()
        .unwrap_or_else(|| crate::server::base64(DOC_CA.as_bytes()));
    c.master_auth = Some(auth);
    if c.network.is_empty() {
        c.network = "default".into();
    }
    if c.subnetwork.is_empty() {
        c.subnetwork = "default".into();
    }
    if c.logging_service.is_empty() {
        c.logging_service = "logging.googleapis.com/kubernetes".into();
    }
    if c.monitoring_service.is_empty() {
        c.monitoring_service = "monitoring.googleapis.com/kubernetes".into();
    }
    if c.cluster_ipv4_cidr.is_empty() {
        c.cluster_ipv4_cidr = "10.4.0.0/14".into();
    }
    if c.services_ipv4_cidr.is_empty() {
        c.services_ipv4_cidr = "34.118.224.0/20".into();
    }
    let mut net = c.network_config.take().unwrap_or_default();
    // `network` and `subnetwork` take a bare name or a resource path; networkConfig reports
    // the path.
    if net.network.is_empty() {
        net.network = if c.network.starts_with("projects/") {
            c.network.clone()
        } else {
            format!("projects/{project}/global/networks/{}", c.network)
        };
    }
    if net.subnetwork.is_empty() {
        net.subnetwork = if c.subnetwork.starts_with("projects/") {
            c.subnetwork.clone()
        } else {
            format!(
                "projects/{project}/regions/{}/subnetworks/{}",
                region_of(&c.location),
                c.subnetwork
            )
        };
    }
    if net.datapath_provider == DatapathProvider::Unspecified {
        net.datapath_provider = DatapathProvider::LegacyDatapath;
    }
    c.network_config = Some(net);
    fill_endpoints(&mut c);
    check_network_policy(&c)?;
    if c.initial_node_count > 0 {
        let mut pool = NodePool::default();
        pool.name = "default-pool".into();
        pool.initial_node_count = c.initial_node_count;
        pool.config = c.node_config.clone();
        c.node_pools.push(pool);
        c.initial_node_count = 0;
    }
    for pool in &mut c.node_pools {
        fill_pool(pool, &name, &version)?;
    }
    c.etag = new_id();
    let mut done = c.clone();
    done.status = cluster::Status::Running;
    for p in &mut done.node_pools {
        p.status = node_pool::Status::Running;
    }
    c.status = cluster::Status::Provisioning;
    st.container.clusters.insert(name.clone(), c);
    ok(&start_op(
        st,
        &name,
        operation::Type::CreateCluster,
        Effect::Replace(Box::new(done)),
    ))
}

/// GKE's two views of the control plane's endpoints kept in step, as the real API does: the
/// current `controlPlaneEndpointsConfig.ipEndpointsConfig` (its `publicEndpoint` and
/// `privateEndpoint` filled from the cluster's endpoint) and the older
/// `masterAuthorizedNetworksConfig` / `privateClusterConfig.enablePrivateEndpoint`. Whichever
/// the request set wins; a cluster given neither gets a public endpoint open to all.
fn fill_endpoints(c: &mut Cluster) {
    use google_cloud_container_v1::model::control_plane_endpoints_config::IPEndpointsConfig;
    let mut cp = c.control_plane_endpoints_config.take().unwrap_or_default();
    let mut ip = cp.ip_endpoints_config.take().unwrap_or_else(|| {
        let mut ip = IPEndpointsConfig::default();
        ip.authorized_networks_config = c.master_authorized_networks_config.clone();
        ip.enable_public_endpoint = c
            .private_cluster_config
            .as_ref()
            .map(|p| !p.enable_private_endpoint);
        ip
    });
    ip.enabled.get_or_insert(true);
    ip.enable_public_endpoint.get_or_insert(true);
    ip.private_endpoint = c.endpoint.clone();
    ip.public_endpoint = if ip.enable_public_endpoint == Some(true) {
        c.endpoint.clone()
    } else {
        String::new()
    };
    c.master_authorized_networks_config = ip.authorized_networks_config.clone();
    let mut private = c.private_cluster_config.take().unwrap_or_default();
    private.enable_private_endpoint = ip.enable_public_endpoint == Some(false);
    private.private_endpoint = ip.private_endpoint.clone();
    private.public_endpoint = ip.public_endpoint.clone();
    c.private_cluster_config = Some(private);
    cp.ip_endpoints_config = Some(ip);
    c.control_plane_endpoints_config = Some(cp);
}

fn region_of(location: &str) -> &str {
    match location.rsplit_once('-') {
        Some((r, z)) if z.len() == 1 => r,
        _ => location,
    }
}

fn fill_pool(pool: &mut NodePool, cluster: &str, version: &str) -> Result<(), ApiError> {
    if !valid_name(&pool.name) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field \"node_pool.name\": \"{}\".",
            pool.name
        )));
    }
    if pool.initial_node_count < 0 {
        return Err(ApiError::invalid(
            "node_pool.initial_node_count must be non-negative.",
        ));
    }
    if let Some(a) = &pool.autoscaling {
        if a.enabled && a.min_node_count > a.max_node_count {
            return Err(ApiError::invalid(
                "Autoscaling: min_node_count must not be greater than max_node_count.",
            ));
        }
    }
    pool.self_link = format!(
        "https://container.googleapis.com/v1/{cluster}/nodePools/{}",
        pool.name
    );
    if pool.version.is_empty() {
        pool.version = version.to_string();
    }
    let config = pool.config.get_or_insert_with(Default::default);
    if config.machine_type.is_empty() {
        config.machine_type = "e2-medium".into();
    }
    if config.disk_size_gb == 0 {
        config.disk_size_gb = 100;
    }
    if config.image_type.is_empty() {
        config.image_type = "COS_CONTAINERD".into();
    }
    pool.etag = new_id();
    pool.status = node_pool::Status::Provisioning;
    Ok(())
}

/// A change to a cluster through an operation: the cluster is `RECONCILING` until it is done.
fn mutate(
    st: &mut State,
    name: &str,
    kind: operation::Type,
    change: impl FnOnce(&mut Cluster) -> Result<(), ApiError>,
) -> Reply {
    let current = st.container.cluster(name)?.clone();
    refuse_if_busy(st, name)?;
    let mut after = current;
    change(&mut after)?;
    after.status = cluster::Status::Running;
    after.etag = new_id();
    if let Some(c) = st.container.clusters.get_mut(name) {
        c.status = cluster::Status::Reconciling;
    }
    ok(&start_op(st, name, kind, Effect::Replace(Box::new(after))))
}

fn update_cluster(c: &mut Cluster, u: ClusterUpdate) -> Result<(), ApiError> {
    let mut rest = u.clone();
    rest.etag.clear();
    if rest == ClusterUpdate::default() {
        return Err(ApiError::invalid("Must specify a field to update."));
    }
    if !u.etag.is_empty() && u.etag != c.etag {
        return Err(ApiError::aborted(
            "Cluster etag does not match. Retry the update with the current etag.",
        ));
    }
    let current_dp = c
        .network_config
        .as_ref()
        .map(|n| n.datapath_provider.clone())
        .unwrap_or_default();
    if u.desired_datapath_provider != DatapathProvider::Unspecified
        && u.desired_datapath_provider != current_dp
    {
        return Err(ApiError::invalid(
            "Updating the datapath provider of an existing cluster is not supported; Dataplane V2 can only be enabled at cluster creation.",
        ));
    }
    // The `desired_*` fields that replace the cluster's field of the same meaning.
    macro_rules! replace {
        ($($from:ident => $to:ident),* $(,)?) => {
            $(if let Some(v) = u.$from {
                c.$to = Some(v);
            })*
        };
    }
    // Endpoint changes in either form: the one given replaces its view, the other follows.
    if let Some(mut cp) = u.desired_control_plane_endpoints_config.clone() {
        if let (Some(ip), Some(old)) = (
            cp.ip_endpoints_config.as_mut(),
            c.control_plane_endpoints_config
                .as_ref()
                .and_then(|o| o.ip_endpoints_config.as_ref()),
        ) {
            if ip.authorized_networks_config.is_none() {
                ip.authorized_networks_config = old.authorized_networks_config.clone();
            }
            if ip.enable_public_endpoint.is_none() {
                ip.enable_public_endpoint = old.enable_public_endpoint;
            }
        }
        c.control_plane_endpoints_config = Some(cp);
        c.master_authorized_networks_config = None;
        c.private_cluster_config = None;
        fill_endpoints(c);
    } else if u.desired_master_authorized_networks_config.is_some()
        || u.desired_private_cluster_config.is_some()
    {
        if let Some(m) = u.desired_master_authorized_networks_config.clone() {
            c.master_authorized_networks_config = Some(m);
        }
        if let Some(p) = u.desired_private_cluster_config.clone() {
            c.private_cluster_config = Some(p);
        }
        c.control_plane_endpoints_config = None;
        fill_endpoints(c);
    }
    replace!(
        desired_logging_config => logging_config,
        desired_monitoring_config => monitoring_config,
        desired_release_channel => release_channel,
        desired_workload_identity_config => workload_identity_config,
        desired_shielded_nodes => shielded_nodes,
        desired_database_encryption => database_encryption,
        desired_addons_config => addons_config,
        desired_vertical_pod_autoscaling => vertical_pod_autoscaling,
    );
    if !u.desired_logging_service.is_empty() {
        c.logging_service = u.desired_logging_service;
    }
    if !u.desired_monitoring_service.is_empty() {
        c.monitoring_service = u.desired_monitoring_service;
    }
    if !u.desired_master_version.is_empty() {
        c.current_master_version = match u.desired_master_version.as_str() {
            "latest" | "-" => DEFAULT_VERSION.to_string(),
            v => v.to_string(),
        };
    }
    if let Some(a) = u.desired_node_pool_autoscaling {
        let pool = if u.desired_node_pool_id.is_empty() {
            if c.node_pools.len() != 1 {
                return Err(ApiError::invalid(
                    "desired_node_pool_id must be specified when the cluster has more than one node pool.",
                ));
            }
            &mut c.node_pools[0]
        } else {
            let id = &u.desired_node_pool_id;
            c.node_pools
                .iter_mut()
                .find(|p| p.name == *id)
                .ok_or_else(|| ApiError::not_found(format!("Node pool \"{id}\" not found.")))?
        };
        pool.autoscaling = Some(a);
    }
    if !u.desired_node_version.is_empty() {
        let v = match u.desired_node_version.as_str() {
            "latest" | "-" => c.current_master_version.clone(),
            v => v.to_string(),
        };
        for p in &mut c.node_pools {
            if u.desired_node_pool_id.is_empty() || p.name == u.desired_node_pool_id {
                p.version = v.clone();
            }
        }
    }
    Ok(())
}

fn delete_cluster(st: &mut State, name: &str) -> Reply {
    st.container.cluster(name)?;
    refuse_if_busy(st, name)?;
    if let Some(c) = st.container.clusters.get_mut(name) {
        c.status = cluster::Status::Stopping;
    }
    ok(&start_op(
        st,
        name,
        operation::Type::DeleteCluster,
        Effect::Remove,
    ))
}

fn create_node_pool(st: &mut State, cluster: &str, r: CreateNodePoolRequest) -> Reply {
    let mut pool = r
        .node_pool
        .ok_or_else(|| ApiError::invalid("Node pool is required."))?;
    let current = st.container.cluster(cluster)?.clone();
    if current.node_pools.iter().any(|p| p.name == pool.name) {
        return Err(ApiError::already_exists(format!(
            "Already exists: {cluster}/nodePools/{}.",
            pool.name
        )));
    }
    refuse_if_busy(st, cluster)?;
    fill_pool(&mut pool, cluster, &current.current_master_version)?;
    let mut after = current;
    let mut done = pool.clone();
    done.status = node_pool::Status::Running;
    after.node_pools.push(done);
    after.status = cluster::Status::Running;
    if let Some(c) = st.container.clusters.get_mut(cluster) {
        c.node_pools.push(pool);
        c.status = cluster::Status::Reconciling;
    }
    ok(&start_op(
        st,
        cluster,
        operation::Type::CreateNodePool,
        Effect::Replace(Box::new(after)),
    ))
}

/// A change to one node pool through an operation (`change` is `None` for a delete): the
/// pool is `RECONCILING` (`STOPPING`) until it is done.
fn pool_mutation(
    st: &mut State,
    cluster: &str,
    pool: &str,
    kind: operation::Type,
    change: Option<Change>,
) -> Reply {
    let current = st.container.cluster(cluster)?.clone();
    if !current.node_pools.iter().any(|p| p.name == pool) {
        return Err(ApiError::not_found(format!(
            "Not found: {cluster}/nodePools/{pool}."
        )));
    }
    refuse_if_busy(st, cluster)?;
    let mut after = current;
    let meanwhile = match change {
        Some(change) => {
            if let Some(p) = after.node_pools.iter_mut().find(|p| p.name == pool) {
                change(p)?;
                p.status = node_pool::Status::Running;
                p.etag = new_id();
            }
            node_pool::Status::Reconciling
        }
        None => {
            after.node_pools.retain(|p| p.name != pool);
            node_pool::Status::Stopping
        }
    };
    after.status = cluster::Status::Running;
    if let Some(c) = st.container.clusters.get_mut(cluster) {
        c.status = cluster::Status::Reconciling;
        if let Some(p) = c.node_pools.iter_mut().find(|p| p.name == pool) {
            p.status = meanwhile;
        }
    }
    ok(&start_op(
        st,
        cluster,
        kind,
        Effect::Replace(Box::new(after)),
    ))
}

fn update_pool(p: &mut NodePool, r: UpdateNodePoolRequest) -> Result<(), ApiError> {
    if !r.etag.is_empty() && r.etag != p.etag {
        return Err(ApiError::aborted("Node pool etag does not match."));
    }
    if !r.node_version.is_empty() {
        p.version = r.node_version.clone();
    }
    if !r.locations.is_empty() {
        p.locations = r.locations.clone();
    }
    let config = p.config.get_or_insert_with(Default::default);
    if let Some(l) = r.labels {
        config.labels = l.labels;
    }
    if let Some(t) = r.taints {
        config.taints = t.taints;
    }
    if let Some(l) = r.resource_labels {
        config.resource_labels = l.labels;
    }
    if let Some(w) = r.workload_metadata_config {
        config.workload_metadata_config = Some(w);
    }
    if let Some(c) = r.containerd_config {
        if c.registry_hosts.len() > 25 {
            return Err(ApiError::invalid("At most 25 registry_hosts are allowed."));
        }
        config.containerd_config = Some(c);
    }
    if !r.image_type.is_empty() {
        config.image_type = r.image_type;
    }
    if !r.machine_type.is_empty() {
        config.machine_type = r.machine_type;
    }
    if !r.disk_type.is_empty() {
        config.disk_type = r.disk_type;
    }
    if r.disk_size_gb > 0 {
        config.disk_size_gb = r.disk_size_gb as i32;
    }
    Ok(())
}

/// A hand change (drift) to a cluster (`projects/…/clusters/C`) or a node pool
/// (`…/clusters/C/nodePools/P`); it also lands in the result of an operation in flight.
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    st.container.advance();
    let (cluster, pool) = match name.split_once("/nodePools/") {
        Some((c, p)) => (c, Some(p)),
        None => (name, None),
    };
    let apply = |c: &mut Cluster| match pool {
        None => merge_edit(c, patch),
        Some(p) => match c.node_pools.iter_mut().find(|x| x.name == p) {
            Some(x) => merge_edit(x, patch),
            None => Err(ApiError::not_found(format!("Not found: {name}."))),
        },
    };
    let c = st
        .container
        .clusters
        .get_mut(cluster)
        .ok_or_else(|| ApiError::not_found(format!("Not found: {name}.")))?;
    let v = apply(c)?;
    for op in st.container.ops.values_mut() {
        if let (true, Effect::Replace(after)) = (op.cluster == cluster, &mut op.effect) {
            if op.op.status != operation::Status::Done {
                apply(after)?;
            }
        }
    }
    Ok(v)
}

/// A syntactically valid PEM the clusters report without `--cluster-ca`.
const DOC_CA: &str = "-----BEGIN CERTIFICATE-----\nTUlJQnRlc3QtY2EtYm1hYy1nY3AtdGVzdC1zZXJ2ZXI=\n-----END CERTIFICATE-----\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_regions_or_zones() {
        assert!(valid_location("us-central1"));
        assert!(valid_location("europe-west4-b"));
        assert!(!valid_location("us-central"));
        assert!(!valid_location("mars"));
        assert!(!valid_location("us-central1-bb"));
        assert_eq!(region_of("europe-west4-b"), "europe-west4");
    }

    #[test]
    fn empty_update_is_refused() {
        let mut c = Cluster::default();
        assert!(update_cluster(&mut c, ClusterUpdate::default()).is_err());
    }
}

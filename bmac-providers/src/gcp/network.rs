//! `network` on Google Cloud: the VPC-native network a GKE cluster and its nodes live in.
//!
//! Created (no `existing`): a custom-mode VPC network `bmac-<cluster>` (regional routing, no
//! auto subnetworks), one subnetwork `bmac-<cluster>-nodes` in the cluster's region with the
//! nodes' primary range (`cidr`), two secondary ranges named `pods` and `services`, and Private
//! Google Access (private nodes reach Google APIs without public addresses); with `nat =
//! "single"`, a Cloud Router `bmac-<cluster>-nat` carrying one Cloud NAT for every range of the
//! region's subnetworks, so private nodes can pull images from the internet. Each insert is a
//! Compute Engine operation, checkpointed and waited on; `alreadyExists` is adoption (the names
//! are derived from the cluster, so a rebuilt state finds them again).
//!
//! Existing: the network and subnetwork are only read — the subnetwork must be in the cluster's
//! region, in that network, and carry both named secondary ranges — and never changed or
//! deleted.
//!
//! Update in place: a created subnetwork's ranges cannot change (`cidr`, the ranges are
//! replacements in the plan, as a subnet's range is on EKS); turning NAT on or off adds or
//! removes the router. Drift: observe reads the ranges and the NAT back.
//!
//! Outputs: `vpc_id` (the network's path `projects/P/global/networks/N`), `subnets` and
//! `private_subnets` (the subnetwork's path, in a list), `secondary_ranges`
//! (`{"pods": NAME, "services": NAME}`) and `zones` (the spec's, possibly empty).
//!
//! Destroy (created only), in reverse: router, subnetwork, network — each waited on.

use crate::cloud::Boxed;
use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{
    NetworkConfig, SecondaryRanges, OUTPUT_PRIVATE_SUBNETS, OUTPUT_SECONDARY_RANGES,
    OUTPUT_SUBNETS, OUTPUT_VPC_ID, OUTPUT_ZONES,
};
use google_cloud_compute_v1::model::{
    network_routing_config::RoutingMode, router_nat::NatIpAllocateOption,
    router_nat::SourceSubnetworkIpRangesToNat, Network as GNetwork, NetworkRoutingConfig, Router,
    RouterNat, Subnetwork, SubnetworkSecondaryRange,
};
use serde_json::json;

use super::error::{created, found, Created};
use super::operation::{self, Op};
use super::{Clients, Handler};

/// The `network` handler.
pub struct Network;

/// The names bmac gives what it creates for `cluster`.
struct Names {
    network: String,
    subnetwork: String,
    router: String,
}

fn names(cluster: &str) -> Names {
    Names {
        network: format!("bmac-{cluster}"),
        subnetwork: format!("bmac-{cluster}-nodes"),
        router: format!("bmac-{cluster}-nat"),
    }
}

const PODS: &str = "pods";
const SERVICES: &str = "services";

/// The last segment of a resource path or URL (`…/subnetworks/nodes` → `nodes`).
pub(crate) fn last(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What the step refers to: created names, or the existing network's.
fn wanted(gcp: &Clients, c: &NetworkConfig) -> (String, String) {
    match &c.existing {
        Some(e) => (last(&e.vpc_id).to_owned(), last(&e.subnetwork).to_owned()),
        None => {
            let n = names(&gcp.cluster);
            (n.network, n.subnetwork)
        }
    }
}

/// The project that holds a network named by path (a Shared VPC host) or by name (ours).
fn project_of<'a>(gcp: &'a Clients, path: &'a str) -> &'a str {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .iter()
        .position(|p| *p == "projects")
        .and_then(|i| parts.get(i + 1))
        .copied()
        .unwrap_or(&gcp.project)
}

async fn get_network(
    gcp: &Clients,
    project: &str,
    name: &str,
) -> Result<Option<GNetwork>, ProviderError> {
    found(
        gcp.networks
            .get()
            .set_project(project)
            .set_network(name)
            .send()
            .boxed()
            .await,
        "compute.networks.get",
        &format!("network {name}"),
    )
}

async fn get_subnetwork(
    gcp: &Clients,
    project: &str,
    name: &str,
) -> Result<Option<Subnetwork>, ProviderError> {
    found(
        gcp.subnetworks
            .get()
            .set_project(project)
            .set_region(&gcp.region)
            .set_subnetwork(name)
            .send()
            .boxed()
            .await,
        "compute.subnetworks.get",
        &format!("subnetwork {name}"),
    )
}

async fn get_router(gcp: &Clients, name: &str) -> Result<Option<Router>, ProviderError> {
    found(
        gcp.routers
            .get()
            .set_project(&gcp.project)
            .set_region(&gcp.region)
            .set_router(name)
            .send()
            .boxed()
            .await,
        "compute.routers.get",
        &format!("router {name}"),
    )
}

fn outputs(
    gcp: &Clients,
    c: &NetworkConfig,
    project: &str,
    network: &str,
    subnetwork: &str,
) -> Outputs {
    let subnet = format!(
        "projects/{project}/regions/{}/subnetworks/{subnetwork}",
        gcp.region
    );
    let ranges = match c.secondary.as_ref() {
        Some(r) if !r.pods_range.is_empty() => {
            json!({"pods": r.pods_range, "services": r.services_range})
        }
        _ => json!({"pods": PODS, "services": SERVICES}),
    };
    Outputs::new()
        .with(
            OUTPUT_VPC_ID,
            format!("projects/{project}/global/networks/{network}"),
        )
        .with(OUTPUT_SUBNETS, json!([subnet.clone()]))
        .with(OUTPUT_PRIVATE_SUBNETS, json!([subnet]))
        .with(OUTPUT_SECONDARY_RANGES, ranges)
        .with(OUTPUT_ZONES, json!(c.zones))
}

/// Waits on a Compute operation `insert` or `delete` answered with.
async fn settle(
    gcp: &Clients,
    ctx: &StepContext,
    op: &google_cloud_compute_v1::model::Operation,
    what: &str,
) -> Result<(), ProviderError> {
    Op::compute(op).wait(gcp, ctx, what).await
}

/// Checks an existing subnetwork is where and what the spec says.
fn check_existing(c: &NetworkConfig, network: &str, sub: &Subnetwork) -> Result<(), ProviderError> {
    let name = sub.name.as_deref().unwrap_or_default();
    if sub.network.as_deref().map(last) != Some(network) {
        return Err(ProviderError::permanent(format!(
            "subnetwork {name} is in network {}, not {network} as the spec says",
            sub.network.as_deref().map(last).unwrap_or("?")
        ))
        .with_code("bmac::gcp::network"));
    }
    let ranges = c.secondary.clone().unwrap_or_else(|| SecondaryRanges {
        pods_cidr: String::new(),
        services_cidr: String::new(),
        pods_range: PODS.into(),
        services_range: SERVICES.into(),
    });
    for want in [&ranges.pods_range, &ranges.services_range] {
        if !sub
            .secondary_ip_ranges
            .iter()
            .any(|r| r.range_name.as_deref() == Some(want.as_str()))
        {
            let have: Vec<&str> = sub
                .secondary_ip_ranges
                .iter()
                .filter_map(|r| r.range_name.as_deref())
                .collect();
            return Err(ProviderError::permanent(format!(
                "subnetwork {name} has no secondary range `{want}` (it has {have:?}): a VPC-native cluster takes its pod and service addresses from two named secondary ranges"
            ))
            .with_code("bmac::gcp::network"));
        }
    }
    Ok(())
}

#[async_trait]
impl Handler<Clients> for Network {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        operation::finish_interrupted(gcp, req.ctx, "the network").await?;
        if let Some(e) = &c.existing {
            let project = project_of(gcp, &e.vpc_id).to_owned();
            let (network, subnetwork) = wanted(gcp, &c);
            get_network(gcp, &project, &network).await?.ok_or_else(|| {
                ProviderError::permanent(format!(
                    "the network {network} the spec names does not exist in project {project}"
                ))
                .with_code("NOT_FOUND")
            })?;
            let sub = get_subnetwork(gcp, project_of(gcp, &e.subnetwork), &subnetwork)
                .await?
                .ok_or_else(|| {
                    ProviderError::permanent(format!(
                        "the subnetwork {subnetwork} the spec names does not exist in region {}",
                        gcp.region
                    ))
                    .with_code("NOT_FOUND")
                })?;
            check_existing(&c, &network, &sub)?;
            return Ok(outputs(gcp, &c, &project, &network, &subnetwork));
        }
        let n = names(&gcp.cluster);
        let project = gcp.project.clone();
        if get_network(gcp, &project, &n.network).await?.is_none() {
            let body = GNetwork::new()
                .set_name(&n.network)
                .set_auto_create_subnetworks(false)
                .set_description(format!("bmac: network of GKE cluster {}", gcp.cluster))
                .set_routing_config(
                    NetworkRoutingConfig::new().set_routing_mode(RoutingMode::Regional),
                );
            let made = created(
                gcp.networks
                    .insert()
                    .set_project(&project)
                    .set_body(body)
                    .send()
                    .boxed()
                    .await,
                "compute.networks.insert",
                &format!("network {}", n.network),
            )?;
            if let Created::New(op) = made {
                settle(
                    gcp,
                    req.ctx,
                    &op,
                    &format!("create of network {}", n.network),
                )
                .await?;
            }
        }
        let ranges = c.secondary.clone().unwrap_or_else(|| SecondaryRanges {
            pods_cidr: bmac_steps::spec::GKE_DEFAULT_PODS_CIDR.into(),
            services_cidr: bmac_steps::spec::GKE_DEFAULT_SERVICES_CIDR.into(),
            pods_range: String::new(),
            services_range: String::new(),
        });
        match get_subnetwork(gcp, &project, &n.subnetwork).await? {
            Some(sub) => {
                if sub.ip_cidr_range.as_deref() != Some(c.cidr.as_str()) {
                    return Err(ProviderError::permanent(format!(
                        "subnetwork {} has range {}, the spec {}: a subnetwork's range cannot change in place (plan a replacement of the network)",
                        n.subnetwork,
                        sub.ip_cidr_range.as_deref().unwrap_or("?"),
                        c.cidr
                    ))
                    .with_code("bmac::gcp::network"));
                }
            }
            None => {
                let body = Subnetwork::new()
                    .set_name(&n.subnetwork)
                    .set_network(format!("projects/{project}/global/networks/{}", n.network))
                    .set_ip_cidr_range(&c.cidr)
                    .set_private_ip_google_access(true)
                    .set_description(format!(
                        "bmac: nodes, pods and services of GKE cluster {}",
                        gcp.cluster
                    ))
                    .set_secondary_ip_ranges([
                        SubnetworkSecondaryRange::new()
                            .set_range_name(PODS)
                            .set_ip_cidr_range(&ranges.pods_cidr),
                        SubnetworkSecondaryRange::new()
                            .set_range_name(SERVICES)
                            .set_ip_cidr_range(&ranges.services_cidr),
                    ]);
                let made = created(
                    gcp.subnetworks
                        .insert()
                        .set_project(&project)
                        .set_region(&gcp.region)
                        .set_body(body)
                        .send()
                        .boxed()
                        .await,
                    "compute.subnetworks.insert",
                    &format!("subnetwork {}", n.subnetwork),
                )?;
                if let Created::New(op) = made {
                    settle(
                        gcp,
                        req.ctx,
                        &op,
                        &format!("create of subnetwork {}", n.subnetwork),
                    )
                    .await?;
                }
            }
        }
        let router = get_router(gcp, &n.router).await?;
        match (c.nat.as_str(), router) {
            ("none", Some(_)) => delete_router(gcp, req.ctx, &n.router).await?,
            ("none", None) | (_, Some(_)) => {}
            (_, None) => {
                let body = Router::new()
                    .set_name(&n.router)
                    .set_network(format!("projects/{project}/global/networks/{}", n.network))
                    .set_description(format!("bmac: Cloud NAT of GKE cluster {}", gcp.cluster))
                    .set_nats([RouterNat::new()
                        .set_name(&n.router)
                        .set_nat_ip_allocate_option(NatIpAllocateOption::AutoOnly)
                        .set_source_subnetwork_ip_ranges_to_nat(
                            SourceSubnetworkIpRangesToNat::AllSubnetworksAllIpRanges,
                        )]);
                let made = created(
                    gcp.routers
                        .insert()
                        .set_project(&project)
                        .set_region(&gcp.region)
                        .set_body(body)
                        .send()
                        .boxed()
                        .await,
                    "compute.routers.insert",
                    &format!("router {}", n.router),
                )?;
                if let Created::New(op) = made {
                    settle(
                        gcp,
                        req.ctx,
                        &op,
                        &format!("create of Cloud NAT {}", n.router),
                    )
                    .await?;
                }
            }
        }
        Ok(outputs(gcp, &c, &project, &n.network, &n.subnetwork))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        let (network, subnetwork) = wanted(gcp, &c);
        let project = match &c.existing {
            Some(e) => project_of(gcp, &e.vpc_id).to_owned(),
            None => gcp.project.clone(),
        };
        if get_network(gcp, &project, &network).await?.is_none() {
            return Ok(Observed::Absent);
        }
        let Some(sub) = get_subnetwork(gcp, &project, &subnetwork).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if c.existing.is_none() {
            config["cidr"] = json!(sub.ip_cidr_range.clone().unwrap_or_default());
            let range = |name: &str| {
                sub.secondary_ip_ranges
                    .iter()
                    .find(|r| r.range_name.as_deref() == Some(name))
                    .and_then(|r| r.ip_cidr_range.clone())
                    .unwrap_or_default()
            };
            if c.secondary.is_some() {
                config["secondary"]["pods_cidr"] = json!(range(PODS));
                config["secondary"]["services_cidr"] = json!(range(SERVICES));
            }
            let nat = get_router(gcp, &names(&gcp.cluster).router).await?;
            config["nat"] = json!(match (nat, c.nat.as_str()) {
                (Some(_), "none") => "single",
                (Some(_), other) => other,
                (None, _) => "none",
            });
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(gcp, &c, &project, &network, &subnetwork),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        let n = names(&gcp.cluster);
        delete_router(gcp, req.ctx, &n.router).await?;
        if let Some(op) = found(
            gcp.subnetworks
                .delete()
                .set_project(&gcp.project)
                .set_region(&gcp.region)
                .set_subnetwork(&n.subnetwork)
                .send()
                .boxed()
                .await,
            "compute.subnetworks.delete",
            &format!("subnetwork {}", n.subnetwork),
        )? {
            settle(
                gcp,
                req.ctx,
                &op,
                &format!("delete of subnetwork {}", n.subnetwork),
            )
            .await?;
        }
        if let Some(op) = found(
            gcp.networks
                .delete()
                .set_project(&gcp.project)
                .set_network(&n.network)
                .send()
                .boxed()
                .await,
            "compute.networks.delete",
            &format!("network {}", n.network),
        )? {
            settle(
                gcp,
                req.ctx,
                &op,
                &format!("delete of network {}", n.network),
            )
            .await?;
        }
        Ok(())
    }
}

async fn delete_router(gcp: &Clients, ctx: &StepContext, name: &str) -> Result<(), ProviderError> {
    if let Some(op) = found(
        gcp.routers
            .delete()
            .set_project(&gcp.project)
            .set_region(&gcp.region)
            .set_router(name)
            .send()
            .boxed()
            .await,
        "compute.routers.delete",
        &format!("router {name}"),
    )? {
        settle(gcp, ctx, &op, &format!("delete of Cloud NAT {name}")).await?;
    }
    Ok(())
}

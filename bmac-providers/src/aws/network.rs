//! `network` on AWS: the VPC an EKS cluster and its nodes live in.
//!
//! Created (as eksctl does): a VPC with DNS support and hostnames; per zone a public and a
//! private subnet, the VPC range cut into equal blocks (a /16 over three zones gives /19s,
//! private first); public subnets map public IPs and carry `kubernetes.io/role/elb = 1`,
//! private ones `kubernetes.io/role/internal-elb = 1`, both `kubernetes.io/cluster/<name> =
//! shared`; an internet gateway and a public route table (`0.0.0.0/0` → gateway); NAT
//! gateways (`single`: one, in the first zone; `per_zone`: one per zone; `none`) with their
//! Elastic IPs; and a private route table per zone (`0.0.0.0/0` → its NAT gateway).
//!
//! Every piece is tagged (see [`tags`](super::tags)) and looked up by its tags before it is
//! created, so re-running a create that crashed half-way adopts what exists and makes only
//! what is missing; NAT gateways also carry an idempotency token. A NAT gateway takes minutes:
//! the wait reports progress.
//!
//! Existing (`vpc_id` + `subnets`): nothing is created or deleted; apply checks that the VPC
//! exists and that each subnet is in that VPC and in the zone the spec puts it in, before any
//! other step uses them.
//!
//! Outputs: `vpc_id`, `subnets` (private then public), `private_subnets`, `public_subnets`
//! and `zones`, as JSON arrays.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, NatGatewayState, ResourceType, Tag, TagSpecification,
};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{
    NetworkConfig, OUTPUT_PRIVATE_SUBNETS, OUTPUT_PUBLIC_SUBNETS, OUTPUT_SUBNETS, OUTPUT_VPC_ID,
    OUTPUT_ZONES,
};
use serde_json::json;

use super::error::{found, Context as _};
use super::{tags, Clients, Handler};
use crate::cloud::wait::{self, Poll};

/// The `network` handler.
pub struct Network;

/// Where one step's pieces are: the cluster and step their tags name.
struct Scope<'a> {
    aws: &'a Clients,
    step: &'a str,
}

impl Scope<'_> {
    fn filters(&self, part: Option<&str>) -> Vec<Filter> {
        tags::of(&self.aws.cluster, self.step, part)
            .into_iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect()
    }

    /// Whether `have` carries every tag the filters of `part` ask for. Lookups check this on
    /// what they get back too: not every EC2 API (nor every server speaking it) applies tag
    /// filters, and adopting another cluster's resource would be far worse than an extra check.
    fn owns(&self, part: Option<&str>, have: &[Tag]) -> bool {
        tags::of(&self.aws.cluster, self.step, part)
            .iter()
            .all(|(k, v)| {
                have.iter()
                    .any(|t| t.key() == Some(k) && t.value() == Some(v))
            })
    }

    fn tagged(
        &self,
        kind: ResourceType,
        part: Option<&str>,
        extra: &[(String, String)],
    ) -> TagSpecification {
        let name = match part {
            Some(p) => format!("bmac-{}-{p}", self.aws.cluster),
            None => format!("bmac-{}", self.aws.cluster),
        };
        let mut all = tags::of(&self.aws.cluster, self.step, part);
        all.push(("Name".into(), name));
        all.extend_from_slice(extra);
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(
                all.into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build()
    }

    async fn vpc(&self) -> Result<Option<String>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_vpcs()
            .set_filters(Some(self.filters(None)))
            .send()
            .await
            .on("ec2:DescribeVpcs", "vpc")?;
        Ok(out
            .vpcs()
            .iter()
            .filter(|v| self.owns(None, v.tags()))
            .find_map(|v| v.vpc_id().map(str::to_owned)))
    }

    async fn subnet(&self, part: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_subnets()
            .set_filters(Some(self.filters(Some(part))))
            .send()
            .await
            .on("ec2:DescribeSubnets", part)?;
        Ok(out
            .subnets()
            .iter()
            .filter(|s| self.owns(Some(part), s.tags()))
            .find_map(|s| s.subnet_id().map(str::to_owned)))
    }

    async fn route_table(
        &self,
        part: &str,
    ) -> Result<Option<aws_sdk_ec2::types::RouteTable>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_route_tables()
            .set_filters(Some(self.filters(Some(part))))
            .send()
            .await
            .on("ec2:DescribeRouteTables", part)?;
        Ok(out
            .route_tables()
            .iter()
            .find(|t| self.owns(Some(part), t.tags()))
            .cloned())
    }

    async fn internet_gateway(
        &self,
    ) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(self.filters(Some("igw"))))
            .send()
            .await
            .on("ec2:DescribeInternetGateways", "internet gateway")?;
        Ok(out
            .internet_gateways()
            .iter()
            .find(|g| self.owns(Some("igw"), g.tags()))
            .cloned())
    }

    async fn nat_gateways(
        &self,
        part: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::NatGateway>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_nat_gateways()
            .set_filter(Some(self.filters(Some(part))))
            .send()
            .await
            .on("ec2:DescribeNatGateways", part)?;
        Ok(out
            .nat_gateways()
            .iter()
            .filter(|n| self.owns(Some(part), n.tags()))
            .filter(|n| {
                !matches!(
                    n.state(),
                    Some(NatGatewayState::Deleted)
                        | Some(NatGatewayState::Deleting)
                        | Some(NatGatewayState::Failed)
                )
            })
            .cloned()
            .collect())
    }

    async fn address(&self, part: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .aws
            .ec2
            .describe_addresses()
            .set_filters(Some(self.filters(Some(part))))
            .send()
            .await
            .on("ec2:DescribeAddresses", part)?;
        Ok(out
            .addresses()
            .iter()
            .filter(|a| self.owns(Some(part), a.tags()))
            .find_map(|a| a.allocation_id().map(str::to_owned)))
    }
}

/// The `i`-th of `count` equal blocks of `cidr` (`10.0.0.0/16`, 3 of 8 → `10.0.96.0/19`).
pub fn block(cidr: &str, i: u32, blocks: u32) -> Result<String, ProviderError> {
    let bad = || {
        ProviderError::permanent(format!("`{cidr}` is not an IPv4 CIDR"))
            .with_code("bmac::aws::cidr")
    };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let bits = blocks.next_power_of_two().trailing_zeros();
    let sub = prefix + bits;
    if sub > 28 || i >= blocks {
        return Err(ProviderError::permanent(format!(
            "`{cidr}` is too small for {blocks} subnets"
        ))
        .with_code("bmac::aws::cidr"));
    }
    let base = u32::from(addr) & (u32::MAX.checked_shl(32 - prefix).unwrap_or(0));
    let start = base + (i << (32 - sub));
    Ok(format!("{}/{sub}", Ipv4Addr::from(start)))
}

async fn zones(aws: &Clients, c: &NetworkConfig) -> Result<Vec<String>, ProviderError> {
    if !c.zones.is_empty() {
        return Ok(c.zones.clone());
    }
    let out = aws
        .ec2
        .describe_availability_zones()
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .on("ec2:DescribeAvailabilityZones", &aws.region)?;
    let mut names: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    names.sort();
    names.truncate(c.zone_count as usize);
    if names.len() < 2 {
        return Err(ProviderError::permanent(format!(
            "region {} offers {} availability zones; EKS needs two",
            aws.region,
            names.len()
        )));
    }
    Ok(names)
}

fn outputs(vpc: &str, zones: &[String], private: &[String], public: &[String]) -> Outputs {
    let all: Vec<&String> = private.iter().chain(public).collect();
    Outputs::new()
        .with(OUTPUT_VPC_ID, vpc)
        .with(OUTPUT_SUBNETS, json!(all))
        .with(OUTPUT_PRIVATE_SUBNETS, json!(private))
        .with(OUTPUT_PUBLIC_SUBNETS, json!(public))
        .with(OUTPUT_ZONES, json!(zones))
}

/// Checks an existing network: the VPC exists and every subnet is in it, in its zone.
async fn check_existing(aws: &Clients, c: &NetworkConfig) -> Result<Outputs, ProviderError> {
    let Some(e) = &c.existing else {
        return Err(ProviderError::permanent(
            "the network has no existing VPC to check",
        ));
    };
    let vpcs = found(
        aws.ec2.describe_vpcs().vpc_ids(&e.vpc_id).send().await,
        "ec2:DescribeVpcs",
        &e.vpc_id,
    )?;
    if vpcs.is_none_or(|v| v.vpcs().is_empty()) {
        return Err(ProviderError::permanent(format!(
            "the VPC {} the spec names does not exist in {}",
            e.vpc_id, aws.region
        ))
        .with_code("InvalidVpcID.NotFound"));
    }
    let wanted: Vec<(&String, &String)> =
        e.private_subnets.iter().chain(&e.public_subnets).collect();
    let out = aws
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(wanted.iter().map(|(_, s)| (*s).clone()).collect()))
        .send()
        .await
        .on("ec2:DescribeSubnets", &e.vpc_id)?;
    for (zone, id) in &wanted {
        let Some(s) = out
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(id.as_str()))
        else {
            return Err(
                ProviderError::permanent(format!("subnet {id} does not exist"))
                    .with_code("InvalidSubnetID.NotFound"),
            );
        };
        if s.vpc_id() != Some(e.vpc_id.as_str()) {
            return Err(ProviderError::permanent(format!(
                "subnet {id} is in VPC {}, not in {}",
                s.vpc_id().unwrap_or("?"),
                e.vpc_id
            ))
            .with_code("bmac::aws::subnet_vpc"));
        }
        if s.availability_zone() != Some(zone.as_str()) {
            return Err(ProviderError::permanent(format!(
                "subnet {id} is in zone {}, not in {zone} as the spec says",
                s.availability_zone().unwrap_or("?")
            ))
            .with_code("bmac::aws::subnet_zone"));
        }
    }
    let zones: Vec<String> = e.private_subnets.keys().cloned().collect();
    let private: Vec<String> = e.private_subnets.values().cloned().collect();
    let public: Vec<String> = e.public_subnets.values().cloned().collect();
    Ok(outputs(&e.vpc_id, &zones, &private, &public))
}

async fn ensure_vpc(s: &Scope<'_>, c: &NetworkConfig) -> Result<String, ProviderError> {
    if let Some(id) = s.vpc().await? {
        return Ok(id);
    }
    let out = s
        .aws
        .ec2
        .create_vpc()
        .cidr_block(&c.cidr)
        .tag_specifications(s.tagged(ResourceType::Vpc, None, &[]))
        .send()
        .await
        .on("ec2:CreateVpc", &c.cidr)?;
    let id = out
        .vpc()
        .and_then(|v| v.vpc_id())
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::retryable("ec2:CreateVpc answered without a VPC"))?;
    for hostnames in [false, true] {
        let on = AttributeBooleanValue::builder().value(true).build();
        let call = s.aws.ec2.modify_vpc_attribute().vpc_id(&id);
        let call = if hostnames {
            call.enable_dns_hostnames(on)
        } else {
            call.enable_dns_support(on)
        };
        call.send().await.on("ec2:ModifyVpcAttribute", &id)?;
    }
    Ok(id)
}

async fn ensure_subnet(
    s: &Scope<'_>,
    vpc: &str,
    zone: &str,
    cidr: &str,
    public: bool,
) -> Result<String, ProviderError> {
    let part = format!("{}-{zone}", if public { "public" } else { "private" });
    if let Some(id) = s.subnet(&part).await? {
        return Ok(id);
    }
    let role = if public {
        "kubernetes.io/role/elb"
    } else {
        "kubernetes.io/role/internal-elb"
    };
    let extra = [
        (role.to_owned(), "1".to_owned()),
        (
            format!("kubernetes.io/cluster/{}", s.aws.cluster),
            "shared".to_owned(),
        ),
    ];
    let out = s
        .aws
        .ec2
        .create_subnet()
        .vpc_id(vpc)
        .availability_zone(zone)
        .cidr_block(cidr)
        .tag_specifications(s.tagged(ResourceType::Subnet, Some(&part), &extra))
        .send()
        .await
        .on("ec2:CreateSubnet", &part)?;
    let id = out
        .subnet()
        .and_then(|x| x.subnet_id())
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::retryable("ec2:CreateSubnet answered without a subnet"))?;
    if public {
        s.aws
            .ec2
            .modify_subnet_attribute()
            .subnet_id(&id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .on("ec2:ModifySubnetAttribute", &id)?;
    }
    Ok(id)
}

async fn ensure_igw(s: &Scope<'_>, vpc: &str) -> Result<String, ProviderError> {
    let igw = match s.internet_gateway().await? {
        Some(g) => g,
        None => {
            let out = s
                .aws
                .ec2
                .create_internet_gateway()
                .tag_specifications(s.tagged(ResourceType::InternetGateway, Some("igw"), &[]))
                .send()
                .await
                .on("ec2:CreateInternetGateway", vpc)?;
            out.internet_gateway().cloned().ok_or_else(|| {
                ProviderError::retryable("ec2:CreateInternetGateway answered without a gateway")
            })?
        }
    };
    let id = igw.internet_gateway_id().unwrap_or_default().to_owned();
    if !igw.attachments().iter().any(|a| a.vpc_id() == Some(vpc)) {
        s.aws
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc)
            .send()
            .await
            .on("ec2:AttachInternetGateway", &id)?;
    }
    Ok(id)
}

/// A route table `part` with `0.0.0.0/0` to `target` (gateway or NAT), associated with `subnets`.
async fn ensure_routes(
    s: &Scope<'_>,
    vpc: &str,
    part: &str,
    target: Target<'_>,
    subnets: &[String],
) -> Result<(), ProviderError> {
    let table = match s.route_table(part).await? {
        Some(t) => t,
        None => {
            let out = s
                .aws
                .ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(s.tagged(ResourceType::RouteTable, Some(part), &[]))
                .send()
                .await
                .on("ec2:CreateRouteTable", part)?;
            out.route_table().cloned().ok_or_else(|| {
                ProviderError::retryable("ec2:CreateRouteTable answered without a table")
            })?
        }
    };
    let id = table.route_table_id().unwrap_or_default().to_owned();
    let has_default = table
        .routes()
        .iter()
        .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
    if let (false, Some(target)) = (has_default, target.id()) {
        let call = s
            .aws
            .ec2
            .create_route()
            .route_table_id(&id)
            .destination_cidr_block("0.0.0.0/0");
        let call = match target {
            Target::Gateway(g) => call.gateway_id(g),
            Target::Nat(n) => call.nat_gateway_id(n),
            Target::None => call,
        };
        call.send().await.on("ec2:CreateRoute", &id)?;
    }
    for subnet in subnets {
        if !table
            .associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet.as_str()))
        {
            s.aws
                .ec2
                .associate_route_table()
                .route_table_id(&id)
                .subnet_id(subnet)
                .send()
                .await
                .on("ec2:AssociateRouteTable", &id)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Gateway(&'a str),
    Nat(&'a str),
    None,
}

impl<'a> Target<'a> {
    fn id(self) -> Option<Target<'a>> {
        match self {
            Target::None => None,
            t => Some(t),
        }
    }
}

async fn ensure_nat(
    s: &Scope<'_>,
    ctx: &StepContext,
    subnet: &str,
    part: &str,
) -> Result<String, ProviderError> {
    let nat = match s.nat_gateways(part).await?.into_iter().next() {
        Some(n) => n,
        None => {
            let eip_part = format!("{part}-eip");
            let allocation = match s.address(&eip_part).await? {
                Some(a) => a,
                None => s
                    .aws
                    .ec2
                    .allocate_address()
                    .domain(DomainType::Vpc)
                    .tag_specifications(s.tagged(ResourceType::ElasticIp, Some(&eip_part), &[]))
                    .send()
                    .await
                    .on("ec2:AllocateAddress", &eip_part)?
                    .allocation_id()
                    .unwrap_or_default()
                    .to_owned(),
            };
            let out = s
                .aws
                .ec2
                .create_nat_gateway()
                .subnet_id(subnet)
                .allocation_id(&allocation)
                .client_token(format!("bmac-{}-{part}", s.aws.cluster))
                .tag_specifications(s.tagged(ResourceType::Natgateway, Some(part), &[]))
                .send()
                .await
                .on("ec2:CreateNatGateway", part)?;
            out.nat_gateway().cloned().ok_or_else(|| {
                ProviderError::retryable("ec2:CreateNatGateway answered without a gateway")
            })?
        }
    };
    let id = nat.nat_gateway_id().unwrap_or_default().to_owned();
    wait::until(ctx, &format!("NAT gateway {id}"), || async {
        let out = s
            .aws
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(&id)
            .send()
            .await
            .on("ec2:DescribeNatGateways", &id)?;
        let state = out.nat_gateways().first().and_then(|n| n.state().cloned());
        match state {
            Some(NatGatewayState::Available) => Ok(Poll::Done(())),
            Some(NatGatewayState::Failed) | Some(NatGatewayState::Deleted) => Err(
                ProviderError::permanent(format!("NAT gateway {id} failed to become available")),
            ),
            other => {
                Ok(Poll::Waiting(other.map_or("PENDING".to_owned(), |s| {
                    s.as_str().to_uppercase()
                })))
            }
        }
    })
    .await?;
    Ok(id)
}

#[async_trait]
impl Handler<Clients> for Network {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(180)
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return check_existing(aws, &c).await;
        }
        let s = Scope {
            aws,
            step: req.step.id.as_str(),
        };
        let zones = zones(aws, &c).await?;
        let vpc = ensure_vpc(&s, &c).await?;
        req.ctx
            .checkpoint(json!({"vpc_id": vpc, "zones": zones}))
            .await?;
        let blocks = 2 * zones.len() as u32;
        let (mut private, mut public) = (Vec::new(), Vec::new());
        for (i, zone) in zones.iter().enumerate() {
            let i = i as u32;
            private.push(ensure_subnet(&s, &vpc, zone, &block(&c.cidr, i, blocks)?, false).await?);
            public.push(
                ensure_subnet(
                    &s,
                    &vpc,
                    zone,
                    &block(&c.cidr, zones.len() as u32 + i, blocks)?,
                    true,
                )
                .await?,
            );
        }
        let igw = ensure_igw(&s, &vpc).await?;
        ensure_routes(&s, &vpc, "public", Target::Gateway(&igw), &public).await?;
        let mut nats = Vec::new();
        match c.nat.as_str() {
            "none" => {}
            "per_zone" => {
                for (zone, subnet) in zones.iter().zip(&public) {
                    nats.push(ensure_nat(&s, req.ctx, subnet, &format!("nat-{zone}")).await?);
                }
            }
            _ => nats.push(ensure_nat(&s, req.ctx, &public[0], "nat").await?),
        }
        for (i, (zone, subnet)) in zones.iter().zip(&private).enumerate() {
            let target = match nats.get(i).or(nats.first()) {
                Some(n) => Target::Nat(n),
                None => Target::None,
            };
            ensure_routes(
                &s,
                &vpc,
                &format!("private-{zone}"),
                target,
                std::slice::from_ref(subnet),
            )
            .await?;
        }
        Ok(outputs(&vpc, &zones, &private, &public))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        let config = serde_json::to_value(&c).unwrap_or_default();
        if c.existing.is_some() {
            return match check_existing(aws, &c).await {
                Ok(outputs) => Ok(Observed::Present { config, outputs }),
                Err(e) if e.code.as_deref().is_some_and(|c| c.contains("NotFound")) => {
                    Ok(Observed::Absent)
                }
                Err(e) => Err(e),
            };
        }
        let s = Scope {
            aws,
            step: req.step.id.as_str(),
        };
        let Some(vpc) = s.vpc().await? else {
            return Ok(Observed::Absent);
        };
        let out = aws
            .ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .on("ec2:DescribeSubnets", &vpc)?;
        let part = |sub: &aws_sdk_ec2::types::Subnet| {
            sub.tags()
                .iter()
                .find(|t| t.key() == Some(tags::PART_TAG))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_owned()
        };
        let mut subnets: Vec<(String, String, String)> = out
            .subnets()
            .iter()
            .filter(|x| x.vpc_id() == Some(vpc.as_str()))
            .map(|x| {
                (
                    part(x),
                    x.availability_zone().unwrap_or_default().to_owned(),
                    x.subnet_id().unwrap_or_default().to_owned(),
                )
            })
            .filter(|(p, _, _)| p.starts_with("private-") || p.starts_with("public-"))
            .collect();
        subnets.sort();
        let private: Vec<String> = subnets
            .iter()
            .filter(|(p, _, _)| p.starts_with("private-"))
            .map(|(_, _, id)| id.clone())
            .collect();
        let public: Vec<String> = subnets
            .iter()
            .filter(|(p, _, _)| p.starts_with("public-"))
            .map(|(_, _, id)| id.clone())
            .collect();
        let zones: Vec<String> = subnets
            .iter()
            .filter(|(p, _, _)| p.starts_with("private-"))
            .map(|(_, z, _)| z.clone())
            .collect();
        let mut config = config;
        if !c.zones.is_empty() {
            config["zones"] = json!(zones);
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&vpc, &zones, &private, &public),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: NetworkConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        let s = Scope {
            aws,
            step: req.step.id.as_str(),
        };
        let Some(vpc) = s.vpc().await? else {
            return Ok(());
        };
        let ec2 = &aws.ec2;
        // NAT gateways first (they hold the Elastic IPs and sit in public subnets).
        let nats = ec2
            .describe_nat_gateways()
            .set_filter(Some(vec![Filter::builder()
                .name("vpc-id")
                .values(&vpc)
                .build()]))
            .send()
            .await
            .on("ec2:DescribeNatGateways", &vpc)?;
        let live: Vec<String> = nats
            .nat_gateways()
            .iter()
            .filter(|n| n.vpc_id() == Some(vpc.as_str()))
            .filter(|n| !matches!(n.state(), Some(NatGatewayState::Deleted)))
            .filter_map(|n| n.nat_gateway_id().map(str::to_owned))
            .collect();
        for id in &live {
            found(
                ec2.delete_nat_gateway().nat_gateway_id(id).send().await,
                "ec2:DeleteNatGateway",
                id,
            )?;
        }
        for id in &live {
            wait::until(req.ctx, &format!("NAT gateway {id}"), || async {
                let out = found(
                    ec2.describe_nat_gateways().nat_gateway_ids(id).send().await,
                    "ec2:DescribeNatGateways",
                    id,
                )?;
                let state =
                    out.and_then(|o| o.nat_gateways().first().and_then(|n| n.state().cloned()));
                Ok(match state {
                    None | Some(NatGatewayState::Deleted) => Poll::Done(()),
                    Some(other) => Poll::Waiting(other.as_str().to_uppercase()),
                })
            })
            .await?;
        }
        let addresses = ec2
            .describe_addresses()
            .set_filters(Some(s.filters(None)))
            .send()
            .await
            .on("ec2:DescribeAddresses", &vpc)?;
        for a in addresses
            .addresses()
            .iter()
            .filter(|a| s.owns(None, a.tags()))
        {
            if let Some(id) = a.allocation_id() {
                found(
                    ec2.release_address().allocation_id(id).send().await,
                    "ec2:ReleaseAddress",
                    id,
                )?;
            }
        }
        let tables = ec2
            .describe_route_tables()
            .set_filters(Some(s.filters(None)))
            .send()
            .await
            .on("ec2:DescribeRouteTables", &vpc)?;
        for t in tables
            .route_tables()
            .iter()
            .filter(|t| t.vpc_id() == Some(vpc.as_str()) && s.owns(None, t.tags()))
        {
            for a in t.associations().iter().filter(|a| a.main() != Some(true)) {
                if let Some(id) = a.route_table_association_id() {
                    found(
                        ec2.disassociate_route_table()
                            .association_id(id)
                            .send()
                            .await,
                        "ec2:DisassociateRouteTable",
                        id,
                    )?;
                }
            }
            if let Some(id) = t.route_table_id() {
                found(
                    ec2.delete_route_table().route_table_id(id).send().await,
                    "ec2:DeleteRouteTable",
                    id,
                )?;
            }
        }
        if let Some(igw) = s.internet_gateway().await? {
            let id = igw.internet_gateway_id().unwrap_or_default();
            for a in igw.attachments() {
                if let Some(v) = a.vpc_id() {
                    found(
                        ec2.detach_internet_gateway()
                            .internet_gateway_id(id)
                            .vpc_id(v)
                            .send()
                            .await,
                        "ec2:DetachInternetGateway",
                        id,
                    )?;
                }
            }
            found(
                ec2.delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
                    .await,
                "ec2:DeleteInternetGateway",
                id,
            )?;
        }
        let subnets = ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .on("ec2:DescribeSubnets", &vpc)?;
        for sub in subnets
            .subnets()
            .iter()
            .filter(|x| x.vpc_id() == Some(vpc.as_str()))
        {
            if let Some(id) = sub.subnet_id() {
                found(
                    ec2.delete_subnet().subnet_id(id).send().await,
                    "ec2:DeleteSubnet",
                    id,
                )?;
            }
        }
        found(
            ec2.delete_vpc().vpc_id(&vpc).send().await,
            "ec2:DeleteVpc",
            &vpc,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::block;

    #[test]
    fn the_range_is_cut_into_equal_blocks() {
        assert_eq!(block("10.0.0.0/16", 0, 6).unwrap(), "10.0.0.0/19");
        assert_eq!(block("10.0.0.0/16", 3, 6).unwrap(), "10.0.96.0/19");
        assert_eq!(block("10.0.0.0/16", 5, 6).unwrap(), "10.0.160.0/19");
        assert_eq!(block("10.8.0.0/20", 1, 4).unwrap(), "10.8.4.0/22");
        assert!(block("10.0.0.0/26", 0, 8).is_err());
        assert!(block("nonsense", 0, 2).is_err());
    }
}

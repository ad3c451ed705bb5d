//! Reading `[network]`, and the rules for cloud identifiers that can be checked without
//! calling the cloud: ARNs (partition, service, region), availability zones, EC2 instance
//! families and the retention periods CloudWatch Logs accepts.
//!
//! These rules run at validate time, so a spec that names a KMS key in another region, a role
//! from another partition, subnets in a single zone or a typo'd instance family fails with
//! file:line:column before bmac makes any AWS call. What only the cloud knows (that a subnet
//! really is in the zone the spec says, that a key exists) is checked by the provider before it
//! changes anything. The `[registries]` rules of ECR pull-through caches live beside these, in
//! `spec::ecr`, and run from `validate_eks`.

use std::collections::BTreeMap;

use super::decode::{meta, Decoder};
use super::diag::{closest, Problem, ProblemCode};
use super::model::*;
use super::model_cloud::*;
use super::model_security::Access;
use super::parse::is_cidr;
use super::tree::{Node, NodeKind};
use super::Spec;
use bmac_core::step::StepId;

const NETWORK_FIELDS: &[&str] = &["cidr", "zones", "nat", "vpc_id", "subnets", "depends_on"];
const SUBNETS_FIELDS: &[&str] = &["private", "public"];

pub(crate) fn network(d: &mut Decoder, node: &Node) -> Option<Network> {
    let mut f = d.table(node, "network", "`[network]`", NETWORK_FIELDS)?;
    let cidr = d.str(&mut f, "cidr");
    if let Some(c) = &cidr {
        let prefix = c
            .value
            .split_once('/')
            .and_then(|(_, p)| p.parse::<u8>().ok());
        let ipv4 = c
            .value
            .split_once('/')
            .is_some_and(|(a, _)| a.parse::<std::net::Ipv4Addr>().is_ok());
        if !is_cidr(&c.value) || !ipv4 || !prefix.is_some_and(|p| (16..=24).contains(&p)) {
            d.invalid_at(
                c.span,
                format!("`{}` is not an IPv4 CIDR from /16 to /24", c.value),
                "a VPC takes a /16 to /24 range that its subnets are cut from, e.g. `cidr = \"10.0.0.0/16\"`",
            );
        }
    }
    let zones = d.str_list(&mut f, "zones").unwrap_or_default();
    let nat = d.choice(&mut f, "nat", NatMode::NAMES, NatMode::from_name);
    let vpc_id = d.nonempty_str(&mut f, "vpc_id");
    let subnets = f.get("subnets");
    let subnets_span = f.key_span("subnets");
    let existing = match (&vpc_id, subnets) {
        (Some(vpc), Some(node)) => {
            subnet_tables(d, node).map(|(private, public)| ExistingNetwork {
                vpc_id: vpc.clone(),
                private_subnets: private,
                public_subnets: public,
                subnets_span: subnets_span.unwrap_or(vpc.span),
            })
        }
        (Some(vpc), None) => {
            d.push(
                Problem::new(ProblemCode::MissingField, vpc.span, "`vpc_id` needs its `subnets`", "which subnets of this VPC?")
                    .with_help("add `subnets.private = { \"eu-west-1a\" = \"subnet-…\", \"eu-west-1b\" = \"subnet-…\" }`"),
            );
            None
        }
        (None, Some(_)) => {
            d.push(
                Problem::new(
                    ProblemCode::MissingField,
                    subnets_span.unwrap_or(f.table_span()),
                    "`subnets` without `vpc_id`",
                    "subnets of which VPC?",
                )
                .with_help(
                    "add `vpc_id = \"vpc-…\"`, or remove `subnets` to let bmac create the network",
                ),
            );
            None
        }
        (None, None) => None,
    };
    if vpc_id.is_some() {
        for field in ["cidr", "zones", "nat"] {
            if let Some(at) = f.key_span(field) {
                d.push(
                    Problem::new(ProblemCode::Contradiction, at, format!("`{field}` does not apply to an existing VPC"), "bmac does not create this network")
                        .with_help(format!("remove `{field}`, or remove `vpc_id` and `subnets` to let bmac create the network")),
                );
            }
        }
    }
    let deps = d.depends_on(&mut f);
    let span = f.table_span();
    f.finish(d);
    Some(Network {
        meta: meta(StepId::new("network").ok()?, deps),
        cidr: cidr.unwrap_or_else(|| Spanned::new(DEFAULT_CIDR.to_owned(), span)),
        zones,
        nat: nat.map_or(NatMode::Single, |n| n.value),
        existing,
        gke: None,
    })
}

type Subnets = BTreeMap<String, Spanned<String>>;

fn subnet_tables(d: &mut Decoder, node: &Node) -> Option<(Subnets, Subnets)> {
    let mut f = d.table(node, "subnets", "`[network.subnets]`", SUBNETS_FIELDS)?;
    let read = |d: &mut Decoder, node: Option<&Node>, what: &str| -> Subnets {
        let mut out = BTreeMap::new();
        let Some(node) = node else { return out };
        let NodeKind::Table(entries) = &node.kind else {
            d.invalid(
                node,
                format!("`subnets.{what}` must be a table from zone to subnet id"),
                "e.g. `{ \"eu-west-1a\" = \"subnet-0abc…\" }`",
            );
            return out;
        };
        for (k, v) in entries {
            if let Some(s) = d.str_node(v, &format!("subnets.{what}.{}", k.name)) {
                if !s.value.starts_with("subnet-") {
                    d.invalid_at(
                        s.span,
                        format!("`{}` is not a subnet id", s.value),
                        "subnet ids look like `subnet-0123456789abcdef0`",
                    );
                }
                out.insert(k.name.clone(), s);
            }
        }
        out
    };
    let private_node = f.get("private");
    let public_node = f.get("public");
    let private = read(d, private_node, "private");
    let public = read(d, public_node, "public");
    if private_node.is_none() {
        d.missing(
            &f,
            "private",
            "{ \"eu-west-1a\" = \"subnet-…\", \"eu-west-1b\" = \"subnet-…\" }",
        );
    }
    f.finish(d);
    Some((private, public))
}

/// The AWS partition a region belongs to.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// The parts of an ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov` …
    pub partition: &'a str,
    /// `iam`, `kms`, `sns` …
    pub service: &'a str,
    /// Empty for global services (IAM).
    pub region: &'a str,
    /// The 12-digit account id.
    pub account: &'a str,
    /// `role/name`, `key/uuid` …
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Splits an ARN, or `None` when it is not one.
    pub fn parse(s: &'a str) -> Option<Arn<'a>> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let arn = Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        (!arn.partition.is_empty() && !arn.service.is_empty() && !arn.resource.is_empty())
            .then_some(arn)
    }
}

/// EC2 instance families bmac knows (current and previous generations that EKS supports).
/// A type outside them is almost always a typo (`m6l.large` for `m6i.large`).
pub const INSTANCE_FAMILIES: &[&str] = &[
    "a1", "c4", "c5", "c5a", "c5ad", "c5d", "c5n", "c6a", "c6g", "c6gd", "c6gn", "c6i", "c6id",
    "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c7i-flex", "c8g", "d2", "d3", "d3en", "dl1",
    "f1", "g4ad", "g4dn", "g5", "g5g", "g6", "g6e", "gr6", "h1", "hpc6a", "hpc7g", "i3", "i3en",
    "i4g", "i4i", "im4gn", "inf1", "inf2", "is4gen", "m4", "m5", "m5a", "m5ad", "m5d", "m5dn",
    "m5n", "m5zn", "m6a", "m6g", "m6gd", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd",
    "m7i", "m7i-flex", "m8g", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "r4", "r5", "r5a", "r5ad",
    "r5b", "r5d", "r5dn", "r5n", "r6a", "r6g", "r6gd", "r6i", "r6id", "r6idn", "r6in", "r7a",
    "r7g", "r7gd", "r7i", "r7iz", "r8g", "t2", "t3", "t3a", "t4g", "trn1", "trn1n", "u-3tb1",
    "u-6tb1", "vt1", "x1", "x1e", "x2gd", "x2idn", "x2iedn", "x2iezn", "x8g", "z1d",
];

/// The retention periods (days) CloudWatch Logs accepts.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// What is wrong with `value` as the ARN of a `what` of `service` for a cluster in `region`
/// (`regional`: the resource must be in that region too): not an ARN, another partition,
/// another service, another region — or nothing.
pub(crate) fn arn_problem(
    value: &Spanned<String>,
    service: &str,
    what: &str,
    regional: bool,
    region: &Spanned<String>,
) -> Option<Problem> {
    let part = partition(&region.value);
    let Some(a) = Arn::parse(&value.value) else {
        return Some(invalid(
            value.span,
            format!("`{}` is not an ARN", value.value),
            "not an ARN",
            format!(
                "write the {what}'s ARN, e.g. `arn:{part}:{service}:{}:123456789012:…`",
                if regional { region.value.as_str() } else { "" }
            ),
        ));
    };
    if a.partition != part {
        Some(
            invalid(
                value.span,
                format!(
                    "the {what} `{}` is in partition `{}`, the cluster in `{part}`",
                    value.value, a.partition
                ),
                "another partition",
                format!(
                    "a cluster in {} can only use {what}s of partition `{part}`",
                    region.value
                ),
            )
            .with_secondary(region.span, "the cluster's region"),
        )
    } else if a.service != service {
        Some(invalid(
            value.span,
            format!(
                "{what} ARN expected; `{}` is a `{}` ARN",
                value.value, a.service
            ),
            "wrong service",
            format!("give the ARN of a {what} (`arn:{part}:{service}:…`)"),
        ))
    } else if regional && a.region != region.value {
        Some(
            invalid(
                value.span,
                format!(
                    "the {what} `{}` is in region `{}`, the cluster in `{}`",
                    value.value, a.region, region.value
                ),
                "another region",
                format!("{what}s are regional: use one in {}", region.value),
            )
            .with_secondary(region.span, "the cluster's region"),
        )
    } else {
        None
    }
}

pub(crate) fn invalid(
    at: miette::SourceSpan,
    message: String,
    label: &str,
    help: String,
) -> Problem {
    Problem::new(ProblemCode::InvalidValue, at, message, label).with_help(help)
}

/// The EKS rules (see the module docs); only for `provider = "eks"`.
pub(crate) fn validate_eks(spec: &Spec, out: &mut Vec<Problem>) {
    if spec.cluster.provider.value != Provider::Eks {
        return;
    }
    let Some(region) = spec.cluster.region.as_ref() else {
        return;
    };
    super::ecr::validate(spec, region, out);
    let mut arn = |value: &Spanned<String>, service: &str, what: &str, regional: bool| {
        out.extend(arn_problem(value, service, what, regional, region));
    };
    if let Some(key) = &spec.cluster.encryption_key {
        arn(key, "kms", "KMS key", true);
    }
    for admin in &spec.cluster.admins {
        arn(admin, "iam", "IAM principal", false);
    }
    for class in &spec.storage_classes {
        if let Some(key) = &class.kms_key {
            arn(key, "kms", "KMS key", true);
        }
    }
    if let Some(notify) = spec
        .audit
        .as_ref()
        .and_then(|a| a.alarm.as_ref())
        .and_then(|a| a.notify_arn())
    {
        arn(&notify, "sns", "SNS topic", true);
    }
    for wi in &spec.workload_identities {
        // A role that is not an ARN at all is reported by the workload-identity rules.
        if let Access::Role(role) = &wi.access {
            if Arn::parse(&role.value).is_some() {
                arn(role, "iam", "IAM role", false);
            }
        }
    }
    for pool in &spec.node_pools {
        for t in &pool.instance_types {
            let family = t.value.split_once('.').map(|(f, _)| f);
            match family {
                Some(f) if INSTANCE_FAMILIES.contains(&f) => {}
                Some(f) => out.push(invalid(
                    t.span,
                    format!(
                        "`{}` is not an EC2 instance type: there is no family `{f}`",
                        t.value
                    ),
                    "unknown instance family",
                    match closest(f, INSTANCE_FAMILIES) {
                        Some(c) => format!(
                            "did you mean `{c}.{}`?",
                            t.value.split_once('.').map_or("", |(_, s)| s)
                        ),
                        None => "write `family.size`, e.g. `m6i.large`".to_owned(),
                    },
                )),
                None => out.push(invalid(
                    t.span,
                    format!("`{}` is not an EC2 instance type", t.value),
                    "not family.size",
                    "write `family.size`, e.g. `m6i.large`".to_owned(),
                )),
            }
        }
    }
    if let Some(audit) = &spec.audit {
        let hot = audit
            .log_retention_days
            .as_ref()
            .or(if audit.archive.is_none() {
                audit.retention_days.as_ref()
            } else {
                None
            });
        if let Some(days) = hot.filter(|d| !LOG_RETENTION_DAYS.contains(&d.value)) {
            let nearest = LOG_RETENTION_DAYS
                .iter()
                .copied()
                .min_by_key(|v| v.abs_diff(days.value))
                .unwrap_or(30);
            out.push(invalid(
                days.span,
                format!(
                    "CloudWatch Logs cannot keep a log group for {} days",
                    days.value
                ),
                "not a CloudWatch retention",
                format!(
                    "CloudWatch accepts {}; the nearest is {nearest}",
                    LOG_RETENTION_DAYS
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if let Some(net) = &spec.network {
        let zones: Vec<&str> = match &net.existing {
            Some(e) => e.private_subnets.keys().map(String::as_str).collect(),
            None => net.zones.iter().map(|z| z.value.as_str()).collect(),
        };
        let at = |zone: &str| match &net.existing {
            Some(e) => e
                .private_subnets
                .get(zone)
                .map_or(e.subnets_span, |s| s.span),
            None => net
                .zones
                .iter()
                .find(|z| z.value == zone)
                .map_or(net.meta.span, |z| z.span),
        };
        for zone in &zones {
            let in_region = zone
                .strip_prefix(region.value.as_str())
                .is_some_and(|rest| {
                    rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase())
                });
            if !in_region {
                out.push(
                    invalid(
                        at(zone),
                        format!("`{zone}` is not an availability zone of {}", region.value),
                        "not in the cluster's region",
                        format!(
                            "zones of {} are named `{}a`, `{}b`, …",
                            region.value, region.value, region.value
                        ),
                    )
                    .with_secondary(region.span, "the cluster's region"),
                );
            }
        }
        let distinct: std::collections::BTreeSet<&str> = zones.iter().copied().collect();
        let given = net.existing.is_some() || !net.zones.is_empty();
        if given && distinct.len() < 2 {
            let span = net
                .existing
                .as_ref()
                .map_or(net.meta.span, |e| e.subnets_span);
            out.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    span,
                    format!(
                        "EKS needs subnets in at least two availability zones; this network has {}",
                        distinct.len()
                    ),
                    "one zone",
                )
                .with_help("list subnets (or zones) in two or more zones of the region"),
            );
        }
    }
    eks_addons(spec, out);
}

/// The add-ons bmac installs on EKS: a workload identity must not bind the service account
/// an add-on's role is bound to (EKS keeps one Pod Identity association per account), and a
/// pinned VPC CNI version is an add-on version.
fn eks_addons(spec: &Spec, out: &mut Vec<Problem>) {
    use crate::config::{EKS_ADDONS, EKS_EBS_CSI, EKS_VPC_CNI};
    let cni = spec
        .cni
        .as_ref()
        .filter(|c| c.plugin.value == CniPlugin::Default);
    let installed = |addon: &str| match addon {
        EKS_VPC_CNI => cni.is_some(),
        EKS_EBS_CSI => !spec.storage_classes.is_empty(),
        _ => false,
    };
    for wi in &spec.workload_identities {
        let owner = EKS_ADDONS.iter().find(|(addon, ns, sa)| {
            installed(addon) && *ns == wi.namespace.value && *sa == wi.service_account
        });
        if let Some((addon, ns, sa)) = owner {
            out.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    wi.meta.span,
                    format!("service account {ns}/{sa} belongs to the `{addon}` add-on bmac installs"),
                    "bound twice",
                )
                .with_help(format!(
                    "remove this workload identity: bmac creates the `{addon}` add-on's role with the permissions AWS documents for it"
                )),
            );
        }
    }
    if let Some(v) = cni.and_then(|c| c.version.as_ref()) {
        let ok = v
            .strip_prefix('v')
            .and_then(|rest| rest.split_once("-eksbuild."))
            .is_some_and(|(semver, build)| {
                semver.split('.').count() == 3
                    && semver
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    && !build.is_empty()
                    && build.bytes().all(|b| b.is_ascii_digit())
            });
        if !ok {
            let at = spec
                .cni
                .as_ref()
                .map_or(spec.cluster.meta.span, |c| c.meta.span);
            out.push(invalid(
                at,
                format!("`{v}` is not an EKS add-on version"),
                "not an add-on version",
                "on EKS the default CNI is the `vpc-cni` add-on: pin a version such as `v1.18.3-eksbuild.1` (`aws eks describe-addon-versions --addon-name vpc-cni`), or leave `version` out for the default of the cluster's version".to_owned(),
            ));
        }
    }
}

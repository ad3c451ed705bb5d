//! The GKE form of `[network]` and the rules for Google Cloud identifiers that can be checked
//! without calling Google: project ids, regions and zones, machine types, Cloud KMS key names,
//! Artifact Registry hosts, notification targets and the CNI choices GKE offers.
//!
//! They run at validate time (only for `provider = "gke"`), so a pool with two machine types,
//! a zone outside the cluster's region, a key in another location or a project id Google
//! would refuse fails with file:line:column before any call. What only Google knows (that the
//! project exists, that the caller may use a key, which project owns the archive bucket — a
//! `gs://` URL names none) is the provider's to check and report. Settings the GKE provider
//! would not honour (`[audit] log_retention_days`, an alarm `notify` that is not an e-mail
//! address, a Pub/Sub topic or a Monitoring channel, upstream credentials for a remote
//! repository) are refused here rather than silently ignored.

use super::cloud::invalid;
use super::decode::{meta, Decoder};
use super::diag::{closest, Problem, ProblemCode};
use super::model::*;
use super::model_cloud::*;
use super::model_security::{Access, ArchiveScheme, LogType};
use super::parse::is_cidr;
use super::tree::Node;
use super::Spec;
use bmac_core::step::StepId;

const NETWORK_FIELDS: &[&str] = &[
    "cidr",
    "pods_cidr",
    "services_cidr",
    "zones",
    "nat",
    "network",
    "subnetwork",
    "pods_range",
    "services_range",
    "depends_on",
];

/// The fields of the created form, which an existing network does not take.
const CREATED_ONLY: &[&str] = &["cidr", "pods_cidr", "services_cidr", "nat"];

/// Reads `[network]` of a GKE cluster (see [`GkeNetwork`]).
pub(crate) fn network(d: &mut Decoder, node: &Node) -> Option<Network> {
    let mut f = d.table(node, "network", "`[network]`", NETWORK_FIELDS)?;
    let span = f.table_span();
    let range = |d: &mut Decoder, f: &mut super::decode::Fields<'_>, field, default: &str| {
        let value = d.str(f, field);
        if let Some(c) = &value {
            let ipv4 = c
                .value
                .split_once('/')
                .is_some_and(|(a, _)| a.parse::<std::net::Ipv4Addr>().is_ok());
            if !is_cidr(&c.value) || !ipv4 {
                d.invalid_at(
                    c.span,
                    format!("`{}` is not an IPv4 CIDR", c.value),
                    format!("write an address and prefix length, e.g. `{field} = \"{default}\"`"),
                );
            }
        }
        value.unwrap_or_else(|| Spanned::new(default.to_owned(), span))
    };
    let cidr = range(d, &mut f, "cidr", GKE_DEFAULT_CIDR);
    let pods_cidr = range(d, &mut f, "pods_cidr", GKE_DEFAULT_PODS_CIDR);
    let services_cidr = range(d, &mut f, "services_cidr", GKE_DEFAULT_SERVICES_CIDR);
    let zones = d.str_list(&mut f, "zones").unwrap_or_default();
    let nat = d.choice(&mut f, "nat", NatMode::NAMES, NatMode::from_name);
    if let Some(n) = nat.as_ref().filter(|n| n.value == NatMode::PerZone) {
        d.invalid_at(
            n.span,
            "GKE's Cloud NAT is regional: there is no NAT per zone",
            "use `nat = \"single\"` (one Cloud NAT for the region's private nodes) or `\"none\"`",
        );
    }
    let names = ["network", "subnetwork", "pods_range", "services_range"]
        .map(|field| (field, d.nonempty_str(&mut f, field)));
    let existing = if names.iter().any(|(_, v)| v.is_some()) {
        for (field, value) in &names {
            if value.is_none() && f.key_span(field).is_none() {
                d.missing(&f, field, "\"…\"");
            }
        }
        for field in CREATED_ONLY {
            if let Some(at) = f.key_span(field) {
                d.push(
                    Problem::new(
                        ProblemCode::Contradiction,
                        at,
                        format!("`{field}` does not apply to an existing network"),
                        "bmac does not create this network",
                    )
                    .with_help(format!(
                        "remove `{field}`, or remove `network`, `subnetwork`, `pods_range` and \
                         `services_range` to let bmac create the network"
                    )),
                );
            }
        }
        let [(_, network), (_, subnetwork), (_, pods_range), (_, services_range)] = names;
        Some(ExistingGkeNetwork {
            network: network?,
            subnetwork: subnetwork?,
            pods_range: pods_range?,
            services_range: services_range?,
        })
    } else {
        None
    };
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Network {
        meta: meta(StepId::new("network").ok()?, deps),
        cidr,
        zones,
        nat: nat.map_or(NatMode::Single, |n| n.value),
        existing: None,
        gke: Some(GkeNetwork {
            pods_cidr,
            services_cidr,
            existing,
        }),
    })
}

/// Machine families Compute Engine offers for GKE nodes. A type outside them is almost always
/// a typo (`e2-standrad-4`, `n2-standard` without a size is caught by the shape rule).
pub const MACHINE_FAMILIES: &[&str] = &[
    "a2", "a3", "a4", "c2", "c2d", "c3", "c3d", "c4", "c4a", "c4d", "ct5l", "ct5lp", "ct6e", "e2",
    "f1", "g1", "g2", "g4", "h3", "m1", "m2", "m3", "m4", "n1", "n2", "n2d", "n4", "n4a", "n4d",
    "t2a", "t2d", "x4", "z3",
];

/// Whether `id` is a project id Google accepts: 6 to 30 characters, lower-case letters, digits
/// and hyphens, starting with a letter and not ending with a hyphen.
pub fn is_project_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Splits a GKE location into its region and zone: `europe-west1` is a region,
/// `europe-west1-b` a zone of it; `None` when it is neither.
pub fn location(location: &str) -> Option<(&str, Option<&str>)> {
    let parts: Vec<&str> = location.split('-').collect();
    let region_ok = |p: &[&str]| {
        p.len() == 2
            && !p[0].is_empty()
            && p[0].bytes().all(|b| b.is_ascii_lowercase())
            && p[1].len() >= 2
            && p[1].bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && p[1].bytes().last().is_some_and(|b| b.is_ascii_digit())
            && p[1]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match parts.len() {
        2 if region_ok(&parts) => Some((location, None)),
        3 if region_ok(&parts[..2])
            && parts[2].len() == 1
            && parts[2].bytes().all(|b| b.is_ascii_lowercase()) =>
        {
            let cut = location.len() - 2;
            Some((&location[..cut], Some(location)))
        }
        _ => None,
    }
}

/// The parts of a Cloud KMS key name: `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsKeyName<'a> {
    /// The project holding the key ring.
    pub project: &'a str,
    /// Its location (a region, a multi-region or `global`).
    pub location: &'a str,
    /// The key ring.
    pub key_ring: &'a str,
    /// The key.
    pub key: &'a str,
}

impl<'a> KmsKeyName<'a> {
    /// Splits a key name, or `None` when it is not one.
    pub fn parse(s: &'a str) -> Option<KmsKeyName<'a>> {
        let p: Vec<&str> = s.split('/').collect();
        match p.as_slice() {
            ["projects", project, "locations", location, "keyRings", ring, "cryptoKeys", key]
                if [project, location, ring, key].iter().all(|x| !x.is_empty()) =>
            {
                Some(KmsKeyName {
                    project,
                    location,
                    key_ring: ring,
                    key,
                })
            }
            _ => None,
        }
    }
}

fn contradiction(at: miette::SourceSpan, message: String, label: &str, help: String) -> Problem {
    Problem::new(ProblemCode::Contradiction, at, message, label).with_help(help)
}

/// The GKE rules (see the module docs); only for `provider = "gke"`.
pub(crate) fn validate_gke(spec: &Spec, out: &mut Vec<Problem>) {
    let cl = &spec.cluster;
    if cl.provider.value != Provider::Gke {
        return;
    }
    match &cl.project {
        None => out.push(
            Problem::new(
                ProblemCode::MissingField,
                cl.provider.span,
                "`provider = \"gke\"` needs the Google Cloud `project`",
                "in which project?",
            )
            .with_help("add `project = \"my-project\"` to `[cluster]` (the project id, not its name or number)"),
        ),
        Some(p) if !is_project_id(&p.value) => out.push(invalid(
            p.span,
            format!("`{}` is not a Google Cloud project id", p.value),
            "project id",
            "project ids are 6 to 30 lower-case letters, digits and hyphens, starting with a letter \
             (`acme-prod`); use the id, not the display name or number"
                .to_owned(),
        )),
        Some(_) => {}
    }
    let Some(region_field) = cl.region.as_ref() else {
        return;
    };
    let Some((region, _zone)) = location(&region_field.value) else {
        out.push(invalid(
            region_field.span,
            format!(
                "`{}` is not a Google Cloud region or zone",
                region_field.value
            ),
            "not a location",
            "write a region (`europe-west1`: a regional cluster) or a zone (`europe-west1-b`: a \
             zonal cluster)"
                .to_owned(),
        ));
        return;
    };
    if let Some(net) = &spec.network {
        for z in &net.zones {
            match location(&z.value) {
                Some((r, Some(_))) if r == region => {}
                Some((r, Some(_))) => out.push(
                    contradiction(
                        z.span,
                        format!("zone `{}` is in region `{r}`, the cluster in `{region}`", z.value),
                        "another region",
                        format!("GKE places nodes in zones of the cluster's region: use `{region}-b`, `{region}-c` …"),
                    )
                    .with_secondary(region_field.span, "the cluster's location"),
                ),
                _ => out.push(invalid(
                    z.span,
                    format!("`{}` is not a zone", z.value),
                    "not a zone",
                    format!("zones look like `{region}-b`"),
                )),
            }
        }
    }
    for pool in &spec.node_pools {
        if let [_, second, ..] = pool.instance_types.as_slice() {
            out.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    second.span,
                    format!("GKE node pools take one machine type; `{}` names {}", pool.name, pool.instance_types.len()),
                    "a second machine type",
                )
                .with_help("keep one type in `instance_types`, and make a `[[node_pool]]` for each other type (the cluster autoscaler picks between pools)"),
            );
        }
        for t in &pool.instance_types {
            let family = t.value.split('-').next().unwrap_or("");
            let shaped = t.value.matches('-').count() >= 1
                && t.value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !shaped {
                out.push(invalid(
                    t.span,
                    format!("`{}` is not a Compute Engine machine type", t.value),
                    "not family-type-size",
                    "write a machine type such as `e2-standard-4` or `n2-highmem-8`".to_owned(),
                ));
            } else if family != "custom" && !MACHINE_FAMILIES.contains(&family) {
                out.push(invalid(
                    t.span,
                    format!(
                        "`{}` is not a Compute Engine machine type: there is no family `{family}`",
                        t.value
                    ),
                    "unknown machine family",
                    match closest(family, MACHINE_FAMILIES) {
                        Some(c) => format!("did you mean `{c}{}`?", &t.value[family.len()..]),
                        None => "write a machine type such as `e2-standard-4`".to_owned(),
                    },
                ));
            }
        }
    }
    let key = |out: &mut Vec<Problem>, k: &Spanned<String>, what: &str, global_ok: bool| {
        let Some(name) = KmsKeyName::parse(&k.value) else {
            out.push(invalid(
                k.span,
                format!("`{}` is not a Cloud KMS key", k.value),
                "not a key name",
                format!("write the key's resource name, e.g. `projects/{}/locations/{region}/keyRings/RING/cryptoKeys/KEY`", cl.project.as_ref().map_or("PROJECT", |p| p.value.as_str())),
            ));
            return;
        };
        if name.location != region && !(global_ok && name.location == "global") {
            out.push(
                contradiction(
                    k.span,
                    format!(
                        "the {what} is in `{}`, the cluster in `{region}`",
                        name.location
                    ),
                    "another location",
                    format!(
                        "GKE needs the {what} in the cluster's region `{region}`{}",
                        if global_ok { " (or `global`)" } else { "" }
                    ),
                )
                .with_secondary(region_field.span, "the cluster's location"),
            );
        }
    };
    if let Some(k) = &cl.encryption_key {
        key(out, k, "Secrets key", false);
    }
    for class in &spec.storage_classes {
        if let Some(k) = &class.kms_key {
            key(out, k, "disk key", true);
        }
    }
    for admin in &cl.admins {
        let ok = ["user:", "group:", "serviceAccount:"]
            .iter()
            .any(|p| admin.value.strip_prefix(p).is_some_and(|e| e.contains('@')));
        if !ok {
            out.push(invalid(
                admin.span,
                format!("`{}` is not a Google principal", admin.value),
                "not an IAM member",
                "write an IAM member: `user:ana@example.com`, `group:platform@example.com` or \
                 `serviceAccount:ci@PROJECT.iam.gserviceaccount.com`"
                    .to_owned(),
            ));
        }
    }
    cni(spec, out);
    audit(spec, out);
    registries(spec, region, out);
    for wi in &spec.workload_identities {
        if let Access::Permissions(p) = &wi.access {
            for perm in p.iter().filter(|p| {
                !p.value.starts_with("roles/")
                    && !p.value.starts_with("projects/")
                    && !p.value.starts_with("organizations/")
            }) {
                out.push(invalid(
                    perm.span,
                    format!("`{}` is not an IAM role", perm.value),
                    "not a role",
                    "on GKE `permissions` are IAM roles granted on the project: `roles/storage.objectViewer`, or a custom role `projects/P/roles/R`".to_owned(),
                ));
            }
        }
    }
}

/// GKE's CNI is part of the cluster: Dataplane V2 is Google's Cilium, Calico is its network
/// policy enforcement; neither is installed from a bundle.
fn cni(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(c) = &spec.cni else { return };
    let managed = "GKE manages its CNI: `plugin = \"cilium\"` is Dataplane V2 and `\"calico\"` network policy enforcement";
    let stray = [
        (c.bundle.as_ref().map(|b| b.span), "bundle"),
        (c.mode.as_ref().map(|m| m.span), "mode"),
        (c.settings_span, "settings"),
    ];
    for (at, field) in stray {
        if let Some(at) = at {
            out.push(
                contradiction(
                    at,
                    format!("`{field}` does not apply to `[cni]` on GKE"),
                    "not used on GKE",
                    format!("{managed}; remove `{field}`"),
                )
                .with_secondary(spec.cluster.provider.span, "provider chosen here"),
            );
        }
    }
}

fn audit(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(a) = &spec.audit else { return };
    for t in &a.log_types {
        if t.value == LogType::Authenticator {
            out.push(contradiction(
                t.span,
                "GKE has no `authenticator` control-plane log".to_owned(),
                "EKS only",
                "GKE's control-plane logs are `api`, `scheduler` and `controller_manager`; `audit` turns on the Data Access audit logs".to_owned(),
            ));
        }
    }
    if let Some(archive) = &a.archive {
        if archive.value.scheme != ArchiveScheme::Gs {
            out.push(contradiction(
                archive.span,
                format!(
                    "a GKE cluster archives its audit logs to Cloud Storage, not `{}://`",
                    archive.value.scheme
                ),
                "not a Cloud Storage bucket",
                format!(
                    "write `archive = \"gs://{}/{}\"`",
                    archive.value.bucket, archive.value.prefix
                ),
            ));
        }
    }
    if let Some(at) = a.log_retention_days.as_ref().map(|d| d.span) {
        out.push(contradiction(
            at,
            "`log_retention_days` does not apply on GKE".to_owned(),
            "not used on GKE",
            "GKE's audit records stay in Cloud Logging's own buckets (Admin Activity 400 days, \
             Data Access 30 days by default), which bmac does not change; remove \
             `log_retention_days`, and keep records longer with `archive` and `retention_days`"
                .to_owned(),
        ));
    }
    if let Some(al) = &a.alarm {
        if let Some(notify) = &al.notify {
            notify_target(al.span, notify, out);
        }
    }
}

/// Whether `t` is a Pub/Sub topic id: 3 to 255 characters of letters, digits and `-_.~+%`,
/// starting with a letter and not with `goog`.
fn is_topic_id(t: &str) -> bool {
    (3..=255).contains(&t.len())
        && t.starts_with(|c: char| c.is_ascii_alphabetic())
        && !t.starts_with("goog")
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+%".contains(&b))
}

/// Whether `notify` is an address Cloud Monitoring can make an e-mail channel for: one `@`
/// between a non-empty local part and a dotted domain, nothing a path or a list would hold.
fn is_email(notify: &str) -> bool {
    notify.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
    }) && !notify.contains(['/', ' ', ',', ';'])
}

/// `[audit] alarm.notify` on GKE: what the Alarm handler uses — an e-mail address or a Pub/Sub
/// topic `projects/P/topics/T` (bmac makes an `email` or `pubsub` channel for it), or an
/// existing channel `projects/P/notificationChannels/N` (P an id or a number). Anything else
/// (an SNS ARN, a list of addresses) is refused here.
fn notify_target(at: miette::SourceSpan, notify: &str, out: &mut Vec<Problem>) {
    let project =
        |p: &str| is_project_id(p) || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let parts: Vec<&str> = notify.split('/').collect();
    let (ok, help) = match parts.as_slice() {
        ["projects", p, "notificationChannels", n] => (
            project(p) && !n.is_empty(),
            "write the channel's full name, `projects/PROJECT/notificationChannels/ID` \
             (`gcloud beta monitoring channels list` shows it)",
        ),
        ["projects", p, "topics", t] => (
            is_project_id(p) && is_topic_id(t),
            "write the topic's full name, `projects/PROJECT/topics/TOPIC` (a topic id is 3 to \
             255 letters, digits and `-_.~+%`, starting with a letter, not `goog`)",
        ),
        _ => (
            is_email(notify),
            "write an e-mail address or a Pub/Sub topic `projects/PROJECT/topics/TOPIC` (bmac \
             makes a channel for it), or an existing channel \
             `projects/PROJECT/notificationChannels/ID`",
        ),
    };
    if !ok {
        out.push(invalid(
            at,
            format!("`{notify}` is not a notification target bmac can alert on GKE"),
            "notify",
            help.to_owned(),
        ));
    }
}

/// Mirrors are Artifact Registry remote repositories: `LOCATION-docker.pkg.dev/PROJECT/REPO`.
fn registries(spec: &Spec, region: &str, out: &mut Vec<Problem>) {
    let Some(r) = &spec.registries else { return };
    for m in &r.mirrors {
        let v = &m.mirror.value;
        let parts: Vec<&str> = v.split('/').collect();
        let host_ok = parts
            .first()
            .and_then(|h| h.strip_suffix("-docker.pkg.dev"))
            .is_some_and(|loc| {
                location(loc).is_some_and(|(_, z)| z.is_none())
                    || ["us", "europe", "asia"].contains(&loc)
            });
        let repo_ok = parts.len() == 3
            && is_project_id(parts[1])
            && parts[2]
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
            && parts[2]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !host_ok || !repo_ok {
            out.push(invalid(
                m.mirror.span,
                format!("`{v}` is not an Artifact Registry repository"),
                "not LOCATION-docker.pkg.dev/PROJECT/REPO",
                format!("on GKE a mirror is an Artifact Registry remote repository bmac creates: `{region}-docker.pkg.dev/{}/{}`", spec.cluster.project.as_ref().map_or("PROJECT", |p| p.value.as_str()), m.upstream.value.split('.').next().unwrap_or("mirror")),
            ));
        }
    }
    // A remote repository authenticates to its upstream with a user name and a Secret Manager
    // secret version holding the password; the spec names only the secret, so bmac does not
    // make authenticated remotes yet, and says so here instead of making an anonymous one.
    for cred in &r.credentials {
        out.push(invalid(
            cred.arn.span,
            format!(
                "upstream credentials for `{}` are not supported on GKE yet",
                cred.upstream.value
            ),
            "not supported on GKE",
            "bmac makes Artifact Registry remote repositories that pull anonymously (Docker Hub's \
             anonymous rate limits apply); remove this entry, or make the remote repository with \
             its credentials yourself and set `pull_through_cache = false`"
                .to_owned(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_region_and_zone() {
        assert_eq!(location("europe-west1"), Some(("europe-west1", None)));
        assert_eq!(
            location("us-central1-f"),
            Some(("us-central1", Some("us-central1-f")))
        );
        assert_eq!(
            location("northamerica-northeast2"),
            Some(("northamerica-northeast2", None))
        );
        assert_eq!(
            location("eu-west-1"),
            None,
            "an AWS region is not a GCP one"
        );
        assert_eq!(location("europe-west1-bb"), None);
        assert_eq!(location("Europe-west1"), None);
    }

    #[test]
    fn project_ids_follow_google_rules() {
        assert!(is_project_id("acme-prod"));
        assert!(!is_project_id("acme"), "too short");
        assert!(!is_project_id("1acme-prod"), "starts with a digit");
        assert!(!is_project_id("acme-prod-"), "ends with a hyphen");
        assert!(!is_project_id("Acme-Prod"));
        assert!(!is_project_id(&"a".repeat(31)));
    }

    #[test]
    fn kms_key_names_split() {
        let k =
            KmsKeyName::parse("projects/p1/locations/europe-west1/keyRings/gke/cryptoKeys/disks")
                .unwrap();
        assert_eq!(
            (k.project, k.location, k.key_ring, k.key),
            ("p1", "europe-west1", "gke", "disks")
        );
        assert!(KmsKeyName::parse("projects/p1/locations/europe-west1/keyRings/gke").is_none());
        assert!(KmsKeyName::parse("arn:aws:kms:eu-west-1:1:key/x").is_none());
    }
}

//! Decoding the infrastructure sections: `[cluster]`, `[state]`, `[sim]`, `[[node_pool]]`,
//! `[cni]` and `[[storage_class]]`, plus the top-level dispatch shared by all sections.
//!
//! Decoders here check types, allowed values and name syntax, one table at a time. Rules
//! that relate two fields or two entries live in [`validate`](super::validate).

use std::path::PathBuf;

use super::decode::{meta, Decoder, Fields};
use super::diag::{Problem, ProblemCode};
use super::model::*;
use super::tree::{Node, NodeKind};
use bmac_core::step::StepId;

/// Every top-level section.
pub(crate) const SECTIONS: &[&str] = &[
    "cluster",
    "network",
    "state",
    "sim",
    "node_pool",
    "cni",
    "storage_class",
    "audit",
    "pod_security",
    "policy",
    "registries",
    "workload_identity",
    "namespace",
    "manifest",
];

/// The tables of an array-of-tables section (`[[node_pool]]`).
pub(crate) fn each_table<'a>(d: &mut Decoder, node: &'a Node, section: &str) -> Vec<&'a Node> {
    match &node.kind {
        NodeKind::Array(items) => items
            .iter()
            .filter(|n| {
                let ok = matches!(n.kind, NodeKind::Table(_));
                if !ok {
                    d.invalid(
                        n,
                        format!("each `{section}` item must be a table"),
                        format!("write each item as a `[[{section}]]` table"),
                    );
                }
                ok
            })
            .collect(),
        _ => {
            d.invalid(
                node,
                format!("`{section}` must be an array of tables"),
                format!("write `[[{section}]]` (double brackets), once per item"),
            );
            Vec::new()
        }
    }
}

/// Whether `s` is a DNS label (Kubernetes namespace / object name rules).
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a Kubernetes version `major.minor` (e.g. `1.30`).
fn is_minor_version(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Whether `s` is an IPv4 or IPv6 CIDR.
pub(crate) fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

/// Reads a name field and checks it against the DNS-label rules, which also make it a valid
/// step-id segment.
pub(crate) fn dns_name(
    d: &mut Decoder,
    f: &mut Fields<'_>,
    field: &str,
    what: &str,
) -> Option<Spanned<String>> {
    let name = d.req_str(f, field, "\"example\"")?;
    if !is_dns_label(&name.value) {
        d.push(
            Problem::new(
                ProblemCode::InvalidId,
                name.span,
                format!("{what} `{}` is not a valid name", name.value),
                "not a DNS label",
            )
            .with_help(
                "use lowercase letters, digits and `-`, starting and ending with a letter or \
                 digit, at most 63 characters",
            ),
        );
        return None;
    }
    Some(name)
}

/// Reads an entry's `name` field and the id `section.name`.
pub(crate) fn named_entry(
    d: &mut Decoder,
    f: &mut Fields<'_>,
    section: &str,
) -> Option<(Spanned<String>, StepId)> {
    let name = d.req_str(f, "name", "\"example\"")?;
    let id = d.entry_id(Some(section), &name, &format!("`{section}` name"))?;
    Some((name, id))
}

const CLUSTER_FIELDS: &[&str] = &[
    "name",
    "provider",
    "region",
    "version",
    "endpoint",
    "kubeconfig",
    "context",
    "account",
    "project",
    "encryption_key",
    "admins",
    "depends_on",
];
const ENDPOINT_FIELDS: &[&str] = &["public", "public_cidrs", "private"];

pub(crate) fn cluster(d: &mut Decoder, node: &Node) -> Option<Cluster> {
    let mut f = d.table(node, "cluster", "`[cluster]`", CLUSTER_FIELDS)?;
    let name = d.req_str(&mut f, "name", "\"prod\"");
    // The entry id is always `cluster`; the name must still be usable in ids and resource names.
    let id = name
        .as_ref()
        .and_then(|n| d.entry_id(None, n, "cluster name"))
        .and_then(|_| StepId::new("cluster").ok());
    if f.key_span("provider").is_none() {
        d.missing(&f, "provider", "\"sim\"");
    }
    let provider = d.choice(&mut f, "provider", Provider::NAMES, Provider::from_name);
    let region = d.nonempty_str(&mut f, "region");
    let version = d.str(&mut f, "version");
    if let Some(v) = &version {
        if !is_minor_version(&v.value) {
            d.invalid_at(
                v.span,
                format!("`{}` is not a Kubernetes minor version", v.value),
                "write `major.minor`, e.g. `version = \"1.30\"`",
            );
        }
    }
    let endpoint = f.get("endpoint").and_then(|n| endpoint(d, n));
    let kubeconfig = d
        .nonempty_str(&mut f, "kubeconfig")
        .map(|s| PathBuf::from(s.value));
    let context = d.nonempty_str(&mut f, "context").map(|s| s.value);
    let account = d.nonempty_str(&mut f, "account").map(|s| s.value);
    let project = d.nonempty_str(&mut f, "project");
    let encryption_key = d.nonempty_str(&mut f, "encryption_key");
    let admins = d.str_list(&mut f, "admins").unwrap_or_default();
    if let Some(p) = &provider {
        provider_fields(d, &f, p, region.is_some());
    }
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Cluster {
        meta: meta(id?, deps),
        name: name?,
        provider: provider?,
        region,
        version,
        endpoint,
        kubeconfig,
        context,
        account,
        project,
        encryption_key,
        admins,
    })
}

/// Fields that only some providers take, and the region that clouds require.
fn provider_fields(
    d: &mut Decoder,
    f: &Fields<'_>,
    provider: &Spanned<Provider>,
    has_region: bool,
) {
    let p = provider.value;
    if matches!(p, Provider::Eks | Provider::Gke) && !has_region && f.key_span("region").is_none() {
        d.missing(
            f,
            "region",
            if p == Provider::Eks {
                "\"eu-west-1\""
            } else {
                "\"europe-west1\""
            },
        );
    }
    let stray = [
        ("kubeconfig", p != Provider::Kube),
        ("context", p != Provider::Kube),
        ("account", p != Provider::Eks),
        ("project", p != Provider::Gke),
        ("endpoint", p == Provider::Kube),
        (
            "encryption_key",
            !matches!(p, Provider::Eks | Provider::Gke),
        ),
        ("admins", !matches!(p, Provider::Eks | Provider::Gke)),
    ];
    for (field, wrong) in stray {
        if let (true, Some(at)) = (wrong, f.key_span(field)) {
            d.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    at,
                    format!("`{field}` does not apply to `provider = \"{p}\"`"),
                    "not used by this provider",
                )
                .with_secondary(provider.span, "provider chosen here")
                .with_help(format!("remove `{field}` or change `provider`")),
            );
        }
    }
}

fn endpoint(d: &mut Decoder, node: &Node) -> Option<Endpoint> {
    let mut f = d.table(node, "endpoint", "`[cluster.endpoint]`", ENDPOINT_FIELDS)?;
    let public = d.bool_or(&mut f, "public", false);
    let private = d.bool_or(&mut f, "private", true).value;
    let public_cidrs = d.str_list(&mut f, "public_cidrs").unwrap_or_default();
    for c in &public_cidrs {
        if !is_cidr(&c.value) {
            d.invalid_at(
                c.span,
                format!("`{}` is not a CIDR", c.value),
                "write an address and prefix length, e.g. `203.0.113.0/24`",
            );
        }
    }
    let span = f.table_span();
    f.finish(d);
    Some(Endpoint {
        span,
        public,
        public_cidrs,
        private,
    })
}

const STATE_FIELDS: &[&str] = &["backend", "path", "bucket", "prefix", "region", "namespace"];

pub(crate) fn state(d: &mut Decoder, node: &Node) -> StateConfig {
    let Some(mut f) = d.table(node, "state", "`[state]`", STATE_FIELDS) else {
        return StateConfig::default();
    };
    let backend = d
        .choice(
            &mut f,
            "backend",
            StateBackendKind::NAMES,
            StateBackendKind::from_name,
        )
        .map_or(StateBackendKind::Local, |b| b.value);
    let path = d.nonempty_str(&mut f, "path");
    let bucket = d.nonempty_str(&mut f, "bucket");
    let prefix = d.str(&mut f, "prefix");
    let region = d.nonempty_str(&mut f, "region");
    let namespace = d.nonempty_str(&mut f, "namespace");
    let needs_bucket = matches!(backend, StateBackendKind::S3 | StateBackendKind::Gcs);
    if needs_bucket && bucket.is_none() && f.key_span("bucket").is_none() {
        d.missing(&f, "bucket", "\"my-bmac-state\"");
    }
    let stray: &[(&str, bool)] = &[
        ("path", backend != StateBackendKind::Local),
        ("bucket", !needs_bucket),
        ("prefix", !needs_bucket),
        ("region", backend != StateBackendKind::S3),
        ("namespace", backend != StateBackendKind::Kubernetes),
    ];
    for (field, wrong) in stray {
        if let (true, Some(at)) = (*wrong, f.key_span(field)) {
            d.push(
                Problem::new(
                    ProblemCode::Contradiction,
                    at,
                    format!("`{field}` does not apply to the `{backend}` state backend"),
                    "not used by this backend",
                )
                .with_help(format!("remove `{field}` or change `backend`")),
            );
        }
    }
    f.finish(d);
    StateConfig {
        backend,
        path: path.map(|p| PathBuf::from(p.value)),
        bucket: bucket.map(|b| b.value),
        prefix: prefix.map(|p| p.value),
        region: region.map(|r| r.value),
        namespace: namespace.map(|n| n.value),
    }
}

const SIM_FIELDS: &[&str] = &["seed", "speed", "faults"];
const FAULT_FIELDS: &[&str] = &["kind", "step", "error", "rate", "times"];

pub(crate) fn sim(d: &mut Decoder, node: &Node) -> Option<SimConfig> {
    let mut f = d.table(node, "sim", "`[sim]`", SIM_FIELDS)?;
    let seed = d
        .int(&mut f, "seed", 0, i64::MAX)
        .map_or(0, |s| s.value as u64);
    let speed = match d.number(&mut f, "speed") {
        Some(s) if s.value > 0.0 => s.value,
        Some(s) => {
            d.invalid_at(
                s.span,
                "`speed` must be greater than 0",
                "use 1.0 for realistic latencies, 0.001 to run a thousand times faster",
            );
            1.0
        }
        None => 1.0,
    };
    let faults = d.array(&mut f, "faults", fault).unwrap_or_default();
    f.finish(d);
    Some(SimConfig {
        seed,
        speed,
        faults,
    })
}

fn fault(d: &mut Decoder, node: &Node) -> Option<Fault> {
    let mut f = d.table(node, "faults[]", "a `[sim]` fault", FAULT_FIELDS)?;
    let kind = d.req_str(&mut f, "kind", "\"node_pool\"");
    if let Some(k) = &kind {
        d.entry_id(None, k, "fault kind");
    }
    let step = d
        .str(&mut f, "step")
        .and_then(|s| match StepId::new(&s.value) {
            Ok(id) => Some(id),
            Err(e) => {
                d.invalid_at(
                    s.span,
                    format!("`{}`: {}", s.value, e.reason),
                    "name a step id, e.g. `node_pool.system`",
                );
                None
            }
        });
    if f.key_span("error").is_none() {
        d.missing(&f, "error", "\"throttle\"");
    }
    let error = d.choice(&mut f, "error", FaultError::NAMES, FaultError::from_name);
    let rate = match d.number(&mut f, "rate") {
        Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
        Some(r) => {
            d.invalid_at(
                r.span,
                "`rate` must be between 0 and 1",
                "a probability, e.g. `rate = 0.2`",
            );
            0.0
        }
        None => 1.0,
    };
    let times = d.u32(&mut f, "times").map(|t| t.value);
    f.finish(d);
    Some(Fault {
        kind: kind?.value,
        step,
        error: error?.value,
        rate,
        times,
    })
}

const NODE_POOL_FIELDS: &[&str] = &[
    "name",
    "instance_types",
    "min",
    "max",
    "desired",
    "labels",
    "taints",
    "disk",
    "depends_on",
];
const TAINT_FIELDS: &[&str] = &["key", "value", "effect"];
const DISK_FIELDS: &[&str] = &["size_gb", "type", "encrypted"];

pub(crate) fn node_pool(d: &mut Decoder, node: &Node) -> Option<NodePool> {
    let mut f = d.table(node, "node_pool", "`[[node_pool]]`", NODE_POOL_FIELDS)?;
    let named = named_entry(d, &mut f, "node_pool");
    if f.key_span("instance_types").is_none() {
        d.missing(&f, "instance_types", "[\"m6i.large\"]");
    }
    let instance_types = d.str_list(&mut f, "instance_types");
    if let (Some([]), Some(at)) = (instance_types.as_deref(), f.key_span("instance_types")) {
        d.invalid_at(
            at,
            "`instance_types` must not be empty",
            "list at least one type",
        );
    }
    let instance_types = instance_types.unwrap_or_default();
    for (field, example) in [("min", "1"), ("max", "3")] {
        if f.key_span(field).is_none() {
            d.missing(&f, field, example);
        }
    }
    let min = d.u32(&mut f, "min");
    let max = d.u32(&mut f, "max");
    if let Some(m) = max.as_ref().filter(|m| m.value == 0) {
        d.invalid_at(
            m.span,
            "`max` must be at least 1",
            "a pool that can never have a node is not a pool; remove it instead",
        );
    }
    let desired = d.u32(&mut f, "desired");
    let labels = d.str_map(&mut f, "labels");
    let taints = d.array(&mut f, "taints", taint).unwrap_or_default();
    let disk = match f.get("disk") {
        Some(n) => disk(d, n),
        None => Some(Disk {
            size_gb: 50,
            volume_type: None,
            encrypted: Spanned::new(true, f.table_span()),
        }),
    };
    let deps = d.depends_on(&mut f);
    f.finish(d);
    let (name, id) = named?;
    Some(NodePool {
        meta: meta(id, deps),
        name: name.value,
        instance_types,
        min: min?,
        max: max?,
        desired,
        labels,
        taints,
        disk: disk?,
    })
}

fn taint(d: &mut Decoder, node: &Node) -> Option<Taint> {
    let mut f = d.table(node, "taints[]", "a node pool taint", TAINT_FIELDS)?;
    let key = d.req_str(&mut f, "key", "\"dedicated\"");
    let value = d.str(&mut f, "value").map(|v| v.value);
    if f.key_span("effect").is_none() {
        d.missing(&f, "effect", "\"NoSchedule\"");
    }
    let effect = d.choice(&mut f, "effect", TaintEffect::NAMES, TaintEffect::from_name);
    f.finish(d);
    Some(Taint {
        key: key?.value,
        value,
        effect: effect?.value,
    })
}

fn disk(d: &mut Decoder, node: &Node) -> Option<Disk> {
    let mut f = d.table(node, "disk", "a node pool `disk`", DISK_FIELDS)?;
    let size_gb = match d.u32(&mut f, "size_gb") {
        Some(s) if s.value >= 1 => s.value,
        Some(s) => {
            d.invalid_at(
                s.span,
                "`size_gb` must be at least 1",
                "e.g. `size_gb = 50`",
            );
            50
        }
        None => 50,
    };
    let volume_type = d.nonempty_str(&mut f, "type").map(|t| t.value);
    let encrypted = d.bool_or(&mut f, "encrypted", true);
    f.finish(d);
    Some(Disk {
        size_gb,
        volume_type,
        encrypted,
    })
}

const CNI_FIELDS: &[&str] = &[
    "plugin",
    "version",
    "settings",
    "bundle",
    "mode",
    "depends_on",
];

pub(crate) fn cni(d: &mut Decoder, node: &Node) -> Option<Cni> {
    let mut f = d.table(node, "cni", "`[cni]`", CNI_FIELDS)?;
    let plugin = match f.key_span("plugin") {
        Some(_) => d.choice(&mut f, "plugin", CniPlugin::NAMES, CniPlugin::from_name),
        None => Some(Spanned::new(CniPlugin::Default, f.table_span())),
    };
    let version = d.nonempty_str(&mut f, "version").map(|v| v.value);
    let settings = match f.get("settings") {
        None => serde_json::Map::new(),
        Some(n) => match to_json(n) {
            serde_json::Value::Object(m) => m,
            _ => {
                d.invalid(
                    n,
                    "`settings` must be a table",
                    "write `[cni.settings]` with the plugin's values",
                );
                serde_json::Map::new()
            }
        },
    };
    let settings_span = f.key_span("settings");
    let bundle = f
        .get("bundle")
        .and_then(|n| super::security::bundle(d, n, "`[cni]` `bundle`"));
    let mode = d.choice(&mut f, "mode", CniMode::NAMES, CniMode::from_name);
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Cni {
        meta: meta(StepId::new("cni").ok()?, deps),
        plugin: plugin?,
        version,
        settings,
        settings_span,
        bundle,
        mode,
    })
}

/// Converts a subtree to JSON (date-times become null: no plugin setting takes one).
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        NodeKind::Str(s) => Value::String(s.clone()),
        NodeKind::Int(i) => Value::from(*i),
        NodeKind::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Datetime => Value::Null,
        NodeKind::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Table(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), to_json(v)))
                .collect(),
        ),
    }
}

const STORAGE_FIELDS: &[&str] = &[
    "name",
    "default",
    "type",
    "encrypted",
    "kms_key",
    "reclaim_policy",
    "parameters",
    "depends_on",
];

pub(crate) fn storage_class(d: &mut Decoder, node: &Node) -> Option<StorageClass> {
    let mut f = d.table(node, "storage_class", "`[[storage_class]]`", STORAGE_FIELDS)?;
    let named = named_entry(d, &mut f, "storage_class");
    let default = d.bool_or(&mut f, "default", false);
    let volume_type = d.req_str(&mut f, "type", "\"gp3\"");
    let encrypted = d.bool_or(&mut f, "encrypted", true);
    let kms_key = d.nonempty_str(&mut f, "kms_key");
    let reclaim_policy = d
        .choice(
            &mut f,
            "reclaim_policy",
            ReclaimPolicy::NAMES,
            ReclaimPolicy::from_name,
        )
        .map_or(ReclaimPolicy::Delete, |r| r.value);
    let parameters = d.str_map(&mut f, "parameters");
    let deps = d.depends_on(&mut f);
    f.finish(d);
    let (name, id) = named?;
    Some(StorageClass {
        meta: meta(id, deps),
        name: name.value,
        default,
        volume_type: volume_type?.value,
        encrypted,
        kms_key,
        reclaim_policy,
        parameters,
    })
}

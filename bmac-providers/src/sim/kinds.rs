//! What each step kind looks like in the simulated cloud: how long it takes in the real
//! world, which configs the cloud rejects, and what outputs it returns.
//!
//! Latencies are those of the managed services the kinds stand for (a managed control plane
//! takes about ten minutes, a Kubernetes label milliseconds); the provider scales them by the
//! configured speed. Unknown kinds are served generically (1 s, one `id` output) so a custom
//! step in an embedder's catalogue runs against the simulator unchanged.
//!
//! Configs are read by the field names of the catalogue's typed configs
//! (`bmac_steps::config`): a cluster's `name`/`region`/`version`/`endpoint`, a node pool's
//! `scaling.{min,max,desired}`, an audit log's `cluster`, a mirror's `mirror`, a role's
//! `existing`, a service account's `namespace`/`name`/`role_annotation`, a policy's `name`,
//! a manifest's `objects`, the Pod Security modes `enforce`/`audit`/`warn`. Output names are
//! the ones the catalogue references: the cluster's `endpoint`, `ca_data`, `oidc_issuer` and
//! `credentials` (a plain [`CredentialSource::Sim`] naming the cluster: tokens are minted per
//! call, see [`tokens`](super::tokens)),
//! a role's `arn`, an audit log's `log_group`, a bucket's `bucket`.
//!
//! Invariant: outputs are a pure function of `(seed, step id, config, inputs)`. Identifiers
//! (`cluster_id`, `uid`, `node_group_id`, …) depend on the seed and step id only, so they stay
//! stable when the config is updated in place, exactly as a real resource keeps its id; values
//! that mirror the config (`nodes`, `version`, `endpoint`) follow it. Ids look like the real
//! thing (`sim-` and 12 hex digits) without ever colliding with real ones (`.invalid` hosts,
//! `arn:sim:` ARNs).

use std::time::Duration;

use bmac_core::step::{Inputs, Outputs, Step};
use bmac_steps::CredentialSource;
use serde_json::{json, Map, Value};

use super::seed;

/// The kinds the simulator knows by name, each with its real-world latency.
pub const KNOWN_KINDS: &[(&str, Duration)] = &[
    ("cluster", Duration::from_secs(600)),
    ("cni", Duration::from_secs(45)),
    ("node_pool", Duration::from_secs(240)),
    ("storage_class", Duration::from_millis(200)),
    ("object_bucket", Duration::from_secs(3)),
    ("audit_logging", Duration::from_secs(60)),
    ("audit_archive", Duration::from_secs(10)),
    ("audit_alarm", Duration::from_secs(5)),
    ("namespace", Duration::from_millis(100)),
    ("pod_security_labels", Duration::from_millis(100)),
    ("policy_engine", Duration::from_secs(90)),
    ("policy", Duration::from_secs(1)),
    ("registry_mirror", Duration::from_secs(20)),
    ("iam_role", Duration::from_secs(5)),
    ("service_account", Duration::from_millis(200)),
    ("manifest", Duration::from_millis(500)),
];

/// The kinds whose create is a long operation (accepted at once, polled until done), as a
/// managed cloud's control planes and node groups are.
pub const LONG_KINDS: &[&str] = &["cluster", "node_pool"];

/// Whether creating a `kind` is a long operation ([`LONG_KINDS`]).
pub fn is_long(kind: &str) -> bool {
    LONG_KINDS.contains(&kind)
}

/// The real-world latency of creating a resource of `kind` (1 s for unknown kinds).
pub fn base_latency(kind: &str) -> Duration {
    KNOWN_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(Duration::from_secs(1), |(_, d)| *d)
}

/// The outputs the cloud returns for `step` (given its resolved inputs), or the reason (a
/// `400 invalid request` message body) it rejects the step's config.
pub(crate) fn outputs(seed: u64, step: &Step, inputs: &Inputs) -> Result<Outputs, String> {
    let empty = Map::new();
    let config = match step.config.value() {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            return Err(format!(
                "config of `{}` must be an object, found {}",
                step.id,
                type_name(other)
            ))
        }
    };
    let view = ConfigView {
        seed,
        id: step.id.as_str(),
        config,
    };
    let out = Outputs::new();
    Ok(match step.kind.name() {
        "cluster" => cluster(&view)?,
        "cni" => out
            .with("plugin", view.string("plugin")?.unwrap_or("cilium"))
            .with("version", view.string("version")?.unwrap_or("1.16.0")),
        "node_pool" => out
            .with("node_group_id", view.sim_id("node_group"))
            .with("nodes", node_count(&view)?),
        "storage_class" | "policy" => out.with("name", view.name()?),
        "object_bucket" => {
            let bucket = view.name()?.replace('_', "-");
            out.with("url", format!("sim://bucket/{bucket}"))
                .with("bucket", bucket)
        }
        "audit_logging" => {
            let cluster = match view.string("cluster")? {
                Some(c) => dns_label(c),
                None => dns_label(view.name()?),
            };
            out.with("log_group", format!("/sim/audit/{cluster}"))
        }
        "audit_archive" => out.with("export_id", view.sim_id("export")),
        "audit_alarm" => out.with("alarm_id", view.sim_id("alarm")),
        "policy_engine" => out
            .with("engine", view.string("engine")?.unwrap_or("kyverno"))
            .with("version", view.string("version")?.unwrap_or("1.12.5")),
        "namespace" => out.with("name", view.name()?).with("uid", view.uid()),
        "pod_security_labels" => pod_security_labels(&view)?,
        "registry_mirror" => {
            let url = match view.string("mirror")? {
                Some(mirror) => format!("https://{mirror}"),
                None => format!(
                    "https://{}.mirror.{}.sim.bmac.invalid",
                    dns_label(view.name()?),
                    view.region()?
                ),
            };
            out.with("mirror_url", url)
        }
        "iam_role" => {
            let arn = match view.string("existing")? {
                Some(existing) => existing.to_owned(),
                None => format!("arn:sim:iam::{}:role/{}", account(seed), view.name()?),
            };
            out.with("arn", arn)
        }
        "service_account" => service_account(&view, inputs)?,
        "manifest" => out.with("objects", manifest_objects(&view)?),
        _ => out.with("id", view.sim_id("generic")),
    })
}

fn cluster(view: &ConfigView<'_>) -> Result<Outputs, String> {
    let name = dns_label(view.name()?);
    let region = view.region()?;
    if let Some(endpoint) = view.config.get("endpoint") {
        if !endpoint.is_object() && !endpoint.is_null() {
            return Err(format!(
                "`endpoint` of `{}` must be a table, found {}",
                view.id,
                type_name(endpoint)
            ));
        }
    }
    view.string("version")?;
    let cluster_id = view.sim_id("cluster");
    // A certificate-shaped PEM block of seeded bytes, base64-encoded as kubeconfigs carry it.
    let body: Vec<u8> = (0..3)
        .flat_map(|i| seed::digest(view.seed, "ca", view.id, i))
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        seed::base64(&body)
    );
    Ok(Outputs::new()
        .with(
            "endpoint",
            format!("https://{name}.{region}.sim.bmac.invalid"),
        )
        .with("ca_data", seed::base64(pem.as_bytes()))
        .with(
            "oidc_issuer",
            format!(
                "https://oidc.{region}.sim.bmac.invalid/id/{}",
                seed::hex(view.seed, "oidc", view.id, 32).to_uppercase()
            ),
        )
        .with("cluster_id", cluster_id.clone())
        .with(
            "credentials",
            CredentialSource::Sim { cluster_id }.to_value(),
        ))
}

/// A service account's outputs: its name and namespace, and the role annotation carrying the
/// `role` input (absent when the step has no role input).
fn service_account(view: &ConfigView<'_>, inputs: &Inputs) -> Result<Outputs, String> {
    let mut annotations = Map::new();
    if let Some(key) = view.string("role_annotation")? {
        if let Some(role) = view.string("role")? {
            annotations.insert(key.to_owned(), Value::String(role.to_owned()));
        }
        match inputs.get("role").map(|v| v.value()) {
            None => {}
            Some(Some(Value::String(role))) => {
                annotations.insert(key.to_owned(), Value::String(role.clone()));
            }
            Some(_) => {
                return Err(format!(
                    "the `role` input of `{}` must be a known string",
                    view.id
                ))
            }
        }
    }
    Ok(Outputs::new()
        .with("name", view.name()?)
        .with("namespace", view.string("namespace")?.unwrap_or("default"))
        .with("annotations", Value::Object(annotations)))
}

/// The `pod-security.kubernetes.io/*` labels of a namespace, from the `enforce`, `audit` and
/// `warn` modes (each `{level, version}`).
fn pod_security_labels(view: &ConfigView<'_>) -> Result<Outputs, String> {
    let mut labels = Map::new();
    for mode in ["enforce", "audit", "warn"] {
        let Some(setting) = view.config.get(mode) else {
            continue;
        };
        let level = setting.get("level").and_then(Value::as_str);
        let version = setting.get("version").and_then(Value::as_str);
        let (Some(level), Some(version)) = (level, version) else {
            return Err(format!(
                "`{mode}` of `{}` must be a table with string `level` and `version`",
                view.id
            ));
        };
        if !["privileged", "baseline", "restricted"].contains(&level) {
            return Err(format!(
                "`{mode}.level` of `{}` is `{level}`, not privileged, baseline or restricted",
                view.id
            ));
        }
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), json!(level));
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            json!(version),
        );
    }
    let namespace = view.string("namespace")?.unwrap_or("default");
    Ok(Outputs::new()
        .with("namespace", namespace)
        .with("labels", Value::Object(labels)))
}

/// The node count of a pool: `scaling.desired` (else `scaling.min`, else 1), checked against
/// `scaling.min..=scaling.max`.
fn node_count(view: &ConfigView<'_>) -> Result<u64, String> {
    let scaling = match view.config.get("scaling") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            return Err(format!(
                "`scaling` of `{}` must be a table, found {}",
                view.id,
                type_name(other)
            ))
        }
    };
    let count = |field: &str| -> Result<Option<u64>, String> {
        match scaling.and_then(|s| s.get(field)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                format!(
                    "`scaling.{field}` of `{}` must be a whole number ≥ 0, found {v}",
                    view.id
                )
            }),
        }
    };
    let min = count("min")?;
    let max = count("max")?;
    let desired = count("desired")?.or(min).unwrap_or(1);
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(format!("node pool `{}` has min {min} > max {max}", view.id));
        }
    }
    if min.is_some_and(|m| desired < m) || max.is_some_and(|m| desired > m) {
        return Err(format!(
            "node pool `{}` wants {desired} nodes, outside its min..max",
            view.id
        ));
    }
    Ok(desired)
}

fn manifest_objects(view: &ConfigView<'_>) -> Result<u64, String> {
    match view.config.get("objects") {
        Some(Value::Array(items)) => Ok(items.len() as u64),
        Some(other) => Err(format!(
            "`objects` of `{}` must be an array, found {}",
            view.id,
            type_name(other)
        )),
        None => Ok(view.count("count")?.unwrap_or(1)),
    }
}

/// The step's config, read with the error messages a cloud API would give.
struct ConfigView<'a> {
    seed: u64,
    id: &'a str,
    config: &'a Map<String, Value>,
}

impl<'a> ConfigView<'a> {
    fn string(&self, field: &str) -> Result<Option<&'a str>, String> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(other) => Err(format!(
                "`{field}` of `{}` must be a non-empty string, found {}",
                self.id,
                type_name(other)
            )),
        }
    }

    fn count(&self, field: &str) -> Result<Option<u64>, String> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                format!(
                    "`{field}` of `{}` must be a whole number ≥ 0, found {v}",
                    self.id
                )
            }),
        }
    }

    /// The `name` field, or the last segment of the step id.
    fn name(&self) -> Result<&'a str, String> {
        Ok(self
            .string("name")?
            .unwrap_or_else(|| self.id.rsplit('.').next().unwrap_or(self.id)))
    }

    fn region(&self) -> Result<&'a str, String> {
        Ok(self.string("region")?.unwrap_or("sim-central-1"))
    }

    fn sim_id(&self, purpose: &str) -> String {
        format!("sim-{}", seed::hex(self.seed, purpose, self.id, 12))
    }

    fn uid(&self) -> String {
        let h = seed::hex(self.seed, "uid", self.id, 32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// The simulated account number: twelve digits derived from the seed.
fn account(seed: u64) -> String {
    let bytes = seed::digest(seed, "account", "", 0);
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    format!("{:012}", u64::from_le_bytes(word) % 1_000_000_000_000)
}

/// A name made DNS-safe (underscores become dashes, lowercase).
fn dns_label(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

//! What each step kind looks like in the simulated cloud: how long it takes in the real
//! world, which configs the cloud rejects, and what outputs it returns.
//!
//! Latencies are those of the managed services the kinds stand for (a managed control plane
//! takes about ten minutes, a Kubernetes label milliseconds); the provider scales them by the
//! configured speed. Unknown kinds are served generically (1 s, one `id` output) so a custom
//! step in an embedder's catalogue runs against the simulator unchanged.
//!
//! Invariant: outputs are a pure function of `(seed, step id, config)`. Identifiers
//! (`cluster_id`, `uid`, `node_group_id`, …) depend on the seed and step id only, so they stay
//! stable when the config is updated in place, exactly as a real resource keeps its id; values
//! that mirror the config (`nodes`, `version`, `endpoint`) follow it. Ids look like the real
//! thing (`sim-` and 12 hex digits) without ever colliding with real ones (`.invalid` hosts,
//! `arn:sim:` ARNs).

use std::time::Duration;

use bmac_core::step::{Outputs, Step};
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
    ("policy_engine", Duration::from_secs(90)),
    ("policy", Duration::from_secs(1)),
    ("registry_mirror", Duration::from_secs(20)),
    ("iam_role", Duration::from_secs(5)),
    ("service_account", Duration::from_millis(200)),
    ("manifest", Duration::from_millis(500)),
];

/// The real-world latency of creating a resource of `kind` (1 s for unknown kinds).
pub fn base_latency(kind: &str) -> Duration {
    KNOWN_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(Duration::from_secs(1), |(_, d)| *d)
}

/// The outputs the cloud returns for `step`, or the reason (a `400 invalid request` message
/// body) it rejects the step's config.
pub(crate) fn outputs(seed: u64, step: &Step) -> Result<Outputs, String> {
    let empty = Map::new();
    let config = match &step.config {
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
            let group = match view.string("log_group")? {
                Some(g) => g.to_owned(),
                None => format!("/sim/audit/{}", view.name()?),
            };
            out.with("log_group", group)
        }
        "audit_archive" => out.with("export_id", view.sim_id("export")),
        "audit_alarm" => out.with("alarm_id", view.sim_id("alarm")),
        "namespace" => out.with("name", view.name()?).with("uid", view.uid()),
        "policy_engine" => out
            .with("engine", view.string("engine")?.unwrap_or("kyverno"))
            .with("version", view.string("version")?.unwrap_or("1.12.5")),
        "registry_mirror" => out.with(
            "mirror_url",
            format!(
                "https://{}.mirror.{}.sim.bmac.invalid",
                dns_label(view.name()?),
                view.region()?
            ),
        ),
        "iam_role" => out.with(
            "arn",
            format!("arn:sim:iam::{}:role/{}", account(seed), view.name()?),
        ),
        "service_account" => {
            let annotations = match config.get("annotations") {
                None | Some(Value::Null) => json!({}),
                Some(a @ Value::Object(_)) => a.clone(),
                Some(other) => {
                    return Err(format!(
                        "`annotations` of `{}` must be an object, found {}",
                        step.id,
                        type_name(other)
                    ))
                }
            };
            out.with("name", view.name()?)
                .with("annotations", annotations)
        }
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
        .with("cluster_id", view.sim_id("cluster"))
        .with_sensitive(
            "token",
            format!("simtok.{}", seed::hex(view.seed, "token", view.id, 48)),
        ))
}

fn node_count(view: &ConfigView<'_>) -> Result<u64, String> {
    let min = view.count("min")?;
    let max = view.count("max")?;
    let desired = view.count("desired")?.or(min).unwrap_or(1);
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

//! `namespace`: a namespace and the labels bmac sets on it.
//!
//! The namespace is applied with field manager `bmac`. Labels other managers put on it are
//! left alone: observe reports only the labels the step declares plus those bmac still owns
//! (so a label removed from the spec shows until the next apply drops it), and a declared
//! label that is missing live is reported as `null`. Outputs: `name`, `uid`, and `created` —
//! whether bmac created the namespace; destroy deletes it only then (waiting until it is
//! gone), and otherwise removes only bmac's labels.

use std::collections::BTreeSet;

use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::NamespaceConfig;
use serde_json::{json, Map, Value};

use super::fields;
use super::objects::{created_by, Create, Session, FIELD_MANAGER};

fn desired(cfg: &NamespaceConfig) -> Value {
    let mut meta = json!({ "name": cfg.name });
    if !cfg.labels.is_empty() {
        meta["labels"] = json!(cfg.labels);
    }
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": meta })
}

fn outputs(live: &Value, created: bool) -> Outputs {
    Outputs::new()
        .with(
            "name",
            live.pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .with(
            "uid",
            live.pointer("/metadata/uid")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .with("created", created)
}

pub(crate) async fn apply(s: &Session<'_>, step: &Step) -> Result<Outputs, ProviderError> {
    let cfg: NamespaceConfig = super::config(step)?;
    let applied = s
        .apply(&desired(&cfg), FIELD_MANAGER, Create::Allow)
        .await?;
    Ok(outputs(&applied.live, applied.created_by_step))
}

pub(crate) async fn observe(s: &Session<'_>, step: &Step) -> Result<Observed, ProviderError> {
    let cfg: NamespaceConfig = super::config(step)?;
    let target = s.target(&desired(&cfg)).await?;
    let Some(live) = s.get(&target).await? else {
        return Ok(Observed::Absent);
    };
    let declared = cfg.labels.keys().cloned();
    let labels = observed_map(&live, "labels", declared, FIELD_MANAGER);
    let mut config = json!({ "name": cfg.name });
    if !labels.is_empty() {
        config["labels"] = Value::Object(labels);
    }
    let created = created_by(&live) == Some(step.id.as_str());
    Ok(Observed::Present {
        config,
        outputs: outputs(&live, created),
    })
}

pub(crate) async fn destroy(s: &Session<'_>, step: &Step) -> Result<(), ProviderError> {
    let cfg: NamespaceConfig = super::config(step)?;
    s.remove(&desired(&cfg), FIELD_MANAGER).await?;
    Ok(())
}

/// The live entries of a metadata map (`labels` or `annotations`) for the keys a step declares
/// and the keys `manager` owns; a declared key missing live is `null`.
pub(crate) fn observed_map(
    live: &Value,
    map: &str,
    declared: impl IntoIterator<Item = String>,
    manager: &str,
) -> Map<String, Value> {
    let keys: BTreeSet<String> = declared
        .into_iter()
        .chain(fields::managed_metadata_keys(live, manager, map))
        .collect();
    let values = live.pointer(&format!("/metadata/{map}"));
    keys.into_iter()
        .map(|k| {
            let v = values
                .and_then(|m| m.get(&k))
                .cloned()
                .unwrap_or(Value::Null);
            (k, v)
        })
        .collect()
}

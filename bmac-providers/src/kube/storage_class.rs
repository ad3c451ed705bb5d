//! `storage_class`: a StorageClass.
//!
//! The config maps to the object as: `provisioner`; parameters `type` and `encrypted`
//! (`"true"`/`"false"`) plus the extra `parameters`; `reclaimPolicy`, `volumeBindingMode`,
//! `allowVolumeExpansion`; and, when `default`, the annotation
//! `storageclass.kubernetes.io/is-default-class: "true"` (absent otherwise, so turning
//! `default` off removes bmac's annotation). Kubernetes forbids changing a StorageClass's
//! provisioner, parameters, reclaim policy or binding mode; the kind's replacement fields
//! make the planner replace the object instead, and a change that still reaches the server
//! comes back as a permanent "invalid" error with the server's reason.

use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::StorageClassConfig;
use serde_json::{json, Map, Value};

use super::objects::{Create, Session, FIELD_MANAGER};

/// The annotation marking the cluster's default StorageClass.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

fn desired(cfg: &StorageClassConfig) -> Value {
    let mut parameters: Map<String, Value> = cfg
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    parameters.insert("type".into(), json!(cfg.kind));
    parameters.insert("encrypted".into(), json!(cfg.encrypted.to_string()));
    let mut meta = json!({ "name": cfg.name });
    if cfg.default {
        meta["annotations"] = json!({ DEFAULT_CLASS: "true" });
    }
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": meta,
        "provisioner": cfg.provisioner,
        "parameters": parameters,
        "reclaimPolicy": cfg.reclaim_policy,
        "volumeBindingMode": cfg.volume_binding_mode,
        "allowVolumeExpansion": cfg.allow_volume_expansion,
    })
}

pub(crate) async fn apply(s: &Session<'_>, step: &Step) -> Result<Outputs, ProviderError> {
    let cfg: StorageClassConfig = super::config(step)?;
    let applied = s
        .apply(&desired(&cfg), FIELD_MANAGER, Create::Allow)
        .await?;
    Ok(Outputs::new()
        .with("name", cfg.name.clone())
        .with("created", applied.created_by_step))
}

/// The config rebuilt from a live StorageClass.
fn observed_config(live: &Value) -> Value {
    let text = |p: &str| live.pointer(p).cloned().unwrap_or(Value::Null);
    let params = live.get("parameters").and_then(Value::as_object);
    let param = |k: &str| {
        params
            .and_then(|p| p.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let extra: Map<String, Value> = params
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "type" && k.as_str() != "encrypted")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let default = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CLASS))
        .and_then(Value::as_str)
        == Some("true");
    let mut config = json!({
        "name": text("/metadata/name"),
        "provisioner": text("/provisioner"),
        "type": param("type"),
        "encrypted": param("encrypted").as_str().map(|e| e == "true"),
        "default": default,
        "reclaim_policy": text("/reclaimPolicy"),
        "volume_binding_mode": text("/volumeBindingMode"),
        "allow_volume_expansion": live.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false),
    });
    if !extra.is_empty() {
        config["parameters"] = Value::Object(extra);
    }
    config
}

pub(crate) async fn observe(s: &Session<'_>, step: &Step) -> Result<Observed, ProviderError> {
    let cfg: StorageClassConfig = super::config(step)?;
    let target = s.target(&desired(&cfg)).await?;
    let Some(live) = s.get(&target).await? else {
        return Ok(Observed::Absent);
    };
    let created = super::objects::created_by(&live) == Some(step.id.as_str());
    Ok(Observed::Present {
        config: observed_config(&live),
        outputs: Outputs::new()
            .with("name", cfg.name.clone())
            .with("created", created),
    })
}

pub(crate) async fn destroy(s: &Session<'_>, step: &Step) -> Result<(), ProviderError> {
    let cfg: StorageClassConfig = super::config(step)?;
    s.remove(&desired(&cfg), FIELD_MANAGER).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_object_round_trips_to_the_config_shape() {
        let cfg: StorageClassConfig = serde_json::from_value(json!({
            "name": "gp3", "provisioner": "ebs.csi.aws.com", "type": "gp3", "encrypted": true,
            "default": true, "reclaim_policy": "Delete", "volume_binding_mode": "WaitForFirstConsumer",
            "allow_volume_expansion": true, "parameters": {"iops": "3000"}
        }))
        .unwrap();
        let live = desired(&cfg);
        assert_eq!(live["parameters"]["encrypted"], json!("true"));
        let back: StorageClassConfig = serde_json::from_value(observed_config(&live)).unwrap();
        assert_eq!(back, cfg);
    }
}

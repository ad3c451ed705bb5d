//! `service_account`: a ServiceAccount annotated with the cloud role it acts as.
//!
//! The annotation key comes from the config (`eks.amazonaws.com/role-arn`,
//! `iam.gke.io/gcp-service-account` …) and its value from the `role` input, resolved from the
//! role step's output when the step runs. Observe reports the annotation key when the
//! annotation is present (and `null` when it is gone) and the live value as output `role`.
//! Destroy deletes the ServiceAccount if bmac created it; otherwise it only drops the
//! annotation. With no annotation key (a role the cloud binds outside the cluster, as EKS Pod
//! Identity does) the account is written plain and takes no role.

use bmac_core::provider::Observed;
use bmac_core::{Inputs, Outputs, ProviderError, Step};
use bmac_steps::config::{ServiceAccountConfig, INPUT_ROLE};
use serde_json::{json, Value};

use super::objects::{Create, Session, FIELD_MANAGER};

fn desired(cfg: &ServiceAccountConfig, role: Option<&str>) -> Value {
    let mut meta = json!({ "name": cfg.name, "namespace": cfg.namespace });
    if let Some(role) = role {
        meta["annotations"] = json!({ cfg.role_annotation.as_str(): role });
    }
    json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta })
}

fn outputs(cfg: &ServiceAccountConfig, live: &Value) -> Outputs {
    let role = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(&cfg.role_annotation))
        .filter(|_| !cfg.role_annotation.is_empty())
        .cloned()
        .unwrap_or(Value::Null);
    Outputs::new()
        .with("name", cfg.name.clone())
        .with("namespace", cfg.namespace.clone())
        .with("role", role)
}

pub(crate) async fn apply(
    s: &Session<'_>,
    step: &Step,
    inputs: &Inputs,
) -> Result<Outputs, ProviderError> {
    let cfg: ServiceAccountConfig = super::config(step)?;
    if cfg.role_annotation.is_empty() {
        let applied = s
            .apply(&desired(&cfg, None), FIELD_MANAGER, Create::Allow)
            .await?;
        return Ok(outputs(&cfg, &applied.live));
    }
    let role = cfg
        .role
        .as_deref()
        .or_else(|| inputs.str(INPUT_ROLE))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "service account {}/{} has no `{INPUT_ROLE}` input for annotation {:?}; wire it \
             to the role step's output",
                cfg.namespace, cfg.name, cfg.role_annotation
            ))
        })?;
    let applied = s
        .apply(&desired(&cfg, Some(role)), FIELD_MANAGER, Create::Allow)
        .await?;
    Ok(outputs(&cfg, &applied.live))
}

pub(crate) async fn observe(s: &Session<'_>, step: &Step) -> Result<Observed, ProviderError> {
    let cfg: ServiceAccountConfig = super::config(step)?;
    let target = s.target(&desired(&cfg, None)).await?;
    let Some(live) = s.get(&target).await? else {
        return Ok(Observed::Absent);
    };
    let annotated = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(&cfg.role_annotation))
        .is_some();
    let mut config = json!({ "namespace": cfg.namespace, "name": cfg.name });
    if !cfg.role_annotation.is_empty() {
        config["role_annotation"] = if annotated {
            json!(cfg.role_annotation)
        } else {
            Value::Null
        };
    }
    Ok(Observed::Present {
        config,
        outputs: outputs(&cfg, &live),
    })
}

pub(crate) async fn destroy(s: &Session<'_>, step: &Step) -> Result<(), ProviderError> {
    let cfg: ServiceAccountConfig = super::config(step)?;
    s.remove(&desired(&cfg, None), FIELD_MANAGER).await?;
    Ok(())
}

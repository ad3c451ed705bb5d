//! `pod_security_labels`: the six `pod-security.kubernetes.io/*` labels of one namespace.
//!
//! The labels are applied by server-side apply of a Namespace body holding only those labels,
//! with its own field manager [`POD_SECURITY_FIELD_MANAGER`]. A separate manager is required,
//! not a style choice: with one manager for both, applying the `namespace` step (which does
//! not list PodSecurity labels) would tell the server bmac no longer wants them and remove
//! them. The namespace must already exist (a `namespace` step or one the cluster has, such as
//! `default` or `kube-system`): this step never creates one. Destroy releases only these
//! labels — they vanish unless another manager also set them — and never the namespace.
//!
//! Note: the PodSecurity admission plugin exists from Kubernetes 1.22; older servers store the
//! labels without enforcing them.

use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::PodSecurityLabelsConfig;
use serde_json::{json, Map, Value};

use super::objects::{Create, Session};

/// The field manager of PodSecurity labels.
pub const POD_SECURITY_FIELD_MANAGER: &str = "bmac-pod-security";

const LEVELS: &[&str] = &["privileged", "baseline", "restricted"];
const MODES: &[&str] = &["enforce", "audit", "warn"];

fn checked(step: &Step) -> Result<PodSecurityLabelsConfig, ProviderError> {
    let cfg: PodSecurityLabelsConfig = super::config(step)?;
    for (mode, m) in [
        ("enforce", &cfg.enforce),
        ("audit", &cfg.audit),
        ("warn", &cfg.warn),
    ] {
        if !LEVELS.contains(&m.level.as_str()) {
            return Err(ProviderError::permanent(format!(
                "PodSecurity {mode} level {:?} is not one of {}",
                m.level,
                LEVELS.join(", ")
            )));
        }
        let version_ok = m.version == "latest"
            || m.version.strip_prefix('v').is_some_and(|v| {
                let parts: Vec<&str> = v.split('.').collect();
                parts.len() == 2
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            });
        if !version_ok {
            return Err(ProviderError::permanent(format!(
                "PodSecurity {mode} version {:?} must be `latest` or `v<major>.<minor>`",
                m.version
            )));
        }
    }
    Ok(cfg)
}

fn desired(cfg: &PodSecurityLabelsConfig) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": cfg.namespace, "labels": cfg.labels() },
    })
}

pub(crate) async fn apply(s: &Session<'_>, step: &Step) -> Result<Outputs, ProviderError> {
    let cfg = checked(step)?;
    let applied = s
        .apply(&desired(&cfg), POD_SECURITY_FIELD_MANAGER, Create::Forbid)
        .await?;
    Ok(Outputs::new()
        .with("namespace", cfg.namespace.clone())
        .with("labels", live_labels(&applied.live)))
}

fn live_labels(live: &Value) -> Value {
    let labels = live.pointer("/metadata/labels").and_then(Value::as_object);
    Value::Object(
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("pod-security.kubernetes.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

pub(crate) async fn observe(s: &Session<'_>, step: &Step) -> Result<Observed, ProviderError> {
    let cfg: PodSecurityLabelsConfig = super::config(step)?;
    let target = s.target(&desired(&cfg)).await?;
    let Some(live) = s.get(&target).await? else {
        return Ok(Observed::Absent);
    };
    let labels = live_labels(&live);
    if labels.as_object().is_none_or(Map::is_empty) {
        return Ok(Observed::Absent);
    }
    let mut config = json!({ "namespace": cfg.namespace });
    for mode in MODES {
        let get = |suffix: &str| {
            labels
                .get(format!("pod-security.kubernetes.io/{mode}{suffix}"))
                .cloned()
                .unwrap_or(Value::Null)
        };
        config[*mode] = json!({ "level": get(""), "version": get("-version") });
    }
    Ok(Observed::Present {
        config,
        outputs: Outputs::new()
            .with("namespace", cfg.namespace.clone())
            .with("labels", labels),
    })
}

pub(crate) async fn destroy(s: &Session<'_>, step: &Step) -> Result<(), ProviderError> {
    let cfg: PodSecurityLabelsConfig = super::config(step)?;
    s.remove(&desired(&cfg), POD_SECURITY_FIELD_MANAGER).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmac_core::StepId;

    fn step(level: &str, version: &str) -> Step {
        let mode = json!({"level": level, "version": version});
        Step::new(
            StepId::new("psa.payments").unwrap(),
            bmac_steps::kinds::kind("pod_security_labels"),
            &json!({"namespace": "payments", "enforce": mode, "audit": mode, "warn": mode}),
        )
        .unwrap()
    }

    #[test]
    fn levels_and_versions_are_validated() {
        assert!(checked(&step("restricted", "latest")).is_ok());
        assert!(checked(&step("baseline", "v1.29")).is_ok());
        let e = checked(&step("strict", "latest")).unwrap_err();
        assert!(
            e.message.contains("\"strict\" is not one of"),
            "{}",
            e.message
        );
        assert!(checked(&step("baseline", "1.29")).is_err());
        assert!(checked(&step("baseline", "v1.x")).is_err());
    }

    #[test]
    fn desired_object_carries_exactly_the_six_labels() {
        let cfg = checked(&step("restricted", "latest")).unwrap();
        let labels = desired(&cfg)["metadata"]["labels"]
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(labels.len(), 6);
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce"],
            json!("restricted")
        );
    }
}

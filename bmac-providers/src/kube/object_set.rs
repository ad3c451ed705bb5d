//! `policy` and `manifest`: lists of arbitrary Kubernetes objects, applied in order; and the
//! removal of any object list bmac applied (also used by `policy_engine`).
//!
//! Each object is mapped to its resource through API discovery, so anything the cluster
//! serves works — a Kyverno `ClusterPolicy` once the engine's CRDs are established (the engine
//! step is a dependency; until then the kind is "not served yet", a retryable error), a
//! Gatekeeper `ConstraintTemplate` and its constraint, a ConfigMap. Namespaced objects that
//! name no namespace go to `default`, as kubectl does.
//!
//! Observe reports each object cut down to the fields the step declares (`objects[i]` is
//! `null` when the object is gone); fields other managers or the server added are not shown.
//! Outputs record the identity of every object applied (`objects`) and which of them this step
//! created (`created`); destroy walks `objects` backwards, deleting what the step created and
//! releasing bmac's fields on the rest.

use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::{ManifestConfig, PolicyConfig};
use bmac_steps::kinds;
use serde_json::{json, Value};

use super::fields;
use super::objects::{identity, Applied, Create, Session, FIELD_MANAGER};

/// The objects a `policy` or `manifest` step declares.
fn declared(step: &Step) -> Result<Vec<Value>, ProviderError> {
    let objects = if step.kind.name() == kinds::POLICY {
        let cfg: PolicyConfig = super::config(step)?;
        cfg.objects
    } else {
        let cfg: ManifestConfig = super::config(step)?;
        cfg.objects
    };
    for (i, o) in objects.iter().enumerate() {
        let has = |p: &str| o.pointer(p).and_then(Value::as_str).is_some();
        if !(has("/apiVersion") && has("/kind") && has("/metadata/name")) {
            return Err(ProviderError::permanent(format!(
                "objects[{i}] needs `apiVersion`, `kind` and `metadata.name`"
            )));
        }
    }
    Ok(objects)
}

/// Outputs describing applied objects: `objects` (identities, namespaces resolved) and
/// `created` (descriptions of those this step created).
pub(crate) fn applied_outputs(applied: &[Applied]) -> Outputs {
    let objects: Vec<Value> = applied
        .iter()
        .map(|a| {
            let mut id = identity(&a.live);
            if let Some(ns) = &a.target.namespace {
                id["metadata"]["namespace"] = json!(ns);
            }
            id
        })
        .collect();
    let created: Vec<String> = applied
        .iter()
        .filter(|a| a.created_by_step)
        .map(|a| a.target.describe())
        .collect();
    Outputs::new()
        .with("objects", objects)
        .with("created", created)
}

pub(crate) async fn apply(s: &Session<'_>, step: &Step) -> Result<Outputs, ProviderError> {
    let mut applied = Vec::new();
    for object in declared(step)? {
        applied.push(s.apply(&object, FIELD_MANAGER, Create::Allow).await?);
    }
    Ok(applied_outputs(&applied))
}

pub(crate) async fn observe(s: &Session<'_>, step: &Step) -> Result<Observed, ProviderError> {
    let mut observed = Vec::new();
    let mut applied = Vec::new();
    for object in declared(step)? {
        let target = s.target(&object).await?;
        match s.get(&target).await? {
            Some(live) => {
                observed.push(fields::project(&live, &object));
                let created_by_step = super::objects::created_by(&live) == Some(step.id.as_str());
                applied.push(Applied {
                    target,
                    live,
                    created_by_step,
                });
            }
            None => observed.push(Value::Null),
        }
    }
    if applied.is_empty() {
        return Ok(Observed::Absent);
    }
    Ok(Observed::Present {
        config: json!({ "objects": observed }),
        outputs: applied_outputs(&applied),
    })
}

/// Removes, last first, the objects a step applied: from its recorded `objects` output, or —
/// for a `policy`/`manifest` step recorded without it — from its config.
pub(crate) async fn destroy(
    s: &Session<'_>,
    step: &Step,
    prior: &Outputs,
) -> Result<(), ProviderError> {
    let recorded = prior
        .get("objects")
        .and_then(|o| o.value())
        .and_then(Value::as_array)
        .cloned();
    let objects = match recorded {
        Some(objects) => objects,
        None if step.kind.name() == kinds::POLICY_ENGINE => {
            return Err(ProviderError::permanent(
                "the recorded outputs list no `objects`; nothing is known to remove",
            ))
        }
        None => declared(step)?,
    };
    for object in objects.iter().rev() {
        s.remove(object, FIELD_MANAGER).await?;
    }
    Ok(())
}

//! `policy` and `manifest`: lists of arbitrary Kubernetes objects — written in the spec, or a
//! manifest's release bundle — applied together; and the removal of any object list bmac
//! applied (also used by `policy_engine`). A `cni` step's bundle is read, observed and removed
//! here too (`cni.rs` adds what it does to `aws-node`).
//!
//! Each object is mapped to its resource through API discovery, so anything the cluster
//! serves works — a Kyverno `ClusterPolicy` once the engine's CRDs are established (the engine
//! step is a dependency; until then the kind is "not served yet", a retryable error), a
//! Gatekeeper `ConstraintTemplate` and its constraint, a ConfigMap. Namespaced objects that
//! name no namespace go to the manifest's `namespace` (as `kubectl apply -n`), else to
//! `default`, as kubectl does — a CNI's to `kube-system` ([`super::cni::NAMESPACE`]).
//!
//! Applying ([`apply_all`], shared with the engine): first every object's API is checked
//! (`served.rs`) so nothing is written when the cluster cannot take all of them; then the
//! CustomResourceDefinitions are applied and waited for until `Established`, then every other
//! object in the order written. A bundle's bytes come from `fetch.rs` (verified before they
//! are parsed; downloaded only by apply).
//!
//! Observe reports each written object cut down to the fields the step declares (`objects[i]`
//! is `null` when the object is gone); fields other managers or the server added are not
//! shown. A bundle is observed like the engine's: its `bundle.sha256` reads "<digest> with N
//! object(s) changed outside bmac: …" when some object is missing or no longer as applied; a
//! URL bundle not in this machine's cache (observe never downloads) is checked for the
//! presence of the objects its last apply recorded. Outputs record the identity of every
//! object applied (`objects`) and which of them this step created (`created`); destroy walks
//! `objects` backwards, deleting what the step created and releasing bmac's fields on the
//! rest.

use bmac_core::provider::{Observed, Prior};
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::{CniConfig, ManifestConfig, PolicyConfig};
use bmac_steps::kinds;
use serde_json::{json, Value};

use super::bundle;
use super::fetch::Need;
use super::fields;
use super::objects::{identity, Applied, Create, Session, FIELD_MANAGER};
use super::served;

/// What a `policy` or `manifest` step declares.
struct Declared {
    objects: Vec<Value>,
    /// Where namespaced objects without a namespace go.
    namespace: Option<String>,
    /// The manifest's bundle, when the objects came from one.
    bundle: Option<bmac_steps::config::Bundle>,
}

/// What a step's config declares, its bundle not read yet.
fn config_of(step: &Step) -> Result<Declared, ProviderError> {
    Ok(match step.kind.name() {
        kinds::POLICY => {
            let cfg: PolicyConfig = super::config(step)?;
            Declared {
                objects: cfg.objects,
                namespace: None,
                bundle: None,
            }
        }
        kinds::CNI => {
            let cfg: CniConfig = super::config(step)?;
            Declared {
                objects: Vec::new(),
                namespace: Some(super::cni::NAMESPACE.to_owned()),
                bundle: cfg.bundle,
            }
        }
        _ => {
            let cfg: ManifestConfig = super::config(step)?;
            Declared {
                objects: cfg.objects,
                namespace: cfg.namespace,
                bundle: cfg.bundle,
            }
        }
    })
}

/// The objects a step declares; `None` for a URL bundle not cached when `need` is
/// [`Need::CachedOnly`].
async fn declared(
    s: &Session<'_>,
    step: &Step,
    need: Need,
) -> Result<Option<Declared>, ProviderError> {
    let mut declared = config_of(step)?;
    if let Some(b) = &declared.bundle {
        let Some(objects) = bundle_objects(s, b, need).await? else {
            return Ok(None);
        };
        declared.objects = objects;
    }
    for (i, o) in declared.objects.iter().enumerate() {
        let has = |p: &str| o.pointer(p).and_then(Value::as_str).is_some();
        if !(has("/apiVersion") && has("/kind") && has("/metadata/name")) {
            return Err(ProviderError::permanent(format!(
                "objects[{i}] needs `apiVersion`, `kind` and `metadata.name`"
            )));
        }
    }
    Ok(Some(declared))
}

/// The objects of a bundle, its bytes verified first (`fetch.rs`); `None` for a URL bundle
/// not cached when `need` is [`Need::CachedOnly`].
pub(crate) async fn bundle_objects(
    s: &Session<'_>,
    b: &bmac_steps::config::Bundle,
    need: Need,
) -> Result<Option<Vec<Value>>, ProviderError> {
    let bytes = s
        .bundles
        .bytes(&b.source, &b.sha256, need)
        .await
        .map_err(|e| e.into_provider_error())?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let objects = bundle::parse(&b.source, &bytes)
        .map_err(|e| ProviderError::permanent(e.to_string()).with_source(e))?;
    Ok(Some(objects))
}

/// Applies `objects` (namespace-less namespaced ones into `namespace`): every API checked
/// first, then CRDs (waited for until `Established`), then the rest in order.
pub(crate) async fn apply_all(
    s: &Session<'_>,
    objects: &[Value],
    namespace: Option<&str>,
) -> Result<Vec<Applied>, ProviderError> {
    served::check(s, objects, namespace).await?;
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = objects.iter().partition(|o| bundle::is_crd(o));
    let mut applied: Vec<Applied> = Vec::with_capacity(objects.len());
    for object in crds {
        applied.push(
            s.apply_in(object, None, FIELD_MANAGER, Create::Allow)
                .await?,
        );
    }
    wait_established(s, &applied).await?;
    for object in rest {
        let done = s.apply_in(object, namespace, FIELD_MANAGER, Create::Allow);
        applied.push(done.await?);
    }
    Ok(applied)
}

async fn wait_established(s: &Session<'_>, applied: &[Applied]) -> Result<(), ProviderError> {
    for a in applied
        .iter()
        .filter(|a| a.target.resource.kind == "CustomResourceDefinition")
    {
        s.wait_for(&a.target, "to be Established", |o| {
            o.is_some_and(|crd| condition_true(crd, "Established"))
        })
        .await?;
    }
    Ok(())
}

/// Whether `object` has a status condition `kind` that is `True`.
pub(crate) fn condition_true(object: &Value, kind: &str) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
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
    let Some(d) = declared(s, step, Need::Download).await? else {
        return Err(ProviderError::permanent("the bundle could not be fetched"));
    };
    let applied = apply_all(s, &d.objects, d.namespace.as_deref()).await?;
    Ok(applied_outputs(&applied))
}

pub(crate) async fn observe(
    s: &Session<'_>,
    step: &Step,
    prior: Option<&Prior>,
) -> Result<Observed, ProviderError> {
    let Some(d) = declared(s, step, Need::CachedOnly).await? else {
        // A URL bundle this machine has not cached: look for what the last apply recorded.
        return observe_recorded(s, config_of(step)?.bundle.as_ref(), prior).await;
    };
    let ns = d.namespace.as_deref();
    let mut observed = Vec::new();
    let mut applied = Vec::new();
    let mut drifted = Vec::new();
    for object in &d.objects {
        let target = s.target_in(object, ns).await?;
        match s.get(&target).await? {
            Some(live) => {
                observed.push(fields::project(&live, object));
                let placed = placed(object, &target);
                if !s.in_sync(&placed, &target, &live, FIELD_MANAGER) {
                    drifted.push(target.describe());
                }
                let created_by_step = super::objects::created_by(&live) == Some(step.id.as_str());
                applied.push(Applied {
                    target,
                    live,
                    created_by_step,
                });
            }
            None => {
                observed.push(Value::Null);
                drifted.push(format!("{} (missing)", target.describe()));
            }
        }
    }
    if applied.is_empty() {
        return Ok(Observed::Absent);
    }
    let config = match &d.bundle {
        Some(b) => bundle_config(b, &drifted),
        None => json!({ "objects": observed }),
    };
    Ok(Observed::Present {
        config,
        outputs: applied_outputs(&applied),
    })
}

/// `object` with the namespace its target resolved to (what apply sent).
fn placed(object: &Value, target: &super::objects::Target) -> Value {
    let mut placed = object.clone();
    if let (Some(ns), Some(meta)) = (&target.namespace, placed.get_mut("metadata")) {
        meta["namespace"] = json!(ns);
    }
    placed
}

/// A bundle manifest's observed config: its bundle, the digest marked when objects moved.
fn bundle_config(b: &bmac_steps::config::Bundle, drifted: &[String]) -> Value {
    let mut sha256 = b.sha256.to_ascii_lowercase();
    if !drifted.is_empty() {
        sha256 = format!(
            "{sha256} with {} object(s) changed outside bmac: {}",
            drifted.len(),
            drifted.join(", ")
        );
    }
    json!({ "bundle": { "source": b.source, "sha256": sha256 } })
}

/// Observes a bundle by the identities its last apply recorded (presence only).
async fn observe_recorded(
    s: &Session<'_>,
    bundle: Option<&bmac_steps::config::Bundle>,
    prior: Option<&Prior>,
) -> Result<Observed, ProviderError> {
    let (Some(b), Some(recorded)) = (bundle, prior.and_then(|p| recorded(p.outputs()))) else {
        return Ok(Observed::Absent);
    };
    let mut applied = Vec::new();
    let mut missing = Vec::new();
    for object in &recorded {
        let target = s.target(object).await?;
        match s.get(&target).await? {
            Some(live) => applied.push(Applied {
                created_by_step: super::objects::created_by(&live) == Some(s.step.as_str()),
                target,
                live,
            }),
            None => missing.push(format!("{} (missing)", target.describe())),
        }
    }
    if applied.is_empty() {
        return Ok(Observed::Absent);
    }
    Ok(Observed::Present {
        config: bundle_config(b, &missing),
        outputs: applied_outputs(&applied),
    })
}

/// The object identities a step's outputs recorded (`objects`).
pub(crate) fn recorded(outputs: &Outputs) -> Option<Vec<Value>> {
    outputs
        .get("objects")
        .and_then(|o| o.value())
        .and_then(Value::as_array)
        .cloned()
}

/// Removes, last first, the objects a step applied: from its recorded `objects` output, or —
/// for a `policy`/`manifest` step recorded without it — from its config.
pub(crate) async fn destroy(
    s: &Session<'_>,
    step: &Step,
    prior: &Outputs,
) -> Result<(), ProviderError> {
    let objects = match recorded(prior) {
        Some(objects) => objects,
        None if step.kind.name() == kinds::POLICY_ENGINE => {
            return Err(ProviderError::permanent(
                "the recorded outputs list no `objects`; nothing is known to remove",
            ))
        }
        None => match declared(s, step, Need::CachedOnly).await? {
            Some(d) => d.objects,
            None => return Err(ProviderError::permanent(
                "the recorded outputs list no `objects` and the bundle is not cached; nothing is known to remove",
            )),
        },
    };
    for object in objects.iter().rev() {
        s.remove(object, FIELD_MANAGER).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_condition_is_read_from_status() {
        let crd = json!({"status": {"conditions": [
            {"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]}});
        assert!(condition_true(&crd, "Established"));
        assert!(!condition_true(&json!({"status": {}}), "Established"));
        let pending =
            json!({"status": {"conditions": [{"type": "Established", "status": "False"}]}});
        assert!(!condition_true(&pending, "Established"));
    }
}

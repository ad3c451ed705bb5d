//! `policy_engine`: installs Kyverno or Gatekeeper from its release bundle.
//!
//! Order of work, each step a precondition of the next:
//! 1. read the bundle — a local file, the cache, or (apply only) a download, see `fetch.rs` —
//!    and verify its SHA-256 against the config: a mismatch is a permanent error naming both
//!    digests, and nothing at all has been written;
//! 2. parse it (multi-document YAML), rewrite workload images per `image_mirrors`, and mark
//!    every object with the install's identity (annotations `bmac.dev/policy-engine`,
//!    `…-version`, `bmac.dev/bundle-sha256`, `bmac.dev/bundle-source`, `bmac.dev/image-mirrors`);
//! 3. check that the cluster serves the API of every object (`served.rs`; nothing is written
//!    otherwise), apply the CustomResourceDefinitions and wait until each is `Established` (polling, with
//!    the provider's wait timeout) — the engine's own objects and every `policy` step need them;
//! 4. apply every other object in bundle order;
//! 5. only if the provider is told to ([`super::KubeProvider::wait_for_workloads`]), wait for
//!    the Deployments, DaemonSets and StatefulSets to be ready. By default bmac does not: that
//!    needs nodes, and on an API server without a scheduler (the test environment) it never
//!    happens.
//!
//! Observe rebuilds the config from the identity annotations on the live objects. When some
//! object of the bundle is missing or no longer as bmac applied it (an image edited by hand, a
//! CRD deleted), what is installed is not the verified bundle any more: the observed
//! `bundle.sha256` then reads "<digest> with N object(s) changed outside bmac: <objects>", so
//! drift shows the field as moved and names the objects; apply puts them back. Destroy
//! removes the recorded objects last-first (see `object_set.rs`); deleting the CRDs removes the
//! policies they hold.

use bmac_core::provider::{Observed, Prior};
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::bundle_cache::normalise;
use bmac_steps::config::PolicyEngineConfig;
use serde_json::{json, Value};

use super::bundle;
use super::fetch::Need;
use super::object_set::{applied_outputs, apply_all, bundle_objects, recorded};
use super::objects::{created_by, Applied, Session, Target, FIELD_MANAGER};

const ENGINE: &str = "bmac.dev/policy-engine";
const VERSION: &str = "bmac.dev/policy-engine-version";
const SHA256: &str = "bmac.dev/bundle-sha256";
const SOURCE: &str = "bmac.dev/bundle-source";
const MIRRORS: &str = "bmac.dev/image-mirrors";

/// The config and the bundle's objects, verified, ordered, rewritten and annotated; `None`
/// for a URL bundle not cached when `need` is [`Need::CachedOnly`].
async fn prepared(
    s: &Session<'_>,
    step: &Step,
    need: Need,
) -> Result<Option<(PolicyEngineConfig, Vec<Value>)>, ProviderError> {
    let cfg: PolicyEngineConfig = super::config(step)?;
    if !matches!(cfg.engine.as_str(), "kyverno" | "gatekeeper") {
        return Err(ProviderError::permanent(format!(
            "policy engine {:?} is not `kyverno` or `gatekeeper`",
            cfg.engine
        )));
    }
    let Some(b) = &cfg.bundle else {
        return Err(ProviderError::permanent(format!(
            "policy engine {} {} has no `bundle`; the kube provider installs from a release \
             bundle pinned by its sha256",
            cfg.engine, cfg.version
        )));
    };
    let Some(parsed) = bundle_objects(s, b, need).await? else {
        return Ok(None);
    };
    let mut objects = bundle::apply_order(parsed);
    bundle::rewrite_images(&mut objects, &cfg.image_mirrors);
    let identity = json!({
        ENGINE: cfg.engine,
        VERSION: cfg.version,
        SHA256: normalise(&b.sha256),
        SOURCE: b.source,
        MIRRORS: serde_json::to_string(&cfg.image_mirrors).unwrap_or_default(),
    });
    for object in &mut objects {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
            if let (Some(a), Some(add)) = (annotations.as_object_mut(), identity.as_object()) {
                a.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    Ok(Some((cfg, objects)))
}

pub(crate) async fn apply(
    s: &Session<'_>,
    step: &Step,
    wait_for_workloads: bool,
) -> Result<Outputs, ProviderError> {
    let Some((cfg, objects)) = prepared(s, step, Need::Download).await? else {
        return Err(ProviderError::permanent("the bundle could not be fetched"));
    };
    let applied = apply_all(s, &objects, None).await?;
    if wait_for_workloads {
        for a in &applied {
            if workload_kind(&a.target) {
                s.wait_for(&a.target, "to be ready", |o| o.is_some_and(ready))
                    .await?;
            }
        }
    }
    let crds: Vec<String> = applied
        .iter()
        .filter(|a| a.target.resource.kind == "CustomResourceDefinition")
        .map(|a| a.target.name.clone())
        .collect();
    let sha = cfg.bundle.as_ref().map(|b| b.sha256.to_ascii_lowercase());
    let mut outputs = applied_outputs(&applied)
        .with("engine", cfg.engine.clone())
        .with("version", cfg.version.clone())
        .with("crds", crds);
    if let Some(sha) = sha {
        outputs = outputs.with("bundle_sha256", sha);
    }
    Ok(outputs)
}

fn workload_kind(t: &Target) -> bool {
    t.resource.group == "apps"
        && matches!(
            t.resource.kind.as_str(),
            "Deployment" | "DaemonSet" | "StatefulSet"
        )
}

/// Whether a workload reports all its replicas ready for its current generation.
fn ready(o: &Value) -> bool {
    let num = |p: &str| o.pointer(p).and_then(Value::as_i64);
    let generation_seen = num("/status/observedGeneration") >= num("/metadata/generation");
    let ready = match o.get("kind").and_then(Value::as_str) {
        Some("DaemonSet") => {
            let want = num("/status/desiredNumberScheduled").unwrap_or(0);
            want > 0 && num("/status/numberReady").unwrap_or(0) >= want
        }
        _ => num("/status/readyReplicas").unwrap_or(0) >= num("/spec/replicas").unwrap_or(1),
    };
    generation_seen && ready
}

pub(crate) async fn observe(
    s: &Session<'_>,
    step: &Step,
    prior: Option<&Prior>,
) -> Result<Observed, ProviderError> {
    // A URL bundle this machine has not cached (observe never downloads): look for the
    // objects the last apply recorded, by presence only.
    let (objects, compare) = match prepared(s, step, Need::CachedOnly).await? {
        Some((_, objects)) => (objects, true),
        None => match prior.and_then(|p| recorded(p.outputs())) {
            Some(objects) => (objects, false),
            None => return Ok(Observed::Absent),
        },
    };
    let mut applied = Vec::new();
    let mut drifted = Vec::new();
    for object in &objects {
        let target = s.target(object).await?;
        match s.get(&target).await? {
            Some(live) => {
                if compare && !s.in_sync(object, &target, &live, FIELD_MANAGER) {
                    drifted.push(target.describe());
                }
                let created_by_step = created_by(&live) == Some(step.id.as_str());
                applied.push(Applied {
                    target,
                    live,
                    created_by_step,
                });
            }
            None => drifted.push(format!("{} (missing)", target.describe())),
        }
    }
    let Some(first) = applied.first() else {
        return Ok(Observed::Absent);
    };
    let annotation = |key: &str| {
        first
            .live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mirrors = annotation(MIRRORS)
        .as_str()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null);
    let mut config = json!({
        "engine": annotation(ENGINE),
        "version": annotation(VERSION),
        "bundle": { "source": annotation(SOURCE), "sha256": annotation(SHA256) },
    });
    if mirrors.as_object().is_some_and(|m| !m.is_empty()) {
        config["image_mirrors"] = mirrors;
    }
    if !drifted.is_empty() {
        // What is installed is no longer the verified bundle: say so in the digest field, which
        // drift compares, and name the objects.
        let recorded = annotation(SHA256);
        config["bundle"]["sha256"] = json!(format!(
            "{} with {} object(s) changed outside bmac: {}",
            recorded.as_str().unwrap_or("unknown bundle"),
            drifted.len(),
            drifted.join(", ")
        ));
    }
    Ok(Observed::Present {
        config,
        outputs: applied_outputs(&applied),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_replica_of_the_current_generation() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "readyReplicas": 2}});
        assert!(ready(&d));
        let stale = json!({"kind": "Deployment", "metadata": {"generation": 3},
            "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "readyReplicas": 2}});
        assert!(!ready(&stale));
        let fresh = json!({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {}});
        assert!(!ready(&fresh));
        let ds = json!({"kind": "DaemonSet", "metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 3}});
        assert!(ready(&ds));
    }
}

//! The policy concern: `policy.engine` (Kyverno or Gatekeeper) and one `policy.<name>` step
//! per baseline or extra policy.
//!
//! The engine runs as pods, so it is installed after the node pools (something to schedule
//! on) and the CNI, and after every registry mirror — its images are rewritten to the mirrors
//! (`image_mirrors`), which must exist to serve them. A bundle given as a path is resolved
//! against the spec's directory; it must be pinned by `sha256`, which providers verify before
//! applying anything. The engine's bundle creates its own namespace (`kyverno`,
//! `gatekeeper-system`), so that namespace's Pod Security labels come after the engine. Each
//! policy comes after the engine (its CRDs and webhooks);
//! `restrict-registries` also after every mirror, since it allows the mirror hosts.
//!
//! Unpinned engine versions default to [`KYVERNO_VERSION`] / [`GATEKEEPER_VERSION`], the
//! releases bmac's policies are written against.

use crate::spec::{BaselinePolicy, Policy, PolicyEngine};

use super::workloads::{default_labels, exempt_namespaces};
use super::Catalogue;
use crate::config::{PolicyConfig, PolicyEngineConfig};
use crate::error::CatalogueError;
use crate::policies::{self, PolicyContext};
use crate::{kinds, objects};

/// The Kyverno release used when the spec pins none.
pub const KYVERNO_VERSION: &str = "1.12.5";
/// The Gatekeeper release used when the spec pins none.
pub const GATEKEEPER_VERSION: &str = "3.16.3";

pub(super) fn expand(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let spec = c.spec;
    let Some(policy) = &spec.policy else {
        return Ok(());
    };
    let engine = policy.engine.value;
    let mirrors = c.of_kind(kinds::REGISTRY_MIRROR);
    let config = PolicyEngineConfig {
        engine: engine.as_str().to_owned(),
        version: policy.version.as_ref().map_or_else(
            || match engine {
                PolicyEngine::Kyverno => KYVERNO_VERSION.to_owned(),
                PolicyEngine::Gatekeeper => GATEKEEPER_VERSION.to_owned(),
            },
            |v| v.value.clone(),
        ),
        bundle: policy
            .bundle
            .as_ref()
            .map(|b| crate::bundle::pinned(spec, &c.base, &b.value, b.span))
            .transpose()?,
        image_mirrors: spec
            .registries
            .iter()
            .flat_map(|r| &r.mirrors)
            .map(|m| (m.upstream.value.clone(), m.mirror.value.clone()))
            .collect(),
    };
    let engine_id = c.id("policy.engine", policy.meta.span)?;
    let mut step = c.step(engine_id.clone(), kinds::POLICY_ENGINE, &config)?;
    let runs_on = c
        .of_kind(kinds::NODE_POOL)
        .into_iter()
        .chain(c.of_kind(kinds::CNI))
        .chain(mirrors.iter().cloned());
    for dep in runs_on {
        step = step.depends_on(dep);
    }
    let step = c.in_cluster(step);
    c.add(&policy.meta.id, policy.meta.span, step);
    // The engine's bundle creates its namespace: label it once it exists.
    let own = [policies::engine_namespace(engine).to_owned()];
    super::workloads::label_after(c, &engine_id, &own, policy.meta.span)?;

    let cx = context(spec, policy);
    let mut made: Vec<&str> = Vec::new();
    for baseline in &policy.baseline {
        let name = baseline.value.as_str();
        if made.contains(&name) {
            continue;
        }
        made.push(name);
        let config = PolicyConfig {
            name: name.to_owned(),
            engine: engine.as_str().to_owned(),
            objects: policies::objects(engine, baseline.value, &cx),
        };
        let id = c.id(&format!("policy.{name}"), baseline.span)?;
        let mut step = c
            .step(id, kinds::POLICY, &config)?
            .depends_on(engine_id.clone());
        if baseline.value == BaselinePolicy::RestrictRegistries {
            for mirror in &mirrors {
                step = step.depends_on(mirror.clone());
            }
        }
        let step = c.in_cluster(step);
        c.add(&policy.meta.id, baseline.span, step);
    }
    for extra in &policy.extra {
        let what = format!("policy `{}`", extra.name.value);
        let objects = objects::load(spec, &c.base, &extra.source, &what, extra.name.span)?;
        let config = PolicyConfig {
            name: extra.name.value.clone(),
            engine: engine.as_str().to_owned(),
            objects,
        };
        let id = c.id(&format!("policy.{}", extra.name.value), extra.name.span)?;
        let step = c
            .step(id, kinds::POLICY, &config)?
            .depends_on(engine_id.clone());
        let step = c.in_cluster(step);
        c.add(&policy.meta.id, extra.name.span, step);
    }
    Ok(())
}

/// What the baseline policies are generated from.
fn context(spec: &crate::spec::Spec, policy: &Policy) -> PolicyContext {
    let engine = policy.engine.value;
    let mut registries: Vec<String> = Vec::new();
    if let Some(r) = &spec.registries {
        let listed = r.allowed.iter().map(|a| a.value.clone());
        let mirrored = r.mirrors.iter().map(|m| m.mirror.value.clone());
        for reg in listed.chain(mirrored) {
            if !registries.contains(&reg) {
                registries.push(reg);
            }
        }
    }
    let mut excluded = vec![
        "kube-system".to_owned(),
        policies::engine_namespace(engine).to_owned(),
    ];
    for ns in exempt_namespaces(spec) {
        if !excluded.contains(&ns) {
            excluded.push(ns);
        }
    }
    PolicyContext {
        mode: policy.mode,
        background: policy.background.as_ref().is_none_or(|b| b.value),
        webhook_timeout_seconds: policy.webhook_timeout_seconds.as_ref().map(|t| t.value),
        registries,
        pod_security: default_labels(spec),
        excluded_namespaces: excluded,
    }
}

//! The workload concerns: namespaces, their Pod Security labels, workload identity and extra
//! manifests.
//!
//! - `namespace.<name>`: an in-cluster namespace with its labels.
//! - `pod_security.<ns>`: the six `pod-security.kubernetes.io/*` labels of a namespace, after
//!   the namespace step when bmac creates the namespace. Made for every declared namespace
//!   when `[pod_security]` is present (its defaults, with the namespace's own override or
//!   `[pod_security.overrides.<ns>]` on top), for a declared namespace with its own
//!   `pod_security` or `exempt` even without `[pod_security]`, and for system namespaces the
//!   spec overrides or exempts. An exempt namespace "ignores Pod Security": all three modes
//!   are `privileged`.
//! - `workload_identity.<name>.role` (an `iam_role` trusting the cluster's OIDC issuer) and
//!   `workload_identity.<name>.service_account`, annotated with the role's `arn` — so the
//!   account is written only once the role exists, and after its namespace. On an existing
//!   cluster (`provider = "kube"`) there is no role step: the spec names an existing role and
//!   the account carries it in its config.
//! - On EKS, by default, EKS Pod Identity binds the role instead: the role trusts
//!   `pods.eks.amazonaws.com`, `workload_identity.<name>.binding` (an `identity_binding`, the
//!   Pod Identity association) runs after the Pod Identity agent add-on, and the account
//!   (without annotation) after the binding. `mechanism = "irsa"` keeps the annotation and makes
//!   the role trust the cluster's IAM OIDC provider (`cluster.oidc`) for this one account.
//! - `manifest.<name>`: the objects (or a release bundle), after the namespaces they live in —
//!   those its objects name, and its `namespace`, where namespaced objects without one go —
//!   and those namespaces' Pod Security labels, and after every policy — so the workloads a
//!   spec ships are admitted under the baseline, never before it is in force.
//! - A namespace a manifest *creates* (a `Namespace` among its objects; for a bundle, whose
//!   objects are read only when it is applied, its `namespace` unless the spec declares that
//!   namespace) is the exception: its Pod Security labels can only be set once it exists, so
//!   `pod_security.<ns>` runs after the manifest instead of before it. The policy engine's
//!   own namespace (`kyverno`, `gatekeeper-system`) is created by the engine's bundle, so its
//!   labels run after `policy.engine` (see `policy.rs`).

use crate::spec::{ManifestSource, Mechanism, Provider, PsaLevel, PsaOverride, PsaSetting, Spec};
use bmac_core::step::{Ref, StepId};

use super::infra::role_annotation;
use super::Catalogue;
use crate::config::{
    IamRoleConfig, IdentityBindingConfig, ManifestConfig, NamespaceConfig, PodSecurityLabelsConfig,
    PodSecurityMode, ServiceAccountConfig, INPUT_OIDC_ISSUER, INPUT_OIDC_PROVIDER, INPUT_ROLE,
    OUTPUT_ARN, OUTPUT_OIDC_ISSUER, ROLE_FOR_IRSA,
};
use crate::error::CatalogueError;
use crate::{kinds, objects};

pub(super) fn namespaces(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    for ns in &c.spec.namespaces {
        let config = NamespaceConfig {
            name: ns.name.value.clone(),
            labels: ns.labels.clone(),
        };
        let step = c.step(ns.meta.id.clone(), kinds::NAMESPACE, &config)?;
        let step = c.in_cluster(step);
        c.add(&ns.meta.id, ns.meta.span, step);
    }
    Ok(())
}

fn mode(setting: &PsaSetting) -> PodSecurityMode {
    PodSecurityMode {
        level: setting.level.value.as_str().to_owned(),
        version: setting.version.clone(),
    }
}

/// The cluster-wide Pod Security defaults (`namespace` left empty): `[pod_security]`'s, or
/// enforce `baseline`, audit and warn `restricted` when the section is absent.
pub(crate) fn default_labels(spec: &Spec) -> PodSecurityLabelsConfig {
    let fixed = |level: PsaLevel| PodSecurityMode {
        level: level.as_str().to_owned(),
        version: "latest".to_owned(),
    };
    match &spec.pod_security {
        Some(ps) => PodSecurityLabelsConfig {
            namespace: String::new(),
            enforce: mode(&ps.enforce),
            audit: mode(&ps.audit),
            warn: mode(&ps.warn),
        },
        None => PodSecurityLabelsConfig {
            namespace: String::new(),
            enforce: fixed(PsaLevel::Baseline),
            audit: fixed(PsaLevel::Restricted),
            warn: fixed(PsaLevel::Restricted),
        },
    }
}

/// Every namespace the spec exempts from Pod Security, each once.
pub(crate) fn exempt_namespaces(spec: &Spec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let listed = spec
        .pod_security
        .iter()
        .flat_map(|ps| ps.exempt.iter().map(|e| e.value.clone()));
    let flagged = spec
        .namespaces
        .iter()
        .filter(|n| n.exempt.value)
        .map(|n| n.name.value.clone());
    for ns in listed.chain(flagged) {
        if !out.contains(&ns) {
            out.push(ns);
        }
    }
    out
}

fn labels_for(
    defaults: &PodSecurityLabelsConfig,
    namespace: &str,
    over: Option<&PsaOverride>,
    exempt: bool,
) -> PodSecurityLabelsConfig {
    if exempt {
        let privileged = PodSecurityMode {
            level: PsaLevel::Privileged.as_str().to_owned(),
            version: "latest".to_owned(),
        };
        return PodSecurityLabelsConfig {
            namespace: namespace.to_owned(),
            enforce: privileged.clone(),
            audit: privileged.clone(),
            warn: privileged,
        };
    }
    let pick = |o: Option<&PsaSetting>, d: &PodSecurityMode| o.map_or_else(|| d.clone(), mode);
    PodSecurityLabelsConfig {
        namespace: namespace.to_owned(),
        enforce: pick(over.and_then(|o| o.enforce.as_ref()), &defaults.enforce),
        audit: pick(over.and_then(|o| o.audit.as_ref()), &defaults.audit),
        warn: pick(over.and_then(|o| o.warn.as_ref()), &defaults.warn),
    }
}

pub(super) fn pod_security(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let spec = c.spec;
    let ps = spec.pod_security.as_ref();
    let defaults = default_labels(spec);
    let exempt = exempt_namespaces(spec);
    let section_override = |ns: &str| {
        ps.and_then(|p| p.overrides.iter().find(|o| o.namespace.value == ns))
            .map(|o| &o.settings)
    };
    let exempt_span = |ns: &str| {
        ps.and_then(|p| p.exempt.iter().find(|e| e.value == ns))
            .map(|e| e.span)
    };
    let mut labelled: Vec<String> = Vec::new();
    for ns in &spec.namespaces {
        let name = ns.name.value.as_str();
        let over = ns.pod_security.as_ref().or_else(|| section_override(name));
        let is_exempt = exempt.iter().any(|e| e == name);
        if ps.is_none() && over.is_none() && !is_exempt {
            continue;
        }
        let span = over
            .map(|o| o.span)
            .or_else(|| exempt_span(name))
            .or(ns.exempt.value.then_some(ns.exempt.span))
            .or(ps.map(|p| p.meta.span))
            .unwrap_or(ns.meta.span);
        let entry = ps.map_or(&ns.meta.id, |p| &p.meta.id);
        let config = labels_for(&defaults, name, over, is_exempt);
        let step = c
            .step(
                c.id(&format!("pod_security.{name}"), span)?,
                kinds::POD_SECURITY_LABELS,
                &config,
            )?
            .depends_on(ns.meta.id.clone());
        let step = c.in_cluster(step);
        c.add(entry, span, step);
        labelled.push(name.to_owned());
    }
    let Some(ps) = ps else {
        return Ok(());
    };
    // Namespaces the spec does not create (system ones) but overrides or exempts.
    let undeclared = ps
        .overrides
        .iter()
        .map(|o| (&o.namespace.value, o.namespace.span, Some(&o.settings)))
        .chain(ps.exempt.iter().map(|e| (&e.value, e.span, None)));
    for (name, span, over) in undeclared {
        if labelled.contains(name) {
            continue;
        }
        let is_exempt = exempt.contains(name);
        let config = labels_for(&defaults, name, over, is_exempt);
        let id = c.id(&format!("pod_security.{name}"), span)?;
        let step = c.step(id, kinds::POD_SECURITY_LABELS, &config)?;
        let step = c.in_cluster(step);
        c.add(&ps.meta.id, span, step);
        labelled.push(name.clone());
    }
    Ok(())
}

pub(super) fn workload_identities(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let spec = c.spec;
    let provider = spec.cluster.provider.value;
    let cloud_binds = super::cloud::needs_of(c).addons;
    let annotated_bindings = super::cloud::needs_of(c).annotated_bindings;
    for wi in &spec.workload_identities {
        let entry = &wi.meta.id;
        let span = wi.meta.span;
        let child = |c: &Catalogue<'_>, segment: &str| -> Result<StepId, CatalogueError> {
            c.id(&format!("{entry}.{segment}"), span)
        };
        let short = entry.segments().last().unwrap_or(entry.as_str());
        let (existing, permissions) = match &wi.access {
            crate::spec::Access::Role(r) => (Some(r.value.clone()), Vec::new()),
            crate::spec::Access::Permissions(p) => {
                (None, p.iter().map(|p| p.value.clone()).collect())
            }
        };
        // EKS binds a role through Pod Identity (an association; no annotation) unless the
        // spec asks for IRSA (the role trusts the OIDC issuer; the account names the role).
        let irsa = wi.mechanism.as_ref().map(|m| m.value) == Some(Mechanism::Irsa);
        let pod_identity = cloud_binds && !irsa;
        // An existing cluster has no cloud provider in bmac to create roles with: the spec
        // names an existing role (validation requires it) and the account carries it as is.
        let existing_cluster = provider == Provider::Kube;
        let account = ServiceAccountConfig {
            namespace: wi.namespace.value.clone(),
            name: wi.service_account.clone(),
            role_annotation: if pod_identity {
                String::new()
            } else {
                role_annotation(provider).to_owned()
            },
            role: existing.clone().filter(|_| existing_cluster),
        };
        let mut step = c.step(
            child(c, "service_account")?,
            kinds::SERVICE_ACCOUNT,
            &account,
        )?;
        if !existing_cluster {
            let role = IamRoleConfig {
                purpose: irsa.then(|| ROLE_FOR_IRSA.to_owned()),
                // On EKS under `bmac-`, the prefix the documented IAM policy scopes role
                // management to.
                name: if annotated_bindings {
                    super::cloud::gcp_account_id(&format!(
                        "bmac-{}-{short}",
                        spec.cluster.name.value
                    ))
                } else if cloud_binds {
                    format!("bmac-{}-{short}", spec.cluster.name.value)
                } else {
                    format!("{}-{short}", spec.cluster.name.value)
                },
                existing,
                permissions,
                namespace: wi.namespace.value.clone(),
                service_account: wi.service_account.clone(),
                resources: Vec::new(),
                managed: Vec::new(),
            };
            let role_id = child(c, "role")?;
            let mut role_step = c.step(role_id.clone(), kinds::IAM_ROLE, &role)?;
            if !pod_identity && !annotated_bindings {
                role_step =
                    role_step.input(INPUT_OIDC_ISSUER, Ref::new(c.cluster(), OUTPUT_OIDC_ISSUER));
            }
            if irsa && cloud_binds {
                let oidc = super::cloud::oidc_provider(c)?;
                role_step = role_step.input(INPUT_OIDC_PROVIDER, Ref::new(oidc, OUTPUT_ARN));
            }
            c.add(entry, span, role_step);
            let arn = Ref::new(role_id, OUTPUT_ARN);
            if pod_identity {
                let binding = IdentityBindingConfig {
                    cluster: spec.cluster.name.value.clone(),
                    namespace: wi.namespace.value.clone(),
                    service_account: wi.service_account.clone(),
                };
                let agent = super::cloud::pod_identity_agent(c)?;
                let binding_id = child(c, "binding")?;
                let binding_step = c
                    .step(binding_id.clone(), kinds::IDENTITY_BINDING, &binding)?
                    .input(INPUT_ROLE, arn)
                    .depends_on(agent);
                c.add(entry, span, binding_step);
                // The account is ready for pods once its binding is: EKS injects credentials
                // into pods started after the association exists.
                step = step.depends_on(binding_id);
            } else if annotated_bindings {
                // GKE: the account's member of the cluster's workload identity pool may act as
                // the Google service account — a pool that exists once the cluster does.
                let binding = IdentityBindingConfig {
                    cluster: spec.cluster.name.value.clone(),
                    namespace: wi.namespace.value.clone(),
                    service_account: wi.service_account.clone(),
                };
                let binding_id = child(c, "binding")?;
                let binding_step = c
                    .step(binding_id.clone(), kinds::IDENTITY_BINDING, &binding)?
                    .input(INPUT_ROLE, arn.clone())
                    .depends_on(c.cluster());
                c.add(entry, span, binding_step);
                step = step.input(INPUT_ROLE, arn).depends_on(binding_id);
            } else {
                step = step.input(INPUT_ROLE, arn);
            }
        }
        let namespace = format!("namespace.{}", wi.namespace.value);
        if c.has(&namespace) {
            step = step.depends_on(c.id(&namespace, wi.namespace.span)?);
        }
        let step = c.in_cluster(step);
        c.add(entry, span, step);
    }
    Ok(())
}

pub(super) fn manifests(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let spec = c.spec;
    let policies = c.of_kind(kinds::POLICY);
    for m in &spec.manifests {
        let what = format!("manifest `{}`", m.name);
        let namespace = m.namespace.as_ref().map(|n| n.value.clone());
        let (objects, bundle) = match &m.source {
            ManifestSource::Text(text) => (
                objects::load(spec, &c.base, text, &what, m.source_span)?,
                None,
            ),
            ManifestSource::Bundle(b) => (
                Vec::new(),
                Some(crate::bundle::pinned(spec, &c.base, b, m.source_span)?),
            ),
        };
        let created = creates(c, &objects, bundle.is_some(), namespace.as_deref());
        let mut lives_in: Vec<&str> = objects::namespaces(&objects);
        if let Some(ns) = namespace.as_deref().filter(|ns| !lives_in.contains(ns)) {
            lives_in.push(ns);
        }
        let mut deps: Vec<StepId> = Vec::new();
        for ns in lives_in.into_iter().filter(|ns| !created.contains(ns)) {
            for dep in [format!("namespace.{ns}"), format!("pod_security.{ns}")] {
                if c.has(&dep) {
                    deps.push(c.id(&dep, m.source_span)?);
                }
            }
        }
        deps.extend(policies.iter().cloned());
        let created: Vec<String> = created.into_iter().map(str::to_owned).collect();
        let config = ManifestConfig {
            name: m.name.clone(),
            objects,
            bundle,
            namespace,
        };
        let mut step = c.step(m.meta.id.clone(), kinds::MANIFEST, &config)?;
        for dep in deps {
            step = step.depends_on(dep);
        }
        let step = c.in_cluster(step);
        let id = c.add(&m.meta.id, m.meta.span, step);
        label_after(c, &id, &created, m.source_span)?;
    }
    Ok(())
}

/// The namespaces a manifest's step creates: its `Namespace` objects — or, for a bundle
/// (whose objects bmac reads only when applying it), the `namespace` it installs into unless
/// the spec declares that namespace itself.
fn creates<'a>(
    c: &Catalogue<'_>,
    objects: &'a [serde_json::Value],
    bundle: bool,
    namespace: Option<&'a str>,
) -> Vec<&'a str> {
    if bundle {
        return namespace
            .filter(|ns| !c.has(&format!("namespace.{ns}")))
            .into_iter()
            .collect();
    }
    objects::created_namespaces(objects)
}

/// Makes the Pod Security labels of each namespace in `created` wait for `creator`, the step
/// that creates the namespace (a label step only adds labels to a namespace that exists).
pub(super) fn label_after(
    c: &mut Catalogue<'_>,
    creator: &StepId,
    created: &[String],
    span: miette::SourceSpan,
) -> Result<(), CatalogueError> {
    for ns in created {
        let labels = format!("pod_security.{ns}");
        if c.has(&labels) {
            let labels = c.id(&labels, span)?;
            c.depend(&labels, creator.clone());
        }
    }
    Ok(())
}

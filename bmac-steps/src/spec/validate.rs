//! Cross-field and cross-entry rules: the contradictions a well-typed spec can still hold.
//!
//! Runs only on a spec whose every field decoded cleanly (so it never reports a knock-on
//! effect of a typo). Every rule here is an error with code `bmac::spec::contradiction`
//! (`duplicate_entry` for two entries with one id, `missing_field` for a field that only one
//! provider requires). Each points at the field that makes the spec inconsistent, with a
//! secondary label at the field it contradicts.
//!
//! Decisions worth knowing:
//! - A mirror for a registry that is not in `allowed` is an **error**, not a warning: pods
//!   naming that registry are rejected by the allow-list anyway, so the mirror is dead
//!   configuration — almost always a typo (`index.docker.io` vs `docker.io`). `docker.io`,
//!   `index.docker.io` and `registry-1.docker.io` count as one registry.
//! - The `restrict-registries` baseline policy with no `allowed` list is an error: it would
//!   either block every image or none.
//! - `provider = "kube"` manages an existing cluster: node pools, endpoint settings and
//!   `permissions` (which create a cloud role) need a cloud provider and are errors there.

use std::collections::HashMap;

use miette::SourceSpan;

use super::diag::{Problem, ProblemCode};
use super::model::*;
use super::model_security::*;
use super::Spec;

/// Every contradiction in `spec`, in section order.
pub(crate) fn validate(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    duplicates(spec, &mut out);
    cluster(spec, &mut out);
    node_pools(spec, &mut out);
    existing_cluster(spec, &mut out);
    storage(spec, &mut out);
    cni(spec, &mut out);
    audit(spec, &mut out);
    pod_security(spec, &mut out);
    policy(spec, &mut out);
    registries(spec, &mut out);
    identities(spec, &mut out);
    super::cloud::validate_eks(spec, &mut out);
    super::gke::validate_gke(spec, &mut out);
    out
}

fn contradiction(at: SourceSpan, message: impl Into<String>, label: impl Into<String>) -> Problem {
    Problem::new(ProblemCode::Contradiction, at, message, label)
}

fn duplicates(spec: &Spec, out: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, SourceSpan> = HashMap::new();
    for e in spec.entries() {
        match seen.get(e.id.as_str()) {
            Some(first) => out.push(
                Problem::new(
                    ProblemCode::DuplicateEntry,
                    e.span,
                    format!("`{}` is defined twice", e.id),
                    "defined again here",
                )
                .with_secondary(*first, "first defined here")
                .with_help("entry ids must be unique: rename or remove one of them"),
            ),
            None => {
                seen.insert(e.id.as_str(), e.span);
            }
        }
    }
    if let Some(p) = &spec.policy {
        let mut names: HashMap<&str, SourceSpan> = HashMap::new();
        for x in &p.extra {
            if let Some(first) = names.insert(&x.name.value, x.name.span) {
                out.push(
                    Problem::new(
                        ProblemCode::DuplicateEntry,
                        x.name.span,
                        format!("extra policy `{}` is defined twice", x.name.value),
                        "defined again here",
                    )
                    .with_secondary(first, "first defined here")
                    .with_help("give each extra policy its own name"),
                );
            }
        }
    }
}

fn cluster(spec: &Spec, out: &mut Vec<Problem>) {
    let c = &spec.cluster;
    let provider = c.provider.value;
    if provider == Provider::Kube && c.context.is_none() {
        out.push(
            contradiction(
                c.provider.span,
                "`provider = \"kube\"` needs a kubeconfig `context`",
                "an existing cluster, but which one?",
            )
            .with_help(
                "add `context = \"<name>\"` to `[cluster]` (see `kubectl config get-contexts`)",
            ),
        );
    }
    if let Some(e) = &c.endpoint {
        if !e.public.value && !e.private {
            out.push(
                contradiction(e.span, "the API endpoint is neither public nor private", "unreachable")
                    .with_help("set `private = true` (reachable from the VPC) or `public = true` with `public_cidrs`"),
            );
        }
        if let (false, Some(first)) = (e.public.value, e.public_cidrs.first()) {
            out.push(
                contradiction(
                    first.span,
                    "`public_cidrs` is set but the endpoint is not public",
                    "unused",
                )
                .with_secondary(e.public.span, "public access is off")
                .with_help("set `public = true`, or remove `public_cidrs`"),
            );
        }
    }
    if let (Some(sim), true) = (&spec.sim_span, provider != Provider::Sim) {
        out.push(
            contradiction(
                *sim,
                format!("`[sim]` has no effect with `provider = \"{provider}\"`"),
                "simulator settings",
            )
            .with_secondary(c.provider.span, "provider chosen here")
            .with_help("remove `[sim]`, or set `provider = \"sim\"`"),
        );
    }
}

/// An existing cluster (`provider = "kube"`) already has its default CNI and its control-plane
/// audit policy; neither can be set through the Kubernetes API, so asking for them is a
/// contradiction rather than something bmac would silently skip. (A Cilium or Calico bundle
/// can be installed through the API, so `[cni]` with one of those is fine.)
fn existing_cluster(spec: &Spec, out: &mut Vec<Problem>) {
    if spec.cluster.provider.value != Provider::Kube {
        return;
    }
    let sections = [
        spec.audit.as_ref().map(|a| {
            (
                a.meta.span,
                "[audit]",
                "control-plane audit logging is set by the API server's flags",
            )
        }),
        // A Cilium or Calico bundle can be installed through the API server; the provider's
        // default CNI is whatever the existing cluster already runs.
        spec.cni
            .as_ref()
            .filter(|c| c.plugin.value == CniPlugin::Default)
            .map(|c| {
                (
                    c.meta.span,
                    "[cni]",
                    "the cluster's network plugin is already installed",
                )
            }),
        spec.network.as_ref().map(|n| {
            (
                n.meta.span,
                "[network]",
                "the cluster already sits in its network",
            )
        }),
    ];
    for (span, section, why) in sections.into_iter().flatten() {
        out.push(
            contradiction(span, format!("`{section}` cannot be applied to an existing cluster"), why)
                .with_secondary(spec.cluster.provider.span, "`kube` manages an existing cluster")
                .with_help(format!(
                    "remove `{section}` and configure it where the cluster was created, or use `provider = \"eks\"`/`\"gke\"`/`\"sim\"`"
                )),
        );
    }
}

fn node_pools(spec: &Spec, out: &mut Vec<Problem>) {
    for p in &spec.node_pools {
        if spec.cluster.provider.value == Provider::Kube {
            out.push(
                contradiction(
                    p.meta.span,
                    format!(
                        "node pool `{}` cannot be created on an existing cluster",
                        p.name
                    ),
                    "needs a cloud provider",
                )
                .with_secondary(
                    spec.cluster.provider.span,
                    "`kube` manages an existing cluster",
                )
                .with_help(
                    "remove `[[node_pool]]`, or use `provider = \"eks\"`/`\"gke\"`/`\"sim\"`",
                ),
            );
        }
        if p.min.value > p.max.value {
            out.push(
                contradiction(
                    p.min.span,
                    format!(
                        "node pool `{}`: `min` ({}) is greater than `max` ({})",
                        p.name, p.min.value, p.max.value
                    ),
                    "greater than `max`",
                )
                .with_secondary(p.max.span, "`max` set here")
                .with_help("make `min` ≤ `max`"),
            );
        } else if let Some(d) = &p.desired {
            if d.value < p.min.value || d.value > p.max.value {
                out.push(
                    contradiction(d.span, format!("node pool `{}`: `desired` ({}) is outside [{}, {}]", p.name, d.value, p.min.value, p.max.value), "outside min..max")
                        .with_secondary(p.min.span, "min")
                        .with_secondary(p.max.span, "max")
                        .with_help("choose `desired` between `min` and `max`, or remove it (it defaults to `min`)"),
                );
            }
        }
    }
}

fn storage(spec: &Spec, out: &mut Vec<Problem>) {
    let mut first_default: Option<&StorageClass> = None;
    for s in &spec.storage_classes {
        if s.default.value {
            match first_default {
                Some(first) => out.push(
                    contradiction(s.default.span, format!("storage classes `{}` and `{}` are both the default", first.name, s.name), "second default")
                        .with_secondary(first.default.span, "first default")
                        .with_help("a cluster has at most one default storage class: set `default = false` on one"),
                ),
                None => first_default = Some(s),
            }
        }
        if let (false, Some(k)) = (s.encrypted.value, &s.kms_key) {
            out.push(
                contradiction(
                    k.span,
                    format!(
                        "storage class `{}` names a `kms_key` but is not encrypted",
                        s.name
                    ),
                    "key for encryption",
                )
                .with_secondary(s.encrypted.span, "encryption off")
                .with_help("set `encrypted = true`, or remove `kms_key`"),
            );
        }
    }
}

/// `[cni]`: the provider's default CNI takes nothing; a Cilium or Calico built on EKS or
/// installed into an existing cluster comes from a pinned bundle, applied as it is (so no
/// Helm-style `settings`), in a `mode` that fits the plugin. The simulated cloud keeps
/// reading `settings` and needs no bundle.
fn cni(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(c) = &spec.cni else { return };
    let provider = spec.cluster.provider.value;
    if c.plugin.value == CniPlugin::Default {
        default_cni(c, provider, out);
        return;
    }
    if let Some(m) = &c.mode {
        let fits = match c.plugin.value {
            CniPlugin::Cilium => matches!(m.value, CniMode::Cni | CniMode::Chaining),
            _ => matches!(m.value, CniMode::Cni | CniMode::Policy),
        };
        if !fits {
            let modes = match c.plugin.value {
                CniPlugin::Cilium => "`\"cni\"` or `\"chaining\"`",
                _ => "`\"cni\"` or `\"policy\"`",
            };
            out.push(
                contradiction(
                    m.span,
                    format!(
                        "`mode = \"{}\"` is not a mode of {}",
                        m.value, c.plugin.value
                    ),
                    "mode",
                )
                .with_secondary(c.plugin.span, "plugin chosen here")
                .with_help(format!("{} takes `mode` = {modes}", c.plugin.value)),
            );
        }
    }
    if !matches!(provider, Provider::Eks | Provider::Kube) {
        return;
    }
    if c.bundle.is_none() {
        out.push(
            Problem::new(
                ProblemCode::MissingField,
                c.meta.span,
                format!(
                    "`[cni]` needs a `bundle` to install {} with `provider = \"{provider}\"`",
                    c.plugin.value
                ),
                "no bundle",
            )
            .with_secondary(c.plugin.span, "plugin chosen here")
            .with_help(format!(
                "add `bundle = {{ path = \"{0}.yaml\", sha256 = \"…\" }}` (or `url`): the plugin's \
                 manifests rendered for this cluster (e.g. `helm template {0} … --namespace \
                 kube-system > {0}.yaml`), pinned by the output of `sha256sum`",
                c.plugin.value
            )),
        );
    }
    if !c.settings.is_empty() {
        out.push(
            contradiction(
                c.settings_span.unwrap_or(c.meta.span),
                "`[cni]` `settings` cannot be applied to a release bundle",
                "Helm-style values",
            )
            .with_secondary(c.plugin.span, "installed from its bundle")
            .with_help(
                "bmac applies the bundle's objects as they are: render these values into the \
                 bundle (`helm template … --set key=value`) and pin the result, then remove \
                 `settings` (only the simulated cloud reads them)",
            ),
        );
    }
    if provider == Provider::Eks && c.plugin.value == CniPlugin::Calico && c.mode.is_none() {
        out.push(
            Problem::new(
                ProblemCode::MissingField,
                c.meta.span,
                "`[cni]` with Calico on EKS needs a `mode`",
                "which of Calico's EKS installs?",
            )
            .with_secondary(c.plugin.span, "Calico chosen here")
            .with_help(
                "`mode = \"policy\"` keeps the VPC CNI (`aws-node`) for pod networking and adds \
                 Calico network policy; `mode = \"cni\"` makes Calico the CNI and deletes the \
                 `aws-node` DaemonSet, as Calico's EKS guide does",
            ),
        );
    }
}

/// `[cni]` with the provider's default plugin: nothing to install, so nothing to configure.
fn default_cni(c: &Cni, provider: Provider, out: &mut Vec<Problem>) {
    // On EKS the default CNI is the VPC CNI add-on, which bmac installs: its version and
    // configuration values are the add-on's (see `cloud::validate_eks`).
    if provider != Provider::Eks && (!c.settings.is_empty() || c.version.is_some()) {
        out.push(
            contradiction(
                c.meta.span,
                "`[cni]` settings or version given for the provider's default CNI",
                "bmac does not install the default CNI",
            )
            .with_secondary(c.plugin.span, "plugin is `default`")
            .with_help(
                "choose `plugin = \"cilium\"` or `\"calico\"`, or remove `settings`/`version`",
            ),
        );
    }
    let extra = [
        c.bundle.as_ref().map(|b| (b.span, "bundle")),
        c.mode.as_ref().map(|m| (m.span, "mode")),
    ];
    for (span, field) in extra.into_iter().flatten() {
        out.push(
            contradiction(
                span,
                format!("`[cni]` `{field}` given for the provider's default CNI"),
                "nothing of the default CNI is installed from here",
            )
            .with_secondary(c.plugin.span, "plugin is `default`")
            .with_help(format!(
                "choose `plugin = \"cilium\"` or `\"calico\"` to install it from a bundle, or remove `{field}`"
            )),
        );
    }
}

fn audit(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(a) = &spec.audit else { return };
    if !a.enabled.value {
        let disabled = |what: &str, at: SourceSpan| {
            contradiction(
                at,
                format!("audit {what} is set but audit logging is disabled"),
                "has no logs to act on",
            )
            .with_secondary(a.enabled.span, "disabled here")
            .with_help("set `enabled = true` (recommended), or remove it")
        };
        if let Some(ar) = &a.archive {
            out.push(disabled("`archive`", ar.span));
        }
        if let Some(al) = &a.alarm {
            out.push(disabled("`alarm`", al.span));
        }
    } else if a.log_types.is_empty() {
        out.push(
            contradiction(
                a.meta.span,
                "audit logging is enabled with no `log_types`",
                "nothing to log",
            )
            .with_help("list at least `log_types = [\"audit\"]`, or set `enabled = false`"),
        );
    }
    if let Some(r) = a.retention_days.as_ref().filter(|r| r.value == 0) {
        out.push(
            contradiction(r.span, "`retention_days = 0` keeps audit logs for no time at all", "zero days")
                .with_help("keep audit logs at least as long as incidents take to notice, e.g. `retention_days = 90`"),
        );
    }
}

fn pod_security(spec: &Spec, out: &mut Vec<Problem>) {
    // Declared, Kubernetes' own, or created by a bundle the spec installs: the policy
    // engine's namespace, or the `namespace` a manifest installs into.
    let declared = |ns: &str| {
        spec.namespaces.iter().any(|n| n.name.value == ns)
            || is_system_namespace(ns)
            || spec
                .policy
                .as_ref()
                .is_some_and(|p| crate::policies::engine_namespace(p.engine.value) == ns)
            || spec
                .manifests
                .iter()
                .any(|m| m.namespace.as_ref().is_some_and(|n| n.value == ns))
    };
    let Some(ps) = &spec.pod_security else {
        namespace_overrides(spec, &[], &[], out);
        return;
    };
    for o in &ps.overrides {
        if !declared(&o.namespace.value) {
            out.push(
                contradiction(
                    o.namespace.span,
                    format!(
                        "Pod Security override for namespace `{}`, which is not declared",
                        o.namespace.value
                    ),
                    "unknown namespace",
                )
                .with_help(format!(
                    "declare it with `[[namespace]] name = \"{}\"` (or install a bundle into it with a \
                     manifest's `namespace`), or fix the name",
                    o.namespace.value
                )),
            );
        }
        if let Some(ex) = ps.exempt.iter().find(|e| e.value == o.namespace.value) {
            out.push(
                contradiction(
                    o.namespace.span,
                    format!(
                        "namespace `{}` is both exempt and overridden",
                        o.namespace.value
                    ),
                    "overridden here",
                )
                .with_secondary(ex.span, "exempt here")
                .with_help("an exempt namespace ignores Pod Security: remove one of the two"),
            );
        }
    }
    namespace_overrides(spec, &ps.overrides, &ps.exempt, out);
}

/// A namespace's own `pod_security`/`exempt` against `[pod_security]`'s lists.
fn namespace_overrides(
    spec: &Spec,
    overrides: &[NamespaceOverride],
    exempt: &[Spanned<String>],
    out: &mut Vec<Problem>,
) {
    for n in &spec.namespaces {
        let Some(own) = &n.pod_security else { continue };
        if let Some(o) = overrides.iter().find(|o| o.namespace.value == n.name.value) {
            out.push(
                contradiction(
                    own.span,
                    format!(
                        "namespace `{}` has two Pod Security overrides",
                        n.name.value
                    ),
                    "here",
                )
                .with_secondary(o.namespace.span, "and in `[pod_security.overrides]`")
                .with_help("keep one of them"),
            );
        }
        let exempt_at = exempt
            .iter()
            .find(|e| e.value == n.name.value)
            .map(|e| e.span);
        if let Some(at) = exempt_at.or(n.exempt.value.then_some(n.exempt.span)) {
            out.push(
                contradiction(
                    own.span,
                    format!("namespace `{}` is both exempt and overridden", n.name.value),
                    "overridden here",
                )
                .with_secondary(at, "exempt here")
                .with_help("an exempt namespace ignores Pod Security: remove one of the two"),
            );
        }
    }
}

fn policy(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(p) = &spec.policy else { return };
    let engine = p.engine.value;
    let mut wrong_engine = |field: &str, at: SourceSpan, owner: PolicyEngine| {
        out.push(
            contradiction(
                at,
                format!("`{field}` is a {owner} setting, but the engine is {engine}"),
                format!("{owner} only"),
            )
            .with_secondary(p.engine.span, "engine chosen here")
            .with_help(format!("remove `{field}`, or set `engine = \"{owner}\"`")),
        );
    };
    if engine == PolicyEngine::Gatekeeper {
        if let Some(b) = &p.background {
            wrong_engine("background", b.span, PolicyEngine::Kyverno);
        }
        if let Some(t) = &p.webhook_timeout_seconds {
            wrong_engine("webhook_timeout_seconds", t.span, PolicyEngine::Kyverno);
        }
    }
    if engine == PolicyEngine::Kyverno {
        if let Some(t) = &p.audit_interval_seconds {
            wrong_engine("audit_interval_seconds", t.span, PolicyEngine::Gatekeeper);
        }
    }
    let restricts = p
        .baseline
        .iter()
        .find(|b| b.value == BaselinePolicy::RestrictRegistries);
    let has_list = spec
        .registries
        .as_ref()
        .is_some_and(|r| !r.allowed.is_empty());
    if let (Some(r), false) = (restricts, has_list) {
        out.push(
            contradiction(r.span, "baseline policy `restrict-registries` has no registries to allow", "needs `[registries].allowed`")
                .with_help("add `[registries]` with `allowed = [\"…\"]`, or drop `restrict-registries` from `baseline`"),
        );
    }
}

/// The canonical host of a registry reference (`docker.io` aliases folded): `ghcr.io/acme` →
/// `ghcr.io`, `index.docker.io` → `docker.io`.
pub fn registry_host(r: &str) -> &str {
    let host = r.split('/').next().unwrap_or(r);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

fn registries(spec: &Spec, out: &mut Vec<Problem>) {
    let Some(r) = &spec.registries else { return };
    if r.allowed.iter().any(|a| a.value == "*") {
        return;
    }
    for m in &r.mirrors {
        let host = registry_host(&m.upstream.value);
        if !r.allowed.iter().any(|a| registry_host(&a.value) == host) {
            out.push(
                contradiction(
                    m.upstream.span,
                    format!(
                        "mirror for `{}`, which is not an allowed registry",
                        m.upstream.value
                    ),
                    "not in `allowed`",
                )
                .with_help(format!(
                    "add `{}` to `allowed`, or remove this mirror",
                    m.upstream.value
                )),
            );
        }
    }
}

fn identities(spec: &Spec, out: &mut Vec<Problem>) {
    let provider = spec.cluster.provider.value;
    for w in &spec.workload_identities {
        let ns = &w.namespace.value;
        if !spec.namespaces.iter().any(|n| &n.name.value == ns) && !is_system_namespace(ns) {
            out.push(
                contradiction(
                    w.namespace.span,
                    format!("workload identity for namespace `{ns}`, which is not declared"),
                    "unknown namespace",
                )
                .with_help(format!(
                    "declare it with `[[namespace]] name = \"{ns}\"`, or fix the name"
                )),
            );
        }
        match (&w.access, provider) {
            (Access::Role(r), Provider::Eks)
                if !r.value.starts_with("arn:aws") || !r.value.contains(":role/") =>
            {
                out.push(
                    Problem::new(
                        ProblemCode::InvalidValue,
                        r.span,
                        format!("`{}` is not an IAM role ARN", r.value),
                        "not a role ARN",
                    )
                    .with_help("use `arn:aws:iam::<account>:role/<name>`"),
                )
            }
            (Access::Role(r), Provider::Gke)
                if !r.value.ends_with(".gserviceaccount.com") || !r.value.contains('@') =>
            {
                out.push(
                    Problem::new(
                        ProblemCode::InvalidValue,
                        r.span,
                        format!("`{}` is not a GCP service account", r.value),
                        "not a service-account e-mail",
                    )
                    .with_help("use `<name>@<project>.iam.gserviceaccount.com`"),
                )
            }
            (Access::Permissions(p), Provider::Kube) => {
                let at = p.first().map_or(w.meta.span, |x| x.span);
                out.push(
                    contradiction(at, "`permissions` make bmac create a cloud role, which an existing cluster cannot", "needs a cloud provider")
                        .with_secondary(spec.cluster.provider.span, "`kube` manages an existing cluster")
                        .with_help("name an existing `role` instead"),
                );
            }
            _ => {}
        }
        if let (Some(m), false) = (&w.mechanism, provider == Provider::Eks) {
            out.push(
                contradiction(
                    m.span,
                    format!("`mechanism` does not apply to `provider = \"{provider}\"`"),
                    "EKS only",
                )
                .with_secondary(spec.cluster.provider.span, "provider chosen here")
                .with_help(
                    "only EKS has two ways to bind a role (Pod Identity, IRSA): remove `mechanism`",
                ),
            );
        }
    }
}

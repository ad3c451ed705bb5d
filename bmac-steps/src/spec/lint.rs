//! `bmac lint`: the security baseline, checked against a valid spec.
//!
//! Each rule has a stable id (never reused, never renumbered) and a fixed severity. A
//! [`Finding`] points at the span in `bmac.toml` that causes it (or at the `[cluster]` header
//! when the cause is a missing section) and is a miette diagnostic whose code is the rule id.
//!
//! | id      | severity | rule |
//! |---------|----------|------|
//! | BMAC001 | error    | audit logging off (no `[audit]`, `enabled = false`, no `audit` log type) or not archived |
//! | BMAC002 | error    | PodSecurity enforced weaker than `baseline` on a workload namespace (default level, override, or exemption) |
//! | BMAC003 | warning  | no registry allow-list (`[registries]` absent, `allowed` empty, or `*`) |
//! | BMAC004 | warning  | a public registry (docker.io, ghcr.io, quay.io, registry.k8s.io …) allowed without a mirror |
//! | BMAC005 | error    | no policy engine, or one with no policies |
//! | BMAC006 | error    | cloud credentials in a manifest, where workload identity fits |
//! | BMAC007 | error    | API endpoint public to `0.0.0.0/0` (or public with no CIDR restriction) |
//! | BMAC008 | warning  | policy engine version unpinned, or its bundle without `sha256` |
//! | BMAC009 | warning  | storage class or node disk not encrypted at rest |
//! | BMAC010 | warning  | workload identity with wildcard / admin permissions |
//!
//! **Errors** are holes an attacker or an incident can use at once: no audit trail to
//! investigate with, privileged pods admitted, nothing enforcing policy, long-lived keys in
//! Secrets, a control plane open to the internet. **Warnings** are defence-in-depth gaps whose
//! risk depends on context (supply chain and availability of public registries, pinning,
//! encryption where the provider may already encrypt, broad but scoped permissions);
//! `--deny warnings` ([`deny_warnings`]) makes them errors too.
//!
//! System namespaces (`kube-system`, `kube-public`, `kube-node-lease`) are exempt from
//! BMAC002; `default` is not — workloads run there. BMAC001 does not apply to an existing
//! cluster (`provider = "kube"`): its audit policy is set by API server flags bmac cannot reach. BMAC006 reads inline manifests only: a
//! `file` manifest is not read at lint time.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use super::model::Provider;
use super::model_security::*;
use super::validate::registry_host;
use super::Spec;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Fails `bmac lint` (and `bmac apply` unless overridden).
    Error,
    /// Reported; fails only with `--deny warnings`.
    Warning,
}

/// A lint rule: its stable id, severity and one-line summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, e.g. `BMAC001`.
    pub id: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// What it checks.
    pub summary: &'static str,
}

/// Every rule, by id.
pub const RULES: &[Rule] = &[
    rule(
        "BMAC001",
        Severity::Error,
        "audit logging off or not archived",
    ),
    rule(
        "BMAC002",
        Severity::Error,
        "PodSecurity weaker than `baseline` enforced on a workload namespace",
    ),
    rule("BMAC003", Severity::Warning, "no registry allow-list"),
    rule(
        "BMAC004",
        Severity::Warning,
        "public registry allowed without a mirror",
    ),
    rule("BMAC005", Severity::Error, "no policy engine"),
    rule(
        "BMAC006",
        Severity::Error,
        "cloud credentials where workload identity fits",
    ),
    rule("BMAC007", Severity::Error, "API endpoint open to 0.0.0.0/0"),
    rule(
        "BMAC008",
        Severity::Warning,
        "policy engine version unpinned or bundle unverified",
    ),
    rule(
        "BMAC009",
        Severity::Warning,
        "storage not encrypted at rest",
    ),
    rule(
        "BMAC010",
        Severity::Warning,
        "workload identity with wildcard or admin permissions",
    ),
];

const fn rule(id: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        id,
        severity,
        summary,
    }
}

/// The rule with this id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Public registries that should be reached through a mirror.
pub const PUBLIC_REGISTRIES: &[&str] = &[
    "docker.io",
    "ghcr.io",
    "quay.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "public.ecr.aws",
    "mcr.microsoft.com",
    "nvcr.io",
    "registry.gitlab.com",
];

/// Namespaces Kubernetes runs its own components in (exempt from BMAC002).
const KUBE_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// One lint finding; a miette diagnostic whose code is the rule id.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Rule id (`BMAC001` …).
    pub rule: &'static str,
    /// Severity (the rule's, or `Error` after [`deny_warnings`]).
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// Where, in the spec.
    pub span: SourceSpan,
    /// The label under the span.
    pub label: String,
    /// How to fix it.
    pub help: String,
    src: NamedSource<Arc<str>>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Finding {}

impl Diagnostic for Finding {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.rule))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span),
        )))
    }
}

/// Promotes every warning to an error (`--deny warnings`).
pub fn deny_warnings(findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|mut f| {
            f.severity = Severity::Error;
            f
        })
        .collect()
}

/// Whether any finding is an error (what makes `bmac lint` exit non-zero).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Collects findings for one spec.
struct Linter<'s> {
    spec: &'s Spec,
    src: NamedSource<Arc<str>>,
    out: Vec<Finding>,
}

impl Linter<'_> {
    fn push(
        &mut self,
        id: &'static str,
        span: SourceSpan,
        message: String,
        label: &str,
        help: &str,
    ) {
        let severity = rule_by_id(id).map_or(Severity::Error, |r| r.severity);
        self.out.push(Finding {
            rule: id,
            severity,
            message,
            span,
            label: label.to_owned(),
            help: help.to_owned(),
            src: self.src.clone(),
        });
    }

    /// Where a finding about a missing section points: the `[cluster]` table.
    fn cluster_span(&self) -> SourceSpan {
        self.spec.cluster.meta.span
    }
}

/// Checks a spec against every rule; findings in source order.
pub fn lint(spec: &Spec) -> Vec<Finding> {
    let mut l = Linter {
        spec,
        src: spec.named_source(),
        out: Vec::new(),
    };
    audit(&mut l);
    pod_security(&mut l);
    registries(&mut l);
    policy(&mut l);
    credentials(&mut l);
    endpoint(&mut l);
    encryption(&mut l);
    permissions(&mut l);
    l.out
        .sort_by(|a, b| (a.span.offset(), a.rule).cmp(&(b.span.offset(), b.rule)));
    l.out
}

fn audit(l: &mut Linter<'_>) {
    // An existing cluster's audit policy lives in its API server flags, out of bmac's reach
    // (validation rejects `[audit]` there), so there is nothing in the spec to judge.
    if l.spec.cluster.provider.value == Provider::Kube {
        return;
    }
    let Some(a) = &l.spec.audit else {
        let at = l.cluster_span();
        l.push(
            "BMAC001",
            at,
            "control-plane audit logging is off: the spec has no `[audit]`".into(),
            "no `[audit]` for this cluster",
            "add `[audit]` with `archive = \"s3://…\"` (or `gs://…`) and `retention_days`",
        );
        return;
    };
    if !a.enabled.value {
        l.push("BMAC001", a.enabled.span, "audit logging is disabled".into(), "audit logging off",
            "set `enabled = true` and archive the logs: without them an incident cannot be investigated");
        return;
    }
    if !a.log_types.iter().any(|t| t.value == LogType::Audit) {
        let at = a.log_types.first().map_or(a.meta.span, |t| t.span);
        l.push(
            "BMAC001",
            at,
            "the Kubernetes `audit` log is not collected".into(),
            "no `audit` in `log_types`",
            "add `\"audit\"` to `log_types`",
        );
    }
    if a.archive.is_none() {
        l.push("BMAC001", a.meta.span, "audit logs are not archived".into(), "no `archive`",
            "set `archive = \"s3://<bucket>/<prefix>\"` (or `gs://…`) so the audit trail outlives the cluster");
    }
}

fn pod_security(l: &mut Linter<'_>) {
    let spec = l.spec;
    let weak = |s: &Option<PsaSetting>| {
        s.as_ref()
            .filter(|s| s.level.value == PsaLevel::Privileged)
            .map(|s| s.level.span)
    };
    let Some(ps) = &spec.pod_security else {
        let at = l.cluster_span();
        l.push(
            "BMAC002",
            at,
            "no `[pod_security]`: every namespace admits privileged pods".into(),
            "no Pod Security defaults",
            "add `[pod_security]` with `enforce = \"baseline\"` (or `\"restricted\"`)",
        );
        return;
    };
    if ps.enforce.level.value == PsaLevel::Privileged {
        l.push("BMAC002", ps.enforce.level.span, "the default Pod Security level enforced is `privileged`".into(), "weaker than baseline",
            "enforce `baseline` or `restricted` by default; override single namespaces that need more");
    }
    let workload = |ns: &str| !KUBE_NAMESPACES.contains(&ns);
    for o in ps.overrides.iter().filter(|o| workload(&o.namespace.value)) {
        if let Some(at) = weak(&o.settings.enforce) {
            l.push("BMAC002", at, format!("namespace `{}` enforces Pod Security `privileged`", o.namespace.value), "weaker than baseline",
                "enforce at least `baseline` in workload namespaces; run privileged agents in a dedicated system namespace");
        }
    }
    for e in ps
        .exempt
        .iter()
        .filter(|e| workload(&e.value) && spec.namespaces.iter().any(|n| n.name.value == e.value))
    {
        l.push(
            "BMAC002",
            e.span,
            format!(
                "workload namespace `{}` is exempt from Pod Security",
                e.value
            ),
            "exempt: anything is admitted",
            "remove the exemption; override the level instead if the namespace needs it",
        );
    }
    for n in spec.namespaces.iter().filter(|n| workload(&n.name.value)) {
        if let Some(at) = n.pod_security.as_ref().and_then(|p| weak(&p.enforce)) {
            l.push(
                "BMAC002",
                at,
                format!(
                    "namespace `{}` enforces Pod Security `privileged`",
                    n.name.value
                ),
                "weaker than baseline",
                "enforce at least `baseline` in workload namespaces",
            );
        }
        if n.exempt.value {
            l.push(
                "BMAC002",
                n.exempt.span,
                format!(
                    "workload namespace `{}` is exempt from Pod Security",
                    n.name.value
                ),
                "exempt: anything is admitted",
                "remove `exempt = true`",
            );
        }
    }
}

fn registries(l: &mut Linter<'_>) {
    let Some(r) = &l.spec.registries else {
        let at = l.cluster_span();
        l.push(
            "BMAC003",
            at,
            "no registry allow-list: images may come from anywhere".into(),
            "no `[registries]`",
            "add `[registries]` with `allowed = [\"<your registry>\", …]`",
        );
        return;
    };
    if let Some(star) = r.allowed.iter().find(|a| a.value == "*") {
        l.push(
            "BMAC003",
            star.span,
            "the registry allow-list allows every registry".into(),
            "allows everything",
            "list the registries you trust instead of `*`",
        );
        return;
    }
    if r.allowed.is_empty() {
        l.push(
            "BMAC003",
            r.meta.span,
            "the registry allow-list is empty".into(),
            "no `allowed`",
            "add `allowed = [\"<your registry>\", …]`",
        );
        return;
    }
    for a in &r.allowed {
        let host = registry_host(&a.value);
        let public = PUBLIC_REGISTRIES.contains(&host) || host.ends_with(".gcr.io");
        if public
            && !r
                .mirrors
                .iter()
                .any(|m| registry_host(&m.upstream.value) == host)
        {
            l.push("BMAC004", a.span, format!("public registry `{}` is allowed without a mirror", a.value), "pulled straight from the internet",
                "add a mirror under `[registries.mirrors]` (and `pull_through_cache = true`) so images are cached and rate limits cannot stop a rollout");
        }
    }
}

fn policy(l: &mut Linter<'_>) {
    let Some(p) = &l.spec.policy else {
        let at = l.cluster_span();
        l.push("BMAC005", at, "no policy engine: nothing enforces the baseline policies".into(), "no `[policy]`",
            "add `[policy]` with `engine = \"kyverno\"` (or `\"gatekeeper\"`) and a pinned `version`");
        return;
    };
    if p.baseline.is_empty() && p.extra.is_empty() {
        l.push(
            "BMAC005",
            p.meta.span,
            format!("the {} policy engine has no policies", p.engine.value),
            "no policies",
            "keep the default `baseline` set, or list the policies to enforce",
        );
    }
    if p.version.is_none() {
        l.push(
            "BMAC008",
            p.engine.span,
            format!("the {} version is not pinned", p.engine.value),
            "unpinned",
            "set `version = \"…\"` so every apply installs the same engine",
        );
    }
    if let Some(b) = p.bundle.as_ref().filter(|b| b.sha256.is_none()) {
        l.push(
            "BMAC008",
            b.span,
            "the policy bundle has no `sha256`".into(),
            "not verified",
            "add `sha256 = \"<64 hex>\"` so a tampered or changed bundle is refused",
        );
    }
}

/// Text that reveals a cloud credential in a manifest.
const CREDENTIAL_MARKERS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "an AWS secret access key"),
    ("aws_secret_access_key", "an AWS secret access key"),
    ("AWS_ACCESS_KEY_ID", "an AWS access key id"),
    ("aws_access_key_id", "an AWS access key id"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "a GCP credentials file"),
    ("\"private_key\"", "a GCP service-account key"),
    ("private_key_id", "a GCP service-account key"),
];

fn credentials(l: &mut Linter<'_>) {
    let spec = l.spec;
    for m in &spec.manifests {
        let ManifestSource::Text(TextSource::Inline(text)) = &m.source else {
            continue;
        };
        let marker = CREDENTIAL_MARKERS
            .iter()
            .find(|(needle, _)| text.contains(needle))
            .map(|(needle, what)| (*needle, *what))
            .or_else(|| find_access_key(text).map(|k| (k, "an AWS access key id")));
        let Some((needle, what)) = marker else {
            continue;
        };
        let at = locate(&spec.text, m.source_span, needle);
        l.push("BMAC006", at, format!("manifest `{}` contains {what}", m.name), "cloud credential",
            "use a `[[workload_identity]]` for the pod's service account instead of long-lived keys");
    }
}

/// An AWS access key id (`AKIA`/`ASIA` + 16 uppercase letters or digits) in `text`.
fn find_access_key(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(19)).find_map(|i| {
        let w = &b[i..i + 20];
        let key = (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        key.then(|| text.get(i..i + 20)).flatten()
    })
}

/// The span of `needle` inside the raw source of a value, or the value's span when the raw
/// text differs (escapes).
fn locate(text: &str, value: SourceSpan, needle: &str) -> SourceSpan {
    let start = value.offset();
    text.get(start..start + value.len())
        .and_then(|raw| raw.find(needle))
        .map_or(value, |i| (start + i, needle.len()).into())
}

fn endpoint(l: &mut Linter<'_>) {
    let Some(e) = &l.spec.cluster.endpoint else {
        return;
    };
    if !e.public.value {
        return;
    }
    let open = |c: &str| c == "0.0.0.0/0" || c == "::/0";
    if e.public_cidrs.is_empty() {
        l.push("BMAC007", e.public.span, "the API endpoint is public with no CIDR restriction".into(), "open to 0.0.0.0/0",
            "list your office/VPN ranges in `public_cidrs`, or set `public = false` and reach it privately");
    }
    for c in e.public_cidrs.iter().filter(|c| open(&c.value)) {
        l.push(
            "BMAC007",
            c.span,
            "the API endpoint is open to the whole internet".into(),
            "everyone",
            "replace it with your office/VPN ranges, or set `public = false`",
        );
    }
}

fn encryption(l: &mut Linter<'_>) {
    let spec = l.spec;
    for s in spec.storage_classes.iter().filter(|s| !s.encrypted.value) {
        l.push(
            "BMAC009",
            s.encrypted.span,
            format!("storage class `{}` is not encrypted", s.name),
            "unencrypted",
            "set `encrypted = true` (the default)",
        );
    }
    for p in spec.node_pools.iter().filter(|p| !p.disk.encrypted.value) {
        l.push(
            "BMAC009",
            p.disk.encrypted.span,
            format!("node pool `{}` disks are not encrypted", p.name),
            "unencrypted",
            "set `encrypted = true` (the default)",
        );
    }
}

fn permissions(l: &mut Linter<'_>) {
    let broad = |p: &str| {
        p == "*"
            || p.ends_with(":*")
            || matches!(p, "roles/owner" | "roles/editor")
            || p.ends_with("policy/AdministratorAccess")
    };
    let spec = l.spec;
    for w in &spec.workload_identities {
        let Access::Permissions(perms) = &w.access else {
            continue;
        };
        for p in perms.iter().filter(|p| broad(&p.value)) {
            l.push(
                "BMAC010",
                p.span,
                format!("workload identity `{}` grants `{}`", w.meta.id, p.value),
                "too broad",
                "grant only the actions the workload needs (least privilege)",
            );
        }
    }
}

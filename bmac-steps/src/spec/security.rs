//! Decoding the security-baseline sections: `[audit]`, `[pod_security]`, `[policy]` and
//! `[registries]`.
//!
//! Like [`parse`](super::parse), these decoders check one table at a time; the rules between
//! sections (a mirror for a registry not allowed, an override for an undeclared namespace)
//! are in [`validate`](super::validate).

use super::decode::{meta, Decoder, Fields};
use super::model::*;
use super::model_security::*;
use super::tree::Node;
use bmac_core::step::StepId;

const AUDIT_FIELDS: &[&str] = &[
    "enabled",
    "log_retention_days",
    "force_destroy",
    "lock_retention",
    "log_types",
    "archive",
    "retention_days",
    "alarm",
    "depends_on",
];
const ALARM_FIELDS: &[&str] = &["on_deny", "on_anomaly", "notify"];

pub(crate) fn audit(d: &mut Decoder, node: &Node) -> Option<Audit> {
    let mut f = d.table(node, "audit", "`[audit]`", AUDIT_FIELDS)?;
    let enabled = d.bool_or(&mut f, "enabled", true);
    let log_types = match d.str_list(&mut f, "log_types") {
        Some(list) => list
            .into_iter()
            .filter_map(|s| d.choice_of(s, "log_types", LogType::NAMES, LogType::from_name))
            .collect(),
        None => [LogType::Api, LogType::Audit, LogType::Authenticator]
            .into_iter()
            .map(|t| Spanned::new(t, f.table_span()))
            .collect(),
    };
    let archive = d
        .str(&mut f, "archive")
        .and_then(|s| match parse_archive(&s.value) {
            Some(a) => Some(Spanned::new(a, s.span)),
            None => {
                d.invalid_at(
                    s.span,
                    format!("`{}` is not an archive location", s.value),
                    "use `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///path`",
                );
                None
            }
        });
    let retention_days = d.u32(&mut f, "retention_days");
    let log_retention_days = d.u32(&mut f, "log_retention_days");
    let force_destroy = d.bool_or(&mut f, "force_destroy", false).value;
    let lock_retention = d.bool_or(&mut f, "lock_retention", false).value;
    let alarm = f.get("alarm").and_then(|n| alarm(d, n));
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Audit {
        meta: meta(StepId::new("audit").ok()?, deps),
        enabled,
        log_types,
        archive,
        retention_days,
        log_retention_days,
        force_destroy,
        lock_retention,
        alarm,
    })
}

fn alarm(d: &mut Decoder, node: &Node) -> Option<Alarm> {
    let mut f = d.table(node, "alarm", "`[audit.alarm]`", ALARM_FIELDS)?;
    let on_deny = d.bool_or(&mut f, "on_deny", true).value;
    let on_anomaly = d.bool_or(&mut f, "on_anomaly", true).value;
    let notify = d.nonempty_str(&mut f, "notify").map(|n| n.value);
    let span = f.table_span();
    f.finish(d);
    Some(Alarm {
        span,
        on_deny,
        on_anomaly,
        notify,
    })
}

/// Parses `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///path`.
pub(crate) fn parse_archive(url: &str) -> Option<Archive> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = ArchiveScheme::from_name(scheme)?;
    if scheme == ArchiveScheme::File {
        if !rest.starts_with('/') || rest.len() < 2 {
            return None;
        }
        return Some(Archive {
            url: url.to_owned(),
            scheme,
            bucket: rest.to_owned(),
            prefix: String::new(),
        });
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !bucket_ok || prefix.chars().any(char::is_whitespace) {
        return None;
    }
    Some(Archive {
        url: url.to_owned(),
        scheme,
        bucket: bucket.to_owned(),
        prefix: prefix.trim_end_matches('/').to_owned(),
    })
}

const POD_SECURITY_FIELDS: &[&str] = &[
    "enforce",
    "audit",
    "warn",
    "enforce_version",
    "audit_version",
    "warn_version",
    "overrides",
    "exempt",
    "depends_on",
];
/// Fields of a per-namespace Pod Security override.
pub(crate) const OVERRIDE_FIELDS: &[&str] = &[
    "enforce",
    "audit",
    "warn",
    "enforce_version",
    "audit_version",
    "warn_version",
];

/// One mode (`enforce`, `audit`, `warn`) of a Pod Security setting; `None` when absent (or
/// invalid, after recording the problem).
fn psa_mode(d: &mut Decoder, f: &mut Fields<'_>, mode: &str) -> Option<PsaSetting> {
    let version_field = format!("{mode}_version");
    let version = f
        .key_span(&version_field)
        .and_then(|_| d.str(f, &version_field))
        .and_then(|v| {
            if is_psa_version(&v.value) {
                Some(v.value)
            } else {
                d.invalid_at(
                    v.span,
                    format!("`{}` is not a Pod Security version", v.value),
                    "use `latest` or a Kubernetes minor version such as `v1.30`",
                );
                None
            }
        })
        .unwrap_or_else(|| "latest".to_owned());
    let level = d.choice(f, mode, PsaLevel::NAMES, PsaLevel::from_name)?;
    Some(PsaSetting { level, version })
}

fn is_psa_version(v: &str) -> bool {
    if v == "latest" {
        return true;
    }
    let Some(rest) = v.strip_prefix("v1.") else {
        return false;
    };
    !rest.is_empty() && rest.len() <= 3 && rest.bytes().all(|b| b.is_ascii_digit())
}

/// Reads an override table (`[pod_security.overrides.x]` or a namespace's `pod_security`).
pub(crate) fn psa_override(d: &mut Decoder, node: &Node, context: String) -> Option<PsaOverride> {
    let mut f = d.table(node, "pod_security", context, OVERRIDE_FIELDS)?;
    let enforce = psa_mode(d, &mut f, "enforce");
    let audit = psa_mode(d, &mut f, "audit");
    let warn = psa_mode(d, &mut f, "warn");
    let span = f.table_span();
    f.finish(d);
    Some(PsaOverride {
        span,
        enforce,
        audit,
        warn,
    })
}

pub(crate) fn pod_security(d: &mut Decoder, node: &Node) -> Option<PodSecurity> {
    let mut f = d.table(
        node,
        "pod_security",
        "`[pod_security]`",
        POD_SECURITY_FIELDS,
    )?;
    let table_span = f.table_span();
    let default = |level| PsaSetting {
        level: Spanned::new(level, table_span),
        version: "latest".to_owned(),
    };
    let enforce = psa_mode(d, &mut f, "enforce").unwrap_or_else(|| default(PsaLevel::Baseline));
    let audit = psa_mode(d, &mut f, "audit").unwrap_or_else(|| default(PsaLevel::Restricted));
    let warn = psa_mode(d, &mut f, "warn").unwrap_or_else(|| default(PsaLevel::Restricted));
    let mut overrides = Vec::new();
    if let Some(node) = f.get("overrides") {
        if let Some(table) = d.table(node, "overrides", "`[pod_security.overrides]`", &[]) {
            for (key, value) in table.entries() {
                let ns = Spanned::new(key.name.clone(), super::decode::span(&key.span));
                let context = format!("`[pod_security.overrides.{}]`", key.name);
                if let Some(settings) = psa_override(d, value, context) {
                    overrides.push(NamespaceOverride {
                        namespace: ns,
                        settings,
                    });
                }
            }
        }
    }
    let exempt: Vec<_> = d
        .str_list(&mut f, "exempt")
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| {
            let ok = super::parse::is_dns_label(&ns.value);
            if !ok {
                d.invalid_at(
                    ns.span,
                    format!("`{}` is not a namespace name", ns.value),
                    "namespace names are lowercase letters, digits and `-`, e.g. `kube-system`",
                );
            }
            ok
        })
        .collect();
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(PodSecurity {
        meta: meta(StepId::new("pod_security").ok()?, deps),
        enforce,
        audit,
        warn,
        overrides,
        exempt,
    })
}

const POLICY_FIELDS: &[&str] = &[
    "engine",
    "version",
    "bundle",
    "baseline",
    "extra",
    "mode",
    "background",
    "webhook_timeout_seconds",
    "audit_interval_seconds",
    "depends_on",
];
const BUNDLE_FIELDS: &[&str] = &["url", "path", "sha256"];
const EXTRA_FIELDS: &[&str] = &["name", "file", "inline"];

pub(crate) fn policy(d: &mut Decoder, node: &Node) -> Option<Policy> {
    let mut f = d.table(node, "policy", "`[policy]`", POLICY_FIELDS)?;
    if f.key_span("engine").is_none() {
        d.missing(&f, "engine", "\"kyverno\"");
    }
    let engine = d.choice(
        &mut f,
        "engine",
        PolicyEngine::NAMES,
        PolicyEngine::from_name,
    );
    let version = d.nonempty_str(&mut f, "version");
    let bundle = f
        .get("bundle")
        .and_then(|n| bundle(d, n, "`[policy.bundle]`"));
    let baseline = match d.str_list(&mut f, "baseline") {
        Some(list) => list
            .into_iter()
            .filter_map(|s| {
                d.choice_of(
                    s,
                    "baseline",
                    BaselinePolicy::NAMES,
                    BaselinePolicy::from_name,
                )
            })
            .collect(),
        None => BaselinePolicy::ALL
            .iter()
            .map(|p| Spanned::new(*p, f.table_span()))
            .collect(),
    };
    let extra = d.array(&mut f, "extra", extra_policy).unwrap_or_default();
    let mode = d
        .choice(&mut f, "mode", PolicyMode::NAMES, PolicyMode::from_name)
        .map_or(PolicyMode::Enforce, |m| m.value);
    let background = d.bool(&mut f, "background");
    let webhook_timeout_seconds = d.u32(&mut f, "webhook_timeout_seconds");
    let audit_interval_seconds = d.u32(&mut f, "audit_interval_seconds");
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Policy {
        meta: meta(StepId::new("policy").ok()?, deps),
        engine: engine?,
        version,
        bundle,
        baseline,
        extra,
        mode,
        background,
        webhook_timeout_seconds,
        audit_interval_seconds,
    })
}

/// Reads a bundle table (`{ url | path, sha256 }`); `context` names it for messages.
pub(crate) fn bundle(d: &mut Decoder, node: &Node, context: &str) -> Option<Spanned<Bundle>> {
    let mut f = d.table(node, "bundle", context, BUNDLE_FIELDS)?;
    let url = d.nonempty_str(&mut f, "url");
    let path = d.nonempty_str(&mut f, "path");
    let sha256 = d.str(&mut f, "sha256").and_then(|s| {
        let ok = s.value.len() == 64
            && s.value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            d.invalid_at(
                s.span,
                "`sha256` must be 64 lowercase hex digits",
                "paste the output of `sha256sum <bundle>`",
            );
        }
        ok.then_some(s)
    });
    let source = match (url, path) {
        (Some(u), None) => {
            if !(u.value.starts_with("https://") || u.value.starts_with("http://")) {
                d.invalid_at(
                    u.span,
                    "`url` must be an http(s) URL",
                    "e.g. `url = \"https://…/install.yaml\"`",
                );
            }
            Some(BundleSource::Url(u.value))
        }
        (None, Some(p)) => Some(BundleSource::Path(p.value.into())),
        (Some(u), Some(p)) => {
            d.push(
                super::diag::Problem::new(
                    super::diag::ProblemCode::Contradiction,
                    p.span,
                    format!("{context} has both `url` and `path`"),
                    "second source",
                )
                .with_secondary(u.span, "first source")
                .with_help("keep one: `url` to download, `path` for a file next to the spec"),
            );
            None
        }
        (None, None) => {
            if f.key_span("url").is_none() && f.key_span("path").is_none() {
                d.missing(&f, "path", "\"bundles/kyverno.yaml\"");
            }
            None
        }
    };
    let span = f.table_span();
    f.finish(d);
    Some(Spanned::new(
        Bundle {
            source: source?,
            sha256,
        },
        span,
    ))
}

/// Reads `{ name, file | inline }` (extra policies).
fn extra_policy(d: &mut Decoder, node: &Node) -> Option<ExtraPolicy> {
    let mut f = d.table(node, "extra[]", "a `[policy]` extra policy", EXTRA_FIELDS)?;
    let name = d.req_str(&mut f, "name", "\"my-policy\"");
    if let Some(n) = &name {
        d.entry_id(None, n, "policy name");
    }
    let source = text_source(d, &mut f);
    f.finish(d);
    Some(ExtraPolicy {
        name: name?,
        source: source?.0,
    })
}

/// Reads exactly one of `file` / `inline`, returning it with the span of its value.
pub(crate) fn text_source(
    d: &mut Decoder,
    f: &mut Fields<'_>,
) -> Option<(TextSource, miette::SourceSpan)> {
    let file = d.nonempty_str(f, "file");
    let inline = d.nonempty_str(f, "inline");
    match (file, inline) {
        (Some(p), None) => Some((TextSource::File(p.value.into()), p.span)),
        (None, Some(t)) => Some((TextSource::Inline(t.value), t.span)),
        (Some(p), Some(t)) => {
            d.push(
                super::diag::Problem::new(
                    super::diag::ProblemCode::Contradiction,
                    t.span,
                    format!("{} has both `file` and `inline`", f.context),
                    "second source",
                )
                .with_secondary(p.span, "first source")
                .with_help("keep one of `file` and `inline`"),
            );
            None
        }
        (None, None) => {
            if f.key_span("file").is_none() && f.key_span("inline").is_none() {
                d.missing(f, "file", "\"objects.yaml\"` or `inline = \"…\"");
            }
            None
        }
    }
}

const REGISTRIES_FIELDS: &[&str] = &[
    "allowed",
    "mirrors",
    "pull_through_cache",
    "credentials",
    "depends_on",
];

fn registry_ok(d: &mut Decoder, s: &Spanned<String>) -> bool {
    let v = &s.value;
    let ok = v == "*"
        || (!v.is_empty()
            && !v.contains("://")
            && !v.starts_with('/')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:/".contains(&b)));
    if !ok {
        d.invalid_at(
            s.span,
            format!("`{v}` is not a registry"),
            "write a host with an optional path and no scheme, e.g. `ghcr.io/acme`",
        );
    }
    ok
}

pub(crate) fn registries(d: &mut Decoder, node: &Node) -> Option<Registries> {
    let mut f = d.table(node, "registries", "`[registries]`", REGISTRIES_FIELDS)?;
    let allowed: Vec<_> = d
        .str_list(&mut f, "allowed")
        .unwrap_or_default()
        .into_iter()
        .filter(|s| registry_ok(d, s))
        .collect();
    let mut mirrors = Vec::new();
    if let Some(node) = f.get("mirrors") {
        if let Some(table) = d.table(node, "mirrors", "`[registries.mirrors]`", &[]) {
            for (key, value) in table.entries() {
                let upstream = Spanned::new(key.name.clone(), super::decode::span(&key.span));
                let field = format!("mirrors.\"{}\"", key.name);
                if let Some(mirror) = d.str_node(value, &field) {
                    if registry_ok(d, &upstream) && registry_ok(d, &mirror) {
                        mirrors.push(Mirror { upstream, mirror });
                    }
                }
            }
        }
    }
    let pull_through_cache = d.bool_or(&mut f, "pull_through_cache", false).value;
    let mut credentials = Vec::new();
    if let Some(node) = f.get("credentials") {
        if let Some(table) = d.table(node, "credentials", "`[registries.credentials]`", &[]) {
            for (key, value) in table.entries() {
                let upstream = Spanned::new(key.name.clone(), super::decode::span(&key.span));
                let field = format!("credentials.\"{}\"", key.name);
                if let Some(arn) = d.str_node(value, &field) {
                    if registry_ok(d, &upstream) {
                        credentials.push(RegistryCredential { upstream, arn });
                    }
                }
            }
        }
    }
    let deps = d.depends_on(&mut f);
    f.finish(d);
    Some(Registries {
        meta: meta(StepId::new("registries").ok()?, deps),
        allowed,
        mirrors,
        pull_through_cache,
        credentials,
    })
}

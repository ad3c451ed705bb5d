//! `bmac lint`: each security-baseline rule fires on the spec that breaks it, with its stable
//! id, its severity, and a span at the text that causes it — and stays silent otherwise.

use bmac_steps::spec::lint::{self, Finding, Severity};
use bmac_steps::spec::Spec;

/// A spec that passes every rule.
const CLEAN: &str = r#"[cluster]
name = "t"
provider = "sim"

[audit]
archive = "s3://audit-bucket/t"
retention_days = 90

[pod_security]
enforce = "restricted"

[policy]
engine = "kyverno"
version = "1.12.5"

[registries]
allowed = ["registry.internal"]
"#;

fn findings(text: &str) -> Vec<Finding> {
    let spec = match Spec::parse("bmac.toml", text) {
        Ok(s) => s,
        Err(e) => panic!("{:?}", miette::Report::new(e)),
    };
    lint::lint(&spec)
}

fn edit(from: &str, to: &str) -> String {
    assert!(CLEAN.contains(from), "{from:?} not in CLEAN");
    CLEAN.replacen(from, to, 1)
}

/// The findings as (rule, severity, spanned text).
fn summary(text: &str) -> Vec<(&'static str, Severity, String)> {
    findings(text)
        .into_iter()
        .map(|f| {
            let at = text[f.span.offset()..f.span.offset() + f.span.len()].to_owned();
            (f.rule, f.severity, at)
        })
        .collect()
}

fn one(text: &str) -> (&'static str, Severity, String) {
    let all = summary(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

#[test]
fn the_clean_spec_is_clean() {
    assert!(findings(CLEAN).is_empty(), "{:#?}", summary(CLEAN));
}

#[test]
fn bmac001_audit_off_or_not_archived() {
    let no_audit = edit(
        "[audit]\narchive = \"s3://audit-bucket/t\"\nretention_days = 90\n",
        "",
    );
    assert_eq!(
        one(&no_audit),
        ("BMAC001", Severity::Error, "[cluster]".into())
    );
    let off = edit(
        "[audit]\narchive = \"s3://audit-bucket/t\"\nretention_days = 90\n",
        "[audit]\nenabled = false\n",
    );
    assert_eq!(one(&off), ("BMAC001", Severity::Error, "false".into()));
    let unarchived = edit("archive = \"s3://audit-bucket/t\"\n", "");
    assert_eq!(
        one(&unarchived),
        ("BMAC001", Severity::Error, "[audit]".into())
    );
    let no_audit_log = edit(
        "retention_days = 90\n",
        "retention_days = 90\nlog_types = [\"api\"]\n",
    );
    assert_eq!(
        one(&no_audit_log),
        ("BMAC001", Severity::Error, "\"api\"".into())
    );
}

#[test]
fn bmac002_pod_security_weaker_than_baseline() {
    let none = edit("[pod_security]\nenforce = \"restricted\"\n", "");
    assert_eq!(one(&none), ("BMAC002", Severity::Error, "[cluster]".into()));
    let privileged = edit("enforce = \"restricted\"", "enforce = \"privileged\"");
    assert_eq!(
        one(&privileged),
        ("BMAC002", Severity::Error, "\"privileged\"".into())
    );
    let ns = format!(
        "{CLEAN}[[namespace]]\nname = \"app\"\npod_security = {{ enforce = \"privileged\" }}\n"
    );
    assert_eq!(
        one(&ns),
        ("BMAC002", Severity::Error, "\"privileged\"".into())
    );
    let exempt = format!("{CLEAN}[[namespace]]\nname = \"app\"\nexempt = true\n");
    assert_eq!(one(&exempt), ("BMAC002", Severity::Error, "true".into()));
    // System namespaces may be privileged or exempt.
    let system = edit(
        "enforce = \"restricted\"\n",
        "enforce = \"restricted\"\nexempt = [\"kube-system\"]\n[pod_security.overrides.kube-node-lease]\nenforce = \"privileged\"\n",
    );
    assert!(findings(&system).is_empty(), "{:#?}", summary(&system));
    // `default` is a workload namespace.
    let default = edit(
        "enforce = \"restricted\"\n",
        "enforce = \"restricted\"\n[pod_security.overrides.default]\nenforce = \"privileged\"\n",
    );
    assert_eq!(one(&default).0, "BMAC002");
}

#[test]
fn bmac003_no_allow_list() {
    let none = edit("[registries]\nallowed = [\"registry.internal\"]\n", "");
    // restrict-registries in the default baseline needs a list: drop it too.
    let none = none.replace(
        "version = \"1.12.5\"\n",
        "version = \"1.12.5\"\nbaseline = [\"disallow-privileged\"]\n",
    );
    assert_eq!(
        one(&none),
        ("BMAC003", Severity::Warning, "[cluster]".into())
    );
    let star = edit("[\"registry.internal\"]", "[\"*\"]");
    assert_eq!(one(&star), ("BMAC003", Severity::Warning, "\"*\"".into()));
}

#[test]
fn bmac004_public_registry_without_mirror() {
    let text = edit(
        "[\"registry.internal\"]",
        "[\"registry.internal\", \"docker.io\", \"quay.io/org\"]",
    );
    let all = summary(&text);
    assert_eq!(
        all,
        [
            ("BMAC004", Severity::Warning, "\"docker.io\"".into()),
            ("BMAC004", Severity::Warning, "\"quay.io/org\"".into()),
        ]
    );
    let mirrored = format!("{text}mirrors = {{ \"docker.io\" = \"registry.internal/hub\", \"quay.io\" = \"registry.internal/quay\" }}\n");
    assert!(findings(&mirrored).is_empty(), "{:#?}", summary(&mirrored));
}

#[test]
fn bmac005_no_policy_engine() {
    let none = edit("[policy]\nengine = \"kyverno\"\nversion = \"1.12.5\"\n", "");
    assert_eq!(one(&none), ("BMAC005", Severity::Error, "[cluster]".into()));
    let empty = edit(
        "version = \"1.12.5\"\n",
        "version = \"1.12.5\"\nbaseline = []\n",
    );
    assert_eq!(one(&empty), ("BMAC005", Severity::Error, "[policy]".into()));
}

#[test]
fn bmac006_cloud_credentials_in_manifests() {
    let secret = format!(
        "{CLEAN}[[manifest]]\nname = \"creds\"\ninline = '''\nkind: Secret\nstringData:\n  AWS_SECRET_ACCESS_KEY: abc\n'''\n"
    );
    assert_eq!(
        one(&secret),
        ("BMAC006", Severity::Error, "AWS_SECRET_ACCESS_KEY".into())
    );
    let gcp = format!(
        "{CLEAN}[[manifest]]\nname = \"sa-key\"\ninline = '{{\"type\": \"service_account\", \"private_key\": \"-----BEGIN\"}}'\n"
    );
    assert_eq!(
        one(&gcp),
        ("BMAC006", Severity::Error, "\"private_key\"".into())
    );
    let key_id =
        format!("{CLEAN}[[manifest]]\nname = \"env\"\ninline = \"value: AKIAABCDEFGHIJKLMNOP\"\n");
    assert_eq!(
        one(&key_id),
        ("BMAC006", Severity::Error, "AKIAABCDEFGHIJKLMNOP".into())
    );
    let harmless = format!("{CLEAN}[[manifest]]\nname = \"cm\"\ninline = \"kind: ConfigMap\"\n");
    assert!(findings(&harmless).is_empty());
}

#[test]
fn bmac007_public_endpoint_open_to_the_world() {
    let open = edit("provider = \"sim\"\n", "provider = \"sim\"\nendpoint = { public = true, public_cidrs = [\"10.0.0.0/8\", \"0.0.0.0/0\"] }\n");
    assert_eq!(
        one(&open),
        ("BMAC007", Severity::Error, "\"0.0.0.0/0\"".into())
    );
    let unrestricted = edit(
        "provider = \"sim\"\n",
        "provider = \"sim\"\nendpoint = { public = true }\n",
    );
    assert_eq!(
        one(&unrestricted),
        ("BMAC007", Severity::Error, "true".into())
    );
    let private = edit(
        "provider = \"sim\"\n",
        "provider = \"sim\"\nendpoint = { public = false }\n",
    );
    assert!(findings(&private).is_empty());
}

#[test]
fn bmac008_unpinned_or_unverified_policy_engine() {
    let unpinned = edit("version = \"1.12.5\"\n", "");
    assert_eq!(
        one(&unpinned),
        ("BMAC008", Severity::Warning, "\"kyverno\"".into())
    );
    let unverified = edit(
        "version = \"1.12.5\"\n",
        "version = \"1.12.5\"\nbundle = { path = \"k.yaml\" }\n",
    );
    assert_eq!(
        one(&unverified),
        ("BMAC008", Severity::Warning, "{ path = \"k.yaml\" }".into())
    );
}

#[test]
fn bmac009_unencrypted_storage() {
    let sc =
        format!("{CLEAN}[[storage_class]]\nname = \"plain\"\ntype = \"t\"\nencrypted = false\n");
    assert_eq!(one(&sc), ("BMAC009", Severity::Warning, "false".into()));
    let pool = format!("{CLEAN}[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = 1\nmax = 2\ndisk = {{ encrypted = false }}\n");
    assert_eq!(one(&pool), ("BMAC009", Severity::Warning, "false".into()));
}

#[test]
fn bmac010_wildcard_permissions() {
    let text = format!(
        "{CLEAN}[[namespace]]\nname = \"app\"\n[[workload_identity]]\nnamespace = \"app\"\nservice_account = \"api\"\npermissions = [\"s3:GetObject\", \"s3:*\"]\n"
    );
    assert_eq!(
        one(&text),
        ("BMAC010", Severity::Warning, "\"s3:*\"".into())
    );
}

#[test]
fn deny_warnings_turns_warnings_into_errors() {
    let text = edit("version = \"1.12.5\"\n", "");
    let found = findings(&text);
    assert!(!lint::has_errors(&found));
    let denied = lint::deny_warnings(found);
    assert!(lint::has_errors(&denied));
    assert!(denied.iter().all(|f| f.severity == Severity::Error));
}

#[test]
fn findings_are_diagnostics_coded_by_rule_and_ordered_by_position() {
    let text = "[cluster]\nname = \"bare\"\nprovider = \"sim\"\nendpoint = { public = true }\n";
    let found = findings(text);
    let rules: Vec<&str> = found.iter().map(|f| f.rule).collect();
    assert_eq!(
        rules,
        ["BMAC001", "BMAC002", "BMAC003", "BMAC005", "BMAC007"]
    );
    for f in &found {
        let code = miette::Diagnostic::code(f).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some(f.rule));
        assert!(miette::Diagnostic::source_code(f).is_some());
        assert!(lint::rule_by_id(f.rule).is_some());
    }
    let ids: Vec<&str> = lint::RULES.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 10);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "rule ids are unique and ordered"
    );
}

//! Reading `bmac.toml`: every section decoded, spans that point at the right line and column,
//! and every contradiction reported with its code and a help line.

use bmac_steps::spec::*;
use miette::SourceSpan;

const BASE: &str = "[cluster]\nname = \"t\"\nprovider = \"sim\"\n";

/// 1-based line and column of a span's start in `text`.
fn line_col(text: &str, span: SourceSpan) -> (usize, usize) {
    let before = &text[..span.offset()];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn spanned_text(text: &str, span: SourceSpan) -> &str {
    &text[span.offset()..span.offset() + span.len()]
}

fn parse_ok(text: &str) -> Spec {
    match Spec::parse("bmac.toml", text) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error: {:?}", miette::Report::new(e)),
    }
}

/// The problems of a spec that must not parse.
fn problems(text: &str) -> Vec<Problem> {
    match Spec::parse("bmac.toml", text) {
        Ok(_) => panic!("spec parsed but should not:\n{text}"),
        Err(e) => {
            assert!(!e.problems().is_empty());
            e.problems().to_vec()
        }
    }
}

/// The single problem of a spec, checked for code and for the text it points at.
fn one_problem(text: &str, code: ProblemCode, points_at: &str) -> Problem {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    let p = ps.into_iter().next().unwrap();
    assert_eq!(p.code, code, "{p:#?}");
    assert_eq!(spanned_text(text, p.span), points_at, "{p:#?}");
    assert!(
        p.help.as_deref().is_some_and(|h| !h.is_empty()),
        "no help: {p:#?}"
    );
    p
}

#[test]
fn minimal_spec_has_safe_defaults() {
    let spec = parse_ok(BASE);
    assert_eq!(spec.cluster.name.value, "t");
    assert_eq!(spec.cluster.provider.value, Provider::Sim);
    assert_eq!(spec.state.backend, StateBackendKind::Local);
    assert_eq!(spec.sim.speed, 1.0);
    assert!(spec.cluster.endpoint.is_none());
    assert_eq!(spec.entries().count(), 1);
    assert_eq!(spec.source().0, "bmac.toml");
    assert_eq!(&**spec.source().1, BASE);
}

#[test]
fn every_section_is_decoded() {
    let text = r#"
[cluster]
name = "prod"
provider = "eks"
region = "eu-west-1"
version = "1.30"
account = "123456789012"
endpoint = { public = true, public_cidrs = ["10.0.0.0/8", "2001:db8::/32"], private = false }

[state]
backend = "s3"
bucket = "st"
prefix = "p"
region = "eu-west-1"

[[node_pool]]
name = "gpu"
instance_types = ["g5.xlarge"]
min = 0
max = 4
taints = [{ key = "nvidia.com/gpu", effect = "NoExecute" }]
disk = { size_gb = 200, type = "gp3", encrypted = false }
labels = { accel = "nvidia" }

[cni]
plugin = "calico"
version = "3.27"
mode = "policy"
bundle = { url = "https://example.invalid/tigera-operator.yaml", sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" }

[[storage_class]]
name = "gp3"
default = true
type = "gp3"
kms_key = "arn:aws:kms:eu-west-1:1:key/x"
reclaim_policy = "Retain"
parameters = { iops = "3000" }

[audit]
log_types = ["audit", "scheduler"]
archive = "s3://audit-bucket/prod/eks/"
retention_days = 30
[audit.alarm]
on_anomaly = false
notify = "arn:aws:sns:eu-west-1:1:t"

[pod_security]
enforce = "baseline"
enforce_version = "v1.29"
[pod_security.overrides.ops]
enforce = "privileged"
warn = "baseline"

[policy]
engine = "kyverno"
version = "1.12.5"
mode = "audit"
baseline = ["disallow-privileged", "require-non-root"]
bundle = { url = "https://example.com/k.yaml", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
extra = [{ name = "team-labels", inline = "kind: ClusterPolicy" }, { name = "more", file = "policies/more.yaml" }]
background = false
webhook_timeout_seconds = 15

[registries]
allowed = ["ghcr.io/acme", "registry.internal:5000/team"]
mirrors = { "ghcr.io" = "mirror.internal/ghcr" }

[[namespace]]
name = "ops"
exempt = false

[[namespace]]
name = "app"
labels = { tier = "web" }
pod_security = { enforce = "restricted", audit_version = "v1.30" }

[[workload_identity]]
namespace = "app"
service_account = "api"
role = "arn:aws:iam::123456789012:role/app"

[[manifest]]
name = "extra"
file = "k8s/extra.yaml"
depends_on = ["namespace.app", "workload_identity.app-api"]
"#;
    let s = parse_ok(text);
    let c = &s.cluster;
    assert_eq!(c.region.as_ref().unwrap().value, "eu-west-1");
    assert_eq!(c.version.as_ref().unwrap().value, "1.30");
    assert_eq!(c.account.as_deref(), Some("123456789012"));
    let e = c.endpoint.as_ref().unwrap();
    assert!(e.public.value && !e.private);
    assert_eq!(e.public_cidrs.len(), 2);
    assert_eq!(s.state.backend, StateBackendKind::S3);
    assert_eq!(s.state.bucket.as_deref(), Some("st"));

    let p = &s.node_pools[0];
    assert_eq!((p.min.value, p.max.value, p.desired_size()), (0, 4, 0));
    assert_eq!(p.taints[0].effect, TaintEffect::NoExecute);
    assert_eq!(p.taints[0].value, None);
    assert_eq!(p.disk.size_gb, 200);
    assert!(!p.disk.encrypted.value);
    assert_eq!(p.labels["accel"], "nvidia");

    let cni = s.cni.as_ref().unwrap();
    assert_eq!(cni.plugin.value, CniPlugin::Calico);
    assert_eq!(cni.mode.as_ref().map(|m| m.value), Some(CniMode::Policy));
    let bundle = &cni.bundle.as_ref().unwrap().value;
    assert_eq!(
        bundle.source,
        BundleSource::Url("https://example.invalid/tigera-operator.yaml".into())
    );
    assert!(cni.settings.is_empty());

    let sc = &s.storage_classes[0];
    assert_eq!(sc.reclaim_policy, ReclaimPolicy::Retain);
    assert_eq!(sc.parameters["iops"], "3000");

    let a = s.audit.as_ref().unwrap();
    assert!(a.enabled.value);
    let ar = &a.archive.as_ref().unwrap().value;
    assert_eq!(
        (ar.scheme, ar.bucket.as_str(), ar.prefix.as_str()),
        (ArchiveScheme::S3, "audit-bucket", "prod/eks")
    );
    assert_eq!(a.retention_days.as_ref().unwrap().value, 30);
    let al = a.alarm.as_ref().unwrap();
    assert!(al.on_deny && !al.on_anomaly);
    assert_eq!(
        a.log_types.iter().map(|t| t.value).collect::<Vec<_>>(),
        [LogType::Audit, LogType::Scheduler]
    );

    let ps = s.pod_security.as_ref().unwrap();
    assert_eq!(ps.enforce.level.value, PsaLevel::Baseline);
    assert_eq!(ps.enforce.version, "v1.29");
    assert_eq!(
        ps.audit.level.value,
        PsaLevel::Restricted,
        "audit defaults to restricted"
    );
    assert_eq!(ps.overrides[0].namespace.value, "ops");
    assert_eq!(
        ps.overrides[0]
            .settings
            .enforce
            .as_ref()
            .unwrap()
            .level
            .value,
        PsaLevel::Privileged
    );
    assert!(ps.overrides[0].settings.audit.is_none());

    let pol = s.policy.as_ref().unwrap();
    assert_eq!(pol.engine.value, PolicyEngine::Kyverno);
    assert_eq!(pol.mode, PolicyMode::Audit);
    assert_eq!(
        pol.baseline.iter().map(|b| b.value).collect::<Vec<_>>(),
        [
            BaselinePolicy::DisallowPrivileged,
            BaselinePolicy::RequireNonRoot
        ]
    );
    assert_eq!(
        pol.bundle.as_ref().unwrap().source,
        BundleSource::Url("https://example.com/k.yaml".into())
    );
    assert_eq!(
        pol.extra[0].source,
        TextSource::Inline("kind: ClusterPolicy".into())
    );
    assert_eq!(
        pol.extra[1].source,
        TextSource::File("policies/more.yaml".into())
    );

    let r = s.registries.as_ref().unwrap();
    assert_eq!(r.mirrors[0].upstream.value, "ghcr.io");
    assert_eq!(r.mirrors[0].mirror.value, "mirror.internal/ghcr");
    assert!(!r.pull_through_cache);

    let app = &s.namespaces[1];
    let own = app.pod_security.as_ref().unwrap();
    assert_eq!(
        own.enforce.as_ref().unwrap().level.value,
        PsaLevel::Restricted
    );
    assert_eq!(own.audit, None, "a version alone does not set a level");

    let w = &s.workload_identities[0];
    assert_eq!(w.meta.id.as_str(), "workload_identity.app-api");
    assert!(matches!(&w.access, Access::Role(r) if r.value.ends_with("role/app")));

    let m = &s.manifests[0];
    assert_eq!(
        m.source,
        ManifestSource::Text(TextSource::File("k8s/extra.yaml".into()))
    );
    let deps: Vec<&str> = m
        .meta
        .depends_on
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(deps, ["namespace.app", "workload_identity.app-api"]);
}

#[test]
fn spans_point_at_entries_and_depends_on_items() {
    let text = format!(
        "{BASE}\n[[namespace]]\nname = \"a\"\n\n[[namespace]]\nname = \"b\"\ndepends_on = [\"namespace.a\",   \"cluster\"]\n"
    );
    let s = parse_ok(&text);
    let b = s.entry("namespace.b").expect("entry namespace.b");
    assert_eq!(b.section, "namespace");
    assert_eq!(
        line_col(&text, b.span),
        (8, 1),
        "entry span starts at its header"
    );
    assert_eq!(spanned_text(&text, b.span), "[[namespace]]");
    let (dep, at) = &b.depends_on[1];
    assert_eq!(dep.as_str(), "cluster");
    assert_eq!(line_col(&text, *at), (10, 32));
    assert_eq!(spanned_text(&text, *at), "\"cluster\"");
    assert_eq!(s.line_col(at.offset()), (10, 32));
    let cluster = s.entry("cluster").unwrap();
    assert_eq!(line_col(&text, cluster.span), (1, 1));
}

#[test]
fn spans_of_fields_point_at_their_values() {
    let text = format!(
        "{BASE}[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = 1\nmax =   7\n"
    );
    let s = parse_ok(&text);
    let p = &s.node_pools[0];
    assert_eq!(line_col(&text, p.max.span), (8, 9));
    assert_eq!(spanned_text(&text, p.max.span), "7");
}

#[test]
fn unknown_field_suggests_the_close_name() {
    let text = format!("{BASE}[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = 1\nmax = 3\ndesird = 2\n");
    let p = one_problem(&text, ProblemCode::UnknownField, "desird");
    assert_eq!(p.help.as_deref(), Some("did you mean `desired`?"));
    assert!(p.message.contains("`[[node_pool]]`"), "{}", p.message);
    assert_eq!(line_col(&text, p.span), (9, 1));
}

#[test]
fn unknown_field_far_from_any_lists_the_valid_ones() {
    let text = format!("{BASE}colour = \"blue\"\n");
    let p = one_problem(&text, ProblemCode::UnknownField, "colour");
    let help = p.help.unwrap();
    assert!(
        help.contains("`provider`") && help.contains("`endpoint`"),
        "{help}"
    );
}

#[test]
fn unknown_section_suggests_the_close_one() {
    let text = format!("{BASE}[[node_pools]]\nname = \"p\"\n");
    let p = one_problem(&text, ProblemCode::UnknownField, "node_pools");
    assert_eq!(p.help.as_deref(), Some("did you mean `node_pool`?"));
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let text = format!("{BASE}[audit\nenabled = true\n");
    let ps = problems(&text);
    assert_eq!(ps.len(), 1);
    let p = &ps[0];
    assert_eq!(p.code, ProblemCode::Syntax);
    assert_eq!(line_col(&text, p.span), (4, 7), "{p:?}");
    assert!(p.help.is_some());
    assert_eq!(p.code.code(), "bmac::spec::syntax");
}

#[test]
fn bad_values_are_invalid_values_with_suggestions() {
    let p = one_problem(
        &format!("{BASE}[pod_security]\nenforce = \"restriced\"\n"),
        ProblemCode::InvalidValue,
        "\"restriced\"",
    );
    assert_eq!(p.help.as_deref(), Some("did you mean `restricted`?"));
    one_problem(
        "[cluster]\nname = \"t\"\nprovider = \"aws\"\n",
        ProblemCode::InvalidValue,
        "\"aws\"",
    );
    one_problem(
        &format!(
            "{BASE}[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = -1\nmax = 3\n"
        ),
        ProblemCode::InvalidValue,
        "-1",
    );
    one_problem(
        &format!("{BASE}[[node_pool]]\nname = \"p\"\ninstance_types = \"x\"\nmin = 1\nmax = 3\n"),
        ProblemCode::InvalidValue,
        "\"x\"",
    );
    one_problem(
        &format!("{BASE}[audit]\narchive = \"ftp://x/y\"\n"),
        ProblemCode::InvalidValue,
        "\"ftp://x/y\"",
    );
    one_problem("[cluster]\nname = \"t\"\nprovider = \"sim\"\nendpoint = { public = true, public_cidrs = [\"10.0.0.0/33\"] }\n", ProblemCode::InvalidValue, "\"10.0.0.0/33\"");
    one_problem(&format!("{BASE}[policy]\nengine = \"kyverno\"\nbundle = {{ path = \"b.yaml\", sha256 = \"abc\" }}\n"), ProblemCode::InvalidValue, "\"abc\"");
    one_problem(
        &format!("{BASE}[sim]\nspeed = 0\n"),
        ProblemCode::InvalidValue,
        "0",
    );
    one_problem(
        &format!("{BASE}[node_pool]\nname = \"p\"\n"),
        ProblemCode::InvalidValue,
        "[node_pool]",
    );
}

#[test]
fn names_that_cannot_be_ids_are_invalid_ids() {
    one_problem(
        &format!(
            "{BASE}[[node_pool]]\nname = \"a.b\"\ninstance_types = [\"x\"]\nmin = 1\nmax = 3\n"
        ),
        ProblemCode::InvalidId,
        "\"a.b\"",
    );
    one_problem(
        &format!("{BASE}[[namespace]]\nname = \"Payments\"\n"),
        ProblemCode::InvalidId,
        "\"Payments\"",
    );
    one_problem(
        &format!("{BASE}[[namespace]]\nname = \"p\"\ndepends_on = [\"namespace..a\"]\n"),
        ProblemCode::InvalidId,
        "\"namespace..a\"",
    );
    one_problem(
        "[cluster]\nname = \"my cluster\"\nprovider = \"sim\"\n",
        ProblemCode::InvalidId,
        "\"my cluster\"",
    );
}

#[test]
fn missing_required_fields_are_reported() {
    let p = one_problem(
        "[cluster]\nname = \"t\"\n",
        ProblemCode::MissingField,
        "[cluster]",
    );
    assert!(p.help.unwrap().contains("provider"));
    let ps = problems("[state]\nbackend = \"local\"\n");
    assert_eq!(ps[0].code, ProblemCode::MissingField);
    assert!(ps[0].message.contains("[cluster]"));
    let ps = problems(&format!(
        "{BASE}[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"x\"\n"
    ));
    assert_eq!(ps[0].code, ProblemCode::MissingField);
}

#[test]
fn all_problems_are_reported_at_once_in_source_order() {
    let text = format!("{BASE}colour = 1\n[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = \"1\"\nmax = 3\nsize = 4\n");
    let ps = problems(&text);
    let codes: Vec<_> = ps
        .iter()
        .map(|p| (p.code, spanned_text(&text, p.span)))
        .collect();
    assert_eq!(
        codes,
        [
            (ProblemCode::UnknownField, "colour"),
            (ProblemCode::InvalidValue, "\"1\""),
            (ProblemCode::UnknownField, "size"),
        ]
    );
}

/// A contradiction: exactly one problem with that code at that text.
fn contradiction(text: &str, points_at: &str) -> Problem {
    one_problem(text, ProblemCode::Contradiction, points_at)
}

const POOL: &str = "[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\n";

#[test]
fn node_pool_size_contradictions() {
    let p = contradiction(&format!("{BASE}{POOL}min = 5\nmax = 3\n"), "5");
    assert!(p.message.contains("greater than"));
    assert_eq!(p.secondary.len(), 1);
    contradiction(&format!("{BASE}{POOL}min = 1\nmax = 3\ndesired = 9\n"), "9");
    contradiction(&format!("{BASE}{POOL}min = 2\nmax = 3\ndesired = 1\n"), "1");
}

#[test]
fn storage_contradictions() {
    let sc = |n: &str| format!("[[storage_class]]\nname = \"{n}\"\ntype = \"t\"\ndefault = true\n");
    let p = contradiction(&format!("{BASE}{}{}", sc("a"), sc("b")), "true");
    assert!(p.message.contains("`a` and `b`"), "{}", p.message);
    assert!(
        p.span.offset() > BASE.len() + sc("a").len(),
        "points at the second default"
    );
    contradiction(&format!("{BASE}[[storage_class]]\nname = \"a\"\ntype = \"t\"\nencrypted = false\nkms_key = \"k\"\n"), "\"k\"");
}

#[test]
fn audit_contradictions() {
    contradiction(
        &format!("{BASE}[audit]\nenabled = false\narchive = \"s3://bucket/x\"\n"),
        "\"s3://bucket/x\"",
    );
    contradiction(
        &format!("{BASE}[audit]\narchive = \"s3://bucket/x\"\nretention_days = 0\n"),
        "0",
    );
    contradiction(&format!("{BASE}[audit]\nlog_types = []\n"), "[audit]");
}

#[test]
fn pod_security_contradictions() {
    let p = contradiction(
        &format!("{BASE}[pod_security]\n[pod_security.overrides.ghost]\nenforce = \"baseline\"\n"),
        "ghost",
    );
    assert!(p.help.unwrap().contains("[[namespace]]"));
    // System namespaces need no declaration.
    parse_ok(&format!(
        "{BASE}[pod_security]\n[pod_security.overrides.kube-system]\nenforce = \"privileged\"\n"
    ));
    contradiction(
        &format!("{BASE}[pod_security]\nexempt = [\"kube-system\"]\n[pod_security.overrides.kube-system]\nenforce = \"privileged\"\n"),
        "kube-system",
    );
    one_problem(
        &format!("{BASE}[pod_security]\nexempt = [\"Kube System\"]\n"),
        ProblemCode::InvalidValue,
        "\"Kube System\"",
    );
    contradiction(
        &format!("{BASE}[[namespace]]\nname = \"a\"\nexempt = true\npod_security = {{ enforce = \"baseline\" }}\n"),
        "{ enforce = \"baseline\" }",
    );
}

#[test]
fn registry_and_policy_contradictions() {
    let p = contradiction(&format!("{BASE}[registries]\nallowed = [\"ghcr.io\"]\nmirrors = {{ \"quay.io\" = \"m.internal/quay\" }}\n"), "\"quay.io\"");
    assert!(p.help.unwrap().contains("add `quay.io` to `allowed`"));
    // docker.io aliases are one registry.
    parse_ok(&format!("{BASE}[registries]\nallowed = [\"docker.io\"]\nmirrors = {{ \"index.docker.io\" = \"m.internal/hub\" }}\n"));
    let reg = "[registries]\nallowed = [\"r.internal\"]\n";
    let p = contradiction(
        &format!("{BASE}{reg}[policy]\nengine = \"gatekeeper\"\nbackground = true\n"),
        "true",
    );
    assert!(p.message.contains("kyverno setting"), "{}", p.message);
    contradiction(
        &format!("{BASE}{reg}[policy]\nengine = \"kyverno\"\naudit_interval_seconds = 60\n"),
        "60",
    );
    contradiction(
        &format!("{BASE}[policy]\nengine = \"kyverno\"\nbaseline = [\"restrict-registries\"]\n"),
        "\"restrict-registries\"",
    );
    contradiction(&format!("{BASE}[policy]\nengine = \"kyverno\"\nbaseline = []\nbundle = {{ url = \"https://x/y\", path = \"p\" }}\n"), "\"p\"");
}

#[test]
fn workload_identity_contradictions() {
    let p = contradiction(&format!("{BASE}[[workload_identity]]\nnamespace = \"ghost\"\nservice_account = \"sa\"\nrole = \"r\"\n"), "\"ghost\"");
    assert!(p.message.contains("not declared"));
    contradiction(
        &format!("{BASE}[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"sa\"\nrole = \"r\"\npermissions = [\"s3:GetObject\"]\n"),
        "permissions",
    );
    one_problem(
        "[cluster]\nname = \"t\"\nprovider = \"eks\"\nregion = \"r\"\n[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"sa\"\nrole = \"admin\"\n",
        ProblemCode::InvalidValue,
        "\"admin\"",
    );
    one_problem(
        &format!("{BASE}[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"a.b\"\nrole = \"r\"\n"),
        ProblemCode::InvalidId,
        "\"a.b\"",
    );
}

#[test]
fn provider_contradictions() {
    let p = contradiction("[cluster]\nname = \"t\"\nprovider = \"kube\"\n", "\"kube\"");
    assert!(p.help.unwrap().contains("context"));
    contradiction("[cluster]\nname = \"t\"\nprovider = \"kube\"\ncontext = \"c\"\n[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = 1\nmax = 2\n", "[[node_pool]]");
    contradiction(&format!("{BASE}context = \"c\"\n"), "context");
    one_problem(
        "[cluster]\nname = \"t\"\nprovider = \"eks\"\n",
        ProblemCode::MissingField,
        "[cluster]",
    );
    contradiction(
        "[cluster]\nname = \"t\"\nprovider = \"eks\"\nregion = \"r\"\n[sim]\nseed = 1\n",
        "[sim]",
    );
    contradiction(
        &format!("{BASE}endpoint = {{ public = false, private = false }}\n"),
        "{ public = false, private = false }",
    );
    contradiction(
        &format!("{BASE}endpoint = {{ public_cidrs = [\"10.0.0.0/8\"] }}\n"),
        "\"10.0.0.0/8\"",
    );
    contradiction(&format!("{BASE}[cni]\nsettings = {{ a = 1 }}\n"), "[cni]");
}

#[test]
fn cni_settings_are_decoded_for_the_simulator() {
    let s = parse_ok(&format!(
        "{BASE}[cni]\nplugin = \"calico\"\n[cni.settings]\nipam = {{ type = \"calico-ipam\" }}\nmtu = 1440\n"
    ));
    let cni = s.cni.as_ref().unwrap();
    assert_eq!(cni.settings["mtu"], serde_json::json!(1440));
    assert_eq!(cni.settings["ipam"]["type"], "calico-ipam");
    assert!(cni.bundle.is_none() && cni.mode.is_none());
}

#[test]
fn cni_bundle_and_mode_contradictions() {
    let bundle = "bundle = { path = \"cilium.yaml\", sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\" }\n";
    // The provider's default CNI is not installed from a bundle, nor in a mode.
    let p = contradiction(
        &format!("{BASE}[cni]\nplugin = \"default\"\n{bundle}"),
        &bundle[9..bundle.len() - 1],
    );
    assert!(p.message.contains("`bundle`"), "{}", p.message);
    contradiction(
        &format!("{BASE}[cni]\nplugin = \"default\"\nmode = \"cni\"\n"),
        "\"cni\"",
    );
    // A mode of the other plugin.
    let p = contradiction(
        &format!("{BASE}[cni]\nplugin = \"cilium\"\nmode = \"policy\"\n"),
        "\"policy\"",
    );
    assert!(p.help.unwrap().contains("chaining"));
    contradiction(
        &format!("{BASE}[cni]\nplugin = \"calico\"\nmode = \"chaining\"\n"),
        "\"chaining\"",
    );
    // Not a mode at all: did-you-mean.
    one_problem(
        &format!("{BASE}[cni]\nplugin = \"cilium\"\nmode = \"chain\"\n"),
        ProblemCode::InvalidValue,
        "\"chain\"",
    );
    // The simulator keeps reading settings, without a bundle; a bundle there is fine too.
    parse_ok(&format!(
        "{BASE}[cni]\nplugin = \"cilium\"\nsettings = {{ a = 1 }}\n"
    ));
    parse_ok(&format!("{BASE}[cni]\nplugin = \"cilium\"\n{bundle}"));
}

#[test]
fn an_existing_cluster_takes_a_cni_bundle_but_not_the_default_cni() {
    let kube = "[cluster]\nname = \"t\"\nprovider = \"kube\"\ncontext = \"c\"\n";
    let p = contradiction(&format!("{kube}[cni]\nplugin = \"default\"\n"), "[cni]");
    assert!(p.message.contains("existing cluster"), "{}", p.message);
    let p = one_problem(
        &format!("{kube}[cni]\nplugin = \"cilium\"\n"),
        ProblemCode::MissingField,
        "[cni]",
    );
    assert!(p.message.contains("needs a `bundle`"), "{}", p.message);
    let s = parse_ok(&format!(
        "{kube}[cni]\nplugin = \"cilium\"\nbundle = {{ path = \"cilium.yaml\", sha256 = \"{}\" }}\n",
        "ab".repeat(32)
    ));
    assert!(
        s.cni.unwrap().mode.is_none(),
        "no mode: aws-node is left alone"
    );
}

#[test]
fn duplicate_entries_point_at_both() {
    let ns = "[[namespace]]\nname = \"a\"\n";
    let p = one_problem(
        &format!("{BASE}{ns}{ns}"),
        ProblemCode::DuplicateEntry,
        "[[namespace]]",
    );
    assert_eq!(
        p.span.offset(),
        BASE.len() + ns.len(),
        "points at the second"
    );
    assert_eq!(
        p.secondary[0].0.offset(),
        BASE.len(),
        "and labels the first"
    );
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bmac.toml");
    std::fs::write(&path, BASE).unwrap();
    let spec = Spec::load(&path).unwrap();
    assert_eq!(spec.source().0, path.display().to_string());
    assert_eq!(spec.base_dir(), dir.path());
    assert_eq!(
        spec.resolve_path(std::path::Path::new("bundles/kyverno.yaml")),
        dir.path().join("bundles/kyverno.yaml")
    );
    let err = Spec::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(err, SpecError::Read { .. }));
    let code = miette::Diagnostic::code(&err).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("bmac::spec::read"));
}

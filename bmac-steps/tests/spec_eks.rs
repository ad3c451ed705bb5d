//! The EKS spec: `[network]` in both forms, the cloud fields of `[cluster]`, pull-through
//! caches with `[registries.credentials]`, and the tables of bad inputs that must each fail at
//! validate time — with a code, a span on the offending value (so file:line:column) and a help
//! line — before any AWS call could be made.

use bmac_steps::spec::*;
use miette::SourceSpan;

const EKS: &str = "[cluster]\nname = \"prod\"\nprovider = \"eks\"\nregion = \"eu-west-1\"\n";

const CNI_BUNDLE: &str = "bundle = { path = \"cni.yaml\", sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\" }\n";

fn spanned_text(text: &str, span: SourceSpan) -> &str {
    &text[span.offset()..span.offset() + span.len()]
}

fn line_col(text: &str, span: SourceSpan) -> (usize, usize) {
    let before = &text[..span.offset()];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn parse_ok(text: &str) -> Spec {
    Spec::parse("bmac.toml", text)
        .unwrap_or_else(|e| panic!("unexpected error: {:?}", miette::Report::new(e)))
}

fn one_problem(text: &str) -> Problem {
    let problems = match Spec::parse("bmac.toml", text) {
        Ok(_) => panic!("spec parsed but should not:\n{text}"),
        Err(e) => e.problems().to_vec(),
    };
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:#?}");
    let p = problems.into_iter().next().unwrap();
    assert!(
        p.help.as_deref().is_some_and(|h| !h.is_empty()),
        "no help: {p:#?}"
    );
    p
}

#[test]
fn a_created_network_and_an_existing_one_read_back() {
    let spec = parse_ok(&format!(
        "{EKS}[network]\ncidr = \"10.8.0.0/16\"\nzones = [\"eu-west-1a\", \"eu-west-1b\"]\nnat = \"per_zone\"\n"
    ));
    let net = spec.network.expect("network");
    assert_eq!(net.cidr.value, "10.8.0.0/16");
    assert_eq!(net.nat, NatMode::PerZone);
    assert_eq!(net.zones.len(), 2);
    assert!(net.existing.is_none());

    let spec = parse_ok(&format!(
        "{EKS}[network]\nvpc_id = \"vpc-0abc\"\nsubnets.private = {{ \"eu-west-1a\" = \"subnet-1\", \"eu-west-1b\" = \"subnet-2\" }}\n"
    ));
    let e = spec.network.and_then(|n| n.existing).expect("existing");
    assert_eq!(e.vpc_id.value, "vpc-0abc");
    assert_eq!(e.private_subnets["eu-west-1b"].value, "subnet-2");
    assert!(e.public_subnets.is_empty());

    // No [network] at all is fine: bmac creates one.
    assert!(parse_ok(EKS).network.is_none());
}

#[test]
fn the_cloud_fields_of_the_cluster_read_back() {
    let spec = parse_ok(&format!(
        "{EKS}encryption_key = \"arn:aws:kms:eu-west-1:123456789012:key/k\"\nadmins = [\"arn:aws:iam::123456789012:role/platform\"]\n"
    ));
    assert_eq!(
        spec.cluster.encryption_key.unwrap().value,
        "arn:aws:kms:eu-west-1:123456789012:key/k"
    );
    assert_eq!(spec.cluster.admins.len(), 1);
}

/// Each bad input: the spec, the code, the text the error points at, and a word of the message.
#[test]
fn bad_inputs_fail_at_validate_time_pointing_at_the_value() {
    let pool = "[[node_pool]]\nname = \"a\"\nmin = 1\nmax = 2\n";
    let cases: Vec<(String, ProblemCode, &str, &str)> = vec![
        (
            format!("{EKS}[network]\nvpc_id = \"vpc-1\"\nsubnets.private = {{ \"eu-west-1a\" = \"subnet-1\", \"eu-west-1a\" = \"subnet-2\" }}\n"),
            ProblemCode::Syntax,
            "",
            "",
        ),
        (
            format!("{EKS}[network]\nvpc_id = \"vpc-1\"\nsubnets.private = {{ \"eu-west-1a\" = \"subnet-1\" }}\n"),
            ProblemCode::Contradiction,
            "subnets",
            "two availability zones",
        ),
        (
            format!("{EKS}[network]\nzones = [\"eu-west-1a\"]\n"),
            ProblemCode::Contradiction,
            "[network]",
            "two availability zones",
        ),
        (
            format!("{EKS}[network]\nzones = [\"eu-west-1a\", \"us-east-1b\"]\n"),
            ProblemCode::InvalidValue,
            "\"us-east-1b\"",
            "not an availability zone of eu-west-1",
        ),
        (
            format!("{EKS}[audit]\nlog_types = [\"audit\"]\nretention_days = 45\n"),
            ProblemCode::InvalidValue,
            "45",
            "45 days",
        ),
        (
            format!("{EKS}[audit]\nlog_types = [\"audit\"]\narchive = \"s3://acme-audit/prod\"\nlog_retention_days = 10\n"),
            ProblemCode::InvalidValue,
            "10",
            "10 days",
        ),
        (
            format!("{EKS}{pool}instance_types = [\"m6i.large\", \"m6l.large\"]\n"),
            ProblemCode::InvalidValue,
            "\"m6l.large\"",
            "no family `m6l`",
        ),
        (
            format!("{EKS}[[namespace]]\nname = \"pay\"\n[[workload_identity]]\nnamespace = \"pay\"\nservice_account = \"api\"\nrole = \"arn:aws-cn:iam::123456789012:role/api\"\n"),
            ProblemCode::InvalidValue,
            "\"arn:aws-cn:iam::123456789012:role/api\"",
            "partition `aws-cn`",
        ),
        (
            format!("{EKS}encryption_key = \"arn:aws:kms:us-east-1:123456789012:key/k\"\n"),
            ProblemCode::InvalidValue,
            "\"arn:aws:kms:us-east-1:123456789012:key/k\"",
            "region `us-east-1`",
        ),
        (
            format!("{EKS}admins = [\"arn:aws:s3:::bucket\"]\n"),
            ProblemCode::InvalidValue,
            "\"arn:aws:s3:::bucket\"",
            "IAM principal ARN expected",
        ),
        (
            format!("{EKS}[network]\ncidr = \"10.0.0.0/8\"\n"),
            ProblemCode::InvalidValue,
            "\"10.0.0.0/8\"",
            "/16 to /24",
        ),
        (
            format!("{EKS}[network]\nvpc_id = \"vpc-1\"\nnat = \"single\"\nsubnets.private = {{ \"eu-west-1a\" = \"subnet-1\", \"eu-west-1b\" = \"subnet-2\" }}\n"),
            ProblemCode::Contradiction,
            "nat",
            "existing VPC",
        ),
        (
            format!("{EKS}[cni]\nplugin = \"cilium\"\nversion = \"1.16.3\"\n"),
            ProblemCode::MissingField,
            "[cni]",
            "needs a `bundle` to install cilium",
        ),
        (
            format!("{EKS}[cni]\nplugin = \"calico\"\n{CNI_BUNDLE}"),
            ProblemCode::MissingField,
            "[cni]",
            "Calico on EKS needs a `mode`",
        ),
        (
            format!("{EKS}[cni]\nplugin = \"cilium\"\n{CNI_BUNDLE}settings = {{ kubeProxyReplacement = true }}\n"),
            ProblemCode::Contradiction,
            "settings",
            "cannot be applied to a release bundle",
        ),
        (
            "[cluster]\nname = \"t\"\nprovider = \"sim\"\nadmins = [\"arn:aws:iam::1:role/a\"]\n".to_owned(),
            ProblemCode::Contradiction,
            "admins",
            "does not apply",
        ),
    ];
    for (text, code, points_at, says) in cases {
        if code == ProblemCode::Syntax {
            // A zone named twice is a TOML duplicate key: caught before decoding.
            assert!(Spec::parse("bmac.toml", &text).is_err(), "{text}");
            continue;
        }
        let p = one_problem(&text);
        assert_eq!(p.code, code, "{text}\n{p:#?}");
        assert_eq!(spanned_text(&text, p.span), points_at, "{text}\n{p:#?}");
        assert!(p.message.contains(says), "{text}\n{}", p.message);
        let (line, col) = line_col(&text, p.span);
        assert!(line > 1 && col >= 1, "{line}:{col}");
    }
}

/// `[registries]` on EKS with pull-through caches: `mirrors` (upstream → mirror) and
/// `credentials` (upstream → ARN) tables, written into a spec of account 123456789012.
fn caches(mirrors: &str, credentials: &str) -> String {
    let mut text = format!(
        "{EKS}account = \"123456789012\"\n[registries]\nallowed = [\"*\"]\npull_through_cache = true\n[registries.mirrors]\n{mirrors}"
    );
    if !credentials.is_empty() {
        text.push_str(&format!("[registries.credentials]\n{credentials}"));
    }
    text
}

const HUB: &str = "\"docker.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub\"\n";
const SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/docker-hub-Ab12Cd";

#[test]
fn pull_through_caches_with_their_credentials_read_back() {
    let spec = parse_ok(&caches(
        &format!(
            "{HUB}\"registry.k8s.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/k8s\"\n"
        ),
        &format!("\"docker.io\" = \"{SECRET}\"\n"),
    ));
    let r = spec.registries.expect("registries");
    assert_eq!(r.credentials.len(), 1);
    assert_eq!(r.credential("index.docker.io").unwrap().arn.value, SECRET);
    assert!(r.credential("registry.k8s.io").is_none());
    // Existing mirrors (no pull-through cache) need neither ECR hosts nor credentials.
    parse_ok(&format!(
        "{EKS}[registries]\nallowed = [\"*\"]\n[registries.mirrors]\n\"docker.io\" = \"mirror.example.com/hub\"\n"
    ));
}

/// Each bad `[registries]` input on EKS: code, the text pointed at, a word of the message and
/// a word of the help.
#[test]
fn bad_registry_caches_fail_at_validate_time_pointing_at_the_value() {
    let hub_secret = |arn: &str| format!("\"docker.io\" = \"{arn}\"\n");
    let quoted_secret = format!("\"{SECRET}\"");
    let cases: Vec<(String, ProblemCode, &str, &str, &str)> = vec![
        (
            caches(HUB, ""),
            ProblemCode::MissingField,
            "\"docker.io\"",
            "needs credentials",
            "ecr-pullthroughcache/",
        ),
        (
            caches(HUB, &hub_secret("arn:aws:s3:::bucket")),
            ProblemCode::InvalidValue,
            "\"arn:aws:s3:::bucket\"",
            "Secrets Manager secret ARN expected",
            "secretsmanager",
        ),
        (
            caches(HUB, &hub_secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub")),
            ProblemCode::InvalidValue,
            "\"arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub\"",
            "region `us-east-1`",
            "eu-west-1",
        ),
        (
            caches(HUB, &hub_secret("arn:aws-cn:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/hub")),
            ProblemCode::InvalidValue,
            "\"arn:aws-cn:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/hub\"",
            "partition `aws-cn`",
            "partition `aws`",
        ),
        (
            caches(HUB, &hub_secret("arn:aws:secretsmanager:eu-west-1:123456789012:secret:dockerhub-Ab12Cd")),
            ProblemCode::InvalidValue,
            "\"arn:aws:secretsmanager:eu-west-1:123456789012:secret:dockerhub-Ab12Cd\"",
            "`dockerhub-Ab12Cd`",
            "ecr-pullthroughcache/",
        ),
        (
            caches(HUB, &hub_secret("arn:aws:secretsmanager:eu-west-1:999999999999:secret:ecr-pullthroughcache/hub")),
            ProblemCode::InvalidValue,
            "\"arn:aws:secretsmanager:eu-west-1:999999999999:secret:ecr-pullthroughcache/hub\"",
            "account 999999999999",
            "123456789012",
        ),
        (
            caches("\"docker.io\" = \"mirror.example.com/docker-hub\"\n", &hub_secret(SECRET)),
            ProblemCode::InvalidValue,
            "\"mirror.example.com/docker-hub\"",
            "not an ECR registry",
            "pull_through_cache = false",
        ),
        (
            caches("\"docker.io\" = \"123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub\"\n", &hub_secret(SECRET)),
            ProblemCode::InvalidValue,
            "\"123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub\"",
            "region `us-east-1`",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (
            caches("\"docker.io\" = \"999999999999.dkr.ecr.eu-west-1.amazonaws.com/docker-hub\"\n", &hub_secret(SECRET)),
            ProblemCode::InvalidValue,
            "\"999999999999.dkr.ecr.eu-west-1.amazonaws.com/docker-hub\"",
            "account 999999999999",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (
            caches("\"docker.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/Docker_Hub\"\n", &hub_secret(SECRET)),
            ProblemCode::InvalidValue,
            "\"123456789012.dkr.ecr.eu-west-1.amazonaws.com/Docker_Hub\"",
            "`Docker_Hub`",
            "lower-case",
        ),
        (
            caches("\"gcr.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/gcr\"\n", ""),
            ProblemCode::InvalidValue,
            "\"gcr.io\"",
            "cannot make a pull-through cache of `gcr.io`",
            "registry.k8s.io",
        ),
        (
            caches(
                "\"registry.k8s.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/k8s\"\n",
                &format!("\"registry.k8s.io\" = \"{SECRET}\"\n"),
            ),
            ProblemCode::Contradiction,
            &quoted_secret,
            "takes no credentials",
            "remove",
        ),
        (
            caches(HUB, &format!("\"docker.io\" = \"{SECRET}\"\n\"ghcr.io\" = \"{SECRET}\"\n")),
            ProblemCode::Contradiction,
            "\"ghcr.io\"",
            "which has no mirror",
            "[registries.mirrors]",
        ),
        (
            caches(
                &format!("{HUB}\"quay.io\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub\"\n"),
                &hub_secret(SECRET),
            ),
            ProblemCode::Contradiction,
            "\"123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub\"",
            "share the repository prefix",
            "own prefix",
        ),
        (
            caches(
                "\"111122223333.dkr.ecr.us-west-2.amazonaws.com\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shared\"\n",
                "",
            ),
            ProblemCode::MissingField,
            "\"111122223333.dkr.ecr.us-west-2.amazonaws.com\"",
            "needs an IAM role",
            "pullthroughcache.ecr.amazonaws.com",
        ),
        (
            format!(
                "{EKS}[registries]\nallowed = [\"*\"]\n[registries.mirrors]\n\"docker.io\" = \"mirror.example.com/hub\"\n[registries.credentials]\n\"docker.io\" = \"{SECRET}\"\n"
            ),
            ProblemCode::Contradiction,
            "\"docker.io\"",
            "not pull-through caches",
            "pull_through_cache = true",
        ),
    ];
    for (text, code, points_at, says, helps) in &cases {
        let p = one_problem(text);
        assert_eq!(p.code, *code, "{text}\n{p:#?}");
        assert_eq!(spanned_text(text, p.span), *points_at, "{text}\n{p:#?}");
        assert!(p.message.contains(says), "{text}\n{}", p.message);
        let help = p.help.as_deref().unwrap_or_default();
        assert!(help.contains(helps), "{text}\n{help}");
        let (line, col) = line_col(text, p.span);
        assert!(line > 1 && col >= 1, "{line}:{col}");
    }
    // A role of the cache's account for an ECR upstream passes.
    parse_ok(&caches(
        "\"111122223333.dkr.ecr.us-west-2.amazonaws.com\" = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shared\"\n",
        "\"111122223333.dkr.ecr.us-west-2.amazonaws.com\" = \"arn:aws:iam::123456789012:role/ecr-ptc\"\n",
    ));
}

#[test]
fn the_same_values_pass_where_they_are_right() {
    parse_ok(&format!(
        "{EKS}encryption_key = \"arn:aws:kms:eu-west-1:123456789012:key/k\"\n[audit]\nlog_types = [\"audit\"]\nretention_days = 90\n[[node_pool]]\nname = \"a\"\nmin = 1\nmax = 2\ninstance_types = [\"m6i.large\", \"c7g.xlarge\"]\n[network]\nzones = [\"eu-west-1a\", \"eu-west-1b\"]\n"
    ));
    // A retention CloudWatch cannot keep is fine on the simulator.
    parse_ok("[cluster]\nname = \"t\"\nprovider = \"sim\"\n[audit]\nlog_types = [\"audit\"]\nretention_days = 45\n");
    assert_eq!(partition("cn-north-1"), "aws-cn");
    assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    assert_eq!(partition("eu-west-1"), "aws");
}

#[test]
fn addon_and_workload_identity_rules_point_at_the_entry() {
    let cni = "[cni]\nplugin = \"default\"\n";
    let cases: Vec<(String, ProblemCode, &str, &str)> = vec![
        (
            format!("{EKS}{cni}[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"aws-node\"\npermissions = [\"ec2:AssignPrivateIpAddresses\"]\n"),
            ProblemCode::Contradiction,
            "[[workload_identity]]",
            "belongs to the `vpc-cni` add-on",
        ),
        (
            format!("{EKS}[[storage_class]]\nname = \"gp3\"\ntype = \"gp3\"\n[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"ebs-csi-controller-sa\"\npermissions = [\"ec2:CreateVolume\"]\n"),
            ProblemCode::Contradiction,
            "[[workload_identity]]",
            "belongs to the `aws-ebs-csi-driver` add-on",
        ),
        (
            format!("{EKS}[cni]\nplugin = \"default\"\nversion = \"1.18\"\n"),
            ProblemCode::InvalidValue,
            "[cni]",
            "not an EKS add-on version",
        ),
        (
            "[cluster]\nname = \"t\"\nprovider = \"gke\"\nregion = \"europe-west1\"\nproject = \"acme-prod\"\n[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"a\"\nrole = \"a@p.iam.gserviceaccount.com\"\nmechanism = \"irsa\"\n".to_owned(),
            ProblemCode::Contradiction,
            "\"irsa\"",
            "`mechanism` does not apply",
        ),
        (
            format!("{EKS}[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"a\"\npermissions = [\"s3:GetObject\"]\nmechanism = \"oidc\"\n"),
            ProblemCode::InvalidValue,
            "\"oidc\"",
            "not a valid `mechanism`",
        ),
    ];
    for (text, code, points_at, says) in cases {
        let p = one_problem(&text);
        assert_eq!(p.code, code, "{text}\n{p:#?}");
        let at = spanned_text(&text, p.span);
        assert!(at.starts_with(points_at), "{text}\n{at:?}\n{p:#?}");
        assert!(p.message.contains(says), "{text}\n{}", p.message);
    }
    // Right where they are right: the add-on's pinned version and settings, IRSA on EKS, and
    // the add-on accounts when bmac does not install the add-on.
    parse_ok(&format!(
        "{EKS}[cni]\nplugin = \"default\"\nversion = \"v1.18.3-eksbuild.1\"\nsettings = {{ env = {{ WARM_IP_TARGET = \"5\" }} }}\n[[workload_identity]]\nnamespace = \"kube-system\"\nservice_account = \"ebs-csi-controller-sa\"\npermissions = [\"ec2:CreateVolume\"]\nmechanism = \"irsa\"\n"
    ));
}

/// The `cni` step's config as the catalogue makes it for `text`, its bundle resolved in `base`.
fn cni_config(text: &str, base: &std::path::Path) -> serde_json::Value {
    let spec = parse_ok(text);
    let expansion = bmac_steps::expand_in(&spec, base).unwrap_or_else(|e| panic!("{e:?}"));
    let step = expansion
        .steps
        .iter()
        .find(|s| s.kind.name() == bmac_steps::kinds::CNI)
        .expect("a cni step");
    serde_json::Value::clone(&step.config)
}

#[test]
fn a_cni_on_eks_is_pinned_and_says_what_becomes_of_the_vpc_cni() {
    let base = std::path::Path::new("/specs");
    let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cilium = cni_config(
        &format!("{EKS}[cni]\nplugin = \"cilium\"\nversion = \"1.16.3\"\n{CNI_BUNDLE}"),
        base,
    );
    assert_eq!(
        cilium,
        serde_json::json!({"plugin": "cilium", "version": "1.16.3", "mode": "cni",
            "provider": "eks", "bundle": {"source": "/specs/cni.yaml", "sha256": digest}})
    );
    let chained = cni_config(
        &format!("{EKS}[cni]\nplugin = \"cilium\"\nmode = \"chaining\"\n{CNI_BUNDLE}"),
        base,
    );
    assert_eq!(chained["mode"], "chaining");
    let calico = cni_config(
        &format!("{EKS}[cni]\nplugin = \"calico\"\nmode = \"policy\"\n{CNI_BUNDLE}"),
        base,
    );
    assert_eq!(calico["mode"], "policy");
    // The simulator's cni step is what it always was: no bundle, mode or provider.
    let sim = cni_config(
        "[cluster]\nname = \"t\"\nprovider = \"sim\"\n[cni]\nplugin = \"cilium\"\nsettings = { hubble = true }\n",
        base,
    );
    assert_eq!(
        sim,
        serde_json::json!({"plugin": "cilium", "settings": {"hubble": true}})
    );
    // A bundle without its digest is refused by the catalogue, pointing at it.
    let spec = parse_ok(&format!(
        "{EKS}[cni]\nplugin = \"cilium\"\nbundle = {{ path = \"cni.yaml\" }}\n"
    ));
    let err = bmac_steps::expand_in(&spec, base).expect_err("unpinned");
    assert!(err.to_string().contains("has no `sha256`"), "{err}");
}

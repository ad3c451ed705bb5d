//! Expanding `examples/quickstart.toml`: the steps, their real dependencies, the outputs that
//! flow between them, and a plan that is acyclic.

use std::collections::BTreeSet;
use std::path::Path;

use bmac_core::plan::Planner;
use bmac_core::state::State;
use bmac_core::step::{Ref, Step, StepId};
use bmac_steps::config::{PolicyConfig, PolicyEngineConfig, ServiceAccountConfig};
use bmac_steps::spec::Spec;
use bmac_steps::{expand, kinds, Expansion};

fn quickstart() -> (Spec, Expansion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml");
    let spec = Spec::load(&path).expect("the quickstart parses");
    let expansion = expand(&spec).expect("the quickstart expands");
    (spec, expansion)
}

fn step<'a>(e: &'a Expansion, id: &str) -> &'a Step {
    e.steps
        .iter()
        .find(|s| s.id.as_str() == id)
        .unwrap_or_else(|| panic!("no step `{id}`"))
}

fn deps(e: &Expansion, id: &str) -> BTreeSet<String> {
    step(e, id)
        .dependencies()
        .map(|d| d.as_str().to_owned())
        .collect()
}

fn assert_after(e: &Expansion, id: &str, before: &[&str]) {
    let d = deps(e, id);
    for b in before {
        assert!(
            d.contains(*b),
            "`{id}` should come after `{b}`; deps: {d:?}"
        );
    }
}

#[test]
fn the_quickstart_expands_into_every_concern() {
    let (_, e) = quickstart();
    let ids: BTreeSet<&str> = e.steps.iter().map(|s| s.id.as_str()).collect();
    let expected = [
        "cluster",
        "cni",
        "node_pool.system",
        "node_pool.workers",
        "storage_class.standard",
        "storage_class.fast",
        "audit.logging",
        "audit.bucket",
        "audit.archive",
        "audit.alarm",
        "namespace.payments",
        "namespace.web",
        "pod_security.payments",
        "pod_security.web",
        "pod_security.kube-system",
        "policy.engine",
        "policy.disallow-privileged",
        "policy.disallow-host-namespaces",
        "policy.require-non-root",
        "policy.restrict-registries",
        "policy.default-pod-security-labels",
        "registries.mirror.docker-io",
        "registries.mirror.ghcr-io",
        "workload_identity.payments-api.role",
        "workload_identity.payments-api.service_account",
        "workload_identity.web-frontend.role",
        "workload_identity.web-frontend.service_account",
        "manifest.web-config",
    ];
    assert_eq!(ids, expected.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(e.steps.len(), expected.len(), "no duplicate steps");
    let kind = |id: &str| step(&e, id).kind.name().to_owned();
    assert_eq!(kind("pod_security.web"), kinds::POD_SECURITY_LABELS);
    assert_eq!(kind("audit.bucket"), kinds::OBJECT_BUCKET);
    assert_eq!(kind("registries.mirror.ghcr-io"), kinds::REGISTRY_MIRROR);
    assert_eq!(kind("workload_identity.web-frontend.role"), kinds::IAM_ROLE);
}

#[test]
fn steps_depend_on_what_they_really_need() {
    let (_, e) = quickstart();
    assert!(deps(&e, "cluster").is_empty());
    assert_after(&e, "cni", &["cluster"]);
    assert_after(&e, "node_pool.system", &["cluster", "cni"]);
    assert_after(&e, "node_pool.workers", &["cluster", "cni"]);
    // The policy engine runs on nodes and pulls through the mirrors.
    assert_after(
        &e,
        "policy.engine",
        &[
            "node_pool.system",
            "node_pool.workers",
            "registries.mirror.docker-io",
            "registries.mirror.ghcr-io",
        ],
    );
    assert_after(&e, "policy.require-non-root", &["policy.engine"]);
    assert_after(
        &e,
        "policy.restrict-registries",
        &[
            "policy.engine",
            "registries.mirror.docker-io",
            "registries.mirror.ghcr-io",
        ],
    );
    assert_after(&e, "registries.mirror.docker-io", &["cluster"]);
    assert_after(
        &e,
        "workload_identity.payments-api.service_account",
        &["workload_identity.payments-api.role", "namespace.payments"],
    );
    assert_after(&e, "workload_identity.payments-api.role", &["cluster"]);
    assert_after(&e, "pod_security.payments", &["namespace.payments"]);
    assert_after(&e, "pod_security.web", &["namespace.web"]);
    assert_after(&e, "audit.logging", &["cluster"]);
    assert_after(&e, "audit.archive", &["audit.logging", "audit.bucket"]);
    assert_after(&e, "audit.alarm", &["audit.logging"]);
    // The bucket needs nothing, so it is built while the cluster is.
    assert!(deps(&e, "audit.bucket").is_empty());
    // The spec's own `depends_on` items.
    assert_after(&e, "namespace.web", &["namespace.payments"]);
    assert_after(
        &e,
        "manifest.web-config",
        &["namespace.web", "pod_security.web"],
    );
    assert_after(&e, "policy.default-pod-security-labels", &["cni"]);
    // Workloads are admitted under the baseline.
    assert_after(&e, "manifest.web-config", &["policy.restrict-registries"]);
}

#[test]
fn in_cluster_steps_take_their_client_from_the_cluster_outputs() {
    let (_, e) = quickstart();
    let cluster = StepId::new("cluster").unwrap();
    for s in &e.steps {
        let in_cluster = [
            kinds::CNI,
            kinds::STORAGE_CLASS,
            kinds::NAMESPACE,
            kinds::POD_SECURITY_LABELS,
            kinds::POLICY_ENGINE,
            kinds::POLICY,
            kinds::SERVICE_ACCOUNT,
            kinds::MANIFEST,
        ]
        .contains(&s.kind.name());
        for input in ["endpoint", "ca_data", "credentials"] {
            let expected = Ref::new(cluster.clone(), input);
            assert_eq!(
                s.inputs.get(input) == Some(&expected),
                in_cluster,
                "{} ({}) input {input}",
                s.id,
                s.kind
            );
        }
    }
}

#[test]
fn outputs_flow_as_references() {
    let (_, e) = quickstart();
    let role = StepId::new("workload_identity.payments-api.role").unwrap();
    let sa = step(&e, "workload_identity.payments-api.service_account");
    assert_eq!(sa.inputs.get("role"), Some(&Ref::new(role, "arn")));
    let config: ServiceAccountConfig = sa.config_as().unwrap();
    assert_eq!(config.namespace, "payments");
    assert_eq!(config.name, "api");
    assert_eq!(config.role_annotation, "sim.bmac.invalid/role");
    let role = step(&e, "workload_identity.payments-api.role");
    assert_eq!(
        role.inputs.get("oidc_issuer"),
        Some(&Ref::new(StepId::new("cluster").unwrap(), "oidc_issuer"))
    );
    let archive = step(&e, "audit.archive");
    assert_eq!(
        archive.inputs.get("log_group"),
        Some(&Ref::new(
            StepId::new("audit.logging").unwrap(),
            "log_group"
        ))
    );
    assert_eq!(
        archive.inputs.get("bucket"),
        Some(&Ref::new(StepId::new("audit.bucket").unwrap(), "bucket"))
    );
}

#[test]
fn the_plan_is_acyclic_and_creates_everything() {
    let (_, e) = quickstart();
    let n = e.steps.len();
    let plan = Planner::new(e.steps, &State::default())
        .sources(e.sources)
        .plan()
        .expect("the quickstart plans");
    assert_eq!(plan.summary().create, n);
    // Topological: every dependency of a node comes before it.
    let position = |id: &StepId| plan.nodes().iter().position(|n| &n.step.id == id).unwrap();
    for (i, node) in plan.nodes().iter().enumerate() {
        for dep in node.step.dependencies() {
            assert!(
                position(dep) < i,
                "{} planned before its dep {dep}",
                node.step.id
            );
        }
    }
}

#[test]
fn sources_point_every_step_and_edge_into_the_spec() {
    let (spec, e) = quickstart();
    let text = spec.source().1.clone();
    for s in &e.steps {
        assert!(e.sources.steps.contains_key(&s.id), "no span for {}", s.id);
        for dep in s.dependencies() {
            assert!(
                e.sources.edges.contains_key(&(s.id.clone(), dep.clone())),
                "no span for edge {} -> {dep}",
                s.id
            );
        }
    }
    // A spec-made edge points at its `depends_on` item.
    let key = (
        StepId::new("namespace.web").unwrap(),
        StepId::new("namespace.payments").unwrap(),
    );
    let span = e.sources.edges[&key];
    let written = &text[span.offset()..span.offset() + span.len()];
    assert!(written.contains("namespace.payments"), "{written:?}");
    // A step's span is its entry's table: the second `[[node_pool]]` for the workers pool.
    let span = e.sources.steps[&StepId::new("node_pool.workers").unwrap()];
    assert!(text[span.offset()..].starts_with("[[node_pool]]"));
    let before = &text[..span.offset()];
    assert!(before.contains("name = \"system\"") && !before.contains("name = \"workers\""));
}

#[test]
fn policies_are_valid_kyverno_cluster_policies() {
    let (_, e) = quickstart();
    let policies: Vec<&Step> = e
        .steps
        .iter()
        .map(|s| &**s)
        .filter(|s| s.kind.name() == kinds::POLICY)
        .collect();
    assert_eq!(policies.len(), 5);
    for s in policies {
        let config: PolicyConfig = s.config_as().unwrap();
        assert_eq!(config.engine, "kyverno");
        assert_eq!(format!("policy.{}", config.name), s.id.as_str());
        assert_eq!(config.objects.len(), 1);
        let o = &config.objects[0];
        assert_eq!(o["apiVersion"], "kyverno.io/v1", "{}", s.id);
        assert_eq!(o["kind"], "ClusterPolicy");
        assert_eq!(o["metadata"]["name"], config.name.as_str());
        assert_eq!(o["spec"]["validationFailureAction"], "Enforce");
        assert_eq!(o["spec"]["background"], true);
        let rules = o["spec"]["rules"].as_array().unwrap();
        assert!(!rules.is_empty());
        for rule in rules {
            assert!(rule["name"].is_string());
            assert!(rule["match"]["any"].is_array());
            assert!(rule["validate"].is_object() || rule["mutate"].is_object());
        }
    }
    let registries: PolicyConfig = step(&e, "policy.restrict-registries").config_as().unwrap();
    let image = registries.objects[0]["spec"]["rules"][0]["validate"]["pattern"]["spec"]
        ["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    for allowed in [
        "registry.example.com/*",
        "docker.io/*",
        "ghcr.io/*",
        "registry.example.com/docker-hub/*",
    ] {
        assert!(image.split(" | ").any(|p| p == allowed), "{image}");
    }
    let labels: PolicyConfig = step(&e, "policy.default-pod-security-labels")
        .config_as()
        .unwrap();
    let added = &labels.objects[0]["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["metadata"]
        ["labels"];
    assert_eq!(added["+(pod-security.kubernetes.io/enforce)"], "restricted");
}

#[test]
fn the_engine_is_pinned_mirrored_and_its_bundle_resolved_next_to_the_spec() {
    let (_, e) = quickstart();
    let engine: PolicyEngineConfig = step(&e, "policy.engine").config_as().unwrap();
    assert_eq!(engine.engine, "kyverno");
    assert_eq!(engine.version, "1.12.5");
    assert_eq!(
        engine.image_mirrors.get("docker.io").map(String::as_str),
        Some("registry.example.com/docker-hub")
    );
    let bundle = engine.bundle.expect("the quickstart has a bundle");
    let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bundles/kyverno.yaml");
    assert_eq!(Path::new(&bundle.source), expected);
    assert_eq!(bundle.sha256.len(), 64);
}

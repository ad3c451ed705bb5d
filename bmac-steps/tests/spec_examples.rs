//! The example specs users copy must parse and pass lint with no findings at all.

use std::path::PathBuf;

use bmac_steps::spec::{lint, Spec};

fn example(name: &str) -> Spec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    match Spec::load(&path) {
        Ok(spec) => spec,
        Err(e) => panic!("{name} does not parse: {:?}", miette::Report::new(e)),
    }
}

fn assert_lint_clean(name: &str) -> Spec {
    let spec = example(name);
    let findings = lint::lint(&spec);
    let shown: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {}", f.rule, f.message))
        .collect();
    assert!(shown.is_empty(), "{name} has lint findings: {shown:#?}");
    spec
}

#[test]
fn quickstart_is_the_full_baseline_and_lint_clean() {
    let spec = assert_lint_clean("quickstart.toml");
    assert_eq!(spec.node_pools.len(), 2);
    assert_eq!(
        spec.storage_classes
            .iter()
            .filter(|s| s.default.value)
            .count(),
        1
    );
    assert_eq!(spec.namespaces.len(), 2);
    assert_eq!(spec.workload_identities.len(), 2);
    assert_eq!(spec.manifests.len(), 1);
    assert_eq!(spec.sim.seed, 42);
    assert!(spec.policy.as_ref().is_some_and(|p| p.baseline.len() == 5));
    let ids: Vec<&str> = spec.entries().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cluster",
            "node_pool.system",
            "node_pool.workers",
            "cni",
            "storage_class.standard",
            "storage_class.fast",
            "audit",
            "pod_security",
            "policy",
            "registries",
            "workload_identity.payments-api",
            "workload_identity.web-frontend",
            "namespace.payments",
            "namespace.web",
            "manifest.web-config",
        ]
    );
}

#[test]
fn eks_baseline_is_lint_clean() {
    let spec = assert_lint_clean("eks-baseline.toml");
    assert_eq!(spec.cluster.provider.value, bmac_steps::spec::Provider::Eks);
}

#[test]
fn gke_baseline_is_lint_clean() {
    let spec = assert_lint_clean("gke-baseline.toml");
    assert_eq!(spec.cluster.provider.value, bmac_steps::spec::Provider::Gke);
}

#[test]
fn existing_cluster_is_lint_clean_and_uses_the_context() {
    let spec = assert_lint_clean("existing-cluster.toml");
    assert_eq!(spec.cluster.context.as_deref(), Some("bmac-admin"));
    assert_eq!(spec.cluster.kubeconfig, None);
}

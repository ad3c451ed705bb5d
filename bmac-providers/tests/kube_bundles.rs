//! Release bundles as users install them, against the real kube-apiserver 1.20
//! (`scripts/kube-env.sh`): Argo CD– and Flux–shaped installs (written for these tests, see
//! `kube_support/releases.rs`) applied as `manifest` steps with a pinned bundle, the delivery
//! objects applied on top and read back with kube-rs, a re-apply that sends no write (the API
//! server's own `apiserver_request_total`), and a bundle using an API 1.20 lacks refused before
//! anything of it is written.
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p
//! bmac-providers --features kube --test kube_bundles`.

#![cfg(feature = "kube")]

mod kube_support;

use bmac_steps::config::{Bundle, ManifestConfig};
use bmac_steps::kinds;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube_support::fixtures::namespace;
use kube_support::releases::{self, yaml};
use kube_support::*;
use serde_json::{json, Value};

/// A `manifest` step installing `objects` as a bundle file written into `dir`.
fn bundle_step(
    dir: &std::path::Path,
    name: &str,
    objects: &[Value],
    ns: Option<&str>,
) -> bmac_core::Step {
    let text = yaml(objects);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, &text).expect("write bundle");
    let cfg = ManifestConfig {
        name: name.into(),
        objects: Vec::new(),
        bundle: Some(Bundle {
            source: path.to_str().expect("utf-8 path").into(),
            sha256: bmac_steps::bundle_cache::sha256_hex(text.as_bytes()),
        }),
        namespace: ns.map(str::to_owned),
    };
    in_cluster(&format!("manifest.{name}"), kinds::MANIFEST, &cfg)
}

/// A `manifest` step of objects written in the spec.
fn objects_step(name: &str, objects: Vec<Value>, ns: Option<&str>) -> bmac_core::Step {
    let cfg = ManifestConfig {
        name: name.into(),
        objects,
        bundle: None,
        namespace: ns.map(str::to_owned),
    };
    in_cluster(&format!("manifest.{name}"), kinds::MANIFEST, &cfg)
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

#[tokio::test]
async fn argo_cd_and_flux_shaped_releases_install_read_back_and_reapply_without_writes() {
    let Some(c) =
        connect("argo_cd_and_flux_shaped_releases_install_read_back_and_reapply_without_writes")
            .await
    else {
        return;
    };
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");

    // Argo CD: the spec declares its namespace (bmac creates it first); the release names none.
    let ns_argocd = in_cluster(
        "namespace.argocd",
        kinds::NAMESPACE,
        &namespace("argocd", &[]),
    );
    let argocd = bundle_step(dir.path(), "argocd", &releases::argocd(), Some("argocd"));
    // Flux: the release creates its own namespace.
    let flux = bundle_step(dir.path(), "flux", &releases::flux(), None);
    let delivery = [
        objects_step(
            "argocd-apps",
            vec![
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                    "metadata": {"name": "platform"},
                    "spec": {"destinations": [{"namespace": "payments", "server": "https://kubernetes.default.svc"}],
                             "sourceRepos": ["https://git.example.invalid/platform.git"]}}),
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                    "metadata": {"name": "payments"},
                    "spec": {"project": "platform",
                             "source": {"repoURL": "https://git.example.invalid/platform.git", "path": "payments", "targetRevision": "main"},
                             "destination": {"namespace": "payments", "server": "https://kubernetes.default.svc"},
                             "syncPolicy": {"automated": {"prune": true}}}}),
            ],
            Some("argocd"),
        ),
        objects_step(
            "flux-sources",
            vec![
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                    "metadata": {"name": "platform", "namespace": "flux-system"},
                    "spec": {"url": "ssh://git.example.invalid/platform.git", "interval": "1m"}}),
                json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                    "metadata": {"name": "payments", "namespace": "flux-system"},
                    "spec": {"path": "./payments", "prune": true}}),
            ],
            None,
        ),
    ];
    let mut steps = vec![&ns_argocd, &argocd, &flux];
    steps.extend(delivery.iter());
    for step in &steps {
        run.apply(step)
            .await
            .unwrap_or_else(|e| panic!("{}: {}", step.id, e.message));
    }

    // Namespace-less objects landed in the manifest's namespace, cluster-scoped ones stayed so.
    let sa: Api<ServiceAccount> = Api::namespaced(c.admin.clone(), "argocd");
    assert!(sa.get_opt("argocd-server").await.expect("GET sa").is_some());
    let default_sa: Api<ServiceAccount> = Api::namespaced(c.admin.clone(), "default");
    assert!(default_sa
        .get_opt("argocd-server")
        .await
        .expect("GET sa")
        .is_none());
    let cm: Api<ConfigMap> = Api::namespaced(c.admin.clone(), "argocd");
    let argocd_cm = cm.get("argocd-cm").await.expect("argocd-cm in argocd");
    assert_eq!(
        argocd_cm
            .data
            .unwrap_or_default()
            .get("timeout.reconciliation")
            .map(String::as_str),
        Some("180s")
    );
    let crb: Api<ClusterRoleBinding> = Api::all(c.admin.clone());
    assert!(crb
        .get_opt("bmac-test-argocd-application-controller")
        .await
        .expect("GET")
        .is_some());

    // Ports without `protocol` were applied (SSA on 1.20 needs the key) and mean TCP.
    let svc: Api<Service> = Api::namespaced(c.admin.clone(), "argocd");
    let ports = svc
        .get("argocd-server")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default();
    assert_eq!(ports.len(), 2);
    assert!(
        ports.iter().all(|p| p.protocol.as_deref() == Some("TCP")),
        "{ports:?}"
    );
    let deploy: Api<Deployment> = Api::namespaced(c.admin.clone(), "flux-system");
    let d = deploy.get("source-controller").await.expect("deployment");
    let port = &d
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .ports
        .clone()
        .unwrap_or_default()[0];
    assert_eq!(
        (port.container_port, port.protocol.as_deref()),
        (9090, Some("TCP"))
    );

    // The big CRD is over the annotation limit and carries no last-applied annotation.
    let crds: Api<CustomResourceDefinition> = Api::all(c.admin.clone());
    let big = crds
        .get("applications.argoproj.io")
        .await
        .expect("Application CRD");
    let size = serde_json::to_vec(&big.spec).expect("json").len();
    assert!(size > 256 * 1024, "the generated CRD is only {size} bytes");
    let annotations = big.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));

    // The delivery objects, read back.
    let project: Api<DynamicObject> = Api::namespaced_with(
        c.admin.clone(),
        "argocd",
        &resource("argoproj.io", "v1alpha1", "AppProject", "appprojects"),
    );
    let p = project.get("platform").await.expect("AppProject in argocd");
    assert_eq!(
        p.data["spec"]["sourceRepos"],
        json!(["https://git.example.invalid/platform.git"])
    );
    let apps: Api<DynamicObject> = Api::namespaced_with(
        c.admin.clone(),
        "argocd",
        &resource("argoproj.io", "v1alpha1", "Application", "applications"),
    );
    let app = apps.get("payments").await.expect("Application");
    assert_eq!(
        app.data["spec"]["syncPolicy"]["automated"]["prune"],
        json!(true)
    );
    let git: Api<DynamicObject> = Api::namespaced_with(
        c.admin.clone(),
        "flux-system",
        &resource(
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
        ),
    );
    assert_eq!(
        git.get("platform").await.expect("GitRepository").data["spec"]["interval"],
        json!("1m")
    );
    let ks: Api<DynamicObject> = Api::namespaced_with(
        c.admin.clone(),
        "flux-system",
        &resource(
            "kustomize.toolkit.fluxcd.io",
            "v1",
            "Kustomization",
            "kustomizations",
        ),
    );
    assert_eq!(
        ks.get("payments").await.expect("Kustomization").data["spec"]["path"],
        json!("./payments")
    );

    // Observe finds everything as applied; a re-apply sends no write.
    for step in [&argocd, &flux] {
        let (config, _) = present(run.observe(step).await.expect("observe"));
        let sha = config["bundle"]["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!sha.contains("changed outside bmac"), "{}: {sha}", step.id);
    }
    let before = writes(&c.admin).await;
    for step in &steps {
        run.apply(step)
            .await
            .unwrap_or_else(|e| panic!("re-apply {}: {}", step.id, e.message));
    }
    let after = writes(&c.admin).await;
    assert_eq!(after - before, 0, "an unchanged re-apply must not write");

    for step in steps.iter().rev() {
        run.destroy(step)
            .await
            .unwrap_or_else(|e| panic!("destroy {}: {}", step.id, e.message));
    }
    assert!(crds
        .get_opt("applications.argoproj.io")
        .await
        .expect("GET")
        .is_none());
}

#[tokio::test]
async fn a_bundle_using_an_api_the_server_lacks_is_refused_before_anything_is_written() {
    let Some(c) =
        connect("a_bundle_using_an_api_the_server_lacks_is_refused_before_anything_is_written")
            .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let ns = format!("gk-{}", suffix());
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "gatekeeper-controller-manager", "namespace": ns},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "gatekeeper"}}}}),
    ];
    let step = bundle_step(dir.path(), "gatekeeper", &objects, None);
    let before = writes(&c.admin).await;
    let err = run.apply(&step).await.expect_err("policy/v1 is 1.21+");
    let after = writes(&c.admin).await;
    assert!(!err.is_retryable(), "{}", err.message);
    assert_eq!(err.code.as_deref(), Some("bmac::kube::api_missing"));
    assert!(
        err.message.contains(&format!(
            "policy/v1 PodDisruptionBudget {ns}/gatekeeper-controller-manager"
        )),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("policy/v1beta1"),
        "names what the server offers: {}",
        err.message
    );
    assert_eq!(after - before, 0, "nothing of the bundle may be written");
    assert!(namespace_labels(&c.admin, &ns).await.is_none());
}

//! Non-default CNIs on EKS, against the real kube-apiserver 1.20: the `cni` step the catalogue
//! makes from an EKS spec installs a Cilium- or Calico-shaped bundle (written for the test) and
//! does to the VPC CNI's `aws-node` DaemonSet — created first, as EKS has it, its fields owned by
//! the `eks` field manager — what the vendor's EKS guide says: Cilium's nodeSelector, Calico's
//! `ANNOTATE_POD_IP` with the RBAC to patch pods (policy mode), or deleting it (Calico as the
//! CNI). Re-applies send no write; destroy removes the bundle and restores `aws-node`; a wrong
//! digest applies nothing, `aws-node` included.
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p
//! bmac-providers --features kube --test kube_cni`.

#![cfg(feature = "kube")]

mod kube_support;

use bmac_core::Step;
use bmac_steps::config::CniConfig;
use bmac_steps::kinds;
use bmac_steps::spec::Spec;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use kube_support::releases::{self, yaml};
use kube_support::*;
use serde_json::{json, Value};

/// The `cni` step of an EKS spec installing `objects` as the pinned bundle `plugin.yaml` in
/// `dir`, with `mode` when given; `sha256` overrides the pinned digest.
fn cni_step(
    dir: &std::path::Path,
    plugin: &str,
    mode: Option<&str>,
    objects: &[Value],
    sha256: Option<&str>,
) -> Step {
    let text = yaml(objects);
    std::fs::write(dir.join(format!("{plugin}.yaml")), &text).expect("bundle");
    let digest = bmac_steps::bundle_cache::sha256_hex(text.as_bytes());
    let mode = mode
        .map(|m| format!("mode = \"{m}\"\n"))
        .unwrap_or_default();
    let spec = format!(
        "[cluster]\nname = \"prod\"\nprovider = \"eks\"\nregion = \"eu-west-1\"\n\
         [cni]\nplugin = \"{plugin}\"\nversion = \"1.0.0\"\n{mode}\
         bundle = {{ path = \"{plugin}.yaml\", sha256 = \"{}\" }}\n",
        sha256.unwrap_or(&digest)
    );
    let spec = Spec::parse("bmac.toml", &spec).unwrap_or_else(|e| panic!("{e:?}"));
    let expansion = bmac_steps::expand_in(&spec, dir).unwrap_or_else(|e| panic!("{e:?}"));
    let step = expansion
        .steps
        .iter()
        .find(|s| s.kind.name() == kinds::CNI)
        .expect("a cni step")
        .as_ref()
        .clone();
    let cfg: CniConfig = step.config_as().expect("cni config");
    assert_eq!(cfg.provider.as_deref(), Some("eks"));
    step
}

fn daemon_sets(admin: &Client) -> Api<DaemonSet> {
    Api::namespaced(admin.clone(), "kube-system")
}

/// `kube-system/aws-node`, as JSON.
async fn aws_node(admin: &Client) -> Option<Value> {
    let ds = daemon_sets(admin)
        .get_opt("aws-node")
        .await
        .expect("GET aws-node");
    ds.map(|d| serde_json::to_value(d).expect("json"))
}

/// Creates `aws-node` as the EKS add-on does: server-side applied by the `eks` manager.
async fn install_aws_node(admin: &Client, network_policy: bool) {
    let mut params = PatchParams::apply("eks");
    params.force = true;
    daemon_sets(admin)
        .patch(
            "aws-node",
            &params,
            &Patch::Apply(releases::aws_node(network_policy)),
        )
        .await
        .expect("create aws-node");
}

fn env<'a>(aws_node: &'a Value, name: &str) -> Option<&'a str> {
    aws_node["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == json!(name))
        .and_then(|e| e["value"].as_str())
}

fn installations(admin: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("operator.tigera.io", "v1", "Installation");
    Api::all_with(
        admin.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "installations"),
    )
}

/// Removes what a failed earlier run may have left: `aws-node`, the bundles' objects and the
/// policy mode's RBAC.
async fn reset(admin: &Client) {
    let _finalizer = NamespaceFinalizer::start(admin);
    let gone = DeleteParams::default();
    let _ = daemon_sets(admin).delete("aws-node", &gone).await;
    let _ = daemon_sets(admin).delete("cilium", &gone).await;
    let _ = Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .delete("cilium-config", &gone)
        .await;
    let _ = Api::<ServiceAccount>::namespaced(admin.clone(), "kube-system")
        .delete("cilium", &gone)
        .await;
    for name in ["cilium", "tigera-operator", "bmac-aws-node-pod-ips"] {
        let _ = Api::<ClusterRole>::all(admin.clone())
            .delete(name, &gone)
            .await;
        let _ = Api::<ClusterRoleBinding>::all(admin.clone())
            .delete(name, &gone)
            .await;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let nss: Api<Namespace> = Api::all(admin.clone());
    let _ = installations(admin).delete("default", &gone).await;
    for crd in [
        "ciliumnetworkpolicies.cilium.io",
        "installations.operator.tigera.io",
    ] {
        let _ = crds.delete(crd, &gone).await;
    }
    let _ = nss.delete("tigera-operator", &gone).await;
    for _ in 0..300 {
        let left = [
            crds.get_opt("ciliumnetworkpolicies.cilium.io")
                .await
                .expect("GET")
                .is_some(),
            crds.get_opt("installations.operator.tigera.io")
                .await
                .expect("GET")
                .is_some(),
            nss.get_opt("tigera-operator").await.expect("GET").is_some(),
            aws_node(admin).await.is_some(),
        ];
        if !left.contains(&true) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("objects left by an earlier run could not be removed");
}

/// What a `cni` step's apply did to `aws-node` (its `aws_node` output).
fn aws_node_done(outputs: &bmac_core::Outputs) -> Value {
    outputs
        .get("aws_node")
        .and_then(|o| o.value())
        .cloned()
        .unwrap_or(Value::Null)
}

/// The observed `mode` of a present `cni` step.
async fn observed_mode(run: &Run, step: &Step) -> Value {
    let (config, _) = present(run.observe(step).await.expect("observe"));
    config["mode"].clone()
}

#[tokio::test]
async fn cilium_on_eks_keeps_aws_node_off_the_nodes_and_destroy_lets_it_back() {
    let Some(c) =
        connect("cilium_on_eks_keeps_aws_node_off_the_nodes_and_destroy_lets_it_back").await
    else {
        return;
    };
    reset(&c.admin).await;
    install_aws_node(&c.admin, false).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let step = cni_step(dir.path(), "cilium", None, &releases::cilium(), None);
    let cfg: CniConfig = step.config_as().expect("config");
    assert_eq!(
        cfg.mode.as_deref(),
        Some("cni"),
        "Cilium replaces the VPC CNI by default"
    );
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");

    let outputs = run
        .apply(&step)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(
        aws_node_done(&outputs),
        json!("nodeSelector io.cilium/aws-node-enabled=true set")
    );

    // The bundle's namespace-less objects are in kube-system; the CRD is established.
    let ds = daemon_sets(&c.admin)
        .get("cilium")
        .await
        .expect("cilium DaemonSet");
    assert_eq!(ds.metadata.namespace.as_deref(), Some("kube-system"));
    let cm: Api<ConfigMap> = Api::namespaced(c.admin.clone(), "kube-system");
    let data = cm.get("cilium-config").await.expect("cilium-config").data;
    assert_eq!(
        data.unwrap_or_default().get("ipam").map(String::as_str),
        Some("eni")
    );
    let crb: Api<ClusterRoleBinding> = Api::all(c.admin.clone());
    assert!(crb.get_opt("cilium").await.expect("GET").is_some());
    let crds: Api<CustomResourceDefinition> = Api::all(c.admin.clone());
    assert!(crds
        .get_opt("ciliumnetworkpolicies.cilium.io")
        .await
        .expect("GET")
        .is_some());

    // aws-node has Cilium's selector, and everything the add-on set is still there.
    let live = aws_node(&c.admin).await.expect("aws-node stays");
    let pod = &live["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        json!({"io.cilium/aws-node-enabled": "true"})
    );
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(2));
    assert_eq!(env(&live, "AWS_VPC_K8S_CNI_LOGLEVEL"), Some("DEBUG"));
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(observed_mode(&run, &step).await, json!("cni"));

    // A re-apply writes nothing.
    let before = writes(&c.admin).await;
    run.apply(&step).await.expect("again");
    assert_eq!(writes(&c.admin).await - before, 0);

    // The selector removed by hand is drift on `mode`, and apply puts it back.
    daemon_sets(&c.admin)
        .patch(
            "aws-node",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"nodeSelector": null}}}})),
        )
        .await
        .expect("remove the selector");
    let moved = observed_mode(&run, &step).await;
    assert!(
        moved
            .as_str()
            .is_some_and(|m| m.starts_with("cni (")
                && m.contains("kube-system/aws-node runs on nodes again")),
        "{moved}"
    );
    run.apply(&step).await.expect("repair");
    let live = aws_node(&c.admin).await.expect("aws-node");
    assert_eq!(
        live["spec"]["template"]["spec"]["nodeSelector"]["io.cilium/aws-node-enabled"],
        json!("true")
    );

    // Destroy removes the bundle and lets aws-node run on the nodes again.
    run.destroy(&step).await.expect("destroy");
    assert!(daemon_sets(&c.admin)
        .get_opt("cilium")
        .await
        .expect("GET")
        .is_none());
    assert!(cm.get_opt("cilium-config").await.expect("GET").is_none());
    assert!(crb.get_opt("cilium").await.expect("GET").is_none());
    let live = aws_node(&c.admin).await.expect("aws-node is never deleted");
    assert!(
        live["spec"]["template"]["spec"]
            .get("nodeSelector")
            .is_none(),
        "{}",
        live["spec"]["template"]["spec"]
    );
    assert_eq!(env(&live, "ANNOTATE_POD_IP"), Some("false"));
    reset(&c.admin).await;
}

#[tokio::test]
async fn calico_for_policy_keeps_aws_node_annotating_pod_ips() {
    let Some(c) = connect("calico_for_policy_keeps_aws_node_annotating_pod_ips").await else {
        return;
    };
    reset(&c.admin).await;
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    let dir = tempfile::tempdir().expect("tempdir");
    let step = cni_step(
        dir.path(),
        "calico",
        Some("policy"),
        &releases::calico("AmazonVPC"),
        None,
    );
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");

    // The VPC CNI's own network policy conflicts with Calico's: refused, nothing written.
    install_aws_node(&c.admin, true).await;
    let err = run
        .apply(&step)
        .await
        .expect_err("VPC CNI network policy on");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains("--enable-network-policy=true"),
        "{}",
        err.message
    );
    assert!(installations(&c.admin)
        .get_opt("default")
        .await
        .is_err_or_none());
    assert_eq!(
        env(
            &aws_node(&c.admin).await.expect("aws-node"),
            "ANNOTATE_POD_IP"
        ),
        Some("false")
    );

    install_aws_node(&c.admin, false).await;
    let outputs = run
        .apply(&step)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    let done = aws_node_done(&outputs);
    assert!(
        done.as_str()
            .is_some_and(|d| d.starts_with("ANNOTATE_POD_IP=true set")),
        "{done}"
    );
    let live = aws_node(&c.admin).await.expect("aws-node stays");
    assert_eq!(env(&live, "ANNOTATE_POD_IP"), Some("true"));
    assert_eq!(env(&live, "ADDITIONAL_ENI_TAGS"), Some("{}"));
    let role: Api<ClusterRole> = Api::all(c.admin.clone());
    let rules = role
        .get("bmac-aws-node-pod-ips")
        .await
        .expect("ClusterRole")
        .rules
        .unwrap_or_default();
    assert_eq!(rules[0].verbs, ["patch"]);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods".to_owned()][..])
    );
    let binding: Api<ClusterRoleBinding> = Api::all(c.admin.clone());
    let subjects = binding
        .get("bmac-aws-node-pod-ips")
        .await
        .expect("ClusterRoleBinding")
        .subjects
        .unwrap_or_default();
    assert_eq!(
        (subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
        ("aws-node", Some("kube-system"))
    );
    let installation = installations(&c.admin)
        .get("default")
        .await
        .expect("Installation");
    assert_eq!(installation.data["spec"]["cni"]["type"], json!("AmazonVPC"));
    assert_eq!(observed_mode(&run, &step).await, json!("policy"));

    let before = writes(&c.admin).await;
    run.apply(&step).await.expect("again");
    assert_eq!(writes(&c.admin).await - before, 0);

    // Destroy: Calico's objects go, bmac's RBAC goes, and the variable bmac set is released.
    run.destroy(&step).await.expect("destroy");
    assert!(installations(&c.admin)
        .get_opt("default")
        .await
        .is_err_or_none());
    assert!(role
        .get_opt("bmac-aws-node-pod-ips")
        .await
        .expect("GET")
        .is_none());
    assert!(binding
        .get_opt("bmac-aws-node-pod-ips")
        .await
        .expect("GET")
        .is_none());
    let live = aws_node(&c.admin).await.expect("aws-node stays");
    assert_ne!(env(&live, "ANNOTATE_POD_IP"), Some("true"));
    assert_eq!(env(&live, "AWS_VPC_K8S_CNI_LOGLEVEL"), Some("DEBUG"));
    reset(&c.admin).await;
}

#[tokio::test]
async fn calico_as_the_cni_deletes_aws_node_and_destroy_cannot_bring_it_back() {
    let Some(c) =
        connect("calico_as_the_cni_deletes_aws_node_and_destroy_cannot_bring_it_back").await
    else {
        return;
    };
    reset(&c.admin).await;
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    install_aws_node(&c.admin, false).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let step = cni_step(
        dir.path(),
        "calico",
        Some("cni"),
        &releases::calico("Calico"),
        None,
    );
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");

    let outputs = run
        .apply(&step)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(aws_node_done(&outputs), json!("deleted"));
    assert!(aws_node(&c.admin).await.is_none());
    let installation = installations(&c.admin)
        .get("default")
        .await
        .expect("Installation");
    assert_eq!(installation.data["spec"]["cni"]["type"], json!("Calico"));
    assert_eq!(observed_mode(&run, &step).await, json!("cni"));

    // Without aws-node there is nothing to change: the re-apply writes nothing.
    let before = writes(&c.admin).await;
    let outputs = run.apply(&step).await.expect("again");
    assert_eq!(writes(&c.admin).await - before, 0);
    assert_eq!(
        aws_node_done(&outputs),
        json!("not in the cluster: nothing to change")
    );

    // aws-node put back by someone is drift: Calico's guide wants it gone.
    install_aws_node(&c.admin, false).await;
    let moved = observed_mode(&run, &step).await;
    assert_eq!(
        moved,
        json!("cni (apps/v1 DaemonSet kube-system/aws-node exists again)")
    );
    run.apply(&step).await.expect("repair");
    assert!(aws_node(&c.admin).await.is_none());

    // Destroy removes Calico and succeeds; the deleted DaemonSet stays deleted.
    run.destroy(&step).await.expect("destroy");
    assert!(installations(&c.admin)
        .get_opt("default")
        .await
        .is_err_or_none());
    assert!(aws_node(&c.admin).await.is_none());
    reset(&c.admin).await;
}

#[tokio::test]
async fn a_cni_bundle_with_a_wrong_digest_changes_nothing_not_even_aws_node() {
    let Some(c) =
        connect("a_cni_bundle_with_a_wrong_digest_changes_nothing_not_even_aws_node").await
    else {
        return;
    };
    reset(&c.admin).await;
    install_aws_node(&c.admin, false).await;
    let version =
        aws_node(&c.admin).await.expect("aws-node")["metadata"]["resourceVersion"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = "ab".repeat(32);
    let step = cni_step(
        dir.path(),
        "cilium",
        None,
        &releases::cilium(),
        Some(&wrong),
    );
    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");

    let before = writes(&c.admin).await;
    let err = run.apply(&step).await.expect_err("digest mismatch");
    assert!(!err.is_retryable());
    assert!(err.message.contains(&wrong), "{}", err.message);
    assert_eq!(writes(&c.admin).await - before, 0, "nothing was written");
    assert!(daemon_sets(&c.admin)
        .get_opt("cilium")
        .await
        .expect("GET")
        .is_none());
    let live = aws_node(&c.admin).await.expect("aws-node");
    assert_eq!(live["metadata"]["resourceVersion"], version);
    assert!(live["spec"]["template"]["spec"]
        .get("nodeSelector")
        .is_none());
    reset(&c.admin).await;
}

/// A GET that found nothing — or whose kind the server no longer serves (its CRD is gone).
trait GoneExt {
    fn is_err_or_none(&self) -> bool;
}

impl GoneExt for Result<Option<DynamicObject>, kube::Error> {
    fn is_err_or_none(&self) -> bool {
        !matches!(self, Ok(Some(_)))
    }
}

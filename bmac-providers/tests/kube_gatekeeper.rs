//! Gatekeeper, from the spec to the real kube-apiserver 1.20: a spec with `engine =
//! "gatekeeper"` is expanded by the catalogue; its engine step installs a Gatekeeper-shaped
//! bundle (written for the test: namespace, ConstraintTemplate and AssignMetadata CRDs, a
//! Service without port protocols, a Deployment), and its policy steps apply the generated
//! ConstraintTemplates, constraints and mutations, which are read back with kube-rs.
//!
//! The test server runs no Gatekeeper controller, so the test plays its one part the steps
//! rely on: for every ConstraintTemplate it creates the constraint CRD (group
//! `constraints.gatekeeper.sh`). Until then a constraint is "not served yet" — a retryable
//! error the executor retries, as [`apply_retrying`] does here.
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p
//! bmac-providers --features kube --test kube_gatekeeper`.

#![cfg(feature = "kube")]

mod kube_support;

use std::time::Duration;

use bmac_core::{ProviderError, Step};
use bmac_steps::config::PolicyConfig;
use bmac_steps::kinds;
use bmac_steps::spec::Spec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use kube_support::releases::{self, yaml};
use kube_support::*;
use serde_json::{json, Value};

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Plays Gatekeeper's controller: makes the constraint CRD of every ConstraintTemplate.
fn template_controller(admin: &Client) -> tokio::task::JoinHandle<()> {
    let templates: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &resource(
            "templates.gatekeeper.sh",
            "v1",
            "ConstraintTemplate",
            "constrainttemplates",
        ),
    );
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    tokio::spawn(async move {
        loop {
            if let Ok(list) = templates.list(&ListParams::default()).await {
                for t in list.items {
                    let template = serde_json::to_value(&t).unwrap_or(Value::Null);
                    let crd: CustomResourceDefinition =
                        match serde_json::from_value(releases::constraint_crd(&template)) {
                            Ok(crd) => crd,
                            Err(_) => continue,
                        };
                    let _ = crds.create(&PostParams::default(), &crd).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Applies `step`, retrying retryable errors as the executor does (at most 50 times).
async fn apply_retrying(run: &mut Run, step: &Step) -> Result<(), ProviderError> {
    let mut attempt = 0;
    loop {
        match run.apply(step).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < 50 => attempt += 1,
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn gatekeeper_templates_and_constraints_from_the_spec_apply_and_read_back() {
    let Some(c) =
        connect("gatekeeper_templates_and_constraints_from_the_spec_apply_and_read_back").await
    else {
        return;
    };
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    let controller = template_controller(&c.admin);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = yaml(&releases::gatekeeper());
    std::fs::write(dir.path().join("gatekeeper.yaml"), &bundle).expect("bundle");
    let text = format!(
        "[cluster]\nname = \"existing\"\nprovider = \"kube\"\ncontext = \"bmac-admin\"\n\
         [registries]\nallowed = [\"registry.example.com\"]\n\
         [policy]\nengine = \"gatekeeper\"\nversion = \"3.16.3\"\n\
         bundle = {{ path = \"gatekeeper.yaml\", sha256 = \"{}\" }}\n",
        bmac_steps::bundle_cache::sha256_hex(bundle.as_bytes())
    );
    let spec = Spec::parse("bmac.toml", &text).unwrap_or_else(|e| panic!("{e:?}"));
    let expansion = bmac_steps::expand_in(&spec, dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    let engine = expansion
        .steps
        .iter()
        .find(|s| s.kind.name() == kinds::POLICY_ENGINE)
        .expect("policy.engine");
    let policies: Vec<&Step> = expansion
        .steps
        .iter()
        .filter(|s| s.kind.name() == kinds::POLICY)
        .map(|s| s.as_ref())
        .collect();
    assert_eq!(policies.len(), 5, "the whole baseline");

    let (mut run, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    run.apply(engine)
        .await
        .unwrap_or_else(|e| panic!("engine: {}", e.message));
    for step in &policies {
        apply_retrying(&mut run, step)
            .await
            .unwrap_or_else(|e| panic!("{}: {}", step.id, e.message));
    }

    // Every generated object is on the server as generated.
    let mut templates = 0;
    for step in &policies {
        let cfg: PolicyConfig = step.config_as().expect("policy config");
        for object in &cfg.objects {
            let (group, version) = object["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .expect("a group/version");
            let kind = object["kind"].as_str().expect("kind");
            let plural = match kind {
                "ConstraintTemplate" => "constrainttemplates".to_owned(),
                "AssignMetadata" => "assignmetadata".to_owned(),
                other => other.to_ascii_lowercase(),
            };
            let api: Api<DynamicObject> =
                Api::all_with(c.admin.clone(), &resource(group, version, kind, &plural));
            let name = object["metadata"]["name"].as_str().expect("name");
            let live = api
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            assert_eq!(live.data["spec"], object["spec"], "{kind} {name}");
            if kind == "ConstraintTemplate" {
                templates += 1;
                let rego = live.data["spec"]["targets"][0]["rego"]
                    .as_str()
                    .unwrap_or("");
                assert!(rego.contains("violation["), "{name}: {rego}");
            } else if group == "constraints.gatekeeper.sh" {
                assert_eq!(live.data["spec"]["enforcementAction"], json!("deny"));
                let excluded = &live.data["spec"]["match"]["excludedNamespaces"];
                assert!(
                    excluded
                        .as_array()
                        .is_some_and(|e| e.contains(&json!("gatekeeper-system"))),
                    "the engine's own namespace is excluded: {excluded}"
                );
            }
        }
    }
    assert_eq!(
        templates, 4,
        "four validation templates; the labels default is a mutation"
    );

    // A re-apply changes nothing (the controller stopped first: its own creates would count).
    controller.abort();
    let _ = controller.await;
    let before = writes(&c.admin).await;
    run.apply(engine).await.expect("engine again");
    for step in &policies {
        run.apply(step).await.expect("policy again");
    }
    assert_eq!(writes(&c.admin).await - before, 0);

    for step in policies.iter().rev() {
        run.destroy(step).await.expect("destroy policy");
    }
    run.destroy(engine).await.expect("destroy engine");
    // The constraint CRDs were the controller's (here: the test's); remove them.
    let crds: Api<CustomResourceDefinition> = Api::all(c.admin.clone());
    for crd in crds.list(&ListParams::default()).await.expect("list").items {
        if crd.spec.group == "constraints.gatekeeper.sh" {
            let name = crd.metadata.name.unwrap_or_default();
            let _ = crds.delete(&name, &Default::default()).await;
        }
    }
}

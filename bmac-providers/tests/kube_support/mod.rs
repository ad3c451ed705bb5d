//! Harness for the kube provider's end-to-end tests against a real kube-apiserver
//! (`scripts/kube-env.sh start DIR; . DIR/env`).
//!
//! - [`connect`] finds the server through `$KUBECONFIG` (context `bmac-admin`). With
//!   `BMAC_E2E=1` an unreachable server FAILS the test; without it the test prints a notice and
//!   returns early.
//! - Tests hold a process-wide lock while they run: they count the API server's own write
//!   counter (`apiserver_request_total`), which parallel tests would disturb.
//! - [`Run`] drives the provider the way the executor does: the cluster step first, its outputs
//!   become the in-cluster steps' inputs, each apply's outputs become the step's `Prior`.
//! - [`releases`] writes bundles in the shape of upstream release manifests, [`https`] serves
//!   them over HTTPS with a test CA.
//! - The test API server has no kube-controller-manager, so nothing finalizes a deleted
//!   namespace; [`NamespaceFinalizer`] plays the namespace controller's last part (it clears
//!   `spec.finalizers` through the `finalize` subresource, as the controller does).

#![allow(dead_code)]

mod apiserver;
mod exec_plugin;
pub mod fixtures;
pub mod https;
pub mod releases;

pub use apiserver::*;
#[allow(unused_imports)]
pub use exec_plugin::*;

use std::collections::HashMap;
use std::time::Duration;

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, Provider, StepContext,
};
use bmac_core::{Inputs, OutputValue, Outputs, ProviderError, Ref, Step, StepId};
use bmac_providers::kube::{KubeProvider, WaitPolicy};
use bmac_steps::config::{
    ClusterConfig, EndpointAccess, INPUT_CA_DATA, INPUT_CREDENTIALS, INPUT_ENDPOINT,
};
use bmac_steps::kinds;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde::Serialize;

/// A step id.
pub fn id(s: &str) -> StepId {
    StepId::new(s).expect("valid step id in a test")
}

/// The cluster step for a kubeconfig context.
pub fn cluster_step(kubeconfig: &str, context: &str) -> Step {
    let cfg = ClusterConfig {
        name: "existing".into(),
        provider: "kube".into(),
        region: None,
        version: None,
        endpoint: EndpointAccess::default(),
        log_types: Vec::new(),
        kubeconfig: Some(kubeconfig.to_owned()),
        context: Some(context.to_owned()),
        account: None,
        admins: Vec::new(),
        datapath: None,
        network_policy: None,
    };
    Step::new(id("cluster"), kinds::kind(kinds::CLUSTER), &cfg).expect("serialisable config")
}

/// An in-cluster step wired to the cluster step's outputs.
pub fn in_cluster<C: Serialize>(step_id: &str, kind: &str, cfg: &C) -> Step {
    let cluster = id("cluster");
    Step::new(id(step_id), kinds::kind(kind), cfg)
        .expect("serialisable config")
        .input(INPUT_ENDPOINT, Ref::new(cluster.clone(), "endpoint"))
        .input(INPUT_CA_DATA, Ref::new(cluster.clone(), "ca_data"))
        .input(INPUT_CREDENTIALS, Ref::new(cluster, "credentials"))
}

/// The provider driven like the executor drives it.
pub struct Run {
    pub provider: KubeProvider,
    /// The in-cluster inputs (from the cluster step's outputs).
    pub inputs: Inputs,
    /// Extra inputs per step (e.g. a service account's `role`).
    pub extra: HashMap<StepId, Inputs>,
    priors: HashMap<StepId, Prior>,
    ctx: StepContext,
}

impl Run {
    /// Applies the cluster step for `context` and keeps its outputs as inputs.
    pub async fn new(kubeconfig: &str, context: &str) -> Result<(Run, Outputs), ProviderError> {
        Run::with_provider(kubeconfig, context, KubeProvider::new()).await
    }

    /// As [`Run::new`], with `provider` (the tests' wait policy is set on it).
    pub async fn with_provider(
        kubeconfig: &str,
        context: &str,
        provider: KubeProvider,
    ) -> Result<(Run, Outputs), ProviderError> {
        let provider = provider.with_wait_policy(WaitPolicy {
            timeout: Duration::from_secs(30),
            interval: Duration::from_millis(100),
        });
        let ctx = StepContext::default();
        let step = cluster_step(kubeconfig, context);
        let outputs = provider
            .apply(ApplyRequest {
                step: &step,
                inputs: &Inputs::default(),
                prior: None,
                ctx: &ctx,
            })
            .await?;
        let mut inputs = Inputs::default();
        for name in [INPUT_ENDPOINT, INPUT_CA_DATA, INPUT_CREDENTIALS] {
            if let Some(v) = outputs.get(name) {
                inputs.0.insert(name.to_owned(), v.clone());
            }
        }
        Ok((Run::with_inputs(provider, inputs), outputs))
    }

    /// A run of `provider` whose in-cluster steps get `inputs` (no cluster step applied).
    pub fn with_inputs(provider: KubeProvider, inputs: Inputs) -> Run {
        Run {
            provider,
            inputs,
            extra: HashMap::new(),
            priors: HashMap::new(),
            ctx: StepContext::default(),
        }
    }

    fn inputs_for(&self, step: &Step) -> Inputs {
        let mut inputs = self.inputs.clone();
        if let Some(extra) = self.extra.get(&step.id) {
            inputs.0.extend(extra.0.clone());
        }
        inputs
    }

    /// Sets a plain extra input of one step.
    pub fn set_input(&mut self, step: &str, name: &str, value: &str) {
        self.extra
            .entry(id(step))
            .or_default()
            .0
            .insert(name.to_owned(), OutputValue::Plain(value.into()));
    }

    /// Applies a step (with its prior, if it was applied before) and records the new prior.
    pub async fn apply(&mut self, step: &Step) -> Result<Outputs, ProviderError> {
        let inputs = self.inputs_for(step);
        let outputs = self
            .provider
            .apply(ApplyRequest {
                step,
                inputs: &inputs,
                prior: self.priors.get(&step.id),
                ctx: &self.ctx,
            })
            .await?;
        self.priors.insert(
            step.id.clone(),
            Prior::new(step.config.clone(), outputs.redacted()),
        );
        Ok(outputs)
    }

    /// Observes a step.
    pub async fn observe(&self, step: &Step) -> Result<Observed, ProviderError> {
        let inputs = self.inputs_for(step);
        self.provider
            .observe(ObserveRequest {
                step,
                inputs: &inputs,
                prior: self.priors.get(&step.id),
                ctx: &self.ctx,
            })
            .await
    }

    /// Destroys a step applied earlier.
    pub async fn destroy(&mut self, step: &Step) -> Result<(), ProviderError> {
        let inputs = self.inputs_for(step);
        let prior = self
            .priors
            .remove(&step.id)
            .unwrap_or_else(|| panic!("{} was never applied", step.id));
        self.provider
            .destroy(DestroyRequest {
                step,
                inputs: &inputs,
                prior: &prior,
                ctx: &self.ctx,
            })
            .await
    }
}

/// The observed config of a step that must be present.
pub fn present(observed: Observed) -> (serde_json::Value, Outputs) {
    match observed {
        Observed::Present { config, outputs } => (config, outputs),
        other => panic!("expected the step's objects to be present, found {other:?}"),
    }
}

/// Removes a Kyverno install a failed earlier run left behind, so each test starts clean.
pub async fn ensure_no_kyverno(admin: &Client) {
    let _finalizer = NamespaceFinalizer::start(admin);
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let nss: Api<Namespace> = Api::all(admin.clone());
    let _ = crds
        .delete("clusterpolicies.kyverno.io", &Default::default())
        .await;
    let _ = nss.delete("kyverno", &Default::default()).await;
    // The bundle's cluster-scoped RBAC outlives the namespace; a leftover would read as
    // "existed before bmac" to the next install and be kept by its destroy.
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
        let api: Api<DynamicObject> = Api::all_with(admin.clone(), &ApiResource::from_gvk(&gvk));
        let _ = api
            .delete("kyverno:admission-controller", &Default::default())
            .await;
    }
    for _ in 0..300 {
        let crd = crds
            .get_opt("clusterpolicies.kyverno.io")
            .await
            .expect("GET crd");
        let ns = nss.get_opt("kyverno").await.expect("GET ns");
        if crd.is_none() && ns.is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("a Kyverno install left by an earlier run could not be removed");
}

/// Drops the PodSecurity labels a failed earlier run left on `default` (fields of bmac's
/// PodSecurity field manager), so "left as found" compares against a clean namespace.
pub async fn release_default_pod_security(admin: &Client) {
    let api: Api<Namespace> = Api::all(admin.clone());
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    api.patch(
        "default",
        &kube::api::PatchParams::apply(bmac_providers::kube::POD_SECURITY_FIELD_MANAGER),
        &kube::api::Patch::Apply(body),
    )
    .await
    .expect("release leftover PodSecurity labels of default");
}

//! What a built stack exposes: [`Outputs`] — every applied step's outputs, and the cluster's
//! endpoint, CA and credential source typed as [`ClusterOutputs`] — and, under the `kube`
//! feature, `Stack::kube_config`.
//!
//! Decisions:
//! - Outputs are read from the recorded state, so they are the same in any process, fresh ones
//!   included. State keeps a secret only by its digest, so a sensitive output is an
//!   [`OutputValue`] whose value is unknown and which prints as `(sensitive)`: secrets are
//!   never handed out as plain strings.
//! - An empty state has empty outputs (no steps, no cluster), not an error: outputs are what is
//!   built so far, and "nothing yet" is the first answer. `Stack::kube_config`, which needs a
//!   cluster, says [`Error::NoCluster`] instead.
//! - The cluster is the applied step of kind `cluster` (the catalogue makes one, `cluster`).

use std::collections::BTreeMap;

use bmac_core::state::{AppliedStep, State};
use bmac_core::{OutputValue, StepId};
use bmac_steps::config::{OUTPUT_CA_DATA, OUTPUT_CREDENTIALS, OUTPUT_ENDPOINT, OUTPUT_OIDC_ISSUER};
use bmac_steps::{kinds, CredentialSource};

use crate::error::Error;
use crate::stack::Stack;

/// The outputs of every applied step, and the cluster's typed.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    cluster: Option<ClusterOutputs>,
    steps: BTreeMap<StepId, bmac_core::Outputs>,
}

/// How to reach the built cluster, from its cluster step's outputs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterOutputs {
    /// The cluster step (`cluster`).
    pub step: StepId,
    /// The API server URL.
    pub endpoint: String,
    /// Base64 PEM of the cluster CA, as kubeconfigs carry it (absent: the system roots).
    pub ca_data: Option<String>,
    /// The OIDC issuer workload identity trusts, where the cluster has one.
    pub oidc_issuer: Option<String>,
    /// How to mint credentials for the cluster. `None` when the cluster step gave static
    /// credentials (an embedder's own cluster step): state keeps those only by digest.
    pub credentials: Option<CredentialSource>,
}

impl Outputs {
    /// The outputs recorded in `state`.
    pub(crate) fn from_state(state: &State) -> Outputs {
        let steps = state
            .steps
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.applied.as_ref()?.outputs.clone())))
            .collect();
        let cluster = cluster_step(state).and_then(|(id, applied)| cluster_outputs(id, applied));
        Outputs { cluster, steps }
    }

    /// The built cluster, once its step is applied.
    pub fn cluster(&self) -> Option<&ClusterOutputs> {
        self.cluster.as_ref()
    }

    /// The cluster's API server URL, once it is built.
    pub fn endpoint(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.endpoint.as_str())
    }

    /// One step's outputs, if it is applied.
    pub fn step(&self, id: &str) -> Option<&bmac_core::Outputs> {
        self.steps.get(id)
    }

    /// One output of one step (a secret's value is unknown: see the module docs).
    pub fn get(&self, step: &str, name: &str) -> Option<&OutputValue> {
        self.step(step)?.get(name)
    }

    /// Every applied step's outputs, by step id.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = (&StepId, &bmac_core::Outputs)> {
        self.steps.iter()
    }

    /// Whether nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Stack {
    /// What is built: every applied step's outputs and the cluster's endpoint, CA and
    /// credential source. Empty, not an error, when nothing is applied.
    pub async fn outputs(&self) -> Result<Outputs, Error> {
        Ok(Outputs::from_state(&self.state().await?))
    }

    /// A ready kube-rs configuration for the built cluster, from its cluster step's recorded
    /// outputs, authenticating as an in-cluster step does (see
    /// [`bmac_providers::kube::client_config`]): a kubeconfig context or exec plugin works in
    /// any process; a source only a token minter serves (EKS, GKE, AKS until their providers
    /// register one; the simulated cloud, which has no Kubernetes API to call) and static
    /// credentials kept in state by digest only are an [`Error::KubeConfig`] that says why.
    #[cfg(feature = "kube")]
    pub async fn kube_config(&self) -> Result<kube::Config, Error> {
        let state = self.state().await?;
        let (id, applied) = cluster_step(&state).ok_or(Error::NoCluster)?;
        bmac_providers::kube::client_config(&applied.outputs)
            .await
            .map_err(|source| Error::KubeConfig {
                step: id.clone(),
                source,
            })
    }
}

/// The applied cluster step in `state`, if there is one.
fn cluster_step(state: &State) -> Option<(&StepId, &AppliedStep)> {
    state.steps.iter().find_map(|(id, s)| {
        let applied = s.applied.as_deref()?;
        (applied.step.kind.name() == kinds::CLUSTER).then_some((id, applied))
    })
}

fn cluster_outputs(id: &StepId, applied: &AppliedStep) -> Option<ClusterOutputs> {
    let text = |name: &str| {
        applied
            .outputs
            .get(name)
            .and_then(OutputValue::value)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let credentials = applied
        .outputs
        .get(OUTPUT_CREDENTIALS)
        .filter(|v| !v.is_sensitive())
        .and_then(OutputValue::value)
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    Some(ClusterOutputs {
        step: id.clone(),
        endpoint: text(OUTPUT_ENDPOINT)?,
        ca_data: text(OUTPUT_CA_DATA),
        oidc_issuer: text(OUTPUT_OIDC_ISSUER),
        credentials,
    })
}

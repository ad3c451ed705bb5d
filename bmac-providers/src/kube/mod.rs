//! The `kube` provider: applies the in-cluster half of the baseline through kube-rs, and
//! takes an *existing* cluster from a kubeconfig context (`provider = "kube"`), so a user can
//! harden a cluster bmac did not build with the same steps a managed-cloud build runs once its
//! cluster step is done.
//!
//! # Kinds served ([`KubeProvider::KINDS`])
//! - `cluster` with `provider = "kube"`: apply and observe resolve the kubeconfig (the path in
//!   the config, else `$KUBECONFIG`, else `~/.kube/config`) and its context, call `/version`
//!   to check the cluster answers, and output `endpoint`, `ca_data`, `credentials` (a plain
//!   [`CredentialSource`] naming the context, never a token) and `server_version`.
//!   **Destroying it deletes nothing**: the cluster is not bmac's, so removing the step only
//!   forgets it.
//! - `namespace`, `pod_security_labels`, `policy_engine`, `policy`, `service_account`,
//!   `storage_class`, `manifest`: Kubernetes objects applied by server-side apply (see
//!   `objects.rs` for the write, force and removal rules, and each kind's module for its shape).
//! - `cni` with plugin `cilium` or `calico`: the plugin's pinned release bundle, and on EKS
//!   what the vendor's guide requires of the VPC CNI's `aws-node` DaemonSet, per the step's
//!   `mode` (`cni.rs`, `aws_node.rs`). The provider's default CNI is not served here.
//!
//! # Where the client comes from
//! Every in-cluster step has the inputs `endpoint`, `ca_data` and `credentials`, wired to the
//! cluster step's outputs. `credentials` is a [`CredentialSource`]: *how* to mint credentials,
//! not credentials. The client is built from the three when the step runs and cached per
//! endpoint, CA and source (`access.rs`) — so the same steps work whether the cluster step is
//! an EKS/GKE build that finished a minute ago or a kubeconfig context.
//!
//! Tokens are minted at call time and are ephemeral: never in outputs, the journal, events,
//! log lines or error messages. kube-rs mints for kubeconfig users and exec plugins (re-running
//! a plugin as its token nears expiry, re-reading token files); a [`TokenMinter`] registered
//! with [`KubeProvider::with_minter`] mints for the cloud sources (`eks`, `gke`, `aks`, `sim`),
//! cached until shortly before expiry (`minter.rs`). On a 401 the client is dropped, the
//! credentials minted again and the call made once more; a second 401 is a permanent error
//! naming the source.
//!
//! Because the source is a plain value, state keeps it as it is: a deleted in-cluster step
//! rebuilds its client from its cluster step's *recorded* outputs in any process, a fresh one
//! included. Static credentials (a sensitive `{"token": …}`, which embedders and test harnesses
//! may still hand in) reach only the process they were given to.
//!
//! [`client_config`] reads a cluster step's outputs the same way, for an embedder that wants a
//! kube-rs client for the cluster bmac built.
//!
//! # What this provider does not do
//! - It does not wait for workloads (the policy engine's Deployments) to become ready unless
//!   [`KubeProvider::wait_for_workloads`] is set: readiness needs nodes, and applying the
//!   objects is what bmac owns. On an API server without a scheduler or kubelet (the test
//!   environment) pods never run.
//! - It downloads a release bundle (`bundle = { url, sha256 }`) only when applying its step,
//!   never when observing (plans refresh through observe): see `fetch.rs` for the cache,
//!   the TLS roots (`SSL_CERT_FILE`, [`BundleFetch::with_ca_file`]) and proxies.
//! - Objects go through `defaults.rs` before they are applied: list-map keys the server
//!   defaults (`protocol: TCP` on Service and container ports) are filled in, since
//!   server-side apply needs them to merge the list; the object means the same.
//! - Before a bundle, manifest or policy step writes anything, every object's API is
//!   resolved (`served.rs`): an API the cluster does not serve and no CRD defines is a
//!   permanent error naming the objects and what the server offers instead.
//! - Deleting a namespace waits until the namespace is gone; that needs the cluster's namespace
//!   controller (kube-controller-manager) to finalize it, otherwise the wait times out with a
//!   retryable error naming the remaining finalizers.

mod access;
mod auth;
mod aws_node;
mod bundle;
mod cluster;
mod cni;
mod defaults;
mod engine;
mod error;
mod fetch;
mod fields;
mod kubeconfig;
mod minter;
mod namespace;
mod object_set;
mod objects;
mod pod_security;
mod served;
mod service_account;
mod storage_class;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider};
use bmac_core::{Inputs, Outputs, ProviderError, Step};
use bmac_steps::kinds;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use access::{Call, ClientCache, ClusterAccess};
#[cfg(doc)]
use bmac_steps::CredentialSource;
pub use fetch::{BundleFetch, FetchError};
pub use minter::{MintedToken, TokenMinter};
use objects::Session;
pub use objects::{WaitPolicy, CREATED_BY, FIELD_MANAGER};
pub use pod_security::POD_SECURITY_FIELD_MANAGER;

/// The provider serving clusters taken from kubeconfig contexts and every in-cluster kind.
pub struct KubeProvider {
    clients: ClientCache,
    wait: WaitPolicy,
    wait_for_workloads: bool,
    bundles: BundleFetch,
}

impl Default for KubeProvider {
    fn default() -> Self {
        KubeProvider::new()
    }
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider")
            .field("wait", &self.wait)
            .field("wait_for_workloads", &self.wait_for_workloads)
            .field("bundles", &self.bundles)
            .field("minters", &self.clients.minters.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KubeProvider {
    /// The step kinds this provider serves (route them to it with
    /// [`bmac_core::Providers::route`]).
    pub const KINDS: &'static [&'static str] = &[
        kinds::CLUSTER,
        kinds::NAMESPACE,
        kinds::POD_SECURITY_LABELS,
        kinds::POLICY_ENGINE,
        kinds::POLICY,
        kinds::SERVICE_ACCOUNT,
        kinds::STORAGE_CLASS,
        kinds::MANIFEST,
        kinds::CNI,
    ];

    /// A provider with the default waits (120 s timeout, 200 ms polls).
    pub fn new() -> Self {
        KubeProvider {
            clients: ClientCache::default(),
            wait: WaitPolicy::default(),
            wait_for_workloads: false,
            bundles: BundleFetch::default(),
        }
    }

    /// How release bundles given by URL are downloaded and cached (default: no cache, the
    /// platform's trusted roots). [`crate::for_config`] sets the user's cache
    /// ([`bmac_steps::BundleCache::locate`]).
    pub fn with_bundles(mut self, bundles: BundleFetch) -> Self {
        self.bundles = bundles;
        self
    }

    /// How long to wait for CRDs to be established, objects to be deleted and workloads to
    /// become ready.
    pub fn with_wait_policy(mut self, wait: WaitPolicy) -> Self {
        self.wait = wait;
        self
    }

    /// Whether applying the policy engine waits for its Deployments, DaemonSets and
    /// StatefulSets to report ready (off by default; see the module docs).
    pub fn wait_for_workloads(mut self, wait: bool) -> Self {
        self.wait_for_workloads = wait;
        self
    }

    /// Registers the token minter for credential sources of `source_type` (`eks`, `gke`,
    /// `aks`, `sim`, or a type of an embedder's own): clients for such sources get their
    /// bearer token from it, minted on first use and again shortly before it expires or after
    /// a 401. A minter registered for `kubeconfig` or `exec` replaces the built-in minting.
    pub fn with_minter(
        mut self,
        source_type: impl Into<String>,
        minter: Arc<dyn TokenMinter>,
    ) -> Self {
        self.clients.minters.insert(source_type.into(), minter);
        self
    }

    /// Runs `call` with a session for the step's cluster (retried once after a 401, see
    /// `access.rs`); errors are prefixed with the step id.
    async fn in_cluster<'a, T>(
        &'a self,
        step: &'a Step,
        inputs: &Inputs,
        cancel: &'a CancellationToken,
        call: impl Fn(Session<'a>) -> Call<'a, T>,
    ) -> Result<T, ProviderError> {
        let access = ClusterAccess::from_inputs(inputs).map_err(|e| prefixed(step, e))?;
        let with_session = |conn| {
            call(Session {
                conn,
                wait: self.wait,
                cancel,
                step: &step.id,
                bundles: &self.bundles,
            })
        };
        self.clients
            .with_connection(&access, with_session)
            .await
            .map_err(|e| prefixed(step, e))
    }
}

/// A ready kube-rs configuration for the cluster a cluster step's `outputs` describe (its
/// `endpoint`, `ca_data` and `credentials`), for code that talks to the built cluster outside
/// a run — the front door's `kube_config`. It is read exactly as an in-cluster step reads its
/// inputs, so it authenticates the same way: a kubeconfig context's user or an exec plugin
/// (run when a client is built from the configuration), or static credentials given as a
/// sensitive value. Sources that need a [`TokenMinter`] (`eks`, `gke`, `aks`, `sim`) are a
/// permanent error naming the missing minter, and so are credentials that state keeps only by
/// digest (the simulated cloud's static token).
pub async fn client_config(outputs: &Outputs) -> Result<::kube::Config, ProviderError> {
    let inputs = Inputs(
        outputs
            .iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect(),
    );
    auth::config(&ClusterAccess::from_inputs(&inputs)?).await
}

/// The step's typed config, or a permanent error naming the step and kind.
pub(crate) fn config<C: DeserializeOwned>(step: &Step) -> Result<C, ProviderError> {
    step.config_as().map_err(|e| {
        ProviderError::permanent(format!(
            "step {}: invalid config for kind `{}`: {e}",
            step.id, step.kind
        ))
    })
}

fn prefixed(step: &Step, mut e: ProviderError) -> ProviderError {
    e.message = format!("step {}: {}", step.id, e.message);
    e
}

fn unsupported(step: &Step) -> ProviderError {
    ProviderError::permanent(format!(
        "step {}: the kube provider does not serve kind `{}` (it serves {})",
        step.id,
        step.kind,
        KubeProvider::KINDS.join(", ")
    ))
}

#[async_trait]
impl Provider for KubeProvider {
    fn name(&self) -> &str {
        "kube"
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        Some(match step.kind.name() {
            kinds::POLICY_ENGINE | kinds::CNI => Duration::from_secs(30),
            kinds::CLUSTER => Duration::from_secs(2),
            _ => Duration::from_secs(1),
        })
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let step = req.step;
        if step.kind.name() == kinds::CLUSTER {
            return cluster::apply(step, &self.clients)
                .await
                .map_err(|e| prefixed(step, e));
        }
        if !KubeProvider::KINDS.contains(&step.kind.name()) {
            return Err(unsupported(step));
        }
        let inputs = req.inputs;
        self.in_cluster(step, inputs, &req.ctx.cancel, |s| {
            Box::pin(async move {
                match step.kind.name() {
                    kinds::NAMESPACE => namespace::apply(&s, step).await,
                    kinds::POD_SECURITY_LABELS => pod_security::apply(&s, step).await,
                    kinds::POLICY_ENGINE => engine::apply(&s, step, self.wait_for_workloads).await,
                    kinds::POLICY | kinds::MANIFEST => object_set::apply(&s, step).await,
                    kinds::SERVICE_ACCOUNT => service_account::apply(&s, step, inputs).await,
                    kinds::STORAGE_CLASS => storage_class::apply(&s, step).await,
                    kinds::CNI => cni::apply(&s, step).await,
                    _ => Err(unsupported(step)),
                }
            })
        })
        .await
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let step = req.step;
        if step.kind.name() == kinds::CLUSTER {
            return cluster::observe(step, &self.clients)
                .await
                .map_err(|e| prefixed(step, e));
        }
        if !KubeProvider::KINDS.contains(&step.kind.name()) {
            return Err(unsupported(step));
        }
        let prior = req.prior;
        self.in_cluster(step, req.inputs, &req.ctx.cancel, |s| {
            Box::pin(async move {
                match step.kind.name() {
                    kinds::NAMESPACE => namespace::observe(&s, step).await,
                    kinds::POD_SECURITY_LABELS => pod_security::observe(&s, step).await,
                    kinds::POLICY_ENGINE => engine::observe(&s, step, prior).await,
                    kinds::POLICY | kinds::MANIFEST => object_set::observe(&s, step, prior).await,
                    kinds::SERVICE_ACCOUNT => service_account::observe(&s, step).await,
                    kinds::STORAGE_CLASS => storage_class::observe(&s, step).await,
                    kinds::CNI => cni::observe(&s, step, prior).await,
                    _ => Err(unsupported(step)),
                }
            })
        })
        .await
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let step = req.step;
        if step.kind.name() == kinds::CLUSTER {
            // The cluster came from a kubeconfig context: it is not bmac's to delete.
            return cluster::check_kube(step).map_err(|e| prefixed(step, e));
        }
        if !KubeProvider::KINDS.contains(&step.kind.name()) {
            return Err(unsupported(step));
        }
        let prior = req.prior;
        self.in_cluster(step, req.inputs, &req.ctx.cancel, |s| {
            Box::pin(async move {
                match step.kind.name() {
                    kinds::NAMESPACE => namespace::destroy(&s, step).await,
                    kinds::POD_SECURITY_LABELS => pod_security::destroy(&s, step).await,
                    kinds::POLICY_ENGINE | kinds::POLICY | kinds::MANIFEST => {
                        object_set::destroy(&s, step, prior.outputs()).await
                    }
                    kinds::SERVICE_ACCOUNT => service_account::destroy(&s, step).await,
                    kinds::STORAGE_CLASS => storage_class::destroy(&s, step).await,
                    kinds::CNI => cni::destroy(&s, step, prior.outputs()).await,
                    _ => Err(unsupported(step)),
                }
            })
        })
        .await
    }
}

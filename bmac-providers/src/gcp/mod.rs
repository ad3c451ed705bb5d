//! The Google Cloud provider: GKE and the Google Cloud services of its security baseline, on
//! the official google-cloud-rust crates (cargo feature `gcp`).
//!
//! # Shape
//! One [`Handler`] per step kind, each in the module of its resource family — [`network`] (the
//! VPC-native network, subnetwork and Cloud NAT), [`kms`] (the Secrets key and the GKE service
//! agent's grant on it), [`cluster`] (the GKE control plane), [`node_pool`], [`iam`] (Google
//! service accounts and their Workload Identity bindings), [`storage`] (the audit archive
//! bucket, over the Cloud Storage JSON API), [`audit`] (Data Access audit logs, the sink into
//! the archive, log-based metrics and alert policies) and [`registry`] (Artifact Registry remote
//! repositories for the registry mirrors) — behind one
//! registry, [`GcpProvider`]. What every handler shares lives once: the clients and their
//! configuration ([`clients`]), the error classification ([`error`]), waiting on GKE and Compute
//! operations with checkpoints ([`operation`]), IAM policy edits guarded by etags
//! ([`iam_policy`]) and the labels that make created resources findable again ([`labels`]);
//! handler routing and waiting with progress are shared with AWS ([`crate::cloud`]).
//!
//! # Behaviour users of Terraform and gcloud expect
//! - Creates are idempotent: names derive from the cluster, `ALREADY_EXISTS` is adoption after
//!   observing, and a change left in doubt by a crash is resumed by polling the operation it
//!   checkpointed — never started twice.
//! - Updates go in place where GKE allows (authorized networks, versions, network policy,
//!   autoscaling, labels and taints); what GKE fixes at creation is a replacement in the plan.
//!   GKE runs one operation at a time per cluster, so cluster and node-pool changes share a
//!   concurrency group of limit 1.
//! - Destroy runs in reverse dependency order; Cloud KMS keys cannot be deleted, so their
//!   versions are scheduled for destruction and the destroy says so.
//!
//! # What it needs
//! Application Default Credentials (see [`clients`]); the IAM roles are listed in the README's
//! Google Cloud section.

pub mod audit;
pub mod clients;
pub mod cluster;
pub mod error;
pub mod iam;
pub mod iam_policy;
pub mod kms;
pub mod labels;
pub mod network;
pub mod node_pool;
pub mod operation;
pub mod registry;
pub mod storage;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{
    ApplyRequest, ConcurrencyGroup, DestroyRequest, ObserveRequest, Observed, Provider,
};
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::kinds;

pub use clients::{Clients, Gcp};
pub use token::GkeMinter;

use crate::cloud::{wait, Handlers};
use crate::config::CloudConfig;

/// How one step kind is built on Google Cloud: a [`crate::cloud::Handler`] given the clients.
pub use crate::cloud::Handler;

/// The Google Cloud provider: routes each step to the handler of its kind.
pub struct GcpProvider {
    gcp: Arc<Gcp>,
    handlers: Handlers<Clients>,
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpProvider")
            .field("gcp", &self.gcp)
            .field("kinds", &self.handlers)
            .finish()
    }
}

impl GcpProvider {
    /// The step kinds built on Google Cloud; in-cluster kinds go to the kube provider.
    pub const KINDS: &'static [&'static str] = &[
        kinds::NETWORK,
        kinds::ENCRYPTION_KEY,
        kinds::CLUSTER,
        kinds::NODE_POOL,
        kinds::IAM_ROLE,
        kinds::IDENTITY_BINDING,
        kinds::OBJECT_BUCKET,
        kinds::AUDIT_LOGGING,
        kinds::AUDIT_ARCHIVE,
        kinds::AUDIT_ALARM,
        kinds::REGISTRY_MIRROR,
    ];

    /// A provider configured from `config` (nothing is called until a step runs).
    pub fn new(config: &CloudConfig) -> Self {
        let handlers = Handlers::new("Google Cloud", "gcp")
            .with(kinds::NETWORK, network::Network)
            .with(kinds::ENCRYPTION_KEY, kms::Key)
            .with(kinds::CLUSTER, cluster::Cluster)
            .with(kinds::NODE_POOL, node_pool::GkeNodePool)
            .with(kinds::IAM_ROLE, iam::Role)
            .with(kinds::IDENTITY_BINDING, iam::Binding)
            .with(kinds::OBJECT_BUCKET, storage::GcsBucket)
            .with(kinds::AUDIT_LOGGING, audit::Logging)
            .with(kinds::AUDIT_ARCHIVE, audit::Archive)
            .with(kinds::AUDIT_ALARM, audit::Alarm)
            .with(kinds::REGISTRY_MIRROR, registry::Mirror);
        GcpProvider {
            gcp: Arc::new(Gcp::new(config)),
            handlers,
        }
    }

    /// The shared clients (for the GKE token minter).
    pub fn gcp(&self) -> Arc<Gcp> {
        Arc::clone(&self.gcp)
    }
}

/// A step's typed config, or a permanent error naming the step.
pub(crate) fn config<C: serde::de::DeserializeOwned>(step: &Step) -> Result<C, ProviderError> {
    crate::cloud::config(("Google Cloud", "gcp"), step)
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &str {
        "gcp"
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        self.handlers.find(step).map(|h| h.expected())
    }

    fn max_duration(&self, step: &Step) -> Option<Duration> {
        self.handlers.find(step).map(|h| h.max())
    }

    fn poll_interval(&self, _step: &Step) -> Duration {
        wait::POLL
    }

    fn concurrency_group(&self, step: &Step) -> Option<ConcurrencyGroup> {
        if !self.handlers.find(step)?.cluster_update() {
            return None;
        }
        Some(ConcurrencyGroup::new(
            format!("gke:{}/operations", self.gcp.cluster()),
            1,
        ))
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.gcp.clients().await?;
        handler.apply(&clients, &req).await
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.gcp.clients().await?;
        handler.observe(&clients, &req).await
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.gcp.clients().await?;
        handler.destroy(&clients, &req).await
    }
}

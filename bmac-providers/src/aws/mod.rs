//! The AWS provider: Amazon EKS and the AWS services of its security baseline, on the official
//! AWS SDK for Rust (cargo feature `aws`).
//!
//! # Shape
//! One [`Handler`] per step kind, each in the module of its resource family — [`network`]
//! (VPC, subnets, gateways, routes), [`iam`] (cluster, node, add-on and workload roles, the
//! IAM OIDC provider of IRSA), [`kms`] (the Secrets key), [`cluster`] (the EKS control plane
//! and its access entries), [`node_group`] (managed node groups and their launch templates),
//! [`addon`] (EKS add-ons), [`pod_identity`] (Pod Identity associations), [`audit`]
//! (control-plane logging, the archive bucket, the Firehose archive and the alarms) and
//! [`ecr`] (pull-through caches and the registry policy that lets nodes fill them) — behind
//! one registry, [`AwsProvider`]. What every handler
//! shares lives once: the SDK clients and their configuration ([`clients`]), the error
//! classification ([`error`]), waiting on long operations with progress ([`wait`]), and the
//! tags that make created resources findable again ([`tags`]); the handler routing and waiting on
//! long operations are shared with the other clouds ([`crate::cloud`]).
//!
//! # Behaviour users of Terraform and eksctl expect
//! - Creates are idempotent: a resource bmac created is found again by name or by its
//!   `bmac.dev/step` tag, so a step left in doubt by a crash is adopted after observing, never
//!   created twice; "already exists" on create is adoption, not failure.
//! - Long creates (a control plane, a node group, a NAT gateway) checkpoint what they started
//!   and report progress while they wait; a resumed run polls the same resource.
//! - Updates go in place where AWS allows (`UpdateClusterConfig`, `UpdateNodegroupConfig`,
//!   retention, policies); what AWS fixes at creation is a replacement in the plan (see
//!   `bmac_steps::kinds`). One update at a time runs per cluster (EKS refuses concurrent ones
//!   with `ResourceInUseException`): cluster, node-group and logging updates share a
//!   concurrency group of limit 1.
//! - Destroy runs in reverse dependency order (the executor's) and never deletes data
//!   silently: the audit log group is kept, and so is the archive bucket unless bmac created
//!   it and the spec says `force_destroy = true`; what is kept is reported as progress.
//!
//! # What it needs
//! The IAM permissions bmac uses are listed, action by action, in
//! `examples/eks-iam-policy.json`; credentials come from the standard AWS chain.

pub mod addon;
pub mod audit;
pub mod clients;
pub mod cluster;
pub mod ecr;
pub mod error;
pub mod iam;
pub mod kms;
pub mod launch_template;
pub mod network;
pub mod node_group;
pub mod pod_identity;
pub mod tags;
pub mod token;
pub mod user_data;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{
    ApplyRequest, ConcurrencyGroup, DestroyRequest, ObserveRequest, Observed, Provider,
};
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::kinds;

pub use clients::{Aws, Clients};
pub use token::EksMinter;

use crate::cloud::{wait, Handlers};
use crate::config::CloudConfig;

/// How one step kind is built on AWS: a [`crate::cloud::Handler`] given the AWS clients.
pub use crate::cloud::Handler;

/// The AWS provider: routes each step to the handler of its kind.
pub struct AwsProvider {
    aws: Arc<Aws>,
    handlers: Handlers<Clients>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("aws", &self.aws)
            .field("kinds", &self.handlers)
            .finish()
    }
}

impl AwsProvider {
    /// The step kinds built on AWS; in-cluster kinds go to the kube provider.
    pub const KINDS: &'static [&'static str] = &[
        kinds::NETWORK,
        kinds::ENCRYPTION_KEY,
        kinds::IAM_ROLE,
        kinds::CLUSTER,
        kinds::NODE_POOL,
        kinds::AUDIT_LOGGING,
        kinds::OBJECT_BUCKET,
        kinds::AUDIT_ARCHIVE,
        kinds::AUDIT_ALARM,
        kinds::ADDON,
        kinds::IDENTITY_BINDING,
        kinds::OIDC_PROVIDER,
        kinds::REGISTRY_MIRROR,
        kinds::REGISTRY_POLICY,
    ];

    /// A provider configured from `config` (nothing is called until a step runs).
    pub fn new(config: &CloudConfig) -> Self {
        Self::from_aws(Aws::new(config))
    }

    /// A provider on the given clients (see [`Aws::from_clients`]).
    pub fn from_aws(aws: Aws) -> Self {
        let handlers = Handlers::new("AWS", "aws")
            .with(kinds::NETWORK, network::Network)
            .with(kinds::ENCRYPTION_KEY, kms::Key)
            .with(kinds::IAM_ROLE, iam::Role)
            .with(kinds::CLUSTER, cluster::Cluster)
            .with(kinds::NODE_POOL, node_group::NodeGroup)
            .with(kinds::AUDIT_LOGGING, audit::logging::AuditLogging)
            .with(kinds::OBJECT_BUCKET, audit::bucket::Bucket)
            .with(kinds::AUDIT_ARCHIVE, audit::archive::AuditArchive)
            .with(kinds::AUDIT_ALARM, audit::alarm::AuditAlarm)
            .with(kinds::ADDON, addon::EksAddon)
            .with(kinds::IDENTITY_BINDING, pod_identity::PodIdentity)
            .with(kinds::OIDC_PROVIDER, iam::OidcProvider)
            .with(kinds::REGISTRY_MIRROR, ecr::Mirror)
            .with(kinds::REGISTRY_POLICY, ecr::RegistryPolicy);
        AwsProvider {
            aws: Arc::new(aws),
            handlers,
        }
    }

    /// The shared SDK clients (for the EKS token minter).
    pub fn aws(&self) -> Arc<Aws> {
        Arc::clone(&self.aws)
    }
}

/// A step's typed config, or a permanent error naming the step.
pub(crate) fn config<C: serde::de::DeserializeOwned>(step: &Step) -> Result<C, ProviderError> {
    crate::cloud::config(("AWS", "aws"), step)
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
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
        let handler = self.handlers.find(step)?;
        if !handler.cluster_update() {
            return None;
        }
        Some(ConcurrencyGroup::new(
            format!("eks:{}/updates", self.aws.cluster()),
            1,
        ))
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.aws.clients().await?;
        handler.apply(&clients, &req).await
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.aws.clients().await?;
        handler.observe(&clients, &req).await
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let handler = self.handlers.get(req.step)?;
        let clients = self.aws.clients().await?;
        handler.destroy(&clients, &req).await
    }
}

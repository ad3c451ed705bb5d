//! bmac-steps: the spec and the catalogue of build concerns — cluster, node pools, CNI, storage classes,
//! audit sink, PodSecurity, policy engine, registry mirror / allow-list, workload identity —
//! and how each expands into [`bmac_core::Step`]s with the dependencies the real world has.
//!
//! [`spec`] reads `bmac.toml` into a typed model that remembers where everything was
//! written (it sits next to the catalogue, its only reader, so cloud fields grow here and the
//! engine stays free of cluster knowledge). [`expand`] turns a [`spec::Spec`] into an [`Expansion`]: the steps, and the
//! [`bmac_core::plan::Sources`] the planner needs to point its diagnostics into the spec.
//! [`kinds`] names the step kinds and their replacement fields; [`config`] holds the typed,
//! provider-neutral desired state of each kind, which providers read back, and the
//! [`CredentialSource`] a cluster step hands its in-cluster steps; [`policies`]
//! renders the baseline policies as Kyverno or Gatekeeper objects.
//!
//! Step ids (what `--target`, `depends_on` and the plan show): `cluster`, `cni`,
//! `node_pool.<name>`, `storage_class.<name>`, `audit.{logging,bucket,archive,alarm}`,
//! `namespace.<name>`, `pod_security.<namespace>`, `policy.engine`, `policy.<name>`,
//! `registries.mirror.<upstream>`, `workload_identity.<name>.{role,service_account}`,
//! `manifest.<name>`.

mod bundle;
pub mod bundle_cache;
pub mod config;
mod error;
mod expand;
pub mod kinds;
mod objects;
pub mod policies;
pub mod spec;

pub use bundle::{verify_bundle, verify_bundle_in, verify_bundles, BundleCheck};
pub use bundle_cache::BundleCache;
pub use config::CredentialSource;
pub use error::{
    BundleError, CatalogueError, InvalidIdError, InvalidObjectError, ParseObjectsError,
    ReadObjectsError,
};
pub use expand::{expand, expand_in, Expansion};

/// Provider-specific spellings the catalogue chooses (storage provisioner, role annotation,
/// default node disk), the registry-mirror step id, Google service-account ids and the roles of
/// a GKE node pool's account.
pub mod spelling {
    pub use crate::expand::cloud::{gcp_account_id, GKE_NODE_ROLES};
    pub use crate::expand::infra::{
        default_disk_type, mirror_step_id, provisioner, role_annotation,
    };
}

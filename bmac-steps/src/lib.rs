//! bmac-steps: the catalogue of build concerns — cluster, node pools, CNI, storage classes,
//! audit sink, PodSecurity, policy engine, registry mirror / allow-list, workload identity —
//! and how each expands into [`bmac_core::Step`]s with the dependencies the real world has.
//!
//! [`kinds`] names the step kinds and their replacement fields; [`config`] holds the typed,
//! provider-neutral desired state of each kind, which providers read back.

pub mod config;
pub mod kinds;

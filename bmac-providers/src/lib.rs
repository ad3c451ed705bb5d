//! bmac-providers: the backends that build steps.
//!
//! One module per backend. [`sim`] — a deterministic simulated cloud that serves every step
//! kind — is always compiled: it is the embedded default provider, what the quickstart, the
//! examples, the benches and most of the test suite run against. The real backends (`kube`,
//! `aws`, `gcp`, `azure`) sit behind cargo features of the same names so that the engine and
//! the simulated path build fast without their SDKs (`aws` builds EKS on the official AWS SDK;
//! `gcp` and `azure` are declared for GKE and AKS). [`for_spec`] picks the providers a spec asks for,
//! configured by one [`CloudConfig`] (region, profile, endpoint overrides, the simulator's
//! knobs) resolved from the spec, the environment and flags.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(any(feature = "aws", feature = "gcp"))]
pub mod cloud;
pub mod config;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "kube")]
pub mod kube;
pub mod setup;
pub mod sim;

pub use config::{CloudConfig, Overrides};
pub use setup::{for_config, for_spec, SetupError};
pub use sim::{SimCloud, SimConfig, SimError, SimProvider};

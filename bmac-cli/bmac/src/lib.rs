//! bmac: the front door for embedders. One dependency, one type — [`Stack`] — and the
//! verbs a cluster's life needs: open it from a spec, then [`plan`](Stack::plan),
//! [`apply`](Stack::apply) (events through a callback or a [`RunStream`]),
//! [`refresh`](Stack::refresh), [`drift`](Stack::drift), [`destroy`](Stack::destroy) and
//! [`outputs`](Stack::outputs) — with, under the `kube` feature, a ready
//! `kube_config` for the built cluster.
//!
//! ```no_run
//! # async fn build() -> Result<(), bmac::Error> {
//! use bmac::prelude::*;
//!
//! let stack = Stack::open("examples/quickstart.toml", Options::new())?;
//! let report = stack
//!     .apply(ApplyOptions::new().on_event(|e| println!("{e:?}")))
//!     .await?;
//! assert!(report.is_success());
//! let outputs = stack.outputs().await?;
//! println!("{}", outputs.cluster().map_or("(no cluster)", |c| c.endpoint.as_str()));
//! # Ok(())
//! # }
//! ```
//!
//! # What a stack owns
//! A [`Stack`] is one spec and the state it is built into. It expands the spec into steps once,
//! builds the spec's providers once, and opens the state store once, each the first time a
//! call needs it (so `lint` works on a spec the catalogue rejects, and `plan` works for a cloud
//! this build has no provider for, as long as nothing needs to be observed). Each call loads the
//! state afresh and plans at most once. The `bmac` command line is this API plus rendering.
//!
//! State lives in [`Options::state_dir`], else the spec's `[state] path` (relative to the
//! spec's directory), else `.bmac` beside the spec, so every program that opens the same spec
//! finds the same state. Only the local backend is built; a spec naming another is refused
//! (`bmac::state::backend`).
//!
//! # Features
//! `kube` (in-cluster steps and existing clusters, through kube-rs) and the cloud features
//! `aws`, `gcp`, `azure` are forwarded to `bmac-providers`. `aws` builds EKS and `gcp` GKE; AKS
//! lands in `azure`. A spec naming a provider whose feature the build lacks is refused with
//! `bmac::setup::feature_missing`. The simulated cloud (`provider = "sim"`) is always built.
//!
//! # The crates behind it
//! [`core`] (spec, planner, executor, state), [`steps`] (the catalogue) and [`providers`] are
//! re-exported whole, for what the facade does not wrap (custom providers and steps, the
//! renderers' inputs); [`prelude`] has what an embedder names every day.

mod error;
mod options;
mod outputs;
mod run;
mod stack;

pub use bmac_core as core;
pub use bmac_providers as providers;
pub use bmac_steps as steps;
#[cfg(feature = "kube")]
pub use kube;

pub use bmac_core::drift::{DriftReport, Refreshed};
pub use bmac_core::event::{Event, Outcome};
pub use bmac_core::exec::RunReport;
pub use bmac_core::{Plan, State, StepId};
pub use bmac_steps::spec::Spec;
pub use error::{Error, LintRefusal};
pub use options::{ApplyOptions, Options, PlanOptions};
pub use outputs::{ClusterOutputs, Outputs};
pub use run::RunStream;
pub use stack::Stack;
/// The token that cancels runs ([`Options::cancel_token`], [`ApplyOptions::cancel_token`]).
pub use tokio_util::sync::CancellationToken;

/// What an embedder names every day: `use bmac::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ApplyOptions, ClusterOutputs, Error, Event, Options, Outcome, Outputs, Plan, PlanOptions,
        RunReport, RunStream, Spec, Stack, StepId,
    };
}

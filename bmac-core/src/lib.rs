//! bmac-core: the engine of bmac ("Build Me A Cluster"), with no cloud dependency.
//!
//! The flow: a spec (`bmac_steps::spec`) is expanded by `bmac-steps` into [`step::Step`]s; the
//! [`plan::Planner`] turns steps and the current [`state::State`] into a sealed
//! [`plan::Plan`]; the [`exec::Executor`] runs the plan concurrently against
//! [`provider::Provider`]s, journaling every call to a [`state::StateStore`] so an interrupted
//! run resumes where it stopped, and reporting [`event::Event`]s to whoever listens.
//!
//! See `DESIGN.md` in the repository for the decisions behind each part.

pub mod drift;
pub mod event;
pub mod exec;
pub mod plan;
pub mod provider;
pub mod state;
pub mod step;

pub use event::{Event, EventSender};
pub use exec::Executor;
pub use plan::{Action, Plan, PlanError, Planner};
pub use provider::{Provider, ProviderError, Providers};
pub use state::{LocalStore, State, StateStore};
pub use step::{Inputs, Kind, OutputValue, Outputs, Ref, Step, StepId};

/// The map crate [`state::StepStates`] is built on, re-exported so callers name the same version.
pub use indexmap;

//! [`Error`]: everything a [`Stack`](crate::Stack) call can fail with, as one miette
//! diagnostic.
//!
//! The errors of the crates behind the facade are kept whole — transparent variants, so a
//! spec error still names `file:line:column` with its labels, codes and help, a cycle still
//! lists its steps, a lock error still names the holder — and a caller can match on the
//! variant to tell a bad spec from a locked state from a failed run. The facade's own errors
//! (a refused backend, an unreadable plan file, a spec that fails the baseline) have codes
//! and help lines like every other.

use std::path::PathBuf;

use bmac_core::drift::DriftError;
use bmac_core::exec::ExecError;
use bmac_core::state::StateError;
use bmac_core::PlanError;
use bmac_providers::SetupError;
use bmac_steps::spec::lint::Finding;
use bmac_steps::spec::SpecError;
use bmac_steps::CatalogueError;

/// Why a stack call failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum Error {
    /// The spec cannot be read or is invalid (every problem, with file, line and column).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] SpecError),
    /// The catalogue cannot expand the spec, or the policy bundle does not match its pin.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The step graph is invalid (cycle, unknown dependency), or a saved plan is stale or
    /// damaged.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    /// The state cannot be read or written, or is locked.
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(Box<StateError>),
    /// A run could not start or its journal failed (step failures are in the run's report).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Exec(Box<ExecError>),
    /// Observing what exists (refresh, drift) failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Drift(#[from] DriftError),
    /// The spec's providers cannot be set up (a provider this build lacks, a bad `[sim]`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Setup(#[from] SetupError),
    /// The spec names a state backend this build does not have.
    #[error("state backend `{backend}` is not available in this build")]
    #[diagnostic(
        code(bmac::state::backend),
        help("use `backend = \"local\"` (remote state backends are not built yet)")
    )]
    Backend {
        /// The backend the spec names (`s3`, `gcs`, `kubernetes`).
        backend: String,
    },
    /// A saved plan file cannot be read.
    #[error("cannot read the plan file {}", path.display())]
    #[diagnostic(
        code(bmac::plan::unreadable_file),
        help("give the file `bmac plan --out` wrote (or make a new plan)")
    )]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec fails the security baseline and the run did not allow lint errors.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lint(#[from] LintRefusal),
    /// Nothing in state is a built cluster (nothing applied yet, or it was destroyed).
    #[error("no cluster is built in this stack's state")]
    #[diagnostic(
        code(bmac::outputs::no_cluster),
        help("apply the stack first; `outputs()` shows what is built so far")
    )]
    NoCluster,
    /// A Kubernetes client configuration cannot be made from the cluster step's outputs.
    #[error("cannot make a Kubernetes client configuration from the outputs of step `{step}`")]
    #[diagnostic(code(bmac::outputs::kube_config))]
    KubeConfig {
        /// The cluster step.
        step: bmac_core::StepId,
        /// What the kube provider said.
        #[source]
        source: bmac_core::ProviderError,
    },
}

// The large errors are boxed, so every `Result<_, Error>` stays small.
impl From<StateError> for Error {
    fn from(e: StateError) -> Self {
        Error::State(Box::new(e))
    }
}

impl From<ExecError> for Error {
    fn from(e: ExecError) -> Self {
        Error::Exec(Box::new(e))
    }
}

/// The spec fails the security baseline: its lint errors, each pointing into the spec.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the spec fails the security baseline ({} error(s))", findings.len())]
#[diagnostic(
    code(bmac::lint::refused),
    help("fix the errors, or allow them for this run (`ApplyOptions::allow_lint_errors`, `bmac apply --allow-lint-errors`)")
)]
pub struct LintRefusal {
    /// The findings of severity error, in the order lint reports them.
    #[related]
    pub findings: Vec<Finding>,
}

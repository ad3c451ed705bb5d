//! [`Stack`]: one spec, the state it is built into, and every verb that reads them — lint,
//! validate, plan, graph, state, locks, refresh, drift. Running a plan is in `run.rs`,
//! outputs in `outputs.rs`.
//!
//! Invariants:
//! - The spec is expanded into steps once, its providers are built once and its state store
//!   is opened once per stack, each the first time a call needs it, and cached for the stack's
//!   life: a spec the catalogue rejects can still be linted, and a spec naming a cloud this
//!   build lacks can still be validated and planned (an empty state needs no refresh).
//! - Each call loads the state afresh (another process may have applied since) and makes at
//!   most one plan. Refresh (`Executor::refresh`, under the stack's parallelism, timeouts,
//!   retries and cancellation) observes what exists and folds it into an in-memory copy of
//!   the state; the journal is never written by a refresh.
//! - The bundle digest is checked before anything is planned for an apply (`plan`,
//!   [`Stack::preflight`], `validate`) and never for a destroy, which must work whatever the
//!   bundle file says now. A bundle given by URL is looked up in the local cache only —
//!   `validate` and `plan` never download — and one not cached yet is named in a warning
//!   ([`Options::on_warning`]): it is downloaded and verified when its step is applied.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bmac_core::drift::{DriftReport, Refreshed};
use bmac_core::plan::GraphFormat;
use bmac_core::state::LockInfo;
use bmac_core::{LocalStore, Plan, Planner, Providers, State, StateStore, Step};
use bmac_providers::CloudConfig;
use bmac_steps::spec::lint::{self, Finding, Severity};
use bmac_steps::spec::{Spec, StateBackendKind};
use bmac_steps::Expansion;

use crate::error::{Error, LintRefusal};
use crate::options::{ApplyOptions, Options, PlanOptions};

/// A spec and the state it is built into: the front door. See the crate docs.
pub struct Stack {
    spec: Spec,
    base_dir: PathBuf,
    state_dir: PathBuf,
    pub(crate) options: Options,
    expansion: OnceLock<Expansion>,
    providers: OnceLock<Providers>,
    store: OnceLock<Arc<LocalStore>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("spec", &self.spec.source().0)
            .field("base_dir", &self.base_dir)
            .field("state_dir", &self.state_dir)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Opens the stack of a spec file: reads the spec (every problem, with file, line and
    /// column) and resolves where its state lives. Relative paths in the spec are relative to
    /// the file's directory.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Stack, Error> {
        let spec = Spec::load(path.as_ref())?;
        let base_dir = spec.base_dir().to_owned();
        Stack::from_spec(spec, base_dir, options)
    }

    /// Opens the stack of a spec already read (e.g. [`Spec::parse`]d from text), whose relative
    /// paths — `[state] path`, the policy bundle, manifest files — are relative to `base_dir`.
    pub fn from_spec(
        spec: Spec,
        base_dir: impl Into<PathBuf>,
        options: Options,
    ) -> Result<Stack, Error> {
        if spec.state.backend != StateBackendKind::Local {
            return Err(Error::Backend {
                backend: spec.state.backend.as_str().to_owned(),
            });
        }
        let base_dir = base_dir.into();
        let state_dir = match (&options.state_dir, &spec.state.path) {
            (Some(dir), _) => dir.clone(),
            (None, Some(path)) => base_dir.join(path),
            (None, None) => base_dir.join(".bmac"),
        };
        Ok(Stack {
            spec,
            base_dir,
            state_dir,
            options,
            expansion: OnceLock::new(),
            providers: OnceLock::new(),
            store: OnceLock::new(),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The directory the spec's relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Where the state lives (see the crate docs for how it is chosen).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The options the stack was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The steps the spec expands into (expanded on first use, then shared).
    pub fn steps(&self) -> Result<&[Arc<Step>], Error> {
        Ok(&self.expansion()?.steps)
    }

    /// The spec's security-baseline findings, errors and warnings, in spec order.
    pub fn lint(&self) -> Vec<Finding> {
        lint::lint(&self.spec)
    }

    /// Checks everything that can be checked without state or a cloud: the expansion, the
    /// bundle digest and the step graph (cycles, unknown dependencies). Returns the number of
    /// steps.
    pub fn validate(&self) -> Result<usize, Error> {
        let expansion = self.expansion()?;
        self.verify_bundles_noting_downloads()?;
        Planner::new(expansion.steps.iter().cloned(), &State::default())
            .sources(expansion.sources.clone())
            .plan()?;
        Ok(expansion.steps.len())
    }

    /// What an apply checks before it plans: the policy bundle matches its pinned digest, and
    /// — unless `options` allow lint errors — the spec passes the security baseline (a
    /// [`LintRefusal`] listing the errors otherwise). [`Stack::apply`] calls it; call it
    /// yourself before [`Stack::plan`] when you apply the plan with [`Stack::apply_plan`].
    pub fn preflight(&self, options: &ApplyOptions) -> Result<(), Error> {
        self.verify_bundle()?;
        if options.allow_lint_errors {
            return Ok(());
        }
        let findings: Vec<Finding> = self
            .lint()
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        if findings.is_empty() {
            Ok(())
        } else {
            Err(LintRefusal { findings }.into())
        }
    }

    /// The recorded state (a torn last record is dropped, with a warning to
    /// [`Options::on_warning`]).
    pub async fn state(&self) -> Result<State, Error> {
        let loaded = self.store()?.load().await?;
        for warning in &loaded.warnings {
            match &self.options.on_warning {
                Some(sink) => sink(warning),
                None => tracing::warn!("{warning}"),
            }
        }
        Ok(loaded.state)
    }

    /// The lock on the state, if a run holds it.
    pub async fn lock_info(&self) -> Result<Option<LockInfo>, Error> {
        Ok(self.store()?.lock_info().await?)
    }

    /// Breaks the lock with this id (the id the lock error or [`Stack::lock_info`] shows).
    pub async fn unlock(&self, lock_id: &str) -> Result<(), Error> {
        Ok(self.store()?.unlock(lock_id).await?)
    }

    /// Observes every applied step and folds what moved into a copy of the state — what
    /// [`Stack::plan`] plans against by default. The journal is not written.
    pub async fn refresh(&self) -> Result<Refreshed, Error> {
        let state = self.state().await?;
        self.refreshed(&state).await
    }

    /// What exists, compared with the last apply and with the spec.
    pub async fn drift(&self) -> Result<DriftReport, Error> {
        let state = self.state().await?;
        let steps = self.steps()?;
        Ok(self.observer()?.drift(steps, &state).await?)
    }

    /// The plan an apply would run: the bundle is checked, the state loaded and (unless
    /// `options` say not to) refreshed from what exists, then the selected steps planned.
    pub async fn plan(&self, options: &PlanOptions) -> Result<Plan, Error> {
        self.verify_bundles_noting_downloads()?;
        let mut state = self.state().await?;
        // Nothing applied, nothing to observe (and no provider needed yet).
        if options.refresh && !state.steps.is_empty() {
            state = self.refreshed(&state).await?.state;
        }
        Ok(self.planner(&state, options)?.plan()?)
    }

    /// A plan saved with [`Plan::to_json`] (`bmac plan --out`), refused if the state moved
    /// since it was made.
    pub async fn saved_plan(&self, file: impl AsRef<Path>) -> Result<Plan, Error> {
        let state = self.state().await?;
        let file = file.as_ref();
        let text = std::fs::read_to_string(file).map_err(|source| Error::PlanFile {
            path: file.to_owned(),
            source,
        })?;
        let plan = Plan::from_json(&text)?;
        plan.check_fresh(&state)?;
        Ok(plan)
    }

    /// The plan that destroys everything in state in reverse dependency order (with targets:
    /// the targets and everything that depends on them). It is made against the recorded
    /// state, without a refresh or a bundle check.
    pub async fn plan_destroy(&self, options: &PlanOptions) -> Result<Plan, Error> {
        let state = self.state().await?;
        Ok(self.planner(&state, options)?.destroy().plan()?)
    }

    /// The step graph, each step marked with what an apply would do against the recorded
    /// state.
    pub async fn graph(&self, format: GraphFormat) -> Result<String, Error> {
        let state = self.state().await?;
        let plan = self.planner(&state, &PlanOptions::default())?.plan()?;
        Ok(plan.render_graph(format))
    }

    /// The providers that build the spec's steps: [`Options::providers`], else the ones the
    /// spec names, configured by one `CloudConfig` resolved from the spec, the process
    /// environment and [`Options::cloud`] (built once).
    pub(crate) fn providers(&self) -> Result<&Providers, Error> {
        cached(&self.providers, || match &self.options.providers {
            Some(providers) => Ok(providers.clone()),
            None => {
                let config = CloudConfig::resolve(
                    &self.spec,
                    &self.state_dir,
                    bmac_providers::config::process_env(),
                    &self.options.cloud,
                )?;
                Ok(bmac_providers::for_config(&config)?)
            }
        })
    }

    /// The state store (the directory is created on first write).
    pub(crate) fn store(&self) -> Result<&Arc<LocalStore>, Error> {
        cached(&self.store, || {
            Ok(Arc::new(LocalStore::open(&self.state_dir)?))
        })
    }

    fn expansion(&self) -> Result<&Expansion, Error> {
        cached(&self.expansion, || {
            Ok(bmac_steps::expand_in(&self.spec, &self.base_dir)?)
        })
    }

    fn verify_bundle(&self) -> Result<(), Error> {
        Ok(bmac_steps::verify_bundle_in(&self.spec, &self.base_dir)?)
    }

    /// Checks the bundles and says which URL bundles are not cached yet (they are downloaded
    /// and verified when their step is applied; a plan never downloads). The cache is located
    /// from the same environment the providers are configured from.
    fn verify_bundles_noting_downloads(&self) -> Result<(), Error> {
        let cache = bmac_steps::BundleCache::from_env();
        let check = bmac_steps::verify_bundles(&self.spec, &self.base_dir, cache.as_ref())?;
        for url in &check.pending {
            let warning = format!(
                "bundle {url} is not in the local cache; it will be downloaded and checked \
                 against its sha256 when its step is applied"
            );
            match &self.options.on_warning {
                Some(sink) => sink(&warning),
                None => tracing::warn!("{warning}"),
            }
        }
        Ok(())
    }

    async fn refreshed(&self, state: &State) -> Result<Refreshed, Error> {
        let steps = self.steps()?;
        Ok(self.observer()?.refresh(steps, state).await?)
    }

    fn planner<'s>(&self, state: &'s State, options: &PlanOptions) -> Result<Planner<'s>, Error> {
        let expansion = self.expansion()?;
        let mut planner =
            Planner::new(expansion.steps.iter().cloned(), state).sources(expansion.sources.clone());
        for id in &options.targets {
            planner = planner.target(id.clone());
        }
        for id in &options.excludes {
            planner = planner.exclude(id.clone());
        }
        Ok(planner)
    }
}

/// The value in `cell`, made by `make` the first time (a failed `make` leaves it empty, so the
/// next call tries again and reports its own error).
fn cached<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T, Error>) -> Result<&T, Error> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = make()?;
    Ok(cell.get_or_init(|| value))
}

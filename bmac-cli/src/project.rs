//! The project a command works on: the spec file, the steps the catalogue expands it into, the
//! state store and the providers — each loaded once, with errors that point at the spec.
//!
//! State lives in `--state-dir`, else `[state] path` (relative to the spec file), else `.bmac`
//! beside the spec file, so running bmac from another directory finds the same state.
//!
//! The providers are built once per command, from one [`CloudConfig`] resolved from the spec,
//! the environment and the `--profile` / `--endpoint` flags.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bmac_providers::{CloudConfig, Overrides};

use bmac_core::plan::Sources;
use bmac_core::spec::{Spec, StateBackendKind};
use bmac_core::{LocalStore, Providers, State, Step};
use miette::{miette, Result};

/// A loaded spec and where its state lives.
pub struct Project {
    /// The spec.
    pub spec: Spec,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The flags that override the spec's and the environment's cloud settings.
    overrides: Overrides,
    /// The providers, once built.
    providers: OnceLock<Providers>,
}

impl Project {
    /// Loads the spec (with full diagnostics) and resolves the state directory.
    pub fn load(
        spec_path: &Path,
        state_dir: Option<&Path>,
        overrides: Overrides,
    ) -> Result<Project> {
        let spec = Spec::load(spec_path)?;
        if spec.state.backend != StateBackendKind::Local {
            return Err(miette!(
                code = "bmac::state::backend",
                help = "use `backend = \"local\"` (remote state backends are not built yet)",
                "state backend `{}` is not available in this build",
                spec.state.backend.as_str()
            ));
        }
        let base = spec_path.parent().unwrap_or(Path::new("."));
        let state_dir = match (state_dir, &spec.state.path) {
            (Some(dir), _) => dir.to_owned(),
            (None, Some(path)) => base.join(path),
            (None, None) => base.join(".bmac"),
        };
        Ok(Project {
            spec,
            state_dir,
            overrides,
            providers: OnceLock::new(),
        })
    }

    /// The steps of the spec, with the spans the planner points its diagnostics at.
    pub fn steps(&self) -> Result<(Vec<Arc<Step>>, Sources)> {
        let expansion = bmac_steps::expand(&self.spec)?;
        Ok((expansion.steps, expansion.sources))
    }

    /// Refuses a policy-engine bundle file whose digest is not the one the spec pins, before
    /// anything is planned or applied (`destroy` does not ask: it must work whatever the file).
    pub fn verify_bundle(&self) -> Result<()> {
        Ok(bmac_steps::verify_bundle(&self.spec)?)
    }

    /// Opens the state store (creating the directory on first write).
    pub fn store(&self) -> Result<Arc<LocalStore>> {
        Ok(Arc::new(LocalStore::open(&self.state_dir)?))
    }

    /// Loads state, printing recovery warnings (a torn last record) to stderr.
    pub async fn state(&self, store: &LocalStore) -> Result<State> {
        let loaded = bmac_core::StateStore::load(store).await?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        Ok(loaded.state)
    }

    /// The providers serving this spec's steps, built on first use and shared by every later
    /// call of the same command (a refresh and the run after it talk to the same providers).
    pub fn providers(&self) -> Result<Providers> {
        if let Some(providers) = self.providers.get() {
            return Ok(providers.clone());
        }
        let env = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        let config = CloudConfig::resolve(&self.spec, &self.state_dir, env, &self.overrides)?;
        let providers = bmac_providers::for_config(&config)?;
        Ok(self.providers.get_or_init(|| providers).clone())
    }
}

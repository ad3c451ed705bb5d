//! The knobs of a stack and of its runs: [`Options`] (for the stack's life), [`PlanOptions`]
//! (which part of the graph, and whether to refresh first) and [`ApplyOptions`] (one run).
//!
//! Every option has the default the CLI has: parallelism 10, fail-fast, refresh before
//! planning, the security-baseline gate on. What a run's options leave unset falls back to the
//! stack's ([`ApplyOptions::parallelism`] over [`Options::parallelism`], and so on).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bmac_core::event::Event;
use bmac_core::{Providers, StepId};
use bmac_providers::Overrides;
use tokio_util::sync::CancellationToken;

/// A callback for state warnings (a torn last journal record that was dropped).
pub(crate) type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A callback for a run's events.
pub(crate) type EventSink = Box<dyn FnMut(&Event) + Send>;

/// How a [`Stack`](crate::Stack) is opened and how its runs behave unless a run says otherwise.
#[derive(Clone, Default)]
pub struct Options {
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) parallelism: Option<usize>,
    pub(crate) step_timeout: Option<Duration>,
    pub(crate) seed: Option<u64>,
    pub(crate) cancel: CancellationToken,
    pub(crate) on_warning: Option<WarningSink>,
    pub(crate) providers: Option<Providers>,
    pub(crate) cloud: Overrides,
}

impl Options {
    /// The defaults: state where the spec says, ten steps at a time, warnings to `tracing`.
    pub fn new() -> Self {
        Options::default()
    }

    /// Keep state here instead of the spec's `[state] path` or `.bmac` beside the spec.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// At most this many provider calls at once in every run (default 10).
    pub fn parallelism(mut self, cap: usize) -> Self {
        self.parallelism = Some(cap);
        self
    }

    /// The timeout of one provider call attempt (default 30 minutes; a timeout is retried).
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// Seeds the retry jitter, for reproducible runs (default: differs per process).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A token that cancels every run of the stack: cancelled, a run starts no new steps, asks
    /// running calls to stop and gives them a grace period (see `bmac_core::exec`).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Where state warnings go (a torn last journal record that was dropped on load); by
    /// default they are logged through `tracing`.
    pub fn on_warning(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_warning = Some(Arc::new(sink));
        self
    }

    /// Cloud settings that win over the spec's and the environment's: the credentials
    /// chain's profile and per-service endpoint overrides (what the CLI's `--profile` and
    /// `--endpoint` set; see `bmac_providers::config`).
    pub fn cloud(mut self, overrides: Overrides) -> Self {
        self.cloud = overrides;
        self
    }

    /// Build with these providers instead of the ones the spec's `[cluster] provider` names —
    /// for custom step kinds, token minters, or a provider of your own.
    pub fn providers(mut self, providers: Providers) -> Self {
        self.providers = Some(providers);
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("state_dir", &self.state_dir)
            .field("parallelism", &self.parallelism)
            .field("step_timeout", &self.step_timeout)
            .field("seed", &self.seed)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("on_warning", &self.on_warning.is_some())
            .field("providers", &self.providers)
            .field("cloud", &self.cloud)
            .finish()
    }
}

/// Which part of the graph a plan covers, and what state it is made against.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub(crate) targets: Vec<StepId>,
    pub(crate) excludes: Vec<StepId>,
    pub(crate) refresh: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            targets: Vec::new(),
            excludes: Vec::new(),
            refresh: true,
        }
    }
}

impl PlanOptions {
    /// The whole spec, refreshed from what exists first.
    pub fn new() -> Self {
        PlanOptions::default()
    }

    /// Only this step and what it depends on (may be given more than once). For a destroy:
    /// this step and everything that depends on it.
    pub fn target(mut self, id: StepId) -> Self {
        self.targets.push(id);
        self
    }

    /// Leave out this step and everything that depends on it (may be given more than once).
    pub fn exclude(mut self, id: StepId) -> Self {
        self.excludes.push(id);
        self
    }

    /// Observe what exists before planning, so changes made by hand are put right (on by
    /// default, as Terraform's refresh); off plans against the recorded state alone. A destroy
    /// plan never refreshes.
    pub fn refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }
}

/// One run: what to plan (for [`Stack::apply`](crate::Stack::apply) and
/// [`Stack::destroy`](crate::Stack::destroy)) and how to run it.
#[derive(Default)]
pub struct ApplyOptions {
    pub(crate) plan: PlanOptions,
    pub(crate) parallelism: Option<usize>,
    pub(crate) keep_going: bool,
    pub(crate) allow_lint_errors: bool,
    pub(crate) cancel: Option<CancellationToken>,
    pub(crate) on_event: Option<EventSink>,
}

impl ApplyOptions {
    /// The whole spec, refreshed first, fail-fast, the baseline gate on.
    pub fn new() -> Self {
        ApplyOptions::default()
    }

    /// Plan with these options (targets, excludes, refresh).
    pub fn plan(mut self, plan: PlanOptions) -> Self {
        self.plan = plan;
        self
    }

    /// Only this step and what it depends on; see [`PlanOptions::target`].
    pub fn target(mut self, id: StepId) -> Self {
        self.plan = self.plan.target(id);
        self
    }

    /// Leave out this step and its dependents; see [`PlanOptions::exclude`].
    pub fn exclude(mut self, id: StepId) -> Self {
        self.plan = self.plan.exclude(id);
        self
    }

    /// Refresh before planning (default on); see [`PlanOptions::refresh`].
    pub fn refresh(mut self, refresh: bool) -> Self {
        self.plan = self.plan.refresh(refresh);
        self
    }

    /// At most this many provider calls at once (default: the stack's, else 10).
    pub fn parallelism(mut self, cap: usize) -> Self {
        self.parallelism = Some(cap);
        self
    }

    /// Keep running what does not depend on a failed step, instead of stopping new starts.
    pub fn keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Apply even when the spec fails the security baseline (`bmac lint` errors).
    pub fn allow_lint_errors(mut self, allow: bool) -> Self {
        self.allow_lint_errors = allow;
        self
    }

    /// Cancels this run (instead of the stack's token).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Called with every event of the run, in order, on the caller's task (the run itself goes
    /// on in its own task, so a slow callback never holds it up). The call that takes these
    /// options returns after the last event.
    pub fn on_event(mut self, callback: impl FnMut(&Event) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(callback));
        self
    }
}

impl fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("plan", &self.plan)
            .field("parallelism", &self.parallelism)
            .field("keep_going", &self.keep_going)
            .field("allow_lint_errors", &self.allow_lint_errors)
            .field("cancel", &self.cancel.as_ref().map(|c| c.is_cancelled()))
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

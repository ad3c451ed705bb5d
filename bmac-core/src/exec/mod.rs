//! The executor: runs a sealed [`Plan`] against [`Providers`], concurrently, resumably,
//! journaling every provider call to a [`StateStore`].
//!
//! # Shape
//! One coordinator (module `coordinator`) owns all run state — dependency counters, the ready
//! queue, the running count, the outputs of finished steps, the journal (module `journal`) — and
//! is the only thing that changes it. Each *started* step's work (`step_task`) is a future the
//! coordinator first polls in its own task; only work that has to wait (a real provider call)
//! moves to a spawned task (`running`), so a step that finishes at once costs no task and no
//! cross-thread wake-up, while slow calls still run in parallel. The coordinator is the only
//! caller of the store's `append`: intents and results queue up and go in one append per
//! batch. The public [`Event`](crate::event::Event)s are translated by the coordinator from
//! what it learns and sent on an unbounded channel, so reporters never slow it down.
//!
//! # Order
//! A ready queue driven by dependency counters, ordered by the longest remaining path to a
//! sink weighted by each provider's `expected_duration` ([`SchedulingOrder::CriticalPath`], the
//! default; [`SchedulingOrder::Fifo`] exists for comparison). At most `parallelism` provider
//! calls run at once, and at most its limit of each concurrency group a provider puts steps in
//! (module `groups`).
//!
//! # Failures, retries, cancellation
//! Each attempt has a timeout; retryable errors (and timeouts) are retried with exponential
//! backoff and jitter ([`RetryPolicy`]). [`FailurePolicy::FailFast`] stops starting steps after
//! the first failure and lets running ones finish; [`FailurePolicy::KeepGoing`] skips only the
//! dependents of a failed step. The cancellation token (the CLI wires Ctrl-C to it) stops new
//! starts, cancels running calls' context and gives them a grace period, after which they are
//! abandoned and journaled as failed.
//!
//! # Resume
//! Every provider call is preceded by a durable `Intent` record and followed by its result. A
//! re-run skips steps whose fingerprint matches what was applied; a step with an intent but no
//! result is *in doubt* and is observed first — adopted if it exists as desired, applied again
//! otherwise — never blindly created twice. A journal that cannot be written stops the run.
//!
//! # Refresh and drift
//! [`Executor::drift`] and [`Executor::refresh`] observe every applied step of a spec under the
//! same settings — parallelism cap, concurrency groups, per-attempt timeout, retry with
//! backoff, cancellation with its grace period — through the same attempt loop and ready
//! queue (module `refresh`). They journal nothing and take no lock.
//!
//! # Locking
//! `run` holds the store's lock for its whole length and releases it on every path, and it
//! refuses a plan made against a state that has moved since ([`ExecError::StalePlan`]).

mod coordinator;
mod error;
mod groups;
mod journal;
mod refresh;
mod report;
mod retry;
mod running;
mod shared;
mod start;
mod step_task;
mod topology;

#[cfg(test)]
mod tests;

pub use error::ExecError;
pub use report::{RunReport, StepError, StepFailure, StepSkip};
pub use retry::RetryPolicy;
pub(crate) use shared::StepLink;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::EventSender;
use crate::plan::Plan;
use crate::provider::Providers;
use crate::state::{LockRequest, StateStore};

use coordinator::{Coordinator, Settings};
use journal::Journal;
use shared::Shared;
use topology::Topology;

/// What happens to the rest of the run when a step fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop starting new steps; let running ones finish; skip the rest.
    #[default]
    FailFast,
    /// Keep running everything that does not depend on the failed step.
    KeepGoing,
}

/// The order ready steps start in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SchedulingOrder {
    /// Longest remaining (estimated) path to the end first; ties by plan order.
    #[default]
    CriticalPath,
    /// In the order steps became ready (for benchmarks and comparison).
    Fifo,
}

/// Runs plans. Build one with [`Executor::new`] and the builder methods, then [`run`] it.
///
/// [`run`]: Executor::run
#[derive(Debug, Clone)]
pub struct Executor {
    providers: Providers,
    parallelism: usize,
    step_timeout: Duration,
    retry: RetryPolicy,
    failure_policy: FailurePolicy,
    cancel: CancellationToken,
    grace: Duration,
    events: Option<EventSender>,
    order: SchedulingOrder,
    seed: u64,
}

impl Executor {
    /// Default parallelism cap.
    pub const DEFAULT_PARALLELISM: usize = 10;
    /// Default per-attempt timeout.
    pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// Default grace period after cancellation.
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

    /// An executor with the default settings.
    pub fn new(providers: Providers) -> Self {
        Executor {
            providers,
            parallelism: Executor::DEFAULT_PARALLELISM,
            step_timeout: Executor::DEFAULT_STEP_TIMEOUT,
            retry: RetryPolicy::default(),
            failure_policy: FailurePolicy::default(),
            cancel: CancellationToken::new(),
            grace: Executor::DEFAULT_GRACE_PERIOD,
            events: None,
            order: SchedulingOrder::default(),
            seed: default_seed(),
        }
    }

    /// At most this many provider calls at once (default 10; at least 1).
    pub fn parallelism(mut self, cap: usize) -> Self {
        self.parallelism = cap.max(1);
        self
    }

    /// Timeout of one provider call attempt (default 30 min). A timeout is retryable.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// How retryable errors are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: policy.max_attempts.max(1),
            ..policy
        };
        self
    }

    /// Fail-fast (default) or keep-going.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// The token that cancels the run (the CLI cancels it on Ctrl-C).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// How long running steps may take to stop after cancellation (default 30 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Where to send [`Event`](crate::event::Event)s.
    pub fn events(mut self, events: EventSender) -> Self {
        self.events = Some(events);
        self
    }

    /// Which ready step starts first.
    pub fn order(mut self, order: SchedulingOrder) -> Self {
        self.order = order;
        self
    }

    /// Seeds the retry jitter (default: varies per process).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The cancellation token runs of this executor watch.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Runs a plan: takes the store's lock, refuses a stale plan, runs every step, releases
    /// the lock. Step failures are in the report; `Err` means the run could not start or the
    /// journal failed.
    pub async fn run(&self, plan: Plan, store: &dyn StateStore) -> Result<RunReport, ExecError> {
        let topology = Topology::build(&plan, &self.providers)?;
        let lock = store.lock(LockRequest::new("apply")).await?;
        let result = self.run_locked(plan, topology, store).await;
        let released = store.unlock(&lock.id).await;
        let report = result?;
        released.map_err(ExecError::from)?;
        Ok(report)
    }

    async fn run_locked(
        &self,
        plan: Plan,
        topology: Topology,
        store: &dyn StateStore,
    ) -> Result<RunReport, ExecError> {
        let loaded = store.load().await?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let (want, have) = (plan.state_ref(), &loaded.state);
        if want.lineage != have.lineage || want.serial != have.serial {
            return Err(ExecError::StalePlan {
                plan_lineage: want.lineage.clone(),
                plan_serial: want.serial,
                state_lineage: have.lineage.clone(),
                state_serial: have.serial,
            });
        }
        let (messages, inbox) = mpsc::unbounded_channel();
        let mut shared = Shared::new(
            plan,
            self.providers.clone(),
            messages,
            self.retry,
            self.step_timeout,
            self.seed,
            CancellationToken::new(),
        );
        shared.timed = self.events.is_some();
        shared.load_checkpoints(&loaded.state);
        let shared = Arc::new(shared);
        let settings = Settings {
            parallelism: self.parallelism,
            failure_policy: self.failure_policy,
            order: self.order,
            grace: self.grace,
            cancel: &self.cancel,
            events: self.events.as_ref(),
        };
        let coordinator = Coordinator::new(shared, topology, settings, Journal::new(store));
        let (report, failure) = coordinator.run(inbox).await;
        match failure {
            Some(source) => Err(ExecError::Journal {
                source: Box::new(source),
            }),
            None => Ok(report),
        }
    }
}

/// A jitter seed that differs between processes, so runners retrying the same API spread out.
fn default_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

//! [`SimProvider`]: the [`Provider`] the engine calls, serving every step kind from a
//! [`SimCloud`].
//!
//! - `apply` creates or updates the resource keyed by the step id. It is idempotent: applying
//!   a resource that already has the desired kind, config and outputs changes nothing, writes
//!   nothing and counts as `unchanged` (the executor adopting a step a crash left in doubt
//!   relies on this). A resource of another kind under the same id is replaced (a create).
//! - `observe` reports the stored config and outputs — secrets included, so a later run can
//!   re-read what state keeps only as a digest — or `Absent` (also when what exists under the
//!   step id is of another kind). A resource created less than a seeded fraction of the
//!   scaled consistency window ago still reads as `Absent`.
//! - `destroy` removes the resource; removing something already gone is success.
//!
//! Timing: a mutation waits `base_latency(kind) × speed × jitter` (jitter in 0.8..1.2, seeded
//! by step id and attempt; destroy takes half), a read or a no-op apply waits a 100 ms
//! round trip (scaled), a rejected request (throttle, 5xx, 400) a 50 ms one. Every wait is a
//! `tokio::time::sleep` raced against the run's cancellation token: cancelled mid-wait, the
//! call returns a retryable "cancelled" error at once and the change does not happen.
//!
//! Faults: for `apply` and `destroy` the rules are checked in order, each drawing
//! `unit(seed, rule, step, attempt) < rate`, skipping rules that already fired `times` times
//! for the step; the first that fires decides the call's fate. A timeout waits the full
//! latency and *lets the change land* before failing — the response was lost, not the
//! request — so the retry exercises idempotency. `observe` is never faulted: a read that
//! fails would only test the executor's drift pass, not the build, and would make
//! `--refresh` flaky under `*:server:…` rules meant for the build.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError, StepContext,
};
use bmac_core::step::{Outputs, Step, StepId};
use tokio::time::Instant;

use super::cloud::{now_ms, Resource, SimCloud};
use super::config::{FaultKind, SimConfig};
use super::error::SimError;
use super::kinds;
use super::seed;
use super::stats::{Counters, SimStats};

/// The real-world round trip of a read (observe, or an apply that finds nothing to do).
const READ_LATENCY: Duration = Duration::from_millis(100);
/// The real-world round trip of a request the cloud rejects.
const REJECT_LATENCY: Duration = Duration::from_millis(50);
/// The `Retry-After` a throttled call carries, before scaling.
const THROTTLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The embedded simulated-cloud provider (`name() == "sim"`).
#[derive(Debug)]
pub struct SimProvider {
    config: SimConfig,
    cloud: Arc<SimCloud>,
    stats: Mutex<SimStats>,
    /// How many times each fault rule (by index) has fired for each step.
    fired: Mutex<HashMap<(usize, StepId), u32>>,
}

/// What an apply will do to the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Create,
    Update,
    Unchanged,
}

impl SimProvider {
    /// A provider over the cloud at `config.cloud_path` (opened and replayed), or a fresh
    /// in-memory cloud when there is no path.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let cloud = match &config.cloud_path {
            Some(path) => SimCloud::open(path)?,
            None => SimCloud::in_memory(),
        };
        SimProvider::with_cloud(config, Arc::new(cloud))
    }

    /// A provider configured from the defaults and the `BMAC_SIM_*` environment variables
    /// (see [`SimConfig::with_env`]).
    pub fn from_env() -> Result<Self, SimError> {
        SimProvider::new(SimConfig::from_env()?)
    }

    /// A provider over an existing cloud (`config.cloud_path` is ignored) — e.g. two
    /// providers with different fault rules sharing one cloud in a test.
    pub fn with_cloud(config: SimConfig, cloud: Arc<SimCloud>) -> Result<Self, SimError> {
        config.validate()?;
        Ok(SimProvider {
            config,
            cloud,
            stats: Mutex::new(SimStats::default()),
            fired: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The cloud this provider builds in.
    pub fn cloud(&self) -> &Arc<SimCloud> {
        &self.cloud
    }

    /// What this provider has done so far.
    pub fn stats(&self) -> SimStats {
        lock(&self.stats).clone()
    }

    /// How long creating (or updating) `step` takes on attempt `attempt`: the kind's
    /// real-world latency × speed × a seeded jitter in `0.8..1.2`.
    pub fn latency(&self, step: &Step, attempt: u32) -> Duration {
        self.jittered(
            kinds::base_latency(step.kind.name()),
            "latency",
            step,
            attempt,
        )
    }

    fn jittered(&self, real: Duration, purpose: &str, step: &Step, attempt: u32) -> Duration {
        let jitter =
            0.8 + 0.4 * seed::unit(self.config.seed, purpose, step.id.as_str(), attempt.into());
        self.config.scale(real.mul_f64(jitter))
    }

    fn record(&self, kind: &str, event: impl Fn(&mut Counters)) {
        lock(&self.stats).record(kind, event);
    }

    /// Decides whether a fault rule fires for this call, counting it if so.
    fn draw_fault(&self, op: &str, step: &Step, attempt: u32) -> Option<(usize, FaultKind)> {
        let kind = step.kind.name();
        let mut fired = lock(&self.fired);
        for (index, rule) in self.config.faults.iter().enumerate() {
            if !rule.matches(kind) {
                continue;
            }
            let key = (index, step.id.clone());
            let count = fired.get(&key).copied().unwrap_or(0);
            if rule.times.is_some_and(|limit| count >= limit) {
                continue;
            }
            let purpose = format!("fault:{op}:{index}");
            if seed::unit(self.config.seed, &purpose, step.id.as_str(), attempt.into()) < rule.rate
            {
                fired.insert(key, count + 1);
                drop(fired);
                self.record(kind, |c| c.faults_injected += 1);
                return Some((index, rule.error));
            }
        }
        None
    }

    /// The error a rejected request (throttle, 5xx, 400) returns.
    /// Draws this call's fault. A rejecting one (throttle, 5xx, permanent) answers with its
    /// error after the rejection latency; what is left — nothing, or a timeout, whose change
    /// still lands — is the caller's to play out.
    async fn draw_or_reject(
        &self,
        op: &'static str,
        step: &Step,
        ctx: &StepContext,
    ) -> Result<Option<(usize, FaultKind)>, ProviderError> {
        let fault = self.draw_fault(op, step, ctx.attempt);
        if let Some(f @ (_, FaultKind::Throttle | FaultKind::ServerError | FaultKind::Permanent)) =
            fault
        {
            self.wait(
                self.jittered(REJECT_LATENCY, "reject", step, ctx.attempt),
                ctx,
                op,
                step,
            )
            .await?;
            return Err(self.rejection(f, op, step));
        }
        Ok(fault)
    }

    fn rejection(&self, fault: (usize, FaultKind), op: &str, step: &Step) -> ProviderError {
        let (index, kind) = fault;
        let rule = self
            .config
            .faults
            .get(index)
            .map_or_else(String::new, ToString::to_string);
        let subject = format!("{op} of `{}` ({})", step.id, step.kind);
        match kind {
            FaultKind::Throttle => ProviderError::retryable(format!(
                "429 too many requests: {subject} throttled (simulated fault `{rule}`)"
            ))
            .with_retry_after(self.config.scale(THROTTLE_RETRY_AFTER)),
            FaultKind::ServerError => ProviderError::retryable(format!(
                "500 internal error: {subject} failed (simulated fault `{rule}`)"
            )),
            FaultKind::Timeout => ProviderError::retryable(format!(
                "timed out waiting for {subject} (simulated fault `{rule}`); the change may have been made"
            )),
            FaultKind::Permanent => ProviderError::permanent(format!(
                "400 invalid request: {subject} rejected (simulated fault `{rule}`)"
            )),
        }
    }

    /// Waits `delay` unless the run is cancelled first.
    async fn wait(
        &self,
        delay: Duration,
        ctx: &StepContext,
        op: &str,
        step: &Step,
    ) -> Result<(), ProviderError> {
        let cancelled = || {
            ProviderError::retryable(format!(
                "cancelled during {op} of `{}`; the change was not made",
                step.id
            ))
        };
        if ctx.cancel.is_cancelled() {
            return Err(cancelled());
        }
        if delay.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => Err(cancelled()),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// The instant before which a resource created now reads as absent.
    fn visible_at(&self, step: &Step, generation: u64) -> Option<Instant> {
        let window = self.config.scale(self.config.consistency_delay);
        let lag = window.mul_f64(seed::unit(
            self.config.seed,
            "visibility",
            step.id.as_str(),
            generation,
        ));
        (!lag.is_zero()).then(|| Instant::now() + lag)
    }

    /// Makes the cloud match `step` with `outputs`, deciding against the cloud as it is now
    /// (after the call's latency), and says what that took.
    fn commit(&self, step: &Step, outputs: Outputs) -> Result<(Change, Resource), ProviderError> {
        let existing = self.cloud.lookup(step.id.as_str());
        let change = classify(existing.as_ref().map(|(r, _)| r), step, &outputs);
        let (resource, visible_at) = match (change, existing) {
            (Change::Unchanged, Some((r, _))) => return Ok((Change::Unchanged, r)),
            (Change::Update, Some((r, visible))) => (
                Resource {
                    config: step.config.value().clone(),
                    outputs,
                    generation: r.generation + 1,
                    ..r
                },
                visible,
            ),
            _ => (
                Resource {
                    id: step.id.clone(),
                    kind: step.kind.name().to_owned(),
                    config: step.config.value().clone(),
                    outputs,
                    created_at_ms: now_ms(),
                    generation: 1,
                },
                self.visible_at(step, 1),
            ),
        };
        self.cloud
            .put(&resource, visible_at)
            .map_err(Self::storage_error)?;
        Ok((change, resource))
    }

    fn storage_error(err: SimError) -> ProviderError {
        ProviderError::permanent(format!(
            "the simulated cloud could not persist a change: {err}"
        ))
        .with_source(err)
    }
}

/// What applying `step` (with `outputs`) to `existing` amounts to. A resource of another
/// kind under the same id is replaced: a create.
fn classify(existing: Option<&Resource>, step: &Step, outputs: &Outputs) -> Change {
    match existing {
        Some(r) if r.kind != step.kind.name() => Change::Create,
        Some(r) if r.config == step.config && r.outputs == *outputs => Change::Unchanged,
        Some(_) => Change::Update,
        None => Change::Create,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful even if a panicking test thread poisoned the lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Provider for SimProvider {
    fn name(&self) -> &str {
        "sim"
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        let base = kinds::base_latency(step.kind.name());
        // At speed 0 every wait is zero; keep the real-world weights so critical-path ordering
        // still prefers the long chains.
        Some(if self.config.speed > 0.0 {
            self.config.scale(base)
        } else {
            base
        })
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let step = req.step;
        let kind = step.kind.name();
        let attempt = req.ctx.attempt;
        let fault = self.draw_or_reject("apply", step, req.ctx).await?;
        let outputs = match kinds::outputs(self.config.seed, step, req.inputs) {
            Ok(outputs) => outputs,
            Err(problem) => {
                self.wait(
                    self.jittered(REJECT_LATENCY, "reject", step, attempt),
                    req.ctx,
                    "apply",
                    step,
                )
                .await?;
                return Err(ProviderError::permanent(format!(
                    "400 invalid request: {problem}"
                )));
            }
        };
        let existing = self.cloud.lookup(step.id.as_str());
        let delay = match classify(existing.as_ref().map(|(r, _)| r), step, &outputs) {
            Change::Unchanged => self.jittered(READ_LATENCY, "read", step, attempt),
            Change::Create | Change::Update => self.latency(step, attempt),
        };
        self.wait(delay, req.ctx, "apply", step).await?;
        let (change, resource) = self.commit(step, outputs)?;
        self.record(kind, |c| match change {
            Change::Create => c.creates += 1,
            Change::Update => c.updates += 1,
            Change::Unchanged => c.unchanged += 1,
        });
        if let Some(f @ (_, FaultKind::Timeout)) = fault {
            return Err(self.rejection(f, "apply", step));
        }
        Ok(resource.outputs)
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let step = req.step;
        let delay = self.jittered(READ_LATENCY, "observe", step, req.ctx.attempt);
        self.wait(delay, req.ctx, "observe", step).await?;
        self.record(step.kind.name(), |c| c.observes += 1);
        Ok(match self.cloud.lookup(step.id.as_str()) {
            Some((_, Some(visible_at))) if Instant::now() < visible_at => Observed::Absent,
            // What exists under this id is another kind of thing: the step's resource does not.
            Some((resource, _)) if resource.kind != step.kind.name() => Observed::Absent,
            Some((resource, _)) => Observed::Present {
                config: resource.config,
                outputs: resource.outputs,
            },
            None => Observed::Absent,
        })
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let step = req.step;
        let attempt = req.ctx.attempt;
        let fault = self.draw_or_reject("destroy", step, req.ctx).await?;
        let delay = if self.cloud.lookup(step.id.as_str()).is_some() {
            self.latency(step, attempt) / 2
        } else {
            self.jittered(READ_LATENCY, "read", step, attempt)
        };
        self.wait(delay, req.ctx, "destroy", step).await?;
        if self.cloud.delete(&step.id).map_err(Self::storage_error)? {
            self.record(step.kind.name(), |c| c.destroys += 1);
        }
        if let Some(f @ (_, FaultKind::Timeout)) = fault {
            return Err(self.rejection(f, "destroy", step));
        }
        Ok(())
    }
}

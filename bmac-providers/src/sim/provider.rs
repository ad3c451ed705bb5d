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
//! Long operations, as managed clouds run them: creating a cluster or a node pool
//! ([`kinds::LONG_KINDS`]) is *accepted at once* — the resource exists from that moment, with
//! an [`Operation`] that finishes after the kind's scaled latency — then polled. The call
//! checkpoints `{"operation": "<id>"}` right after the create is accepted and reports progress
//! (`cluster CREATING (sim-op-…), 2m0s`) while it waits. Killed mid-create, the resource stays
//! in the cloud, creating: `observe` answers [`Observed::Pending`] with the operation's id
//! until it is done (the cloud finishes it whether or not anyone polls: past its end it reads
//! as present), and an `apply` that finds the operation running polls *it* instead
//! of creating again.
//!
//! In-cluster calls (steps with a `credentials` input) authenticate first with a short-lived
//! token minted from the cluster's credential source ([`tokens`](super::tokens)); a token the
//! cluster refuses (expired, rotated) is dropped and re-minted once.
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
use bmac_core::step::{Inputs, Outputs, Step, StepId};
use tokio::time::Instant;

use super::cloud::{now_ms, Operation, Resource, SimCloud};
use super::config::{FaultKind, SimConfig};
use super::error::SimError;
use super::kinds;
use super::seed;
use super::stats::{Counters, SimStats};
use super::tokens::{AuthOutcome, Tokens};

/// The real-world round trip of a read (observe, or an apply that finds nothing to do).
const READ_LATENCY: Duration = Duration::from_millis(100);
/// The real-world round trip of a request the cloud rejects.
const REJECT_LATENCY: Duration = Duration::from_millis(50);
/// How many times a long create is polled (and reports progress) while it runs.
const POLLS: u32 = 4;
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
    /// The simulated clusters' token service and this provider's token cache.
    tokens: Tokens,
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
        let tokens = Tokens::new(
            config.seed,
            config.scale(config.token_ttl),
            config.token_uses,
        );
        Ok(SimProvider {
            config,
            cloud,
            stats: Mutex::new(SimStats::default()),
            fired: Mutex::new(HashMap::new()),
            tokens,
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

    /// Authenticates an in-cluster call to its cluster's API server (see
    /// [`tokens`](super::tokens)), counting the tokens minted and the 401s received.
    fn authenticate(&self, step: &Step, inputs: &Inputs) -> Result<(), ProviderError> {
        let (outcome, result) = self.tokens.authenticate(step.id.as_str(), inputs);
        if outcome != AuthOutcome::default() {
            self.record(step.kind.name(), |c| {
                c.tokens_minted += outcome.minted;
                c.unauthorized += outcome.unauthorized;
            });
        }
        result
    }

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
                    operation: None,
                },
                self.visible_at(step, 1),
            ),
        };
        self.cloud
            .put(&resource, visible_at)
            .map_err(Self::storage_error)?;
        Ok((change, resource))
    }

    /// Starts the long create of `step`: the resource exists at once, with a running
    /// operation, and the operation's id is checkpointed before anything else happens.
    async fn start_operation(
        &self,
        step: &Step,
        outputs: Outputs,
        ctx: &StepContext,
    ) -> Result<(Resource, Duration), ProviderError> {
        let latency = self.latency(step, ctx.attempt);
        let started = now_ms();
        let id = format!(
            "sim-op-{}",
            seed::hex(
                self.config.seed,
                &format!("operation:{started}:{}", ctx.attempt),
                step.id.as_str(),
                12
            )
        );
        let resource = Resource {
            id: step.id.clone(),
            kind: step.kind.name().to_owned(),
            config: step.config.value().clone(),
            outputs,
            created_at_ms: started,
            generation: 1,
            operation: Some(Operation {
                id: id.clone(),
                ready_at_ms: started + u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                done: false,
            }),
        };
        self.cloud
            .put(&resource, self.visible_at(step, 1))
            .map_err(Self::storage_error)?;
        self.record(step.kind.name(), |c| c.creates += 1);
        ctx.checkpoint(serde_json::json!({ "operation": id }))
            .await?;
        Ok((resource, latency))
    }

    /// Polls the running operation of `resource` until it is done, reporting progress, then
    /// records it done. The wait is `left` for an operation just started, else what was left
    /// of it (wall clock) when polling began.
    async fn await_operation(
        &self,
        step: &Step,
        mut resource: Resource,
        left: Option<Duration>,
        ctx: &StepContext,
    ) -> Result<Outputs, ProviderError> {
        let Some(operation) = resource.operation.clone() else {
            return Ok(resource.outputs);
        };
        let left = left.unwrap_or_else(|| {
            Duration::from_millis(operation.ready_at_ms.saturating_sub(now_ms()))
        });
        // Four polls, each reporting progress first: the same number whatever the speed.
        let slice = left / POLLS;
        for poll in 0..POLLS {
            let elapsed = Duration::from_millis(now_ms().saturating_sub(resource.created_at_ms));
            ctx.progress(format!(
                "{} CREATING ({}), {}",
                step.kind,
                operation.id,
                human(elapsed)
            ));
            let wait = if poll + 1 == POLLS {
                left - slice * (POLLS - 1)
            } else {
                slice
            };
            self.wait(wait, ctx, "create", step).await.map_err(|_| {
                ProviderError::retryable(format!(
                    "cancelled while `{}` is being created; the create goes on in the cloud \
                     (operation {})",
                    step.id, operation.id
                ))
            })?;
        }
        self.cloud
            .finish_operation(&step.id, &operation.id)
            .map_err(Self::storage_error)?;
        resource.operation = Some(Operation {
            done: true,
            ..operation
        });
        Ok(resource.outputs)
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

/// `125s` → "2m5s" (whole seconds).
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
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

    fn max_duration(&self, step: &Step) -> Option<Duration> {
        // A long create may take three times its usual latency before an attempt is given up
        // (never less than a minute, so a loaded machine does not time out a quick build).
        kinds::is_long(step.kind.name()).then(|| {
            self.config
                .scale(kinds::base_latency(step.kind.name()) * 3)
                .max(Duration::from_secs(60))
        })
    }

    fn poll_interval(&self, step: &Step) -> Duration {
        // Real clouds are polled every 15-30 s while a control plane comes up.
        self.jittered(Duration::from_secs(15), "poll", step, 0)
            .max(Duration::from_millis(10))
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let step = req.step;
        let kind = step.kind.name();
        let attempt = req.ctx.attempt;
        self.authenticate(step, req.inputs)?;
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
        let change = classify(existing.as_ref().map(|(r, _)| r), step, &outputs);
        let running = existing
            .as_ref()
            .map(|(r, _)| r)
            .filter(|r| r.kind == kind && r.operation.as_ref().is_some_and(|op| !op.done));
        if running.is_some() || (change == Change::Create && kinds::is_long(kind)) {
            // A create already under way is polled, never started again.
            let (resource, left) = match running {
                Some(resource) => (resource.clone(), None),
                None => {
                    let (resource, latency) = self.start_operation(step, outputs, req.ctx).await?;
                    (resource, Some(latency))
                }
            };
            let outputs = self.await_operation(step, resource, left, req.ctx).await?;
            if let Some(f @ (_, FaultKind::Timeout)) = fault {
                return Err(self.rejection(f, "apply", step));
            }
            return Ok(outputs);
        }
        let delay = match change {
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
        self.authenticate(step, req.inputs)?;
        let delay = self.jittered(READ_LATENCY, "observe", step, req.ctx.attempt);
        self.wait(delay, req.ctx, "observe", step).await?;
        self.record(step.kind.name(), |c| c.observes += 1);
        Ok(match self.cloud.lookup(step.id.as_str()) {
            Some((_, Some(visible_at))) if Instant::now() < visible_at => Observed::Absent,
            // What exists under this id is another kind of thing: the step's resource does not.
            Some((resource, _)) if resource.kind != step.kind.name() => Observed::Absent,
            Some((resource, _))
                if resource
                    .operation
                    .as_ref()
                    .is_some_and(|op| op.running(now_ms())) =>
            {
                let id = resource.operation.as_ref().map_or("", |op| op.id.as_str());
                Observed::Pending {
                    status: format!("CREATING (operation {id})"),
                }
            }
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
        self.authenticate(step, req.inputs)?;
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

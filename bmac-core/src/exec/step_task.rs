//! One started step: the future the coordinator polls in place (and spawns if it has to
//! wait), and everything it does between "started" and the single [`Finished`] it ends with.
//!
//! A step's work never touches run state. It reads the plan and the finished upstream outputs
//! from [`Shared`] (outputs are write-once slots the coordinator fills before it starts any
//! dependent), talks to its provider, asks the coordinator to journal, and reports. Its order
//! of work is fixed by the durability rule: an `Intent` record is durable before a provider
//! call; the result (`Applied`, `Destroyed`, `Failed`) follows it (see [`Call::record`] for
//! why the step need not wait for that one).
//!
//! Usually the coordinator has already resolved the inputs and journaled the first intent
//! ([`TaskMode::Journaled`], see `start.rs`): the task makes that call — for a Replace, the
//! destroy, then the create under its own intent. Otherwise ([`TaskMode::Converge`]):
//!
//! - Create / Update / Replace: resolve inputs; if the step is *in doubt* (a crash or failure
//!   left an intent without a result), `observe` first: pending (still being created) → wait,
//!   observing again with backoff and reporting progress, until it is not; then present as
//!   desired → adopt it (journal `Applied` with what exists, no apply); absent → create;
//!   present but different → apply over what was observed. An Update whose fingerprint (config + resolved inputs) equals
//!   the last applied one makes no call at all. Replace destroys the old resource first.
//! - Delete: `Intent{Destroy}` → destroy → `Destroyed`.
//! - Re-read: a step with nothing to do whose redacted secret a changing dependent needs is
//!   observed, only to learn the secret again; nothing is journaled.
//!
//! An apply attempt that timed out leaves the step in doubt as well: the next attempt looks
//! (the same observe, wait and adopt) before it calls `apply` again. Every attempt's timeout
//! is the provider's [`max_duration`](crate::provider::Provider::max_duration) for the step,
//! else the executor's default.
//!
//! If the work is dropped without reporting (a provider panicked, the coordinator aborted it
//! after the cancellation grace period, or it was dropped before its first poll), its
//! [`TaskGuard`] reports [`Message::Vanished`] from `Drop`, so the coordinator never waits for
//! a message that cannot come. The guard lives in the future from its creation on.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::plan::{moved_pointers, Action, PlanNode};
use crate::provider::{ApplyRequest, DestroyRequest, Observed, Prior, Provider, ProviderError};
use crate::state::{Operation, Record, RecordKind};
use crate::step::{Fingerprint, Inputs, Outputs, Step};

use super::report::StepError;
use super::retry::{human_duration, step_seed, Attempts, TIMEOUT_CODE};
use super::shared::{prior_outputs, Finished, Message, Planned, Shared, StepResult, TaskMode};

/// A step's work, boxed so that it can be moved to a spawned task after a first poll.
pub(crate) type StepFuture = Pin<Box<dyn Future<Output = Finished> + Send + 'static>>;

/// Reports `Vanished` if the work is dropped before it reported.
pub(crate) struct TaskGuard {
    shared: Arc<Shared>,
    node: u32,
    reported: bool,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.reported {
            let _ = self
                .shared
                .messages
                .send(Message::Vanished { node: self.node });
        }
    }
}

impl TaskGuard {
    /// A guard for node `node`'s work.
    pub(crate) fn new(shared: Arc<Shared>, node: u32) -> Self {
        TaskGuard {
            shared,
            node,
            reported: false,
        }
    }
}

/// Node `node`'s work in `mode`, ready to be polled. `buffer` (empty; its capacity is reused)
/// collects the step's result records and comes back in its [`Finished`].
pub(crate) fn step_future(
    shared: Arc<Shared>,
    node: u32,
    mode: TaskMode,
    buffer: Vec<Record>,
) -> StepFuture {
    Box::pin(step_work(TaskGuard::new(shared, node), mode, buffer))
}

/// The body of a step's work. The guard is captured, so it is part of the future from its
/// creation: dropping the future unpolled still reports `Vanished`. (An `async` block, not an
/// `async fn`: an `async fn` would keep a second copy of its arguments.)
#[allow(clippy::manual_async_fn)] // See above: an `async fn` would be larger.
pub(crate) fn step_work(
    guard: TaskGuard,
    mode: TaskMode,
    buffer: Vec<Record>,
) -> impl Future<Output = Finished> + Send + 'static {
    async move {
        // Moved in whole: a block that only used its fields would capture copies of them,
        // and `reported` below would never reach the guard's `Drop`.
        let mut guard = guard;
        let node = guard.node;
        let started = guard.shared.timed.then(Instant::now);
        let (result, records) = execute(&guard.shared, node, &mode, buffer).await;
        guard.reported = true;
        Finished {
            node,
            result,
            duration: started.map(|at| at.elapsed()).unwrap_or_default(),
            records,
        }
    }
}

/// Runs the step; returns its result and the result records still to be journaled. (`mode`
/// and what it holds are borrowed all the way down: every copy would be part of the future
/// allocated per started step.)
async fn execute(
    shared: &Arc<Shared>,
    node: u32,
    mode: &TaskMode,
    buffer: Vec<Record>,
) -> (StepResult, Vec<Record>) {
    let plan_node = &shared.plan.nodes()[node as usize];
    let step = &plan_node.step;
    let Some(provider) = shared.providers.for_kind(step.kind.name()) else {
        let error = format!(
            "no provider serves kind `{}` (step `{}`)",
            step.kind, step.id
        );
        return (StepResult::Failed(StepError::engine(error)), buffer);
    };
    let resolved = match mode {
        TaskMode::Journaled { .. } => Ok(Inputs::default()),
        TaskMode::Converge => Box::pin(shared.resolve_filling(node)).await,
    };
    let resolved = match resolved {
        Ok(inputs) => inputs,
        Err(message) => return (StepResult::Failed(StepError::engine(message)), buffer),
    };
    let (inputs, journaled) = match mode {
        TaskMode::Journaled { inputs, call } => (inputs, Some(call)),
        TaskMode::Converge => (&resolved, None),
    };
    let call = Call {
        shared,
        node,
        step,
        provider: &**provider,
        inputs,
        attempts: Attempts {
            policy: &shared.retry,
            timeout: provider.max_duration(step).unwrap_or(shared.step_timeout),
            cancel: &shared.cancel,
            seed: step_seed(shared.seed, node),
            link: Some((shared, node)),
        },
        unsent: Mutex::new(buffer),
    };
    let result = call.run(plan_node, journaled).await;
    (result, call.unsent())
}

impl Call<'_> {
    /// The step's calls: the one whose intent the coordinator journaled (`Some`), or
    /// everything from the start (`None`).
    async fn run(&self, plan_node: &PlanNode, journaled: Option<&Planned>) -> StepResult {
        let prior = plan_node.prior.as_ref();
        match journaled {
            Some(Planned::Apply(fingerprint)) => self.call_apply(prior, fingerprint).await,
            Some(Planned::Replace(fingerprint)) => {
                if let Some(old) = prior {
                    if let Err(result) = self.call_destroy(old).await {
                        return result;
                    }
                }
                Box::pin(self.apply(None, *fingerprint)).await
            }
            Some(Planned::Delete) => self.delete(prior, true).await,
            // The rarer paths are boxed so that the common one keeps the task small.
            None => match &plan_node.action {
                Action::NoOp => StepResult::Unchanged(prior_outputs(plan_node)),
                Action::Delete => Box::pin(self.delete(prior, false)).await,
                _ => Box::pin(self.converge(plan_node)).await,
            },
        }
    }
}

/// Whether what exists matches what is desired, by the rule drift uses too
/// ([`moved_pointers`]): nothing the provider observed differs from the desired config. Fields
/// the provider left out (it cannot see them) and fields only the live object has are not
/// compared.
pub(crate) fn config_matches(desired: &Value, observed: &Value) -> bool {
    moved_pointers(desired, observed).is_empty()
}

/// What looking at an in-doubt step found, once it is no longer pending.
enum Examined {
    /// It exists as desired: adopt it.
    Matches(Outputs),
    /// It exists, otherwise: apply over what was observed.
    Differs(Prior),
    /// Nothing exists: create it.
    Absent,
}

/// One step's provider calls.
struct Call<'a> {
    shared: &'a Shared,
    node: u32,
    step: &'a Arc<Step>,
    provider: &'a dyn Provider,
    inputs: &'a Inputs,
    attempts: Attempts<'a>,
    /// Result records not yet handed to the coordinator: they go with the next append the
    /// step waits for, or with its result.
    unsent: Mutex<Vec<Record>>,
}

impl Call<'_> {
    fn on_retry(&self) -> impl FnMut(u32, Duration, &ProviderError) + '_ {
        move |attempt, delay, error| {
            let _ = self.shared.messages.send(Message::Retrying {
                node: self.node,
                attempt,
                delay,
                error: StepError::from_provider(error).to_string(),
            });
        }
    }

    /// Reports progress the executor itself makes (waiting for a pending resource).
    fn progress(&self, message: String) {
        let _ = self.shared.messages.send(Message::Progress {
            node: self.node,
            message,
            at: SystemTime::now(),
        });
    }

    /// Appends a record that a provider call depends on (an intent), after any unsent
    /// result records, and waits until they are durable.
    async fn journal(&self, kind: RecordKind) -> Result<(), StepResult> {
        let mut records = std::mem::take(&mut *self.lock_unsent());
        records.push(Record {
            id: self.step.id.clone(),
            kind,
        });
        self.shared
            .append(records)
            .await
            .map_err(|_| StepResult::JournalDown)
    }

    /// Keeps a record of a call's result without waiting for it to be durable. It reaches
    /// the journal with the step's next append or with its result — before the coordinator
    /// releases any dependent — and the journal is first-in first-out: anything a later
    /// provider call depends on (this step's next intent, a dependent's intent) is durable
    /// only after this record is, and a failed write refuses all that follows. The run itself
    /// returns only once the journal has written everything.
    fn record(&self, kind: RecordKind) {
        self.lock_unsent().push(Record {
            id: self.step.id.clone(),
            kind,
        });
    }

    /// Queues the record that the step now exists as `fingerprint` with `outputs` (secrets
    /// kept as digests only).
    fn record_applied(&self, fingerprint: Fingerprint, outputs: &Outputs) {
        self.record(RecordKind::Applied {
            step: Arc::clone(self.step),
            fingerprint,
            outputs: outputs.redacted(),
        });
    }

    fn lock_unsent(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        // Only this step's work touches it, one call at a time; a panic cannot leave it torn.
        self.unsent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The records still to be journaled with the step's result.
    fn unsent(self) -> Vec<Record> {
        self.unsent
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn observe(&self, prior: Option<&Prior>) -> Result<Observed, ProviderError> {
        self.attempts
            .observe(
                self.provider,
                self.step,
                self.inputs,
                prior,
                None,
                self.on_retry(),
            )
            .await
    }

    /// Observes a step that may exist half made, waits while it is pending, and says whether
    /// what exists is what is desired.
    async fn examine(&self, prior: Option<&Prior>) -> Result<Examined, ProviderError> {
        Ok(match self.observe_settled(prior).await? {
            Observed::Present { config, outputs } if config_matches(&self.step.config, &config) => {
                Examined::Matches(outputs)
            }
            Observed::Present { config, outputs } => Examined::Differs(Prior::new(config, outputs)),
            Observed::Absent => Examined::Absent,
            Observed::Pending { status } => {
                unreachable!("settle returned a pending resource ({status})")
            }
        })
    }

    /// Observes the step, waiting while it is pending: the answer is never
    /// [`Observed::Pending`].
    async fn observe_settled(&self, prior: Option<&Prior>) -> Result<Observed, ProviderError> {
        match self.observe(prior).await? {
            Observed::Pending { status } => self.settle(prior, status).await,
            settled => Ok(settled),
        }
    }

    /// Observes a pending resource again, every poll interval growing to four times it, until
    /// it is no longer pending; reports progress before each wait. Gives up (retryably) after
    /// the step's maximum duration, and at once when the run is cancelled.
    async fn settle(
        &self,
        prior: Option<&Prior>,
        mut status: String,
    ) -> Result<Observed, ProviderError> {
        let poll = self
            .provider
            .poll_interval(self.step)
            .max(Duration::from_millis(1));
        let limit = self.attempts.timeout;
        let started = Instant::now();
        let mut wait = poll;
        loop {
            let waited = started.elapsed();
            self.progress(format!("{status}, {}", human_duration(waited)));
            if waited >= limit {
                return Err(ProviderError::retryable(format!(
                    "still {status} after {}",
                    human_duration(limit)
                ))
                .with_code(TIMEOUT_CODE));
            }
            let sleep = Box::pin(tokio::time::sleep(wait.min(limit - waited)));
            tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => {
                    return Err(ProviderError::permanent(format!(
                        "cancelled while waiting for the resource ({status})"
                    )));
                }
                _ = sleep => {}
            }
            match self.observe(prior).await? {
                Observed::Pending { status: now } => status = now,
                settled => return Ok(settled),
            }
            wait = (wait * 3 / 2).min(poll * 4);
        }
    }

    /// Create, update or replace, observing first when in doubt.
    async fn converge(&self, node: &PlanNode) -> StepResult {
        let fingerprint = self.step.fingerprint(self.inputs);
        let mut prior: Option<Cow<'_, Prior>> = node.prior.as_ref().map(Cow::Borrowed);
        if node.in_doubt {
            match self.examine(node.prior.as_ref()).await {
                Err(e) => return StepResult::Failed(StepError::from_provider(&e)),
                Ok(Examined::Matches(outputs)) => return self.adopt(fingerprint, outputs).await,
                Ok(Examined::Differs(observed)) => prior = Some(Cow::Owned(observed)),
                Ok(Examined::Absent) => prior = None,
            }
        } else if matches!(node.action, Action::Update { .. })
            && node.prior_fingerprint() == Some(fingerprint)
        {
            return StepResult::Unchanged(prior_outputs(node));
        }
        if matches!(node.action, Action::Replace { .. }) {
            if let Some(old) = prior.take() {
                if let Err(result) = self.destroy(&old).await {
                    return result;
                }
            }
        }
        self.apply(prior.as_deref(), fingerprint).await
    }

    /// Journals an in-doubt step found existing as desired.
    async fn adopt(&self, fingerprint: Fingerprint, outputs: Outputs) -> StepResult {
        self.record_applied(fingerprint, &outputs);
        StepResult::Adopted(outputs)
    }

    /// Journals the intent, then applies.
    async fn apply(&self, prior: Option<&Prior>, fingerprint: Fingerprint) -> StepResult {
        let intent = RecordKind::Intent {
            op: Operation::Apply,
            fingerprint: Some(fingerprint),
        };
        if let Err(result) = self.journal(intent).await {
            return result;
        }
        self.call_apply(prior, &fingerprint).await
    }

    /// Applies (its intent is durable) and queues the result. After an attempt that timed
    /// out, the next one looks first: what the timed-out call made may exist, or still be in
    /// the making.
    async fn call_apply(&self, prior: Option<&Prior>, fingerprint: &Fingerprint) -> StepResult {
        let (provider, step, inputs) = (self.provider, self.step, self.inputs);
        let timed_out = AtomicBool::new(false);
        let timed_out = &timed_out;
        let mut on_retry = self.on_retry();
        let outcome = self
            .attempts
            .run(
                |ctx| async move {
                    // `Some(found)` once looked at: what exists (`None`: nothing).
                    let mut looked: Option<Option<Prior>> = None;
                    if timed_out.swap(false, Ordering::Relaxed) {
                        looked = Some(match self.examine(prior).await? {
                            Examined::Matches(outputs) => return Ok(outputs),
                            Examined::Differs(observed) => Some(observed),
                            Examined::Absent => None,
                        });
                    }
                    let prior = match &looked {
                        Some(found) => found.as_ref(),
                        None => prior,
                    };
                    provider
                        .apply(ApplyRequest {
                            step,
                            inputs,
                            prior,
                            ctx: &ctx,
                        })
                        .await
                },
                |attempt, delay, error: &ProviderError| {
                    if error.code.as_deref() == Some(TIMEOUT_CODE) {
                        timed_out.store(true, Ordering::Relaxed);
                    }
                    on_retry(attempt, delay, error);
                },
            )
            .await;
        match outcome {
            Ok(outputs) => {
                self.record_applied(*fingerprint, &outputs);
                StepResult::Changed(outputs)
            }
            Err(e) => self.failed(StepError::from_provider(&e)),
        }
    }

    /// Journals the intent, then destroys what `prior` describes; `Err` carries the step's
    /// result on failure.
    async fn destroy(&self, prior: &Prior) -> Result<(), StepResult> {
        let intent = RecordKind::Intent {
            op: Operation::Destroy,
            fingerprint: None,
        };
        self.journal(intent).await?;
        self.call_destroy(prior).await
    }

    /// Destroys (its intent is durable) and queues the result.
    async fn call_destroy(&self, prior: &Prior) -> Result<(), StepResult> {
        let (provider, step, inputs) = (self.provider, self.step, self.inputs);
        let outcome = self
            .attempts
            .run(
                |ctx| async move {
                    provider
                        .destroy(DestroyRequest {
                            step,
                            inputs,
                            prior,
                            ctx: &ctx,
                        })
                        .await
                },
                self.on_retry(),
            )
            .await;
        match outcome {
            Ok(()) => {
                self.record(RecordKind::Destroyed);
                Ok(())
            }
            Err(e) => Err(self.failed(StepError::from_provider(&e))),
        }
    }

    /// Destroys a step planned for deletion (`journaled`: its intent is already durable).
    async fn delete(&self, prior: Option<&Prior>, journaled: bool) -> StepResult {
        let Some(prior) = prior else {
            return StepResult::Failed(StepError::engine(format!(
                "step `{}` is planned for deletion but state has no record of what was applied",
                self.step.id
            )));
        };
        let destroyed = if journaled {
            self.call_destroy(prior).await
        } else {
            self.destroy(prior).await
        };
        match destroyed {
            Ok(()) => StepResult::Destroyed,
            Err(result) => result,
        }
    }

    fn failed(&self, error: StepError) -> StepResult {
        self.record(RecordKind::Failed {
            error: error.to_string(),
        });
        StepResult::Failed(error)
    }
}

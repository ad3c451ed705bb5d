//! One started step: the task the coordinator spawns, and everything it does between
//! "started" and the single [`Message::Finished`] it sends back.
//!
//! A task never touches run state. It reads the plan and the finished upstream outputs from
//! [`Shared`] (outputs are write-once slots the coordinator fills before it starts any
//! dependent), talks to its provider, appends to the journal, and reports. Its order of work
//! is fixed by the durability rule: an `Intent` record is durable before a provider call, the
//! result (`Applied`, `Destroyed`, `Failed`) is queued after it (see [`Call::record`] for why
//! the task need not wait for that one).
//!
//! Usually the coordinator has already resolved the inputs and journaled the first intent
//! ([`TaskMode::Journaled`], see `start.rs`): the task makes that call — for a Replace, the
//! destroy, then the create under its own intent. Otherwise ([`TaskMode::Converge`]):
//!
//! - Create / Update / Replace: resolve inputs; if the step is *in doubt* (a crash or failure
//!   left an intent without a result), `observe` first: present as desired → adopt it
//!   (journal `Applied` with what exists, no apply); absent → create; present but different →
//!   apply over what was observed. An Update whose fingerprint (config + resolved inputs) equals
//!   the last applied one makes no call at all. Replace destroys the old resource first.
//! - Delete: `Intent{Destroy}` → destroy → `Destroyed`.
//! - Re-read: a step with nothing to do whose redacted secret a changing dependent needs is
//!   observed, only to learn the secret again; nothing is journaled.
//!
//! If the task dies without reporting (a provider panicked, or the coordinator aborted it
//! after the cancellation grace period), its [`TaskGuard`] reports [`Message::Vanished`] from
//! `Drop`, so the coordinator never waits for a message that cannot come.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::plan::{Action, PlanNode};
use crate::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, Provider, ProviderError,
};
use crate::state::{Operation, Record, RecordKind};
use crate::step::{Fingerprint, Inputs, Outputs, Step};

use super::retry::{step_seed, Attempts};
use super::shared::{
    prior_outputs, resolve_inputs, Message, Planned, Shared, StepResult, TaskMode,
};

/// Reports `Vanished` if the task is dropped before it reported.
struct TaskGuard {
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

/// The body of a spawned step task.
pub(crate) async fn step_task(shared: Arc<Shared>, node: u32, mode: TaskMode) {
    let mut guard = TaskGuard {
        shared,
        node,
        reported: false,
    };
    let started = Instant::now();
    let result = execute(&guard.shared, node, mode).await;
    let _ = guard.shared.messages.send(Message::Finished {
        node,
        result,
        duration: started.elapsed(),
    });
    guard.reported = true;
}

async fn execute(shared: &Shared, node: u32, mode: TaskMode) -> StepResult {
    let plan_node = &shared.plan.nodes()[node as usize];
    let step = &plan_node.step;
    let Some(provider) = shared.providers.for_kind(step.kind.name()) else {
        return StepResult::Failed(format!(
            "no provider serves kind `{}` (step `{}`)",
            step.kind, step.id
        ));
    };
    let (inputs, journaled) = match mode {
        TaskMode::Journaled { inputs, call } => (inputs, Ok(call)),
        TaskMode::Converge { reread_secrets } => match resolve_inputs(shared, node) {
            Ok(inputs) => (inputs, Err(Some(reread_secrets))),
            Err(message) => return StepResult::Failed(message),
        },
        TaskMode::Reread => match resolve_inputs(shared, node) {
            Ok(inputs) => (inputs, Err(None)),
            Err(message) => return StepResult::Failed(message),
        },
        // A deletion (its action is Delete) that journals its own intent once inputs are known.
        TaskMode::DeleteRereading => match shared.resolve_rereading(node).await {
            Ok(inputs) => (inputs, Err(Some(false))),
            Err(message) => return StepResult::Failed(message),
        },
    };
    let call = Call {
        shared,
        node,
        step,
        provider: &**provider,
        inputs: &inputs,
        attempts: Attempts {
            policy: &shared.retry,
            timeout: shared.step_timeout,
            cancel: &shared.cancel,
            seed: step_seed(shared.seed, node),
        },
    };
    let prior = plan_node.prior.as_ref();
    match journaled {
        Ok(Planned::Apply(fingerprint)) => call.call_apply(prior, fingerprint).await,
        Ok(Planned::Replace(fingerprint)) => {
            if let Some(old) = prior {
                if let Err(result) = call.call_destroy(old).await {
                    return result;
                }
            }
            Box::pin(call.apply(None, fingerprint)).await
        }
        Ok(Planned::Delete) => call.delete(prior, true).await,
        // The rarer paths are boxed so that the common one keeps the task small.
        Err(None) => Box::pin(call.reread(prior)).await,
        Err(Some(reread_secrets)) => match &plan_node.action {
            Action::NoOp => StepResult::Unchanged(prior_outputs(plan_node)),
            Action::Delete => Box::pin(call.delete(prior, false)).await,
            _ => Box::pin(call.converge(plan_node, reread_secrets)).await,
        },
    }
}

/// Whether what exists matches what is desired: every field of the desired config (recursively
/// for objects) equals the observed one. Observed fields the config does not set are ignored.
pub(crate) fn config_matches(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| have.get(k).is_some_and(|h| config_matches(v, h))),
        _ => desired == observed,
    }
}

/// An error with its chain of causes, for people. A cause whose text the message already
/// carries (providers often write `format!("cannot …: {e}")` and attach `e` as the source) is
/// not repeated.
pub(crate) fn describe(error: &ProviderError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One step's provider calls.
struct Call<'a> {
    shared: &'a Shared,
    node: u32,
    step: &'a Step,
    provider: &'a dyn Provider,
    inputs: &'a Inputs,
    attempts: Attempts<'a>,
}

impl Call<'_> {
    fn on_retry(&self) -> impl FnMut(u32, Duration, &ProviderError) + '_ {
        move |attempt, delay, error| {
            let _ = self.shared.messages.send(Message::Retrying {
                node: self.node,
                attempt,
                delay,
                error: describe(error),
            });
        }
    }

    /// Appends a record that a provider call depends on (an intent) and waits until it is
    /// durable.
    async fn journal(&self, kind: RecordKind) -> Result<(), StepResult> {
        let record = Record {
            id: self.step.id.clone(),
            kind,
        };
        self.shared
            .journal
            .append(record)
            .await
            .map_err(|_| StepResult::JournalDown)
    }

    /// Queues a record of a call's result without waiting for it. Safe because the writer
    /// is first-in first-out: anything a later provider call depends on — this step's next
    /// intent, or a dependent's intent, which can only be queued after this step reports —
    /// is acknowledged only after this record is durable, and a failed write refuses all
    /// that follows. The run itself returns only once the writer has flushed everything.
    fn record(&self, kind: RecordKind) {
        let record = Record {
            id: self.step.id.clone(),
            kind,
        };
        self.shared.journal.queue(record);
    }

    async fn observe(&self, prior: Option<&Prior>) -> Result<Observed, ProviderError> {
        let (provider, step, inputs) = (self.provider, self.step, self.inputs);
        self.attempts
            .run(
                |ctx| async move {
                    provider
                        .observe(ObserveRequest {
                            step,
                            inputs,
                            prior,
                            ctx: &ctx,
                        })
                        .await
                },
                self.on_retry(),
            )
            .await
    }

    /// Create, update or replace, observing first when in doubt.
    async fn converge(&self, node: &PlanNode, reread_secrets: bool) -> StepResult {
        let fingerprint = self.step.fingerprint(self.inputs);
        let mut prior: Option<Cow<'_, Prior>> = node.prior.as_ref().map(Cow::Borrowed);
        if node.in_doubt {
            match self.observe(node.prior.as_ref()).await {
                Err(e) => return StepResult::Failed(describe(&e)),
                Ok(Observed::Present { config, outputs })
                    if config_matches(&self.step.config, &config) =>
                {
                    return self.adopt(fingerprint, outputs).await;
                }
                Ok(Observed::Present { config, outputs }) => {
                    prior = Some(Cow::Owned(Prior::new(config, outputs)));
                }
                Ok(Observed::Absent) => prior = None,
            }
        } else if matches!(node.action, Action::Update { .. })
            && node.prior_fingerprint == Some(fingerprint)
        {
            let recorded = prior_outputs(node);
            if !(reread_secrets && recorded.has_redacted_secret()) {
                return StepResult::Unchanged(recorded);
            }
            match self.observe(node.prior.as_ref()).await {
                Err(e) => return StepResult::Failed(describe(&e)),
                Ok(Observed::Present { outputs, .. }) => return self.reread_result(outputs),
                // Gone behind our back: create it again.
                Ok(Observed::Absent) => prior = None,
            }
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
        let applied = RecordKind::Applied {
            step: self.step.clone(),
            fingerprint,
            outputs: outputs.redacted(),
        };
        self.record(applied);
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
        self.call_apply(prior, fingerprint).await
    }

    /// Applies (its intent is durable) and queues the result.
    async fn call_apply(&self, prior: Option<&Prior>, fingerprint: Fingerprint) -> StepResult {
        let (provider, step, inputs) = (self.provider, self.step, self.inputs);
        let outcome = self
            .attempts
            .run(
                |ctx| async move {
                    provider
                        .apply(ApplyRequest {
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
            Ok(outputs) => {
                self.record(RecordKind::Applied {
                    step: step.clone(),
                    fingerprint,
                    outputs: outputs.redacted(),
                });
                StepResult::Changed(outputs)
            }
            Err(e) => self.failed(describe(&e)),
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
            Err(e) => Err(self.failed(describe(&e))),
        }
    }

    /// Destroys a step planned for deletion (`journaled`: its intent is already durable).
    async fn delete(&self, prior: Option<&Prior>, journaled: bool) -> StepResult {
        let Some(prior) = prior else {
            return StepResult::Failed(format!(
                "step `{}` is planned for deletion but state has no record of what was applied",
                self.step.id
            ));
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

    /// A planned no-op observed to learn its secrets again.
    async fn reread(&self, prior: Option<&Prior>) -> StepResult {
        match self.observe(prior).await {
            Err(e) => StepResult::Failed(describe(&e)),
            Ok(Observed::Present { outputs, .. }) => self.reread_result(outputs),
            Ok(Observed::Absent) => StepResult::Failed(format!(
                "step `{}` no longer exists, but a dependent needs its sensitive outputs; \
                 plan again to re-create it",
                self.step.id
            )),
        }
    }

    fn reread_result(&self, outputs: Outputs) -> StepResult {
        if outputs.has_redacted_secret() {
            return StepResult::Failed(format!(
                "observing step `{}` did not return the value of its sensitive outputs",
                self.step.id
            ));
        }
        StepResult::Unchanged(outputs)
    }

    fn failed(&self, error: String) -> StepResult {
        self.record(RecordKind::Failed {
            error: error.clone(),
        });
        StepResult::Failed(error)
    }
}

//! What one run's coordinator and its step tasks share, and the messages between them.
//!
//! [`Shared`] is created once per run and handed to every task in an `Arc`: the plan, provider
//! routing, retry settings, the channel to the coordinator, the run's step cancellation, one
//! write-once output slot per node, and the steps' latest checkpoints. Only the coordinator writes a slot, when the node
//! finishes and before any dependent starts, so tasks read their inputs without locks. Tasks
//! answer with a [`Finished`] (returned, or sent as a [`Message`] by a spawned task), ask for
//! journal appends with [`Shared::append`], and report progress and checkpoints through the
//! [`StepLink`] their provider calls' contexts carry; nothing else flows back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::plan::{Action, Plan, PlanNode};
use crate::provider::{ObserveRequest, Observed, Providers, StepContext};
use crate::state::{Record, RecordKind, State};
use crate::step::{Fingerprint, Inputs, OutputValue, Outputs, StepId};

use super::report::StepError;

use super::journal::JournalDown;
use super::retry::RetryPolicy;

/// What the coordinator shares with its tasks for the length of one run.
pub(crate) struct Shared {
    /// The plan being run.
    pub(crate) plan: Plan,
    /// Provider routing.
    pub(crate) providers: Providers,
    /// Outputs of finished nodes, unredacted; each slot is written once, before any dependent
    /// of the node starts.
    pub(crate) outputs: Box<[OnceLock<Outputs>]>,
    /// To the coordinator.
    pub(crate) messages: mpsc::UnboundedSender<Message>,
    /// Retry policy.
    pub(crate) retry: RetryPolicy,
    /// Per-attempt timeout.
    pub(crate) step_timeout: Duration,
    /// Jitter seed.
    pub(crate) seed: u64,
    /// Whether steps' durations are measured: they only appear in events, so a run nobody
    /// listens to skips the clock reads (default: measured).
    pub(crate) timed: bool,
    /// Cancelled when the run is asked to stop; handed to providers.
    pub(crate) cancel: CancellationToken,
    /// Step id → node index, built only if an input references a step that is not a direct
    /// dependency (deletions, whose edges are reversed).
    index: OnceLock<HashMap<StepId, u32>>,
    /// Live outputs of steps observed because a call needs a secret of theirs that state
    /// keeps only as a digest (see [`Shared::resolve_filling`]): one cell per such step, so
    /// each is observed at most once per run however many calls need it.
    reread: Mutex<HashMap<u32, Arc<tokio::sync::OnceCell<Outputs>>>>,
    /// Each node's latest checkpoint: from state at the start, then what its calls
    /// checkpoint during the run.
    checkpoints: Mutex<HashMap<u32, Arc<Value>>>,
    /// Whether `checkpoints` has ever held anything (most runs never lock it).
    any_checkpoint: AtomicBool,
}

impl Shared {
    /// Run-scoped data for `plan`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        plan: Plan,
        providers: Providers,
        messages: mpsc::UnboundedSender<Message>,
        retry: RetryPolicy,
        step_timeout: Duration,
        seed: u64,
        cancel: CancellationToken,
    ) -> Self {
        let outputs = (0..plan.len()).map(|_| OnceLock::new()).collect();
        Shared {
            plan,
            providers,
            outputs,
            messages,
            retry,
            step_timeout,
            seed,
            timed: true,
            cancel,
            index: OnceLock::new(),
            reread: Mutex::new(HashMap::new()),
            checkpoints: Mutex::new(HashMap::new()),
            any_checkpoint: AtomicBool::new(false),
        }
    }

    /// Takes the checkpoints `state` (the state the plan was made against) holds for the
    /// plan's steps.
    pub(crate) fn load_checkpoints(&self, state: &State) {
        let mut found = state
            .steps
            .iter()
            .filter_map(|(id, s)| Some((id, s.checkpoint.as_ref()?)))
            .peekable();
        if found.peek().is_none() {
            return;
        }
        let mut checkpoints = self.lock_checkpoints();
        for (id, data) in found {
            if let Some(node) = self.index_of(id) {
                checkpoints.insert(node, Arc::clone(data));
            }
        }
        self.any_checkpoint
            .store(!checkpoints.is_empty(), Ordering::Release);
    }

    /// Node `node`'s latest checkpoint.
    pub(crate) fn checkpoint(&self, node: u32) -> Option<Arc<Value>> {
        if !self.any_checkpoint.load(Ordering::Acquire) {
            return None;
        }
        self.lock_checkpoints().get(&node).cloned()
    }

    fn lock_checkpoints(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Value>>> {
        // Inserts and clones only: a panic elsewhere cannot leave the map torn.
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A provider call's context for node `node`, attempt `attempt`, carrying its latest
    /// checkpoint and the link back to this run.
    pub(crate) fn context(self: &Arc<Self>, node: u32, attempt: u32) -> StepContext {
        StepContext::linked(
            self.cancel.clone(),
            attempt,
            self.checkpoint(node),
            StepLink {
                shared: Arc::clone(self),
                node,
            },
        )
    }

    /// Appends `records` to the journal (through the coordinator, which owns it) and waits
    /// until they are durable.
    pub(crate) async fn append(&self, records: Vec<Record>) -> Result<(), JournalDown> {
        let (ack, done) = oneshot::channel();
        // If the coordinator is gone, `ack` is dropped with the message and `done` reports it.
        let _ = self.messages.send(Message::Journal { records, ack });
        done.await.unwrap_or(Err(JournalDown))
    }

    /// Node `node`'s inputs, with every secret known only by its digest — recorded by an
    /// earlier run, which journals no secret — re-read from the live resource of the step that
    /// produced it ([`Shared::live_outputs`]). This is the one way the engine learns a secret
    /// again: the call that needs it asks, just before the call; a run in which nothing needs
    /// a secret observes nothing for it.
    pub(crate) async fn resolve_filling(&self, node: u32) -> Result<Inputs, String> {
        let mut inputs = resolve_inputs(self, node)?;
        let this = &self.plan.nodes()[node as usize];
        for (name, reference) in &this.step.inputs {
            if inputs.get(name).is_some_and(|v| v.value().is_some()) {
                continue;
            }
            let value = self
                .live_output(&this.step.id, &reference.step, &reference.output)
                .await
                .map_err(|e| format!("step `{}`: input `{name}`: {e}", this.step.id))?;
            inputs.0.insert(name.clone(), value);
        }
        Ok(inputs)
    }

    /// Output `output` of step `source`, read from what exists (for `consumer`'s messages).
    async fn live_output(
        &self,
        consumer: &StepId,
        source: &StepId,
        output: &str,
    ) -> Result<OutputValue, String> {
        let index = self
            .index_of(source)
            .ok_or_else(|| format!("`{consumer}` needs `{source}`, which is not in the plan"))?;
        let live = self.live_outputs(index).await?;
        live.get(output)
            .cloned()
            .ok_or_else(|| format!("step `{source}` no longer reports output `{output}`"))
    }

    /// The live outputs of `source`, observed once per run. Its own inputs come from this
    /// run's outputs or from state, and a secret among them that is known only by its digest
    /// is re-read the same way, from its own producer (the graph is acyclic, so this ends).
    fn live_outputs(
        &self,
        source: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outputs, String>> + Send + '_>>
    {
        Box::pin(async move {
            let cell = {
                let mut cells = self.reread.lock().unwrap_or_else(PoisonError::into_inner);
                Arc::clone(cells.entry(source).or_default())
            };
            cell.get_or_try_init(|| self.observe_for_secrets(source))
                .await
                .cloned()
        })
    }

    /// Observes `source` to learn the values of its sensitive outputs.
    async fn observe_for_secrets(&self, source: u32) -> Result<Outputs, String> {
        let node = &self.plan.nodes()[source as usize];
        let step = &node.step;
        let provider = self.providers.for_kind(step.kind.name()).ok_or_else(|| {
            format!(
                "no provider serves kind `{}` (step `{}`)",
                step.kind, step.id
            )
        })?;
        let mut inputs = Inputs::default();
        for (name, reference) in &step.inputs {
            let known = self.index_of(&reference.step).and_then(|i| {
                let i = i as usize;
                let this_run = self.outputs[i].get();
                let recorded = self.plan.nodes()[i].prior.as_ref().map(|p| p.outputs());
                [this_run, recorded]
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o.get(&reference.output))
                    .find(|v| v.value().is_some())
                    .cloned()
            });
            let value = match known {
                Some(value) => value,
                None => self
                    .live_output(&step.id, &reference.step, &reference.output)
                    .await
                    .map_err(|e| format!("cannot re-read the secrets of `{}`: {e}", step.id))?,
            };
            inputs.0.insert(name.clone(), value);
        }
        let ctx = StepContext::new(self.cancel.clone(), 1);
        let observed = provider
            .observe(ObserveRequest {
                step,
                inputs: &inputs,
                prior: node.prior.as_ref(),
                ctx: &ctx,
            })
            .await
            .map_err(|e| format!("re-reading the secrets of `{}` failed: {e}", step.id))?;
        match observed {
            Observed::Present { outputs, .. } if outputs.has_redacted_secret() => Err(format!(
                "observing step `{}` did not return the value of its sensitive outputs",
                step.id
            )),
            Observed::Present { outputs, .. } => Ok(outputs),
            Observed::Absent => Err(format!(
                "cannot re-read the secrets of `{}`: it no longer exists; plan again to \
                 re-create it",
                step.id
            )),
            Observed::Pending { status } => Err(format!(
                "cannot re-read the secrets of `{}`: it is still in progress ({status})",
                step.id
            )),
        }
    }

    fn index_of(&self, id: &StepId) -> Option<u32> {
        self.index
            .get_or_init(|| {
                self.plan
                    .nodes()
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.step.id.clone(), i as u32))
                    .collect()
            })
            .get(id)
            .copied()
    }
}

/// The way back from a provider call's [`StepContext`] to the run: progress goes to the
/// coordinator as a message; a checkpoint is kept for the step's later calls and journaled.
#[derive(Clone)]
pub(crate) struct StepLink {
    shared: Arc<Shared>,
    node: u32,
}

impl StepLink {
    /// Sends a progress report to the coordinator (which turns it into an event).
    pub(crate) fn progress(&self, message: String) {
        let _ = self.shared.messages.send(Message::Progress {
            node: self.node,
            message,
            at: SystemTime::now(),
        });
    }

    /// Keeps `data` as the step's latest checkpoint and journals it; ready once durable.
    ///
    /// The record goes straight to the journal: a step's unsent result records are always
    /// flushed before it makes a provider call (every mutating call follows a journaled
    /// intent, and the only call made before one is the first `observe`), so none can be
    /// waiting behind it.
    pub(crate) async fn checkpoint(&self, data: Arc<Value>) -> Result<(), JournalDown> {
        let shared = &self.shared;
        shared
            .lock_checkpoints()
            .insert(self.node, Arc::clone(&data));
        shared.any_checkpoint.store(true, Ordering::Release);
        let record = Record {
            id: shared.plan.nodes()[self.node as usize].step.id.clone(),
            kind: RecordKind::Checkpoint { data },
        };
        shared.append(vec![record]).await
    }
}

/// What a task tells the coordinator.
#[derive(Debug)]
pub(crate) enum Message {
    /// A provider reported progress (or the task waits for a pending resource).
    Progress {
        node: u32,
        message: String,
        at: SystemTime,
    },
    /// A retryable error; the next attempt follows after `delay`.
    Retrying {
        node: u32,
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// A spawned task is done.
    Finished(Finished),
    /// The task ended without reporting (panic or abort).
    Vanished { node: u32 },
    /// Append these records and acknowledge once they are durable (or refused).
    Journal {
        records: Vec<Record>,
        ack: oneshot::Sender<Result<(), JournalDown>>,
    },
}

/// What a step's work ends with.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The node.
    pub(crate) node: u32,
    /// How it went.
    pub(crate) result: StepResult,
    /// From the start of the work to its end (zero when the run is not timed).
    pub(crate) duration: Duration,
    /// Result records the coordinator journals before it releases any dependent (so they are
    /// written before anything that depends on them).
    pub(crate) records: Vec<Record>,
}

/// How a step ended.
#[derive(Debug)]
pub(crate) enum StepResult {
    /// A provider call changed something; the outputs are unredacted.
    Changed(Outputs),
    /// Destroyed.
    Destroyed,
    /// Nothing to do; outputs as recorded (or re-read).
    Unchanged(Outputs),
    /// In doubt, found existing as desired, adopted.
    Adopted(Outputs),
    /// Failed for good.
    Failed(StepError),
    /// The journal refused a record; the run must stop.
    JournalDown,
}

/// What the coordinator asks of a task.
#[derive(Debug)]
pub(crate) enum TaskMode {
    /// The coordinator resolved the inputs and journaled the intent of `call`: make the call.
    Journaled { inputs: Inputs, call: Planned },
    /// Resolve inputs (re-reading secrets known only by digest), observe first if the step is
    /// in doubt, journal its own intents.
    Converge,
}

/// The provider call whose intent the coordinator journaled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Planned {
    /// Apply, aiming for this fingerprint (`Intent{Apply}` journaled).
    Apply(Fingerprint),
    /// Destroy the prior resource, then create (`Intent{Destroy}` journaled).
    Replace(Fingerprint),
    /// Destroy (`Intent{Destroy}` journaled).
    Delete,
}

/// The outputs a node's last apply recorded (empty when it has none).
pub(crate) fn prior_outputs(node: &PlanNode) -> Outputs {
    node.prior
        .as_ref()
        .map(|p| p.outputs().clone())
        .unwrap_or_default()
}

/// Resolves a node's inputs from finished upstream outputs. A deletion resolves from what the
/// referenced steps last recorded, since its edges run the other way.
pub(crate) fn resolve_inputs(shared: &Shared, node: u32) -> Result<Inputs, String> {
    let nodes = shared.plan.nodes();
    let this = &nodes[node as usize];
    let mut inputs = Inputs::default();
    for (name, reference) in &this.step.inputs {
        let direct = this
            .deps
            .iter()
            .copied()
            .find(|&d| nodes[d as usize].step.id == reference.step);
        let source = match direct.or_else(|| shared.index_of(&reference.step)) {
            Some(source) => source as usize,
            None => {
                return Err(format!(
                    "step `{}`: input `{name}` references `{reference}`, but step `{}` is not in the plan",
                    this.step.id, reference.step
                ))
            }
        };
        let outputs = if this.action == Action::Delete {
            nodes[source].prior.as_ref().map(|p| p.outputs())
        } else {
            shared.outputs[source].get()
        };
        let Some(outputs) = outputs else {
            return Err(format!(
                "step `{}`: input `{name}` references `{reference}`, but step `{}` has not run before it",
                this.step.id, reference.step
            ));
        };
        let Some(value) = outputs.get(&reference.output) else {
            return Err(format!(
                "step `{}`: input `{name}` references output `{}` of step `{}`, which has no such output",
                this.step.id, reference.output, reference.step
            ));
        };
        inputs.0.insert(name.clone(), value.clone());
    }
    Ok(inputs)
}

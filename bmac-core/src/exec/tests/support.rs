//! A scripted test provider that records every call, and a small plan builder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::{Event, SkipReason};
use crate::exec::{ExecError, Executor, RetryPolicy, RunReport};
use crate::plan::{Action, Plan, PlanNode, StateRef};
use crate::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, Provider, ProviderError,
    Providers,
};
use crate::state::{MemoryStore, Record, RecordKind, State, StateStore};
use crate::step::{Inputs, Kind, Outputs, Ref, Step, StepId};

/// What the provider does for one step.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// How long a call takes.
    pub delay: Duration,
    /// The first N apply attempts fail retryably.
    pub fail_retryable: u32,
    /// `retry_after` of those failures (and of failed observes).
    pub retry_after: Option<Duration>,
    /// Every apply fails permanently.
    pub fail_permanent: bool,
    /// Returns early with an error when the run's cancellation fires.
    pub honour_cancel: bool,
    /// Outputs of apply (default: `id = "<step>-id"`).
    pub outputs: Option<Outputs>,
    /// What observe reports (default: absent).
    pub observe: Option<Observed>,
    /// The provider's duration estimate.
    pub expected: Option<Duration>,
    /// Apply panics (a provider bug).
    pub panic: bool,
    /// What successive observe calls report before falling back to `observe` (a resource
    /// still being created: `Pending` a few times, then what it settled as).
    pub observe_seq: Vec<Observed>,
    /// The provider's maximum duration for the step's calls.
    pub max: Option<Duration>,
    /// The provider's poll interval for the step.
    pub poll: Option<Duration>,
    /// The concurrency group the provider puts the step in.
    pub group: Option<(&'static str, usize)>,
    /// Progress apply reports before it waits.
    pub progress: Vec<String>,
    /// What apply checkpoints before it waits (when it has not seen one already).
    pub checkpoint: Option<Value>,
    /// How long an observe call takes.
    pub observe_delay: Duration,
    /// The first N observe attempts fail retryably (throttled, with `retry_after`).
    pub fail_observe_retryable: u32,
}

/// Which provider method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Apply,
    Observe,
    Destroy,
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    pub step: String,
    pub inputs: Inputs,
    pub prior: Option<Prior>,
    pub attempt: u32,
    /// Global order of call starts and ends.
    pub start_seq: u64,
    pub end_seq: Option<u64>,
    /// When the call ended on the test clock (`None`: it never returned).
    pub ended: Option<Instant>,
    /// When it started, on the test clock.
    pub started: Instant,
    /// The checkpoint its context carried.
    pub checkpoint: Option<Value>,
}

/// Records calls, follows per-step scripts, tracks concurrency.
#[derive(Default)]
pub struct TestProvider {
    scripts: Mutex<HashMap<String, Script>>,
    calls: Mutex<Vec<Call>>,
    applies_seen: Mutex<HashMap<String, u32>>,
    observes_seen: Mutex<HashMap<String, u32>>,
    seq: AtomicU64,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

struct Running<'a>(&'a TestProvider);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestProvider {
    pub fn new() -> Arc<Self> {
        Arc::new(TestProvider::default())
    }

    pub fn delay(&self, step: &str, secs: u64) {
        self.edit(step, |s| s.delay = Duration::from_secs(secs));
    }

    pub fn edit(&self, step: &str, f: impl FnOnce(&mut Script)) {
        let mut scripts = self.scripts.lock().unwrap();
        f(scripts.entry(step.to_owned()).or_default());
    }

    fn get(&self, step: &str) -> Script {
        self.scripts
            .lock()
            .unwrap()
            .get(step)
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, op: Op) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }

    /// Step ids of apply calls, in start order.
    pub fn applied(&self) -> Vec<String> {
        self.calls_of(Op::Apply)
            .into_iter()
            .map(|c| c.step)
            .collect()
    }

    pub fn count(&self, op: Op, step: &str) -> usize {
        self.calls_of(op).iter().filter(|c| c.step == step).count()
    }

    /// The last call of `op` for `step`.
    pub fn last(&self, op: Op, step: &str) -> Call {
        self.calls_of(op)
            .into_iter()
            .rev()
            .find(|c| c.step == step)
            .unwrap_or_else(|| panic!("no {op:?} call for {step}"))
    }

    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    fn begin(
        &self,
        op: Op,
        step: &Step,
        inputs: &Inputs,
        prior: Option<&Prior>,
        ctx: &crate::provider::StepContext,
    ) -> (usize, Running<'_>) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let mut calls = self.calls.lock().unwrap();
        calls.push(Call {
            op,
            step: step.id.to_string(),
            inputs: inputs.clone(),
            prior: prior.cloned(),
            attempt: ctx.attempt,
            started: Instant::now(),
            checkpoint: ctx.last_checkpoint().cloned(),
            start_seq: self.seq.fetch_add(1, Ordering::SeqCst),
            end_seq: None,
            ended: None,
        });
        (calls.len() - 1, Running(self))
    }

    fn end(&self, call: usize) {
        let mut calls = self.calls.lock().unwrap();
        calls[call].end_seq = Some(self.seq.fetch_add(1, Ordering::SeqCst));
        calls[call].ended = Some(Instant::now());
    }

    /// Waits `delay` (cut short by `cancel` when the script honours it); false if cut short.
    async fn wait(
        &self,
        script: &Script,
        delay: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        if script.honour_cancel {
            tokio::select! {
                _ = cancel.cancelled() => false,
                _ = tokio::time::sleep(delay) => true,
            }
        } else {
            tokio::time::sleep(delay).await;
            true
        }
    }

    /// Counts one more call in `seen` for `step`; returns how many there were.
    fn seen(seen: &Mutex<HashMap<String, u32>>, step: &str) -> u32 {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(step.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// A throttling error, with the script's `retry_after`.
    fn throttled(script: &Script) -> ProviderError {
        let mut e = ProviderError::retryable("throttled");
        e.retry_after = script.retry_after;
        e
    }
}

#[async_trait]
impl Provider for TestProvider {
    fn name(&self) -> &str {
        "test"
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        self.get(step.id.as_str()).expected
    }

    fn max_duration(&self, step: &Step) -> Option<Duration> {
        self.get(step.id.as_str()).max
    }

    fn poll_interval(&self, step: &Step) -> Duration {
        self.get(step.id.as_str())
            .poll
            .unwrap_or(Duration::from_secs(5))
    }

    fn concurrency_group(&self, step: &Step) -> Option<crate::provider::ConcurrencyGroup> {
        let (name, limit) = self.get(step.id.as_str()).group?;
        Some(crate::provider::ConcurrencyGroup::new(name, limit))
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let id = req.step.id.as_str();
        let script = self.get(id);
        let (call, _running) = self.begin(Op::Apply, req.step, req.inputs, req.prior, req.ctx);
        for message in &script.progress {
            req.ctx.progress(message.clone());
        }
        if let (Some(data), None) = (&script.checkpoint, req.ctx.last_checkpoint()) {
            req.ctx.checkpoint(data.clone()).await?;
        }
        let finished = self.wait(&script, script.delay, &req.ctx.cancel).await;
        self.end(call);
        if !finished {
            return Err(ProviderError::permanent("interrupted by cancellation"));
        }
        let seen = TestProvider::seen(&self.applies_seen, id);
        if script.panic {
            panic!("provider bug in {id}");
        }
        if script.fail_permanent {
            return Err(ProviderError::permanent("permission denied"));
        }
        if seen <= script.fail_retryable {
            return Err(TestProvider::throttled(&script));
        }
        Ok(script
            .outputs
            .unwrap_or_else(|| Outputs::new().with("id", format!("{id}-id"))))
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let id = req.step.id.as_str();
        let script = self.get(id);
        let (call, _running) = self.begin(Op::Observe, req.step, req.inputs, req.prior, req.ctx);
        // No timer at all for an instant observe: it answers on its first poll.
        let finished = script.observe_delay.is_zero()
            || self
                .wait(&script, script.observe_delay, &req.ctx.cancel)
                .await;
        self.end(call);
        if !finished {
            return Err(ProviderError::permanent("interrupted by cancellation"));
        }
        if TestProvider::seen(&self.observes_seen, id) <= script.fail_observe_retryable {
            return Err(TestProvider::throttled(&script));
        }
        let mut scripts = self.scripts.lock().unwrap();
        let live = scripts.entry(req.step.id.to_string()).or_default();
        if !live.observe_seq.is_empty() {
            return Ok(live.observe_seq.remove(0));
        }
        Ok(script.observe.unwrap_or(Observed::Absent))
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let script = self.get(req.step.id.as_str());
        let (call, _running) =
            self.begin(Op::Destroy, req.step, req.inputs, Some(req.prior), req.ctx);
        let finished = self.wait(&script, script.delay, &req.ctx.cancel).await;
        self.end(call);
        if !finished {
            return Err(ProviderError::permanent("interrupted by cancellation"));
        }
        Ok(())
    }
}

pub fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

/// The config every test step has.
pub fn config(step: &str) -> Value {
    json!({ "name": step })
}

pub fn step(name: &str) -> Step {
    Step::new(id(name), Kind::new("test"), &config(name)).unwrap()
}

/// Builds sealed plans by hand.
#[derive(Clone)]
pub struct PlanBuilder {
    state: StateRef,
    nodes: Vec<PlanNode>,
    index: HashMap<String, u32>,
}

impl PlanBuilder {
    /// A plan against an empty state.
    pub fn new() -> Self {
        PlanBuilder {
            state: StateRef {
                lineage: String::new(),
                serial: 0,
            },
            nodes: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// A plan against `state`.
    pub fn against(state: &State) -> Self {
        PlanBuilder {
            state: StateRef {
                lineage: state.lineage.clone(),
                serial: state.serial,
            },
            nodes: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn index(&self, name: &str) -> u32 {
        *self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("{name} not added yet"))
    }

    /// Adds a node with `action`, depending on earlier nodes `deps`.
    pub fn add(&mut self, name: &str, action: Action, deps: &[&str]) -> &mut Self {
        let mut s = step(name);
        for d in deps {
            s = s.depends_on(id(d));
        }
        let deps = deps.iter().map(|d| self.index(d)).collect();
        self.index.insert(name.to_owned(), self.nodes.len() as u32);
        self.nodes.push(PlanNode {
            step: Arc::new(s),
            action,
            prior: None,
            in_doubt: false,
            deps,
        });
        self
    }

    pub fn create(&mut self, name: &str, deps: &[&str]) -> &mut Self {
        self.add(name, Action::Create, deps)
    }

    /// Input `input` of `name` takes output `output` of `from` (adding the edge).
    pub fn input(&mut self, name: &str, input: &str, from: &str, output: &str) -> &mut Self {
        let from_index = self.index(from);
        let node = self.node(name);
        node.step = Arc::new(
            (*node.step)
                .clone()
                .input(input, Ref::new(id(from), output)),
        );
        if !node.deps.contains(&from_index) {
            node.deps.push(from_index);
        }
        self
    }

    pub fn node(&mut self, name: &str) -> &mut PlanNode {
        let i = self.index(name) as usize;
        &mut self.nodes[i]
    }

    /// Gives `name` the prior and fingerprint `state` recorded for it.
    pub fn recorded(&mut self, name: &str, state: &State) -> &mut Self {
        let applied = state.applied(&id(name)).expect("applied in state").clone();
        let node = self.node(name);
        node.prior = Some(applied.prior());
        node.in_doubt = state.steps[&id(name)].in_doubt;
        self
    }

    pub fn build(&self) -> Plan {
        Plan::seal(self.state.clone(), self.nodes.clone())
    }
}

/// An in-place update the executor must fingerprint-check.
pub fn update() -> Action {
    Action::Update {
        fields: Vec::new(),
        inputs_may_change: true,
    }
}

/// An executor over `provider`, without jitter, seeded.
pub fn executor(provider: &Arc<TestProvider>) -> Executor {
    let provider: Arc<dyn Provider> = provider.clone();
    Executor::new(Providers::new().fallback(provider))
        .seed(7)
        .retry(RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        })
}

/// Runs `plan`, returning the result and every event sent.
pub async fn run(
    executor: Executor,
    plan: Plan,
    store: &dyn StateStore,
) -> (Result<RunReport, ExecError>, Vec<Event>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = executor.events(tx);
    let result = executor.run(plan, store).await;
    drop(executor);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    (result, events)
}

/// Runs and expects a report.
pub async fn run_ok(
    executor: Executor,
    plan: Plan,
    store: &MemoryStore,
) -> (RunReport, Vec<Event>) {
    let (result, events) = run(executor, plan, store).await;
    (result.expect("run failed to start"), events)
}

/// A multi-thread runtime of two workers, under whose `block_on` the CLI runs the executor.
pub fn cli_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A provider's panic in `step` failed that step alone: the error says it panicked, the
/// journal holds its intent and then the failure, state leaves it in doubt, `dependent` was
/// skipped because of it, and the run released its lock.
pub fn assert_panic_failed_only(
    report: &RunReport,
    store: &MemoryStore,
    step: &str,
    dependent: &str,
) {
    let failure = report.failure(step).expect("the step failed");
    assert!(
        failure.error.to_string().contains("panicked"),
        "{}",
        failure.error
    );
    let journal = journal_of(store, step);
    assert_eq!(journal[0], "intent:apply");
    assert!(journal[1].starts_with("failed:"), "{journal:?}");
    assert!(store.state().steps[&id(step)].in_doubt);
    assert_eq!(
        report.skip_reason(dependent),
        Some(&SkipReason::DependencyFailed {
            dependency: id(step)
        })
    );
    assert!(store.current_lock().is_none());
}

/// The kinds of records journaled for one step, as short names.
pub fn journal_of(store: &MemoryStore, step: &str) -> Vec<String> {
    store
        .records()
        .iter()
        .filter(|r: &&Record| r.id.as_str() == step)
        .map(|r| match &r.kind {
            RecordKind::Intent { op, .. } => format!("intent:{op:?}").to_lowercase(),
            RecordKind::Applied { .. } => "applied".to_owned(),
            RecordKind::Failed { error } => format!("failed:{error}"),
            RecordKind::Destroyed => "destroyed".to_owned(),
            RecordKind::Checkpoint { data } => format!("checkpoint:{data}"),
        })
        .collect()
}

/// The events about one step, as short names.
pub fn events_of(events: &[Event], step: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { id, .. } if id.as_str() == step => Some("started".to_owned()),
            Event::StepRetrying { id, .. } if id.as_str() == step => Some("retrying".to_owned()),
            Event::StepSucceeded { id, changed, .. } if id.as_str() == step => {
                Some(format!("succeeded(changed={changed})"))
            }
            Event::StepFailed { id, .. } if id.as_str() == step => Some("failed".to_owned()),
            Event::StepProgress { id, message, .. } if id.as_str() == step => {
                Some(format!("progress({message})"))
            }
            Event::StepSkipped { id, .. } if id.as_str() == step => Some("skipped".to_owned()),
            _ => None,
        })
        .collect()
}

/// Seconds elapsed on the (paused) clock since `start`.
pub fn secs_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

//! The contract between the engine and the things that build: the async [`Provider`] trait.
//!
//! A provider serves one or more step kinds; [`Providers`] routes each step to the provider
//! registered for its kind (with an optional fallback that serves every other kind). The
//! executor calls:
//! - [`Provider::apply`] to create or update a resource to the step's desired config, given the
//!   step's resolved inputs, returning its outputs. Apply must be idempotent: called for a
//!   resource that already exists in the desired shape, it converges rather than duplicates;
//! - [`Provider::observe`] to learn what really exists now — for drift detection, for steps a
//!   crash left *in doubt* (intent journaled, result not), and to re-read secrets that state
//!   keeps only as digests;
//! - [`Provider::destroy`] to remove what apply made.
//!
//! Errors are classified: [`ErrorClass::Retryable`] (throttling, 5xx, timeouts — the executor
//! retries them with backoff) or [`ErrorClass::Permanent`] (bad request, denied — it does not),
//! and carry the remote side's own error code when there is one (`AccessDeniedException`,
//! `RESOURCE_EXHAUSTED`), which the executor keeps through the report, the events and the JSON
//! output. A provider observes the run's cancellation through [`StepContext::cancel`] and may
//! stop early; the executor gives it a grace period before dropping the call.
//!
//! # Long operations
//! Real clouds take minutes to create a control plane and report a status the whole time. The
//! contract has room for that:
//! - `observe` may answer [`Observed::Pending`]: the resource exists but is still being
//!   created, updated or deleted. A step left *in doubt* by a crash that is observed pending is
//!   waited for — observed again every [`Provider::poll_interval`], with progress events —
//!   never adopted half made and never created a second time.
//! - A running call reports progress with [`StepContext::progress`] (a timestamped public
//!   event) and may [`StepContext::checkpoint`] what it needs to pick the operation up again
//!   (an operation id): the checkpoint is journaled durably as its own record and handed back,
//!   through [`StepContext::last_checkpoint`], to the step's next call — a retry in the same
//!   run, or `apply`/`observe` after a crash — so the resumed run polls the *same* operation.
//! - A kind declares how long its calls may take ([`Provider::max_duration`], the per-attempt
//!   timeout; the executor's default otherwise). A create that timed out is in doubt: before
//!   it is retried the step is observed, and adopted or waited for if it exists.
//! - [`Provider::concurrency_group`] puts steps in a named group with its own limit (one update
//!   at a time per cluster, a per-API request budget), on top of the run's parallelism cap.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::exec::StepLink;
use crate::state::AppliedStep;
use crate::step::{Fingerprint, Inputs, Outputs, Step};

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: throttling, server errors, timeouts. Retried with backoff.
    Retryable,
    /// Will fail again: invalid request, permission denied, quota exhausted.
    Permanent,
}

/// An error from a provider call.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ProviderError {
    /// Retryable or permanent.
    pub class: ErrorClass,
    /// The remote side's error code, when it has one (`AccessDeniedException`,
    /// `RESOURCE_EXHAUSTED`, `Conflict`); `bmac::timeout` for an attempt the executor timed out.
    pub code: Option<String>,
    /// What went wrong, for people. Must not contain secrets.
    pub message: String,
    /// A delay the remote side asked for (e.g. `Retry-After`), honoured over backoff when longer.
    pub retry_after: Option<Duration>,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// A transient error.
    pub fn retryable(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::Retryable,
            code: None,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// An error that will not go away by retrying.
    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError {
            class: ErrorClass::Permanent,
            code: None,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Records the remote side's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Records the delay the remote side asked for.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Whether the executor should retry.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

/// What a provider call knows about the run it is part of, and how it talks back to it.
///
/// Inside a run, [`progress`](StepContext::progress) and
/// [`checkpoint`](StepContext::checkpoint) reach the executor; a context made with
/// [`StepContext::new`] (a test calling a provider directly) is connected to nothing, so both
/// are accepted and go nowhere.
#[derive(Clone)]
pub struct StepContext {
    /// Cancelled when the run is asked to stop; a long call may return early.
    pub cancel: CancellationToken,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// The step's last checkpoint, from this run or one before it.
    resume: Option<Arc<Value>>,
    /// The run this call belongs to, if any.
    link: Option<StepLink>,
}

impl Default for StepContext {
    fn default() -> Self {
        StepContext::new(CancellationToken::new(), 1)
    }
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("attempt", &self.attempt)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("checkpoint", &self.resume)
            .field("in_run", &self.link.is_some())
            .finish()
    }
}

impl StepContext {
    /// A context outside any run: attempt `attempt`, cancelled through `cancel`.
    pub fn new(cancel: CancellationToken, attempt: u32) -> Self {
        StepContext {
            cancel,
            attempt,
            resume: None,
            link: None,
        }
    }

    /// The same context, resuming from `checkpoint` (what a crashed run checkpointed).
    pub fn with_checkpoint(mut self, checkpoint: Value) -> Self {
        self.resume = Some(Arc::new(checkpoint));
        self
    }

    /// The same context, resuming from `checkpoint` when there is one (shared, not copied).
    pub(crate) fn resuming(mut self, checkpoint: Option<&Arc<Value>>) -> Self {
        if let Some(data) = checkpoint {
            self.resume = Some(Arc::clone(data));
        }
        self
    }

    /// A context of a call inside a run.
    pub(crate) fn linked(
        cancel: CancellationToken,
        attempt: u32,
        resume: Option<Arc<Value>>,
        link: StepLink,
    ) -> Self {
        StepContext {
            cancel,
            attempt,
            resume,
            link: Some(link),
        }
    }

    /// What this step had last checkpointed when this call started — in an earlier attempt
    /// of this run, or in a run that was interrupted — until the step is applied or
    /// destroyed. A provider that finds an operation id here polls that operation instead of
    /// starting a new one.
    pub fn last_checkpoint(&self) -> Option<&Value> {
        self.resume.as_deref()
    }

    /// Reports progress of a long call (`"cluster CREATING, 6m12s"`): a timestamped public
    /// event. Must not contain secrets.
    pub fn progress(&self, message: impl Into<String>) {
        if let Some(link) = &self.link {
            link.progress(message.into());
        }
    }

    /// Records what the call needs to resume its operation after a crash (an operation id),
    /// durably, as its own journal record, before returning; the step's later calls (a retry,
    /// or the next run's `apply` or `observe`) find it in
    /// [`last_checkpoint`](StepContext::last_checkpoint). Checkpoints are journaled in clear:
    /// never put a secret in one. Fails (permanently) only if the journal cannot be written —
    /// then the call should stop, since nothing after it would be recorded.
    pub async fn checkpoint(&self, data: Value) -> Result<(), ProviderError> {
        match &self.link {
            Some(link) => link
                .checkpoint(Arc::new(data))
                .await
                .map_err(|_| ProviderError::permanent("the checkpoint could not be journaled")),
            None => Ok(()),
        }
    }
}

/// A named group of steps that may run only so many at a time (see
/// [`Provider::concurrency_group`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcurrencyGroup {
    /// The group's name; steps naming the same group share its limit (`eks:prod/updates`).
    pub name: String,
    /// At most this many of its steps run at once (at least 1).
    pub limit: usize,
}

impl ConcurrencyGroup {
    /// A group `name` of at most `limit` running steps.
    pub fn new(name: impl Into<String>, limit: usize) -> Self {
        ConcurrencyGroup {
            name: name.into(),
            limit: limit.max(1),
        }
    }
}

/// What the last successful apply of a step left behind, as the journal recorded it: the
/// config that was applied, the outputs it produced (secrets redacted when loaded from
/// state) and, when known, that apply's [`Fingerprint`].
///
/// A prior is a shared, read-only handle: cloning it never copies the config or the outputs.
/// A plan made against a state points every node at that state's own record of the step
/// ([`Prior::recorded`]), so planning a large state copies nothing. One the executor learns
/// from `observe`, or one read back from a plan file, owns its parts ([`Prior::new`]). Either
/// way it serialises as `{"config": …, "outputs": …, "fingerprint": …}` (no fingerprint when
/// none is known).
#[derive(Clone)]
pub struct Prior(PriorRepr);

#[derive(Clone)]
enum PriorRepr {
    /// Shared with the state the plan was made against.
    Recorded(Arc<AppliedStep>),
    /// Owned parts.
    Owned(Arc<PriorParts>),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PriorParts {
    config: Value,
    outputs: Outputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
}

/// The serialised form, borrowing from either representation.
#[derive(serde::Serialize)]
struct PriorView<'a> {
    config: &'a Value,
    outputs: &'a Outputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
}

impl Prior {
    /// A prior from its parts (a step's [`Config`](crate::step::Config) converts by move).
    pub fn new(config: impl Into<Value>, outputs: Outputs) -> Self {
        Prior::owned(config.into(), outputs, None)
    }

    /// A prior owning its parts, with the fingerprint of the apply that left them if known.
    pub(crate) fn owned(config: Value, outputs: Outputs, fingerprint: Option<Fingerprint>) -> Self {
        Prior(PriorRepr::Owned(Arc::new(PriorParts {
            config,
            outputs,
            fingerprint,
        })))
    }

    /// The prior a state records for a step, shared with that state (nothing is copied).
    pub fn recorded(applied: Arc<AppliedStep>) -> Self {
        Prior(PriorRepr::Recorded(applied))
    }

    /// The state's own record, when this prior shares it.
    pub(crate) fn record(&self) -> Option<&Arc<AppliedStep>> {
        match &self.0 {
            PriorRepr::Recorded(a) => Some(a),
            PriorRepr::Owned(_) => None,
        }
    }

    /// The config that was applied.
    pub fn config(&self) -> &Value {
        match &self.0 {
            PriorRepr::Recorded(a) => &a.step.config,
            PriorRepr::Owned(p) => &p.config,
        }
    }

    /// The outputs it produced (secrets redacted when loaded from state).
    pub fn outputs(&self) -> &Outputs {
        match &self.0 {
            PriorRepr::Recorded(a) => &a.outputs,
            PriorRepr::Owned(p) => &p.outputs,
        }
    }

    /// The fingerprint of the apply that left it: known for a prior from state (or from a
    /// plan made against one), not for what `observe` found.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match &self.0 {
            PriorRepr::Recorded(a) => Some(a.fingerprint),
            PriorRepr::Owned(p) => p.fingerprint,
        }
    }
}

impl PartialEq for Prior {
    fn eq(&self, other: &Self) -> bool {
        self.config() == other.config()
            && self.outputs() == other.outputs()
            && self.fingerprint() == other.fingerprint()
    }
}

impl fmt::Debug for Prior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prior")
            .field("config", self.config())
            .field("outputs", self.outputs())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl serde::Serialize for Prior {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PriorView {
            config: self.config(),
            outputs: self.outputs(),
            fingerprint: self.fingerprint(),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Prior {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Prior(PriorRepr::Owned(Arc::new(PriorParts::deserialize(
            d,
        )?))))
    }
}

/// A request to create or update a resource.
#[derive(Debug)]
pub struct ApplyRequest<'a> {
    /// The step, with its desired config.
    pub step: &'a Step,
    /// Its inputs, resolved from upstream outputs.
    pub inputs: &'a Inputs,
    /// What a previous apply left, when there was one: `None` means create.
    pub prior: Option<&'a Prior>,
    /// Run context.
    pub ctx: &'a StepContext,
}

/// A request to look at what exists.
#[derive(Debug)]
pub struct ObserveRequest<'a> {
    /// The step.
    pub step: &'a Step,
    /// Its inputs, resolved (secrets may be missing their values when not yet re-read).
    pub inputs: &'a Inputs,
    /// What the journal last recorded for it, if anything.
    pub prior: Option<&'a Prior>,
    /// Run context.
    pub ctx: &'a StepContext,
}

/// A request to remove a resource.
#[derive(Debug)]
pub struct DestroyRequest<'a> {
    /// The step as last applied (from state when the step left the spec).
    pub step: &'a Step,
    /// Its inputs, resolved.
    pub inputs: &'a Inputs,
    /// What the last apply recorded.
    pub prior: &'a Prior,
    /// Run context.
    pub ctx: &'a StepContext,
}

/// What `observe` found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observed {
    /// Nothing exists for this step.
    Absent,
    /// The resource exists but is still being created, updated or deleted; observing it again
    /// later will tell. Never adopted as it is.
    Pending {
        /// The provider's own status text (`CREATING`, `PROVISIONING`, `Updating`).
        status: String,
    },
    /// The resource exists.
    Present {
        /// Its actual configuration, in the same shape as the step's config. Fields the
        /// provider cannot see or that other managers own are left out; a managed value that
        /// was removed (a label deleted by hand) is an explicit `null`.
        config: Value,
        /// Its current outputs, secrets included.
        outputs: Outputs,
    },
}

/// A backend that builds steps of some kinds.
#[async_trait]
pub trait Provider: Send + Sync {
    /// A short name for messages (`sim`, `kube`, `aws`).
    fn name(&self) -> &str;

    /// How long applying this step usually takes, if the provider knows. The executor orders
    /// ready steps by the longest remaining path weighted by these estimates (1 s when `None`).
    fn expected_duration(&self, _step: &Step) -> Option<Duration> {
        None
    }

    /// The longest one call for this step may take before the executor gives up on the
    /// attempt (a cluster is not a label); `None` for the executor's default
    /// ([`Executor::step_timeout`](crate::Executor::step_timeout)). A timed-out create is in
    /// doubt, and is observed before it is retried.
    fn max_duration(&self, _step: &Step) -> Option<Duration> {
        None
    }

    /// How often a resource observed [`Observed::Pending`] is observed again (default 5 s);
    /// waits grow from it to four times it.
    fn poll_interval(&self, _step: &Step) -> Duration {
        Duration::from_secs(5)
    }

    /// The group this step's calls count against, on top of the run's parallelism cap
    /// (`None`: only the cap).
    fn concurrency_group(&self, _step: &Step) -> Option<ConcurrencyGroup> {
        None
    }

    /// Creates or updates the resource to the desired config; returns its outputs.
    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError>;

    /// Reports what exists now.
    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError>;

    /// Removes the resource. Removing something already gone is success.
    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError>;
}

/// Routes steps to providers by kind.
#[derive(Clone, Default)]
pub struct Providers {
    by_kind: HashMap<String, Arc<dyn Provider>>,
    fallback: Option<Arc<dyn Provider>>,
}

impl Providers {
    /// No providers.
    pub fn new() -> Self {
        Providers::default()
    }

    /// Serves the given kinds with `provider` (later routes override earlier ones).
    pub fn route<I, S>(mut self, kinds: I, provider: Arc<dyn Provider>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for kind in kinds {
            self.by_kind.insert(kind.into(), Arc::clone(&provider));
        }
        self
    }

    /// Serves every kind not routed explicitly.
    pub fn fallback(mut self, provider: Arc<dyn Provider>) -> Self {
        self.fallback = Some(provider);
        self
    }

    /// The provider for a kind.
    pub fn for_kind(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.by_kind.get(kind).or(self.fallback.as_ref())
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self
            .by_kind
            .iter()
            .map(|(k, p)| format!("{k}→{}", p.name()))
            .collect();
        kinds.sort();
        f.debug_struct("Providers")
            .field("routes", &kinds)
            .field("fallback", &self.fallback.as_ref().map(|p| p.name()))
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_prior_reads_and_serialises_the_same_shared_or_owned() {
        let step = Step::new(
            crate::step::StepId::new("pool").unwrap(),
            crate::step::Kind::new("node_pool"),
            &serde_json::json!({"machine": "m5"}),
        )
        .unwrap();
        let outputs = Outputs::new().with("id", "pool-1");
        let applied = Arc::new(AppliedStep {
            step: Arc::new(step.clone()),
            fingerprint: step.config_fingerprint(),
            outputs: outputs.clone(),
        });
        let shared = Prior::recorded(Arc::clone(&applied));
        let owned = applied.prior();
        assert_eq!(shared.config(), step.config.value());
        assert_eq!(shared.outputs(), &outputs);
        assert_eq!(shared.fingerprint(), Some(applied.fingerprint));
        assert_eq!(shared, owned);
        // Sharing copies nothing: the prior is the state's record.
        assert!(std::ptr::eq(shared.config(), applied.step.config.value()));
        let json = serde_json::to_value(&shared).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "config": {"machine": "m5"},
                "outputs": {"id": {"value": "pool-1"}},
                "fingerprint": applied.fingerprint,
            })
        );
        assert_eq!(json, serde_json::to_value(&owned).unwrap());
        let back: Prior = serde_json::from_value(json).unwrap();
        assert_eq!(back, shared);
        // What `observe` found has no fingerprint: it is not the same prior.
        let observed = Prior::new(step.config.value().clone(), outputs.clone());
        assert_eq!(observed.fingerprint(), None);
        assert_ne!(observed, shared);
        let json = serde_json::to_value(&observed).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"config": {"machine": "m5"}, "outputs": {"id": {"value": "pool-1"}}})
        );
        let back: Prior = serde_json::from_value(json).unwrap();
        assert_eq!(back, observed);
        assert!(serde_json::from_value::<Prior>(serde_json::json!({"config": 1})).is_err());
    }

    /// A provider called `.0` that answers every call at once, with nothing.
    pub(crate) struct Named(pub(crate) &'static str);

    #[async_trait]
    impl Provider for Named {
        fn name(&self) -> &str {
            self.0
        }
        async fn apply(&self, _: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
            Ok(Outputs::new())
        }
        async fn observe(&self, _: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
            Ok(Observed::Absent)
        }
        async fn destroy(&self, _: DestroyRequest<'_>) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    #[test]
    fn routes_by_kind_then_fallback() {
        let p = Providers::new()
            .route(["cluster", "node_pool"], Arc::new(Named("cloud")))
            .route(["namespace"], Arc::new(Named("kube")));
        assert_eq!(p.for_kind("cluster").unwrap().name(), "cloud");
        assert_eq!(p.for_kind("namespace").unwrap().name(), "kube");
        assert!(p.for_kind("other").is_none());
        let p = p.fallback(Arc::new(Named("sim")));
        assert_eq!(p.for_kind("other").unwrap().name(), "sim");
        assert_eq!(p.for_kind("node_pool").unwrap().name(), "cloud");
    }

    #[test]
    fn error_classes() {
        let e = ProviderError::retryable("throttled").with_retry_after(Duration::from_secs(2));
        assert!(e.is_retryable());
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert!(!ProviderError::permanent("denied").is_retryable());
    }
}

//! Running plans: [`Stack::apply`], [`Stack::apply_plan`], [`Stack::destroy`], and the
//! [`RunStream`] each of them is made of.
//!
//! Shape: a run is the executor's `run` in its own Tokio task, sending its public events down
//! an unbounded channel; the [`RunStream`] is the receiving end, and it ends when the executor
//! is dropped, i.e. right after the run ends. So a slow consumer (a stream read rarely, a slow
//! [`ApplyOptions::on_event`] callback, which is called as events pass through the stream)
//! never holds up scheduling, and the callers that take a callback simply read the stream to
//! its end and then take the report. Every run's executor is built in one place,
//! `Stack::executor`, from the stack's and the run's options.
//!
//! A run that plans (apply, destroy) sends [`Event::PlanReady`] first; [`Stack::apply_plan`]
//! does not, since its caller holds the plan already.
//!
//! Cancellation: each run watches a child of the run's (else the stack's) token, so cancelling
//! one run never cancels the next. Dropping a [`RunStream`] before its run ended cancels the
//! run as Ctrl-C does — no new steps start, running calls get the grace period — and the run
//! winds down in its task, releasing the state lock, as long as the runtime lives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bmac_core::event::Event;
use bmac_core::exec::{ExecError, FailurePolicy, RunReport};
use bmac_core::{Executor, Plan};
use futures::Stream;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::options::{ApplyOptions, EventSink};
use crate::stack::Stack;

impl Stack {
    /// Builds or updates what the spec says: [`preflight`](Stack::preflight), one
    /// [`plan`](Stack::plan) with the options' selection, then the run. Events go to
    /// [`ApplyOptions::on_event`]; step failures are in the report, not an `Err`.
    pub async fn apply(&self, options: ApplyOptions) -> Result<RunReport, Error> {
        self.apply_stream(options).await?.finish().await
    }

    /// [`apply`](Stack::apply), with the run's events as a stream: the preflight and the plan
    /// happen before this returns (their errors are its errors); the stream ends when the run
    /// ends, and [`RunStream::finish`] then gives the report.
    pub async fn apply_stream(&self, options: ApplyOptions) -> Result<RunStream, Error> {
        self.preflight(&options)?;
        let plan = self.plan(&options.plan).await?;
        self.start(plan, options, true)
    }

    /// Runs a plan made earlier ([`Stack::plan`], [`Stack::saved_plan`],
    /// [`Stack::plan_destroy`]) as it is; the options' selection is not used. A plan made
    /// against a state that has moved since is refused.
    pub async fn apply_plan(&self, plan: Plan, options: ApplyOptions) -> Result<RunReport, Error> {
        self.apply_plan_stream(plan, options)?.finish().await
    }

    /// [`apply_plan`](Stack::apply_plan), with the run's events as a stream. Must be called
    /// inside a Tokio runtime (the run gets its own task).
    pub fn apply_plan_stream(&self, plan: Plan, options: ApplyOptions) -> Result<RunStream, Error> {
        self.start(plan, options, false)
    }

    /// Destroys what is in state, in reverse dependency order (with targets in the options:
    /// the targets and everything that depends on them); see [`Stack::plan_destroy`].
    pub async fn destroy(&self, options: ApplyOptions) -> Result<RunReport, Error> {
        let plan = self.plan_destroy(&options.plan).await?;
        self.start(plan, options, true)?.finish().await
    }

    /// Starts the run of `plan` in its own task (`announce`: send `PlanReady` first).
    fn start(&self, plan: Plan, options: ApplyOptions, announce: bool) -> Result<RunStream, Error> {
        let store = Arc::clone(self.store()?);
        let cancel = options
            .cancel
            .as_ref()
            .unwrap_or(&self.options.cancel)
            .child_token();
        let (events, received) = mpsc::unbounded_channel();
        let executor = self
            .executor(&options, cancel.clone())?
            .events(events.clone());
        if announce {
            let _ = events.send(Event::PlanReady {
                summary: plan.summary(),
            });
        }
        drop(events);
        let run = tokio::spawn(async move {
            let report = executor.run(plan, store.as_ref()).await;
            // The executor holds the last sender: dropping it ends the stream.
            drop(executor);
            report
        });
        Ok(RunStream {
            events: received,
            run: Some(run),
            cancel,
            on_event: options.on_event,
        })
    }

    /// The executor for one run: the stack's providers, the run's parallelism (else the
    /// stack's), failure policy and cancellation, the stack's timeout and seed.
    fn executor(
        &self,
        options: &ApplyOptions,
        cancel: CancellationToken,
    ) -> Result<Executor, Error> {
        let parallelism = options
            .parallelism
            .or(self.options.parallelism)
            .unwrap_or(Executor::DEFAULT_PARALLELISM);
        let failure_policy = if options.keep_going {
            FailurePolicy::KeepGoing
        } else {
            FailurePolicy::FailFast
        };
        Ok(self
            .configured(Executor::new(self.providers()?.clone()))
            .parallelism(parallelism)
            .failure_policy(failure_policy)
            .cancel_token(cancel))
    }

    /// The executor refresh and drift observe through: the stack's providers, parallelism,
    /// timeout, seed and cancellation.
    pub(crate) fn observer(&self) -> Result<Executor, Error> {
        let parallelism = self
            .options
            .parallelism
            .unwrap_or(Executor::DEFAULT_PARALLELISM);
        Ok(self
            .configured(Executor::new(self.providers()?.clone()))
            .parallelism(parallelism)
            .cancel_token(self.options.cancel.clone()))
    }

    /// `executor` with the stack's step timeout and seed, where set.
    fn configured(&self, mut executor: Executor) -> Executor {
        if let Some(timeout) = self.options.step_timeout {
            executor = executor.step_timeout(timeout);
        }
        if let Some(seed) = self.options.seed {
            executor = executor.seed(seed);
        }
        executor
    }
}

/// The events of one run, as a [`Stream`] that ends when the run ends; then
/// [`finish`](RunStream::finish) gives the run's report. Dropping it early cancels the run
/// (see the module docs).
pub struct RunStream {
    events: UnboundedReceiver<Event>,
    run: Option<JoinHandle<Result<RunReport, ExecError>>>,
    cancel: CancellationToken,
    on_event: Option<EventSink>,
}

impl std::fmt::Debug for RunStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStream")
            .field(
                "finished",
                &self.run.as_ref().is_none_or(|r| r.is_finished()),
            )
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl RunStream {
    /// The next event, or `None` once the run has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }

    /// Asks the run to stop: no new steps start, running calls are asked to stop and get the
    /// grace period. The stream still ends when the run does.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Reads the rest of the events (through the `on_event` callback, if one was given) and
    /// returns the run's report. `Err` means the run could not start (a held lock, a stale
    /// plan) or its journal failed; step failures are in the report.
    pub async fn finish(mut self) -> Result<RunReport, Error> {
        while self.next_event().await.is_some() {}
        let Some(run) = self.run.take() else {
            unreachable!("a run stream is finished once, by value");
        };
        match run.await {
            Ok(report) => Ok(report?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the run's task did not finish: {e}"),
        }
    }
}

impl Stream for RunStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        let polled = this.events.poll_recv(cx);
        if let (Poll::Ready(Some(event)), Some(callback)) = (&polled, this.on_event.as_mut()) {
            callback(event);
        }
        polled
    }
}

impl Drop for RunStream {
    fn drop(&mut self) {
        if self.run.as_ref().is_some_and(|r| !r.is_finished()) {
            self.cancel.cancel();
        }
    }
}

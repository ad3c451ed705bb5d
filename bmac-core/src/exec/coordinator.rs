//! The coordinator: the one loop that owns a run's state.
//!
//! It owns the dependency counters, the ready queue, the running count, the status of every
//! node, the [journal](super::journal) and the report; nothing else mutates them. A step's
//! work (one future per *started* step, never per node up front) runs in the coordinator's
//! own task until it has to wait, then on a spawned task ([`running`](super::running)); it
//! only returns or sends [`Message`]s. Each turn of the loop ([`wake`]) it
//!
//! 1. starts ready nodes, highest priority first, until the parallelism cap is reached —
//!    planned no-ops complete right here (no task, no journal record, no event) unless a
//!    changing dependent needs one of their redacted secrets, in which case they are observed;
//! 2. waits — control (the grace period; cancellation is checked first every turn) before
//!    work — for newly started steps' first poll, the journal's append, and tasks' messages,
//!    taking everything that is ready at once before looping.
//!
//! Finishing a node decrements its dependents' counters; a counter reaching zero makes the
//! dependent ready. Nothing is rescanned, so scheduling costs O(1) amortised per edge plus a
//! heap operation per node.
//!
//! Starting a changing node usually means journaling its intent first (see `start.rs`): the
//! coordinator queues the intent, marks the node `Journaling` (it counts against the cap from
//! then on) and launches its work when the append holding the intent is durable. Intents of
//! everything started in one turn — and the results of everything that finished — share one
//! append. A step's result records are queued before its dependents are released, so they are
//! written first.
//!
//! Failures: under fail-fast the first failure stops new starts (`Cancelling{StepFailed}`),
//! running steps finish, the rest are skipped. Under keep-going only the transitive
//! dependents of the failed node are skipped. A journal failure always stops new starts.
//!
//! Cancellation: no new starts; unstarted nodes are skipped; running steps see their
//! `StepContext::cancel` fire and get the grace period. When it runs out they are aborted, and
//! each gets a `Failed` journal record ("abandoned: run cancelled") so the next run treats it
//! as in doubt and observes before acting.

mod wake;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::event::{CancelReason, Counts, Event, EventSender, Outcome, SkipReason};
use crate::plan::Action;
use crate::state::{Record, RecordKind, StateError};
use crate::step::Outputs;

use super::groups::Groups;
use super::journal::{Journal, Settled, Waiter};
use super::report::{RunReport, StepError, StepFailure, StepSkip};
use super::running::RunningSteps;
use super::shared::{prior_outputs, Finished, Message, Shared, StepResult, TaskMode};
use super::start::{self, Start};
use super::step_task::step_future;
use super::topology::{Dependents, ReadyQueue, Topology};
use super::{FailurePolicy, SchedulingOrder};

/// The journal message of a step abandoned after the grace period.
const ABANDONED: &str = "abandoned: run cancelled";

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Some dependency has not finished.
    Waiting,
    /// In the ready queue.
    Ready,
    /// Its intent is queued in the journal; its work starts once that is durable.
    Journaling,
    /// Its work is running.
    Running,
    /// Finished successfully; its outputs are in the shared slot.
    Done,
    /// Failed.
    Failed,
    /// Will never run.
    Skipped,
}

/// The run's settings the coordinator needs.
pub(crate) struct Settings<'a> {
    pub(crate) parallelism: usize,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) order: SchedulingOrder,
    pub(crate) grace: Duration,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) events: Option<&'a EventSender>,
}

/// The owner of a run's state. See the module docs.
pub(crate) struct Coordinator<'a> {
    shared: Arc<Shared>,
    settings: Settings<'a>,
    dependents: Dependents,
    pending: Vec<u32>,
    priority: Vec<u64>,
    status: Vec<Status>,
    ready: ReadyQueue,
    /// Concurrency groups: their limits, and the ready nodes parked until a slot frees.
    groups: Groups,
    /// The run's journal; the coordinator is its only writer.
    journal: Journal<'a>,
    /// Started steps' work.
    steps: RunningSteps,
    /// Work that finished when first polled, waiting to be handled.
    done: Vec<Finished>,
    /// Emptied result-record buffers of finished steps, handed to the next ones started (a
    /// fresh one would be an allocation per step).
    buffers: Vec<Vec<Record>>,
    /// Nodes journaling or running: what the parallelism cap limits.
    running: usize,
    /// No new steps start (fail-fast, journal failure or cancellation).
    stopped: bool,
    /// Cancellation was requested.
    cancelling: bool,
    /// The grace period ran out; running work was abandoned.
    abandoning: bool,
    counts: Counts,
    failures: Vec<StepFailure>,
    skipped: Vec<StepSkip>,
    /// Scratch stack for walking dependents.
    stack: Vec<u32>,
    started: Instant,
}

impl<'a> Coordinator<'a> {
    /// A coordinator for the plan in `shared`, journaling to `journal`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        topology: Topology,
        settings: Settings<'a>,
        journal: Journal<'a>,
    ) -> Self {
        let n = shared.plan.len();
        Coordinator {
            groups: Groups::build(
                shared.plan.nodes(),
                &shared.providers,
                settings.order,
                |node| node.action != Action::NoOp,
            ),
            steps: RunningSteps::new(n, shared.messages.clone()),
            journal,
            done: Vec::new(),
            buffers: Vec::new(),
            ready: ReadyQueue::new(settings.order, n.min(1024)),
            shared,
            settings,
            dependents: topology.dependents,
            pending: topology.pending,
            priority: topology.priority,
            status: vec![Status::Waiting; n],
            running: 0,
            stopped: false,
            cancelling: false,
            abandoning: false,
            counts: Counts::default(),
            failures: Vec::new(),
            skipped: Vec::new(),
            stack: Vec::new(),
            started: Instant::now(),
        }
    }

    fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(events) = self.settings.events {
            let _ = events.send(event());
        }
    }

    /// Starts ready nodes until the cap is reached or the queue is empty.
    fn start_ready(&mut self) {
        let shared = Arc::clone(&self.shared);
        let nodes = shared.plan.nodes();
        while !self.stopped {
            let Some(i) = self.ready.pop() else { break };
            if self.status[i as usize] != Status::Ready {
                continue;
            }
            let node = &nodes[i as usize];
            if node.action == Action::NoOp {
                self.counts.unchanged += 1;
                self.complete(i, prior_outputs(node));
                continue;
            }
            if self.running >= self.settings.parallelism {
                self.ready.unpop(i, self.priority[i as usize]);
                break;
            }
            if !self.groups.admit(i, self.priority[i as usize]) {
                // Its group is full: parked until one of the group stops running.
                continue;
            }
            match start::decide(&shared, i) {
                Start::Complete(outputs) => {
                    self.counts.unchanged += 1;
                    self.complete(i, outputs);
                }
                Start::Unchanged(outputs) => {
                    self.emit_started(i);
                    self.counts.unchanged += 1;
                    self.emit(|| Event::StepSucceeded {
                        id: node.step.id.clone(),
                        action: node.action.clone(),
                        changed: false,
                        duration: Duration::ZERO,
                        outputs: outputs.redacted(),
                    });
                    self.complete(i, outputs);
                }
                Start::Fail(error) => {
                    self.emit_started(i);
                    self.fail(i, error, Duration::ZERO);
                }
                Start::Journal(intent, mode) => {
                    self.status[i as usize] = Status::Journaling;
                    self.running += 1;
                    self.groups.started(i);
                    let intent = Record {
                        id: node.step.id.clone(),
                        kind: intent,
                    };
                    self.journal.queue_waited([intent], Waiter::Start(i, mode));
                }
                Start::Spawn(mode) => {
                    self.running += 1;
                    self.groups.started(i);
                    self.launch(i, mode);
                }
            }
        }
    }

    /// Launches node `i`'s work (already counted in `running`).
    fn launch(&mut self, i: u32, mode: TaskMode) {
        self.emit_started(i);
        self.status[i as usize] = Status::Running;
        let buffer = self.buffers.pop().unwrap_or_default();
        let work = step_future(Arc::clone(&self.shared), i, mode, buffer);
        self.steps.launch(i, work);
    }

    fn emit_started(&self, i: u32) {
        self.emit(|| {
            let node = &self.shared.plan.nodes()[i as usize];
            Event::StepStarted {
                id: node.step.id.clone(),
                kind: node.step.kind.name().to_owned(),
                action: node.action.clone(),
            }
        });
    }

    /// An append finished: starts the steps whose intents it held, or fails them if it was
    /// refused, and answers the tasks that waited for it.
    fn settled(&mut self, settled: Settled) {
        let durable = settled.durable;
        for waiter in settled.waiters {
            match waiter {
                // A node skipped meanwhile (cancellation, fail-fast) is no longer counted.
                Waiter::Start(i, _) if self.status[i as usize] != Status::Journaling => {}
                Waiter::Start(i, mode) if durable => self.launch(i, mode),
                Waiter::Start(i, _) => {
                    self.release(i);
                    self.emit_started(i);
                    self.journal_down(i, Duration::ZERO);
                }
                Waiter::Task(ack) => {
                    let _ = ack.send(if durable {
                        Ok(())
                    } else {
                        Err(super::journal::JournalDown)
                    });
                }
            }
        }
    }

    /// Node `i` no longer journals or runs: frees its place under the cap and in its group
    /// (where a parked node may take it).
    fn release(&mut self, i: u32) {
        self.running -= 1;
        if let Some(next) = self.groups.release(i) {
            if self.status[next as usize] == Status::Ready {
                self.ready.push(next, self.priority[next as usize]);
            }
        }
    }

    fn journal_down(&mut self, i: u32, duration: Duration) {
        let error = StepError::engine("the state journal could not be written");
        self.fail(i, error, duration);
        self.stop_starting();
    }

    fn make_ready(&mut self, i: u32) {
        self.status[i as usize] = Status::Ready;
        self.ready.push(i, self.priority[i as usize]);
    }

    /// Records a node's success and releases its dependents.
    fn complete(&mut self, i: u32, outputs: Outputs) {
        // A slot is written once: a node completes once.
        let _ = self.shared.outputs[i as usize].set(outputs);
        self.status[i as usize] = Status::Done;
        for &d in self.dependents.of(i) {
            let left = &mut self.pending[d as usize];
            *left -= 1;
            if *left == 0 && self.status[d as usize] == Status::Waiting {
                self.status[d as usize] = Status::Ready;
                self.ready.push(d, self.priority[d as usize]);
            }
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Retrying {
                node,
                attempt,
                delay,
                error,
            } => self.emit(|| Event::StepRetrying {
                id: self.shared.plan.nodes()[node as usize].step.id.clone(),
                attempt,
                delay,
                error,
            }),
            Message::Progress { node, message, at } => self.emit(|| Event::StepProgress {
                id: self.shared.plan.nodes()[node as usize].step.id.clone(),
                message,
                at: crate::state::rfc3339(at),
            }),
            Message::Finished(finished) => self.step_finished(finished),
            Message::Journal { records, ack } => {
                self.journal.queue_waited(records, Waiter::Task(ack));
            }
            Message::Vanished { node } => {
                let duration = self.steps.settle(node);
                self.release(node);
                let error = StepError::engine(if self.abandoning {
                    ABANDONED
                } else {
                    "the step's task ended without a result (its provider panicked)"
                });
                let record = Record {
                    id: self.shared.plan.nodes()[node as usize].step.id.clone(),
                    kind: RecordKind::Failed {
                        error: error.to_string(),
                    },
                };
                self.journal.queue(record);
                self.fail(node, error, duration);
            }
        }
    }

    /// A step's work ended: journal its result records, then settle the node.
    fn step_finished(&mut self, finished: Finished) {
        let Finished {
            node,
            result,
            duration,
            mut records,
        } = finished;
        self.steps.settle(node);
        self.release(node);
        for record in records.drain(..) {
            self.journal.queue(record);
        }
        if records.capacity() > 0 && self.buffers.len() < self.settings.parallelism {
            self.buffers.push(records);
        }
        self.finished(node, result, duration);
    }

    fn finished(&mut self, i: u32, result: StepResult, duration: Duration) {
        let shared = Arc::clone(&self.shared);
        let node = &shared.plan.nodes()[i as usize];
        let succeeded = |outputs: &Outputs, changed: bool| Event::StepSucceeded {
            id: node.step.id.clone(),
            action: node.action.clone(),
            changed,
            duration,
            outputs: outputs.redacted(),
        };
        match result {
            StepResult::Changed(outputs) => {
                self.counts.succeeded += 1;
                self.emit(|| succeeded(&outputs, true));
                self.complete(i, outputs);
            }
            StepResult::Destroyed => {
                self.counts.succeeded += 1;
                let outputs = Outputs::default();
                self.emit(|| succeeded(&outputs, true));
                self.complete(i, outputs);
            }
            StepResult::Unchanged(outputs) => {
                self.counts.unchanged += 1;
                if node.action.is_change() {
                    self.emit(|| succeeded(&outputs, false));
                }
                self.complete(i, outputs);
            }
            StepResult::Adopted(outputs) => {
                self.counts.adopted += 1;
                self.emit(|| succeeded(&outputs, false));
                self.complete(i, outputs);
            }
            StepResult::Failed(error) => self.fail(i, error, duration),
            StepResult::JournalDown => self.journal_down(i, duration),
        }
    }

    /// Records a node's failure and applies the failure policy.
    fn fail(&mut self, i: u32, error: StepError, duration: Duration) {
        self.status[i as usize] = Status::Failed;
        self.counts.failed += 1;
        let id = self.shared.plan.nodes()[i as usize].step.id.clone();
        self.emit(|| Event::StepFailed {
            id: id.clone(),
            error: error.clone(),
            duration,
        });
        self.failures.push(StepFailure {
            id: id.clone(),
            error,
        });
        if self.stopped {
            return;
        }
        match self.settings.failure_policy {
            FailurePolicy::FailFast => self.stop_starting(),
            FailurePolicy::KeepGoing => self.skip_dependents_of(i),
        }
    }

    /// Fail-fast: no new starts; everything unstarted is skipped.
    fn stop_starting(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.emit(|| Event::Cancelling {
            reason: CancelReason::StepFailed,
        });
        self.skip_unstarted(SkipReason::FailFast);
    }

    /// Keep-going: the transitive dependents of a failed node will never run.
    fn skip_dependents_of(&mut self, failed: u32) {
        let dependency = self.shared.plan.nodes()[failed as usize].step.id.clone();
        let mut stack = std::mem::take(&mut self.stack);
        stack.push(failed);
        while let Some(i) = stack.pop() {
            for k in 0..self.dependents.of(i).len() {
                let d = self.dependents.of(i)[k];
                if matches!(self.status[d as usize], Status::Waiting | Status::Ready) {
                    self.skip(
                        d,
                        SkipReason::DependencyFailed {
                            dependency: dependency.clone(),
                        },
                    );
                    stack.push(d);
                }
            }
        }
        self.stack = stack;
    }

    /// Skips every node whose provider call has not started. A node whose intent is queued
    /// stays an intent without a result: the next run observes it before acting.
    fn skip_unstarted(&mut self, reason: SkipReason) {
        self.ready.drain();
        self.groups.drain_parked();
        for i in 0..self.status.len() as u32 {
            match self.status[i as usize] {
                Status::Waiting | Status::Ready => self.skip(i, reason.clone()),
                Status::Journaling => {
                    self.release(i);
                    self.skip(i, reason.clone());
                }
                _ => {}
            }
        }
    }

    fn skip(&mut self, i: u32, reason: SkipReason) {
        self.status[i as usize] = Status::Skipped;
        self.counts.skipped += 1;
        let id = self.shared.plan.nodes()[i as usize].step.id.clone();
        self.emit(|| Event::StepSkipped {
            id: id.clone(),
            reason: reason.clone(),
        });
        self.skipped.push(StepSkip { id, reason });
    }

    /// Cancellation requested: stop starting, tell running steps, skip the rest.
    fn begin_cancel(&mut self) {
        self.cancelling = true;
        self.stopped = true;
        self.emit(|| Event::Cancelling {
            reason: CancelReason::Requested,
        });
        self.shared.cancel.cancel();
        self.skip_unstarted(SkipReason::Cancelled);
    }

    /// The grace period ran out: abandon what still runs. Each abandoned step's work reports
    /// `Vanished` from its guard, which journals it as failed.
    fn abandon(&mut self) {
        self.abandoning = true;
        self.emit(|| Event::Cancelling {
            reason: CancelReason::GraceExpired,
        });
        self.steps.abandon_all();
    }

    /// The report, and the journal's failure if it had one.
    fn finish(mut self) -> (RunReport, Option<StateError>) {
        // Defensive: with a valid plan every node has settled by now.
        if self.status.contains(&Status::Waiting) {
            debug_assert!(
                self.stopped,
                "nodes left waiting in a run that did not stop"
            );
            self.skip_unstarted(SkipReason::FailFast);
        }
        let outcome = if self.cancelling {
            Outcome::Cancelled
        } else if self.counts.failed > 0 {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        let duration = self.started.elapsed();
        let counts = self.counts;
        self.emit(|| Event::RunFinished {
            outcome,
            counts,
            duration,
        });
        let report = RunReport {
            outcome,
            counts,
            duration,
            failures: self.failures,
            skipped: self.skipped,
        };
        (report, self.journal.into_failure())
    }
}

//! Where started steps run: in the coordinator's own task when they finish at once, on a
//! spawned task when they have to wait.
//!
//! Every started step's work is a [`StepFuture`]. The coordinator polls each new one once,
//! in place, with its own context. Most scheduling overhead is in hand-offs, not work: a step
//! whose provider answers at once (a no-op, a cached read, the simulator) then finishes
//! without a task spawn and without a single cross-thread wake-up. A future that is still
//! pending after that first poll is moved onto a `tokio::spawn`ed task, so slow provider calls
//! — the real ones, waiting on cloud APIs or doing work — run in parallel on the runtime's
//! worker threads exactly as before, and report back with [`Message::Finished`]. (As in any
//! async code, a provider must not block its thread before its first `.await`: that first
//! slice runs on the coordinator's thread.)
//!
//! A provider that panics during the first poll is caught here (`catch_unwind`) and its
//! future dropped: its guard reports [`Message::Vanished`], as the guard of a spawned task
//! that panicked does, and the step fails like any other. Each spawned task's handle is
//! kept, to abort it when the cancellation grace period runs out, with the time it was
//! spawned, for the duration of a step that vanishes (one that panics during its first poll
//! vanishes after no time).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::shared::{Finished, Message};
use super::step_task::StepFuture;

/// A node whose work moved to a spawned task.
struct Spawned {
    since: Instant,
    task: JoinHandle<()>,
}

/// The started steps of a run. See the module docs.
pub(crate) struct RunningSteps {
    /// Launched but not polled yet.
    fresh: Vec<(u32, StepFuture)>,
    /// Per node, once its work is spawned.
    spawned: Vec<Option<Spawned>>,
    /// Where spawned tasks report.
    messages: mpsc::UnboundedSender<Message>,
}

impl RunningSteps {
    /// Room for `nodes` nodes; spawned tasks report on `messages`.
    pub(crate) fn new(nodes: usize, messages: mpsc::UnboundedSender<Message>) -> Self {
        RunningSteps {
            fresh: Vec::new(),
            spawned: (0..nodes).map(|_| None).collect(),
            messages,
        }
    }

    /// Starts node `node`'s work; it is first polled by the next [`poll_fresh`].
    ///
    /// [`poll_fresh`]: RunningSteps::poll_fresh
    pub(crate) fn launch(&mut self, node: u32, work: StepFuture) {
        self.fresh.push((node, work));
    }

    /// Whether some launched work waits for its first poll.
    pub(crate) fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// Polls every newly launched step once, in place: those that finish go to `done`, those
    /// still pending are spawned, those that panic are dropped (their guard reports them).
    pub(crate) fn poll_fresh(&mut self, cx: &mut Context<'_>, done: &mut Vec<Finished>) {
        let mut fresh = std::mem::take(&mut self.fresh);
        for (node, mut work) in fresh.drain(..) {
            match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
                Ok(Poll::Ready(finished)) => done.push(finished),
                Ok(Poll::Pending) => {
                    let messages = self.messages.clone();
                    let task = tokio::spawn(async move {
                        let finished = work.await;
                        let _ = messages.send(Message::Finished(finished));
                    });
                    self.spawned[node as usize] = Some(Spawned {
                        since: Instant::now(),
                        task,
                    });
                }
                // The panic unwound through the work's guard, which reported `Vanished`.
                Err(_panic) => drop(work),
            }
        }
        // Keep the allocation; nothing was launched while polling.
        if self.fresh.is_empty() {
            self.fresh = fresh;
        }
    }

    /// Node `node` stopped running; how long its spawned task ran.
    pub(crate) fn settle(&mut self, node: u32) -> Duration {
        self.spawned[node as usize]
            .take()
            .map(|spawned| spawned.since.elapsed())
            .unwrap_or_default()
    }

    /// The grace period ran out: aborts every spawned task and drops unpolled work. Each
    /// guard reports `Vanished`.
    pub(crate) fn abandon_all(&mut self) {
        self.fresh.clear();
        for spawned in self.spawned.iter().flatten() {
            spawned.task.abort();
        }
    }
}

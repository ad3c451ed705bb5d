//! The coordinator's loop: start what is ready, then wait for whatever can move the run on.
//!
//! One wait polls every source in a fixed order and takes everything that is ready at once:
//! the grace timer (control first), then newly started steps' work (their first poll, in
//! place — see [`running`](crate::exec::running)), the journal's append in flight, and the
//! messages of spawned tasks. Only when none of these is ready does it poll the cancellation
//! token's future (cancellation is also checked at the top of every turn, so it never waits
//! behind work). Nothing here uses `try_recv`: on a `block_on` thread, tokio's `try_recv` may
//! park the thread while a send is half done and swallow the wake-up of this very future.
//!
//! When steps finish as soon as they are polled, a run can go many turns without ever being
//! pending; each turn spends a unit of tokio's cooperative budget, so the coordinator still
//! yields to the runtime now and then (other tasks on a current-thread runtime, such as a
//! Ctrl-C handler or an event reporter, keep running).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFuture;

use crate::event::Event;
use crate::exec::journal::Settled;
use crate::exec::report::RunReport;
use crate::exec::shared::Message;
use crate::state::StateError;

use super::Coordinator;

/// Most messages handled per turn of the loop.
const INBOX_BATCH: usize = 256;

/// What one wait found ready (besides finished work and messages, which it leaves in the
/// coordinator's `done` list and the inbox).
#[derive(Default)]
struct Wake {
    /// Cancellation was requested.
    cancel: bool,
    /// The grace period ran out.
    grace: bool,
    /// An append finished (or was refused).
    settled: Option<Settled>,
}

/// The sources a wait polls besides the coordinator itself.
struct Sources<'s, 'c> {
    cancelled: Pin<&'s mut WaitForCancellationFuture<'c>>,
    grace: &'s mut Option<Pin<Box<Sleep>>>,
    messages: &'s mut mpsc::UnboundedReceiver<Message>,
    inbox: &'s mut Vec<Message>,
}

impl Coordinator<'_> {
    /// Runs the plan to the end; returns the report and the journal's failure, if any.
    pub(crate) async fn run(
        mut self,
        mut messages: mpsc::UnboundedReceiver<Message>,
    ) -> (RunReport, Option<StateError>) {
        let n = self.shared.plan.len();
        let parallelism = self.settings.parallelism;
        self.emit(|| Event::RunStarted {
            steps: n,
            parallelism,
        });
        for i in 0..n as u32 {
            if self.pending[i as usize] == 0 {
                self.make_ready(i);
            }
        }
        let token = self.settings.cancel;
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut grace: Option<Pin<Box<Sleep>>> = None;
        let mut inbox = Vec::with_capacity(INBOX_BATCH);
        let mut done = Vec::new();
        loop {
            if !self.cancelling && token.is_cancelled() {
                self.begin_cancel();
            }
            if self.cancelling && grace.is_none() && !self.abandoning {
                grace = Some(Box::pin(tokio::time::sleep(self.settings.grace)));
            }
            self.start_ready();
            if self.running == 0 && self.journal.is_idle() {
                break;
            }
            tokio::task::coop::consume_budget().await;
            let mut sources = Sources {
                cancelled: cancelled.as_mut(),
                grace: &mut grace,
                messages: &mut messages,
                inbox: &mut inbox,
            };
            let wake = poll_fn(|cx| self.poll_wake(cx, &mut sources)).await;
            if wake.cancel {
                self.begin_cancel();
            }
            if wake.grace {
                self.abandon();
            }
            if let Some(settled) = wake.settled {
                self.settled(settled);
            }
            std::mem::swap(&mut done, &mut self.done);
            for finished in done.drain(..) {
                self.step_finished(finished);
            }
            for message in inbox.drain(..) {
                self.handle(message);
            }
        }
        self.finish()
    }

    /// Polls every source once; ready if any of them was.
    fn poll_wake(&mut self, cx: &mut Context<'_>, sources: &mut Sources<'_, '_>) -> Poll<Wake> {
        let mut wake = Wake::default();
        let mut ready = false;
        if !self.abandoning {
            if let Some(sleep) = sources.grace.as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    wake.grace = true;
                    ready = true;
                }
            }
        }
        if self.steps.has_fresh() {
            self.steps.poll_fresh(cx, &mut self.done);
            ready |= !self.done.is_empty();
        }
        if let Poll::Ready(settled) = self.journal.poll_settled(cx) {
            wake.settled = Some(settled);
            ready = true;
        }
        // Never closed while the run is on: `Shared` holds a sender.
        if let Poll::Ready(received) =
            sources
                .messages
                .poll_recv_many(cx, sources.inbox, INBOX_BATCH)
        {
            ready |= received > 0;
        }
        if !ready && !self.cancelling && sources.cancelled.as_mut().poll(cx).is_ready() {
            wake.cancel = true;
            ready = true;
        }
        if ready {
            Poll::Ready(wake)
        } else {
            Poll::Pending
        }
    }
}

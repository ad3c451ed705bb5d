//! The run's single journal writer and the handle step tasks append through.
//!
//! Step tasks are spawned and cannot borrow the caller's `&dyn StateStore`, so records travel
//! over a channel to one writer future that runs beside the coordinator inside `run` and owns
//! every `append`. The writer takes whatever has queued up since its last write and appends it
//! in one call (group commit: under load many steps share one flush), then acknowledges each
//! record. A task waits for the acknowledgement of its intent before it calls a provider:
//! that is the "no provider call without a durable intent" rule.
//!
//! The coordinator journals most intents itself, before it spawns the step (so a step costs
//! one round trip between coordinator and task, not three). It does not wait on a channel per
//! record: the writer tells it, with one [`Message::Intents`] per append, how many of its
//! records became durable (or were refused), in the order it submitted them.
//!
//! After the first failed append the writer refuses everything that follows, so nothing
//! further is called; the run ends with [`ExecError::Journal`](super::ExecError::Journal).

use tokio::sync::{mpsc, oneshot};

use crate::state::{Record, StateError, StateStore};

use super::shared::Message;

/// Most records appended in one call.
const MAX_BATCH: usize = 1024;

/// The journal refused a record (an earlier or this append failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournalDown;

/// Who waits for a record, and how they are told it is durable.
enum Ack {
    /// A task, through its own channel.
    Task(oneshot::Sender<Result<(), JournalDown>>),
    /// The coordinator, through a count in [`Message::Intents`].
    Coordinator,
    /// Nobody (a result record).
    Nobody,
}

/// One record waiting to be written.
pub(crate) struct JournalRequest {
    record: Record,
    ack: Ack,
}

/// Where records are sent; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    tx: mpsc::UnboundedSender<JournalRequest>,
}

/// The receiving end, handed to [`write`].
pub(crate) type JournalQueue = mpsc::UnboundedReceiver<JournalRequest>;

impl Journal {
    /// A journal handle and the queue its writer drains.
    pub(crate) fn channel() -> (Journal, JournalQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Journal { tx }, rx)
    }

    /// Appends a record and waits until it is durable.
    pub(crate) async fn append(&self, record: Record) -> Result<(), JournalDown> {
        let (ack, done) = oneshot::channel();
        // If the writer is gone, `ack` is dropped with the request and `done` reports it.
        let _ = self.tx.send(JournalRequest {
            record,
            ack: Ack::Task(ack),
        });
        done.await.unwrap_or(Err(JournalDown))
    }

    /// Queues a record nobody waits for.
    pub(crate) fn queue(&self, record: Record) {
        let _ = self.tx.send(JournalRequest {
            record,
            ack: Ack::Nobody,
        });
    }

    /// Queues a coordinator's record; the writer reports it in a [`Message::Intents`].
    pub(crate) fn queue_for_coordinator(&self, record: Record) {
        let _ = self.tx.send(JournalRequest {
            record,
            ack: Ack::Coordinator,
        });
    }
}

/// Writes queued records until every [`Journal`] handle is dropped; returns the first append
/// error, if there was one. Outcomes of the coordinator's records go to `coordinator`.
pub(crate) async fn write(
    store: &dyn StateStore,
    mut queue: JournalQueue,
    coordinator: mpsc::UnboundedSender<Message>,
) -> Option<StateError> {
    let mut failure: Option<StateError> = None;
    let mut requests: Vec<JournalRequest> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<oneshot::Sender<Result<(), JournalDown>>> = Vec::new();
    // `recv_many` takes everything queued (up to a batch) without `try_recv`, which may park
    // the thread and, on a `block_on` thread, swallow the wake-up of the run itself.
    while queue.recv_many(&mut requests, MAX_BATCH).await > 0 {
        let mut for_coordinator = 0;
        for request in requests.drain(..) {
            records.push(request.record);
            match request.ack {
                Ack::Task(ack) => acks.push(ack),
                Ack::Coordinator => for_coordinator += 1,
                Ack::Nobody => {}
            }
        }
        let outcome = if failure.is_some() {
            Err(JournalDown)
        } else {
            match store.append(&records).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "state journal append failed; stopping the run");
                    failure = Some(e);
                    Err(JournalDown)
                }
            }
        };
        records.clear();
        if for_coordinator > 0 {
            let _ = coordinator.send(Message::Intents {
                count: for_coordinator,
                durable: outcome.is_ok(),
            });
        }
        for ack in acks.drain(..) {
            let _ = ack.send(outcome);
        }
    }
    failure
}

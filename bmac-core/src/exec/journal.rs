//! The run's single journal writer and the handle step tasks append through.
//!
//! Step tasks are spawned and cannot borrow the caller's `&dyn StateStore`, so records travel
//! over a channel to one writer future that runs beside the coordinator inside `run` and owns
//! every `append`. The writer takes whatever has queued up since its last write (`recv_many`,
//! up to `MAX_BATCH`) and appends it in one call (group commit: under load many steps share
//! one flush), then acknowledges each record. A task waits for the acknowledgement of its
//! intent before it calls a provider: that is the "no provider call without a durable intent"
//! rule.
//!
//! After the first failed append the writer refuses everything that follows, so nothing
//! further is called; the run ends with [`ExecError::Journal`](super::ExecError::Journal).

use tokio::sync::{mpsc, oneshot};

use crate::state::{Record, StateError, StateStore};

/// Most records appended in one call.
const MAX_BATCH: usize = 1024;

/// The journal refused a record (an earlier or this append failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournalDown;

/// One record waiting to be written.
pub(crate) struct JournalRequest {
    record: Record,
    ack: oneshot::Sender<Result<(), JournalDown>>,
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

    /// Queues a record; the receiver resolves once it is durable (or refused).
    pub(crate) fn submit(&self, record: Record) -> oneshot::Receiver<Result<(), JournalDown>> {
        let (ack, done) = oneshot::channel();
        // If the writer is gone, `ack` is dropped with the request and `done` reports it.
        let _ = self.tx.send(JournalRequest { record, ack });
        done
    }

    /// Appends a record and waits until it is durable.
    pub(crate) async fn append(&self, record: Record) -> Result<(), JournalDown> {
        self.submit(record).await.unwrap_or(Err(JournalDown))
    }
}

/// Writes queued records until every [`Journal`] handle is dropped; returns the first append
/// error, if there was one.
pub(crate) async fn write(store: &dyn StateStore, mut queue: JournalQueue) -> Option<StateError> {
    let mut failure: Option<StateError> = None;
    let mut batch: Vec<JournalRequest> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<Record> = Vec::new();
    let mut acks: Vec<oneshot::Sender<Result<(), JournalDown>>> = Vec::new();
    // `recv_many`, not `try_recv`: see the coordinator's module docs (a thread park inside
    // `try_recv` can swallow the coordinator's wake-up under `block_on`).
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for request in batch.drain(..) {
            records.push(request.record);
            acks.push(request.ack);
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
        for ack in acks.drain(..) {
            let _ = ack.send(outcome);
        }
    }
    failure
}

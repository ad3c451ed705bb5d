//! The run's journal: the coordinator's queue of records and the one append in flight.
//!
//! The coordinator owns the [`Journal`] and is the only caller of the store's `append` during
//! a run. It queues records as it learns of them — intents of the steps it starts, results of
//! the steps that finished, records step tasks send it ([`Message::Journal`]) — and whenever
//! no append is in flight, everything queued goes to the store in *one* call (group commit:
//! the round trip is paid per batch, not per step). Appends are strictly one after another,
//! so records reach the store in the order they were queued.
//!
//! # Who waits
//! Each batch carries its [`Waiter`]s: steps whose provider call may start only once their
//! intent is durable ([`Waiter::Start`], the durability rule), and step tasks waiting for an
//! acknowledgement ([`Waiter::Task`]). Result records have no waiter: a result only has to be
//! durable before anything that depends on it, and everything that does (the step's next
//! intent, a dependent's intent) is queued after it and therefore written after it. The run
//! returns only once the journal is idle, so no record is left unwritten.
//!
//! # Failure
//! After the first failed append nothing more is written: every later batch is refused at
//! once (its waiters are told it is not durable, so no provider call follows), and the run
//! ends with [`ExecError::Journal`](super::ExecError::Journal).
//!
//! [`Message::Journal`]: super::shared::Message::Journal

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::state::{Record, StateError, StateStore};

use super::shared::TaskMode;

/// The journal refused a record (an earlier or this append failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournalDown;

/// Someone who waits for a batch to be durable.
pub(crate) enum Waiter {
    /// The coordinator starts node `.0` in mode `.1` once its intent is durable.
    Start(u32, TaskMode),
    /// A step task waits for its records.
    Task(oneshot::Sender<Result<(), JournalDown>>),
}

/// The outcome of one batch, handed to the coordinator.
pub(crate) struct Settled {
    /// Whether the batch is durable.
    pub(crate) durable: bool,
    /// Who waited for it, in the order they were queued.
    pub(crate) waiters: Vec<Waiter>,
}

/// An append in flight; gives the (emptied) record buffer back for reuse.
type Write<'a> = Pin<Box<dyn Future<Output = (Vec<Record>, Result<u64, StateError>)> + Send + 'a>>;

/// The coordinator's journal. See the module docs.
pub(crate) struct Journal<'a> {
    store: &'a dyn StateStore,
    /// Records waiting for the next append.
    queued: Vec<Record>,
    /// Waiters of `queued`.
    waiting: Vec<Waiter>,
    /// The append in flight, if any.
    writing: Option<Write<'a>>,
    /// Waiters of the append in flight.
    writing_waiters: Vec<Waiter>,
    /// A buffer a store gave back (emptied but not taken), to queue into next.
    spare: Vec<Record>,
    /// The first append error; nothing is written after it.
    failure: Option<StateError>,
}

impl<'a> Journal<'a> {
    /// An empty journal appending to `store`.
    pub(crate) fn new(store: &'a dyn StateStore) -> Self {
        Journal {
            store,
            queued: Vec::new(),
            waiting: Vec::new(),
            writing: None,
            writing_waiters: Vec::new(),
            spare: Vec::new(),
            failure: None,
        }
    }

    /// Queues a record nobody waits for.
    pub(crate) fn queue(&mut self, record: Record) {
        self.queued.push(record);
    }

    /// Queues records and who waits for them.
    pub(crate) fn queue_waited(
        &mut self,
        records: impl IntoIterator<Item = Record>,
        waiter: Waiter,
    ) {
        self.queued.extend(records);
        self.waiting.push(waiter);
    }

    /// Nothing queued and nothing being written.
    pub(crate) fn is_idle(&self) -> bool {
        self.writing.is_none() && self.queued.is_empty() && self.waiting.is_empty()
    }

    /// The first append error, if any.
    pub(crate) fn into_failure(self) -> Option<StateError> {
        self.failure
    }

    /// Drives the journal: finishes the append in flight, or starts one with everything
    /// queued. Ready with the outcome of a batch; pending while an append is in flight or
    /// nothing is queued (the coordinator polls again after it queues something).
    pub(crate) fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Settled> {
        loop {
            if let Some(write) = self.writing.as_mut() {
                let (mut buffer, result) = match write.as_mut().poll(cx) {
                    Poll::Ready(written) => written,
                    Poll::Pending => return Poll::Pending,
                };
                self.writing = None;
                buffer.clear();
                if self.spare.capacity() < buffer.capacity() {
                    self.spare = buffer;
                }
                let durable = match result {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "state journal append failed; stopping the run");
                        self.failure = Some(e);
                        false
                    }
                };
                let waiters = std::mem::take(&mut self.writing_waiters);
                return Poll::Ready(Settled { durable, waiters });
            }
            if self.queued.is_empty() && self.waiting.is_empty() {
                return Poll::Pending;
            }
            if self.failure.is_some() {
                self.queued.clear();
                let waiters = std::mem::take(&mut self.waiting);
                return Poll::Ready(Settled {
                    durable: false,
                    waiters,
                });
            }
            // A store may keep the batch itself (`append_drain`); the next one starts from
            // the buffer the last append gave back, or one sized like this one.
            let next = if self.spare.capacity() > 0 {
                std::mem::take(&mut self.spare)
            } else {
                Vec::with_capacity(self.queued.len())
            };
            let mut records = std::mem::replace(&mut self.queued, next);
            std::mem::swap(&mut self.writing_waiters, &mut self.waiting);
            let store = self.store;
            self.writing = Some(Box::pin(async move {
                let result = store.append_drain(&mut records).await;
                (records, result)
            }));
        }
    }
}

//! The default state store: a directory (`.bmac/` by default) holding an append-only journal,
//! a snapshot the journal is compacted into now and then, and the apply lock.
//!
//! ```text
//! .bmac/            0700 when bmac creates it
//!   journal.log     0600  header line, then one checksummed record per line   (journal)
//!   snapshot.json   0600  the whole state at one serial, replaced atomically   (snapshot)
//!   lock.json       0600  who is applying: id, operation, holder, pid, host    (lockfile)
//! ```
//!
//! Why this shape (DESIGN.md, decision 5): the executor records an intent before every
//! provider call and the result after it. Rewriting the whole state per step makes a large
//! apply O(n²) in bytes written and serialises it on one file; appending a line per event
//! keeps each step's cost constant, and concurrent steps share syncs (group commit, see
//! `writer`). Replay is the fold [`State::apply`](crate::state::State::apply) of the snapshot
//! plus the records after it, so resuming is one streaming pass.
//!
//! Durability: [`StateStore::append`] returns only after the records are synced. A crash can
//! tear at most the last line; loading drops it with a warning (the step it described is in
//! doubt, and the next apply observes it), and the next write cuts it off the file. Damage
//! anywhere else is [`StateError::Corrupt`] with the line, never silently skipped.
//!
//! Compaction (when the journal outgrows `max(64 MiB, 4 × the snapshot)` by default, see
//! [`Compaction`]; or [`LocalStore::compact`]) writes the snapshot first, then replaces the journal with an empty one whose header says which
//! serial it continues after. A crash between the two leaves the old journal, whose records
//! up to the snapshot's serial are skipped on replay; no intermediate state loses a record.
//!
//! Lineage: the first write to a fresh store draws 128 random bits; the snapshot and every
//! journal header carry it, so files from two different states are never mixed silently.
//!
//! Secrets: records hold sensitive outputs as digests only (the serialisation of
//! [`Outputs`](crate::step::Outputs) never writes a secret's value), and every file is created
//! with mode 0600 from the start, never widened and narrowed later.
//!
//! Concurrency: the store is `Send + Sync` and meant to be shared by all of a run's tasks;
//! one thread owns the journal file and serves appends, loads and compactions in order.
//! Between processes, the lock keeps a second apply out; appends do not check the lock.

// `StateError` is large (its lock variants carry a whole `LockInfo`); it is returned only on
// failure, and boxing it would change the shared contract for every backend.
#![allow(clippy::result_large_err)]

mod files;
mod journal;
mod lockfile;
mod policy;
mod replay;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::oneshot;

use self::files::{create_dir, io_error, Paths};
use self::writer::Command;
use crate::state::{Loaded, LockInfo, LockRequest, Record, StateError, StateStore};

pub use self::policy::{Compaction, COMPACT_FLOOR_BYTES, COMPACT_RATIO};

/// The local, file-backed [`StateStore`] (see the module docs for layout and guarantees).
pub struct LocalStore {
    paths: Paths,
    commands: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
}

// The store is shared by all of a run's tasks.
const _: fn() = || {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<LocalStore>();
};

/// Options for opening a [`LocalStore`].
#[derive(Debug, Clone)]
pub struct LocalStoreBuilder {
    dir: PathBuf,
    compaction: Compaction,
}

impl LocalStoreBuilder {
    /// Compact when the journal holds `records` records instead of by size (the default,
    /// [`Compaction::Size`]); 0 turns automatic compaction off.
    pub fn compact_every(mut self, records: usize) -> Self {
        self.compaction = Compaction::EveryRecords(records as u64);
        self
    }

    /// When to compact automatically (default [`Compaction::default`]).
    pub fn compaction(mut self, policy: Compaction) -> Self {
        self.compaction = policy;
        self
    }

    /// Opens the store, creating its directory (0700) if it is missing. Files are created on
    /// the first write; opening reads nothing, so a damaged journal shows up on `load`.
    pub fn open(self) -> Result<LocalStore, StateError> {
        create_dir(&self.dir)?;
        let paths = Paths::new(self.dir);
        let flushes = Arc::new(AtomicU64::new(0));
        let (commands, writer) =
            writer::spawn(paths.clone(), self.compaction, Arc::clone(&flushes))?;
        Ok(LocalStore {
            paths,
            commands: Some(commands),
            writer: Some(writer),
            flushes,
        })
    }
}

impl LocalStore {
    /// Opens the store in `dir` (e.g. `.bmac/`) with default options.
    pub fn open(dir: impl Into<PathBuf>) -> Result<LocalStore, StateError> {
        LocalStore::builder(dir).open()
    }

    /// Options for opening the store in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> LocalStoreBuilder {
        LocalStoreBuilder {
            dir: dir.into(),
            compaction: Compaction::default(),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// Compacts the journal into the snapshot now; returns the snapshot's serial.
    pub async fn compact(&self) -> Result<u64, StateError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Compact { reply })?;
        self.answer(answer).await
    }

    /// The journal records after the snapshot, in order (for tooling and tests). A torn last
    /// record is left out, as `load` leaves it out.
    pub fn records(&self) -> Result<Vec<Record>, StateError> {
        replay::read_records(&self.paths)
    }

    /// How many group commits (one write + one sync each) this store has made.
    #[doc(hidden)]
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn send(&self, command: Command) -> Result<(), StateError> {
        self.commands
            .as_ref()
            .and_then(|c| c.send(command).ok())
            .ok_or_else(|| self.writer_gone())
    }

    async fn answer<T>(
        &self,
        answer: oneshot::Receiver<Result<T, StateError>>,
    ) -> Result<T, StateError> {
        answer.await.map_err(|_| self.writer_gone())?
    }

    fn writer_gone(&self) -> StateError {
        io_error(
            &self.paths.journal,
            std::io::Error::other("the journal writer thread stopped"),
        )
    }
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.paths.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered everything queued.
        self.commands = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl StateStore for LocalStore {
    async fn load(&self) -> Result<Loaded, StateError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Load { reply })?;
        self.answer(answer).await
    }

    async fn append(&self, records: &[Record]) -> Result<u64, StateError> {
        let payloads = records
            .iter()
            .map(|r| serde_json::to_vec(r).map_err(|e| io_error(&self.paths.journal, e.into())))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append { payloads, reply })?;
        self.answer(answer).await
    }

    async fn lock(&self, request: LockRequest) -> Result<LockInfo, StateError> {
        lockfile::acquire(&self.paths, request)
    }

    async fn unlock(&self, id: &str) -> Result<(), StateError> {
        lockfile::release(&self.paths, id)
    }

    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        lockfile::current(&self.paths)
    }
}

//! The journal writer: one thread that owns the journal file and performs every append,
//! compaction and load, in the order they were asked for.
//!
//! Callers send [`Command`]s over a channel and await a oneshot reply, so async tasks never
//! block on disk. The thread takes whatever is queued at once and commits all queued appends
//! as one group: one `write`, one `fdatasync`, then every caller in the group is answered
//! with the serial after its own records. This is group commit — under many concurrent
//! steps the number of syncs grows with the disk's latency, not with the number of records.
//!
//! Invariants:
//! - A reply of `Ok` means the records are on stable storage. If the write or the sync fails,
//!   every caller in the group gets the error, the file is cut back to its previous length
//!   (best effort), and the next command re-reads the journal from disk instead of trusting
//!   in-memory counters.
//! - Records of one append are contiguous; appends are numbered in arrival order.
//! - The journal is opened lazily by the first command that writes. Opening finishes what a
//!   crash interrupted: it removes stray temporary files, cuts a torn last record off, and
//!   completes a compaction whose snapshot was written but whose journal was not replaced.
//!   A fresh store gets its lineage (128 random bits) here, on the first write.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::files::{io_error, remove_if_present, replace_atomically, Paths};
use super::journal::{encode_line, Header};
use super::policy::{Compaction, Sizes};
use super::replay::load_state;
use super::snapshot::write_snapshot;
use crate::state::{Loaded, StateError};

/// A request to the writer thread.
pub(super) enum Command {
    /// Append records (already serialised to JSON); answers the serial after them.
    Append {
        payloads: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<u64, StateError>>,
    },
    /// Compact now; answers the snapshot's serial.
    Compact {
        reply: oneshot::Sender<Result<u64, StateError>>,
    },
    /// Read the state from disk.
    Load {
        reply: oneshot::Sender<Result<Loaded, StateError>>,
    },
}

/// Starts the writer thread for the store at `paths`.
pub(super) fn spawn(
    paths: Paths,
    compaction: Compaction,
    flushes: Arc<AtomicU64>,
) -> Result<(Sender<Command>, JoinHandle<()>), StateError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = paths.dir.clone();
    let writer = Writer {
        paths,
        compaction,
        flushes,
        open: None,
    };
    let handle = std::thread::Builder::new()
        .name("bmac-journal".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| io_error(&dir, e))?;
    Ok((tx, handle))
}

/// The journal file as the writer holds it open.
struct OpenJournal {
    file: File,
    lineage: String,
    /// The serial the file's records follow.
    after: u64,
    /// The serial after the last record written.
    serial: u64,
    /// Bytes in the file.
    len: u64,
    /// Bytes of the header line (the file's length with no records).
    header_len: u64,
    /// Bytes of the snapshot the records follow (0 without one), for the policy.
    snapshot_len: u64,
}

impl OpenJournal {
    /// What the compaction policy looks at.
    fn sizes(&self) -> Sizes {
        Sizes {
            records: self.serial - self.after,
            journal_bytes: self.len.saturating_sub(self.header_len),
            snapshot_bytes: self.snapshot_len,
        }
    }
}

struct Writer {
    paths: Paths,
    /// When to compact after a commit.
    compaction: Compaction,
    flushes: Arc<AtomicU64>,
    open: Option<OpenJournal>,
}

type AppendReply = oneshot::Sender<Result<u64, StateError>>;

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut group: Vec<(Vec<Vec<u8>>, AppendReply)> = Vec::new();
            for command in std::iter::once(first).chain(rx.try_iter()) {
                match command {
                    Command::Append { payloads, reply } => group.push((payloads, reply)),
                    other => {
                        self.commit(std::mem::take(&mut group));
                        self.serve(other);
                    }
                }
            }
            self.commit(group);
        }
    }

    /// Answers a command that is not an append.
    fn serve(&mut self, command: Command) {
        match command {
            Command::Append { payloads, reply } => self.commit(vec![(payloads, reply)]),
            Command::Compact { reply } => {
                let _ = reply.send(self.compact());
            }
            Command::Load { reply } => {
                let _ = reply.send(load_state(&self.paths).map(|(loaded, _)| loaded));
            }
        }
    }

    /// Writes a group of appends with one sync, answers everyone, compacts if due.
    fn commit(&mut self, group: Vec<(Vec<Vec<u8>>, AppendReply)>) {
        if group.is_empty() {
            return;
        }
        let written = match self.write_group(&group) {
            Ok(serials) => serials,
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(duplicate(&e)));
                }
                return;
            }
        };
        for ((_, reply), serial) in group.into_iter().zip(written) {
            let _ = reply.send(Ok(serial));
        }
        let due = self
            .open
            .as_ref()
            .is_some_and(|j| self.compaction.due(j.sizes()));
        if due {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, "compacting the state journal failed; it will be retried");
            }
        }
    }

    /// Writes and syncs the group; returns each caller's serial.
    fn write_group(
        &mut self,
        group: &[(Vec<Vec<u8>>, AppendReply)],
    ) -> Result<Vec<u64>, StateError> {
        let flushes = Arc::clone(&self.flushes);
        let path = self.paths.journal.clone();
        let journal = self.open_journal()?;
        let mut buf = Vec::with_capacity(
            group
                .iter()
                .flat_map(|(p, _)| p)
                .map(|p| p.len() + 32)
                .sum(),
        );
        let mut serial = journal.serial;
        let mut serials = Vec::with_capacity(group.len());
        for (payloads, _) in group {
            for payload in payloads {
                serial += 1;
                encode_line(&mut buf, serial, payload);
            }
            serials.push(serial);
        }
        if buf.is_empty() {
            return Ok(serials);
        }
        let result = journal
            .file
            .write_all(&buf)
            .and_then(|()| journal.file.sync_data());
        match result {
            Ok(()) => {
                flushes.fetch_add(1, Ordering::Relaxed);
                journal.serial = serial;
                journal.len += buf.len() as u64;
                Ok(serials)
            }
            Err(e) => {
                // Never leave unacknowledged bytes behind if we can help it; either way the
                // next command re-reads the file rather than trusting these counters.
                let _ = journal.file.set_len(journal.len);
                self.open = None;
                Err(io_error(&path, e))
            }
        }
    }

    /// The open journal, opening (and repairing) it first if needed.
    fn open_journal(&mut self) -> Result<&mut OpenJournal, StateError> {
        if self.open.is_none() {
            self.open = Some(self.reopen()?);
        }
        self.open
            .as_mut()
            .ok_or_else(|| io_error(&self.paths.journal, io::Error::other("journal not open")))
    }

    fn reopen(&self) -> Result<OpenJournal, StateError> {
        let paths = &self.paths;
        remove_if_present(&Paths::temp_of(&paths.journal))?;
        remove_if_present(&Paths::temp_of(&paths.snapshot))?;
        let (loaded, replayed) = load_state(paths)?;
        let (lineage, serial) = (loaded.state.lineage, loaded.state.serial);
        let Some(scan) = replayed.journal else {
            // Fresh store, or a snapshot whose journal was lost after a rename: start one.
            let lineage = if lineage.is_empty() {
                format!("{:032x}", rand::random::<u128>())
            } else {
                lineage
            };
            return self.start_journal(lineage, serial);
        };
        let snapshot_serial = replayed.snapshot.map_or(0, |(_, s)| s);
        if scan.header.after < snapshot_serial && scan.last_seq <= snapshot_serial {
            // A compaction wrote its snapshot but died before replacing the journal.
            return self.start_journal(lineage, snapshot_serial);
        }
        let path = &paths.journal;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        if let Some(line) = scan.torn_line {
            tracing::warn!(path = %path.display(), line, "cutting a torn record off the journal");
            file.set_len(scan.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, e))?;
        }
        Ok(OpenJournal {
            file,
            lineage,
            after: scan.header.after,
            serial: scan.last_seq,
            len: scan.valid_len,
            header_len: scan.header_len,
            snapshot_len: self.snapshot_len(),
        })
    }

    /// Replaces the journal with an empty one continuing after `after`, and opens it.
    fn start_journal(&self, lineage: String, after: u64) -> Result<OpenJournal, StateError> {
        let path = &self.paths.journal;
        let header = Header::new(&lineage, after);
        replace_atomically(&self.paths.dir, path, |out| header.write_to(out))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        Ok(OpenJournal {
            file,
            lineage,
            after,
            serial: after,
            len,
            header_len: len,
            snapshot_len: self.snapshot_len(),
        })
    }

    /// The snapshot's size in bytes; 0 when there is none. Only the policy uses it, so a
    /// snapshot that cannot be examined counts as empty (loading it reports the real error).
    fn snapshot_len(&self) -> u64 {
        std::fs::metadata(&self.paths.snapshot).map_or(0, |m| m.len())
    }

    /// Writes a snapshot of everything journalled, then starts an empty journal after it.
    fn compact(&mut self) -> Result<u64, StateError> {
        if self.open.is_none() && !self.paths.journal.exists() && !self.paths.snapshot.exists() {
            return Ok(0); // nothing was ever written
        }
        let (after, serial, lineage) = {
            let j = self.open_journal()?;
            (j.after, j.serial, j.lineage.clone())
        };
        if after == serial {
            return Ok(serial); // the snapshot already holds everything
        }
        let (loaded, _) = load_state(&self.paths)?;
        if loaded.state.serial != serial || loaded.state.lineage != lineage {
            self.open = None;
            return Err(io_error(
                &self.paths.journal,
                io::Error::other(format!(
                    "the journal changed under the writer (expected serial {serial}, read {})",
                    loaded.state.serial
                )),
            ));
        }
        write_snapshot(&self.paths, &loaded.state)?;
        // From here a crash leaves snapshot + old journal, which loads correctly and is
        // finished by the next open.
        self.open = None;
        self.open = Some(self.start_journal(lineage, serial)?);
        Ok(serial)
    }
}

/// A copy of an error for each caller of a failed group (I/O errors are not `Clone`).
fn duplicate(e: &StateError) -> StateError {
    match e {
        StateError::Locked { holder, stale } => StateError::Locked {
            holder: holder.clone(),
            stale: *stale,
        },
        StateError::LockMismatch { given, current } => StateError::LockMismatch {
            given: given.clone(),
            current: current.clone(),
        },
        StateError::Corrupt { path, line, reason } => StateError::Corrupt {
            path: path.clone(),
            line: *line,
            reason: reason.clone(),
        },
        StateError::Io { path, source } => StateError::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Record, RecordKind};
    use crate::step::StepId;

    fn payload(id: &str) -> Vec<u8> {
        serde_json::to_vec(&Record {
            id: StepId::new(id).unwrap(),
            kind: RecordKind::Destroyed,
        })
        .unwrap()
    }

    /// Commits one group of single-record appends; returns each caller's answer.
    fn commit(writer: &mut Writer, ids: &[&str]) -> Vec<Result<u64, StateError>> {
        let (group, answers): (Vec<_>, Vec<_>) = ids
            .iter()
            .map(|id| {
                let (reply, answer) = oneshot::channel();
                ((vec![payload(id)], reply), answer)
            })
            .unzip();
        writer.commit(group);
        answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("every caller is answered"))
            .collect()
    }

    #[test]
    fn a_failed_write_is_reported_to_every_caller_and_never_acknowledged() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().to_owned());
        let flushes = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            paths: paths.clone(),
            compaction: Compaction::Never,
            flushes: Arc::clone(&flushes),
            open: None,
        };
        let first: Vec<u64> = commit(&mut writer, &["a", "b"])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, [1, 2], "one group, two callers, ordered serials");
        assert_eq!(flushes.load(Ordering::Relaxed), 1);

        // Swap the journal handle for a read-only one: the next write fails.
        if let Some(open) = writer.open.as_mut() {
            open.file = File::open(&paths.journal).unwrap();
        }
        let failed = commit(&mut writer, &["c", "d"]);
        assert!(failed.iter().all(
            |r| matches!(r, Err(StateError::Io { path, .. }) if path.ends_with("journal.log"))
        ));
        assert_eq!(flushes.load(Ordering::Relaxed), 1, "no sync was counted");

        // The writer re-reads the journal and carries on after the last durable record.
        let next = commit(&mut writer, &["e"]);
        assert_eq!(next[0].as_ref().unwrap(), &3);
        let (loaded, _) = load_state(&paths).unwrap();
        assert_eq!(loaded.state.serial, 3);
        let ids: Vec<_> = super::super::replay::read_records(&paths)
            .unwrap()
            .into_iter()
            .map(|r| r.id.as_str().to_owned())
            .collect();
        assert_eq!(
            ids,
            ["a", "b", "e"],
            "failed records never reach the journal"
        );
    }
}

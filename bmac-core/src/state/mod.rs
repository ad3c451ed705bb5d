//! What bmac remembers between runs: the [`State`] model, the journal [`Record`]s it is
//! replayed from, and the async [`StateStore`] trait that backends implement.
//!
//! State is the fold of an append-only journal. Before a provider call the executor appends an
//! [`RecordKind::Intent`]; after it, [`RecordKind::Applied`] (fingerprint, the step as applied,
//! its outputs with secrets redacted), [`RecordKind::Failed`] or [`RecordKind::Destroyed`]. A
//! step whose last record is an intent (the process died mid-call) or a failure (the call may
//! have half-happened) is *in doubt*: the next run asks the provider to `observe` it before
//! deciding to adopt what exists or apply again. The store never rewrites the whole state per
//! step; backends compact the journal into a snapshot now and then.
//!
//! Every appended record advances the state's `serial`; `lineage` names one state's history.
//! A saved plan remembers both and refuses to apply when either moved.
//!
//! Concurrency: one apply at a time per state, enforced by a lock that names its holder (id,
//! pid, host, start time). A stale lock is broken only by naming its id.

mod local;
mod lock;
mod memory;

pub use local::{Compaction, LocalStore, LocalStoreBuilder, COMPACT_FLOOR_BYTES, COMPACT_RATIO};
pub use lock::{local_host, rfc3339, LockInfo, LockRequest};
pub use memory::MemoryStore;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::provider::Prior;
use crate::step::{Fingerprint, Outputs, Step, StepId};

/// Which kind of provider call an intent announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create, update or replace.
    Apply,
    /// Destroy.
    Destroy,
}

/// What a journal record says about one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordKind {
    /// A provider call is about to start.
    Intent {
        /// Apply or destroy.
        op: Operation,
        /// The fingerprint an apply aims for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<Fingerprint>,
    },
    /// The step was applied.
    Applied {
        /// The step as applied (kind, config, deps, inputs), so that a step that later leaves
        /// the spec can still be destroyed in dependency order. Shared with the plan node, so
        /// journaling a completion copies no config.
        step: Arc<Step>,
        /// Fingerprint of config + resolved inputs.
        fingerprint: Fingerprint,
        /// Outputs; secrets as digests only.
        outputs: Outputs,
    },
    /// The provider call failed; the resource may be half made.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// The resource was destroyed; the step leaves state.
    Destroyed,
    /// A running call checkpointed what it needs to resume its operation (an operation id);
    /// kept until the step is applied or destroyed, and handed to its next call.
    Checkpoint {
        /// What the provider checkpointed (never a secret).
        data: Arc<serde_json::Value>,
    },
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The step it is about.
    pub id: StepId,
    /// What happened.
    #[serde(flatten)]
    pub kind: RecordKind,
}

/// The last successful apply of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedStep {
    /// The step as applied (shared with the plan node and journal record it came from).
    pub step: Arc<Step>,
    /// Fingerprint of config + resolved inputs at that time.
    pub fingerprint: Fingerprint,
    /// Outputs (secrets as digests).
    pub outputs: Outputs,
}

impl AppliedStep {
    /// The provider's view of it, as a copy. A planner shares the state's record instead
    /// ([`Prior::recorded`]); this is for callers that hold an `AppliedStep` on its own.
    pub fn prior(&self) -> Prior {
        Prior::owned(
            serde_json::Value::clone(&self.step.config),
            self.outputs.clone(),
            Some(self.fingerprint),
        )
    }
}

/// Everything known about one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// The last successful apply, if any. Shared (`Arc`): a plan made against this state
    /// points its nodes' priors at these records instead of copying them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Arc<AppliedStep>>,
    /// A call started (or failed) after the last apply: what exists must be observed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_doubt: bool,
    /// The last failure's message, until a later success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the last call checkpointed, until the step is applied or destroyed: a crashed
    /// create's operation id, handed to the next call so it resumes that operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Arc<serde_json::Value>>,
}

/// Every step state knows about, keyed by id, in the order the steps were first recorded — for
/// a state folded from its journal, the order their first calls started in: each after the
/// steps it depends on, close to the order a plan of the same spec visits them. Lookups are
/// one hash probe; entries lie in one dense array, so walking them in that order reads memory
/// front to back. Nothing may depend on the order beyond that (the planner does not). Removing
/// a step moves the last entry into its place
/// ([`IndexMap::swap_remove`](indexmap::IndexMap::swap_remove)), so a teardown costs O(1) per
/// step.
pub type StepStates = indexmap::IndexMap<StepId, StepState>;

/// The fold of a journal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Identifies this state's history; set when the state is first written.
    pub lineage: String,
    /// Number of records ever appended.
    pub serial: u64,
    /// Per step, in the order steps were first recorded (see [`StepStates`]).
    pub steps: StepStates,
}

impl State {
    /// Applies one record. Replay of the same records always gives the same state.
    pub fn apply(&mut self, record: &Record) {
        self.serial += 1;
        match &record.kind {
            RecordKind::Intent { .. } => {
                self.steps.entry(record.id.clone()).or_default().in_doubt = true;
            }
            RecordKind::Applied {
                step,
                fingerprint,
                outputs,
            } => {
                let entry = self.steps.entry(record.id.clone()).or_default();
                entry.applied = Some(Arc::new(AppliedStep {
                    step: Arc::clone(step),
                    fingerprint: *fingerprint,
                    outputs: outputs.redacted(),
                }));
                entry.in_doubt = false;
                entry.last_error = None;
                entry.checkpoint = None;
            }
            RecordKind::Failed { error } => {
                let entry = self.steps.entry(record.id.clone()).or_default();
                entry.in_doubt = true;
                entry.last_error = Some(error.clone());
            }
            RecordKind::Destroyed => {
                self.steps.swap_remove(&record.id);
            }
            RecordKind::Checkpoint { data } => {
                let entry = self.steps.entry(record.id.clone()).or_default();
                entry.in_doubt = true;
                entry.checkpoint = Some(Arc::clone(data));
            }
        }
    }

    /// The last apply of a step.
    pub fn applied(&self, id: &StepId) -> Option<&AppliedStep> {
        self.steps.get(id).and_then(|s| s.applied.as_deref())
    }
}

/// A loaded state and anything worth warning about (a torn last record that was dropped).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The state.
    pub state: State,
    /// Human-readable warnings from recovery.
    pub warnings: Vec<String>,
}

/// Errors from state backends.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum StateError {
    /// Another run holds the lock.
    #[error("the state is locked by {holder}{}", if *stale { "; the lock looks stale: that process is no longer running on this host" } else { "" })]
    #[diagnostic(
        code(bmac::state::locked),
        help("{}", if *stale {
            format!("if no bmac run is active, break the lock with `bmac state unlock {}`", holder.id)
        } else {
            format!("wait for that run to finish; if it died, break the lock with `bmac state unlock {}`", holder.id)
        })
    )]
    Locked {
        /// Who holds it.
        holder: LockInfo,
        /// The holder ran on this host and its process is gone ([`LockInfo::looks_stale`]).
        /// The lock still stands until someone names its id.
        stale: bool,
    },
    /// An unlock named a lock that is not the one held.
    #[error("no lock with id `{given}` is held{}", current.as_ref().map(|c| format!(" (the lock held is `{}`)", c.id)).unwrap_or_default())]
    #[diagnostic(
        code(bmac::state::lock_mismatch),
        help("name the id shown by `bmac state list` or in the lock error")
    )]
    LockMismatch {
        /// The id given.
        given: String,
        /// The lock actually held, if any.
        current: Option<LockInfo>,
    },
    /// A record in the middle of the journal is damaged (a torn *last* record is recovered).
    #[error("the state journal {path} is corrupt at line {line}: {reason}")]
    #[diagnostic(
        code(bmac::state::corrupt),
        help("restore the file from a backup; bmac never rewrites records in place")
    )]
    Corrupt {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("state I/O failed on {path}")]
    #[diagnostic(code(bmac::state::io))]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A place state lives: the local `.bmac/` directory now, S3, GCS or Kubernetes later.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Reads and replays the whole state.
    async fn load(&self) -> Result<Loaded, StateError>;

    /// Appends records durably (returns once they are on stable storage) and returns the
    /// serial after them. Concurrent callers may share one flush (group commit).
    async fn append(&self, records: &[Record]) -> Result<u64, StateError>;

    /// [`append`](StateStore::append) that leaves `records` empty, so a store that keeps
    /// records in memory can take them by move instead of cloning them. The executor appends
    /// through this. The default appends a borrowed slice, then clears `records` (whatever
    /// the outcome).
    async fn append_drain(&self, records: &mut Vec<Record>) -> Result<u64, StateError> {
        let serial = self.append(records).await;
        records.clear();
        serial
    }

    /// Takes the lock, or fails with [`StateError::Locked`] naming the holder.
    async fn lock(&self, request: LockRequest) -> Result<LockInfo, StateError>;

    /// Releases the lock with this id (also how a stale lock is broken).
    async fn unlock(&self, id: &str) -> Result<(), StateError>;

    /// The lock currently held, if any.
    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Kind;
    use serde_json::json;

    fn applied(id: &str) -> Record {
        let sid = StepId::new(id).unwrap();
        Record {
            id: sid.clone(),
            kind: RecordKind::Applied {
                step: Arc::new(Step::new(sid, Kind::new("k"), &json!({"a": 1})).unwrap()),
                fingerprint: Fingerprint([7; 32]),
                outputs: Outputs::new().with("x", 1).with_sensitive("t", "secret"),
            },
        }
    }

    #[test]
    fn replay_tracks_doubt_and_destruction() {
        let a = StepId::new("a").unwrap();
        let mut s = State::default();
        s.apply(&Record {
            id: a.clone(),
            kind: RecordKind::Intent {
                op: Operation::Apply,
                fingerprint: None,
            },
        });
        assert!(s.steps[&a].in_doubt);
        s.apply(&applied("a"));
        assert!(!s.steps[&a].in_doubt);
        assert!(s.applied(&a).unwrap().outputs.has_redacted_secret());
        s.apply(&Record {
            id: a.clone(),
            kind: RecordKind::Failed {
                error: "boom".into(),
            },
        });
        assert!(s.steps[&a].in_doubt);
        assert!(s.applied(&a).is_some(), "a failure keeps the last apply");
        s.apply(&Record {
            id: a.clone(),
            kind: RecordKind::Destroyed,
        });
        assert!(!s.steps.contains_key(&a));
        assert_eq!(s.serial, 4);
    }

    #[test]
    fn records_round_trip_without_secrets() {
        let r = applied("a");
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("secret"), "{text}");
        let back: Record = serde_json::from_str(&text).unwrap();
        let mut s1 = State::default();
        s1.apply(&r);
        let mut s2 = State::default();
        s2.apply(&back);
        assert_eq!(s1, s2);
    }
}

//! An in-memory [`StateStore`]: state and journal held in a mutex, gone when dropped.
//!
//! It exists for tests, benchmarks and embedders that keep state elsewhere. Its semantics are
//! those of the trait: `append` folds records into the state in order and advances the serial
//! (it is "durable" as soon as it returns, since memory is all there is); the first append of
//! a fresh store gives it a lineage; one lock at a time, a second `lock` fails with
//! [`StateError::Locked`] naming the holder, and `unlock` needs the exact id.
//!
//! Every record ever appended is kept, in order, so tests can assert what was journaled
//! ([`MemoryStore::records`]).
//!
//! Appending is the executor's hot path (two records per step), so it only keeps the batch
//! and advances the serial: [`StateStore::append_drain`], which the executor uses, takes the
//! caller's batch as it is (no record is copied or cloned, and no growing journal is ever
//! reallocated); a borrowed `append` clones the records once. Folding them into the [`State`]
//! waits until someone reads the state (`load`, [`MemoryStore::state`]). The observable
//! behaviour is the same as folding on every append.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Loaded, LockInfo, LockRequest, Record, State, StateError, StateStore};

/// Distinguishes stores and locks made in the same nanosecond.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A state store that lives in memory. See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The fold of `batches[..folded]` over the initial state.
    state: State,
    /// Every record appended, in order, in the (non-empty) batches they came in.
    batches: Vec<Vec<Record>>,
    /// How many of `batches` `state` already includes.
    folded: usize,
    /// Records in `batches[folded..]`.
    unfolded: u64,
    lock: Option<LockInfo>,
}

impl Inner {
    /// Gives a fresh store its lineage when its first records arrive.
    fn start_lineage(&mut self, arriving: usize) {
        if self.state.lineage.is_empty() && arriving > 0 {
            self.state.lineage = new_lineage();
        }
    }

    /// Keeps a non-empty batch; returns the serial after it.
    fn keep(&mut self, batch: Vec<Record>) -> u64 {
        if !batch.is_empty() {
            self.start_lineage(batch.len());
            self.unfolded += batch.len() as u64;
            self.batches.push(batch);
        }
        self.state.serial + self.unfolded
    }

    /// The state with every record folded in.
    fn state(&mut self) -> &State {
        for record in self.batches[self.folded..].iter().flatten() {
            self.state.apply(record);
        }
        self.folded = self.batches.len();
        self.unfolded = 0;
        &self.state
    }
}

impl MemoryStore {
    /// An empty store: no lineage yet, serial 0.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store that starts from an existing state (its lineage and serial are kept).
    pub fn with_state(state: State) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                state,
                ..Inner::default()
            }),
        }
    }

    /// Every record appended to this store, in order.
    pub fn records(&self) -> Vec<Record> {
        self.inner().batches.iter().flatten().cloned().collect()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner().state().clone()
    }

    /// The lock currently held, if any (the synchronous twin of `lock_info`).
    pub fn current_lock(&self) -> Option<LockInfo> {
        self.inner().lock.clone()
    }

    /// The guarded data. A panic while holding the mutex cannot leave `Inner` half-updated
    /// (every mutation is a single push or fold), so a poisoned mutex is still usable.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn load(&self) -> Result<Loaded, StateError> {
        Ok(Loaded {
            state: self.inner().state().clone(),
            warnings: Vec::new(),
        })
    }

    async fn append(&self, records: &[Record]) -> Result<u64, StateError> {
        Ok(self.inner().keep(records.to_vec()))
    }

    async fn append_drain(&self, records: &mut Vec<Record>) -> Result<u64, StateError> {
        Ok(self.inner().keep(std::mem::take(records)))
    }

    async fn lock(&self, request: LockRequest) -> Result<LockInfo, StateError> {
        let mut inner = self.inner();
        if let Some(holder) = &inner.lock {
            return Err(StateError::Locked {
                holder: holder.clone(),
                stale: false,
            });
        }
        let info = LockInfo {
            id: format!("mem-{}", unique_suffix()),
            operation: request.operation,
            holder: request.holder,
            pid: std::process::id(),
            host: "memory".to_owned(),
            started: rfc3339_now(),
        };
        inner.lock = Some(info.clone());
        Ok(info)
    }

    async fn unlock(&self, id: &str) -> Result<(), StateError> {
        let mut inner = self.inner();
        match &inner.lock {
            Some(held) if held.id == id => {
                inner.lock = None;
                Ok(())
            }
            current => Err(StateError::LockMismatch {
                given: id.to_owned(),
                current: current.clone(),
            }),
        }
    }

    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.inner().lock.clone())
    }
}

fn new_lineage() -> String {
    format!("memory-{}", unique_suffix())
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Now as RFC 3339 UTC (`2024-05-01T12:00:00Z`), without a date-time dependency.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RecordKind;
    use crate::step::StepId;

    fn destroyed(id: &str) -> Record {
        Record {
            id: StepId::new(id).unwrap(),
            kind: RecordKind::Destroyed,
        }
    }

    #[tokio::test]
    async fn append_folds_records_and_sets_lineage_once() {
        let store = MemoryStore::new();
        assert_eq!(store.load().await.unwrap().state.serial, 0);
        assert_eq!(
            store
                .append(&[destroyed("a"), destroyed("b")])
                .await
                .unwrap(),
            2
        );
        let lineage = store.state().lineage;
        assert!(!lineage.is_empty());
        assert_eq!(store.append(&[destroyed("c")]).await.unwrap(), 3);
        assert_eq!(store.state().lineage, lineage);
        assert_eq!(store.records().len(), 3);
    }

    #[tokio::test]
    async fn append_drain_moves_records_in_and_counts_like_append() {
        let store = MemoryStore::new();
        let mut batch = vec![destroyed("a"), destroyed("b")];
        assert_eq!(store.append_drain(&mut batch).await.unwrap(), 2);
        assert!(batch.is_empty(), "the records were taken");
        assert!(!store.state().lineage.is_empty());
        assert_eq!(store.append(&[destroyed("c")]).await.unwrap(), 3);
        batch.push(destroyed("d"));
        assert_eq!(store.append_drain(&mut batch).await.unwrap(), 4);
        let ids: Vec<String> = store.records().iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(store.state().serial, 4);
        // An empty batch neither starts a lineage nor moves the serial.
        let empty = MemoryStore::new();
        assert_eq!(empty.append_drain(&mut Vec::new()).await.unwrap(), 0);
        assert!(empty.state().lineage.is_empty());
    }

    #[tokio::test]
    async fn second_lock_names_the_holder_and_unlock_needs_the_id() {
        let store = MemoryStore::new();
        let held = store
            .lock(LockRequest {
                operation: "apply".into(),
                holder: "alice".into(),
            })
            .await
            .unwrap();
        let err = store.lock(LockRequest::new("apply")).await.unwrap_err();
        assert!(err.to_string().contains("alice"), "{err}");
        assert!(matches!(
            store.unlock("wrong").await,
            Err(StateError::LockMismatch { .. })
        ));
        assert_eq!(store.lock_info().await.unwrap(), Some(held.clone()));
        store.unlock(&held.id).await.unwrap();
        assert_eq!(store.lock_info().await.unwrap(), None);
        assert!(store.unlock(&held.id).await.is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}

//! What the parent looks at between child runs: the state as a user's next `bmac` would load
//! it, the lock left behind, the state as rebuilt by hand from the files, and the cloud.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use bmac_core::state::{Loaded, LockInfo, State, StateError};
use bmac_core::{LocalStore, StateStore};
use serde::Deserialize;

use super::cloud::{read_effects, Effect, Verb};

/// Runs a future on a fresh current-thread runtime (the parent is a plain `#[test]`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(future)
}

/// The state and lock as the next run would find them.
pub struct Look {
    /// `load()`'s answer.
    pub loaded: Loaded,
    /// `lock_info()`'s answer.
    pub lock: Option<LockInfo>,
}

/// Opens the store in `state_dir` and reads state and lock, as `bmac state list` would.
pub fn look(state_dir: &Path) -> Look {
    block_on(async {
        let store = LocalStore::open(state_dir).expect("the state store opens");
        let loaded = store.load().await.unwrap_or_else(|e| panic!("load: {e:?}"));
        let lock = store
            .lock_info()
            .await
            .unwrap_or_else(|e| panic!("lock_info: {e:?}"));
        Look { loaded, lock }
    })
}

/// Breaks the lock the way a user does: by naming its id.
pub fn unlock(state_dir: &Path, id: &str) -> Result<(), Box<StateError>> {
    block_on(async {
        let store = LocalStore::open(state_dir).expect("the state store opens");
        store.unlock(id).await.map_err(Box::new)
    })
}

#[derive(Deserialize)]
struct SnapshotFile {
    format: u32,
    state: State,
}

/// The state rebuilt without `load()`: `snapshot.json` (if compaction wrote one) folded with
/// every journal record after it through [`State::apply`]. `lineage` comes from `load()` when
/// there is no snapshot (it lives in the journal header, which `records()` does not return).
pub fn replay_by_hand(state_dir: &Path, lineage: &str) -> State {
    let mut state = match std::fs::read(state_dir.join("snapshot.json")) {
        Ok(bytes) => {
            let file: SnapshotFile =
                serde_json::from_slice(&bytes).expect("the snapshot is whole JSON");
            assert_eq!(file.format, 1, "snapshot format");
            file.state
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
            lineage: lineage.to_owned(),
            ..State::default()
        },
        Err(e) => panic!("reading the snapshot: {e}"),
    };
    let store = LocalStore::open(state_dir).expect("the state store opens");
    for record in store.records().unwrap_or_else(|e| panic!("records: {e:?}")) {
        state.apply(&record);
    }
    state
}

/// Simulates a kill in the middle of a journal `write(2)`: appends the first half of the
/// last record line, without its newline. Returns `false` when the journal has no record.
pub fn tear_journal(state_dir: &Path) -> bool {
    let path = state_dir.join("journal.log");
    let Ok(bytes) = std::fs::read(&path) else {
        return false;
    };
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() < 2 || !bytes.ends_with(b"\n") {
        return false; // only a header, or already torn
    }
    let last = lines[lines.len() - 1];
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("the journal opens for appending");
    file.write_all(&last[..last.len() / 2])
        .expect("the torn fragment is written");
    true
}

/// The files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("the state dir is readable") {
            let path = entry.expect("a dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("a state file is readable");
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// The cloud's side effects, grouped: each step id's `create` effects, and every effect that
/// is not a create (which these tests never expect).
pub struct CloudLedger {
    /// Step id → its creates, in order.
    pub creates: BTreeMap<String, Vec<Effect>>,
    /// Updates, no-op applies and destroys.
    pub others: Vec<Effect>,
}

/// Reads the cloud file into a [`CloudLedger`].
pub fn cloud_ledger(path: &Path) -> CloudLedger {
    let mut ledger = CloudLedger {
        creates: BTreeMap::new(),
        others: Vec::new(),
    };
    for effect in read_effects(path).expect("the cloud file parses") {
        match effect.verb {
            Verb::Create => ledger
                .creates
                .entry(effect.id.clone())
                .or_default()
                .push(effect),
            _ => ledger.others.push(effect),
        }
    }
    ledger
}

//! The simulated cloud itself: the resources that exist, persisted between runs so that
//! resume, drift and destroy are observable from one `bmac` invocation to the next.
//!
//! A [`SimCloud`] holds one [`Resource`] per step id. With a path it persists itself as an
//! **append-only op log** of JSON lines — `put` (create or update), `delete`, `tamper` (an edit
//! made "by hand", outside bmac) — replayed in order on open and written through on every
//! mutation (and `done`, a resource's long operation finishing). Invariants and why:
//! - A mutation appends exactly one line with one `write` call and never rewrites the file, so
//!   a run of 100k steps costs 100k small appends, not 100k rewrites (the quadratic trap
//!   hashicorp/terraform#34296 fell into). No fsync: the log must survive the *bmac process*
//!   being killed, which the page cache guarantees; surviving a power cut is not the point.
//! - Memory changes only after the line is written, so memory never holds what the log lacks.
//! - A torn or unparseable *last* line (the process died mid-append) is dropped on open and
//!   cut off the file, so the next append starts on a fresh line (a complete last op missing
//!   only its newline is kept and the newline added); a bad line anywhere else is corruption
//!   and a typed error.
//! - On open, a log that has grown past three times its live resources (plus slack) is
//!   compacted into one `put` per resource — written to a temporary file and renamed over the
//!   log — bounding its size without ever rewriting it per mutation.
//! - The file is created `0600`: it holds the simulated cluster's token, like the state does.
//!
//! One process writes a given log at a time (a run holds the state lock); a second
//! [`SimCloud`] opened later on the same path sees everything the first wrote.
//!
//! In memory each resource is the text of its `put` line (module `stored`), not a [`Resource`]
//! value: a large cloud then costs a few hundred bytes per resource, and reads parse it.
//!
//! Visibility for eventual consistency is kept in memory only (a tokio instant before which a
//! new resource reads as absent); resources replayed from the log are visible at once —
//! between two runs the window, seconds at most, has passed.

mod stored;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bmac_core::step::{Outputs, StepId};
use serde_json::Value;
use tokio::time::Instant;

use self::stored::{delete_line, done_line, set_pointer, tamper_line, Op, Stored};
use super::error::SimError;

/// One resource in the simulated cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The step that owns it.
    pub id: StepId,
    /// Its step kind.
    pub kind: String,
    /// Its actual configuration (what was applied, plus any tampering since).
    pub config: Value,
    /// Its outputs, secrets included.
    pub outputs: Outputs,
    /// When it was created, in milliseconds since the Unix epoch (wall clock).
    pub created_at_ms: u64,
    /// 1 when created, +1 on every update or tamper.
    pub generation: u64,
    /// The long operation that created it (clusters and node pools, as real clouds do):
    /// while it runs the resource exists but is not ready.
    pub operation: Option<Operation>,
}

/// A long-running create, as a managed cloud reports it: accepted at once, ready later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operation {
    /// Its id (`sim-op-` and 12 hex digits), what a caller checkpoints to poll it again.
    pub id: String,
    /// When it is done, in milliseconds since the Unix epoch (wall clock, so that another
    /// process polling the same operation sees it finish on time).
    pub ready_at_ms: u64,
    /// Whether the cloud has recorded it as finished.
    #[serde(default)]
    pub done: bool,
}

impl Operation {
    /// Whether it still runs at `now_ms`.
    pub fn running(&self, now_ms: u64) -> bool {
        !self.done && now_ms < self.ready_at_ms
    }
}

struct Entry {
    stored: Stored,
    visible_at: Option<Instant>,
}

struct CloudState {
    resources: HashMap<StepId, Entry>,
    log: Option<File>,
}

/// The simulated cloud: resources keyed by step id, optionally persisted as an op log.
pub struct SimCloud {
    path: Option<PathBuf>,
    state: Mutex<CloudState>,
}

impl std::fmt::Debug for SimCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCloud")
            .field("path", &self.path)
            .field("resources", &self.len())
            .finish()
    }
}

impl SimCloud {
    /// An empty cloud that lives only as long as this value (tests, benches).
    pub fn in_memory() -> Self {
        SimCloud {
            path: None,
            state: Mutex::new(CloudState {
                resources: HashMap::new(),
                log: None,
            }),
        }
    }

    /// Opens (creating it and its directory if needed) the cloud persisted at `path`,
    /// replaying its op log.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SimError> {
        let path = path.into();
        let io = |source| SimError::CloudIo {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let replayed = replay(&path, &bytes)?;
        let resources = replayed.resources;
        if replayed.ops > 3 * resources.len() + 1024 {
            compact(&path, &resources).map_err(io)?;
        } else if replayed.valid_len < bytes.len() {
            // Cut the torn tail so the next append starts on a fresh line.
            let f = OpenOptions::new().write(true).open(&path).map_err(io)?;
            f.set_len(replayed.valid_len as u64).map_err(io)?;
        }
        let mut log = open_for_append(&path).map_err(io)?;
        if replayed.unterminated {
            log.write_all(b"\n").map_err(io)?;
        }
        Ok(SimCloud {
            path: Some(path),
            state: Mutex::new(CloudState {
                resources,
                log: Some(log),
            }),
        })
    }

    /// Where the cloud is persisted, if it is.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The resource owned by step `id`, if it exists (regardless of eventual consistency).
    pub fn get(&self, id: &str) -> Option<Resource> {
        self.lock()
            .resources
            .get(id)
            .and_then(|e| e.stored.decode())
    }

    /// Every resource, ordered by step id.
    pub fn resources(&self) -> Vec<Resource> {
        let mut all: Vec<Resource> = self
            .lock()
            .resources
            .values()
            .filter_map(|e| e.stored.decode())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// How many resources exist.
    pub fn len(&self) -> usize {
        self.lock().resources.len()
    }

    /// Whether the cloud holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Edits a resource's config "by hand", as someone with console access would: sets the
    /// value at `pointer` (a JSON pointer into the config; `""` replaces it whole) and bumps
    /// the generation. Persisted like any mutation, so a later run's `observe` sees the drift.
    pub fn tamper(&self, id: &str, pointer: &str, value: Value) -> Result<(), SimError> {
        let mut state = self.lock();
        let mut resource = state
            .resources
            .get(id)
            .and_then(|e| e.stored.decode())
            .ok_or_else(|| SimError::NoSuchResource { id: id.to_owned() })?;
        let line =
            tamper_line(&resource.id, pointer, &value).map_err(|source| SimError::Unstorable {
                id: id.to_owned(),
                source,
            })?;
        set_pointer(&mut resource.config, pointer, value).map_err(|problem| SimError::Pointer {
            id: id.to_owned(),
            pointer: pointer.to_owned(),
            problem,
        })?;
        resource.generation += 1;
        let stored = Stored::encode(&resource)?;
        self.append(&mut state, &line)?;
        if let Some(entry) = state.resources.get_mut(id) {
            entry.stored = stored;
        }
        Ok(())
    }

    /// The resource and the instant before which it reads as absent.
    pub(crate) fn lookup(&self, id: &str) -> Option<(Resource, Option<Instant>)> {
        let state = self.lock();
        let entry = state.resources.get(id)?;
        let visible_at = entry.visible_at;
        let stored = entry.stored.clone();
        // Parse outside the lock: other steps' calls need it.
        drop(state);
        stored.decode().map(|r| (r, visible_at))
    }

    /// Creates or replaces a resource (write-through).
    pub(crate) fn put(
        &self,
        resource: &Resource,
        visible_at: Option<Instant>,
    ) -> Result<(), SimError> {
        let stored = Stored::encode(resource)?;
        let mut state = self.lock();
        self.append(&mut state, stored.text())?;
        state
            .resources
            .insert(resource.id.clone(), Entry { stored, visible_at });
        Ok(())
    }

    /// Records that `id`'s long operation `operation` finished (nothing happens if the
    /// resource is gone or runs another operation).
    pub(crate) fn finish_operation(&self, id: &StepId, operation: &str) -> Result<(), SimError> {
        let mut state = self.lock();
        let Some(mut resource) = state.resources.get(id).and_then(|e| e.stored.decode()) else {
            return Ok(());
        };
        if !finish(&mut resource, operation) {
            return Ok(());
        }
        let stored = Stored::encode(&resource)?;
        let line = done_line(id, operation).map_err(|source| SimError::Unstorable {
            id: id.to_string(),
            source,
        })?;
        self.append(&mut state, &line)?;
        if let Some(entry) = state.resources.get_mut(id) {
            entry.stored = stored;
        }
        Ok(())
    }

    /// Removes a resource; `Ok(false)` when it did not exist (nothing is written then).
    pub(crate) fn delete(&self, id: &StepId) -> Result<bool, SimError> {
        let mut state = self.lock();
        if !state.resources.contains_key(id) {
            return Ok(false);
        }
        let line = delete_line(id).map_err(|source| SimError::Unstorable {
            id: id.to_string(),
            source,
        })?;
        self.append(&mut state, &line)?;
        state.resources.remove(id);
        Ok(true)
    }

    /// Appends one op line (`line` holds no newline) to the log, if the cloud has one.
    fn append(&self, state: &mut CloudState, line: &str) -> Result<(), SimError> {
        let (Some(log), Some(path)) = (state.log.as_mut(), self.path.as_ref()) else {
            return Ok(());
        };
        let io = |source| SimError::CloudIo {
            path: path.clone(),
            source,
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        log.write_all(&bytes).map_err(io)
    }

    fn lock(&self) -> MutexGuard<'_, CloudState> {
        // A panic while holding the lock cannot leave the map half-updated (every mutation is
        // a single insert/remove after the write), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What replaying a log found.
struct Replayed {
    resources: HashMap<StepId, Entry>,
    /// Operations applied.
    ops: usize,
    /// Length of the valid prefix: shorter than the file when a torn last line was dropped.
    valid_len: usize,
    /// The last line is a complete operation missing only its newline (the write was cut
    /// right before it): kept, and the newline is added before the next append.
    unterminated: bool,
}

fn replay(path: &Path, bytes: &[u8]) -> Result<Replayed, SimError> {
    let mut replayed = Replayed {
        resources: HashMap::new(),
        ops: 0,
        valid_len: 0,
        unterminated: false,
    };
    let mut lines = bytes
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
        .peekable();
    while let Some((index, raw)) = lines.next() {
        let is_last = lines.peek().is_none();
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        if text.iter().all(u8::is_ascii_whitespace) {
            replayed.valid_len += raw.len();
            continue;
        }
        let op: Op = match serde_json::from_slice(text) {
            Ok(op) => op,
            // The process died mid-append: drop the partial last line.
            Err(_) if is_last => break,
            Err(source) => {
                return Err(SimError::CorruptLog {
                    path: path.to_owned(),
                    line: index + 1,
                    source,
                })
            }
        };
        apply_op(&mut replayed.resources, op).map_err(|e| match e {
            SimError::Unstorable { source, .. } => SimError::CorruptLog {
                path: path.to_owned(),
                line: index + 1,
                source,
            },
            other => other,
        })?;
        replayed.ops += 1;
        replayed.valid_len += raw.len();
        replayed.unterminated = !raw.ends_with(b"\n");
    }
    Ok(replayed)
}

/// Applies one replayed op. Fails only if a resource cannot be stored (see [`Stored`]).
fn apply_op(resources: &mut HashMap<StepId, Entry>, op: Op) -> Result<(), SimError> {
    match op {
        Op::Put(put) => {
            let resource = put.into_resource();
            let stored = Stored::encode(&resource)?;
            resources.insert(
                resource.id,
                Entry {
                    stored,
                    visible_at: None,
                },
            );
        }
        Op::Delete { id } => {
            resources.remove(&id);
        }
        Op::Done { id, operation } => {
            if let Some(entry) = resources.get_mut(&id) {
                if let Some(mut resource) = entry.stored.decode() {
                    if finish(&mut resource, &operation) {
                        entry.stored = Stored::encode(&resource)?;
                    }
                }
            }
        }
        Op::Tamper { id, pointer, value } => {
            // Tampers were validated before they were logged, so this succeeds; if the log
            // was edited so that it does not, the resource keeps its config.
            let Some(entry) = resources.get_mut(&id) else {
                return Ok(());
            };
            let Some(mut resource) = entry.stored.decode() else {
                return Ok(());
            };
            if set_pointer(&mut resource.config, &pointer, value).is_ok() {
                resource.generation += 1;
                entry.stored = Stored::encode(&resource)?;
            }
        }
    }
    Ok(())
}

/// Marks `resource`'s operation `operation` done; false when it runs no such operation.
fn finish(resource: &mut Resource, operation: &str) -> bool {
    match resource.operation.as_mut() {
        Some(op) if op.id == operation && !op.done => {
            op.done = true;
            true
        }
        _ => false,
    }
}

fn compact(path: &Path, resources: &HashMap<StepId, Entry>) -> std::io::Result<()> {
    let tmp = path.with_extension("compacting");
    {
        let mut f = create_private(&tmp, true)?;
        let mut ids: Vec<&StepId> = resources.keys().collect();
        ids.sort();
        let mut buf = Vec::new();
        for id in ids {
            // A resource's stored form is its `put` line.
            buf.extend_from_slice(resources[id].stored.text().as_bytes());
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    create_private(path, false)
}

fn create_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    if truncate {
        options.write(true).create(true).truncate(true);
    } else {
        options.append(true).create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

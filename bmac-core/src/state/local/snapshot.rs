//! The snapshot file: the whole [`State`] at one serial, written atomically when the journal
//! is compacted.
//!
//! `snapshot.json` is `{"format": 1, "state": {...}}`. It is only ever replaced whole
//! (temporary file, fsync, rename, fsync of the directory), so it is either the previous
//! snapshot or the new one, never a mix; a snapshot that does not parse is therefore real
//! damage and an error, not something to recover from.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{io_error, replace_atomically, Paths};
use crate::state::{State, StateError};

/// The snapshot format this code writes and reads.
const FORMAT: u32 = 1;

#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: u32,
    state: &'a State,
}

#[derive(Deserialize)]
struct SnapshotIn {
    format: u32,
    state: State,
}

/// Reads the snapshot, if there is one.
pub(super) fn read_snapshot(path: &Path) -> Result<Option<State>, StateError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let corrupt = |reason: String, line: usize| StateError::Corrupt {
        path: path.display().to_string(),
        line,
        reason,
    };
    let snapshot: SnapshotIn = serde_json::from_reader(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Io => io_error(path, e.into()),
            _ => corrupt(format!("bad snapshot: {e}"), e.line().max(1)),
        })?;
    if snapshot.format != FORMAT {
        return Err(corrupt(
            format!(
                "snapshot format {} is not supported (this bmac reads format {FORMAT})",
                snapshot.format
            ),
            1,
        ));
    }
    if snapshot.state.lineage.is_empty() {
        return Err(corrupt("the snapshot names no lineage".into(), 1));
    }
    Ok(Some(snapshot.state))
}

/// Replaces the snapshot with `state`, atomically and durably.
pub(super) fn write_snapshot(paths: &Paths, state: &State) -> Result<(), StateError> {
    replace_atomically(&paths.dir, &paths.snapshot, |out| {
        serde_json::to_writer(
            &mut *out,
            &SnapshotOut {
                format: FORMAT,
                state,
            },
        )
        .map_err(io::Error::other)
    })
}

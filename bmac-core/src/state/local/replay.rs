//! Rebuilding state from disk: the snapshot, then the journal records after it.
//!
//! The journal may start before the snapshot ends — compaction writes the snapshot first and
//! replaces the journal second, and a crash in between leaves the old journal behind — so
//! records at or below the snapshot's serial are checked and skipped. A journal that starts
//! *after* the snapshot ends, or belongs to another lineage, is an error.

use super::files::Paths;
use super::journal::{read_journal, Base, JournalScan};
use super::snapshot::read_snapshot;
use crate::state::{Loaded, Record, State, StateError};

/// What replay found besides the records.
#[derive(Debug)]
pub(super) struct Replayed {
    /// The snapshot's serial and lineage, if there is a snapshot.
    pub snapshot: Option<(String, u64)>,
    /// The journal, if there is one.
    pub journal: Option<JournalScan>,
}

/// Reads the snapshot (if any) and feeds every journal record after it to `visit`.
fn replay(
    paths: &Paths,
    state: &mut State,
    mut visit: impl FnMut(&mut State, Record),
) -> Result<Replayed, StateError> {
    let snapshot = read_snapshot(&paths.snapshot)?;
    let base_serial = snapshot.as_ref().map_or(0, |s| s.serial);
    if let Some(s) = snapshot {
        *state = s;
    }
    let snapshot = (!state.lineage.is_empty()).then(|| (state.lineage.clone(), state.serial));
    let base = snapshot.as_ref().map(|(lineage, serial)| Base {
        lineage,
        serial: *serial,
    });
    let journal = read_journal(&paths.journal, base, |seq, record| {
        if seq > base_serial {
            visit(state, record);
        }
    })?;
    if let (None, Some(j)) = (&snapshot, &journal) {
        state.lineage = j.header.lineage.clone();
    }
    Ok(Replayed { snapshot, journal })
}

/// The state on disk, with a warning if a torn last record was dropped.
pub(super) fn load_state(paths: &Paths) -> Result<(Loaded, Replayed), StateError> {
    let mut state = State::default();
    let replayed = replay(paths, &mut state, |state, record| state.apply(&record))?;
    let warnings = replayed
        .journal
        .as_ref()
        .and_then(|j| j.torn_warning(&paths.journal))
        .into_iter()
        .collect();
    Ok((Loaded { state, warnings }, replayed))
}

/// The journal records after the snapshot, in order.
pub(super) fn read_records(paths: &Paths) -> Result<Vec<Record>, StateError> {
    let mut records = Vec::new();
    replay(paths, &mut State::default(), |_, record| {
        records.push(record)
    })?;
    Ok(records)
}

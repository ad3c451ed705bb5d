//! The apply lock of a local store: `lock.json` in the state directory.
//!
//! Taking the lock must be exclusive and must never leave a half-written file that nobody can
//! name: the [`LockInfo`] is written and synced to a private temporary file created with
//! `O_EXCL`, then hard-linked to `lock.json` — `link(2)` fails when the name exists, exactly as
//! `O_CREAT|O_EXCL` would, but the lock appears with its whole content. (On file systems
//! without hard links it falls back to creating `lock.json` itself with `O_EXCL`.)
//!
//! The lock lives on disk, not in the process: a run that crashes leaves it behind, and only
//! `unlock` with the lock's id removes it. A lock whose holder is gone from this host is
//! reported as stale, still refused.
//!
//! `unlock` reads the lock, compares ids, then removes the file. Two people breaking the same
//! lock at the same moment is harmless; a lock *taken* between the read and the removal would
//! be lost, which needs someone to unlock a lock they just saw named and a new run to start
//! within microseconds of it; that window is accepted.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::files::{create_private, io_error, remove_if_present, sync_dir, Paths};
use crate::state::{LockInfo, LockRequest, StateError};

/// Takes the lock, or reports who holds it.
pub(super) fn acquire(paths: &Paths, request: LockRequest) -> Result<LockInfo, StateError> {
    let info = LockInfo::new(request);
    let json = serde_json::to_vec_pretty(&info).map_err(|e| io_error(&paths.lock, e.into()))?;
    let temp = paths.dir.join(format!("lock.json.{}.tmp", info.id));
    let written = write_new(&temp, &json);
    let linked = written.and_then(|()| fs::hard_link(&temp, &paths.lock));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(held(paths)?),
        Err(e) if links_unsupported(&e) => match write_new(&paths.lock, &json) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(held(paths)?),
            Err(e) => return Err(io_error(&paths.lock, e)),
        },
        Err(e) => return Err(io_error(&paths.lock, e)),
    }
    sync_dir(&paths.dir)?;
    Ok(info)
}

/// Releases the lock if `id` names it.
pub(super) fn release(paths: &Paths, id: &str) -> Result<(), StateError> {
    match current(paths)? {
        Some(info) if info.id == id => {
            remove_if_present(&paths.lock)?;
            sync_dir(&paths.dir)
        }
        current => Err(StateError::LockMismatch {
            given: id.to_owned(),
            current,
        }),
    }
}

/// The lock on disk, if any.
pub(super) fn current(paths: &Paths) -> Result<Option<LockInfo>, StateError> {
    let bytes = match fs::read(&paths.lock) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&paths.lock, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: paths.lock.display().to_string(),
            line: e.line().max(1),
            reason: format!(
                "the lock file is unreadable ({e}); if no bmac run is active, delete it by hand"
            ),
        })
}

/// The error for a lock someone else holds.
fn held(paths: &Paths) -> Result<StateError, StateError> {
    match current(paths)? {
        Some(holder) => Ok(StateError::Locked {
            stale: holder.looks_stale(),
            holder,
        }),
        // Released between our attempt and the read: report it as a conflict all the same;
        // the caller may simply retry.
        None => Err(io_error(
            &paths.lock,
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the lock changed hands while being taken; try again",
            ),
        )),
    }
}

/// Creates `path` exclusively (0600) with `bytes`, synced.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn links_unsupported(e: &io::Error) -> bool {
    // EPERM ("operation not permitted") is what link-less file systems answer.
    matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    )
}

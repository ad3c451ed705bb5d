//! The file operations every part of the local store shares: where its files live
//! ([`Paths`]), creating them private (0600, set at creation so no other user ever sees a
//! readable file), replacing a file atomically, and making renames durable.
//!
//! Atomic replacement is the classic sequence: write `NAME.tmp` (created fresh), `fsync` it,
//! `rename` it over `NAME`, `fsync` the directory. A crash leaves either the old file or the
//! new one, plus at worst a stray `.tmp` that readers ignore and the next writer removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::state::StateError;

/// The mode of every file the store creates: the state holds infrastructure details and
/// secret digests, readable by its owner only.
pub(super) const FILE_MODE: u32 = 0o600;
/// The mode of the state directory when the store creates it.
pub(super) const DIR_MODE: u32 = 0o700;

/// The files of one local store.
#[derive(Debug, Clone)]
pub(super) struct Paths {
    /// The directory (`.bmac/`).
    pub dir: PathBuf,
    /// The current journal.
    pub journal: PathBuf,
    /// The latest compacted state.
    pub snapshot: PathBuf,
    /// The apply lock.
    pub lock: PathBuf,
}

impl Paths {
    /// The layout under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Paths {
            journal: dir.join("journal.log"),
            snapshot: dir.join("snapshot.json"),
            lock: dir.join("lock.json"),
            dir,
        }
    }

    /// The temporary sibling a replacement of `path` is written to.
    pub fn temp_of(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    }
}

/// Wraps an I/O error with the path it happened on.
pub(super) fn io_error(path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates the state directory (and parents) with mode 0700 if it is missing.
pub(super) fn create_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_error(dir, e))?;
    if !dir.is_dir() {
        return Err(io_error(
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(())
}

/// Creates `path`, which must not exist, for writing with mode 0600.
pub(super) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Makes renames and creations in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Removes `path` if it exists.
pub(super) fn remove_if_present(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

/// Replaces `path` atomically with what `write` produces (see the module docs).
pub(super) fn replace_atomically(
    dir: &Path,
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<(), StateError> {
    let temp = Paths::temp_of(path);
    remove_if_present(&temp)?;
    let file = create_private(&temp).map_err(|e| io_error(&temp, e))?;
    let mut out = BufWriter::new(&file);
    write(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| io_error(&temp, e))?;
    drop(out);
    file.sync_all().map_err(|e| io_error(&temp, e))?;
    fs::rename(&temp, path).map_err(|e| io_error(path, e))?;
    sync_dir(dir)
}

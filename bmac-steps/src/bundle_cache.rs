//! The local cache of downloaded release bundles, keyed by their SHA-256.
//!
//! A bundle given by URL (`bundle = { url, sha256 }`) is downloaded once — by the provider that
//! applies it — and kept at `<root>/bundles/sha256/<hex>`, so later runs, and machines with no
//! route to the release host (copy the cache over), use the copy instead of the network.
//! The root is, first to last: `$BMAC_CACHE_DIR`, `$XDG_CACHE_HOME/bmac`, `$HOME/.cache/bmac`.
//!
//! Invariants and why:
//! - **Content-addressed.** A file is stored under the digest of its bytes, and only after they
//!   were checked against the digest the spec pins, so a URL that now serves something else
//!   cannot change what a pinned spec installs. [`BundleCache::get`] hashes the file again on
//!   every read: a damaged copy is reported as absent (and is replaced by the next download),
//!   never used.
//! - **Atomic writes.** A download is written to a temporary file in the same directory and
//!   renamed into place, so a crash or a concurrent run never leaves a half-written bundle under
//!   a digest name.
//! - **Private.** Directories are created `0700` and files `0600`: a bundle is not secret, but
//!   the cache decides what gets applied to clusters, so other users must not be able to plant
//!   files in it.
//! - Reading the cache never touches the network; the plan and validation use only this.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The environment variable that moves the cache (tests, CI, air-gapped hand-offs).
pub const CACHE_DIR_VAR: &str = "BMAC_CACHE_DIR";

/// A directory of bundles stored by digest (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleCache {
    root: PathBuf,
}

impl BundleCache {
    /// A cache rooted at `root` (bundles live under `root/bundles/sha256/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BundleCache { root: root.into() }
    }

    /// The user's cache, located from environment variables read through `var`:
    /// `BMAC_CACHE_DIR`, else `XDG_CACHE_HOME/bmac`, else `HOME/.cache/bmac`; `None` when none
    /// of them is set (no cache: every URL bundle is downloaded).
    pub fn locate(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        set(CACHE_DIR_VAR)
            .or_else(|| set("XDG_CACHE_HOME").map(|d| d.join("bmac")))
            .or_else(|| set("HOME").map(|d| d.join(".cache").join("bmac")))
            .map(BundleCache::new)
    }

    /// [`BundleCache::locate`] over the process environment.
    pub fn from_env() -> Option<Self> {
        BundleCache::locate(|name| std::env::var(name).ok())
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bundle with this digest is (or would be) kept.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("bundles")
            .join("sha256")
            .join(normalise(sha256))
    }

    /// The cached bytes of the bundle with this digest, checked against it; `None` when there
    /// is no copy or the copy is damaged (its bytes no longer hash to its name).
    pub fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let bytes = match std::fs::read(self.path(sha256)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok((sha256_hex(&bytes) == normalise(sha256)).then_some(bytes))
    }

    /// Stores `bytes` under their own digest (atomically, `0600` in `0700` directories) and
    /// returns the path. The caller has already checked them against the pinned digest.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let digest = sha256_hex(bytes);
        let path = self.path(&digest);
        let dir = path.parent().unwrap_or(&self.root);
        create_private_dir(dir)?;
        let tmp = dir.join(format!(".{digest}.{}.tmp", std::process::id()));
        let written = write_private(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map(|()| path)
    }
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pinned digest as stored: lowercase, without a `sha256:` prefix.
pub fn normalise(sha256: &str) -> String {
    sha256
        .trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_found_in_the_documented_order() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        }
        let all = [
            ("BMAC_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            BundleCache::locate(env(&all)).unwrap().root(),
            Path::new("/c")
        );
        assert_eq!(
            BundleCache::locate(env(&all[1..])).unwrap().root(),
            Path::new("/x/bmac")
        );
        assert_eq!(
            BundleCache::locate(env(&all[2..])).unwrap().root(),
            Path::new("/h/.cache/bmac")
        );
        assert_eq!(BundleCache::locate(env(&[("BMAC_CACHE_DIR", "")])), None);
    }

    #[test]
    fn stored_bundles_come_back_private_and_a_damaged_copy_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BundleCache::new(dir.path().join("cache"));
        let digest = sha256_hex(b"kind: Namespace\n");
        assert_eq!(cache.get(&digest).unwrap(), None);
        let path = cache.put(b"kind: Namespace\n").unwrap();
        assert_eq!(path, cache.path(&digest));
        assert_eq!(
            cache
                .get(&format!("sha256:{}", digest.to_uppercase()))
                .unwrap()
                .as_deref(),
            Some(&b"kind: Namespace\n"[..])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // Storing again (another run) replaces the file atomically and leaves no temp file.
        cache.put(b"kind: Namespace\n").unwrap();
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(&digest)]);
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(
            cache.get(&digest).unwrap(),
            None,
            "a damaged copy is absent"
        );
    }
}

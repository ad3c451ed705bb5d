//! Getting a release bundle's verified bytes: from a local file, from the bundle cache, or —
//! only when a step is *applied* — downloaded over HTTPS.
//!
//! Invariants and why:
//! - **Verified before use.** Whatever the source, the bytes are checked against the pinned
//!   SHA-256 before anything parses them, so nothing of a tampered, truncated or re-released
//!   bundle reaches the cluster — not even its first object.
//! - **Cache first.** A URL bundle is looked up in the [`BundleCache`] by its pinned digest; a
//!   hit is used without any network access (later runs, air-gapped machines). A miss is
//!   downloaded, verified, then stored (atomically, `0600`) before it is used. Failing to store
//!   it is not fatal to the apply (the bytes were verified); it is logged.
//! - **Observe never downloads** ([`Need::CachedOnly`]): `plan` and `drift` refresh through
//!   observe, and validation and planning must not touch the network. A URL bundle that is not
//!   cached is then observed from what the last apply recorded.
//! - **HTTPS only**, through rustls with the ring provider (the one kube-rs uses). Trusted
//!   roots are the platform's (on Linux the system store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`
//!   when set) plus any CA file given with [`BundleFetch::with_ca_file`]. Proxies come from the
//!   standard variables (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, lower-case too), as curl reads
//!   them. Redirects (release hosts redirect to their storage) are followed up to 10 times.
//! - Errors name the URL and are classified: a digest mismatch, 4xx (404 …) and an unusable
//!   URL are permanent; a network failure or 5xx is retryable — and when no copy is cached it
//!   says so, since that is what an air-gapped machine needs to hear.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bmac_core::ProviderError;
use bmac_steps::bundle_cache::{normalise, sha256_hex};
use bmac_steps::BundleCache;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// How a release bundle is fetched: the cache, extra trusted CAs and the download timeout.
#[derive(Debug, Clone)]
pub struct BundleFetch {
    cache: Option<BundleCache>,
    ca_files: Vec<PathBuf>,
    timeout: Duration,
    client: Arc<OnceLock<reqwest::Client>>,
}

impl Default for BundleFetch {
    fn default() -> Self {
        BundleFetch {
            cache: None,
            ca_files: Vec::new(),
            timeout: Duration::from_secs(120),
            client: Arc::default(),
        }
    }
}

/// Whether a call may download (apply) or must make do with the cache (observe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Download on a cache miss.
    Download,
    /// Never touch the network; `None` on a cache miss.
    CachedOnly,
}

/// Why a bundle cannot be had (every message names the source).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FetchError {
    /// The bytes do not hash to the pinned digest.
    #[error("bundle `{source_name}` has sha256 {actual}, but the spec pins {expected}; nothing was applied")]
    #[diagnostic(
        code(bmac::bundle::digest_mismatch),
        help("if the release changed on purpose, pin its new digest; otherwise the download was tampered with or truncated — bmac applies nothing it cannot verify")
    )]
    DigestMismatch {
        /// The URL or path.
        source_name: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// The server answered with an error status.
    #[error("cannot download bundle `{url}`: the server answered {status}; nothing was applied")]
    #[diagnostic(
        code(bmac::bundle::http_status),
        help("check the URL (a release asset's download URL, not its web page) and that the release exists")
    )]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The server could not be reached (or the transfer failed) and no copy is cached.
    #[error("cannot download bundle `{url}` and no copy is cached: {reason}; nothing was applied")]
    #[diagnostic(
        code(bmac::bundle::unreachable),
        help("on a machine without network access, copy the cache ({cache}) from a machine that applied this spec; behind a proxy, set HTTPS_PROXY")
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
        /// Where the cache is (or that there is none).
        cache: String,
    },
    /// The URL or the TLS settings cannot be used at all.
    #[error("cannot download bundle `{url}`: {reason}")]
    #[diagnostic(
        code(bmac::bundle::unusable),
        help("bundles are downloaded over https://; a CA file must hold PEM certificates")
    )]
    Unusable {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A local bundle file cannot be read.
    #[error("cannot read bundle `{source_name}`: {error}")]
    #[diagnostic(
        code(bmac::bundle::read),
        help("paths are relative to the spec file; check that the file exists and is readable")
    )]
    Read {
        /// The path.
        source_name: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
}

impl FetchError {
    fn code(&self) -> &'static str {
        match self {
            FetchError::DigestMismatch { .. } => "bmac::bundle::digest_mismatch",
            FetchError::Status { .. } => "bmac::bundle::http_status",
            FetchError::Unreachable { .. } => "bmac::bundle::unreachable",
            FetchError::Unusable { .. } => "bmac::bundle::unusable",
            FetchError::Read { .. } => "bmac::bundle::read",
        }
    }

    /// As a provider error: retryable only when the network or the server may recover.
    pub(crate) fn into_provider_error(self) -> ProviderError {
        let retryable = match &self {
            FetchError::Unreachable { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        };
        let message = self.to_string();
        let code = self.code();
        let err = if retryable {
            ProviderError::retryable(message)
        } else {
            ProviderError::permanent(message)
        };
        err.with_code(code).with_source(self)
    }
}

/// Whether a bundle source is a URL (anything else is a local path or `file://`).
pub(crate) fn is_url(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

impl BundleFetch {
    /// Fetching with no cache and the platform's roots only.
    pub fn new() -> Self {
        BundleFetch::default()
    }

    /// Keeps downloaded bundles in `cache` and uses its copies.
    pub fn with_cache(mut self, cache: BundleCache) -> Self {
        self.cache = Some(cache);
        self.client = Arc::default();
        self
    }

    /// Also trusts the CA certificates in this PEM file (a private mirror's CA, a test CA).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self.client = Arc::default();
        self
    }

    /// How long one download may take (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.client = Arc::default();
        self
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&BundleCache> {
        self.cache.as_ref()
    }

    /// The verified bytes of the bundle at `source` (a URL, a path or a `file://` URL);
    /// `Ok(None)` only for a URL not cached when `need` is [`Need::CachedOnly`].
    pub(crate) async fn bytes(
        &self,
        source: &str,
        sha256: &str,
        need: Need,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let expected = normalise(sha256);
        if !is_url(source) {
            let path = source.strip_prefix("file://").unwrap_or(source);
            let bytes = std::fs::read(path).map_err(|error| FetchError::Read {
                source_name: source.to_owned(),
                error,
            })?;
            return verified(source, &expected, bytes).map(Some);
        }
        if let Some(bytes) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&expected).ok().flatten())
        {
            return Ok(Some(bytes));
        }
        if need == Need::CachedOnly {
            return Ok(None);
        }
        let bytes = verified(source, &expected, self.download(source).await?)?;
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.put(&bytes) {
                tracing::warn!(
                    "bundle `{source}` was verified but could not be cached under {}: {e}",
                    cache.root().display()
                );
            }
        }
        Ok(Some(bytes))
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if !url.to_ascii_lowercase().starts_with("https://") {
            return Err(FetchError::Unusable {
                url: url.to_owned(),
                reason: "bmac downloads bundles over https:// only".into(),
            });
        }
        let client = self.client(url)?;
        let unreachable = |e: reqwest::Error| FetchError::Unreachable {
            url: url.to_owned(),
            reason: chain(&e),
            cache: self.cache.as_ref().map_or_else(
                || "no cache is configured".to_owned(),
                |c| c.root().display().to_string(),
            ),
        };
        let response = client.get(url).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        Ok(response.bytes().await.map_err(unreachable)?.to_vec())
    }

    fn client(&self, url: &str) -> Result<reqwest::Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let unusable = |reason: String| FetchError::Unusable {
            url: url.to_owned(),
            reason,
        };
        let mut roots: Vec<CertificateDer<'static>> = Vec::new();
        for file in &self.ca_files {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| unusable(format!("CA file `{}`: {e}", file.display())))?;
            roots.extend(certs);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| unusable(format!("the platform's TLS roots: {e}")))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::limited(10))
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("bmac/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unusable(chain(&e)))?;
        Ok(self.client.get_or_init(|| client).clone())
    }
}

fn verified(source: &str, expected: &str, bytes: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    let actual = sha256_hex(&bytes);
    if actual == expected {
        Ok(bytes)
    } else {
        Err(FetchError::DigestMismatch {
            source_name: source.to_owned(),
            expected: expected.to_owned(),
            actual,
        })
    }
}

/// An error and its causes, `: `-joined (reqwest's own text stops at the outermost).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_files_and_cached_copies_are_verified_and_observe_never_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.yaml");
        std::fs::write(&path, b"kind: Namespace\n").unwrap();
        let good = sha256_hex(b"kind: Namespace\n");
        let fetch = BundleFetch::new().with_cache(BundleCache::new(dir.path().join("cache")));
        let source = path.to_str().unwrap();
        let got = fetch.bytes(source, &good, Need::Download).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"kind: Namespace\n"[..]));
        let err = fetch
            .bytes(source, &"0".repeat(64), Need::Download)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
        assert!(!err.into_provider_error().is_retryable());

        // A URL that is not cached is not fetched by observe …
        let url = "https://127.0.0.1:1/never-contacted.yaml";
        assert!(fetch
            .bytes(url, &good, Need::CachedOnly)
            .await
            .unwrap()
            .is_none());
        // … and a cached copy is used without the network (port 1 answers nothing).
        fetch.cache().unwrap().put(b"kind: Namespace\n").unwrap();
        let got = fetch.bytes(url, &good, Need::Download).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"kind: Namespace\n"[..]));
    }

    #[tokio::test]
    async fn plain_http_is_refused_and_a_dead_server_is_retryable_naming_the_url() {
        let fetch = BundleFetch::new();
        let sha = "0".repeat(64);
        let err = fetch
            .bytes("http://127.0.0.1:1/b.yaml", &sha, Need::Download)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unusable { .. }), "{err}");
        let err = fetch
            .bytes("https://127.0.0.1:1/b.yaml", &sha, Need::Download)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("https://127.0.0.1:1/b.yaml"), "{text}");
        assert!(text.contains("no copy is cached"), "{text}");
        let e = err.into_provider_error();
        assert!(e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("bmac::bundle::unreachable"));
    }
}

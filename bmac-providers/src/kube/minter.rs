//! The extension point for credential sources the kube provider cannot mint itself: a
//! [`TokenMinter`] per source type (`eks`, `gke`, `aks`, `sim`), registered with
//! [`KubeProvider::with_minter`](super::KubeProvider::with_minter).
//!
//! A client for such a source carries a [`TokenCache`] in its request stack: every request asks
//! it for the `Authorization` header; it mints on first use and again shortly before the token
//! expires (a minute before, or half the token's lifetime when that is shorter), and keeps the
//! token in memory only. Concurrent requests wait for one mint instead of minting each.
//! After a 401 the client — and with it the cached token — is dropped and built again, so the
//! retry mints afresh (`access.rs`).
//!
//! Tokens are ephemeral: [`MintedToken`] never prints its token (its `Debug` redacts it), the
//! header is marked sensitive, and nothing here writes or logs it. A minter's own errors must
//! not contain the token either.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bmac_core::ProviderError;
use bmac_steps::CredentialSource;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use kube::client::Body;
use secrecy::{ExposeSecret as _, SecretString};
use tower::filter::AsyncPredicate;
use tower::BoxError;

/// How long before expiry a token is minted again (at most; see the module docs).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Mints bearer tokens for one type of [`CredentialSource`] (an EKS presigned token, a GKE
/// access token, …). Implemented by cloud providers and registered with
/// [`KubeProvider::with_minter`](super::KubeProvider::with_minter).
#[async_trait]
pub trait TokenMinter: Send + Sync {
    /// A fresh token for `source`. Called on first use and whenever the previous token is about
    /// to expire or was rejected (401). Errors keep their class (a throttled token API is
    /// retryable) and must not contain the token.
    async fn mint(&self, source: &CredentialSource) -> Result<MintedToken, ProviderError>;
}

/// A bearer token a [`TokenMinter`] made, and when it stops working.
#[derive(Clone)]
pub struct MintedToken {
    token: SecretString,
    expires_at: Option<SystemTime>,
}

impl MintedToken {
    /// A token that does not say when it expires (kept until a 401 rejects it).
    pub fn new(token: impl Into<String>) -> Self {
        MintedToken {
            token: SecretString::from(token.into()),
            expires_at: None,
        }
    }

    /// The same token, expiring at `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// When the token expires, if the minter said.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// When to mint again: shortly before expiry.
    fn refresh_at(&self, minted_at: SystemTime) -> Option<SystemTime> {
        let expires = self.expires_at?;
        let lifetime = expires.duration_since(minted_at).unwrap_or_default();
        Some(expires - REFRESH_BEFORE_EXPIRY.min(lifetime / 2))
    }
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"(redacted)")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

struct Cached {
    header: HeaderValue,
    refresh_at: Option<SystemTime>,
}

/// The token of one client: minted on demand, kept until shortly before it expires.
pub(crate) struct TokenCache {
    minter: Arc<dyn TokenMinter>,
    source: CredentialSource,
    current: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenCache {
    /// An empty cache minting through `minter` for `source`.
    pub(crate) fn new(minter: Arc<dyn TokenMinter>, source: CredentialSource) -> Self {
        TokenCache {
            minter,
            source,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The `Authorization` header to send now (minting when there is no fresh token).
    pub(crate) async fn bearer(&self) -> Result<HeaderValue, ProviderError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some(cached) = current.as_ref() {
            if cached.refresh_at.is_none_or(|at| now < at) {
                return Ok(cached.header.clone());
            }
        }
        let minted = self.minter.mint(&self.source).await?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", minted.token.expose_secret()))
            .map_err(|_| {
                ProviderError::permanent(format!(
                    "the token minted for {} is not a valid HTTP header value",
                    self.source
                ))
            })?;
        header.set_sensitive(true);
        *current = Some(Cached {
            header: header.clone(),
            refresh_at: minted.refresh_at(now),
        });
        Ok(header)
    }
}

/// The request-stack step that puts the cache's token on every request (a
/// `tower::filter::AsyncFilterLayer` predicate; a mint error fails the request with the
/// minter's [`ProviderError`], which `error.rs` unwraps).
#[derive(Clone)]
pub(crate) struct MintedAuth(pub Arc<TokenCache>);

impl AsyncPredicate<Request<Body>> for MintedAuth {
    type Future = Pin<Box<dyn Future<Output = Result<Request<Body>, BoxError>> + Send>>;
    type Request = Request<Body>;

    fn check(&mut self, mut request: Request<Body>) -> Self::Future {
        let cache = self.0.clone();
        Box::pin(async move {
            let header = cache.bearer().await?;
            request.headers_mut().insert(AUTHORIZATION, header);
            Ok(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Mints `token-N`, expiring `lifetime` from now (or never).
    struct Counting {
        calls: AtomicUsize,
        lifetime: Option<Duration>,
    }

    #[async_trait]
    impl TokenMinter for Counting {
        async fn mint(&self, _: &CredentialSource) -> Result<MintedToken, ProviderError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let token = MintedToken::new(format!("token-{n}"));
            Ok(match self.lifetime {
                Some(l) => token.expiring_at(SystemTime::now() + l),
                None => token,
            })
        }
    }

    fn counting(lifetime: Option<Duration>) -> (Arc<Counting>, TokenCache) {
        let minter = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime,
        });
        let source = CredentialSource::Eks {
            cluster: "shop".into(),
            region: "eu-west-1".into(),
        };
        (minter.clone(), TokenCache::new(minter, source))
    }

    #[tokio::test]
    async fn a_token_is_minted_once_and_kept_until_shortly_before_it_expires() {
        let (minter, cache) = counting(Some(Duration::from_secs(900)));
        for _ in 0..3 {
            assert_eq!(cache.bearer().await.unwrap(), "Bearer token-1");
        }
        assert_eq!(minter.calls.load(Ordering::SeqCst), 1);

        // A token living less than twice the margin is kept for half its life; one that is
        // already at its end is minted again on the next request.
        let (minter, cache) = counting(Some(Duration::ZERO));
        cache.bearer().await.unwrap();
        assert_eq!(cache.bearer().await.unwrap(), "Bearer token-2");
        assert_eq!(minter.calls.load(Ordering::SeqCst), 2);

        let (minter, cache) = counting(None);
        cache.bearer().await.unwrap();
        cache.bearer().await.unwrap();
        assert_eq!(minter.calls.load(Ordering::SeqCst), 1, "no expiry: kept");
    }

    #[test]
    fn refresh_comes_a_minute_before_expiry_or_at_half_life() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let long = MintedToken::new("t").expiring_at(now + Duration::from_secs(900));
        assert_eq!(long.refresh_at(now), Some(now + Duration::from_secs(840)));
        let short = MintedToken::new("t").expiring_at(now + Duration::from_secs(40));
        assert_eq!(short.refresh_at(now), Some(now + Duration::from_secs(20)));
        assert_eq!(MintedToken::new("t").refresh_at(now), None);
    }

    #[test]
    fn a_minted_token_never_prints() {
        let token = MintedToken::new("s3cr3t-token").expiring_at(SystemTime::UNIX_EPOCH);
        let shown = format!("{token:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("(redacted)"), "{shown}");
    }
}

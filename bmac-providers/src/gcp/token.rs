//! [`GkeMinter`]: access tokens for GKE clusters, from the same Application Default
//! Credentials the provider's clients use.
//!
//! GKE's API server accepts a Google OAuth access token of a principal with a GKE IAM role (or
//! RBAC binding) as a bearer token — what `gke-gcloud-auth-plugin` hands kubectl. google-cloud-auth
//! caches each token and refreshes it before it expires; the kube provider asks again at least
//! every [`ASK_AGAIN`] (so a refreshed token is picked up without waiting for a 401), and after a
//! 401. Tokens are never written, logged or put in an error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bmac_core::ProviderError;
use bmac_steps::CredentialSource;

use super::Gcp;
use crate::kube::{MintedToken, TokenMinter};

/// How long the kube provider keeps a token before asking the credentials again.
pub const ASK_AGAIN: Duration = Duration::from_secs(5 * 60);

/// Mints GKE tokens (see the module docs).
#[derive(Debug, Clone)]
pub struct GkeMinter {
    gcp: Arc<Gcp>,
}

impl GkeMinter {
    /// A minter on the provider's clients.
    pub fn new(gcp: Arc<Gcp>) -> Self {
        GkeMinter { gcp }
    }
}

#[async_trait]
impl TokenMinter for GkeMinter {
    async fn mint(&self, source: &CredentialSource) -> Result<MintedToken, ProviderError> {
        let CredentialSource::Gke { cluster, .. } = source else {
            return Err(ProviderError::permanent(format!(
                "the GKE minter cannot mint for {source}"
            )));
        };
        let clients = self.gcp.clients().await?;
        let token = clients.credentials.access_token().await.map_err(|e| {
            let message = format!(
                "no Google access token for GKE cluster {cluster:?}: {}",
                crate::cloud::describe(&e)
            );
            if e.is_transient() {
                ProviderError::retryable(message)
            } else {
                ProviderError::permanent(message)
            }
            .with_code("bmac::gcp::credentials")
        })?;
        Ok(MintedToken::new(token.token).expiring_at(SystemTime::now() + ASK_AGAIN))
    }
}

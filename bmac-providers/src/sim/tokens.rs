//! Short-lived cluster tokens, as a managed cloud hands them out: the simulated cluster's token
//! service (the server side) and the provider's in-memory token cache (the client side).
//!
//! A simulated cluster step outputs a plain [`CredentialSource::Sim`] naming its cluster, never
//! a token. Every call for an in-cluster step (one with a `credentials` input) authenticates
//! first, as a real API server request does:
//! 1. the provider takes the cached token for the cluster, or mints one when there is none or
//!    when less than a fifth of its lifetime is left (as kube-rs refreshes exec credentials
//!    before they expire);
//! 2. the cluster's API server admits it or answers `401 Unauthorized` (unknown token, expired,
//!    or used up);
//! 3. on a 401 the provider drops the token and mints a fresh one, which the server admits as
//!    it issues it (a fresh token is always good, so the call goes on: one re-mint per call).
//!
//! Tokens live in this process's memory only: they never reach an output, the cloud's log,
//! the journal, a plan or an event. A new process mints new ones (an old process's tokens are
//! unknown to it, like tokens issued before a key rotation).
//!
//! Lifetime and rotation are [`SimConfig::token_ttl`](super::SimConfig::token_ttl) (real
//! world, scaled by the speed; EKS's 15 minutes by default) and
//! [`SimConfig::token_uses`](super::SimConfig::token_uses) (how many calls a token admits; `1`
//! rotates the token on every call). A token is [`token`]`(seed, cluster_id, n)` for the
//! cluster's `n`th mint in this process: deterministic like everything in the simulator, so a
//! leak check can recompute every token a run minted and look for it (and its digests) in
//! what the run wrote.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bmac_core::provider::ProviderError;
use bmac_core::step::Inputs;
use bmac_steps::config::INPUT_CREDENTIALS;
use bmac_steps::CredentialSource;
use tokio::time::Instant;

use super::seed;

/// What every simulated token starts with (so a leak scan can look for any of them).
pub const TOKEN_PREFIX: &str = "simtok.";

/// The shortest lifetime a token is given, whatever the speed: at speed 0 every scaled
/// lifetime would be zero and no token could ever be used.
const MIN_TTL: Duration = Duration::from_millis(100);

/// The `n`th token minted for `cluster_id` in a process with `seed` (see the module docs).
pub fn token(seed: u64, cluster_id: &str, n: u64) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        seed::hex(seed, &format!("token:{n}"), cluster_id, 48)
    )
}

/// A token the cluster's API server has issued.
#[derive(Debug)]
struct Issued {
    expires_at: Instant,
    /// Calls it still admits; `None` for unlimited.
    uses_left: Option<u32>,
}

/// A token the provider holds for one cluster.
#[derive(Debug, Clone)]
struct Cached {
    token: String,
    /// When the provider stops using it (before the server stops admitting it).
    refresh_at: Instant,
}

/// Why the API server refused a token (a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not one this cluster issued (or issued and forgotten).
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Rotated: it admitted as many calls as it may.
    UsedUp,
}

/// What one authentication did, for the provider's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AuthOutcome {
    /// Tokens minted for it (0, 1 or 2).
    pub minted: u64,
    /// 401s it received before it was admitted (or gave up).
    pub unauthorized: u64,
}

/// The token service and cache of one [`SimProvider`](super::SimProvider).
#[derive(Debug)]
pub(crate) struct Tokens {
    seed: u64,
    ttl: Duration,
    uses: Option<u32>,
    /// Server side: every token issued and not yet forgotten.
    issued: Mutex<HashMap<String, Issued>>,
    /// Server side: how many tokens each cluster has minted in this process.
    minted: Mutex<HashMap<String, u64>>,
    /// Client side: the token in use per cluster.
    cache: Mutex<HashMap<String, Cached>>,
}

impl Tokens {
    /// A token service whose tokens live `ttl` (already scaled) and admit `uses` calls.
    pub(crate) fn new(seed: u64, ttl: Duration, uses: Option<u32>) -> Self {
        Tokens {
            seed,
            ttl: ttl.max(MIN_TTL),
            uses,
            issued: Mutex::new(HashMap::new()),
            minted: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates a call for `step` with its `credentials` input, if it has one (steps
    /// without one talk to the cloud, not to a cluster). See the module docs for the protocol.
    pub(crate) fn authenticate(
        &self,
        step: &str,
        inputs: &Inputs,
    ) -> (AuthOutcome, Result<(), ProviderError>) {
        let mut outcome = AuthOutcome::default();
        let Some(input) = inputs.get(INPUT_CREDENTIALS) else {
            return (outcome, Ok(()));
        };
        let cluster = match input.value().map(|v| {
            serde_json::from_value::<CredentialSource>(v.clone()).map_err(|e| e.to_string())
        }) {
            Some(Ok(CredentialSource::Sim { cluster_id })) => cluster_id,
            Some(Ok(other)) => {
                return (
                    outcome,
                    Err(ProviderError::permanent(format!(
                        "the simulated cloud cannot authenticate `{step}` with a `{}` credential \
                         source: in-cluster steps on `provider = \"sim\"` take the `sim` source \
                         of a simulated cluster",
                        other.type_name()
                    ))
                    .with_code("InvalidCredentialSource")),
                )
            }
            Some(Err(problem)) => {
                return (
                    outcome,
                    Err(ProviderError::permanent(format!(
                        "the `credentials` input of `{step}` is not a credential source: {problem}"
                    ))
                    .with_code("InvalidCredentialSource")),
                )
            }
            None => {
                return (
                    outcome,
                    Err(ProviderError::permanent(format!(
                        "the `credentials` input of `{step}` has no value"
                    ))
                    .with_code("InvalidCredentialSource")),
                )
            }
        };
        if let Some(token) = self.cached(&cluster) {
            match self.admit(&token) {
                Ok(()) => return (outcome, Ok(())),
                Err(_) => {
                    outcome.unauthorized += 1;
                    self.forget(&cluster, &token);
                }
            }
        }
        // A fresh token is admitted as it is issued: no other call can use it up or let it
        // expire in between.
        outcome.minted += 1;
        self.mint(&cluster);
        (outcome, Ok(()))
    }

    /// The cached token for `cluster`, unless it is due for refresh.
    fn cached(&self, cluster: &str) -> Option<String> {
        let cache = lock(&self.cache);
        cache
            .get(cluster)
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// Mints a new token for `cluster` (server side), spends its first use on the call that
    /// asked for it, and caches it (client side).
    fn mint(&self, cluster: &str) -> String {
        let n = {
            let mut minted = lock(&self.minted);
            let next = minted.entry(cluster.to_owned()).or_insert(0);
            let n = *next;
            *next += 1;
            n
        };
        let token = token(self.seed, cluster, n);
        let now = Instant::now();
        let mut issued = lock(&self.issued);
        issued.retain(|_, t| t.expires_at > now);
        issued.insert(
            token.clone(),
            Issued {
                expires_at: now + self.ttl,
                uses_left: self.uses.map(|n| n.saturating_sub(1)),
            },
        );
        drop(issued);
        lock(&self.cache).insert(
            cluster.to_owned(),
            Cached {
                token: token.clone(),
                refresh_at: now + self.ttl.mul_f64(0.8),
            },
        );
        token
    }

    /// The API server's check of one request's token.
    fn admit(&self, token: &str) -> Result<(), Refusal> {
        let mut issued = lock(&self.issued);
        let Some(entry) = issued.get_mut(token) else {
            return Err(Refusal::Unknown);
        };
        if Instant::now() >= entry.expires_at {
            issued.remove(token);
            return Err(Refusal::Expired);
        }
        match &mut entry.uses_left {
            Some(0) => Err(Refusal::UsedUp),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Drops `token` from the cache if it is still the one held for `cluster`.
    fn forget(&self, cluster: &str, token: &str) {
        let mut cache = lock(&self.cache);
        if cache.get(cluster).is_some_and(|c| c.token == token) {
            cache.remove(cluster);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmac_core::step::OutputValue;
    use serde_json::json;

    fn inputs(source: serde_json::Value) -> Inputs {
        let mut inputs = Inputs::default();
        inputs
            .0
            .insert(INPUT_CREDENTIALS.into(), OutputValue::Plain(source));
        inputs
    }

    fn sim_source() -> Inputs {
        inputs(json!({"type": "sim", "cluster_id": "sim-0123456789ab"}))
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_minted_once_and_reused_until_it_is_due() {
        let tokens = Tokens::new(7, Duration::from_secs(10), None);
        let (first, ok) = tokens.authenticate("ns", &sim_source());
        assert!(ok.is_ok());
        assert_eq!(first.minted, 1);
        let (again, ok) = tokens.authenticate("ns", &sim_source());
        assert!(ok.is_ok());
        assert_eq!(again, AuthOutcome::default(), "cached token reused");
        // Past four fifths of its life the client mints before the server would refuse.
        tokio::time::advance(Duration::from_secs(9)).await;
        let (refreshed, ok) = tokens.authenticate("ns", &sim_source());
        assert!(ok.is_ok());
        assert_eq!((refreshed.minted, refreshed.unauthorized), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_is_refused_once_then_reminted() {
        let tokens = Tokens::new(7, Duration::from_secs(10), Some(1));
        assert!(tokens.authenticate("ns", &sim_source()).1.is_ok());
        let (second, ok) = tokens.authenticate("ns", &sim_source());
        assert!(ok.is_ok());
        assert_eq!((second.minted, second.unauthorized), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_or_used_up_token_is_refused_by_the_server() {
        let tokens = Tokens::new(7, Duration::from_secs(10), None);
        let token = tokens.mint("c");
        assert_eq!(tokens.admit(&token), Ok(()));
        let once = Tokens::new(7, Duration::from_secs(10), Some(1));
        let spent = once.mint("c");
        assert_eq!(
            once.admit(&spent),
            Err(Refusal::UsedUp),
            "minted for one call, spent"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(tokens.admit(&token), Err(Refusal::Expired));
        assert_eq!(tokens.admit("simtok.forged"), Err(Refusal::Unknown));
    }

    #[test]
    fn tokens_are_recomputable_and_distinct() {
        assert_eq!(token(1, "c", 0), token(1, "c", 0));
        assert_ne!(token(1, "c", 0), token(1, "c", 1));
        assert_ne!(token(1, "c", 0), token(2, "c", 0));
        assert!(token(1, "c", 0).starts_with(TOKEN_PREFIX));
    }

    #[test]
    fn other_sources_and_missing_values_are_permanent_errors() {
        let tokens = Tokens::new(7, Duration::from_secs(10), None);
        let kube = inputs(json!({"type": "kubeconfig", "context": "prod"}));
        let err = tokens.authenticate("ns", &kube).1.unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("`kubeconfig` credential source"),
            "{err}"
        );
        let bad = inputs(json!({"type": "vault"}));
        assert!(tokens.authenticate("ns", &bad).1.is_err());
        assert!(tokens.authenticate("ns", &Inputs::default()).1.is_ok());
    }
}

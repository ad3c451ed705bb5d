//! How the provider reaches a cluster: [`ClusterAccess`] (endpoint, CA, credentials) taken
//! from the cluster step's outputs at execution time, the client cache, and the one retry a
//! 401 earns.
//!
//! Invariants:
//! - A Kubernetes client is built from the step's *resolved inputs* when the step runs, never
//!   at plan time: the cluster may not exist when the plan is made (design decision 1).
//! - Credentials are a [`CredentialSource`] — a plain value saying how to mint them — so any
//!   step, in any process, can rebuild its client from recorded inputs: the executor hands a
//!   deleted step its cluster step's *recorded* outputs, and the source is among them as it
//!   was. Tokens are minted when a client is built or a request is sent (`auth.rs`,
//!   `minter.rs`) and live only in memory.
//! - For embedders and test harnesses, `credentials` may instead be *static* credentials (a
//!   token, or a client certificate and key) given as a **sensitive** value; no built-in step
//!   produces them, and a plain one is refused rather than used.
//! - Clients are cached per endpoint, CA digest and credentials: a source's JSON (it holds no
//!   secret) or the SHA-256 of static credentials. Steps of one cluster share a connection.
//! - On a 401 Unauthorized, [`ClientCache::with_connection`] drops the cached client, builds
//!   it again (minting afresh: the kubeconfig is re-read, the exec plugin or minter runs again)
//!   and makes the call once more; a second 401 is a permanent error naming the source. The
//!   retried call is a whole provider call, which is safe because applies are server-side
//!   applies and deletes treat 404 as done.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bmac_core::{Inputs, OutputValue, ProviderError};
use bmac_steps::config::{INPUT_CA_DATA, INPUT_CREDENTIALS, INPUT_ENDPOINT};
use bmac_steps::CredentialSource;
use kube::Client;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::is_unauthorized;
use super::minter::TokenMinter;
use super::objects::Discovery;

/// How bmac authenticates to a cluster.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// How to mint credentials (what every built-in cluster step outputs).
    Source(CredentialSource),
    /// Credentials handed over as a sensitive input by an embedder; `digest` is the SHA-256 of
    /// their JSON (the cache key).
    Static {
        secret: StaticCredentials,
        digest: [u8; 32],
    },
}

/// Static credentials, kept as secrets so no `Debug` prints them.
#[derive(Clone)]
pub(crate) enum StaticCredentials {
    /// A bearer token.
    Token(SecretString),
    /// Base64 PEM client certificate and key.
    ClientCertificate {
        certificate_data: String,
        key_data: SecretString,
    },
}

impl Credentials {
    /// Reads the `credentials` input: a source, or sensitive static credentials.
    fn from_input(input: &OutputValue) -> Result<Self, ProviderError> {
        let value = input.value().ok_or_else(|| {
            ProviderError::permanent(
                "input `credentials` is a secret known only by its digest (state keeps no \
                 secrets): the cluster step gave static credentials instead of a credential \
                 source, and those reach only the process that was handed them; apply the \
                 cluster step again in this run, or give it a credential source",
            )
        })?;
        // Accept the object itself or a JSON string that holds it.
        let parsed;
        let value = match value {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text).map_err(|_| {
                    ProviderError::permanent(
                        "input `credentials` is a string but not a JSON object (a credential \
                         source, or static credentials)",
                    )
                })?;
                &parsed
            }
            v => v,
        };
        if value.get("type").is_some() {
            return serde_json::from_value(value.clone())
                .map(Credentials::Source)
                .map_err(|e| {
                    // A source holds no secret, but a sensitive value might: say less of it.
                    let detail = if input.is_sensitive() {
                        String::new()
                    } else {
                        format!(": {e}")
                    };
                    ProviderError::permanent(format!(
                        "input `credentials` is not a credential source bmac knows{detail}"
                    ))
                });
        }
        if !input.is_sensitive() {
            return Err(ProviderError::permanent(
                "input `credentials` must be a credential source (an object with `type`, as \
                 the cluster step outputs); static credentials are accepted only as a \
                 sensitive value",
            ));
        }
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let secret = match (
            text("token"),
            text("client_certificate_data"),
            text("client_key_data"),
        ) {
            (Some(token), _, _) => StaticCredentials::Token(token.to_owned().into()),
            (None, Some(c), Some(k)) => StaticCredentials::ClientCertificate {
                certificate_data: c.to_owned(),
                key_data: k.to_owned().into(),
            },
            _ => {
                return Err(ProviderError::permanent(
                    "input `credentials` must be a credential source, or hold `token`, or \
                     `client_certificate_data` and `client_key_data`",
                ))
            }
        };
        Ok(Credentials::Static {
            secret,
            digest: Sha256::digest(value.to_string().as_bytes()).into(),
        })
    }

    /// For messages: the source (`kubeconfig context "prod"`), or which static kind.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::Source(source) => source.to_string(),
            Credentials::Static {
                secret: StaticCredentials::Token(_),
                ..
            } => "the static token given as input".to_owned(),
            Credentials::Static { .. } => "the static client certificate given as input".to_owned(),
        }
    }
}

/// Everything needed to talk to one cluster's API server.
#[derive(Clone)]
pub(crate) struct ClusterAccess {
    /// The API server URL.
    pub endpoint: String,
    /// Base64 PEM of the cluster CA; empty to trust the system roots.
    pub ca_data: String,
    /// How to authenticate.
    pub credentials: Credentials,
}

impl ClusterAccess {
    /// Reads the three cluster inputs of an in-cluster step.
    pub(crate) fn from_inputs(inputs: &Inputs) -> Result<Self, ProviderError> {
        let endpoint = inputs
            .str(INPUT_ENDPOINT)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| missing(INPUT_ENDPOINT))?;
        let ca_data = match inputs.get(INPUT_CA_DATA) {
            None => return Err(missing(INPUT_CA_DATA)),
            Some(v) => v.value().and_then(Value::as_str).unwrap_or("").to_owned(),
        };
        let input = inputs
            .get(INPUT_CREDENTIALS)
            .ok_or_else(|| missing(INPUT_CREDENTIALS))?;
        Ok(ClusterAccess {
            endpoint: endpoint.to_owned(),
            ca_data,
            credentials: Credentials::from_input(input)?,
        })
    }

    /// The cache key: endpoint, CA digest, and the source's JSON or the static digest.
    fn key(&self) -> ClientKey {
        let credentials = match &self.credentials {
            Credentials::Source(source) => source.to_value().to_string(),
            Credentials::Static { digest, .. } => {
                digest.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        ClientKey {
            endpoint: self.endpoint.clone(),
            ca: Sha256::digest(self.ca_data.as_bytes()).into(),
            credentials,
        }
    }
}

fn missing(name: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "in-cluster step has no `{name}` input; wire it to the cluster step's `{name}` output"
    ))
}

/// A client and the discovery results learnt through it.
#[derive(Clone)]
pub(crate) struct Connection {
    pub client: Client,
    pub discovery: Arc<Discovery>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    endpoint: String,
    ca: [u8; 32],
    credentials: String,
}

/// One provider call made with a connection (boxed: the call may be made twice).
pub(crate) type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// One cache entry, filled once: steps of one cluster that start together wait for one client
/// (one exec plugin run, one mint) instead of each building its own.
type Slot = Arc<tokio::sync::OnceCell<Connection>>;

/// Clients by endpoint, CA and credentials, and the token minters they may need.
#[derive(Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<ClientKey, Slot>>,
    /// Token minters by source type (`eks`, `gke`, …).
    pub minters: HashMap<String, Arc<dyn TokenMinter>>,
}

impl ClientCache {
    /// Runs `call` with the connection for `access`. On a 401 the cached client is dropped,
    /// built again (minting afresh) and `call` runs once more; a second 401 is permanent and
    /// names the credentials' source.
    pub(crate) async fn with_connection<'a, T>(
        &self,
        access: &ClusterAccess,
        call: impl Fn(Connection) -> Call<'a, T>,
    ) -> Result<T, ProviderError> {
        let first = self.connect(access).await?;
        match call(first.clone()).await {
            Err(e) if is_unauthorized(&e) => {
                self.forget(access, &first);
                let again = self.connect(access).await?;
                call(again).await.map_err(|mut e| {
                    if is_unauthorized(&e) {
                        e.message = format!(
                            "{}, also after minting them again from {}; check that it can still \
                             authenticate to {}",
                            e.message,
                            access.credentials.describe(),
                            access.endpoint
                        );
                    }
                    e
                })
            }
            other => other,
        }
    }

    /// The cached connection for `access`, building one on first use.
    async fn connect(&self, access: &ClusterAccess) -> Result<Connection, ProviderError> {
        let slot = self.lock().entry(access.key()).or_default().clone();
        let connection = slot
            .get_or_try_init(|| async {
                Ok::<_, ProviderError>(Connection {
                    client: super::auth::client(access, &self.minters).await?,
                    discovery: Arc::new(Discovery::default()),
                })
            })
            .await?;
        Ok(connection.clone())
    }

    /// Drops the cached connection for `access` if it is still `used` (a concurrent call may
    /// have replaced it already).
    fn forget(&self, access: &ClusterAccess, used: &Connection) {
        let key = access.key();
        let mut clients = self.lock();
        let still_used = clients
            .get(&key)
            .and_then(|slot| slot.get())
            .is_some_and(|c| Arc::ptr_eq(&c.discovery, &used.discovery));
        if still_used {
            clients.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Slot>> {
        // A poisoned lock only means another call panicked mid-insert; the map is still valid.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(credentials: OutputValue) -> Inputs {
        let mut i = Inputs::default();
        i.0.insert(
            INPUT_ENDPOINT.into(),
            OutputValue::Plain(json!("https://127.0.0.1:6443")),
        );
        i.0.insert(INPUT_CA_DATA.into(), OutputValue::Plain(json!("")));
        i.0.insert(INPUT_CREDENTIALS.into(), credentials);
        i
    }

    fn error(credentials: OutputValue) -> String {
        ClusterAccess::from_inputs(&inputs(credentials))
            .err()
            .expect("an error")
            .message
    }

    #[test]
    fn a_plain_source_is_read_and_keyed_by_its_json() {
        let source = json!({"type": "kubeconfig", "context": "prod"});
        let access = ClusterAccess::from_inputs(&inputs(OutputValue::Plain(source.clone())))
            .expect("source");
        assert!(matches!(
            &access.credentials,
            Credentials::Source(CredentialSource::Kubeconfig { context, path: None })
                if context == "prod"
        ));
        assert_eq!(access.key().credentials, source.to_string());
        assert_eq!(access.credentials.describe(), "kubeconfig context \"prod\"");
        let as_string = OutputValue::Plain(json!(source.to_string()));
        assert!(ClusterAccess::from_inputs(&inputs(as_string)).is_ok());
    }

    #[test]
    fn an_unknown_source_type_is_a_clear_error() {
        let text = error(OutputValue::Plain(json!({"type": "vault", "path": "kv/x"})));
        assert!(
            text.contains("not a credential source bmac knows: unknown variant `vault`"),
            "{text}"
        );
    }

    #[test]
    fn static_credentials_are_accepted_only_as_sensitive_values() {
        let secret = OutputValue::sensitive(json!({"token": "t0k3n"}));
        let access = ClusterAccess::from_inputs(&inputs(secret.clone())).expect("sensitive");
        assert_eq!(
            access.credentials.describe(),
            "the static token given as input"
        );
        assert!(!access.key().credentials.contains("t0k3n"));

        let plain = error(OutputValue::Plain(json!({"token": "t0k3n"})));
        assert!(plain.contains("only as a sensitive value"), "{plain}");
        let redacted = error(secret.redacted());
        assert!(redacted.contains("known only by its digest"), "{redacted}");
        let only_cert = error(OutputValue::sensitive(
            json!({"client_certificate_data": "Y2VydA=="}),
        ));
        assert!(only_cert.contains("client_key_data"), "{only_cert}");
        let bad_source = error(OutputValue::sensitive(json!({"type": 7, "token": "t0k3n"})));
        for text in [plain, redacted, only_cert, bad_source] {
            assert!(!text.contains("t0k3n"), "{text}");
        }
        let mut none = inputs(OutputValue::Plain(json!({})));
        none.0.remove(INPUT_ENDPOINT);
        let err = ClusterAccess::from_inputs(&none)
            .err()
            .expect("missing endpoint");
        assert!(err.message.contains("`endpoint`"), "{}", err.message);
    }
}

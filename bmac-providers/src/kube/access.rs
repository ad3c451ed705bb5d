//! How the provider reaches a cluster: [`ClusterAccess`] (endpoint, CA, credentials) taken
//! from the cluster step's outputs at execution time, and the client cache.
//!
//! Invariants:
//! - A Kubernetes client is built from the step's *resolved inputs* when the step runs, never
//!   at plan time: the cluster may not exist when the plan is made (design decision 1).
//! - Clients are cached per endpoint + SHA-256 of CA and credentials, so rotated credentials
//!   get a fresh client and steps of one cluster share connections. The cache key holds no
//!   secret, only its digest.
//! - Credentials are a token or a client certificate/key pair; they never appear in messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bmac_core::step::Fingerprint;
use bmac_core::{Inputs, ProviderError};
use bmac_steps::config::{INPUT_CA_DATA, INPUT_CREDENTIALS, INPUT_ENDPOINT};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::objects::Discovery;

/// How bmac authenticates to a cluster.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// A bearer token.
    Token(String),
    /// Base64 PEM client certificate and key.
    ClientCertificate {
        certificate_data: String,
        key_data: String,
    },
}

impl Credentials {
    /// The JSON shape of the `credentials` output / input.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Credentials::Token(token) => json!({ "token": token }),
            Credentials::ClientCertificate {
                certificate_data,
                key_data,
            } => json!({
                "client_certificate_data": certificate_data,
                "client_key_data": key_data,
            }),
        }
    }

    fn from_json(v: &Value) -> Result<Self, ProviderError> {
        // Accept the object itself or a JSON string that holds it.
        if let Value::String(s) = v {
            let parsed: Value = serde_json::from_str(s).map_err(|_| {
                ProviderError::permanent(
                    "input `credentials` is a string but not a JSON object with `token` or \
                     `client_certificate_data` and `client_key_data`",
                )
            })?;
            return Self::from_json(&parsed);
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(token) = text("token") {
            return Ok(Credentials::Token(token.to_owned()));
        }
        match (text("client_certificate_data"), text("client_key_data")) {
            (Some(c), Some(k)) => Ok(Credentials::ClientCertificate {
                certificate_data: c.to_owned(),
                key_data: k.to_owned(),
            }),
            _ => Err(ProviderError::permanent(
                "input `credentials` must hold `token`, or `client_certificate_data` and \
                 `client_key_data`",
            )),
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
    /// Reads the three cluster inputs of an in-cluster step. Credentials that arrive as a bare
    /// digest (state never keeps secrets) are recalled from `memory` when this process has
    /// seen them.
    pub(crate) fn from_inputs(
        inputs: &Inputs,
        memory: &CredentialMemory,
    ) -> Result<Self, ProviderError> {
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
        let credentials = match input.value() {
            Some(value) => {
                memory.remember(value);
                value.clone()
            }
            None => memory.recall(&input.digest()).ok_or_else(|| {
                ProviderError::permanent(
                    "input `credentials` has no value: state keeps only its digest, and this \
                     process has not seen the credentials; observe (or apply) the cluster step \
                     first so they are read again",
                )
            })?,
        };
        Ok(ClusterAccess {
            endpoint: endpoint.to_owned(),
            ca_data,
            credentials: Credentials::from_json(&credentials)?,
        })
    }

    /// The cache key: endpoint + digest of CA and credentials.
    fn key(&self) -> (String, [u8; 32]) {
        let mut h = Sha256::new();
        h.update(self.ca_data.as_bytes());
        h.update([0]);
        h.update(self.credentials.to_json().to_string().as_bytes());
        (self.endpoint.clone(), h.finalize().into())
    }

    /// A kube-rs client for this access, built from an in-memory kubeconfig.
    pub(crate) async fn client(&self) -> Result<Client, ProviderError> {
        let mut cluster = json!({ "server": self.endpoint });
        if !self.ca_data.is_empty() {
            cluster["certificate-authority-data"] = json!(self.ca_data);
        }
        let user = match &self.credentials {
            Credentials::Token(t) => json!({ "token": t }),
            Credentials::ClientCertificate {
                certificate_data,
                key_data,
            } => json!({
                "client-certificate-data": certificate_data,
                "client-key-data": key_data,
            }),
        };
        let doc = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{ "name": "bmac", "cluster": cluster }],
            "users": [{ "name": "bmac", "user": user }],
            "contexts": [{ "name": "bmac", "context": { "cluster": "bmac", "user": "bmac" } }],
            "current-context": "bmac",
        });
        let invalid = |e: &dyn std::fmt::Display| {
            ProviderError::permanent(format!(
                "cannot build a Kubernetes client for {}: {e}",
                self.endpoint
            ))
        };
        let kubeconfig: Kubeconfig = serde_json::from_value(doc).map_err(|e| invalid(&e))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| invalid(&e))?;
        Client::try_from(config).map_err(|e| invalid(&e))
    }
}

fn missing(name: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "in-cluster step has no `{name}` input; wire it to the cluster step's `{name}` output"
    ))
}

/// Credentials this provider has produced or been given, by digest, for this process only.
///
/// The executor hands a step the *recorded* outputs of its upstream steps when it deletes it,
/// and the journal keeps a secret only as its digest. A provider that read the credentials
/// earlier in the same process (applying or observing the cluster step, or any in-cluster
/// step) can recall them by that digest; a fresh process cannot, and gets a clear error.
/// Nothing is written anywhere.
#[derive(Default)]
pub(crate) struct CredentialMemory {
    by_digest: Mutex<HashMap<Fingerprint, Value>>,
}

impl CredentialMemory {
    /// Remembers a credentials value.
    pub(crate) fn remember(&self, value: &Value) {
        self.lock()
            .insert(Fingerprint::of_value(value), value.clone());
    }

    fn recall(&self, digest: &Fingerprint) -> Option<Value> {
        self.lock().get(digest).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fingerprint, Value>> {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A client and the discovery results learnt through it.
#[derive(Clone)]
pub(crate) struct Connection {
    pub client: Client,
    pub discovery: Arc<Discovery>,
}

/// Clients by endpoint + credential digest.
#[derive(Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<(String, [u8; 32]), Connection>>,
}

impl ClientCache {
    /// The cached connection for `access`, building one on first use.
    pub(crate) async fn connect(
        &self,
        access: &ClusterAccess,
    ) -> Result<Connection, ProviderError> {
        let key = access.key();
        if let Some(c) = self.lock().get(&key) {
            return Ok(c.clone());
        }
        let connection = Connection {
            client: access.client().await?,
            discovery: Arc::new(Discovery::default()),
        };
        Ok(self.lock().entry(key).or_insert(connection).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, [u8; 32]), Connection>> {
        // A poisoned lock only means another call panicked mid-insert; the map is still valid.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmac_core::OutputValue;

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

    #[test]
    fn redacted_credentials_are_recalled_only_when_seen_in_this_process() {
        let secret = OutputValue::sensitive(json!({"token": "t0k"}));
        let redacted = inputs(secret.redacted());
        let memory = CredentialMemory::default();
        let err = ClusterAccess::from_inputs(&redacted, &memory)
            .err()
            .expect("unknown secret");
        assert!(
            err.message.contains("observe (or apply) the cluster step"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("t0k"));
        let seen = ClusterAccess::from_inputs(&inputs(secret), &memory).expect("with value");
        assert!(seen.credentials == Credentials::Token("t0k".into()));
        let recalled = ClusterAccess::from_inputs(&redacted, &memory).expect("recalled");
        assert!(recalled.credentials == Credentials::Token("t0k".into()));
    }

    #[test]
    fn credentials_need_a_token_or_a_certificate_pair() {
        let memory = CredentialMemory::default();
        let only_cert = OutputValue::sensitive(json!({"client_certificate_data": "Y2VydA=="}));
        let err = ClusterAccess::from_inputs(&inputs(only_cert), &memory)
            .err()
            .expect("error");
        assert!(err.message.contains("client_key_data"), "{}", err.message);
        let as_string = OutputValue::sensitive(json!("{\"token\":\"abc\"}"));
        let access = ClusterAccess::from_inputs(&inputs(as_string), &memory).expect("JSON string");
        assert!(access.credentials == Credentials::Token("abc".into()));
        let mut none = inputs(OutputValue::Plain(json!({})));
        none.0.remove(INPUT_ENDPOINT);
        let err = ClusterAccess::from_inputs(&none, &memory)
            .err()
            .expect("missing endpoint");
        assert!(err.message.contains("`endpoint`"), "{}", err.message);
    }
}

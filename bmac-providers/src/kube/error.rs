//! Turning kube-rs errors into [`ProviderError`]s a person can act on.
//!
//! Every API call is described by an [`Operation`] (verb, resource, name, namespace) so that an
//! error names what bmac was doing, not the HTTP exchange. Classification:
//! - 403 → permanent: "permission denied: cannot patch namespaces "payments" as user "x";
//!   grant the `patch` verb on `namespaces`";
//! - 401 → permanent, with code [`UNAUTHORIZED`] so the provider drops the client, mints the
//!   credentials again and retries the call once (`access.rs`); the executor's own retries
//!   would send the same credentials;
//! - every other 4xx (400, 404, 410, 413, 415, 422 …) → permanent, with the server's own
//!   message: the same request gets the same answer;
//! - 409 from a server-side apply field conflict → permanent (bmac does not force fields on
//!   objects it did not create; the message names the other managers); any other 409 (an
//!   optimistic-concurrency "the object has been modified") → retryable, since the next
//!   attempt reads the object afresh — the one 4xx besides 408 and 429 that can succeed again;
//! - 500 whose message says the server could not build the typed patch ("failed to create
//!   typed patch object", e.g. a Service port without `protocol` on a 1.20 server) →
//!   permanent: it is the object, not the server, and retrying sends the same object;
//! - 408, 429, other 5xx, connection and timeout errors → retryable, honouring
//!   `retryAfterSeconds`.
//!
//! - a request that could not be authenticated — an exec plugin failing when kube-rs refreshes
//!   its token, a [`TokenMinter`](super::TokenMinter) failing — keeps the minter's class, or is
//!   permanent for an exec plugin, and says what the plugin reported on stderr.
//!
//! Every error from an API answer carries the API server's own `reason` as its code
//! (`Forbidden`, `Conflict`, `Invalid`, `TooManyRequests`, `InternalError` …; the HTTP status
//! code when the answer names no reason), so reports and `--output json` show it.
//!
//! A 404 on delete is success; callers handle that before mapping.
//!
//! Messages never carry credentials: kube-rs's own text for an exec plugin failure includes the
//! plugin's stdout (where a token would be), so auth errors are described by [`describe_auth`]
//! from their parts instead.

use std::fmt;
use std::time::Duration;

use bmac_core::ProviderError;
use kube::client::AuthError;
use kube::core::Status;

/// The code of a [`ProviderError`] made from a 401 answer: the API server's `reason`.
pub(crate) const UNAUTHORIZED: &str = "Unauthorized";

/// Whether `e` is the API server rejecting the credentials (a 401).
pub(crate) fn is_unauthorized(e: &ProviderError) -> bool {
    e.code.as_deref() == Some(UNAUTHORIZED)
}

/// What an API call was doing, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Operation<'a> {
    /// The RBAC verb: `get`, `patch`, `delete`, `list`.
    pub verb: &'static str,
    /// The plural resource (`namespaces`, `clusterpolicies`).
    pub resource: &'a str,
    /// The API group (empty for the core group).
    pub group: &'a str,
    /// The object's name, when the call is about one object.
    pub name: Option<&'a str>,
    /// The namespace, for namespaced objects.
    pub namespace: Option<&'a str>,
}

impl fmt::Display for Operation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = self.name {
            write!(f, " {name:?}")?;
        }
        if let Some(ns) = self.namespace {
            write!(f, " in namespace {ns:?}")?;
        }
        Ok(())
    }
}

/// Maps a kube-rs error from `op` to a classified provider error.
pub(crate) fn map_error(err: kube::Error, op: &Operation<'_>) -> ProviderError {
    match err {
        kube::Error::Api(status) if status.code == 401 => ProviderError::permanent(format!(
            "cannot {op}: the API server rejected the credentials (401 Unauthorized)"
        ))
        .with_code(UNAUTHORIZED),
        kube::Error::Api(status) => map_status(*status, op),
        kube::Error::Service(e) => service_error(e, op),
        e @ kube::Error::HyperError(_) => {
            ProviderError::retryable(format!("cannot {op}: the API server is unreachable: {e}"))
                .with_source(e)
        }
        kube::Error::Auth(e) => ProviderError::permanent(format!(
            "cannot {op}: authentication failed: {}",
            describe_auth(&e, None)
        )),
        e => ProviderError::permanent(format!("cannot {op}: {e}")).with_source(e),
    }
}

fn map_status(status: Status, op: &Operation<'_>) -> ProviderError {
    let server = status.message.trim().to_owned();
    let code = match status.reason.trim() {
        "" => status.code.to_string(),
        reason => reason.to_owned(),
    };
    let err = match status.code {
        403 => ProviderError::permanent(forbidden_message(op, &server)),
        409 if is_field_conflict(&status) => ProviderError::permanent(format!(
            "cannot {op}: {server}. bmac forces its fields only on objects it created; \
             remove the other manager's value, or let bmac own the object"
        )),
        409 => ProviderError::retryable(format!("cannot {op}: conflict: {server}")),
        429 => ProviderError::retryable(format!(
            "cannot {op}: throttled by the API server: {server}"
        )),
        408 => ProviderError::retryable(format!(
            "cannot {op}: the API server timed out the request: {server}"
        )),
        500 if is_invalid_patch(&server) => ProviderError::permanent(format!(
            "cannot {op}: the API server cannot merge this object by server-side apply \
             (retrying would send the same object): {server}"
        )),
        code if code >= 500 || code == 0 => {
            ProviderError::retryable(format!("cannot {op}: API server error {code}: {server}"))
        }
        422 => ProviderError::permanent(format!("cannot {op}: the object is invalid: {server}")),
        code => ProviderError::permanent(format!("cannot {op}: {server} ({code})")),
    };
    let err = err.with_code(code);
    let retry = status
        .details
        .as_ref()
        .map(|d| d.retry_after_seconds)
        .filter(|s| *s > 0);
    match retry {
        Some(secs) => err.with_retry_after(Duration::from_secs(u64::from(secs))),
        None => err,
    }
}

/// A request that failed below the API: a mint error (the minter's own [`ProviderError`]), an
/// exec plugin failing on refresh, or the server out of reach.
fn service_error(e: tower::BoxError, op: &Operation<'_>) -> ProviderError {
    let e = match e.downcast::<ProviderError>() {
        Ok(minted) => {
            let mut minted = *minted;
            minted.message = format!("cannot {op}: {}", minted.message);
            return minted;
        }
        Err(e) => e,
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(c) = cause {
        if let Some(minted) = c.downcast_ref::<ProviderError>() {
            // Wrapped on the way up (by a buffer): keep its class and words.
            let message = format!("cannot {op}: {}", minted.message);
            return match minted.is_retryable() {
                true => ProviderError::retryable(message),
                false => ProviderError::permanent(message),
            };
        }
        if let Some(auth) = c.downcast_ref::<AuthError>() {
            return ProviderError::permanent(format!(
                "cannot {op}: authentication failed: {}",
                describe_auth(auth, None)
            ));
        }
        cause = c.source();
    }
    ProviderError::retryable(format!("cannot {op}: the API server is unreachable: {e}"))
        .with_source(kube::Error::Service(e))
}

/// What went wrong authenticating, without the secrets kube-rs's own message may hold (the
/// stdout of a failed exec plugin). `command` names the plugin when the caller knows it.
pub(crate) fn describe_auth(e: &AuthError, command: Option<&str>) -> String {
    let plugin = match command {
        Some(c) => format!("exec plugin {c:?}"),
        None => "exec plugin".to_owned(),
    };
    match e {
        AuthError::AuthExecRun { out, .. } => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let said = if stderr.is_empty() {
                String::new()
            } else {
                let tail: String = stderr.chars().rev().take(500).collect();
                format!(": {}", tail.chars().rev().collect::<String>())
            };
            format!("the {plugin} failed ({}){said}", out.status)
        }
        AuthError::AuthExecStart(io) => format!("cannot run the {plugin}: {io}"),
        AuthError::AuthExecParse(_) => {
            format!("the output of the {plugin} is not an ExecCredential (JSON or YAML)")
        }
        AuthError::ExecPluginFailed => {
            format!("the {plugin} printed an ExecCredential without a status")
        }
        AuthError::MalformedTokenExpirationDate(_) => {
            format!("the {plugin} printed an expirationTimestamp that is not an RFC 3339 time")
        }
        AuthError::InvalidBearerToken(_) => "the token is not a valid HTTP header value".to_owned(),
        AuthError::InvalidBasicAuth(_) => "the basic-auth credentials are not valid".to_owned(),
        other => other.to_string(),
    }
}

/// The messages of the HTTP 500s the API server answers for a server-side apply patch it cannot
/// turn into a typed object (an associative list item without its key field, a value of the
/// wrong type): the same patch fails the same way every time.
const INVALID_PATCH: &[&str] = &[
    "failed to create typed patch object",
    "failed to create typed live object",
];

fn is_invalid_patch(message: &str) -> bool {
    INVALID_PATCH.iter().any(|m| message.contains(m))
}

fn is_field_conflict(status: &Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "FieldManagerConflict"))
}

/// "permission denied: cannot patch namespaces "payments" as user "x"; grant the `patch` verb
/// on `namespaces` (API group "")"
fn forbidden_message(op: &Operation<'_>, server: &str) -> String {
    let user = user_in(server)
        .map(|u| format!(" as user {u:?}"))
        .unwrap_or_default();
    let group = if op.group.is_empty() {
        String::new()
    } else {
        format!(" in API group {:?}", op.group)
    };
    let scope = match op.namespace {
        Some(ns) => format!(" in namespace {ns:?}"),
        None => String::new(),
    };
    format!(
        "permission denied: cannot {op}{user}; grant the `{verb}` verb on `{resource}`{group}{scope}",
        verb = op.verb,
        resource = op.resource,
    )
}

/// The user a 403 names: `... User "alice" cannot ...`.
fn user_in(message: &str) -> Option<&str> {
    let start = message.find("User \"")? + "User \"".len();
    let len = message[start..].find('"')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    fn details(causes: Vec<StatusCause>, retry_after_seconds: u32) -> StatusDetails {
        StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes,
            retry_after_seconds,
        }
    }

    fn op() -> Operation<'static> {
        Operation {
            verb: "patch",
            resource: "namespaces",
            group: "",
            name: Some("payments"),
            namespace: None,
        }
    }

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: message.to_owned(),
            ..Status::default()
        }))
    }

    #[test]
    fn forbidden_names_verb_resource_and_user() {
        let e = map_error(
            status(403, "namespaces \"payments\" is forbidden: User \"bmac-limited\" cannot patch resource \"namespaces\" in API group \"\" at the cluster scope"),
            &op(),
        );
        assert!(!e.is_retryable());
        assert_eq!(
            e.message,
            "permission denied: cannot patch namespaces \"payments\" as user \"bmac-limited\"; grant the `patch` verb on `namespaces`"
        );
    }

    #[test]
    fn classification_follows_the_status_code() {
        assert!(map_error(status(500, "boom"), &op()).is_retryable());
        assert!(map_error(status(503, "later"), &op()).is_retryable());
        assert!(map_error(status(429, "slow down"), &op()).is_retryable());
        assert!(map_error(status(409, "the object has been modified"), &op()).is_retryable());
        let invalid = map_error(status(422, "spec.x: Invalid value"), &op());
        assert!(!invalid.is_retryable());
        assert!(invalid.message.contains("spec.x: Invalid value"));
        let unauthorized = map_error(status(401, "Unauthorized"), &op());
        assert!(!unauthorized.is_retryable());
        assert!(is_unauthorized(&unauthorized));
        assert_eq!(unauthorized.code.as_deref(), Some("Unauthorized"));
        assert!(!is_unauthorized(&map_error(status(403, "no"), &op())));
    }

    #[test]
    fn errors_that_cannot_succeed_on_retry_are_permanent() {
        for code in [400, 404, 410, 413, 415, 422] {
            let e = map_error(status(code, "no"), &op());
            assert!(!e.is_retryable(), "{code} must be permanent");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            let e = map_error(status(code, "later"), &op());
            assert!(e.is_retryable(), "{code} must be retried");
        }
        // The 500 the API server answers for a patch it cannot type is the object's fault.
        let typed = "failed to create typed patch object (/v1, Kind=Service) argocd/argocd-server: \
                     .spec.ports: element 0: associative list with keys has an element that omits key field \"protocol\"";
        let e = map_error(
            kube::Error::Api(Box::new(Status {
                code: 500,
                message: typed.into(),
                reason: "InternalError".into(),
                ..Status::default()
            })),
            &op(),
        );
        assert!(!e.is_retryable(), "{}", e.message);
        assert!(e.message.contains("omits key field"), "{}", e.message);
        assert_eq!(e.code.as_deref(), Some("InternalError"));
    }

    #[test]
    fn the_servers_reason_is_the_error_code() {
        let mut conflict = Status::failure("the object has been modified", "Conflict");
        conflict.code = 409;
        let e = map_error(kube::Error::Api(Box::new(conflict)), &op());
        assert_eq!(e.code.as_deref(), Some("Conflict"));
        // An answer without a reason keeps its HTTP status as the code.
        assert_eq!(
            map_error(status(503, "later"), &op()).code.as_deref(),
            Some("503")
        );
    }

    #[test]
    fn a_failed_exec_plugin_is_described_without_its_stdout() {
        use std::os::unix::process::ExitStatusExt as _;
        let out = std::process::Output {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: b"{\"status\": {\"token\": \"s3cr3t\"}}".to_vec(),
            stderr: b"error: the SSO session has expired\n".to_vec(),
        };
        let e = AuthError::AuthExecRun {
            cmd: "\"aws\" \"s3cr3t\"".into(),
            out: Box::new(out),
        };
        let text = describe_auth(&e, Some("aws"));
        assert_eq!(
            text,
            "the exec plugin \"aws\" failed (exit status: 1): error: the SSO session has expired"
        );
        let minted =
            kube::Error::Service(Box::new(ProviderError::retryable("token API throttled")));
        let e = map_error(minted, &op());
        assert!(e.is_retryable(), "the minter's class is kept");
        assert_eq!(
            e.message,
            "cannot patch namespaces \"payments\": token API throttled"
        );
    }

    #[test]
    fn field_manager_conflicts_are_permanent_and_retry_after_is_kept() {
        let conflict = kube::Error::Api(Box::new(Status {
            code: 409,
            message: "Apply failed with 1 conflict: conflict with \"kubectl\"".into(),
            details: Some(details(
                vec![StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: "conflict with \"kubectl\"".into(),
                    field: ".metadata.labels.team".into(),
                }],
                0,
            )),
            ..Status::default()
        }));
        let e = map_error(conflict, &op());
        assert!(!e.is_retryable());
        assert!(e.message.contains("kubectl"));
        let throttled = kube::Error::Api(Box::new(Status {
            code: 429,
            details: Some(details(Vec::new(), 3)),
            ..Status::default()
        }));
        assert_eq!(
            map_error(throttled, &op()).retry_after,
            Some(Duration::from_secs(3))
        );
    }
}

//! Turning kube-rs errors into [`ProviderError`]s a person can act on.
//!
//! Every API call is described by an [`Operation`] (verb, resource, name, namespace) so that an
//! error names what bmac was doing, not the HTTP exchange. Classification:
//! - 403 → permanent: "permission denied: cannot patch namespaces "payments" as user "x";
//!   grant the `patch` verb on `namespaces`";
//! - 401 → permanent (the credentials are rejected; retrying sends the same ones);
//! - 400, 404, 410, 422 → permanent, with the server's own message;
//! - 409 from a server-side apply field conflict → permanent (bmac does not force fields on
//!   objects it did not create; the message names the other managers); any other 409 → retryable;
//! - 429, 5xx, connection and timeout errors → retryable, honouring `retryAfterSeconds`.
//!
//! A 404 on delete is success; callers handle that before mapping.

use std::fmt;
use std::time::Duration;

use bmac_core::ProviderError;
use kube::core::Status;

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
        kube::Error::Api(status) => map_status(*status, op),
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            ProviderError::retryable(format!("cannot {op}: the API server is unreachable: {e}"))
                .with_source(e)
        }
        e @ kube::Error::Auth(_) => {
            ProviderError::permanent(format!("cannot {op}: authentication failed: {e}"))
                .with_source(e)
        }
        e => ProviderError::permanent(format!("cannot {op}: {e}")).with_source(e),
    }
}

fn map_status(status: Status, op: &Operation<'_>) -> ProviderError {
    let server = status.message.trim().to_owned();
    let err = match status.code {
        403 => ProviderError::permanent(forbidden_message(op, &server)),
        401 => ProviderError::permanent(format!(
            "cannot {op}: the API server rejected the credentials (401 Unauthorized); \
             refresh the cluster step's credentials"
        )),
        409 if is_field_conflict(&status) => ProviderError::permanent(format!(
            "cannot {op}: {server}. bmac forces its fields only on objects it created; \
             remove the other manager's value, or let bmac own the object"
        )),
        409 => ProviderError::retryable(format!("cannot {op}: conflict: {server}")),
        429 => ProviderError::retryable(format!(
            "cannot {op}: throttled by the API server: {server}"
        )),
        code if code >= 500 || code == 0 => {
            ProviderError::retryable(format!("cannot {op}: API server error {code}: {server}"))
        }
        422 => ProviderError::permanent(format!("cannot {op}: the object is invalid: {server}")),
        code => ProviderError::permanent(format!("cannot {op}: {server} ({code})")),
    };
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
        assert!(!map_error(status(401, "Unauthorized"), &op()).is_retryable());
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

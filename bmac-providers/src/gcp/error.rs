//! How a google-cloud-rust error becomes a [`ProviderError`]: one classification for every
//! Google API bmac calls.
//!
//! - **Retryable**: `RESOURCE_EXHAUSTED` / HTTP 429 (quota per minute, rate limits), `UNAVAILABLE`
//!   / 503, `INTERNAL` / 500 and `DEADLINE_EXCEEDED`, `ABORTED` / 409 on a stale IAM policy etag
//!   (the read-modify-write starts again), GKE's `FAILED_PRECONDITION` "operation … is currently
//!   running on cluster" (another operation holds the cluster: this one can go once it ends), a
//!   request that never got an answer (timeouts, refused or reset connections) and transient
//!   credential failures.
//! - **Permanent**: everything else — a bad argument, a missing resource, a quota that is not a
//!   rate, and `PERMISSION_DENIED`: the message names the permission Google reported (its
//!   `ErrorInfo` carries it as `metadata.permission`) and the resource, since that is what an IAM
//!   role has to grant; and `UNAUTHENTICATED`, with the credentials that were tried.
//!
//! The Google status name (`NOT_FOUND`, `ALREADY_EXISTS` …) is kept as the error's `code`.
//! Handlers look at [`Status`] first, to turn `ALREADY_EXISTS` into adoption and `NOT_FOUND`
//! into absence ([`found`]). Messages carry the method, the resource, the status and Google's
//! own message — never a request body or a token.

use bmac_core::ProviderError;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_gax::error::Error;

/// What a call's error says, for handlers that branch on it before classifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `NOT_FOUND` (404).
    NotFound,
    /// `ALREADY_EXISTS` (409 on a create).
    AlreadyExists,
    /// Anything else.
    Other,
}

impl Status {
    /// The status of `err`.
    pub fn of(err: &Error) -> Status {
        match (err.status().map(|s| s.code), err.http_status_code()) {
            (Some(Code::NotFound), _) | (None, Some(404)) => Status::NotFound,
            (Some(Code::AlreadyExists), _) => Status::AlreadyExists,
            _ => Status::Other,
        }
    }
}

/// The permission a `PERMISSION_DENIED` names, from its `ErrorInfo` details.
fn permission(err: &Error) -> Option<String> {
    err.status()?.details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(info) => info.metadata.get("permission").cloned(),
        _ => None,
    })
}

/// Whether GKE refused the call because another operation is running on the cluster.
fn operation_in_progress(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("operation")
        && (m.contains("in progress")
            || m.contains("currently running")
            || m.contains("incompatible operation"))
}

/// Classifies `err` from `method` (`container.clusters.create`) on `resource`.
pub fn classify(method: &str, resource: &str, err: Error) -> ProviderError {
    let status = err.status().cloned();
    let http = err.http_status_code();
    let detail = status
        .as_ref()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| crate::cloud::describe(&err));
    let code = status.as_ref().map(|s| s.code);
    let name = code.map(|c| c.name()).unwrap_or("");
    let error = match (code, http) {
        (Some(Code::PermissionDenied), _) | (None, Some(403)) => {
            let needs = permission(&err)
                .map(|p| format!("`{p}`"))
                .unwrap_or_else(|| format!("the permission behind `{method}`"));
            ProviderError::permanent(format!(
                "Google Cloud denied {method} on {resource} ({name}): {detail} — the credentials in use need {needs} on that resource (see the README's Google Cloud roles)"
            ))
        }
        (Some(Code::Unauthenticated), _) | (None, Some(401)) => ProviderError::permanent(format!(
            "{method} on {resource} was not authenticated ({name}): {detail} — check the Application Default Credentials (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS)"
        )),
        (Some(Code::ResourceExhausted), _) | (None, Some(429)) => ProviderError::retryable(
            format!("{method} on {resource} was throttled ({name}): {detail}"),
        ),
        (Some(Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Aborted), _) => {
            ProviderError::retryable(format!("{method} on {resource} failed ({name}): {detail}"))
        }
        (Some(Code::FailedPrecondition), _) if operation_in_progress(&detail) => {
            ProviderError::retryable(format!(
                "{method} on {resource} waits for another operation ({name}): {detail}"
            ))
        }
        (None, Some(s)) if s >= 500 => {
            ProviderError::retryable(format!("{method} on {resource}: HTTP {s}: {detail}"))
        }
        (None, None) if err.is_timeout() || err.is_io() || err.is_connect() || err.is_transient_and_before_rpc() => {
            ProviderError::retryable(format!("{method} on {resource} got no answer: {detail}"))
        }
        (None, None) if err.is_authentication() => ProviderError::retryable(format!(
            "{method} on {resource}: the Google credentials could not be used: {detail}"
        )),
        (Some(_), _) => {
            ProviderError::permanent(format!("{method} on {resource} failed ({name}): {detail}"))
        }
        (None, status) => ProviderError::permanent(format!(
            "{method} on {resource} failed{}: {detail}",
            status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
        )),
    };
    let error = if name.is_empty() {
        error
    } else {
        error.with_code(name)
    };
    error.with_source(err)
}

/// Classifies the error of a call: `result.on("container.clusters.get", "cluster prod")`.
pub trait Context<T> {
    /// The result, its error classified as from `method` on `resource`.
    fn on(self, method: &str, resource: &str) -> Result<T, ProviderError>;
}

impl<T> Context<T> for Result<T, Error> {
    fn on(self, method: &str, resource: &str) -> Result<T, ProviderError> {
        self.map_err(|e| classify(method, resource, e))
    }
}

/// `Ok(None)` for `NOT_FOUND`, the value otherwise; other errors classified.
pub fn found<T>(
    result: Result<T, Error>,
    method: &str,
    resource: &str,
) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if Status::of(&e) == Status::NotFound => Ok(None),
        Err(e) => Err(classify(method, resource, e)),
    }
}

/// What a create said: made now, or there already.
pub enum Created<T> {
    /// Created by this call.
    New(T),
    /// `ALREADY_EXISTS`: adopt it after observing.
    Exists,
}

/// [`Created::Exists`] for `ALREADY_EXISTS`, the value otherwise; other errors classified.
pub fn created<T>(
    result: Result<T, Error>,
    method: &str,
    resource: &str,
) -> Result<Created<T>, ProviderError> {
    match result {
        Ok(v) => Ok(Created::New(v)),
        Err(e) if Status::of(&e) == Status::AlreadyExists => Ok(Created::Exists),
        Err(e) => Err(classify(method, resource, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status as RpcStatus;

    fn service(code: Code, message: &str) -> Error {
        Error::service(RpcStatus::default().set_code(code).set_message(message))
    }

    #[test]
    fn retryable_and_permanent_follow_google_codes() {
        let e = classify("m", "r", service(Code::ResourceExhausted, "quota"));
        assert!(e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert!(classify("m", "r", service(Code::Unavailable, "x")).is_retryable());
        assert!(classify("m", "r", service(Code::Aborted, "etag")).is_retryable());
        let busy = "Cluster is running incompatible operation operation-123-abc.";
        assert!(classify("m", "r", service(Code::FailedPrecondition, busy)).is_retryable());
        assert!(!classify("m", "r", service(Code::FailedPrecondition, "bad state")).is_retryable());
        assert!(!classify("m", "r", service(Code::InvalidArgument, "x")).is_retryable());
        let denied = classify(
            "container.clusters.create",
            "cluster prod",
            service(Code::PermissionDenied, "Required permission missing"),
        );
        assert!(!denied.is_retryable());
        assert!(
            denied.message.contains("container.clusters.create"),
            "{}",
            denied.message
        );
        assert_eq!(Status::of(&service(Code::NotFound, "x")), Status::NotFound);
        assert_eq!(
            Status::of(&service(Code::AlreadyExists, "x")),
            Status::AlreadyExists
        );
    }
}

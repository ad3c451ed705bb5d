//! How an AWS SDK error becomes a [`ProviderError`]: one classification for every service.
//!
//! - **Retryable**: throttling (`Throttling`, `ThrottlingException`, `RequestLimitExceeded`,
//!   `TooManyRequestsException`, `SlowDown`, …), every 5xx and the services' own "try again"
//!   codes (`ServiceUnavailable`, `InternalFailure`, `ServerException`), a request that never
//!   got an answer (timeouts, refused or reset connections), and `ResourceInUseException` /
//!   `ConcurrentModificationException` / `OperationAborted` — another update of the same
//!   resource is under way, so this one can go once it ends.
//! - **Permanent**: everything else — a bad request, a missing resource, a quota, and above all
//!   `AccessDenied`: the message names the action and the resource that were refused, since
//!   that is what an IAM policy has to grant.
//!
//! The AWS error code is kept as the error's `code` (it reaches the report and the JSON
//! output). Handlers look at codes through [`Code`] before classifying, to turn "already
//! exists" into adoption and "not found" into [`Observed::Absent`](bmac_core::provider::Observed).
//! Messages never contain request bodies or credentials: only the action, the resource, the
//! code and the service's own message.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bmac_core::ProviderError;

/// Error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
];

/// Error codes that mean "the service failed; try again".
const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServiceFailure",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

/// Error codes that mean "another change of this resource is under way".
const BUSY: &[&str] = &[
    "ResourceInUseException",
    "ConcurrentModificationException",
    "ConcurrentModification",
    "OperationAborted",
    "IncorrectState",
    "IncorrectInstanceState",
    "DependencyViolation",
];

/// Error codes that mean "not allowed".
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
    "AuthorizationError",
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
];

/// What an SDK error was, before it is classified.
#[derive(Debug)]
pub struct Code {
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
}

impl Code {
    /// The code and status of `err`.
    pub fn of<E, R>(err: &SdkError<E, R>) -> Code
    where
        E: ProvideErrorMetadata,
        R: HttpStatus,
    {
        match err {
            SdkError::ServiceError(e) => Code {
                code: e.err().code().map(str::to_owned),
                status: Some(e.raw().status_code()),
            },
            SdkError::ResponseError(e) => Code {
                code: None,
                status: Some(e.raw().status_code()),
            },
            _ => Code {
                code: None,
                status: None,
            },
        }
    }

    /// Whether the code is one of `codes`.
    pub fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    /// Whether the resource does not exist (any `*NotFound*` code, `NoSuch*`, or a 404).
    pub fn is_not_found(&self) -> bool {
        match self.code.as_deref() {
            Some(c) => {
                c.contains("NotFound")
                    || c.starts_with("NoSuch")
                    || c.ends_with(".NotFound")
                    || c == "InvalidVpcID.NotFound"
            }
            None => self.status == Some(404),
        }
    }

    /// Whether a create found the resource already there.
    pub fn is_already_exists(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.contains("AlreadyExists")
                || c == "EntityAlreadyExists"
                || c == "ResourceInUseException"
                || c == "BucketAlreadyOwnedByYou"
                || c.ends_with(".Duplicate")
                || c == "ResourceAlreadyExistsException"
        })
    }
}

/// The HTTP status of a raw response (the SDK's response type).
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// `err` from `action` (`eks:CreateCluster`) on `resource` (`cluster prod`), classified.
pub fn classify<E, R>(action: &str, resource: &str, err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    let code = Code::of(&err);
    let detail = match &err {
        SdkError::ServiceError(e) => e.err().message().map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| crate::cloud::describe(&err));
    let error = match (&err, code.code.as_deref(), code.status) {
        // IAM is eventually consistent: a role made a moment ago may not be assumable yet.
        (_, Some(c), _) if (c.starts_with("InvalidArgument") || c.starts_with("InvalidParameter")) && detail.contains("assume") => {
            ProviderError::retryable(format!("{action} on {resource} failed ({c}): {detail}"))
        }
        (_, Some(c), _) if DENIED.contains(&c) => ProviderError::permanent(format!(
            "AWS denied {action} on {resource} ({c}): {detail} — the credentials in use need `{action}` on that resource (see examples/eks-iam-policy.json)"
        )),
        (_, Some(c), _) if THROTTLING.contains(&c) => {
            ProviderError::retryable(format!("{action} on {resource} was throttled ({c}): {detail}"))
        }
        (_, Some(c), _) if TRANSIENT.contains(&c) || BUSY.contains(&c) => {
            ProviderError::retryable(format!("{action} on {resource} failed ({c}): {detail}"))
        }
        (_, _, Some(s)) if s >= 500 || s == 429 => {
            ProviderError::retryable(format!("{action} on {resource}: HTTP {s}: {detail}"))
        }
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _, _) => {
            ProviderError::retryable(format!("{action} on {resource} got no answer: {detail}"))
        }
        (_, Some(c), _) => {
            ProviderError::permanent(format!("{action} on {resource} failed ({c}): {detail}"))
        }
        (_, None, status) => ProviderError::permanent(format!(
            "{action} on {resource} failed{}: {detail}",
            status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
        )),
    };
    let error = match code.code {
        Some(c) => error.with_code(c),
        None => error,
    };
    error.with_source(err)
}

/// Classifies a result's error (see [`classify`]).
pub trait Context<T> {
    /// `Err` classified as from `action` on `resource`.
    fn on(self, action: &str, resource: &str) -> Result<T, ProviderError>;
}

impl<T, E, R> Context<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    fn on(self, action: &str, resource: &str) -> Result<T, ProviderError> {
        self.map_err(|e| classify(action, resource, e))
    }
}

/// What a call that may find nothing answered: the value, `None` for "not found", or the
/// classified error.
pub fn found<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    action: &str,
    resource: &str,
) -> Result<Option<T>, ProviderError>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if Code::of(&e).is_not_found() => Ok(None),
        Err(e) => Err(classify(action, resource, e)),
    }
}

/// What a create answered: `Created(v)`, `Exists` when the resource was already there (to be
/// adopted after observing it), or the classified error.
pub enum Created<T> {
    /// The create succeeded.
    Created(T),
    /// The resource already existed.
    Exists,
}

/// Classifies a create's result (see [`Created`]).
pub fn created<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    action: &str,
    resource: &str,
) -> Result<Created<T>, ProviderError>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(Created::Created(v)),
        Err(e) if Code::of(&e).is_already_exists() => Ok(Created::Exists),
        Err(e) => Err(classify(action, resource, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(code: &str, status: u16) -> SdkError<ErrorMetadata, Response> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("the service said no")
            .build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(meta, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        for (code, status) in [
            ("ThrottlingException", 400),
            ("RequestLimitExceeded", 503),
            ("SlowDown", 503),
            ("ServerException", 500),
            ("ResourceInUseException", 409),
            ("Whatever", 502),
        ] {
            let e = classify(
                "eks:UpdateNodegroupConfig",
                "node group a",
                service_error(code, status),
            );
            assert!(e.is_retryable(), "{code} {status}");
            assert_eq!(e.code.as_deref(), Some(code));
        }
    }

    #[test]
    fn access_denied_is_permanent_and_names_action_and_resource() {
        let e = classify(
            "eks:CreateCluster",
            "cluster prod",
            service_error("AccessDeniedException", 403),
        );
        assert!(!e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("AccessDeniedException"));
        assert!(e.message.contains("eks:CreateCluster"), "{}", e.message);
        assert!(e.message.contains("cluster prod"), "{}", e.message);
        assert!(e.message.contains("the service said no"), "{}", e.message);
    }

    #[test]
    fn bad_requests_are_permanent() {
        let e = classify(
            "ec2:CreateVpc",
            "vpc",
            service_error("InvalidParameterValue", 400),
        );
        assert!(!e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("InvalidParameterValue"));
    }

    #[test]
    fn not_found_and_already_exists_are_recognised() {
        for code in [
            "ResourceNotFoundException",
            "NoSuchEntity",
            "NoSuchBucket",
            "InvalidVpcID.NotFound",
        ] {
            assert!(Code::of(&service_error(code, 400)).is_not_found(), "{code}");
        }
        for code in [
            "EntityAlreadyExists",
            "ResourceInUseException",
            "BucketAlreadyOwnedByYou",
            "AlreadyExistsException",
        ] {
            assert!(
                Code::of(&service_error(code, 409)).is_already_exists(),
                "{code}"
            );
        }
        assert!(!Code::of(&service_error("AccessDenied", 403)).is_not_found());
        let found = found::<(), _, _>(Err(service_error("NoSuchEntity", 404)), "iam:GetRole", "r");
        assert!(matches!(found, Ok(None)));
    }
}

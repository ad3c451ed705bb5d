//! Waiting on Google's long-running operations, checkpointed so that a killed run resumes
//! polling the same operation instead of starting the change again.
//!
//! GKE, Compute Engine and Artifact Registry answer every change with an operation: GKE's
//! (`projects/P/locations/L/operations/ID`, `PENDING` → `RUNNING` → `DONE`, with an `error` when
//! it failed), Compute's (regional or global, `PENDING` → `RUNNING` → `DONE`, with
//! `error.errors`) and Artifact Registry's `google.longrunning` ones (`done`, then an `error` or
//! a `response`).
//! [`Op`] names one; [`Op::wait`] journals it as the step's checkpoint (DESIGN, real clouds 1)
//! before the first poll, then polls through [`crate::cloud::wait::until`], reporting progress.
//! [`resume`] hands back the checkpointed operation of an earlier, interrupted call: the handler
//! waits on it before it looks at the resource again, so nothing is started twice. An operation
//! that finished with an error is that error (permanent unless Google's code says retry); one the
//! service no longer knows (it forgets finished operations after a while) is treated as done, and
//! the handler observes the resource to see what it left.

use crate::cloud::Boxed;
use bmac_core::provider::StepContext;
use bmac_core::ProviderError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{found, Context as _};
use super::Clients;
use crate::cloud::wait::{self, Poll};

/// A long-running operation bmac waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "snake_case")]
pub enum Op {
    /// A GKE operation, by its full name.
    Container {
        /// `projects/P/locations/L/operations/ID`.
        name: String,
    },
    /// A regional Compute Engine operation.
    ComputeRegion {
        /// Its region.
        region: String,
        /// Its name.
        name: String,
    },
    /// A global Compute Engine operation.
    ComputeGlobal {
        /// Its name.
        name: String,
    },
    /// An Artifact Registry operation (`google.longrunning`), by its full name.
    ArtifactRegistry {
        /// `projects/P/locations/L/operations/ID`.
        name: String,
    },
}

/// The checkpointed operation of an earlier call of this step, if it left one.
pub fn resume(ctx: &StepContext) -> Option<Op> {
    ctx.last_checkpoint()
        .and_then(|v| v.get("operation"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Waits on the operation an earlier, interrupted call of this step checkpointed, if any;
/// `what` names the resource (`cluster prod`).
pub async fn finish_interrupted(
    gcp: &Clients,
    ctx: &StepContext,
    what: &str,
) -> Result<(), ProviderError> {
    match resume(ctx) {
        Some(op) => {
            op.poll(gcp, ctx, &format!("the interrupted change of {what}"))
                .await
        }
        None => Ok(()),
    }
}

impl Op {
    /// The GKE operation `op` answered with (its name made full from `gcp`'s location).
    pub fn container(gcp: &Clients, op: &google_cloud_container_v1::model::Operation) -> Op {
        let name = if op.name.starts_with("projects/") {
            op.name.clone()
        } else {
            format!("{}/operations/{}", gcp.location_path(), op.name)
        };
        Op::Container { name }
    }

    /// The Compute Engine operation `op` answered with.
    pub fn compute(op: &google_cloud_compute_v1::model::Operation) -> Op {
        let name = op.name.clone().unwrap_or_default();
        match op.region.as_deref() {
            Some(region) if !region.is_empty() => Op::ComputeRegion {
                region: region.rsplit('/').next().unwrap_or(region).to_owned(),
                name,
            },
            _ => Op::ComputeGlobal { name },
        }
    }

    /// The Artifact Registry operation `op` answered with.
    pub fn artifact_registry(op: &google_cloud_longrunning::model::Operation) -> Op {
        Op::ArtifactRegistry {
            name: op.name.clone(),
        }
    }

    /// Checkpoints the operation, then waits until it is done (see the module docs); `what`
    /// names the change in progress messages (`create of cluster prod`).
    pub async fn wait(
        &self,
        gcp: &Clients,
        ctx: &StepContext,
        what: &str,
    ) -> Result<(), ProviderError> {
        ctx.checkpoint(serde_json::json!({ "operation": self }))
            .await?;
        self.poll(gcp, ctx, what).await
    }

    /// Waits until the operation is done, without checkpointing it again.
    pub async fn poll(
        &self,
        gcp: &Clients,
        ctx: &StepContext,
        what: &str,
    ) -> Result<(), ProviderError> {
        wait::until(ctx, what, || async { self.probe(gcp, what).await }).await
    }

    async fn probe(&self, gcp: &Clients, what: &str) -> Result<Poll<()>, ProviderError> {
        use google_cloud_compute_v1::model::operation::Status as C;
        use google_cloud_container_v1::model::operation::Status as G;
        match self {
            Op::Container { name } => {
                let got = found(
                    gcp.container
                        .get_operation()
                        .set_name(name)
                        .send()
                        .boxed()
                        .await,
                    "container.operations.get",
                    name,
                )?;
                let Some(op) = got else {
                    return Ok(Poll::Done(()));
                };
                if op.status != G::Done {
                    return Ok(Poll::Waiting(
                        op.status.name().unwrap_or("RUNNING").to_owned(),
                    ));
                }
                match op
                    .error
                    .as_ref()
                    .filter(|e| e.code != 0 || !e.message.is_empty())
                {
                    Some(e) => Err(failed(what, e.code, &e.message, &op.detail)),
                    None => Ok(Poll::Done(())),
                }
            }
            Op::ComputeRegion { region, name } => {
                let op = gcp
                    .region_operations
                    .get()
                    .set_project(&gcp.project)
                    .set_region(region)
                    .set_operation(name)
                    .send()
                    .boxed()
                    .await
                    .on("compute.regionOperations.get", name)?;
                compute_status(what, &op, op.status == Some(C::Done))
            }
            Op::ArtifactRegistry { name } => {
                let got = found(
                    gcp.artifact_registry
                        .get_operation()
                        .set_name(name)
                        .send()
                        .boxed()
                        .await,
                    "artifactregistry.operations.get",
                    name,
                )?;
                match got {
                    None => Ok(Poll::Done(())),
                    Some(op) => longrunning_status(what, &op),
                }
            }
            Op::ComputeGlobal { name } => {
                let op = gcp
                    .global_operations
                    .get()
                    .set_project(&gcp.project)
                    .set_operation(name)
                    .send()
                    .boxed()
                    .await
                    .on("compute.globalOperations.get", name)?;
                compute_status(what, &op, op.status == Some(C::Done))
            }
        }
    }
}

fn compute_status(
    what: &str,
    op: &google_cloud_compute_v1::model::Operation,
    done: bool,
) -> Result<Poll<()>, ProviderError> {
    if !done {
        let status = op
            .status
            .as_ref()
            .and_then(|s| s.name())
            .unwrap_or("RUNNING");
        return Ok(Poll::Waiting(status.to_owned()));
    }
    let errors: Vec<String> = op
        .error
        .iter()
        .flat_map(|e| &e.errors)
        .map(|e| {
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("ERROR"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    if errors.is_empty() {
        return Ok(Poll::Done(()));
    }
    let transient = op
        .http_error_status_code
        .is_some_and(|s| s == 429 || s >= 500)
        || errors.iter().any(|e| {
            e.starts_with("RATE_LIMIT") || e.contains("QUOTA_EXCEEDED") && e.contains("rate")
        });
    let message = format!("{what} failed: {}", errors.join("; "));
    Err(if transient {
        ProviderError::retryable(message)
    } else {
        ProviderError::permanent(message)
    }
    .with_code(
        op.error
            .iter()
            .flat_map(|e| &e.errors)
            .find_map(|e| e.code.clone())
            .unwrap_or_else(|| "OPERATION_FAILED".to_owned()),
    ))
}

/// A `google.longrunning` operation's state: waiting until `done`, then its `error` (a
/// `google.rpc.Status`, classified by its code as GKE's are) or success.
fn longrunning_status(
    what: &str,
    op: &google_cloud_longrunning::model::Operation,
) -> Result<Poll<()>, ProviderError> {
    use google_cloud_longrunning::model::operation::Result as R;
    if !op.done {
        return Ok(Poll::Waiting("RUNNING".to_owned()));
    }
    match &op.result {
        Some(R::Error(e)) => Err(failed(what, e.code, &e.message, "")),
        _ => Ok(Poll::Done(())),
    }
}

/// A GKE operation's error: retryable for the codes that mean "try again" (UNAVAILABLE 14,
/// RESOURCE_EXHAUSTED 8, ABORTED 10, INTERNAL 13), permanent otherwise.
fn failed(what: &str, code: i32, message: &str, detail: &str) -> ProviderError {
    let text = if message.is_empty() { detail } else { message };
    let message = format!("{what} failed: {text}");
    let error = if matches!(code, 8 | 10 | 13 | 14) {
        ProviderError::retryable(message)
    } else {
        ProviderError::permanent(message)
    };
    error.with_code(format!("OPERATION_FAILED_{code}"))
}

/// The checkpoint value of `op` (for tests that resume a run by hand).
pub fn checkpoint(op: &Op) -> Value {
    serde_json::json!({ "operation": op })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip() {
        let op = Op::Container {
            name: "projects/p/locations/europe-west1/operations/operation-1".into(),
        };
        let ctx = StepContext::default().with_checkpoint(checkpoint(&op));
        assert_eq!(resume(&ctx), Some(op));
        assert_eq!(resume(&StepContext::default()), None);
        let op = Op::ComputeRegion {
            region: "europe-west1".into(),
            name: "operation-2".into(),
        };
        let ctx = StepContext::default().with_checkpoint(checkpoint(&op));
        assert_eq!(resume(&ctx), Some(op));
    }

    #[test]
    fn operation_errors_keep_their_class() {
        assert!(failed("create", 14, "backend unavailable", "").is_retryable());
        assert!(!failed("create", 3, "invalid machine type", "").is_retryable());
    }
}

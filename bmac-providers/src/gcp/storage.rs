//! Cloud Storage bucket administration over the JSON API, and `object_bucket` on Google Cloud:
//! the GCS bucket that archives audit logs.
//!
//! # Why the JSON API, by hand
//! The official `google-cloud-storage` crate administers buckets only through `StorageControl`,
//! which speaks gRPC (`google.storage.v2`); no local server speaks it, and a provider that
//! cannot be tested is not done. So this module calls the documented JSON API
//! (`storage/v1/b…`) with reqwest, the Application Default Credentials' bearer token and the
//! narrowest typed forms it needs ([`Bucket`], the IAM [`Policy`] it shares with every other
//! Google API). Errors become the SDK's own error type, so one classification
//! ([`super::error`]) serves them too.
//!
//! # The bucket
//! Created in the cluster's region (or adopted when the project already owns it) with:
//! uniform bucket-level access (no object ACLs), public access prevention `enforced`, a
//! retention policy of `retention_days` — objects cannot be deleted or overwritten younger
//! than that, the counterpart of S3 object lock in governance mode: someone with
//! `storage.buckets.update` can still remove it — locked (irreversible, the counterpart of
//! compliance mode) only when the config says `lock_retention`, a lifecycle rule deleting
//! objects older than `retention_days`, and the labels `bmac-cluster`, `bmac-step`,
//! `bmac-created`. TLS needs nothing: the JSON API is HTTPS only. A name another project owns
//! is a permanent error. A locked policy can only be raised; lowering it is refused before any
//! call.
//!
//! Whether bmac made the bucket is recorded twice, in a checkpoint right after the insert and
//! in the `bmac-created` label, and only such a bucket is ever deleted, only with
//! `force_destroy` — after its objects, which a retention policy may still protect (then the
//! destroy fails naming it). Otherwise destroy keeps the bucket and its records and says so.

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{BucketConfig, OUTPUT_BUCKET};
use google_cloud_gax::error::rpc::{Code, Status as RpcStatus};
use google_cloud_gax::error::Error;
use google_cloud_iam_v1::model::Policy;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{found, Context as _, Status};
use super::{Clients, Handler};
use crate::cloud::Boxed;

/// Where the JSON API lives when no override names another root.
pub const DEFAULT_ROOT: &str = "https://storage.googleapis.com";
/// The label marking a bucket bmac created.
pub const CREATED_LABEL: &str = "bmac-created";

/// A Cloud Storage JSON API client: a root URL and the HTTP client (tokens come from the
/// [`Clients`]' credentials on each call).
#[derive(Debug, Clone)]
pub struct Gcs {
    http: reqwest::Client,
    root: String,
}

/// The bucket fields bmac reads and writes (others pass through untouched: only named fields
/// are patched).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// The bucket's name.
    #[serde(default)]
    pub name: String,
    /// Its metageneration (a precondition for locking and patches).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metageneration: String,
    /// The project number that owns it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_number: String,
    /// Location (`EUROPE-WEST1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Uniform access and public access prevention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_configuration: Option<Value>,
    /// The retention policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<Value>,
    /// Lifecycle rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Value>,
}

impl Bucket {
    fn uniform(&self) -> bool {
        self.iam_configuration
            .as_ref()
            .and_then(|c| c["uniformBucketLevelAccess"]["enabled"].as_bool())
            .unwrap_or(false)
    }

    fn public_access_prevented(&self) -> bool {
        self.iam_configuration
            .as_ref()
            .and_then(|c| c["publicAccessPrevention"].as_str())
            == Some("enforced")
    }

    /// Retention in whole days, if there is a policy.
    fn retention_days(&self) -> Option<u32> {
        let p = self.retention_policy.as_ref()?;
        let secs: u64 = match &p["retentionPeriod"] {
            Value::String(s) => s.parse().ok()?,
            v => v.as_u64()?,
        };
        u32::try_from(secs / 86_400).ok()
    }

    fn locked(&self) -> bool {
        self.retention_policy
            .as_ref()
            .and_then(|p| p["isLocked"].as_bool())
            .unwrap_or(false)
    }

    fn created_by_bmac(&self) -> bool {
        self.labels.get(CREATED_LABEL).map(String::as_str) == Some("true")
    }
}

fn gcs_code(http: u16) -> Code {
    match http {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        // A stale metageneration or policy etag: read again and retry.
        412 => Code::Aborted,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The JSON API's error body (`{"error":{"code","message","errors":[{"reason"}]}}`) as the
/// SDK's error type. A 403 whose reason is `retentionPolicyNotMet` is no missing permission
/// but an object the bucket's retention policy still protects: `FAILED_PRECONDITION`, so its
/// message does not send the user to their IAM roles.
fn service_error(http: u16, body: &[u8]) -> Error {
    let v = serde_json::from_slice::<Value>(body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {http}"));
    let code = match (http, v["error"]["errors"][0]["reason"].as_str()) {
        (403, Some("retentionPolicyNotMet")) => Code::FailedPrecondition,
        _ => gcs_code(http),
    };
    Error::service(RpcStatus::default().set_code(code).set_message(message))
}

impl Gcs {
    /// A client of the JSON API at `root` (the override, else [`DEFAULT_ROOT`]).
    pub fn new(root: Option<&str>) -> Gcs {
        Gcs {
            http: reqwest::Client::new(),
            root: root
                .unwrap_or(DEFAULT_ROOT)
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// One call: `path` under the root (with its query), an optional JSON body. `Ok(None)` for
    /// an empty answer (204).
    pub async fn call(
        &self,
        gcp: &Clients,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, Error> {
        let token = gcp.credentials.access_token().await.map_err(|e| {
            let code = if e.is_transient() {
                Code::Unavailable
            } else {
                Code::Unauthenticated
            };
            Error::service(
                RpcStatus::default()
                    .set_code(code)
                    .set_message(crate::cloud::describe(&e)),
            )
        })?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.root))
            .bearer_auth(token.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(Error::io)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(Error::io)?;
        if !(200..300).contains(&status) {
            return Err(service_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(Error::deser)
    }

    /// The bucket, if it exists.
    pub async fn bucket(&self, gcp: &Clients, name: &str) -> Result<Option<Bucket>, ProviderError> {
        let got = found(
            self.call(
                gcp,
                reqwest::Method::GET,
                &format!("/storage/v1/b/{name}"),
                None,
            )
            .boxed()
            .await,
            "storage.buckets.get",
            &format!("bucket {name}"),
        )?;
        got.flatten()
            .map(|v| serde_json::from_value(v).map_err(|e| bad_answer(name, e)))
            .transpose()
    }

    /// The bucket's IAM policy, at version 3: Cloud Storage refuses to return a policy with
    /// IAM Conditions at a lower version, and [`super::iam_policy::edit`] keeps conditional
    /// bindings others made.
    pub async fn policy(&self, gcp: &Clients, name: &str) -> Result<Policy, Error> {
        let v = self
            .call(
                gcp,
                reqwest::Method::GET,
                &format!("/storage/v1/b/{name}/iam?optionsRequestedPolicyVersion=3"),
                None,
            )
            .boxed()
            .await?
            .unwrap_or_default();
        serde_json::from_value(v).map_err(Error::deser)
    }

    /// Writes the bucket's IAM policy (its etag guards the write: 412 when stale).
    pub async fn set_policy(&self, gcp: &Clients, name: &str, p: Policy) -> Result<Policy, Error> {
        let body = serde_json::to_value(&p).map_err(Error::deser)?;
        let v = self
            .call(
                gcp,
                reqwest::Method::PUT,
                &format!("/storage/v1/b/{name}/iam"),
                Some(&body),
            )
            .boxed()
            .await?
            .unwrap_or_default();
        serde_json::from_value(v).map_err(Error::deser)
    }

    /// Applies `changes` to the bucket's IAM policy ([`super::iam_policy::edit`]).
    pub async fn edit_policy(
        &self,
        gcp: &Clients,
        name: &str,
        changes: &[super::iam_policy::Change],
    ) -> Result<bool, ProviderError> {
        super::iam_policy::edit(
            &format!("bucket {name}"),
            changes,
            || self.policy(gcp, name),
            |p| self.set_policy(gcp, name, p),
        )
        .boxed()
        .await
    }
}

fn bad_answer(name: &str, e: serde_json::Error) -> ProviderError {
    ProviderError::permanent(format!("bucket {name}: an unreadable answer: {e}"))
}

/// The `object_bucket` handler.
pub struct GcsBucket;

fn outputs(name: &str, created: bool) -> Outputs {
    Outputs::new()
        .with(OUTPUT_BUCKET, name)
        .with("url", format!("gs://{name}"))
        .with("created", created)
}

fn retention_policy(days: u32) -> Value {
    json!({"retentionPeriod": (u64::from(days) * 86_400).to_string()})
}

fn lifecycle(days: u32) -> Value {
    json!({"rule": [{"action": {"type": "Delete"}, "condition": {"age": days}}]})
}

fn secure() -> Value {
    json!({"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"})
}

/// The lifecycle age after which bmac's rule deletes objects, if the bucket has that rule.
fn lifecycle_days(b: &Bucket) -> Option<u32> {
    b.lifecycle.as_ref()?["rule"]
        .as_array()?
        .iter()
        .find(|r| r["action"]["type"] == "Delete")
        .and_then(|r| r["condition"]["age"].as_u64())
        .and_then(|d| u32::try_from(d).ok())
}

#[async_trait]
impl Handler<Clients> for GcsBucket {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: BucketConfig = super::config(req.step)?;
        let at = format!("bucket {}", c.name);
        let gcs = &gcp.storage;
        let mut created = req
            .ctx
            .last_checkpoint()
            .is_some_and(|v| v["created"] == json!(true))
            || req.prior.is_some_and(|p| {
                p.outputs().get("created").and_then(|v| v.value()) == Some(&json!(true))
            });
        let mut bucket = match gcs.bucket(gcp, &c.name).boxed().await? {
            Some(b) => b,
            None => {
                let mut labels = super::labels::of(&gcp.cluster, req.step.id.as_str());
                labels.insert(CREATED_LABEL.to_owned(), "true".to_owned());
                let body = json!({
                    "name": c.name,
                    "location": gcp.region.to_ascii_uppercase(),
                    "labels": labels,
                    "iamConfiguration": secure(),
                    "retentionPolicy": retention_policy(c.retention_days),
                    "lifecycle": lifecycle(c.retention_days),
                });
                let made = gcs
                    .call(
                        gcp,
                        reqwest::Method::POST,
                        &format!("/storage/v1/b?project={}", gcp.project),
                        Some(&body),
                    )
                    .boxed()
                    .await;
                match made {
                    Ok(v) => {
                        req.ctx.checkpoint(json!({"created": true})).await?;
                        created = true;
                        serde_json::from_value(v.unwrap_or_default())
                            .map_err(|e| bad_answer(&c.name, e))?
                    }
                    Err(e) if Status::of(&e) == Status::AlreadyExists => {
                        // Ours after all (a create whose answer was lost), or another project's.
                        gcs.bucket(gcp, &c.name).boxed().await?.ok_or_else(|| {
                            ProviderError::permanent(format!(
                                "the bucket name {} is taken by another project (bucket names are global): choose another `[audit] archive` bucket",
                                c.name
                            ))
                            .with_code("bmac::gcp::bucket_taken")
                        })?
                    }
                    Err(e) => return Err(super::error::classify("storage.buckets.insert", &at, e)),
                }
            }
        };
        if !created && !bucket.project_number.is_empty() {
            let ours = super::kms::project_number(gcp).boxed().await?;
            if bucket.project_number != ours {
                return Err(ProviderError::permanent(format!(
                    "the bucket {} belongs to another project (number {}), not {}: bmac adopts only an archive bucket of the cluster's project — choose another `[audit] archive` bucket",
                    c.name, bucket.project_number, gcp.project
                ))
                .with_code("bmac::gcp::bucket_taken"));
            }
        }
        if bucket.locked()
            && bucket
                .retention_days()
                .is_some_and(|d| d > c.retention_days)
        {
            return Err(ProviderError::permanent(format!(
                "bucket {}: its retention policy is locked at {} days and can only be raised, not lowered to {}",
                c.name,
                bucket.retention_days().unwrap_or_default(),
                c.retention_days
            ))
            .with_code("bmac::gcp::retention_locked"));
        }
        let mut patch = serde_json::Map::new();
        if !bucket.uniform() || !bucket.public_access_prevented() {
            patch.insert("iamConfiguration".into(), secure());
        }
        if bucket.retention_days() != Some(c.retention_days) {
            patch.insert("retentionPolicy".into(), retention_policy(c.retention_days));
        }
        if lifecycle_days(&bucket) != Some(c.retention_days) {
            patch.insert("lifecycle".into(), lifecycle(c.retention_days));
        }
        if !patch.is_empty() {
            let v = gcs
                .call(
                    gcp,
                    reqwest::Method::PATCH,
                    &format!(
                        "/storage/v1/b/{}?ifMetagenerationMatch={}",
                        c.name, bucket.metageneration
                    ),
                    Some(&Value::Object(patch)),
                )
                .boxed()
                .await
                .on("storage.buckets.update", &at)?;
            bucket = serde_json::from_value(v.unwrap_or_default())
                .map_err(|e| bad_answer(&c.name, e))?;
        }
        if c.lock_retention && !bucket.locked() {
            gcs.call(
                gcp,
                reqwest::Method::POST,
                &format!(
                    "/storage/v1/b/{}/lockRetentionPolicy?ifMetagenerationMatch={}",
                    c.name, bucket.metageneration
                ),
                None,
            )
            .boxed()
            .await
            .on("storage.buckets.update (lockRetentionPolicy)", &at)?;
        }
        Ok(outputs(&c.name, created || bucket.created_by_bmac()))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: BucketConfig = super::config(req.step)?;
        let Some(b) = gcp.storage.bucket(gcp, &c.name).boxed().await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["retention_days"] = json!(b.retention_days().unwrap_or(0));
        // Access that is not uniform, or public access allowed, is no longer TLS-only-and-private:
        // shown as `require_tls = false`, restored by apply.
        config["require_tls"] = json!(b.uniform() && b.public_access_prevented());
        config["object_lock"] = json!(b.retention_policy.is_some());
        if c.lock_retention {
            config["lock_retention"] = json!(b.locked());
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&c.name, b.created_by_bmac()),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: BucketConfig = super::config(req.step)?;
        let at = format!("bucket {}", c.name);
        let gcs = &gcp.storage;
        let Some(b) = gcs.bucket(gcp, &c.name).boxed().await? else {
            return Ok(());
        };
        let created = req.prior.outputs().get("created").and_then(|v| v.value())
            == Some(&json!(true))
            || b.created_by_bmac();
        if !(created && c.force_destroy) {
            crate::cloud::kept_bucket(req.ctx, &c.name, created);
            return Ok(());
        }
        loop {
            let listed = gcs
                .call(
                    gcp,
                    reqwest::Method::GET,
                    &format!("/storage/v1/b/{}/o", c.name),
                    None,
                )
                .boxed()
                .await
                .on("storage.objects.list", &at)?
                .unwrap_or_default();
            let names: Vec<String> = listed["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["name"].as_str().map(str::to_owned))
                .collect();
            if names.is_empty() {
                break;
            }
            for name in names {
                let path = format!("/storage/v1/b/{}/o/{}", c.name, percent_encode(&name));
                found(
                    gcs.call(gcp, reqwest::Method::DELETE, &path, None)
                        .boxed()
                        .await,
                    "storage.objects.delete",
                    &format!("object gs://{}/{name}", c.name),
                )?;
            }
        }
        found(
            gcs.call(
                gcp,
                reqwest::Method::DELETE,
                &format!("/storage/v1/b/{}", c.name),
                None,
            )
            .boxed()
            .await,
            "storage.buckets.delete",
            &at,
        )?;
        Ok(())
    }
}

/// An object name as one path segment.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_keep_their_meaning() {
        let e = service_error(
            409,
            br#"{"error":{"code":409,"message":"You already own it."}}"#,
        );
        assert_eq!(Status::of(&e), Status::AlreadyExists);
        assert_eq!(e.status().unwrap().message, "You already own it.");
        let stale = service_error(412, b"{}");
        assert_eq!(stale.status().unwrap().code, Code::Aborted);
        let retained = service_error(
            403,
            br#"{"error":{"code":403,"message":"Object 'b/o' is subject to bucket's retention policy","errors":[{"reason":"retentionPolicyNotMet"}]}}"#,
        );
        assert_eq!(retained.status().unwrap().code, Code::FailedPrecondition);
        assert_eq!(
            service_error(403, b"{}").status().unwrap().code,
            Code::PermissionDenied
        );
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn a_bucket_reads_back_its_settings() {
        let b: Bucket = serde_json::from_value(json!({
            "name": "x", "metageneration": "3",
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true}, "publicAccessPrevention": "enforced"},
            "retentionPolicy": {"retentionPeriod": "31536000", "isLocked": true},
            "lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": 365}}]},
            "labels": {"bmac-created": "true"}
        }))
        .unwrap();
        assert!(b.uniform() && b.public_access_prevented() && b.locked() && b.created_by_bmac());
        assert_eq!(b.retention_days(), Some(365));
        assert_eq!(lifecycle_days(&b), Some(365));
    }
}

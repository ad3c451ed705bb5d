//! `object_bucket` on AWS: the S3 bucket that archives audit logs.
//!
//! The bucket is made (or, when it is already the caller's, adopted) with: all public access
//! blocked; default encryption (SSE-S3 with a bucket key); versioning; a bucket policy that
//! denies any request not made over TLS (`aws:SecureTransport = false`); a lifecycle rule that
//! expires records after `retention_days`, removes superseded versions a day later and aborts
//! uploads left incomplete for a week; and, with `object_lock`, object lock in governance mode
//! (compliance mode with `lock_retention`) with a default retention of `retention_days` (set at creation: S3 cannot add object lock to
//! a bucket that lacks it, which is why `object_lock` is a replacement). A bucket name taken by
//! another account (`BucketAlreadyExists`) is a permanent error.
//!
//! Whether bmac made the bucket is recorded twice — a checkpoint right after `CreateBucket`
//! and the tag `bmac.dev/created = true` — and only such a bucket is ever deleted, and only
//! with `force_destroy`: then every version and delete marker goes first (bypassing governance
//! retention). Otherwise destroy keeps the bucket and its records and says so.

use async_trait::async_trait;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, DefaultRetention, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ObjectIdentifier, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
    ObjectLockRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{BucketConfig, OUTPUT_BUCKET};
use bmac_steps::spec::partition;
use serde_json::json;

use super::super::error::{found, Code, Context as _};
use super::super::{tags, Clients, Handler};

/// The `object_bucket` handler.
pub struct Bucket;

/// The tag marking a bucket bmac created (and so may delete with `force_destroy`).
pub const CREATED_TAG: &str = "bmac.dev/created";
/// The bucket policy statement that refuses plain HTTP.
const TLS_ONLY_SID: &str = "bmac-deny-insecure-transport";
/// The lifecycle rule bmac owns.
const RETENTION_RULE: &str = "bmac-retention";

fn invalid(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::permanent(format!("an S3 request could not be built: {e}"))
}

/// Whether the bucket exists and is the caller's: `Some(true)`, `None` when it does not exist.
async fn exists(aws: &Clients, name: &str) -> Result<Option<()>, ProviderError> {
    let head = found(
        aws.s3.head_bucket().bucket(name).send().await,
        "s3:HeadBucket",
        &format!("bucket {name}"),
    )?;
    Ok(head.map(drop))
}

fn policy(part: &str, name: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": TLS_ONLY_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:{part}:s3:::{name}"), format!("arn:{part}:s3:::{name}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    })
}

async fn configure(
    aws: &Clients,
    c: &BucketConfig,
    tag_set: Vec<Tag>,
) -> Result<(), ProviderError> {
    let name = &c.name;
    let at = format!("bucket {name}");
    aws.s3
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .on("s3:PutBucketPublicAccessBlock", &at)?;
    let sse = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(invalid)?;
    aws.s3
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(sse)
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .on("s3:PutEncryptionConfiguration", &at)?;
    aws.s3
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .on("s3:PutBucketVersioning", &at)?;
    if c.require_tls {
        aws.s3
            .put_bucket_policy()
            .bucket(name)
            .policy(policy(partition(&aws.region), name).to_string())
            .send()
            .await
            .on("s3:PutBucketPolicy", &at)?;
    }
    let rule = LifecycleRule::builder()
        .id(RETENTION_RULE)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(
            LifecycleExpiration::builder()
                .days(c.retention_days as i32)
                .build(),
        )
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(1)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(7)
                .build(),
        )
        .build()
        .map_err(invalid)?;
    aws.s3
        .put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .on("s3:PutLifecycleConfiguration", &at)?;
    let mode = lock_mode(c);
    if c.object_lock && !lock_is(aws, name, c.retention_days, &mode).await? {
        aws.s3
            .put_object_lock_configuration()
            .bucket(name)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(mode)
                                    .days(c.retention_days as i32)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .on("s3:PutBucketObjectLockConfiguration", &at)?;
    }
    aws.s3
        .put_bucket_tagging()
        .bucket(name)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .on("s3:PutBucketTagging", &at)?;
    Ok(())
}

/// Governance mode, or compliance mode (nobody can shorten it) with `lock_retention`.
fn lock_mode(c: &BucketConfig) -> ObjectLockRetentionMode {
    if c.lock_retention {
        ObjectLockRetentionMode::Compliance
    } else {
        ObjectLockRetentionMode::Governance
    }
}

/// Whether object lock is on with a default retention of `days` in `mode` already.
async fn lock_is(
    aws: &Clients,
    name: &str,
    days: u32,
    mode: &ObjectLockRetentionMode,
) -> Result<bool, ProviderError> {
    match aws
        .s3
        .get_object_lock_configuration()
        .bucket(name)
        .send()
        .await
    {
        Ok(l) => Ok(l.object_lock_configuration().is_some_and(|o| {
            let retention = o.rule().and_then(|r| r.default_retention());
            o.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled)
                && retention.and_then(|r| r.mode()) == Some(mode)
                && retention.and_then(|r| r.days()) == Some(days as i32)
        })),
        Err(e) if Code::of(&e).is(&["ObjectLockConfigurationNotFoundError"]) => Ok(false),
        Err(e) => Err(super::super::error::classify(
            "s3:GetBucketObjectLockConfiguration",
            &format!("bucket {name}"),
            e,
        )),
    }
}

/// Whether the bucket carries [`CREATED_TAG`].
async fn made_by_bmac(aws: &Clients, name: &str) -> Result<bool, ProviderError> {
    match aws.s3.get_bucket_tagging().bucket(name).send().await {
        Ok(t) => Ok(t
            .tag_set()
            .iter()
            .any(|t| t.key() == CREATED_TAG && t.value() == "true")),
        Err(e) if Code::of(&e).is_not_found() || Code::of(&e).is(&["NoSuchTagSet"]) => Ok(false),
        Err(e) => Err(super::super::error::classify(
            "s3:GetBucketTagging",
            &format!("bucket {name}"),
            e,
        )),
    }
}

fn outputs(aws: &Clients, name: &str, created: bool) -> Outputs {
    Outputs::new()
        .with(OUTPUT_BUCKET, name)
        .with("arn", format!("arn:{}:s3:::{name}", partition(&aws.region)))
        .with("created", created)
}

#[async_trait]
impl Handler<Clients> for Bucket {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: BucketConfig = super::super::config(req.step)?;
        let at = format!("bucket {}", c.name);
        let resumed = req
            .ctx
            .last_checkpoint()
            .and_then(|v| v.get("created"))
            .and_then(|v| v.as_bool())
            == Some(true);
        let created = match exists(aws, &c.name).await? {
            Some(()) => resumed || made_by_bmac(aws, &c.name).await?,
            None => {
                let mut create = aws
                    .s3
                    .create_bucket()
                    .bucket(&c.name)
                    .object_lock_enabled_for_bucket(c.object_lock);
                if aws.region != "us-east-1" {
                    create = create.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(
                                aws.region.as_str(),
                            ))
                            .build(),
                    );
                }
                match create.send().await {
                    Ok(_) => {
                        req.ctx.checkpoint(json!({"created": true})).await?;
                        true
                    }
                    Err(e) if Code::of(&e).is(&["BucketAlreadyOwnedByYou"]) => resumed,
                    Err(e) if Code::of(&e).is(&["BucketAlreadyExists"]) => {
                        return Err(ProviderError::permanent(format!(
                            "the bucket name {} is taken by another AWS account (bucket names are global): choose another `archive`",
                            c.name
                        ))
                        .with_code("BucketAlreadyExists"))
                    }
                    Err(e) => return Err(super::super::error::classify("s3:CreateBucket", &at, e)),
                }
            }
        };
        let mut tag_set: Vec<Tag> = tags::of(&aws.cluster, req.step.id.as_str(), None)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        if created {
            tag_set.push(
                Tag::builder()
                    .key(CREATED_TAG)
                    .value("true")
                    .build()
                    .map_err(invalid)?,
            );
        }
        configure(aws, &c, tag_set).await?;
        Ok(outputs(aws, &c.name, created))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: BucketConfig = super::super::config(req.step)?;
        let at = format!("bucket {}", c.name);
        if exists(aws, &c.name).await?.is_none() {
            return Ok(Observed::Absent);
        }
        let tls = match aws.s3.get_bucket_policy().bucket(&c.name).send().await {
            Ok(p) => p
                .policy()
                .is_some_and(|p| p.contains(TLS_ONLY_SID) && p.contains("aws:SecureTransport")),
            Err(e) if Code::of(&e).is(&["NoSuchBucketPolicy"]) => false,
            Err(e) => return Err(super::super::error::classify("s3:GetBucketPolicy", &at, e)),
        };
        let days = match aws
            .s3
            .get_bucket_lifecycle_configuration()
            .bucket(&c.name)
            .send()
            .await
        {
            Ok(l) => l
                .rules()
                .iter()
                .find(|r| r.id() == Some(RETENTION_RULE))
                .and_then(|r| r.expiration())
                .and_then(|e| e.days())
                .unwrap_or(0),
            Err(e) if Code::of(&e).is(&["NoSuchLifecycleConfiguration"]) => 0,
            Err(e) => {
                return Err(super::super::error::classify(
                    "s3:GetLifecycleConfiguration",
                    &at,
                    e,
                ))
            }
        };
        let lock = match aws
            .s3
            .get_object_lock_configuration()
            .bucket(&c.name)
            .send()
            .await
        {
            Ok(l) => {
                l.object_lock_configuration()
                    .and_then(|o| o.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            Err(e) if Code::of(&e).is(&["ObjectLockConfigurationNotFoundError"]) => false,
            Err(e) => {
                return Err(super::super::error::classify(
                    "s3:GetBucketObjectLockConfiguration",
                    &at,
                    e,
                ))
            }
        };
        let created = made_by_bmac(aws, &c.name).await?;
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["require_tls"] = json!(tls);
        config["retention_days"] = json!(days);
        config["object_lock"] = json!(lock);
        Ok(Observed::Present {
            config,
            outputs: outputs(aws, &c.name, created),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: BucketConfig = super::super::config(req.step)?;
        let at = format!("bucket {}", c.name);
        if exists(aws, &c.name).await?.is_none() {
            return Ok(());
        }
        let created = req.prior.outputs().get("created").and_then(|v| v.value())
            == Some(&json!(true))
            || made_by_bmac(aws, &c.name).await?;
        if !(created && c.force_destroy) {
            crate::cloud::kept_bucket(req.ctx, &c.name, created);
            return Ok(());
        }
        loop {
            let listed = aws
                .s3
                .list_object_versions()
                .bucket(&c.name)
                .send()
                .await
                .on("s3:ListBucketVersions", &at)?;
            let mut ids = Vec::new();
            for v in listed.versions() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(v.key().unwrap_or_default())
                        .set_version_id(v.version_id().map(str::to_owned))
                        .build()
                        .map_err(invalid)?,
                );
            }
            for m in listed.delete_markers() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(m.key().unwrap_or_default())
                        .set_version_id(m.version_id().map(str::to_owned))
                        .build()
                        .map_err(invalid)?,
                );
            }
            if ids.is_empty() {
                break;
            }
            aws.s3
                .delete_objects()
                .bucket(&c.name)
                .bypass_governance_retention(true)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()
                        .map_err(invalid)?,
                )
                .send()
                .await
                .on("s3:DeleteObjectVersion", &at)?;
        }
        match aws.s3.delete_bucket().bucket(&c.name).send().await {
            Ok(_) => Ok(()),
            Err(e) if Code::of(&e).is_not_found() => Ok(()),
            Err(e) => Err(super::super::error::classify("s3:DeleteBucket", &at, e)),
        }
    }
}

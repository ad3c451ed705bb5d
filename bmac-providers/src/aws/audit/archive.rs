//! `audit_archive` on AWS: every record of the audit log group, delivered into the bucket.
//!
//! The pipeline AWS documents for streaming CloudWatch Logs to S3: a Firehose delivery stream
//! `bmac-<cluster>-audit` (direct put, into the archive bucket under `<prefix>/`, failures under
//! `<prefix>-errors/`; records stay as CloudWatch delivers them, gzip-compressed batches), and a
//! subscription filter `bmac-archive` on the log group with an empty pattern (everything) whose
//! destination is the stream. Two roles carry it, each allowed exactly its part:
//! `bmac-<cluster>-audit-firehose` (trusted by `firehose.amazonaws.com`; may write objects to that
//! bucket only) and `bmac-<cluster>-audit-logs` (trusted by CloudWatch Logs of this region and
//! account; may put records to that stream only).
//!
//! The stream is found by name, so a create that crashed is adopted; the subscription filter
//! is a put (idempotent). Observe reports a missing or re-pointed filter as drift. Destroy
//! removes the filter, the stream and both roles; the objects already delivered stay in the
//! bucket (whose own step decides their fate).

use async_trait::async_trait;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamDescription, DeliveryStreamStatus,
    DeliveryStreamType, ExtendedS3DestinationConfiguration, Tag,
};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{AuditArchiveConfig, INPUT_BUCKET, INPUT_LOG_GROUP};
use bmac_steps::spec::partition;
use serde_json::json;

use super::super::cluster::input_str;
use super::super::error::{created, found, Context as _};
use super::super::iam::{ensure_role, remove_role, trust, Desired};
use super::super::{tags, Clients, Handler};
use crate::cloud::wait::{self, Poll};

/// The `audit_archive` handler.
pub struct AuditArchive;

/// The name of the subscription filter on the log group.
pub const FILTER: &str = "bmac-archive";

struct Names {
    stream: String,
    firehose_role: String,
    logs_role: String,
}

fn names(aws: &Clients) -> Names {
    Names {
        stream: format!("bmac-{}-audit", aws.cluster),
        firehose_role: format!("bmac-{}-audit-firehose", aws.cluster),
        logs_role: format!("bmac-{}-audit-logs", aws.cluster),
    }
}

async fn account(aws: &Clients) -> Result<String, ProviderError> {
    let me = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .on("sts:GetCallerIdentity", "the caller")?;
    Ok(me.account().unwrap_or_default().to_owned())
}

async fn stream(
    aws: &Clients,
    name: &str,
) -> Result<Option<DeliveryStreamDescription>, ProviderError> {
    Ok(found(
        aws.firehose
            .describe_delivery_stream()
            .delivery_stream_name(name)
            .send()
            .await,
        "firehose:DescribeDeliveryStream",
        name,
    )?
    .and_then(|o| o.delivery_stream_description))
}

fn invalid(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::permanent(format!("a Firehose request could not be built: {e}"))
}

#[async_trait]
impl Handler<Clients> for AuditArchive {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AuditArchiveConfig = super::super::config(req.step)?;
        let group = input_str(req.inputs, INPUT_LOG_GROUP)?.to_owned();
        let bucket = input_str(req.inputs, INPUT_BUCKET)?.to_owned();
        let n = names(aws);
        let part = partition(&aws.region);
        let account = account(aws).await?;
        let step = req.step.id.as_str();
        let stream_arn = format!(
            "arn:{part}:firehose:{}:{account}:deliverystream/{}",
            aws.region, n.stream
        );
        let firehose_role = ensure_role(
            aws,
            step,
            "bmac: Firehose writes the audit archive",
            &Desired {
                name: n.firehose_role.clone(),
                trust: trust("firehose.amazonaws.com", &["sts:AssumeRole"], Some(json!({"StringEquals": {"sts:ExternalId": account}}))),
                managed: Vec::new(),
                inline: Some(json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Action": ["s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"],
                        "Resource": [format!("arn:{part}:s3:::{bucket}"), format!("arn:{part}:s3:::{bucket}/*")]
                    }]
                })),
            },
        )
        .await?;
        let logs_role = ensure_role(
            aws,
            step,
            "bmac: CloudWatch Logs feeds the audit archive",
            &Desired {
                name: n.logs_role.clone(),
                trust: trust(
                    "logs.amazonaws.com",
                    &["sts:AssumeRole"],
                    Some(json!({"StringLike": {"aws:SourceArn": format!("arn:{part}:logs:{}:{account}:*", aws.region)}})),
                ),
                managed: Vec::new(),
                inline: Some(json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": ["firehose:PutRecord", "firehose:PutRecordBatch"], "Resource": stream_arn}]
                })),
            },
        )
        .await?;
        if stream(aws, &n.stream).await?.is_none() {
            let destination = ExtendedS3DestinationConfiguration::builder()
                .role_arn(&firehose_role)
                .bucket_arn(format!("arn:{part}:s3:::{bucket}"))
                .prefix(format!("{}/", c.prefix.trim_end_matches('/')))
                .error_output_prefix(format!("{}-errors/", c.prefix.trim_end_matches('/')))
                .compression_format(CompressionFormat::Uncompressed)
                .buffering_hints(
                    BufferingHints::builder()
                        .size_in_mbs(5)
                        .interval_in_seconds(300)
                        .build(),
                )
                .build()
                .map_err(invalid)?;
            let tag_list = tags::of(&aws.cluster, step, None)
                .into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            created(
                aws.firehose
                    .create_delivery_stream()
                    .delivery_stream_name(&n.stream)
                    .delivery_stream_type(DeliveryStreamType::DirectPut)
                    .extended_s3_destination_configuration(destination)
                    .set_tags(Some(tag_list))
                    .send()
                    .await,
                "firehose:CreateDeliveryStream",
                &n.stream,
            )?;
        }
        let arn = wait::until(
            req.ctx,
            &format!("delivery stream {}", n.stream),
            || async {
                let d = stream(aws, &n.stream).await?.ok_or_else(|| {
                    ProviderError::retryable(format!(
                        "delivery stream {} is not visible yet",
                        n.stream
                    ))
                })?;
                Ok(match d.delivery_stream_status() {
                    DeliveryStreamStatus::Active => Poll::Done(d.delivery_stream_arn().to_owned()),
                    DeliveryStreamStatus::CreatingFailed => {
                        return Err(ProviderError::permanent(format!(
                            "delivery stream {} failed to create",
                            n.stream
                        )))
                    }
                    other => Poll::Waiting(other.as_str().to_owned()),
                })
            },
        )
        .await?;
        aws.logs
            .put_subscription_filter()
            .log_group_name(&group)
            .filter_name(FILTER)
            .filter_pattern("")
            .destination_arn(&arn)
            .role_arn(&logs_role)
            .send()
            .await
            .on("logs:PutSubscriptionFilter", &group)?;
        Ok(Outputs::new()
            .with("stream_arn", arn)
            .with("subscription_filter", FILTER))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AuditArchiveConfig = super::super::config(req.step)?;
        let n = names(aws);
        let Some(d) = stream(aws, &n.stream).await? else {
            return Ok(Observed::Absent);
        };
        let arn = d.delivery_stream_arn().to_owned();
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        let prefix = d
            .destinations()
            .iter()
            .find_map(|x| {
                x.extended_s3_destination_description()
                    .and_then(|e| e.prefix())
            })
            .map(|p| p.trim_end_matches('/').to_owned());
        config["prefix"] = json!(prefix);
        // The filter is what makes it an archive: one gone or pointing elsewhere is drift.
        if let Ok(group) = input_str(req.inputs, INPUT_LOG_GROUP) {
            let filters = aws
                .logs
                .describe_subscription_filters()
                .log_group_name(group)
                .send()
                .await
                .on("logs:DescribeSubscriptionFilters", group)?;
            let wired = filters.subscription_filters().iter().any(|f| {
                f.filter_name() == Some(FILTER) && f.destination_arn() == Some(arn.as_str())
            });
            if !wired {
                config["subscription"] = json!("missing");
            }
        }
        Ok(Observed::Present {
            config,
            outputs: Outputs::new()
                .with("stream_arn", arn)
                .with("subscription_filter", FILTER),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let n = names(aws);
        if let Ok(group) = input_str(req.inputs, INPUT_LOG_GROUP) {
            found(
                aws.logs
                    .delete_subscription_filter()
                    .log_group_name(group)
                    .filter_name(FILTER)
                    .send()
                    .await,
                "logs:DeleteSubscriptionFilter",
                group,
            )?;
        }
        if stream(aws, &n.stream).await?.is_some() {
            found(
                aws.firehose
                    .delete_delivery_stream()
                    .delivery_stream_name(&n.stream)
                    .send()
                    .await,
                "firehose:DeleteDeliveryStream",
                &n.stream,
            )?;
        }
        remove_role(aws, &n.logs_role).await?;
        remove_role(aws, &n.firehose_role).await
    }
}

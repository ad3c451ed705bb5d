//! `audit_logging` on AWS: the control plane's log types, and the log group they land in.
//!
//! EKS writes control-plane logs to `/aws/eks/<cluster>/cluster`. bmac creates that group
//! itself (tagged) before switching logging on, as AWS recommends, so its retention is set from
//! the first record (`PutRetentionPolicy`; the spec only allows values CloudWatch accepts).
//! Apply reads the group first and sends only what is missing or differs (no `CreateLogGroup`
//! for a group that exists, no `PutRetentionPolicy` for the retention it has).
//! Logging is one `UpdateClusterConfig` that enables exactly the spec's types and disables the
//! rest, sent only when they differ; it counts against the cluster's one-update-at-a-time
//! group. Observe reads both back, so `bmac drift` shows a log type switched off by hand.
//!
//! Destroy switches logging off and keeps the log group: it holds audit records, which bmac
//! never deletes silently (the progress message says where they are).

use async_trait::async_trait;
use aws_sdk_eks::types::{LogSetup, LogType, Logging};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{AuditLoggingConfig, OUTPUT_LOG_GROUP};
use serde_json::json;

use super::super::cluster::wait_update;
use super::super::error::{created, found, Context as _};
use super::super::{tags, Clients, Handler};

/// The `audit_logging` handler.
pub struct AuditLogging;

/// The log group EKS writes `cluster`'s control-plane logs to.
pub fn log_group(cluster: &str) -> String {
    format!("/aws/eks/{cluster}/cluster")
}

/// Every EKS log type, with its spec spelling.
const TYPES: &[(&str, LogType)] = &[
    ("api", LogType::Api),
    ("audit", LogType::Audit),
    ("authenticator", LogType::Authenticator),
    ("controller_manager", LogType::ControllerManager),
    ("scheduler", LogType::Scheduler),
];

/// The log types enabled on the cluster, in spec spelling and order.
async fn enabled(aws: &Clients, cluster: &str) -> Result<Option<Vec<String>>, ProviderError> {
    let out = found(
        aws.eks.describe_cluster().name(cluster).send().await,
        "eks:DescribeCluster",
        &format!("cluster {cluster}"),
    )?;
    let Some(c) = out.and_then(|o| o.cluster) else {
        return Ok(None);
    };
    let on: Vec<&LogType> = c
        .logging()
        .map(|l| l.cluster_logging())
        .unwrap_or_default()
        .iter()
        .filter(|s| s.enabled() == Some(true))
        .flat_map(|s| s.types())
        .collect();
    Ok(Some(
        TYPES
            .iter()
            .filter(|(_, t)| on.contains(&t))
            .map(|(name, _)| (*name).to_owned())
            .collect(),
    ))
}

/// Enables exactly `wanted` (spec spellings) on the cluster, and waits for the update.
async fn set_logging(
    aws: &Clients,
    ctx: &bmac_core::provider::StepContext,
    cluster: &str,
    wanted: &[String],
) -> Result<(), ProviderError> {
    let (on, off): (Vec<_>, Vec<_>) = TYPES
        .iter()
        .partition(|(name, _)| wanted.iter().any(|w| w == name));
    let mut setups = Vec::new();
    for (types, enabled) in [(on, true), (off, false)] {
        if !types.is_empty() {
            setups.push(
                LogSetup::builder()
                    .set_types(Some(types.into_iter().map(|(_, t)| t.clone()).collect()))
                    .enabled(enabled)
                    .build(),
            );
        }
    }
    let out = aws
        .eks
        .update_cluster_config()
        .name(cluster)
        .logging(Logging::builder().set_cluster_logging(Some(setups)).build())
        .send()
        .await
        .on(
            "eks:UpdateClusterConfig",
            &format!("logging of cluster {cluster}"),
        )?;
    wait_update(aws, ctx, cluster, out.update()).await
}

async fn retention(
    aws: &Clients,
    group: &str,
) -> Result<Option<(Option<i32>, String)>, ProviderError> {
    let out = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .on("logs:DescribeLogGroups", group)?;
    Ok(out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .map(|g| {
            (
                g.retention_in_days(),
                g.arn()
                    .unwrap_or_default()
                    .trim_end_matches(":*")
                    .to_owned(),
            )
        }))
}

#[async_trait]
impl Handler<Clients> for AuditLogging {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AuditLoggingConfig = super::super::config(req.step)?;
        let group = log_group(&c.cluster);
        let tags = tags::of(&aws.cluster, req.step.id.as_str(), None)
            .into_iter()
            .collect();
        // Only what is missing or differs is sent: a run that puts log types right after a
        // hand change neither re-creates the group nor re-puts its retention.
        let existing = retention(aws, &group).await?;
        if existing.is_none() {
            created(
                aws.logs
                    .create_log_group()
                    .log_group_name(&group)
                    .set_tags(Some(tags))
                    .send()
                    .await,
                "logs:CreateLogGroup",
                &group,
            )?;
        }
        let days = c.retention_days as i32;
        if existing.as_ref().and_then(|(kept, _)| *kept) != Some(days) {
            aws.logs
                .put_retention_policy()
                .log_group_name(&group)
                .retention_in_days(days)
                .send()
                .await
                .on("logs:PutRetentionPolicy", &group)?;
        }
        let now = enabled(aws, &c.cluster).await?.ok_or_else(|| {
            ProviderError::retryable(format!("cluster {} is not visible yet", c.cluster))
        })?;
        if now != c.log_types {
            set_logging(aws, req.ctx, &c.cluster, &c.log_types).await?;
        }
        let arn = match existing {
            Some((_, arn)) if !arn.is_empty() => arn,
            _ => retention(aws, &group)
                .await?
                .map(|(_, arn)| arn)
                .unwrap_or_default(),
        };
        Ok(Outputs::new()
            .with(OUTPUT_LOG_GROUP, group)
            .with("log_group_arn", arn))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AuditLoggingConfig = super::super::config(req.step)?;
        let group = log_group(&c.cluster);
        let (Some(types), Some((days, arn))) = (
            enabled(aws, &c.cluster).await?,
            retention(aws, &group).await?,
        ) else {
            return Ok(Observed::Absent);
        };
        Ok(Observed::Present {
            config: json!({"cluster": c.cluster, "log_types": types, "retention_days": days.unwrap_or(0)}),
            outputs: Outputs::new()
                .with(OUTPUT_LOG_GROUP, group)
                .with("log_group_arn", arn),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: AuditLoggingConfig = super::super::config(req.step)?;
        if let Some(on) = enabled(aws, &c.cluster).await? {
            if !on.is_empty() {
                set_logging(aws, req.ctx, &c.cluster, &[]).await?;
            }
        }
        req.ctx.progress(format!(
            "kept log group {} with its audit records (retention {} days); delete it yourself once they are no longer needed",
            log_group(&c.cluster),
            c.retention_days
        ));
        Ok(())
    }
}

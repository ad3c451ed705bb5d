//! `audit_alarm` on AWS: metric filters on the audit log and CloudWatch alarms to SNS.
//!
//! For `deny`: the metric filter `bmac-denied` counts API requests answered 403 (`{
//! $.responseStatus.code = 403 }`) as `DeniedRequests`, and an alarm fires at 10 or more in five
//! minutes (a forbidden request now and then is normal; a burst is someone probing). For
//! `anomalies`: `bmac-anomalies` counts requests by `system:anonymous`, `exec`/`attach` into pods
//! and `escalate`/`impersonate` verbs as `AuditAnomalies`, and its alarm fires on the first.
//! Metrics live in the namespace `bmac/<cluster>`; missing data is not breaching.
//!
//! Alarms notify an SNS topic: the spec's `notify` when it is a topic ARN (checked to exist,
//! never changed or deleted), else `bmac-<cluster>-audit-alerts`, created by bmac — with an
//! e-mail subscription when `notify` is an address (AWS mails a confirmation link first).
//! Everything is a put, so re-applying converges; observe reports which alarms exist, so one
//! deleted by hand is drift.

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use aws_sdk_cloudwatchlogs::types::MetricTransformation;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{AuditAlarmConfig, INPUT_LOG_GROUP};
use serde_json::json;

use super::super::cluster::input_str;
use super::super::error::{found, Context as _};
use super::super::{tags, Clients, Handler};

/// The `audit_alarm` handler.
pub struct AuditAlarm;

/// One watched condition: its spec name, filter, metric, pattern and threshold.
pub struct Watch {
    /// `deny` or `anomalies`.
    pub on: &'static str,
    /// The metric filter's name.
    pub filter: &'static str,
    /// The metric it counts into.
    pub metric: &'static str,
    /// The CloudWatch Logs filter pattern over the audit events (JSON).
    pub pattern: &'static str,
    /// Alarm at this many in five minutes.
    pub threshold: f64,
}

/// What bmac watches the audit log for.
pub const WATCHES: &[Watch] = &[
    Watch {
        on: "deny",
        filter: "bmac-denied",
        metric: "DeniedRequests",
        pattern: "{ $.responseStatus.code = 403 }",
        threshold: 10.0,
    },
    Watch {
        on: "anomalies",
        filter: "bmac-anomalies",
        metric: "AuditAnomalies",
        pattern: "{ ($.user.username = \"system:anonymous\") || ($.objectRef.subresource = \"exec\") || ($.objectRef.subresource = \"attach\") || ($.verb = \"escalate\") || ($.verb = \"impersonate\") }",
        threshold: 1.0,
    },
];

fn namespace(aws: &Clients) -> String {
    format!("bmac/{}", aws.cluster)
}

fn alarm_name(aws: &Clients, w: &Watch) -> String {
    format!("bmac-{}-audit-{}", aws.cluster, w.on)
}

fn own_topic(aws: &Clients) -> String {
    format!("bmac-{}-audit-alerts", aws.cluster)
}

/// The topic alarms go to: the given ARN (checked), or bmac's own (created).
async fn topic(aws: &Clients, c: &AuditAlarmConfig, step: &str) -> Result<String, ProviderError> {
    if let Some(arn) = c.notify.as_deref().filter(|n| n.starts_with("arn:")) {
        let got = found(
            aws.sns.get_topic_attributes().topic_arn(arn).send().await,
            "sns:GetTopicAttributes",
            arn,
        )?;
        if got.is_none() {
            return Err(ProviderError::permanent(format!(
                "the SNS topic {arn} the spec names does not exist"
            ))
            .with_code("NotFound"));
        }
        return Ok(arn.to_owned());
    }
    let tag_list = tags::of(&aws.cluster, step, None)
        .into_iter()
        .map(|(k, v)| aws_sdk_sns::types::Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::permanent(format!("tag: {e}")))?;
    let name = own_topic(aws);
    let out = aws
        .sns
        .create_topic()
        .name(&name)
        .set_tags(Some(tag_list))
        .send()
        .await
        .on("sns:CreateTopic", &name)?;
    let arn = out.topic_arn().unwrap_or_default().to_owned();
    if let Some(email) = c.notify.as_deref().filter(|n| n.contains('@')) {
        let subs = aws
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&arn)
            .send()
            .await
            .on("sns:ListSubscriptionsByTopic", &arn)?;
        if !subs
            .subscriptions()
            .iter()
            .any(|s| s.protocol() == Some("email") && s.endpoint() == Some(email))
        {
            aws.sns
                .subscribe()
                .topic_arn(&arn)
                .protocol("email")
                .endpoint(email)
                .send()
                .await
                .on("sns:Subscribe", &arn)?;
        }
    }
    Ok(arn)
}

/// The alarm on `w`'s metric, to `topic` (a put: it creates or updates).
async fn put_alarm(
    aws: &Clients,
    w: &Watch,
    ns: &str,
    name: &str,
    topic: &str,
) -> Result<(), ProviderError> {
    aws.cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .alarm_description(format!(
            "bmac: audit log of cluster {}: {}",
            aws.cluster, w.on
        ))
        .namespace(ns)
        .metric_name(w.metric)
        .statistic(Statistic::Sum)
        .period(300)
        .evaluation_periods(1)
        .threshold(w.threshold)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .treat_missing_data("notBreaching")
        .alarm_actions(topic)
        .send()
        .await
        .on("cloudwatch:PutMetricAlarm", name)?;
    Ok(())
}

fn watched<'a>(c: &'a AuditAlarmConfig) -> impl Iterator<Item = &'static Watch> + 'a {
    WATCHES
        .iter()
        .filter(move |w| c.on.iter().any(|o| o == w.on))
}

#[async_trait]
impl Handler<Clients> for AuditAlarm {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AuditAlarmConfig = super::super::config(req.step)?;
        let group = input_str(req.inputs, INPUT_LOG_GROUP)?;
        let topic = topic(aws, &c, req.step.id.as_str()).await?;
        let ns = namespace(aws);
        let mut alarms = Vec::new();
        let existing = aws
            .logs
            .describe_metric_filters()
            .log_group_name(group)
            .filter_name_prefix("bmac-")
            .send()
            .await
            .on("logs:DescribeMetricFilters", group)?;
        for w in watched(&c) {
            // Put only what differs: a re-apply makes no write (and servers that append
            // rather than replace a same-named filter, as moto does, keep one).
            let current = existing
                .metric_filters()
                .iter()
                .find(|f| f.filter_name() == Some(w.filter));
            let same = current.is_some_and(|f| {
                f.filter_pattern() == Some(w.pattern)
                    && f.metric_transformations()
                        .iter()
                        .any(|t| t.metric_name() == w.metric && t.metric_namespace() == ns)
            });
            if same {
                let name = alarm_name(aws, w);
                put_alarm(aws, w, &ns, &name, &topic).await?;
                alarms.push(name);
                continue;
            }
            let transformation = MetricTransformation::builder()
                .metric_name(w.metric)
                .metric_namespace(&ns)
                .metric_value("1")
                .default_value(0.0)
                .build()
                .map_err(|e| ProviderError::permanent(format!("metric filter: {e}")))?;
            aws.logs
                .put_metric_filter()
                .log_group_name(group)
                .filter_name(w.filter)
                .filter_pattern(w.pattern)
                .metric_transformations(transformation)
                .send()
                .await
                .on("logs:PutMetricFilter", group)?;
            let name = alarm_name(aws, w);
            put_alarm(aws, w, &ns, &name, &topic).await?;
            alarms.push(name);
        }
        Ok(Outputs::new()
            .with("topic_arn", topic)
            .with("alarms", json!(alarms)))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AuditAlarmConfig = super::super::config(req.step)?;
        let names: Vec<String> = WATCHES.iter().map(|w| alarm_name(aws, w)).collect();
        let out = aws
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names))
            .send()
            .await
            .on("cloudwatch:DescribeAlarms", &aws.cluster)?;
        let present: Vec<&str> = WATCHES
            .iter()
            .filter(|w| {
                out.metric_alarms()
                    .iter()
                    .any(|a| a.alarm_name() == Some(alarm_name(aws, w).as_str()))
            })
            .map(|w| w.on)
            .collect();
        if present.is_empty() {
            return Ok(Observed::Absent);
        }
        let topic = out
            .metric_alarms()
            .iter()
            .flat_map(|a| a.alarm_actions())
            .next()
            .cloned()
            .unwrap_or_default();
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["on"] = json!(present);
        let alarms: Vec<String> = WATCHES
            .iter()
            .filter(|w| present.contains(&w.on))
            .map(|w| alarm_name(aws, w))
            .collect();
        Ok(Observed::Present {
            config,
            outputs: Outputs::new()
                .with("topic_arn", topic)
                .with("alarms", json!(alarms)),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: AuditAlarmConfig = super::super::config(req.step)?;
        let names: Vec<String> = WATCHES.iter().map(|w| alarm_name(aws, w)).collect();
        aws.cloudwatch
            .delete_alarms()
            .set_alarm_names(Some(names))
            .send()
            .await
            .on("cloudwatch:DeleteAlarms", &aws.cluster)?;
        if let Ok(group) = input_str(req.inputs, INPUT_LOG_GROUP) {
            for w in WATCHES {
                found(
                    aws.logs
                        .delete_metric_filter()
                        .log_group_name(group)
                        .filter_name(w.filter)
                        .send()
                        .await,
                    "logs:DeleteMetricFilter",
                    group,
                )?;
            }
        }
        if !c.notify.as_deref().is_some_and(|n| n.starts_with("arn:")) {
            let arn = req
                .prior
                .outputs()
                .get("topic_arn")
                .and_then(|v| v.value())
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if let Some(arn) = arn.filter(|a| !a.is_empty()) {
                found(
                    aws.sns.delete_topic().topic_arn(&arn).send().await,
                    "sns:DeleteTopic",
                    &arn,
                )?;
            }
        }
        Ok(())
    }
}

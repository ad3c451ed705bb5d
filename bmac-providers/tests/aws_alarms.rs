//! The audit alarm step: metric filters on the audit log group and the SNS topic on moto, and
//! the CloudWatch alarms through **aws-smithy-mocks** — the current aws-sdk-cloudwatch speaks
//! the Smithy RPC v2 CBOR protocol, which moto 5.2 does not serve (its CloudWatch answers only
//! the query protocol). The mocks check the real request shapes the SDK builds
//! (`PutMetricAlarm`, `DescribeAlarms`, `DeleteAlarms`) and answer with the SDK's real output
//! types.

mod aws_support;

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm, Statistic};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_support::{moto, spec, Build};
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, StepContext,
};
use bmac_core::{Inputs, OutputValue, Step, StepId};
use bmac_providers::aws::audit::alarm::AuditAlarm;
use bmac_providers::aws::Handler;
use bmac_steps::config::{AuditAlarmConfig, INPUT_LOG_GROUP};
use bmac_steps::kinds;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_watch_denied_requests_and_anomalies_and_notify_by_email() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-alarms";
    let build = Build::new(moto.clone());
    let s = spec(&format!(
        "[cluster]\nname = \"{name}\"\nprovider = \"eks\"\nregion = \"us-east-1\"\n"
    ));
    let real = moto.clients(&s, build.dir.path()).await;
    let group = format!("/aws/eks/{name}/cluster");
    if let Err(e) = real
        .logs
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
    {
        // Left by an earlier run against the same server.
        let exists = e
            .as_service_error()
            .is_some_and(|s| s.is_resource_already_exists_exception());
        assert!(exists, "{e:?}");
    }

    let topic_suffix = format!(":bmac-{name}-audit-alerts");
    let deny = format!("bmac-{name}-audit-deny");
    let anomalies = format!("bmac-{name}-audit-anomalies");
    let put_deny = {
        let (deny, suffix) = (deny.clone(), topic_suffix.clone());
        mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
            .match_requests(move |r| {
                r.alarm_name() == Some(deny.as_str())
                    && r.metric_name() == Some("DeniedRequests")
                    && r.namespace() == Some(&format!("bmac/{name}")[..])
                    && r.statistic() == Some(&Statistic::Sum)
                    && r.period() == Some(300)
                    && r.threshold() == Some(10.0)
                    && r.comparison_operator()
                        == Some(&ComparisonOperator::GreaterThanOrEqualToThreshold)
                    && r.alarm_actions().iter().any(|a| a.ends_with(&suffix))
            })
            .then_output(|| PutMetricAlarmOutput::builder().build())
    };
    let put_anomalies = {
        let anomalies = anomalies.clone();
        mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
            .match_requests(move |r| {
                r.alarm_name() == Some(anomalies.as_str())
                    && r.metric_name() == Some("AuditAnomalies")
                    && r.threshold() == Some(1.0)
            })
            .then_output(|| PutMetricAlarmOutput::builder().build())
    };
    let describe = {
        let (deny, anomalies) = (deny.clone(), anomalies.clone());
        mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name(&deny)
                        .alarm_actions("arn:aws:sns:us-east-1:123456789012:t")
                        .build(),
                )
                .metric_alarms(MetricAlarm::builder().alarm_name(&anomalies).build())
                .build()
        })
    };
    let delete = {
        let (deny, anomalies) = (deny.clone(), anomalies.clone());
        mock!(aws_sdk_cloudwatch::Client::delete_alarms)
            .match_requests(move |r| {
                r.alarm_names().contains(&deny) && r.alarm_names().contains(&anomalies)
            })
            .then_output(|| DeleteAlarmsOutput::builder().build())
    };
    let mut clients = (*real).clone();
    clients.cloudwatch = mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&put_deny, &put_anomalies, &describe, &delete]
    );

    let config = AuditAlarmConfig {
        on: vec!["deny".into(), "anomalies".into()],
        notify: Some("security@example.com".into()),
    };
    let step = Step::new(
        StepId::new("audit.alarm").unwrap(),
        kinds::kind(kinds::AUDIT_ALARM),
        &config,
    )
    .unwrap();
    let inputs = Inputs(BTreeMap::from([(
        INPUT_LOG_GROUP.to_owned(),
        OutputValue::Plain(group.clone().into()),
    )]));
    let ctx = StepContext::default();
    let request = ApplyRequest {
        step: &step,
        inputs: &inputs,
        prior: None,
        ctx: &ctx,
    };
    let outputs = AuditAlarm
        .apply(&clients, &request)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((put_deny.num_calls(), put_anomalies.num_calls()), (1, 1));

    // On moto: the two metric filters with their patterns, the topic and its subscription.
    let filters = real
        .logs
        .describe_metric_filters()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    let by_name: BTreeMap<&str, &str> = filters
        .metric_filters()
        .iter()
        .filter_map(|f| Some((f.filter_name()?, f.filter_pattern()?)))
        .collect();
    assert_eq!(by_name["bmac-denied"], "{ $.responseStatus.code = 403 }");
    assert!(by_name["bmac-anomalies"].contains("system:anonymous"));
    assert!(by_name["bmac-anomalies"].contains("\"exec\""));
    let topic = outputs
        .get("topic_arn")
        .and_then(|v| v.value())
        .and_then(|v| v.as_str())
        .unwrap()
        .to_owned();
    assert!(topic.ends_with(&topic_suffix), "{topic}");
    let subs = real
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert_eq!(subs.subscriptions().len(), 1);
    assert_eq!(subs.subscriptions()[0].protocol(), Some("email"));
    assert_eq!(
        subs.subscriptions()[0].endpoint(),
        Some("security@example.com")
    );

    // Applying again converges: no second subscription.
    AuditAlarm.apply(&clients, &request).await.unwrap();
    let subs = real
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert_eq!(subs.subscriptions().len(), 1);

    // Observe sees both alarms.
    let observed = AuditAlarm
        .observe(
            &clients,
            &ObserveRequest {
                step: &step,
                inputs: &inputs,
                prior: None,
                ctx: &ctx,
            },
        )
        .await
        .unwrap();
    let Observed::Present { config, .. } = observed else {
        panic!("{observed:?}")
    };
    assert_eq!(config["on"], serde_json::json!(["deny", "anomalies"]));

    // Destroy: alarms deleted, filters and the topic bmac made removed.
    let prior = Prior::new(step.config.value().clone(), outputs);
    AuditAlarm
        .destroy(
            &clients,
            &DestroyRequest {
                step: &step,
                inputs: &inputs,
                prior: &prior,
                ctx: &ctx,
            },
        )
        .await
        .unwrap();
    assert_eq!(delete.num_calls(), 1);
    let filters = real
        .logs
        .describe_metric_filters()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    assert!(filters.metric_filters().is_empty());
    assert!(real
        .sns
        .get_topic_attributes()
        .topic_arn(&topic)
        .send()
        .await
        .is_err());
}

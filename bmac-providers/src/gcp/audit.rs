//! The audit concern on Google Cloud: `audit_logging`, `audit_archive` and `audit_alarm`.
//!
//! GKE writes the Kubernetes API's audit records to Cloud Audit Logs itself: Admin Activity
//! (every write) always, Data Access (reads, and writes of user data) only when the project's
//! IAM audit config turns them on.
//!
//! - `audit_logging` turns on the Data Access audit logs (`ADMIN_READ`, `DATA_READ`,
//!   `DATA_WRITE`) of the Kubernetes Engine API on the project's IAM policy for `audit` (etag
//!   read-modify-write naming `auditConfigs`, exemptions others set kept), and the control-plane
//!   logging components for `api`, `scheduler`, `controller_manager` (`clusters.update` of the
//!   cluster's logging config, in the cluster's operation group); `authenticator` has no GKE
//!   counterpart and is ignored. Output `log_group`: the Cloud Logging filter that selects
//!   this cluster's audit records — what the archive and the alarms read. The hot copy's
//!   retention is Cloud Logging's own (`_Required` 400 days for Admin Activity, `_Default` 30
//!   days for Data Access); bmac does not change project-wide log buckets. Destroy turns off
//!   only the audit log types bmac turned on (recorded in its outputs) and puts the components
//!   back to system and workload logs.
//! - `audit_archive` is a project sink `bmac-<cluster>-audit` with that filter into the bucket
//!   of input `bucket`, with its own writer identity, which alone is granted
//!   `roles/storage.objectCreator` on that bucket (nothing on the project). Cloud Logging names
//!   the objects (`LOG_ID/YYYY/MM/DD/…`), so a `prefix` in the archive URL is not used on GCS.
//!   Destroy deletes the sink and revokes its grant.
//! - `audit_alarm` is a log-based metric per watched event — `denied` (requests the Kubernetes
//!   API refused: `PERMISSION_DENIED`), `anomalies` (anonymous requests, exec / attach into pods,
//!   and changes to RBAC bindings) — and a Cloud Monitoring alert policy on each (any event in a
//!   minute), notifying a channel: an existing one (`projects/P/notificationChannels/N`), or a
//!   channel bmac makes for a `notify` e-mail address or Pub/Sub topic (`projects/P/topics/T`:
//!   Cloud Monitoring's service agent must be allowed to publish to it, as Google documents).
//!   Destroy deletes what bmac made.
//!
//! Everything is named after the cluster, found again by name, and converged: a hand change
//! (a filter, a destination, a channel) is drift that apply restores.

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{
    AuditAlarmConfig, AuditArchiveConfig, AuditLoggingConfig, INPUT_BUCKET, INPUT_LOG_GROUP,
    OUTPUT_LOG_GROUP,
};
use google_cloud_container_v1::model::{
    logging_component_config::Component, ClusterUpdate, LoggingComponentConfig, LoggingConfig,
};
use google_cloud_iam_v1::model::audit_log_config::LogType as AuditLogType;
use google_cloud_logging_v2::model::{LogMetric, LogSink};
use google_cloud_monitoring_v3::model::{
    aggregation::Aligner, alert_policy, Aggregation, AlertPolicy, ComparisonType,
    NotificationChannel,
};
use google_cloud_wkt::{Duration as PbDuration, FieldMask};
use serde_json::json;

use super::cluster::{self, Change as ClusterChange};
use super::error::{found, Context as _};
use super::iam_policy::{self, Change};
use super::{Clients, Handler};
use crate::cloud::{input_str, Boxed};

/// The service whose audit configs cover the Kubernetes API's Data Access logs.
pub const KUBERNETES_SERVICE: &str = "container.googleapis.com";
/// The role a sink's writer identity gets on the archive bucket.
pub const OBJECT_CREATOR: &str = "roles/storage.objectCreator";

/// The `audit_logging` handler.
pub struct Logging;
/// The `audit_archive` handler.
pub struct Archive;
/// The `audit_alarm` handler.
pub struct Alarm;

fn data_access() -> Vec<AuditLogType> {
    vec![
        AuditLogType::AdminRead,
        AuditLogType::DataRead,
        AuditLogType::DataWrite,
    ]
}

fn log_type_name(t: &AuditLogType) -> &'static str {
    match t {
        AuditLogType::AdminRead => "ADMIN_READ",
        AuditLogType::DataRead => "DATA_READ",
        AuditLogType::DataWrite => "DATA_WRITE",
        _ => "UNSPECIFIED",
    }
}

fn log_type_of(name: &str) -> Option<AuditLogType> {
    data_access().into_iter().find(|t| log_type_name(t) == name)
}

/// The cluster's logging components for the spec's `log_types` (system and workload logs
/// always, as the cluster step creates them).
fn components(log_types: &[String]) -> Vec<Component> {
    let mut out = vec![Component::SystemComponents, Component::Workloads];
    for t in log_types {
        let c = match t.as_str() {
            "api" => Component::Apiserver,
            "scheduler" => Component::Scheduler,
            "controller_manager" => Component::ControllerManager,
            _ => continue,
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The filter of this cluster's Kubernetes API audit records.
pub fn audit_filter(gcp: &Clients) -> String {
    format!(
        "logName:\"cloudaudit.googleapis.com\" AND resource.type=\"k8s_cluster\" AND resource.labels.cluster_name=\"{}\" AND resource.labels.location=\"{}\"",
        gcp.cluster, gcp.location
    )
}

fn enabled_components(c: &google_cloud_container_v1::model::Cluster) -> Vec<Component> {
    c.logging_config
        .as_ref()
        .and_then(|l| l.component_config.as_ref())
        .map(|cc| cc.enable_components.clone())
        .unwrap_or_default()
}

fn same_set(a: &[Component], b: &[Component]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

async fn set_components(
    gcp: &Clients,
    ctx: &StepContext,
    want: Vec<Component>,
) -> Result<(), ProviderError> {
    ClusterChange::update(
        "control-plane logging update",
        ClusterUpdate::new().set_desired_logging_config(
            LoggingConfig::new()
                .set_component_config(LoggingComponentConfig::new().set_enable_components(want)),
        ),
    )
    .run(gcp, ctx, &gcp.cluster)
    .boxed()
    .await
}

/// The Data Access log types the outputs record bmac turned on.
fn turned_on(outputs: &Outputs) -> Vec<AuditLogType> {
    outputs
        .get("enabled_audit_logs")
        .and_then(|v| v.value())
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(log_type_of))
        .collect()
}

#[async_trait]
impl Handler<Clients> for Logging {
    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AuditLoggingConfig = super::config(req.step)?;
        let cl = cluster::get(gcp, &gcp.cluster)
            .boxed()
            .await?
            .ok_or_else(|| {
                ProviderError::permanent(format!("cluster {} does not exist", gcp.cluster))
            })?;
        let want = components(&c.log_types);
        if !same_set(&enabled_components(&cl), &want) {
            set_components(gcp, req.ctx, want).boxed().await?;
        }
        let mut enabled: Vec<AuditLogType> = req
            .prior
            .map(|p| turned_on(p.outputs()))
            .unwrap_or_default();
        if c.log_types.iter().any(|t| t == "audit") {
            let policy = super::iam::project_policy(gcp).await.on(
                "resourcemanager.projects.getIamPolicy",
                &format!("project {}", gcp.project),
            )?;
            let missing: Vec<AuditLogType> = data_access()
                .into_iter()
                .filter(|t| !iam_policy::audit_logs_on(&policy, KUBERNETES_SERVICE, t))
                .collect();
            if !missing.is_empty() {
                super::iam::edit_project(
                    gcp,
                    &[Change::EnableAuditLogs {
                        service: KUBERNETES_SERVICE.to_owned(),
                        log_types: missing.clone(),
                    }],
                )
                .boxed()
                .await?;
                for t in missing {
                    if !enabled.contains(&t) {
                        enabled.push(t);
                    }
                }
            }
        }
        Ok(Outputs::new()
            .with(OUTPUT_LOG_GROUP, audit_filter(gcp))
            .with(
                "enabled_audit_logs",
                json!(enabled.iter().map(log_type_name).collect::<Vec<_>>()),
            ))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AuditLoggingConfig = super::config(req.step)?;
        let Some(cl) = cluster::get(gcp, &gcp.cluster).boxed().await? else {
            return Ok(Observed::Absent);
        };
        let on = enabled_components(&cl);
        let policy = super::iam::project_policy(gcp).await.on(
            "resourcemanager.projects.getIamPolicy",
            &format!("project {}", gcp.project),
        )?;
        let audit_on = data_access()
            .iter()
            .all(|t| iam_policy::audit_logs_on(&policy, KUBERNETES_SERVICE, t));
        // The spec's types that are really on: a component or the audit config turned off by
        // hand drops out, and apply puts it back.
        let live: Vec<&String> = c
            .log_types
            .iter()
            .filter(|t| match t.as_str() {
                "audit" => audit_on,
                "api" => on.contains(&Component::Apiserver),
                "scheduler" => on.contains(&Component::Scheduler),
                "controller_manager" => on.contains(&Component::ControllerManager),
                _ => true,
            })
            .collect();
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["log_types"] = json!(live);
        let outputs = Outputs::new()
            .with(OUTPUT_LOG_GROUP, audit_filter(gcp))
            .with(
                "enabled_audit_logs",
                json!(
                    turned_on(req.prior.map(|p| p.outputs()).unwrap_or(&Outputs::new()))
                        .iter()
                        .map(log_type_name)
                        .collect::<Vec<_>>()
                ),
            );
        Ok(Observed::Present { config, outputs })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let ours = turned_on(req.prior.outputs());
        if !ours.is_empty() {
            super::iam::edit_project(
                gcp,
                &[Change::DisableAuditLogs {
                    service: KUBERNETES_SERVICE.to_owned(),
                    log_types: ours,
                }],
            )
            .boxed()
            .await?;
        }
        if let Some(cl) = cluster::get(gcp, &gcp.cluster).boxed().await? {
            let base = components(&[]);
            if !same_set(&enabled_components(&cl), &base) {
                set_components(gcp, req.ctx, base).boxed().await?;
            }
        }
        Ok(())
    }
}

fn sink_name(gcp: &Clients) -> String {
    format!("bmac-{}-audit", gcp.cluster)
}

fn sink_path(gcp: &Clients) -> String {
    format!("projects/{}/sinks/{}", gcp.project, sink_name(gcp))
}

async fn get_sink(gcp: &Clients) -> Result<Option<LogSink>, ProviderError> {
    found(
        gcp.sinks
            .get_sink()
            .set_sink_name(sink_path(gcp))
            .send()
            .boxed()
            .await,
        "logging.sinks.get",
        &format!("sink {}", sink_name(gcp)),
    )
}

fn destination(bucket: &str) -> String {
    format!("storage.googleapis.com/{bucket}")
}

#[async_trait]
impl Handler<Clients> for Archive {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let _: AuditArchiveConfig = super::config(req.step)?;
        let filter = input_str(req.inputs, INPUT_LOG_GROUP)?;
        let bucket = input_str(req.inputs, INPUT_BUCKET)?;
        let at = format!("sink {}", sink_name(gcp));
        let want = LogSink::new()
            .set_name(sink_name(gcp))
            .set_destination(destination(bucket))
            .set_filter(filter)
            .set_description(format!(
                "bmac: the Kubernetes API audit records of cluster {}",
                gcp.cluster
            ));
        let sink = match get_sink(gcp).boxed().await? {
            None => gcp
                .sinks
                .create_sink()
                .set_parent(format!("projects/{}", gcp.project))
                .set_sink(want)
                .set_unique_writer_identity(true)
                .send()
                .boxed()
                .await
                .on("logging.sinks.create", &at)?,
            Some(s) if s.destination != destination(bucket) || s.filter != filter => gcp
                .sinks
                .update_sink()
                .set_sink_name(sink_path(gcp))
                .set_sink(want)
                .set_unique_writer_identity(true)
                .set_update_mask(FieldMask::default().set_paths(["destination", "filter"]))
                .send()
                .boxed()
                .await
                .on("logging.sinks.update", &at)?,
            Some(s) => s,
        };
        let writer = sink.writer_identity.clone();
        gcp.storage
            .edit_policy(
                gcp,
                bucket,
                &[Change::Grant {
                    role: OBJECT_CREATOR.to_owned(),
                    member: writer.clone(),
                }],
            )
            .boxed()
            .await?;
        Ok(Outputs::new()
            .with("sink", sink_path(gcp))
            .with("writer_identity", writer)
            .with(INPUT_BUCKET, bucket))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let Some(sink) = get_sink(gcp).boxed().await? else {
            return Ok(Observed::Absent);
        };
        let (Some(filter), Some(bucket)) = (
            req.inputs.str(INPUT_LOG_GROUP),
            req.inputs.str(INPUT_BUCKET),
        ) else {
            return Ok(Observed::Absent);
        };
        let policy = gcp
            .storage
            .policy(gcp, bucket)
            .boxed()
            .await
            .on("storage.buckets.getIamPolicy", &format!("bucket {bucket}"))?;
        let intact = sink.destination == destination(bucket)
            && sink.filter == filter
            && iam_policy::has(&policy, OBJECT_CREATOR, &sink.writer_identity);
        let mut config = req.step.config.value().clone();
        if !intact {
            // A sink pointed elsewhere, filtering otherwise or unable to write is not the
            // archive the spec asks for: drift, which apply converges.
            config["delivery"] = json!(format!("not into gs://{bucket}"));
        }
        Ok(Observed::Present {
            config,
            outputs: Outputs::new()
                .with("sink", sink_path(gcp))
                .with("writer_identity", sink.writer_identity)
                .with(INPUT_BUCKET, bucket),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let sink = get_sink(gcp).boxed().await?;
        let writer = sink
            .as_ref()
            .map(|s| s.writer_identity.clone())
            .or_else(|| {
                req.prior
                    .outputs()
                    .str("writer_identity")
                    .map(str::to_owned)
            });
        let bucket = req
            .inputs
            .str(INPUT_BUCKET)
            .or_else(|| req.prior.outputs().str(INPUT_BUCKET))
            .map(str::to_owned);
        if sink.is_some() {
            found(
                gcp.sinks
                    .delete_sink()
                    .set_sink_name(sink_path(gcp))
                    .send()
                    .boxed()
                    .await,
                "logging.sinks.delete",
                &format!("sink {}", sink_name(gcp)),
            )?;
        }
        if let (Some(writer), Some(bucket)) = (writer, bucket) {
            if gcp.storage.bucket(gcp, &bucket).boxed().await?.is_some() {
                gcp.storage
                    .edit_policy(
                        gcp,
                        &bucket,
                        &[Change::Revoke {
                            role: OBJECT_CREATOR.to_owned(),
                            member: writer,
                        }],
                    )
                    .boxed()
                    .await?;
            }
        }
        Ok(())
    }
}

/// A watched event: its metric id suffix, what it counts and the filter it adds.
struct Watch {
    on: &'static str,
    title: &'static str,
    filter: &'static str,
}

const WATCHES: &[Watch] = &[
    Watch {
        on: "deny",
        title: "Kubernetes API requests denied",
        filter: "protoPayload.status.code=7",
    },
    Watch {
        on: "anomalies",
        title: "Kubernetes API anomalies (anonymous requests, exec or attach into pods, RBAC binding changes)",
        filter: "(protoPayload.authenticationInfo.principalEmail=\"system:anonymous\" OR protoPayload.methodName=(\"io.k8s.core.v1.pods.exec.create\" OR \"io.k8s.core.v1.pods.attach.create\") OR protoPayload.methodName:\"io.k8s.authorization.rbac.v1.clusterrolebindings\")",
    },
];

fn metric_id(gcp: &Clients, w: &Watch) -> String {
    format!("bmac-{}-audit-{}", gcp.cluster, w.on)
}

fn policy_name(gcp: &Clients, w: &Watch) -> String {
    format!("bmac {}: {}", gcp.cluster, w.title)
}

fn channel_name(gcp: &Clients, target: &str) -> String {
    format!("bmac {}: audit alerts to {target}", gcp.cluster)
}

/// The channel type and its label for a `notify` target bmac makes a channel for: a Pub/Sub
/// topic (`projects/P/topics/T`, type `pubsub`, label `topic`) or an e-mail address (type
/// `email`, label `email_address`).
fn channel_kind(notify: &str) -> (&'static str, &'static str) {
    if notify.starts_with("projects/") && notify.contains("/topics/") {
        ("pubsub", "topic")
    } else {
        ("email", "email_address")
    }
}

/// `projects/P/notificationChannels/N` as given.
fn is_channel(notify: &str) -> bool {
    notify.starts_with("projects/") && notify.contains("/notificationChannels/")
}

async fn find_channel(
    gcp: &Clients,
    display: &str,
) -> Result<Option<NotificationChannel>, ProviderError> {
    let listed = gcp
        .channels
        .list_notification_channels()
        .set_name(format!("projects/{}", gcp.project))
        .set_filter(format!("display_name = \"{display}\""))
        .send()
        .boxed()
        .await
        .on(
            "monitoring.notificationChannels.list",
            &format!("project {}", gcp.project),
        )?;
    Ok(listed
        .notification_channels
        .into_iter()
        .find(|c| c.display_name == display))
}

async fn find_policy(gcp: &Clients, display: &str) -> Result<Option<AlertPolicy>, ProviderError> {
    let listed = gcp
        .alerts
        .list_alert_policies()
        .set_name(format!("projects/{}", gcp.project))
        .set_filter(format!("display_name = \"{display}\""))
        .send()
        .boxed()
        .await
        .on(
            "monitoring.alertPolicies.list",
            &format!("project {}", gcp.project),
        )?;
    Ok(listed
        .alert_policies
        .into_iter()
        .find(|p| p.display_name == display))
}

/// The channel alerts go to: the given one, or bmac's e-mail or Pub/Sub channel (made when
/// missing).
/// Returns its name and whether bmac owns it.
async fn channel(gcp: &Clients, notify: &str) -> Result<(String, bool), ProviderError> {
    if is_channel(notify) {
        let got = found(
            gcp.channels
                .get_notification_channel()
                .set_name(notify)
                .send()
                .boxed()
                .await,
            "monitoring.notificationChannels.get",
            notify,
        )?;
        return match got {
            Some(c) => Ok((c.name, false)),
            None => Err(ProviderError::permanent(format!(
                "the notification channel {notify} does not exist"
            ))
            .with_code("NOT_FOUND")),
        };
    }
    let display = channel_name(gcp, notify);
    if let Some(c) = find_channel(gcp, &display).boxed().await? {
        return Ok((c.name, true));
    }
    let (kind, label) = channel_kind(notify);
    let made = gcp
        .channels
        .create_notification_channel()
        .set_name(format!("projects/{}", gcp.project))
        .set_notification_channel(
            NotificationChannel::new()
                .set_type(kind)
                .set_display_name(display)
                .set_labels([(label, notify)])
                .set_user_labels(super::labels::of(&gcp.cluster, "audit.alarm")),
        )
        .send()
        .boxed()
        .await
        .on(
            "monitoring.notificationChannels.create",
            &format!("project {}", gcp.project),
        )?;
    Ok((made.name, true))
}

fn alert_policy(gcp: &Clients, w: &Watch, channel: Option<&str>) -> AlertPolicy {
    let threshold = alert_policy::condition::MetricThreshold::new()
        .set_filter(format!(
            "metric.type=\"logging.googleapis.com/user/{}\" AND resource.type=\"k8s_cluster\"",
            metric_id(gcp, w)
        ))
        .set_comparison(ComparisonType::ComparisonGt)
        .set_threshold_value(0.0)
        .set_duration(PbDuration::clamp(0, 0))
        .set_aggregations([Aggregation::new()
            .set_alignment_period(PbDuration::clamp(60, 0))
            .set_per_series_aligner(Aligner::AlignSum)]);
    AlertPolicy::new()
        .set_display_name(policy_name(gcp, w))
        .set_combiner(alert_policy::ConditionCombinerType::Or)
        .set_conditions([alert_policy::Condition::new()
            .set_display_name(w.title)
            .set_condition_threshold(threshold)])
        .set_notification_channels(channel.map(str::to_owned))
        .set_user_labels(super::labels::of(&gcp.cluster, "audit.alarm"))
}

/// Conditions alike but for the names Monitoring gives them.
fn same_conditions(a: &[alert_policy::Condition], b: &[alert_policy::Condition]) -> bool {
    let unnamed = |c: &[alert_policy::Condition]| -> Vec<alert_policy::Condition> {
        c.iter().cloned().map(|c| c.set_name("")).collect()
    };
    unnamed(a) == unnamed(b)
}

#[async_trait]
impl Handler<Clients> for Alarm {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AuditAlarmConfig = super::config(req.step)?;
        let base = input_str(req.inputs, INPUT_LOG_GROUP)?;
        let (channel, own_channel) = match &c.notify {
            Some(n) => {
                let (name, own) = channel(gcp, n).boxed().await?;
                (Some(name), own)
            }
            None => (None, false),
        };
        let mut metrics = Vec::new();
        let mut policies = Vec::new();
        for w in WATCHES.iter().filter(|w| c.on.iter().any(|o| o == w.on)) {
            let id = metric_id(gcp, w);
            let path = format!("projects/{}/metrics/{id}", gcp.project);
            let filter = format!("{base} AND {}", w.filter);
            let metric = LogMetric::new()
                .set_name(&id)
                .set_filter(&filter)
                .set_description(format!("bmac: {} in cluster {}", w.title, gcp.cluster));
            match found(
                gcp.metrics
                    .get_log_metric()
                    .set_metric_name(&path)
                    .send()
                    .boxed()
                    .await,
                "logging.logMetrics.get",
                &format!("metric {id}"),
            )? {
                None => {
                    gcp.metrics
                        .create_log_metric()
                        .set_parent(format!("projects/{}", gcp.project))
                        .set_metric(metric)
                        .send()
                        .boxed()
                        .await
                        .on("logging.logMetrics.create", &format!("metric {id}"))?;
                }
                Some(m) if m.filter != filter => {
                    gcp.metrics
                        .update_log_metric()
                        .set_metric_name(&path)
                        .set_metric(metric)
                        .send()
                        .boxed()
                        .await
                        .on("logging.logMetrics.update", &format!("metric {id}"))?;
                }
                Some(_) => {}
            }
            metrics.push(path);
            let want = alert_policy(gcp, w, channel.as_deref());
            let display = policy_name(gcp, w);
            let name = match find_policy(gcp, &display).boxed().await? {
                None => {
                    gcp.alerts
                        .create_alert_policy()
                        .set_name(format!("projects/{}", gcp.project))
                        .set_alert_policy(want)
                        .send()
                        .boxed()
                        .await
                        .on(
                            "monitoring.alertPolicies.create",
                            &format!("alert policy {display}"),
                        )?
                        .name
                }
                Some(p)
                    if p.notification_channels != want.notification_channels
                        || !same_conditions(&p.conditions, &want.conditions)
                        || !p.enabled.unwrap_or(true) =>
                {
                    let name = p.name.clone();
                    gcp.alerts
                        .update_alert_policy()
                        .set_alert_policy(want.set_name(&name).set_enabled(true))
                        .set_update_mask(FieldMask::default().set_paths([
                            "conditions",
                            "notification_channels",
                            "enabled",
                        ]))
                        .send()
                        .boxed()
                        .await
                        .on(
                            "monitoring.alertPolicies.update",
                            &format!("alert policy {display}"),
                        )?;
                    name
                }
                Some(p) => p.name,
            };
            policies.push(name);
        }
        Ok(Outputs::new()
            .with("metrics", json!(metrics))
            .with("alert_policies", json!(policies))
            .with("channel", json!(channel))
            .with("channel_created", own_channel))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AuditAlarmConfig = super::config(req.step)?;
        let mut on = Vec::new();
        for w in WATCHES.iter().filter(|w| c.on.iter().any(|o| o == w.on)) {
            let path = format!("projects/{}/metrics/{}", gcp.project, metric_id(gcp, w));
            let metric = found(
                gcp.metrics
                    .get_log_metric()
                    .set_metric_name(&path)
                    .send()
                    .boxed()
                    .await,
                "logging.logMetrics.get",
                &path,
            )?;
            let policy = find_policy(gcp, &policy_name(gcp, w)).boxed().await?;
            if metric.is_some() && policy.is_some_and(|p| p.enabled.unwrap_or(true)) {
                on.push(w.on);
            }
        }
        if on.is_empty() {
            return Ok(Observed::Absent);
        }
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        config["on"] = json!(on);
        Ok(Observed::Present {
            config,
            outputs: req.prior.map(|p| p.outputs().clone()).unwrap_or_default(),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        for w in WATCHES {
            if let Some(p) = find_policy(gcp, &policy_name(gcp, w)).boxed().await? {
                found(
                    gcp.alerts
                        .delete_alert_policy()
                        .set_name(&p.name)
                        .send()
                        .boxed()
                        .await,
                    "monitoring.alertPolicies.delete",
                    &p.name,
                )?;
            }
            let path = format!("projects/{}/metrics/{}", gcp.project, metric_id(gcp, w));
            found(
                gcp.metrics
                    .delete_log_metric()
                    .set_metric_name(&path)
                    .send()
                    .boxed()
                    .await,
                "logging.logMetrics.delete",
                &path,
            )?;
        }
        let outputs = req.prior.outputs();
        let own = outputs.get("channel_created").and_then(|v| v.value()) == Some(&json!(true));
        if let (true, Some(ch)) = (own, outputs.str("channel")) {
            found(
                gcp.channels
                    .delete_notification_channel()
                    .set_name(ch)
                    .set_force(true)
                    .send()
                    .boxed()
                    .await,
                "monitoring.notificationChannels.delete",
                ch,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_log_types_become_gke_components() {
        let types: Vec<String> = ["api", "audit", "authenticator", "scheduler"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            components(&types),
            [
                Component::SystemComponents,
                Component::Workloads,
                Component::Apiserver,
                Component::Scheduler
            ]
        );
        assert!(same_set(
            &[Component::Workloads, Component::SystemComponents],
            &components(&[])
        ));
        assert_eq!(log_type_of("DATA_READ"), Some(AuditLogType::DataRead));
    }

    #[test]
    fn notify_targets_become_channels_of_their_kind() {
        assert_eq!(
            channel_kind("projects/acme-prod/topics/security-alerts"),
            ("pubsub", "topic")
        );
        assert_eq!(
            channel_kind("secops@example.com"),
            ("email", "email_address")
        );
        assert!(is_channel("projects/acme-prod/notificationChannels/123"));
        assert!(!is_channel("projects/acme-prod/topics/security-alerts"));
    }
}

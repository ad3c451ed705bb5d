//! The audit concern: control-plane audit logging, its archive in object storage and an
//! alarm on it.
//!
//! `[audit]` with `enabled = true` (the default) makes `audit.logging` (after the cluster:
//! logging is switched on for a control plane that exists). An `archive` adds `audit.bucket`
//! — created in parallel with the cluster, it needs nothing — and `audit.archive`, which takes
//! the log group from `audit.logging` and the bucket from `audit.bucket` as inputs, so it runs
//! after both. An `alarm` that watches anything adds `audit.alarm` on the log group.
//!
//! Retention: the archive keeps `retention_days` (365 when unset) under object lock; the log
//! group is the hot copy and keeps at most [`HOT_RETENTION_DAYS`] when there is an archive,
//! `retention_days` (or 90) when there is not.

use bmac_core::step::Ref;

use super::Catalogue;
use crate::config::{
    AuditAlarmConfig, AuditArchiveConfig, AuditLoggingConfig, BucketConfig, INPUT_BUCKET,
    INPUT_LOG_GROUP, OUTPUT_BUCKET, OUTPUT_LOG_GROUP,
};
use crate::error::CatalogueError;
use crate::kinds;

/// Days the log group keeps audit records when an archive keeps them longer.
pub const HOT_RETENTION_DAYS: u32 = 30;
/// Archive retention when the spec names none.
pub const DEFAULT_ARCHIVE_RETENTION_DAYS: u32 = 365;
/// Log-group retention when there is no archive and the spec names none.
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 90;

pub(super) fn expand(c: &mut Catalogue<'_>) -> Result<(), CatalogueError> {
    let Some(audit) = &c.spec.audit else {
        return Ok(());
    };
    if !audit.enabled.value {
        return Ok(());
    }
    let entry = &audit.meta.id;
    let retention = audit.retention_days.as_ref().map(|r| r.value);
    let logging_id = c.id("audit.logging", audit.meta.span)?;
    let logging = AuditLoggingConfig {
        cluster: c.spec.cluster.name.value.clone(),
        log_types: audit
            .log_types
            .iter()
            .map(|t| t.value.as_str().to_owned())
            .collect(),
        retention_days: match (&audit.archive, retention) {
            (Some(_), r) => r.map_or(HOT_RETENTION_DAYS, |r| r.min(HOT_RETENTION_DAYS)),
            (None, r) => r.unwrap_or(DEFAULT_LOG_RETENTION_DAYS),
        },
    };
    let step = c
        .step(logging_id.clone(), kinds::AUDIT_LOGGING, &logging)?
        .depends_on(c.cluster());
    c.add(entry, audit.meta.span, step);
    let log_group = Ref::new(logging_id, OUTPUT_LOG_GROUP);

    if let Some(archive) = &audit.archive {
        let bucket_id = c.id("audit.bucket", archive.span)?;
        let bucket = BucketConfig {
            name: archive.value.bucket.clone(),
            retention_days: retention.unwrap_or(DEFAULT_ARCHIVE_RETENTION_DAYS),
            object_lock: true,
            require_tls: true,
            force_destroy: audit.force_destroy,
            lock_retention: audit.lock_retention,
        };
        let step = c.step(bucket_id.clone(), kinds::OBJECT_BUCKET, &bucket)?;
        c.add(entry, archive.span, step);

        let export = AuditArchiveConfig {
            prefix: archive.value.prefix.clone(),
        };
        let step = c
            .step(
                c.id("audit.archive", archive.span)?,
                kinds::AUDIT_ARCHIVE,
                &export,
            )?
            .input(INPUT_LOG_GROUP, log_group.clone())
            .input(INPUT_BUCKET, Ref::new(bucket_id, OUTPUT_BUCKET));
        c.add(entry, archive.span, step);
    }

    if let Some(alarm) = &audit.alarm {
        let on: Vec<String> = [(alarm.on_deny, "deny"), (alarm.on_anomaly, "anomalies")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, what)| what.to_owned())
            .collect();
        if !on.is_empty() {
            let config = AuditAlarmConfig {
                on,
                notify: alarm.notify.clone(),
            };
            let step = c
                .step(
                    c.id("audit.alarm", alarm.span)?,
                    kinds::AUDIT_ALARM,
                    &config,
                )?
                .input(INPUT_LOG_GROUP, log_group);
            c.add(entry, alarm.span, step);
        }
    }
    Ok(())
}

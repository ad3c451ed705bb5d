//! Cloud Logging (`logging.googleapis.com/v2`): project sinks and log-based metrics.
//!
//! Kept from the real API: sink and metric names of letters, digits, `_ - .` (up to 100);
//! a sink needs a `destination` on `storage.googleapis.com/`, `bigquery.googleapis.com/`,
//! `pubsub.googleapis.com/` or `logging.googleapis.com/`; `uniqueWriterIdentity=true` gives
//! the writer identity `serviceAccount:service-<project number>@gcp-sa-logging.iam.gserviceaccount.com`
//! (otherwise the shared `cloud-logs@system.gserviceaccount.com`); 409 on a duplicate, 404
//! on an unknown one; sink `PUT` writes only the `updateMask` fields (`destination`,
//! `filter`, `includeChildren` when there is none, as the API does for compatibility); a
//! metric `PUT` replaces the metric and needs a `filter`. Not kept: log buckets, views,
//! exclusions, links, entries, folder / organization sinks, filter syntax checks.

use std::collections::BTreeMap;

use google_cloud_logging_v2::model::{
    ListLogMetricsResponse, ListSinksResponse, LogMetric, LogSink,
};
use serde_json::Value;

use crate::core::{
    apply_mask, empty, merge_edit, now_timestamp, ok, parse_strict, project_number, split_path,
    to_json, under, ApiError, Reply, Request,
};
use crate::server::State;

/// Sinks and metrics by full name.
#[derive(Debug, Default)]
pub struct Store {
    sinks: BTreeMap<String, LogSink>,
    metrics: BTreeMap<String, LogMetric>,
}

fn valid_name(n: &str) -> bool {
    (1..=100).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check_sink(s: &LogSink) -> Result<(), ApiError> {
    if !valid_name(&s.name) {
        return Err(ApiError::invalid(format!(
            "Invalid sink name \"{}\".",
            s.name
        )));
    }
    const DESTINATIONS: [&str; 4] = [
        "storage.googleapis.com/",
        "bigquery.googleapis.com/",
        "pubsub.googleapis.com/",
        "logging.googleapis.com/",
    ];
    if !DESTINATIONS.iter().any(|d| s.destination.starts_with(d)) {
        return Err(ApiError::invalid(format!(
            "Invalid sink destination \"{}\".",
            s.destination
        )));
    }
    Ok(())
}

fn writer_identity(project: &str, unique: bool) -> String {
    if unique {
        format!(
            "serviceAccount:service-{}@gcp-sa-logging.iam.gserviceaccount.com",
            project_number(project)
        )
    } else {
        "serviceAccount:cloud-logs@system.gserviceaccount.com".to_string()
    }
}

fn check_metric(m: &LogMetric) -> Result<(), ApiError> {
    if !valid_name(&m.name.replace('/', "_")) {
        return Err(ApiError::invalid(format!(
            "Invalid metric name \"{}\".",
            m.name
        )));
    }
    if m.filter.trim().is_empty() {
        return Err(ApiError::invalid("A log-based metric needs a filter."));
    }
    Ok(())
}

/// Serves a request on the Cloud Logging listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let (seg, _) = split_path(&req.path, "v2")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 3 || seg[0] != "projects" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let project = seg[1].to_string();
    st.check_project(&project)?;
    let parent = format!("projects/{project}");
    let name = seg.join("/");
    let lg = &mut st.logging;
    let not_found = || ApiError::not_found(format!("{name} does not exist."));
    match (&seg[2..], req.method.as_str()) {
        (["sinks"], "POST") => {
            let mut s: LogSink = req.json()?;
            check_sink(&s)?;
            let full = format!("{parent}/sinks/{}", s.name);
            if lg.sinks.contains_key(&full) {
                return Err(ApiError::already_exists(format!(
                    "Sink {} already exists.",
                    s.name
                )));
            }
            s.writer_identity = writer_identity(&project, req.q_bool("uniqueWriterIdentity"));
            s.create_time = Some(now_timestamp());
            s.update_time = s.create_time;
            lg.sinks.insert(full, s.clone());
            ok(&s)
        }
        (["sinks"], "GET") => {
            let mut resp = ListSinksResponse::default();
            resp.sinks = under(&lg.sinks, &format!("{parent}/sinks/"));
            ok(&resp)
        }
        (["sinks", _], "GET") => ok(lg.sinks.get(&name).ok_or_else(not_found)?),
        (["sinks", _], "PUT") | (["sinks", _], "PATCH") => {
            let current = lg.sinks.get(&name).ok_or_else(not_found)?;
            let patch: LogSink = req.json()?;
            let mut mask = req.update_mask();
            if mask.is_empty() {
                mask = vec![
                    "destination".into(),
                    "filter".into(),
                    "includeChildren".into(),
                ];
            }
            let mut v = to_json(current);
            apply_mask(&mut v, &to_json(&patch), &mask);
            let mut s: LogSink = parse_strict(v)?;
            check_sink(&s)?;
            if req.q_bool("uniqueWriterIdentity") {
                s.writer_identity = writer_identity(&project, true);
            }
            s.update_time = Some(now_timestamp());
            lg.sinks.insert(name, s.clone());
            ok(&s)
        }
        (["sinks", _], "DELETE") => {
            lg.sinks.remove(&name).ok_or_else(not_found)?;
            empty()
        }
        (["metrics"], "POST") => {
            let mut m: LogMetric = req.json()?;
            check_metric(&m)?;
            let full = format!("{parent}/metrics/{}", m.name);
            if lg.metrics.contains_key(&full) {
                return Err(ApiError::already_exists(format!(
                    "Metric {} already exists.",
                    m.name
                )));
            }
            m.create_time = Some(now_timestamp());
            m.update_time = m.create_time;
            lg.metrics.insert(full, m.clone());
            ok(&m)
        }
        (["metrics"], "GET") => {
            let mut resp = ListLogMetricsResponse::default();
            resp.metrics = under(&lg.metrics, &format!("{parent}/metrics/"));
            ok(&resp)
        }
        (["metrics", _], "GET") => ok(lg.metrics.get(&name).ok_or_else(not_found)?),
        (["metrics", id], "PUT") => {
            let created = lg.metrics.get(&name).ok_or_else(not_found)?.create_time;
            let mut m: LogMetric = req.json()?;
            m.name = id.to_string();
            check_metric(&m)?;
            m.create_time = created;
            m.update_time = Some(now_timestamp());
            lg.metrics.insert(name, m.clone());
            ok(&m)
        }
        (["metrics", _], "DELETE") => {
            lg.metrics.remove(&name).ok_or_else(not_found)?;
            empty()
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {} {}",
            req.method, req.path
        ))),
    }
}

/// A hand change to a sink or metric (its full name).
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    let missing = || ApiError::not_found(format!("{name} does not exist."));
    if name.contains("/sinks/") {
        merge_edit(st.logging.sinks.get_mut(name).ok_or_else(missing)?, patch)
    } else {
        merge_edit(st.logging.metrics.get_mut(name).ok_or_else(missing)?, patch)
    }
}

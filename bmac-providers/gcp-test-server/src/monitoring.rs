//! Cloud Monitoring (`monitoring.googleapis.com/v3`): notification channels and alert
//! policies.
//!
//! Kept from the real API: both get server-assigned names (`projects/P/notificationChannels/N`,
//! `projects/P/alertPolicies/N`) and a `creationRecord`; a channel needs a `type` (an
//! `email` one an `email_address` label); a policy needs a `displayName`, at least one
//! condition, a `combiner` when it has several, and notification channels that exist; list
//! takes a `filter` on `display_name = "…"`; policy `PATCH` writes the `updateMask` fields
//! (all of them without a mask) and adds a `mutationRecord`; 404 on unknown names. Not kept:
//! condition syntax (MQL / PromQL / filters), channel verification, descriptors, snoozes,
//! uptime checks, groups, pagination.

use std::collections::BTreeMap;

use google_cloud_monitoring_v3::model::{
    alert_policy, AlertPolicy, ListAlertPoliciesResponse, ListNotificationChannelsResponse,
    MutationRecord, NotificationChannel,
};
use serde_json::Value;

use crate::core::{
    apply_mask, empty, merge_edit, new_id, now_timestamp, ok, parse_strict, split_path, to_json,
    ApiError, Reply, Request,
};
use crate::oauth::USER;
use crate::server::State;

/// Channels and policies by full name.
#[derive(Debug, Default)]
pub struct Store {
    channels: BTreeMap<String, NotificationChannel>,
    policies: BTreeMap<String, AlertPolicy>,
}

fn record() -> MutationRecord {
    let mut r = MutationRecord::default();
    r.mutate_time = Some(now_timestamp());
    r.mutated_by = USER.trim_start_matches("user:").to_string();
    r
}

/// A numeric id, as Monitoring assigns.
fn numeric_id() -> String {
    u64::from_str_radix(&new_id(), 16)
        .map(|n| (n % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000).to_string())
        .unwrap_or_default()
}

/// The value of `display_name = "…"` in a list filter.
fn display_name_filter(filter: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("display_name")?.trim_start();
    let rest = rest.strip_prefix('=')?.trim();
    Some(rest.trim_matches('"').to_string())
}

fn check_policy(st: &Store, p: &AlertPolicy) -> Result<(), ApiError> {
    if p.display_name.trim().is_empty() {
        return Err(ApiError::invalid("An alert policy needs a display_name."));
    }
    if p.conditions.is_empty() {
        return Err(ApiError::invalid(
            "An alert policy needs at least one condition.",
        ));
    }
    if p.conditions.len() > 1
        && p.combiner == alert_policy::ConditionCombinerType::CombineUnspecified
    {
        return Err(ApiError::invalid(
            "An alert policy with more than one condition needs a combiner.",
        ));
    }
    if let Some(c) = p
        .notification_channels
        .iter()
        .find(|c| !st.channels.contains_key(*c))
    {
        return Err(ApiError::invalid(format!(
            "Could not find notification channel {c}."
        )));
    }
    Ok(())
}

/// Serves a request on the Cloud Monitoring listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let (seg, _) = split_path(&req.path, "v3")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 3 || seg[0] != "projects" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    st.check_project(seg[1])?;
    let parent = seg[..2].join("/");
    let name = seg.join("/");
    let mon = &mut st.monitoring;
    let not_found = || ApiError::not_found(format!("Requested entity was not found: {name}."));
    let wanted = req.q("filter").and_then(display_name_filter);
    match (&seg[2..], req.method.as_str()) {
        (["notificationChannels"], "POST") => {
            let mut c: NotificationChannel = req.json()?;
            if c.r#type.is_empty() {
                return Err(ApiError::invalid("A notification channel needs a type."));
            }
            if c.r#type == "email" && !c.labels.contains_key("email_address") {
                return Err(ApiError::invalid(
                    "An email notification channel needs the label email_address.",
                ));
            }
            c.name = format!("{parent}/notificationChannels/{}", numeric_id());
            c.creation_record = Some(record());
            mon.channels.insert(c.name.clone(), c.clone());
            ok(&c)
        }
        (["notificationChannels"], "GET") => {
            let mut resp = ListNotificationChannelsResponse::default();
            resp.notification_channels = mon
                .channels
                .values()
                .filter(|c| c.name.starts_with(&format!("{parent}/")))
                .filter(|c| wanted.as_ref().is_none_or(|w| c.display_name == *w))
                .cloned()
                .collect();
            resp.total_size = resp.notification_channels.len() as i32;
            ok(&resp)
        }
        (["notificationChannels", _], "GET") => {
            ok(mon.channels.get(&name).ok_or_else(not_found)?)
        }
        (["notificationChannels", _], "DELETE") => {
            if !req.q_bool("force")
                && mon
                    .policies
                    .values()
                    .any(|p| p.notification_channels.contains(&name))
            {
                return Err(ApiError::invalid(format!(
                    "Notification channel {name} is referenced by an alert policy; delete with force=true."
                )));
            }
            mon.channels.remove(&name).ok_or_else(not_found)?;
            empty()
        }
        (["alertPolicies"], "POST") => {
            let mut p: AlertPolicy = req.json()?;
            check_policy(mon, &p)?;
            p.name = format!("{parent}/alertPolicies/{}", numeric_id());
            for c in &mut p.conditions {
                c.name = format!("{}/conditions/{}", p.name, numeric_id());
            }
            p.creation_record = Some(record());
            p.mutation_record = p.creation_record.clone();
            mon.policies.insert(p.name.clone(), p.clone());
            ok(&p)
        }
        (["alertPolicies"], "GET") => {
            let mut resp = ListAlertPoliciesResponse::default();
            resp.alert_policies = mon
                .policies
                .values()
                .filter(|p| p.name.starts_with(&format!("{parent}/")))
                .filter(|p| wanted.as_ref().is_none_or(|w| p.display_name == *w))
                .cloned()
                .collect();
            resp.total_size = resp.alert_policies.len() as i32;
            ok(&resp)
        }
        (["alertPolicies", _], "GET") => ok(mon.policies.get(&name).ok_or_else(not_found)?),
        (["alertPolicies", _], "PATCH") => {
            let current = mon.policies.get(&name).ok_or_else(not_found)?;
            let patch: AlertPolicy = req.json()?;
            let mut v = to_json(current);
            let patch_json = to_json(&patch);
            let mut mask = req.update_mask();
            if mask.is_empty() {
                mask = patch_json
                    .as_object()
                    .map(|o| o.keys().filter(|k| *k != "name").cloned().collect())
                    .unwrap_or_default();
            }
            apply_mask(&mut v, &patch_json, &mask);
            let mut p: AlertPolicy = parse_strict(v)?;
            check_policy(mon, &p)?;
            p.mutation_record = Some(record());
            mon.policies.insert(name, p.clone());
            ok(&p)
        }
        (["alertPolicies", _], "DELETE") => {
            mon.policies.remove(&name).ok_or_else(not_found)?;
            empty()
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {} {}",
            req.method, req.path
        ))),
    }
}

/// A hand change to a channel or policy (its full name).
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    let missing = || ApiError::not_found(format!("Requested entity was not found: {name}."));
    if name.contains("/alertPolicies/") {
        merge_edit(
            st.monitoring.policies.get_mut(name).ok_or_else(missing)?,
            patch,
        )
    } else {
        merge_edit(
            st.monitoring.channels.get_mut(name).ok_or_else(missing)?,
            patch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_filters() {
        assert_eq!(
            display_name_filter("display_name = \"bmac x\"").as_deref(),
            Some("bmac x")
        );
        assert_eq!(
            display_name_filter("display_name=\"a\"").as_deref(),
            Some("a")
        );
        assert_eq!(display_name_filter("type = \"x\""), None);
    }
}

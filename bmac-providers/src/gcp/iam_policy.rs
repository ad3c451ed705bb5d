//! Editing Google IAM policies safely: read-modify-write with the policy's `etag`.
//!
//! Every resource bmac grants on (a project, a service account, a KMS key, a bucket) has a
//! policy of bindings (role → members) that other tools and people edit too. [`edit`] reads the
//! policy, applies a change to the bindings bmac means (adding or removing one member of one
//! role, or turning audit log types of one service on or off — never touching any other binding,
//! condition or audit config), and writes it back with
//! the etag it read; Google refuses a write whose etag is stale (`ABORTED` / HTTP 409), and the
//! edit starts again from a fresh read, up to [`ATTEMPTS`] times. A change that is already in
//! place writes nothing, so a re-apply sends no mutating call.

use std::future::Future;

use bmac_core::ProviderError;
use google_cloud_iam_v1::model::audit_log_config::LogType;
use google_cloud_iam_v1::model::{AuditConfig, AuditLogConfig, Binding, Policy};

use super::error::Status;

/// Read-modify-write attempts before a conflict is reported (as retryable).
pub const ATTEMPTS: usize = 5;

/// One change of a policy: a member added to or removed from a role, or audit logs turned on
/// or off.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Grant `role` to `member`.
    Grant {
        /// The role (`roles/iam.workloadIdentityUser`).
        role: String,
        /// The member (`serviceAccount:…`).
        member: String,
    },
    /// Take `role` back from `member`.
    Revoke {
        /// The role.
        role: String,
        /// The member.
        member: String,
    },
    /// Turn on audit logs of `log_types` for `service` (a project policy's `auditConfigs`;
    /// exemptions someone set are kept).
    EnableAuditLogs {
        /// The service (`container.googleapis.com`).
        service: String,
        /// The log types.
        log_types: Vec<LogType>,
    },
    /// Turn off audit logs of `log_types` for `service`.
    DisableAuditLogs {
        /// The service.
        service: String,
        /// The log types.
        log_types: Vec<LogType>,
    },
}

impl Change {
    /// Applies the change to `policy`; returns whether it changed anything. Bindings with a
    /// condition are left alone (they are someone else's, and bmac grants unconditionally).
    pub fn apply(&self, policy: &mut Policy) -> bool {
        match self {
            Change::Grant { role, member } => {
                if has(policy, role, member) {
                    return false;
                }
                match policy
                    .bindings
                    .iter_mut()
                    .find(|b| &b.role == role && b.condition.is_none())
                {
                    Some(b) => b.members.push(member.clone()),
                    None => policy.bindings.push(
                        Binding::new()
                            .set_role(role.clone())
                            .set_members([member.clone()]),
                    ),
                }
                true
            }
            Change::Revoke { role, member } => {
                let mut changed = false;
                for b in policy
                    .bindings
                    .iter_mut()
                    .filter(|b| &b.role == role && b.condition.is_none())
                {
                    let before = b.members.len();
                    b.members.retain(|m| m != member);
                    changed |= b.members.len() != before;
                }
                policy.bindings.retain(|b| !b.members.is_empty());
                changed
            }
            Change::EnableAuditLogs { service, log_types } => {
                let missing: Vec<&LogType> = log_types
                    .iter()
                    .filter(|t| !audit_logs_on(policy, service, t))
                    .collect();
                if missing.is_empty() {
                    return false;
                }
                let config = match policy
                    .audit_configs
                    .iter_mut()
                    .position(|a| &a.service == service)
                {
                    Some(i) => &mut policy.audit_configs[i],
                    None => {
                        policy
                            .audit_configs
                            .push(AuditConfig::new().set_service(service.clone()));
                        policy.audit_configs.last_mut().expect("just pushed")
                    }
                };
                for t in missing {
                    config
                        .audit_log_configs
                        .push(AuditLogConfig::new().set_log_type(t.clone()));
                }
                true
            }
            Change::DisableAuditLogs { service, log_types } => {
                let mut changed = false;
                for a in policy
                    .audit_configs
                    .iter_mut()
                    .filter(|a| &a.service == service)
                {
                    let before = a.audit_log_configs.len();
                    a.audit_log_configs
                        .retain(|c| !log_types.contains(&c.log_type));
                    changed |= a.audit_log_configs.len() != before;
                }
                policy
                    .audit_configs
                    .retain(|a| !a.audit_log_configs.is_empty());
                changed
            }
        }
    }

    /// Whether the change touches audit configs (the write must then name `auditConfigs` in
    /// its update mask, or Google keeps the old ones).
    pub fn is_audit(&self) -> bool {
        matches!(
            self,
            Change::EnableAuditLogs { .. } | Change::DisableAuditLogs { .. }
        )
    }
}

/// Whether `policy` turns on audit logs of `log_type` for `service` (or for `allServices`).
pub fn audit_logs_on(policy: &Policy, service: &str, log_type: &LogType) -> bool {
    policy.audit_configs.iter().any(|a| {
        (a.service == service || a.service == "allServices")
            && a.audit_log_configs.iter().any(|c| &c.log_type == log_type)
    })
}

/// Whether `policy` grants `role` to `member` unconditionally.
pub fn has(policy: &Policy, role: &str, member: &str) -> bool {
    policy
        .bindings
        .iter()
        .any(|b| b.role == role && b.condition.is_none() && b.members.iter().any(|m| m == member))
}

/// Applies `changes` to the policy `read` returns and writes it with `write` (see the module
/// docs); `what` names the resource in messages. Returns whether anything was written.
pub async fn edit<R, RF, W, WF>(
    what: &str,
    changes: &[Change],
    mut read: R,
    mut write: W,
) -> Result<bool, ProviderError>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<Policy, google_cloud_gax::error::Error>>,
    W: FnMut(Policy) -> WF,
    WF: Future<Output = Result<Policy, google_cloud_gax::error::Error>>,
{
    for _ in 0..ATTEMPTS {
        let mut policy = read()
            .await
            .map_err(|e| super::error::classify("getIamPolicy", what, e))?;
        let mut changed = false;
        for change in changes {
            changed |= change.apply(&mut policy);
        }
        if !changed {
            return Ok(false);
        }
        // Version 3 keeps conditional bindings intact when the policy holds any.
        if policy.bindings.iter().any(|b| b.condition.is_some()) {
            policy.version = 3;
        }
        match write(policy).await {
            Ok(_) => return Ok(true),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(super::error::classify("setIamPolicy", what, e)),
        }
    }
    Err(ProviderError::retryable(format!(
        "the IAM policy of {what} kept changing under bmac ({ATTEMPTS} stale etags in a row)"
    ))
    .with_code("ABORTED"))
}

fn is_conflict(e: &google_cloud_gax::error::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    Status::of(e) == Status::Other
        && (matches!(e.status().map(|s| s.code), Some(Code::Aborted))
            || e.http_status_code() == Some(409))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: &str, member: &str) -> Change {
        Change::Grant {
            role: role.into(),
            member: member.into(),
        }
    }

    #[test]
    fn grants_and_revokes_touch_only_their_member() {
        let mut p = Policy::new().set_bindings([Binding::new()
            .set_role("roles/viewer")
            .set_members(["user:ana@example.com"])]);
        assert!(grant("roles/viewer", "user:bo@example.com").apply(&mut p));
        assert!(
            !grant("roles/viewer", "user:bo@example.com").apply(&mut p),
            "already there"
        );
        assert!(grant("roles/owner", "user:bo@example.com").apply(&mut p));
        assert_eq!(p.bindings.len(), 2);
        let revoke = Change::Revoke {
            role: "roles/viewer".into(),
            member: "user:bo@example.com".into(),
        };
        assert!(revoke.apply(&mut p));
        assert!(
            has(&p, "roles/viewer", "user:ana@example.com"),
            "another member is kept"
        );
        assert!(!revoke.apply(&mut p));
        let revoke_owner = Change::Revoke {
            role: "roles/owner".into(),
            member: "user:bo@example.com".into(),
        };
        assert!(revoke_owner.apply(&mut p));
        assert_eq!(p.bindings.len(), 1, "an emptied binding is dropped");
    }
}

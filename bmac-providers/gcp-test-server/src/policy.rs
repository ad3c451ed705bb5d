//! IAM policies with etags, shared by every resource that has one (projects, service
//! accounts, KMS keys).
//!
//! Kept from the real API: `getIamPolicy` always returns an etag; `setIamPolicy` with an etag
//! that is not the current one is `409 ABORTED` ("There were concurrent policy changes…");
//! without an etag it overwrites; `updateMask` chooses the fields written, the default being
//! `bindings,etag`, so `auditConfigs` survive a set that does not name them. Not kept:
//! conditions' evaluation, policy version rules for conditional bindings, role validation.

use std::collections::HashMap;

use bytes::Bytes;
use google_cloud_iam_v1::model::{Policy, SetIamPolicyRequest};

use crate::core::{merge_edit, new_id, ApiError};

/// The policies of one service, by resource name.
#[derive(Debug, Default)]
pub struct Policies {
    by_resource: HashMap<String, Policy>,
}

impl Policies {
    /// The policy of `resource` (an empty one with a fresh etag when none was set).
    pub fn get(&mut self, resource: &str) -> Policy {
        self.by_resource
            .entry(resource.to_string())
            .or_insert_with(|| {
                let mut p = Policy::default();
                p.version = 1;
                p.etag = fresh_etag();
                p
            })
            .clone()
    }

    /// Applies a `setIamPolicy` request to `resource` and returns the stored policy.
    pub fn set(&mut self, resource: &str, req: SetIamPolicyRequest) -> Result<Policy, ApiError> {
        let current = self.get(resource);
        let new = req.policy.unwrap_or_default();
        if !new.etag.is_empty() && new.etag != current.etag {
            return Err(ApiError::aborted(
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
        let mask: Vec<String> = match req.update_mask {
            Some(m) if !m.paths.is_empty() => m.paths,
            _ => vec!["bindings".into(), "etag".into()],
        };
        let mut stored = current;
        for path in &mask {
            match path.as_str() {
                "bindings" => stored.bindings = new.bindings.clone(),
                "auditConfigs" | "audit_configs" => {
                    stored.audit_configs = new.audit_configs.clone()
                }
                "version" => stored.version = new.version,
                "etag" => {}
                other => {
                    return Err(ApiError::invalid(format!(
                        "Invalid update_mask path: \"{other}\""
                    )))
                }
            }
        }
        stored.version = stored.version.max(new.version).max(1);
        stored.etag = fresh_etag();
        self.by_resource
            .insert(resource.to_string(), stored.clone());
        Ok(stored)
    }

    /// Forgets the policy of a deleted resource.
    pub fn remove(&mut self, resource: &str) {
        self.by_resource.remove(resource);
    }

    /// A hand edit (`/_bmac/edit`): a merge patch on the stored policy; the etag changes.
    pub fn edit(
        &mut self,
        resource: &str,
        patch: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let mut p = self.get(resource);
        merge_edit(&mut p, patch)?;
        p.etag = fresh_etag();
        let v = serde_json::to_value(&p).map_err(|e| ApiError::internal(e.to_string()))?;
        self.by_resource.insert(resource.to_string(), p);
        Ok(v)
    }
}

fn fresh_etag() -> Bytes {
    Bytes::from(format!("BwY{}", &new_id()[..8]).into_bytes())
}

//! IAM admin (`iam.googleapis.com/v1`): service accounts and their IAM policies.
//!
//! Kept from the real API: create takes an `accountId` of 6–30 characters (a lowercase
//! letter first, then lowercase letters, digits and hyphens, no hyphen last), 409
//! `ALREADY_EXISTS` on a duplicate, and fills `name`, `email`
//! (`ID@PROJECT.iam.gserviceaccount.com`), a 21-digit `uniqueId` / `oauth2ClientId`; get /
//! delete address an account by email or unique id, also under `projects/-`;
//! unknown accounts are 404; `:getIamPolicy` / `:setIamPolicy` keep etags (see
//! [`crate::policy`]). Not kept: keys, roles, update / patch / enable / disable / undelete,
//! pagination.

use std::collections::BTreeMap;

use google_cloud_iam_admin_v1::model::{
    CreateServiceAccountRequest, ListServiceAccountsResponse, ServiceAccount,
};
use google_cloud_iam_v1::model::SetIamPolicyRequest;
use serde_json::Value;

use crate::core::{empty, merge_edit, new_id, ok, split_path, ApiError, Reply, Request};
use crate::policy::Policies;
use crate::server::State;

/// Service accounts by email, and their policies.
#[derive(Debug, Default)]
pub struct Store {
    accounts: BTreeMap<String, ServiceAccount>,
    /// The policies, by `projects/P/serviceAccounts/EMAIL`.
    pub policies: Policies,
}

impl Store {
    /// The email of an account named by email or unique id, if it exists.
    pub fn email_of(&self, key: &str) -> Option<String> {
        if self.accounts.contains_key(key) {
            return Some(key.to_string());
        }
        self.accounts
            .values()
            .find(|a| a.unique_id == key)
            .map(|a| a.email.clone())
    }
}

/// The resource name of the account with `email`.
pub fn resource_name(email: &str) -> String {
    let project = email
        .split_once('@')
        .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
        .unwrap_or("-");
    format!("projects/{project}/serviceAccounts/{email}")
}

fn valid_account_id(id: &str) -> bool {
    crate::core::valid_id(id, 6, 30)
}

fn unique_id() -> String {
    let digits: String = new_id()
        .bytes()
        .chain(new_id().bytes())
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    format!("1{}", &digits[..20])
}

/// Serves a request on the IAM listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let (seg, verb) = split_path(&req.path, "v1")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 3 || seg[0] != "projects" || seg[2] != "serviceAccounts" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let project = seg[1];
    if project != "-" {
        st.check_project(project)?;
    }
    let m = req.method.as_str();
    match (&seg[3..], verb, m) {
        ([], None, "POST") => {
            let r: CreateServiceAccountRequest = req.json()?;
            if project == "-" {
                return Err(ApiError::invalid(
                    "A project is required to create a service account.",
                ));
            }
            if !valid_account_id(&r.account_id) {
                return Err(ApiError::invalid(format!(
                    "Invalid account ID \"{}\": it must be 6 to 30 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen.",
                    r.account_id
                )));
            }
            let email = format!("{}@{project}.iam.gserviceaccount.com", r.account_id);
            if st.iam.accounts.contains_key(&email) {
                return Err(ApiError::already_exists(format!(
                    "Service account {} already exists within project projects/{project}.",
                    r.account_id
                )));
            }
            let mut sa = r.service_account.unwrap_or_default();
            sa.name = resource_name(&email);
            sa.project_id = project.to_string();
            sa.email = email.clone();
            sa.unique_id = unique_id();
            sa.oauth2_client_id = sa.unique_id.clone();
            st.iam.accounts.insert(email, sa.clone());
            ok(&sa)
        }
        ([], None, "GET") => {
            let mut resp = ListServiceAccountsResponse::default();
            resp.accounts = st
                .iam
                .accounts
                .values()
                .filter(|a| project == "-" || a.project_id == project)
                .cloned()
                .collect();
            ok(&resp)
        }
        ([key], verb, m) => {
            let email = st
                .iam
                .email_of(key)
                .ok_or_else(|| ApiError::not_found(format!("Unknown service account: {key}")))?;
            let resource = resource_name(&email);
            match (verb, m) {
                (None, "GET") => ok(&st.iam.accounts[&email]),
                (None, "DELETE") => {
                    st.iam.accounts.remove(&email);
                    st.iam.policies.remove(&resource);
                    empty()
                }
                (Some("getIamPolicy"), "POST") => ok(&st.iam.policies.get(&resource)),
                (Some("setIamPolicy"), "POST") => {
                    let r: SetIamPolicyRequest = req.json()?;
                    ok(&st.iam.policies.set(&resource, r)?)
                }
                _ => Err(ApiError::not_found(format!(
                    "no such method {m} {}",
                    req.path
                ))),
            }
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

/// A hand change to a service account (`projects/P/serviceAccounts/EMAIL`) or, with a
/// `:iamPolicy` suffix, to its policy.
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    if let Some(sa) = name.strip_suffix(":iamPolicy") {
        let email = sa.rsplit('/').next().unwrap_or_default();
        return st.iam.policies.edit(&resource_name(email), patch);
    }
    let email = name.rsplit('/').next().unwrap_or_default();
    let sa = st
        .iam
        .accounts
        .get_mut(email)
        .ok_or_else(|| ApiError::not_found(format!("Unknown service account: {email}")))?;
    merge_edit(sa, patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(valid_account_id("bmac-node"));
        assert!(!valid_account_id("short"));
        assert!(!valid_account_id("Upper-case"));
        assert!(!valid_account_id("a-very-long-account-id-over-thirty"));
        assert_eq!(unique_id().len(), 21);
    }
}

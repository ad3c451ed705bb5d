//! Resource Manager (`cloudresourcemanager.googleapis.com/v3`): projects and their IAM
//! policies.
//!
//! Kept from the real API: `GET projects/{id}` answers the project with `name`
//! `projects/{number}` (a number derived from the id, the same every run), `ACTIVE`; an
//! invalid id is 400 and, with `--project` given, another project is 403 (as Google answers
//! for projects the caller cannot see); `:getIamPolicy` / `:setIamPolicy` keep etags, a stale
//! one is `409 ABORTED`, `updateMask` chooses the fields written (`auditConfigs` only when
//! named). Projects are addressed by id (or by the number this server derives). Not kept:
//! folders, organizations, project create / delete / move, tags, search.

use google_cloud_iam_v1::model::{GetIamPolicyRequest, SetIamPolicyRequest};
use google_cloud_resourcemanager_v3::model::{project, Project};
use serde_json::Value;

use crate::core::{ok, project_number, split_path, ApiError, Reply, Request};
use crate::policy::Policies;
use crate::server::State;

/// Project policies by project id.
#[derive(Debug, Default)]
pub struct Store {
    policies: Policies,
}

/// The project id a `projects/{id-or-number}` segment names.
fn project_id(st: &State, key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(p) = st
            .config
            .projects
            .iter()
            .find(|p| project_number(p).to_string() == key)
        {
            return p.clone();
        }
    }
    key.to_string()
}

/// Serves a request on the Resource Manager listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let (seg, verb) = split_path(&req.path, "v3")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    let (["projects", key], m) = (seg.as_slice(), req.method.as_str()) else {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    };
    let id = project_id(st, key);
    st.check_project(&id)?;
    match (verb, m) {
        (None, "GET") => {
            let mut p = Project::default();
            p.name = format!("projects/{}", project_number(&id));
            p.project_id = id.clone();
            p.display_name = id.clone();
            p.state = project::State::Active;
            p.etag = format!("W/\"{}\"", project_number(&id));
            ok(&p)
        }
        (Some("getIamPolicy"), "POST") => {
            let _: GetIamPolicyRequest = req.json()?;
            ok(&st.resourcemanager.policies.get(&id))
        }
        (Some("setIamPolicy"), "POST") => {
            let r: SetIamPolicyRequest = req.json()?;
            ok(&st.resourcemanager.policies.set(&id, r)?)
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

/// A hand change to a project's policy (`projects/ID`, patching the policy JSON).
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    let id = name.strip_prefix("projects/").unwrap_or(name).to_string();
    st.resourcemanager.policies.edit(&id, patch)
}

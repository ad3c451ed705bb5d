//! Artifact Registry (`artifactregistry.googleapis.com/v1`): repositories, standard and
//! remote, created and deleted through `google.longrunning.Operation`s.
//!
//! Kept from the real API: create takes `repositoryId` (a lowercase letter, then up to 62
//! lowercase letters, digits and hyphens) and a `format`; a `REMOTE_REPOSITORY` needs a
//! `remoteRepositoryConfig` and a remote config needs that mode; create and delete answer an
//! operation (`projects/P/locations/L/operations/ID`, `done` after `--delay-ms`, then with the
//! repository or `Empty` as its `response`) and the repository appears / disappears when it
//! is done; a duplicate (also one still being created) is 409 `ALREADY_EXISTS`, an unknown
//! one 404; `createTime`, `updateTime` and `registryUri` are filled. Not kept: packages,
//! versions, tags, files, cleanup policies' effect, IAM on repositories, update.

use std::collections::BTreeMap;

use google_cloud_artifactregistry_v1::model::{repository, ListRepositoriesResponse, Repository};
use google_cloud_longrunning::model::{operation, Operation};
use serde_json::Value;

use crate::core::{
    merge_edit, new_id, now_timestamp, ok, split_path, under, ApiError, Due, Reply, Request,
};
use crate::server::State;

/// Repositories and operations by full name.
#[derive(Debug, Default)]
pub struct Store {
    repos: BTreeMap<String, Repository>,
    ops: BTreeMap<String, Op>,
}

#[derive(Debug)]
struct Op {
    op: Operation,
    due: Due,
    repo: String,
    /// The repository to add, or `None` to remove it.
    create: Option<Repository>,
}

impl Store {
    fn advance(&mut self) {
        for o in self.ops.values_mut() {
            if o.op.done || !o.due.passed() {
                continue;
            }
            o.op.done = true;
            let response = match o.create.take() {
                Some(r) => {
                    let any = google_cloud_wkt::Any::from_msg(&r);
                    self.repos.insert(o.repo.clone(), r);
                    any
                }
                None => {
                    self.repos.remove(&o.repo);
                    google_cloud_wkt::Any::from_msg(&google_cloud_wkt::Empty::default())
                }
            };
            if let Ok(any) = response {
                o.op.result = Some(operation::Result::Response(Box::new(any)));
            }
        }
    }

    fn pending(&self, repo: &str) -> bool {
        self.ops.values().any(|o| !o.op.done && o.repo == repo)
    }
}

fn valid_repo_id(id: &str) -> bool {
    crate::core::valid_id(id, 1, 63)
}

fn start(st: &mut State, parent: &str, repo: String, create: Option<Repository>) -> Reply {
    let name = format!("{parent}/operations/{}", new_id());
    let mut op = Operation::default();
    op.name = name.clone();
    let op2 = op.clone();
    st.artifactregistry.ops.insert(
        name,
        Op {
            op,
            due: Due::after(st.config.delay),
            repo,
            create,
        },
    );
    ok(&op2)
}

/// Serves a request on the Artifact Registry listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    st.artifactregistry.advance();
    let (seg, _) = split_path(&req.path, "v1")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 5 || seg[0] != "projects" || seg[2] != "locations" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let (project, location) = (seg[1], seg[3]);
    st.check_project(project)?;
    let parent = seg[..4].join("/");
    let name = seg.join("/");
    let not_found = || ApiError::not_found(format!("Requested entity was not found: {name}."));
    match (&seg[4..], req.method.as_str()) {
        (["repositories"], "POST") => {
            let id = req.q("repositoryId").unwrap_or_default();
            if !valid_repo_id(id) {
                return Err(ApiError::invalid(format!(
                    "Invalid repository id \"{id}\"."
                )));
            }
            let mut r: Repository = req.json()?;
            if r.format == repository::Format::Unspecified {
                return Err(ApiError::invalid("A repository needs a format."));
            }
            let remote = matches!(
                r.mode_config,
                Some(repository::ModeConfig::RemoteRepositoryConfig(_))
            );
            if (r.mode == repository::Mode::RemoteRepository) != remote {
                return Err(ApiError::invalid(
                    "remote_repository_config is required for, and only allowed in, mode REMOTE_REPOSITORY.",
                ));
            }
            let full = format!("{parent}/repositories/{id}");
            if st.artifactregistry.repos.contains_key(&full) || st.artifactregistry.pending(&full) {
                return Err(ApiError::already_exists("the repository already exists"));
            }
            if r.mode == repository::Mode::Unspecified {
                r.mode = repository::Mode::StandardRepository;
            }
            r.name = full.clone();
            r.create_time = Some(now_timestamp());
            r.update_time = r.create_time;
            r.registry_uri = format!("{location}-docker.pkg.dev/{project}/{id}");
            start(st, &parent, full, Some(r))
        }
        (["repositories"], "GET") => {
            let mut resp = ListRepositoriesResponse::default();
            resp.repositories = under(&st.artifactregistry.repos, &format!("{parent}/"));
            ok(&resp)
        }
        (["repositories", _], "GET") => {
            ok(st.artifactregistry.repos.get(&name).ok_or_else(not_found)?)
        }
        (["repositories", _], "DELETE") => {
            if !st.artifactregistry.repos.contains_key(&name) || st.artifactregistry.pending(&name)
            {
                return Err(not_found());
            }
            start(st, &parent, name, None)
        }
        (["operations", _], "GET") => {
            ok(&st.artifactregistry.ops.get(&name).ok_or_else(not_found)?.op)
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {} {}",
            req.method, req.path
        ))),
    }
}

/// A hand change to a repository (its full name).
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    st.artifactregistry.advance();
    let r =
        st.artifactregistry.repos.get_mut(name).ok_or_else(|| {
            ApiError::not_found(format!("Requested entity was not found: {name}."))
        })?;
    merge_edit(r, patch)
}

//! Compute Engine v1 networking (`compute.googleapis.com/compute/v1`): networks,
//! subnetworks (with secondary ranges) and Cloud Routers (with NAT), and the global and
//! regional operations their changes return.
//!
//! Kept from the real API: insert / patch / delete answer a compute `Operation`
//! (`RUNNING`, `DONE` after `--delay-ms`; `globalOperations` / `regionOperations` get and
//! `wait`), and the change lands when it is done; names follow RFC 1035; a duplicate is 409
//! with compute's `errors[].reason` `alreadyExists`, an unknown resource 404 `notFound`; a
//! subnetwork needs a valid `ipCidrRange` and an existing `network`, its secondary ranges a
//! `rangeName` and a valid range, and a patch the current `fingerprint` (412
//! `conditionNotMet` otherwise); a router needs an existing `network` and named NATs; a
//! network still used by a subnetwork or router cannot be deleted (400
//! `resourceInUseByAnotherResource`). `selfLink`, `id`, `creationTimestamp`, `kind`,
//! `region` are filled. Not kept: firewalls, routes, peering, IP overlap checks, zonal
//! operations, pagination and filters.

use std::collections::BTreeMap;

use google_cloud_compute_v1::model::{operation, Network, Operation, Router, Subnetwork};
use serde_json::{json, Value};

use crate::core::{
    merge_edit, new_id, now_rfc3339, ok, parse_strict, split_path, to_json, ApiError, Due, Reply,
    Request,
};
use crate::server::State;

const BASE: &str = "https://www.googleapis.com/compute/v1";

/// Resources (as their model type's JSON) and operations, by relative name.
#[derive(Debug, Default)]
pub struct Store {
    resources: BTreeMap<String, Value>,
    ops: BTreeMap<String, Op>,
}

#[derive(Debug)]
struct Op {
    op: Operation,
    due: Due,
    key: String,
    /// The resource when done, or `None` to delete it.
    after: Option<Value>,
}

impl Store {
    fn advance(&mut self) {
        for o in self.ops.values_mut() {
            if o.op.status == Some(operation::Status::Done) || !o.due.passed() {
                continue;
            }
            o.op.status = Some(operation::Status::Done);
            o.op.progress = Some(100);
            o.op.end_time = Some(now_rfc3339());
            match o.after.take() {
                Some(v) => self.resources.insert(o.key.clone(), v),
                None => self.resources.remove(&o.key),
            };
        }
    }

    fn pending(&self, key: &str) -> bool {
        self.ops
            .values()
            .any(|o| o.key == key && o.op.status != Some(operation::Status::Done))
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("The resource '{key}' was not found")).with_reason("notFound")
}

fn valid_name(n: &str) -> bool {
    crate::core::valid_id(n, 1, 63)
}

fn valid_cidr(c: &str) -> bool {
    let Some((ip, len)) = c.split_once('/') else {
        return false;
    };
    let octets: Vec<&str> = ip.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| o.parse::<u8>().is_ok())
        && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

/// `projects/P/global/networks/N` from a network URL or relative name.
fn network_key(v: &str) -> String {
    match v.find("projects/") {
        Some(i) => v[i..].to_string(),
        None => v.to_string(),
    }
}

/// The relative name of the network a subnetwork or router names (a URL, a relative name,
/// or a bare name in `project`).
fn network_ref(v: &Value, project: &str) -> String {
    let n = network_key(v["network"].as_str().unwrap_or_default());
    if n.contains('/') {
        n
    } else {
        format!("projects/{project}/global/networks/{n}")
    }
}

/// Checks a resource of `kind` (its JSON already strict-parsed) against the store.
fn check(store: &Store, kind: &str, project: &str, v: &Value) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::invalid(m).with_reason("invalid"));
    let name = v["name"].as_str().unwrap_or_default();
    if !valid_name(name) {
        return bad(format!("Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"));
    }
    if kind == "networks" {
        return Ok(());
    }
    if v["network"].as_str().unwrap_or_default().is_empty() {
        return bad("Invalid value for field 'resource.network': ''.".into());
    }
    let network = network_ref(v, project);
    if !store.resources.contains_key(&network) {
        return Err(not_found(&network));
    }
    if kind == "subnetworks" {
        let cidr = v["ipCidrRange"].as_str().unwrap_or_default();
        if !valid_cidr(cidr) {
            return bad(format!(
                "Invalid value for field 'resource.ipCidrRange': '{cidr}'. Invalid IPCidrRange."
            ));
        }
        for (i, r) in v["secondaryIpRanges"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cidr = r["ipCidrRange"].as_str().unwrap_or_default();
            if r["rangeName"].as_str().unwrap_or_default().is_empty() || !valid_cidr(cidr) {
                return bad(format!(
                    "Invalid value for field 'resource.secondaryIpRanges[{i}]'."
                ));
            }
        }
    }
    if kind == "routers" {
        for (i, n) in v["nats"].as_array().into_iter().flatten().enumerate() {
            if n["name"].as_str().unwrap_or_default().is_empty() {
                return bad(format!(
                    "Invalid value for field 'resource.nats[{i}].name': ''."
                ));
            }
        }
    }
    Ok(())
}

/// Parses a body strictly as the model type of `kind`, as JSON.
fn parse_kind(kind: &str, req: &Request) -> Result<Value, ApiError> {
    Ok(match kind {
        "networks" => to_json(&req.json::<Network>()?),
        "subnetworks" => to_json(&req.json::<Subnetwork>()?),
        _ => to_json(&req.json::<Router>()?),
    })
}

fn start(st: &mut State, scope: &str, op_type: &str, key: String, after: Option<Value>) -> Reply {
    let id = format!("operation-{}", new_id());
    let mut op = Operation::default();
    op.name = Some(id.clone());
    op.kind = Some("compute#operation".into());
    op.operation_type = Some(op_type.into());
    op.status = Some(operation::Status::Running);
    op.progress = Some(0);
    op.insert_time = Some(now_rfc3339());
    op.start_time = op.insert_time.clone();
    op.target_link = Some(format!("{BASE}/{key}"));
    op.self_link = Some(format!("{BASE}/{scope}/operations/{id}"));
    op.id = u64::from_str_radix(&new_id(), 16).ok();
    if scope.contains("/regions/") {
        op.region = Some(format!("{BASE}/{scope}"));
    }
    st.compute.ops.insert(
        format!("{scope}/operations/{id}"),
        Op {
            op: op.clone(),
            due: Due::after(st.config.delay),
            key,
            after,
        },
    );
    ok(&op)
}

/// Serves a request on the compute listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    st.compute.advance();
    let (seg, _) = split_path(&req.path, "compute/v1")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 4 || seg[0] != "projects" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let project = seg[1].to_string();
    st.check_project(&project)?;
    let (scope, rest) = match seg[2] {
        "global" => (seg[..3].join("/"), &seg[3..]),
        "regions" if seg.len() >= 5 => (seg[..4].join("/"), &seg[4..]),
        _ => return Err(ApiError::not_found(format!("no such path {}", req.path))),
    };
    let global = seg[2] == "global";
    let m = req.method.as_str();
    match (rest, m) {
        (["operations", id], "GET") | (["operations", id, "wait"], "POST") => {
            let key = format!("{scope}/operations/{id}");
            ok(&st.compute.ops.get(&key).ok_or_else(|| not_found(&key))?.op)
        }
        ([kind], "POST") | ([kind, _], "GET" | "PATCH" | "DELETE")
            if (*kind == "networks") == global
                && ["networks", "subnetworks", "routers"].contains(kind) =>
        {
            resource(st, &project, &scope, kind, rest.get(1).copied(), req)
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

fn resource(
    st: &mut State,
    project: &str,
    scope: &str,
    kind: &str,
    name: Option<&str>,
    req: &Request,
) -> Reply {
    let Some(name) = name else {
        let mut v = parse_kind(kind, req)?;
        check(&st.compute, kind, project, &v)?;
        let key = format!("{scope}/{kind}/{}", v["name"].as_str().unwrap_or_default());
        if st.compute.resources.contains_key(&key) || st.compute.pending(&key) {
            return Err(
                ApiError::already_exists(format!("The resource '{key}' already exists"))
                    .with_reason("alreadyExists"),
            );
        }
        v["selfLink"] = json!(format!("{BASE}/{key}"));
        v["id"] = json!(u64::from_str_radix(&new_id()[..15], 16)
            .unwrap_or(1)
            .to_string());
        v["creationTimestamp"] = json!(now_rfc3339());
        v["kind"] = json!(format!("compute#{}", &kind[..kind.len() - 1]));
        if scope.contains("/regions/") {
            v["region"] = json!(format!("{BASE}/{scope}"));
        }
        if kind != "networks" {
            v["network"] = json!(format!("{BASE}/{}", network_ref(&v, project)));
        }
        if kind == "subnetworks" {
            v["fingerprint"] = json!(crate::server::base64(new_id().as_bytes()));
        }
        return start(st, scope, "insert", key, Some(v));
    };
    let key = format!("{scope}/{kind}/{name}");
    let current = st
        .compute
        .resources
        .get(&key)
        .cloned()
        .ok_or_else(|| not_found(&key))?;
    match req.method.as_str() {
        "GET" => Ok(crate::core::Response {
            status: 200,
            body: current,
        }),
        "DELETE" => {
            if kind == "networks" {
                let link = format!("{BASE}/{key}");
                if let Some((user, _)) = st
                    .compute
                    .resources
                    .iter()
                    .find(|(_, r)| r["network"] == link.as_str())
                {
                    return Err(ApiError::invalid(format!(
                        "The network resource '{key}' is already being used by '{user}'"
                    ))
                    .with_reason("resourceInUseByAnotherResource"));
                }
            }
            start(st, scope, "delete", key, None)
        }
        _ => {
            let patch = parse_kind(kind, req)?;
            if kind == "subnetworks" && patch["fingerprint"] != current["fingerprint"] {
                return Err(ApiError::new(412, "Invalid fingerprint.")
                    .with_status("FAILED_PRECONDITION")
                    .with_reason("conditionNotMet"));
            }
            let mut after = current;
            if let (Some(a), Some(p)) = (after.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    if !matches!(
                        k.as_str(),
                        "name" | "selfLink" | "id" | "creationTimestamp" | "kind" | "fingerprint"
                    ) {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
            check(&st.compute, kind, project, &after)?;
            if kind == "subnetworks" {
                after["fingerprint"] = json!(crate::server::base64(new_id().as_bytes()));
            }
            start(st, scope, "patch", key, Some(after))
        }
    }
}

/// A hand change to a network, subnetwork or router (`projects/P/global/networks/N`,
/// `projects/P/regions/R/subnetworks/S`, …), checked against its model type.
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    st.compute.advance();
    let v = st
        .compute
        .resources
        .get_mut(name)
        .ok_or_else(|| not_found(name))?;
    let edited = if name.contains("/subnetworks/") {
        let mut t: Subnetwork = parse_strict(v.clone())?;
        merge_edit(&mut t, patch)?;
        to_json(&t)
    } else if name.contains("/routers/") {
        let mut t: Router = parse_strict(v.clone())?;
        merge_edit(&mut t, patch)?;
        to_json(&t)
    } else {
        let mut t: Network = parse_strict(v.clone())?;
        merge_edit(&mut t, patch)?;
        to_json(&t)
    };
    *v = edited.clone();
    Ok(edited)
}

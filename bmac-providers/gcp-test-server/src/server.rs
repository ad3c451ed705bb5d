//! The listeners, the shared in-memory state, routing to the service modules, bearer-token
//! checks, injected faults, the request log and the control endpoints.
//!
//! Every listener answers, besides its service's Google paths:
//! - `GET /_bmac/health` → `{"status":"ok","service":NAME}`;
//! - `GET /_bmac/requests[?service=NAME][&mutating=true]` → every request received (all
//!   services unless filtered; only the mutating ones with `mutating=true`), in order:
//!   `service`, `method`, `path`, `query`, `mutating` (POST/PUT/PATCH/DELETE other than
//!   `:getIamPolicy` / `:testIamPermissions`), `principal` (whose minted token it carried, if
//!   any) and the `status` answered; `DELETE /_bmac/requests` clears it;
//! - `POST /_bmac/faults` with `{"method","path_prefix","status","count"[,"message"]
//!   [,"service"][,"status_name"]}`: the next `count` matching requests to that service
//!   (default: this listener's) get `status` in Google's error shape (`status_name` replacing
//!   the canonical name of the code, e.g. 409 `ABORTED` for a stale etag), with
//!   `Retry-After: 1` for 429 / 503;
//! - `POST /_bmac/edit` with `{"name": RESOURCE_NAME, "patch": JSON_MERGE_PATCH}`: a change
//!   by hand to a resource of this listener's service (drift), answered with the new resource;
//! - `GET /_bmac/tokens` → the access tokens minted so far and their principals.
//!
//! A request to any service but OAuth without a bearer token this server minted is `401
//! UNAUTHENTICATED`, unless `--allow-anonymous`. With `--project ID` given, only those
//! projects exist; a call on another valid project id is `403 PERMISSION_DENIED`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::core::{valid_project_id, ApiError, Reply, Request, Response};

/// The command-line options the services read.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long long-running changes take.
    pub delay: Duration,
    /// The `endpoint` clusters report (`--cluster-endpoint`).
    pub cluster_endpoint: Option<String>,
    /// The base64 PEM clusters report as their CA (`--cluster-ca`).
    pub cluster_ca: Option<String>,
    /// Whether requests without a minted token are served.
    pub allow_anonymous: bool,
    /// The projects that exist (empty: every valid project id).
    pub projects: Vec<String>,
}

/// The services, one listener each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// GKE (`container.googleapis.com`).
    Container,
    /// Compute Engine networks (`compute.googleapis.com`).
    Compute,
    /// IAM admin (`iam.googleapis.com`).
    Iam,
    /// Resource Manager (`cloudresourcemanager.googleapis.com`).
    ResourceManager,
    /// Cloud KMS (`cloudkms.googleapis.com`).
    Kms,
    /// Cloud Logging (`logging.googleapis.com`).
    Logging,
    /// Cloud Monitoring (`monitoring.googleapis.com`).
    Monitoring,
    /// Artifact Registry (`artifactregistry.googleapis.com`).
    ArtifactRegistry,
    /// Cloud Storage bucket administration, JSON API (`storage.googleapis.com`).
    Storage,
    /// IAM credentials (`iamcredentials.googleapis.com`).
    IamCredentials,
    /// The OAuth 2 token endpoint (`oauth2.googleapis.com/token`).
    OAuth,
}

impl Service {
    /// Every service, in the env file's order.
    pub const ALL: [Service; 11] = [
        Service::Container,
        Service::Compute,
        Service::Iam,
        Service::ResourceManager,
        Service::Kms,
        Service::Logging,
        Service::Monitoring,
        Service::ArtifactRegistry,
        Service::Storage,
        Service::IamCredentials,
        Service::OAuth,
    ];

    /// The short name (`/_bmac/requests?service=`), as in gcloud's endpoint overrides.
    pub fn name(self) -> &'static str {
        match self {
            Service::Container => "container",
            Service::Compute => "compute",
            Service::Iam => "iam",
            Service::ResourceManager => "cloudresourcemanager",
            Service::Kms => "cloudkms",
            Service::Logging => "logging",
            Service::Monitoring => "monitoring",
            Service::ArtifactRegistry => "artifactregistry",
            Service::Storage => "storage",
            Service::IamCredentials => "iamcredentials",
            Service::OAuth => "oauth",
        }
    }

    /// The env-file line for this service listening on `port`.
    pub fn env_line(self, port: u16) -> String {
        match self {
            Service::OAuth => format!("export BMAC_GCP_OAUTH=http://127.0.0.1:{port}/token"),
            s => format!(
                "export CLOUDSDK_API_ENDPOINT_OVERRIDES_{}=http://127.0.0.1:{port}",
                s.name().to_uppercase()
            ),
        }
    }

    fn by_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
struct Fault {
    service: Service,
    method: String,
    path_prefix: String,
    status: u16,
    count: u32,
    message: String,
    status_name: Option<String>,
}

/// Everything the server holds.
#[derive(Debug)]
pub struct State {
    /// The command-line options.
    pub config: Config,
    /// GKE clusters, node pools, operations.
    pub container: crate::container::Store,
    /// Networks, subnetworks, routers, operations.
    pub compute: crate::compute::Store,
    /// Service accounts and their policies.
    pub iam: crate::iam::Store,
    /// Project policies.
    pub resourcemanager: crate::resourcemanager::Store,
    /// Key rings, keys and key policies.
    pub kms: crate::kms::Store,
    /// Sinks and log-based metrics.
    pub logging: crate::logging::Store,
    /// Notification channels and alert policies.
    pub monitoring: crate::monitoring::Store,
    /// Repositories and their operations.
    pub artifactregistry: crate::artifactregistry::Store,
    /// Buckets, their policies and objects.
    pub storage: crate::storage::Store,
    /// Minted tokens.
    pub oauth: crate::oauth::Store,
    requests: Vec<Value>,
    faults: Vec<Fault>,
}

impl State {
    /// Checks a project id in a path: 400 when malformed, 403 when not one of `--project`.
    pub fn check_project(&self, id: &str) -> Result<(), ApiError> {
        if !valid_project_id(id) {
            return Err(ApiError::invalid(format!("Invalid project id \"{id}\".")));
        }
        if !self.config.projects.is_empty() && !self.config.projects.iter().any(|p| p == id) {
            return Err(ApiError::permission_denied(format!(
                "Permission denied on resource project {id} (or it may not exist)."
            )));
        }
        Ok(())
    }
}

/// The state behind its lock.
pub type Shared = Arc<Mutex<State>>;

/// Fresh, empty state.
pub fn shared(config: Config) -> Shared {
    Arc::new(Mutex::new(State {
        config,
        container: Default::default(),
        compute: Default::default(),
        iam: Default::default(),
        resourcemanager: Default::default(),
        kms: Default::default(),
        logging: Default::default(),
        monitoring: Default::default(),
        artifactregistry: Default::default(),
        storage: Default::default(),
        oauth: Default::default(),
        requests: Vec::new(),
        faults: Vec::new(),
    }))
}

/// Base64 (standard alphabet, padded).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serves one listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, service: Service, state: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, service, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    state: &Shared,
    service: Service,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return respond(Err(ApiError::invalid(format!("cannot read the body: {e}")))),
    };
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: percent_decode(parts.uri.path(), false),
        query: raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect(),
        bearer: parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string),
        body,
    };
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if request.path.starts_with("/_bmac/") {
        return respond(control(&mut st, service, &request));
    }
    let principal = request
        .bearer
        .as_deref()
        .and_then(|t| st.oauth.principal(t))
        .map(str::to_string);
    let reply = dispatch(&mut st, service, &request, principal.as_deref());
    let status = match &reply {
        Ok(r) => r.status,
        Err(e) => e.code,
    };
    let mutating = matches!(request.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
        && !request.path.ends_with(":getIamPolicy")
        && !request.path.ends_with(":testIamPermissions");
    st.requests.push(json!({
        "service": service.name(),
        "method": request.method,
        "path": request.path,
        "query": raw_query,
        "mutating": mutating && service != Service::OAuth,
        "principal": principal,
        "status": status,
    }));
    respond(reply)
}

fn dispatch(st: &mut State, service: Service, req: &Request, principal: Option<&str>) -> Reply {
    if let Some(i) = st.faults.iter().position(|f| {
        f.service == service
            && f.count > 0
            && (f.method.is_empty() || f.method.eq_ignore_ascii_case(&req.method))
            && req.path.starts_with(&f.path_prefix)
    }) {
        let f = &mut st.faults[i];
        f.count -= 1;
        let mut err = ApiError::new(f.status, f.message.clone());
        if let Some(name) = &f.status_name {
            err = err.with_status(name);
        }
        if f.count == 0 {
            st.faults.remove(i);
        }
        return Err(err);
    }
    if service != Service::OAuth && principal.is_none() && !st.config.allow_anonymous {
        return Err(ApiError::unauthenticated(
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    match service {
        Service::Container => crate::container::handle(st, req),
        Service::Compute => crate::compute::handle(st, req),
        Service::Iam => crate::iam::handle(st, req),
        Service::ResourceManager => crate::resourcemanager::handle(st, req),
        Service::Kms => crate::kms::handle(st, req),
        Service::Logging => crate::logging::handle(st, req),
        Service::Monitoring => crate::monitoring::handle(st, req),
        Service::ArtifactRegistry => crate::artifactregistry::handle(st, req),
        Service::Storage => crate::storage::handle(st, req),
        Service::IamCredentials => crate::oauth::handle_iamcredentials(st, req, principal),
        Service::OAuth => crate::oauth::handle_token(st, req),
    }
}

fn control(st: &mut State, service: Service, req: &Request) -> Reply {
    let body = || -> Result<Value, ApiError> {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::invalid(e.to_string()))
    };
    let reply = |v: Value| {
        Ok(Response {
            status: 200,
            body: v,
        })
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_bmac/health") => reply(json!({"status": "ok", "service": service.name()})),
        ("GET", "/_bmac/requests") => {
            let only = req.q("service");
            let mutating = req.q_bool("mutating");
            let list: Vec<Value> = st
                .requests
                .iter()
                .filter(|r| only.is_none_or(|s| r["service"] == s))
                .filter(|r| !mutating || r["mutating"] == true)
                .cloned()
                .collect();
            reply(Value::Array(list))
        }
        ("DELETE", "/_bmac/requests") => {
            st.requests.clear();
            reply(json!({}))
        }
        ("GET", "/_bmac/tokens") => reply(st.oauth.list()),
        ("POST", "/_bmac/faults") => {
            let b = body()?;
            let target = match b["service"].as_str() {
                Some(name) => Service::by_name(name)
                    .ok_or_else(|| ApiError::invalid(format!("no service {name}")))?,
                None => service,
            };
            let status = b["status"].as_u64().unwrap_or(503) as u16;
            let fault = Fault {
                service: target,
                method: b["method"].as_str().unwrap_or_default().to_string(),
                path_prefix: b["path_prefix"].as_str().unwrap_or("/").to_string(),
                status,
                count: b["count"].as_u64().unwrap_or(1) as u32,
                message: b["message"]
                    .as_str()
                    .unwrap_or("Injected by the test server's /_bmac/faults.")
                    .to_string(),
                status_name: b["status_name"].as_str().map(str::to_string),
            };
            st.faults.push(fault);
            reply(json!({"faults": st.faults.len()}))
        }
        ("POST", "/_bmac/edit") => {
            let b = body()?;
            let name = b["name"]
                .as_str()
                .ok_or_else(|| ApiError::invalid("edit needs \"name\""))?
                .to_string();
            let patch = &b["patch"];
            let v = match service {
                Service::Container => crate::container::edit(st, &name, patch),
                Service::Compute => crate::compute::edit(st, &name, patch),
                Service::Iam => crate::iam::edit(st, &name, patch),
                Service::ResourceManager => crate::resourcemanager::edit(st, &name, patch),
                Service::Kms => crate::kms::edit(st, &name, patch),
                Service::Logging => crate::logging::edit(st, &name, patch),
                Service::Monitoring => crate::monitoring::edit(st, &name, patch),
                Service::ArtifactRegistry => crate::artifactregistry::edit(st, &name, patch),
                Service::Storage => crate::storage::edit(st, &name, patch),
                Service::IamCredentials | Service::OAuth => {
                    Err(ApiError::invalid("nothing to edit on this service"))
                }
            }?;
            reply(v)
        }
        _ => Err(ApiError::not_found(format!(
            "no control endpoint {} {}",
            req.method, req.path
        ))),
    }
}

fn respond(reply: Reply) -> hyper::Response<Full<Bytes>> {
    let (status, body, retry_after) = match reply {
        Ok(r) => (r.status, r.body, None),
        Err(e) => (e.code, e.body(), e.retry_after),
    };
    let mut b = hyper::Response::builder().status(status).header(
        hyper::header::CONTENT_TYPE,
        "application/json; charset=UTF-8",
    );
    if let Some(s) = retry_after {
        b = b.header(hyper::header::RETRY_AFTER, s.to_string());
    }
    // 204 No Content (a JSON API delete) has no body.
    let body = if status == 204 {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// Decodes `%XX` escapes (and `+` as a space in query components).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b+c", true), "a@b c");
        assert_eq!(percent_decode("%2", false), "%2");
    }
}

//! Harness for the CLI's end-to-end tests against the project's Google Cloud API test server
//! (`bmac-providers/gcp-test-server`, started by `scripts/gcp-env.sh start DIR; . DIR/env`):
//! finding it ([`google`]), the environment a `bmac` run gets ([`Google::env`]), reading back
//! what a build made through the REST API with a token of the test user
//! ([`Google::get`]), the server's own request log ([`Google::requests`],
//! [`Google::clear_requests`]), hand changes ([`Google::edit`]) and what the token endpoint's
//! `tokeninfo` says of a token ([`Google::token_info`]). [`project`] is the bmac side.
//!
//! With `BMAC_E2E=1` a missing or unanswering server FAILS the test; without it the test prints
//! a notice and returns, so a plain `cargo test` on a machine without one passes without
//! pretending to have checked anything. The server is reached with curl on 127.0.0.1 only.
//!
//! The request log is the server's, shared by everything that calls it: tests clear it at the
//! start of what they count and hold the kube harness's process-wide lock meanwhile
//! (`kube_support::connect`), so no other test of the binary writes to it in between.

#![allow(dead_code)]

pub mod project;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// The variables of gcp-env.sh's `DIR/env` a `bmac` run needs: every Google endpoint override,
/// the credentials file (an `authorized_user` whose token endpoint is the server's) and the
/// Cloud Storage emulator.
const PREFIXES: &[&str] = &[
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
];

/// Variables of the caller's shell that would point a `bmac` run at another Google
/// configuration; runs never inherit them.
const CALLER_GOOGLE: &[&str] = &["CLOUDSDK_", "GOOGLE_", "GCE_METADATA_", "STORAGE_EMULATOR_"];

/// One request the test server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `container`, `iam`, `oauth`, …
    pub service: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/v1/projects/p/locations/l/clusters`.
    pub path: String,
    /// The HTTP status answered.
    pub status: u64,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} → {}",
            self.service, self.method, self.path, self.status
        )
    }
}

/// The test server, as gcp-env.sh's `DIR/env` describes it.
#[derive(Debug, Clone)]
pub struct Google {
    env: BTreeMap<String, String>,
    /// An access token of the test user, for reading back.
    token: String,
}

/// The test server, or `None` (with a notice) when none is configured and `BMAC_E2E` is unset;
/// panics under `BMAC_E2E=1` when it is not configured or does not answer.
pub fn google(test: &str) -> Option<Google> {
    let required = std::env::var("BMAC_E2E").is_ok_and(|v| v == "1");
    match Google::discover() {
        Ok(google) => Some(google),
        Err(why) if required => panic!(
            "BMAC_E2E=1 but the Google Cloud API test server is not usable ({why}); start it \
             with `scripts/gcp-env.sh start DIR` and `. DIR/env`"
        ),
        Err(why) => {
            eprintln!(
                "NOTICE: {test} did not run: no Google Cloud API test server ({why}); set \
                 BMAC_E2E=1 to make this a failure"
            );
            None
        }
    }
}

impl Google {
    fn discover() -> Result<Google, String> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)) || k == "BMAC_GCP_OAUTH")
            .collect();
        for needed in [
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER",
            "BMAC_GCP_OAUTH",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            if !env.contains_key(needed) {
                return Err(format!("{needed} is not set"));
            }
        }
        let mut google = Google {
            env,
            token: String::new(),
        };
        let (status, _) = google.curl("GET", &google.url("container", "/_bmac/health"), None);
        if status != 200 {
            return Err(format!("GET /_bmac/health answered {status}"));
        }
        google.token = google.mint()?;
        Ok(google)
    }

    /// `http://127.0.0.1:PORT` + `path` of a service (`container`, `iam`, `oauth`, …).
    pub fn url(&self, service: &str, path: &str) -> String {
        if service == "oauth" {
            let token = &self.env["BMAC_GCP_OAUTH"];
            return format!("{}{path}", token.trim_end_matches("/token"));
        }
        let key = format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{}", service.to_uppercase());
        let base = self
            .env
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the test server's env"));
        format!("{}{path}", base.trim_end_matches('/'))
    }

    /// Points a `bmac` command at the server as a user would: the endpoint overrides and the
    /// credentials file, nothing else Google from the caller's environment, and no metadata
    /// server (which would leave loopback).
    pub fn env(&self, cmd: &mut Command) {
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if CALLER_GOOGLE.iter().any(|p| name.starts_with(p)) {
                cmd.env_remove(&var);
            }
        }
        for (k, v) in &self.env {
            if PREFIXES.iter().any(|p| k.starts_with(p)) {
                cmd.env(k, v);
            }
        }
        cmd.env("GCE_METADATA_HOST", "127.0.0.1:9");
    }

    /// curl on the server: the status and the JSON body (`Null` when there is none).
    fn curl(&self, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if !self.token.is_empty() {
            cmd.arg("-H")
                .arg(format!("Authorization: Bearer {}", self.token));
        }
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd.arg(url).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let status = status.trim().parse().unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// A fresh access token of the test user, from the refresh token of the credentials file
    /// bmac uses.
    pub fn mint(&self) -> Result<String, String> {
        let path = &self.env["GOOGLE_APPLICATION_CREDENTIALS"];
        let adc: Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| format!("{path} is not a credentials file"))?;
        let field = |k: &str| adc[k].as_str().unwrap_or_default().to_owned();
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "30"])
            .args(["--data-urlencode", "grant_type=refresh_token"])
            .arg("--data-urlencode")
            .arg(format!("client_id={}", field("client_id")))
            .arg("--data-urlencode")
            .arg(format!("client_secret={}", field("client_secret")))
            .arg("--data-urlencode")
            .arg(format!("refresh_token={}", field("refresh_token")))
            .arg(field("token_uri"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "the token endpoint minted no token: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// What the server's `tokeninfo` says of `token`: status and body.
    pub fn token_info(&self, token: &str) -> (u16, Value) {
        let url = self.url("oauth", &format!("/tokeninfo?access_token={token}"));
        self.curl("GET", &url, None)
    }

    /// The resource at `path` of `service` (`/v1/projects/…`), or `None` when it is 404.
    pub fn get(&self, service: &str, path: &str) -> Option<Value> {
        let (status, body) = self.curl("GET", &self.url(service, path), None);
        match status {
            200 => Some(body),
            404 => None,
            s => panic!("GET {service} {path}: {s} {body}"),
        }
    }

    /// Every request the server received since the log was last cleared (only the mutating
    /// ones with `mutating`), in order.
    pub fn requests(&self, mutating: bool) -> Vec<Call> {
        let query = if mutating { "?mutating=true" } else { "" };
        let (status, list) = self.curl(
            "GET",
            &self.url("container", &format!("/_bmac/requests{query}")),
            None,
        );
        assert_eq!(status, 200, "the request log: {list}");
        list.as_array()
            .into_iter()
            .flatten()
            .map(|r| Call {
                service: r["service"].as_str().unwrap_or_default().to_owned(),
                method: r["method"].as_str().unwrap_or_default().to_owned(),
                path: r["path"].as_str().unwrap_or_default().to_owned(),
                status: r["status"].as_u64().unwrap_or_default(),
            })
            .collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        let (status, body) = self.curl("DELETE", &self.url("container", "/_bmac/requests"), None);
        assert_eq!(status, 200, "clearing the request log: {body}");
    }

    /// A change by hand (a JSON merge patch) to the resource `name` of `service`; returns the
    /// resource as it now is.
    pub fn edit(&self, service: &str, name: &str, patch: Value) -> Value {
        let body = serde_json::json!({ "name": name, "patch": patch });
        let (status, answer) = self.curl("POST", &self.url(service, "/_bmac/edit"), Some(&body));
        assert_eq!(status, 200, "edit of {name}: {answer}");
        answer
    }
}

//! Starting the built server as a separate process, reading its env file, and a minimal
//! HTTP/1.1 client for its control endpoints and for bodies the SDK cannot send. Each test
//! binary uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "run.rs"]
mod run_on_big_stack;
pub use run_on_big_stack::run;

/// A running `bmac-gcp-test-server`, killed on drop (and gone when this process ends, however
/// it ends: it exits when the pipe to its stdin closes).
pub struct Server {
    child: Child,
    /// The env file's exports, by variable name.
    pub env: HashMap<String, String>,
    /// Its directory (the env file), removed on drop.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server with `args` (besides `--env-file`) and waits for its env file.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let env_file = dir.path().join("env");
        let child = Command::new(env!("CARGO_BIN_EXE_bmac-gcp-test-server"))
            .arg("--env-file")
            .arg(&env_file)
            .arg("--exit-with-stdin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bmac-gcp-test-server");
        let t0 = Instant::now();
        while !env_file.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no env file after 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&env_file).expect("read env file");
        let env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server {
            child,
            env,
            _dir: dir,
        }
    }

    /// The base URL of a service (`CONTAINER`, `COMPUTE`, … as in the env file).
    pub fn url(&self, service: &str) -> String {
        self.env[&format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{service}")].clone()
    }

    /// The request log of one service.
    pub fn requests(&self, service: &str) -> Vec<Value> {
        let (status, v) = http(
            "GET",
            &format!("{}/_bmac/requests?service={service}", self.url("CONTAINER")),
            None,
            None,
        );
        assert_eq!(status, 200);
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (`Connection: close`); the status and the JSON body.
pub fn http(method: &str, url: &str, body: Option<&Value>, bearer: Option<&str>) -> (u16, Value) {
    let (status, _, json) = http_full(method, url, body, bearer);
    (status, json)
}

/// [`http`] with the response's header block too.
pub fn http_full(
    method: &str,
    url: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http_raw(method, url, body.as_bytes(), bearer)
}

/// One HTTP/1.1 request with a raw body (an object upload); the status, the header block and
/// the JSON body (`null` when empty or not JSON).
pub fn http_raw(
    method: &str,
    url: &str,
    body: &[u8],
    bearer: Option<&str>,
) -> (u16, String, Value) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write");
    s.write_all(body).expect("write body");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let (head, json) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        status,
        head.to_string(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// Installs rustls's ring provider once (google-cloud-auth is built without aws-lc).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Anonymous credentials.
pub fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

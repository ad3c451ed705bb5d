//! What moto received, from its own request recorder (`/moto-api/recorder/…`, moto's
//! `moto_api/_internal/recorder`): every request moto routes is appended to a JSON-lines log
//! (headers, method, URL, body) before it is handled, so once a `bmac` process has exited its
//! requests are all in the log. `scripts/moto-env.sh` keeps that log inside the server's
//! directory; [`Recorder::start`] switches recording on (idempotent, and never switched off:
//! other tests may be counting on the same server).
//!
//! Each `bmac` run in these tests signs with its own access key id (moto accepts any and maps
//! unknown keys to its default account), so a run's calls are picked out of the shared log by
//! the `Credential=` of their `Authorization` header, whatever other tests do meanwhile.
//!
//! A call's action is the operation name the API carries: the `Action` form field (EC2, IAM,
//! STS, SNS, CloudWatch: the query protocol), the `X-Amz-Target` header (CloudWatch Logs,
//! Firehose, KMS: JSON 1.1), or for the REST APIs (EKS, S3) the method and path, named as the
//! EKS API names its operations. A call is *mutating* unless its action reads
//! (`Describe*`, `Get*`, `List*`, `Head*`) or, on a REST API, its method is `GET` or `HEAD`;
//! anything unrecognised counts as mutating.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

/// One request moto received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The access key id it was signed with.
    pub key: String,
    /// The service of its signature's scope (`ec2`, `eks`, `logs`, …).
    pub service: String,
    /// The operation: `CreateVpc`, `UpdateNodegroupConfig`, `PUT /bucket?policy`, …
    pub action: String,
    /// The URL path (for the REST APIs: which resource).
    pub path: String,
    /// Whether it changes something.
    pub mutating: bool,
}

/// The moto server's recorder, reached with curl (the test CA as trust root).
#[derive(Debug, Clone)]
pub struct Recorder {
    endpoint: String,
    ca: PathBuf,
}

impl Recorder {
    /// Switches recording on at `endpoint` (a no-op when it is on already).
    pub fn start(endpoint: &str, ca: PathBuf) -> Recorder {
        let recorder = Recorder {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            ca,
        };
        recorder.curl("POST", "start-recording");
        recorder
    }

    fn curl(&self, method: &str, what: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "30", "-X", method, "--cacert"])
            .arg(&self.ca)
            .arg(format!("{}/moto-api/recorder/{what}", self.endpoint))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "moto's recorder ({what}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Every call signed with `key` so far, in the order moto received them.
    pub fn calls(&self, key: &str) -> Vec<Call> {
        self.calls_of(&[key])
    }

    /// Every call signed with one of `keys` so far, in order.
    pub fn calls_of(&self, keys: &[&str]) -> Vec<Call> {
        let log = self.curl("GET", "download-recording");
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|entry| call(&entry))
            .filter(|c| keys.contains(&c.key.as_str()))
            .collect()
    }
}

/// The mutating calls among `calls`, as their actions.
pub fn mutating(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.mutating)
        .map(|c| c.action.clone())
        .collect()
}

/// A header of a recorded request, by case-insensitive name.
fn header<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Parses one recorded request; `None` for one without a SigV4 signature (moto's own API).
fn call(entry: &Value) -> Option<Call> {
    let auth = header(entry, "Authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let key = parts.next()?.to_owned();
    let service = parts.nth(2)?.to_owned();
    let method = entry["method"].as_str().unwrap_or_default().to_uppercase();
    let url = entry["url"].as_str().unwrap_or_default();
    let after_host = url.splitn(4, '/').nth(3).unwrap_or_default();
    let (path, query) = after_host.split_once('?').unwrap_or((after_host, ""));
    let path = format!("/{path}");
    let body = body(entry);
    let named = header(entry, "X-Amz-Target")
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned)
        .or_else(|| form_action(&body).or_else(|| form_action(query)));
    let (action, mutating) = match named {
        Some(action) => {
            let reads = ["Describe", "Get", "List", "Head"]
                .iter()
                .any(|p| action.starts_with(p));
            (action, !reads)
        }
        None => (
            rest_action(&service, &method, &path, query),
            !matches!(method.as_str(), "GET" | "HEAD"),
        ),
    };
    Some(Call {
        key,
        service,
        action,
        path,
        mutating,
    })
}

/// The request body as text (moto's server mode stores it base64-encoded).
fn body(entry: &Value) -> String {
    let raw = entry["body"].as_str().unwrap_or_default();
    if entry["body_encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        raw.to_owned()
    }
}

/// `Action=…` of a query-protocol form.
fn form_action(form: &str) -> Option<String> {
    form.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
}

/// A REST call's operation: EKS's by its documented routes, anything else as
/// `METHOD /path?subresource`.
fn rest_action(service: &str, method: &str, path: &str, query: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if service == "eks" {
        let named = match (method, segments.as_slice()) {
            ("POST", ["clusters"]) => Some("CreateCluster"),
            ("GET", ["clusters"]) => Some("ListClusters"),
            ("GET", ["clusters", _]) => Some("DescribeCluster"),
            ("DELETE", ["clusters", _]) => Some("DeleteCluster"),
            ("POST", ["clusters", _, "update-config"]) => Some("UpdateClusterConfig"),
            ("POST", ["clusters", _, "updates"]) => Some("UpdateClusterVersion"),
            ("GET", ["clusters", _, "updates", ..]) => Some("DescribeUpdate"),
            ("POST", ["clusters", _, "node-groups"]) => Some("CreateNodegroup"),
            ("GET", ["clusters", _, "node-groups"]) => Some("ListNodegroups"),
            ("GET", ["clusters", _, "node-groups", _]) => Some("DescribeNodegroup"),
            ("DELETE", ["clusters", _, "node-groups", _]) => Some("DeleteNodegroup"),
            ("POST", ["clusters", _, "node-groups", _, "update-config"]) => {
                Some("UpdateNodegroupConfig")
            }
            ("POST", ["clusters", _, "node-groups", _, "update-version"]) => {
                Some("UpdateNodegroupVersion")
            }
            ("POST", ["tags", ..]) => Some("TagResource"),
            ("DELETE", ["tags", ..]) => Some("UntagResource"),
            ("GET", ["tags", ..]) => Some("ListTagsForResource"),
            _ => None,
        };
        if let Some(name) = named {
            return name.to_owned();
        }
    }
    let sub: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or_default())
        .collect();
    if sub.is_empty() {
        format!("{method} {path}")
    } else {
        format!("{method} {path}?{}", sub.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(method: &str, url: &str, headers: Value, body: &str) -> Value {
        json!({
            "method": method,
            "url": url,
            "headers": headers,
            "body": base64::engine::general_purpose::STANDARD.encode(body),
            "body_encoded": true,
        })
    }

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=KEY1/20261203/us-east-1/SERVICE/aws4_request, SignedHeaders=host, Signature=00";

    #[test]
    fn actions_come_from_the_form_the_target_or_the_route() {
        let auth = |s: &str| AUTH.replace("SERVICE", s);
        let ec2 = entry(
            "POST",
            "https://127.0.0.1:1/",
            json!({"Authorization": auth("ec2")}),
            "Action=CreateVpc&Version=2016-11-15",
        );
        let c = call(&ec2).unwrap();
        assert_eq!((c.key.as_str(), c.service.as_str()), ("KEY1", "ec2"));
        assert_eq!((c.action.as_str(), c.mutating), ("CreateVpc", true));
        let read = entry(
            "POST",
            "https://127.0.0.1:1/",
            json!({"authorization": auth("ec2")}),
            "Action=DescribeVpcs&Version=2016-11-15",
        );
        assert!(!call(&read).unwrap().mutating);
        let logs = entry(
            "POST",
            "https://127.0.0.1:1/",
            json!({"Authorization": auth("logs"), "X-Amz-Target": "Logs_20140328.PutRetentionPolicy"}),
            "{}",
        );
        assert_eq!(call(&logs).unwrap().action, "PutRetentionPolicy");
        let eks = entry(
            "POST",
            "https://127.0.0.1:1/clusters/c/node-groups/g/update-config",
            json!({"Authorization": auth("eks")}),
            "{}",
        );
        let c = call(&eks).unwrap();
        assert_eq!(
            (c.action.as_str(), c.mutating),
            ("UpdateNodegroupConfig", true)
        );
        let s3 = entry(
            "PUT",
            "https://127.0.0.1:1/bucket?policy",
            json!({"Authorization": auth("s3")}),
            "{}",
        );
        assert_eq!(call(&s3).unwrap().action, "PUT /bucket?policy");
        let get = entry(
            "GET",
            "https://127.0.0.1:1/bucket?policy",
            json!({"Authorization": auth("s3")}),
            "",
        );
        assert!(!call(&get).unwrap().mutating);
        let unsigned = entry("GET", "https://127.0.0.1:1/moto-api/", json!({}), "");
        assert_eq!(call(&unsigned), None);
    }
}

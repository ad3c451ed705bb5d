//! The small core every service shares: the request a handler sees, Google's JSON error shape,
//! strict body parsing on the official model types, resource-name checks, and timestamps.
//!
//! Kept from the real APIs: errors are `{"error":{"code","message","status"}}` (compute's
//! variant adds `errors[].reason`, e.g. `alreadyExists`); a request body with a field the
//! API does not define is `400 INVALID_ARGUMENT` naming the field (Google's ESF says
//! `Invalid JSON payload received. Unknown name "x"`), found at any depth. Not kept: error
//! `details` (`ErrorInfo`, `BadRequest`), field-level validation beyond what each service
//! checks.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// One HTTP request as a service handler sees it (the body already read).
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The percent-decoded path, e.g. `/v1/projects/p/locations/l/clusters`.
    pub path: String,
    /// Decoded query pairs in order (`$alt` included).
    pub query: Vec<(String, String)>,
    /// The bearer token of the `Authorization` header, if any.
    pub bearer: Option<String>,
    /// The raw body.
    pub body: Bytes,
}

impl Request {
    /// The first value of a query parameter.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter (`true` / `1`).
    pub fn q_bool(&self, key: &str) -> bool {
        matches!(self.q(key), Some("true") | Some("1"))
    }

    /// The `updateMask` query parameter as field paths (comma-separated, as the clients send).
    pub fn update_mask(&self) -> Vec<String> {
        self.q("updateMask")
            .map(|m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The body parsed strictly as `T` (see [`parse_strict`]); an empty body is `T::default()`.
    pub fn json<T: DeserializeOwned + std::fmt::Debug + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
        parse_strict(v)
    }
}

/// A successful response: a status and a JSON body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status (200 unless said otherwise).
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

/// What a handler returns.
pub type Reply = Result<Response, ApiError>;

/// 200 with `v` serialised (the model types write enums as numbers or names as the real API
/// accepts both; the clients parse either).
pub fn ok<T: Serialize>(v: &T) -> Reply {
    Ok(Response {
        status: 200,
        body: serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))?,
    })
}

/// 200 with an empty JSON object (`google.protobuf.Empty`).
pub fn empty() -> Reply {
    Ok(Response {
        status: 200,
        body: json!({}),
    })
}

/// An error in Google's JSON shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The canonical `google.rpc.Code` name, e.g. `NOT_FOUND`.
    pub status: String,
    /// The human message.
    pub message: String,
    /// Compute's legacy `errors[]` entries (`{"domain","reason","message"}`), if any.
    pub errors: Vec<Value>,
    /// Seconds for a `Retry-After` header (429 / 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the canonical status name for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        let status = match code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ALREADY_EXISTS",
            412 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        let retry_after = matches!(code, 429 | 503).then_some(1);
        ApiError {
            code,
            status: status.to_string(),
            message: message.into(),
            errors: Vec::new(),
            retry_after,
        }
    }
    /// The same error with another canonical status name (e.g. 400 `FAILED_PRECONDITION`).
    pub fn with_status(mut self, status: &str) -> Self {
        self.status = status.to_string();
        self
    }
    /// 400 INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 400 FAILED_PRECONDITION (how GKE answers a mutation while an operation runs).
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, message).with_status("FAILED_PRECONDITION")
    }
    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    /// 409 ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    /// 409 ABORTED (a stale IAM policy etag).
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, message).with_status("ABORTED")
    }
    /// 401 UNAUTHENTICATED.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    /// 403 PERMISSION_DENIED.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    /// 500 INTERNAL.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// Adds a compute-style `errors[]` entry with `reason`.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.errors
            .push(json!({"domain": "global", "reason": reason, "message": self.message}));
        self
    }
    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message, "status": self.status});
        if !self.errors.is_empty() {
            e["errors"] = Value::Array(self.errors.clone());
        }
        json!({ "error": e })
    }
}

/// Parses `v` as `T`, refusing keys `T` does not define at any depth.
///
/// The model types keep unknown keys in a private `_unknown_fields` map that their `Debug`
/// output shows only when it is non-empty, so the `Debug` text (outside string literals)
/// names every unknown key of every nested message.
pub fn parse_strict<T: DeserializeOwned + std::fmt::Debug>(v: Value) -> Result<T, ApiError> {
    let t: T = serde_json::from_value(v)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    if let Some(name) = unknown_field(&format!("{t:?}")) {
        return Err(ApiError::invalid(format!(
            "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
        )));
    }
    Ok(t)
}

/// The first key of a non-empty `_unknown_fields: {"key": …}` in `Debug` text, skipping
/// string literals (a value may itself contain that text).
fn unknown_field(debug: &str) -> Option<String> {
    const MARK: &str = "_unknown_fields: {\"";
    let b = debug.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if debug[i..].starts_with(MARK) {
            let rest = &debug[i + MARK.len()..];
            return Some(rest.split('"').next().unwrap_or_default().to_string());
        }
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        i += 1;
    }
    None
}

/// Applies a JSON merge patch (RFC 7396) to `target` and parses it back strictly: how
/// `/_bmac/edit` changes a resource by hand.
pub fn merge_edit<T: Serialize + DeserializeOwned + std::fmt::Debug>(
    target: &mut T,
    patch: &Value,
) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(&*target).map_err(|e| ApiError::internal(e.to_string()))?;
    merge(&mut v, patch);
    *target = parse_strict(v.clone())?;
    Ok(v)
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, pv) in p {
                if pv.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), pv);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Applies an update mask: each (dotted, snake_case or camelCase) path of `mask` is copied
/// from `patch` into `stored`, or removed from it when `patch` lacks it. Both are the JSON
/// of the same model type.
pub fn apply_mask(stored: &mut Value, patch: &Value, mask: &[String]) {
    for path in mask {
        let keys: Vec<String> = path.split('.').map(camel).collect();
        let from = keys.iter().try_fold(patch, |v, k| v.get(k));
        let Some((last, parents)) = keys.split_last() else {
            continue;
        };
        let mut at = &mut *stored;
        for k in parents {
            if !at.get(k).is_some_and(Value::is_object) {
                at[k.as_str()] = json!({});
            }
            at = &mut at[k.as_str()];
        }
        match (from, at.as_object_mut()) {
            (Some(v), Some(o)) => {
                o.insert(last.clone(), v.clone());
            }
            (None, Some(o)) => {
                o.remove(last);
            }
            _ => {}
        }
    }
}

fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialises a model value to JSON (they always serialise).
pub fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The values whose key starts with `prefix` (a resource name ending in `/`): a list call.
pub fn under<T: Clone>(map: &std::collections::BTreeMap<String, T>, prefix: &str) -> Vec<T> {
    map.range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Whether `id` is a valid project id: 6–30 characters, lowercase letters, digits and
/// hyphens, starting with a letter and not ending with a hyphen.
pub fn valid_project_id(id: &str) -> bool {
    valid_id(id, 6, 30)
}

/// Whether `id` has `min..=max` characters of lowercase letters, digits and hyphens, a letter
/// first and no hyphen last: the rule of project ids, service account ids, cluster names.
pub fn valid_id(id: &str, min: usize, max: usize) -> bool {
    let b = id.as_bytes();
    (min..=max).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A stable 12-digit project number derived from the project id (FNV-1a).
pub fn project_number(id: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    100_000_000_000 + h % 900_000_000_000
}

/// The current time as RFC 3339 (what the APIs' string timestamps hold).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339.
pub fn rfc3339(t: SystemTime) -> String {
    google_cloud_wkt::Timestamp::try_from(t)
        .ok()
        .and_then(|ts| serde_json::to_value(ts).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The current time as a `google.protobuf.Timestamp`.
pub fn now_timestamp() -> google_cloud_wkt::Timestamp {
    google_cloud_wkt::Timestamp::try_from(SystemTime::now()).unwrap_or_default()
}

/// When a long-running change started now completes.
#[derive(Debug, Clone, Copy)]
pub struct Due(pub Instant);

impl Due {
    /// Due `delay` from now.
    pub fn after(delay: Duration) -> Self {
        Due(Instant::now() + delay)
    }
    /// Whether it is due.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// Splits `/v1/a/b:verb` into the segments after the version prefix and the custom verb.
pub fn split_path<'a>(path: &'a str, version: &str) -> Option<(Vec<&'a str>, Option<&'a str>)> {
    let rest = path.strip_prefix('/')?.strip_prefix(version)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (rest, verb) = match rest.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r, Some(v)),
        _ => (rest, None),
    };
    Some((rest.split('/').filter(|s| !s.is_empty()).collect(), verb))
}

/// A short random-looking hexadecimal id (a counter mixed with the clock): operation ids,
/// server-assigned names.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:016x}",
        (t ^ n.wrapping_mul(0x9e3779b97f4a7c15)).rotate_left(17)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_outside_strings() {
        assert_eq!(
            unknown_field(r#"X { a: "_unknown_fields: {\"no\"", b: 1 }"#),
            None
        );
        assert_eq!(
            unknown_field(r#"X { a: "x", _unknown_fields: {"bogus": Bool(true)} }"#).as_deref(),
            Some("bogus")
        );
    }

    #[test]
    fn masks_copy_and_remove_paths() {
        let mut stored = json!({"a": 1, "b": {"c": 2, "d": 3}});
        apply_mask(
            &mut stored,
            &json!({"b": {"c": 5}, "eF": 7}),
            &["b.c".into(), "b.d".into(), "e_f".into()],
        );
        assert_eq!(stored, json!({"a": 1, "b": {"c": 5}, "eF": 7}));
    }

    #[test]
    fn project_ids() {
        assert!(valid_project_id("my-project-1"));
        assert!(!valid_project_id("My-Project"));
        assert!(!valid_project_id("short"));
        assert!(!valid_project_id("ends-with-"));
        assert_eq!(project_number("abc-def").to_string().len(), 12);
    }

    #[test]
    fn paths_split_into_segments_and_verb() {
        let (s, v) = split_path("/v1/projects/p/locations/l/clusters/c:setLogging", "v1").unwrap();
        assert_eq!(s, ["projects", "p", "locations", "l", "clusters", "c"]);
        assert_eq!(v, Some("setLogging"));
    }
}

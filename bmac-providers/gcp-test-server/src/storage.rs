//! Cloud Storage JSON API (`storage.googleapis.com/storage/v1`): bucket administration —
//! buckets, their retention policy and its lock, uniform access and public access
//! prevention, lifecycle rules, labels, bucket IAM policies — and just enough of objects
//! (media uploads, list, delete) to fill a bucket and empty it again.
//!
//! Why the project's own: fake-gcs-server (which `scripts/gcp-env.sh` also runs, for object
//! reads and writes) keeps of a bucket only its name, versioning, creation time, default event
//! hold and ACLs. It has no route for a bucket's IAM policy (`/b/B/iam`), none for
//! `lockRetentionPolicy`, and no bucket retention policy, `iamConfiguration` (uniform
//! bucket-level access, public access prevention) or lifecycle — read in its source at
//! v1.55.1 — which are what bmac's `object_bucket` and `audit_archive` steps set.
//!
//! Kept from the real API: the resource shapes (`kind`, camelCase fields, int64 fields —
//! `metageneration`, `projectNumber`, `retentionPeriod`, `generation`, `size` — as strings,
//! `timeCreated`, `updated`, an `etag`); GCS's error shape with `errors[].reason`; bucket
//! names of 3–63 characters (222 with dots, each part at most 63) of lowercase letters,
//! digits, `-`, `_` and `.`, a letter or digit first and last, no IP address, no `goog`
//! prefix and no `google` (400 `invalid`); `project` required on insert and list; a taken
//! name 409 `conflict`; an unknown bucket 404 `notFound`; `PATCH` merges the fields it names
//! (`null` removes) and `ifMetagenerationMatch` on get / patch / delete / lock is 412
//! `conditionNotMet` when stale; every change bumps `metageneration`; a retention period of
//! 1 s to 100 years, its `effectiveTime` set when it changes; `lockRetentionPolicy` needs
//! `ifMetagenerationMatch` and a policy, and once locked the period can only be raised —
//! lowering or removing it is 403 `forbidden`; enabling uniform bucket-level access sets its
//! `lockedTime` (90 days on) and `bucketPolicyOnly` mirrors it; public access prevention is
//! `inherited` or `enforced`; labels (at most 64; keys a lowercase letter first, then
//! lowercase letters, digits, `_`, `-`, values of the same characters, up to 63 each);
//! lifecycle actions `Delete`, `SetStorageClass` (with a class), `AbortIncompleteMultipartUpload`,
//! each with a condition; a non-empty bucket cannot be deleted (409 `conflict`). A new
//! bucket's policy holds the project convenience bindings (`roles/storage.legacyBucketOwner`
//! to `projectOwner:P` and `projectEditor:P`, `roles/storage.legacyBucketReader` to
//! `projectViewer:P`); `PUT …/iam` with a stale `etag` is 412 `conditionNotMet`, without one
//! it overwrites; conditions need policy `version` 3 and uniform access; `allUsers` /
//! `allAuthenticatedUsers` under enforced public access prevention are 412; a policy with
//! conditions is read only with `optionsRequestedPolicyVersion=3` (400 otherwise). Objects:
//! `uploadType=media` uploads with `ifGenerationMatch` (0: only if absent), `generation` in
//! microseconds, `crc32c`, `retentionExpirationTime` from the bucket's current policy, and an
//! object younger than the retention period cannot be deleted or overwritten (403
//! `retentionPolicyNotMet`).
//!
//! Not kept: object data (uploads are measured and check-summed, not stored: downloads and
//! everything else about objects is fake-gcs-server's), multipart and resumable uploads (501),
//! `buckets.update` (PUT), ACLs, default object ACLs, versioning's noncurrent objects, holds,
//! soft delete, autoclass, CORS, logging, website, encryption, notifications, requester pays,
//! `fields` / `projection`, domain verification for names with dots, lifecycle actually
//! deleting anything.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::core::{
    merge_edit, parse_strict, project_number, rfc3339, to_json, ApiError, Reply, Request, Response,
};
use crate::server::{base64, State};

/// Buckets, their objects and their IAM policies, by bucket name.
#[derive(Debug, Default)]
pub struct Store {
    buckets: BTreeMap<String, Bucket>,
    objects: BTreeMap<String, BTreeMap<String, Object>>,
    policies: BTreeMap<String, Policy>,
}

/// Int64 fields, which the JSON API writes as strings (and reads either way).
mod int64 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map_err(D::Error::custom),
            Value::Number(n) => n.as_i64().ok_or_else(|| D::Error::custom("not an int64")),
            v => Err(D::Error::custom(format!("expected an int64, got {v}"))),
        }
    }
}

/// A bucket resource (`storage#bucket`), the fields this server keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Bucket {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    self_link: String,
    #[serde(default)]
    project_number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    time_created: String,
    #[serde(default)]
    updated: String,
    #[serde(default, with = "int64")]
    metageneration: i64,
    #[serde(default)]
    location: String,
    #[serde(default)]
    location_type: String,
    #[serde(default)]
    storage_class: String,
    #[serde(default)]
    etag: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    iam_configuration: IamConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention_policy: Option<RetentionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    versioning: Option<Versioning>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IamConfiguration {
    #[serde(default)]
    uniform_bucket_level_access: UniformAccess,
    #[serde(default)]
    bucket_policy_only: UniformAccess,
    #[serde(default)]
    public_access_prevention: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UniformAccess {
    #[serde(default)]
    enabled: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    locked_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetentionPolicy {
    #[serde(default, with = "int64")]
    retention_period: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    effective_time: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    is_locked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifecycle {
    #[serde(default)]
    rule: Vec<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Versioning {
    #[serde(default)]
    enabled: bool,
}

/// An object resource (`storage#object`): its metadata only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Object {
    kind: String,
    id: String,
    self_link: String,
    media_link: String,
    name: String,
    bucket: String,
    #[serde(with = "int64")]
    generation: i64,
    #[serde(with = "int64")]
    metageneration: i64,
    content_type: String,
    storage_class: String,
    #[serde(with = "int64")]
    size: i64,
    crc32c: String,
    time_created: String,
    updated: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    retention_expiration_time: String,
}

/// A bucket IAM policy (`storage#policy`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Policy {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    version: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bindings: Vec<Binding>,
    #[serde(default)]
    etag: String,
    #[serde(skip)]
    revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    role: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    condition: Option<Value>,
}

const MAX_RETENTION_SECONDS: i64 = 3_155_760_000;
const UNIFORM_ACCESS_LOCK: Duration = Duration::from_secs(90 * 86_400);

fn gcs_error(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_reason(reason)
}

fn invalid(message: impl Into<String>) -> ApiError {
    gcs_error(400, "invalid", message)
}

fn no_bucket() -> ApiError {
    gcs_error(404, "notFound", "The specified bucket does not exist.")
}

fn precondition_failed() -> ApiError {
    gcs_error(412, "conditionNotMet", "Precondition Failed")
}

fn locked(name: &str) -> ApiError {
    gcs_error(
        403,
        "forbidden",
        format!("Cannot reduce the retention period of, or remove, the locked retention policy of bucket '{name}'."),
    )
}

fn json_reply(status: u16, body: Value) -> Reply {
    Ok(Response { status, body })
}

/// `CAE=`-style etags: the base64 of a protobuf varint field 1 holding `n`.
fn etag(n: u64) -> String {
    let mut bytes = vec![0x08];
    let mut v = n;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            bytes.push(low);
            break;
        }
        bytes.push(low | 0x80);
    }
    base64(&bytes)
}

/// Whether `name` is a valid bucket name (see the module docs).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let max = if name.contains('.') { 222 } else { 63 };
    (3..=max).contains(&b.len())
        && b.iter()
            .all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && name.split('.').all(|p| (1..=63).contains(&p.len()))
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("goog")
        && !name.replace('0', "o").contains("google")
}

fn valid_label_part(s: &str, key: bool) -> bool {
    let ok = |c: char| c.is_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    s.chars().count() <= 63
        && s.chars().all(ok)
        && (!key || s.chars().next().is_some_and(char::is_lowercase))
}

fn seconds_of(time: &str) -> Option<i64> {
    google_cloud_wkt::Timestamp::try_from(time)
        .ok()
        .map(|t| t.seconds())
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn at_seconds(s: i64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s.max(0) as u64))
}

/// The settings rules every stored bucket keeps (see the module docs).
fn check(b: &Bucket) -> Result<(), ApiError> {
    if b.labels.len() > 64 {
        return Err(invalid("A bucket has at most 64 labels."));
    }
    for (k, v) in &b.labels {
        if k.is_empty() || !valid_label_part(k, true) || !valid_label_part(v, false) {
            return Err(invalid(format!("Invalid label \"{k}\": \"{v}\".")));
        }
    }
    let pap = &b.iam_configuration.public_access_prevention;
    if !matches!(pap.as_str(), "inherited" | "enforced") {
        return Err(invalid(format!(
            "Invalid value for publicAccessPrevention: \"{pap}\"."
        )));
    }
    if let Some(p) = &b.retention_policy {
        if !(1..=MAX_RETENTION_SECONDS).contains(&p.retention_period) {
            return Err(invalid(format!(
                "The retention period must be between 1 and {MAX_RETENTION_SECONDS} seconds, not {}.",
                p.retention_period
            )));
        }
    }
    const CLASSES: [&str; 7] = [
        "STANDARD",
        "NEARLINE",
        "COLDLINE",
        "ARCHIVE",
        "MULTI_REGIONAL",
        "REGIONAL",
        "DURABLE_REDUCED_AVAILABILITY",
    ];
    if !CLASSES.contains(&b.storage_class.as_str()) {
        return Err(invalid(format!(
            "Invalid storage class \"{}\".",
            b.storage_class
        )));
    }
    for rule in b.lifecycle.iter().flat_map(|l| &l.rule) {
        let action = rule["action"]["type"].as_str().unwrap_or_default();
        let class_ok = action != "SetStorageClass"
            || rule["action"]["storageClass"]
                .as_str()
                .is_some_and(|c| CLASSES.contains(&c));
        let known = matches!(
            action,
            "Delete" | "SetStorageClass" | "AbortIncompleteMultipartUpload"
        );
        let condition = rule["condition"].as_object().filter(|c| !c.is_empty());
        let age_ok = rule["condition"]
            .get("age")
            .is_none_or(|a| a.as_u64().is_some());
        if !known || !class_ok || condition.is_none() || !age_ok {
            return Err(invalid(format!("Invalid lifecycle rule {rule}.")));
        }
    }
    Ok(())
}

/// Fills what the server decides on a bucket being stored (also after a change).
fn settle(b: &mut Bucket) {
    let pap = &mut b.iam_configuration.public_access_prevention;
    if pap.is_empty() || pap == "unspecified" {
        *pap = "inherited".into();
    }
    let cfg = &mut b.iam_configuration;
    if !cfg.uniform_bucket_level_access.enabled {
        cfg.uniform_bucket_level_access.locked_time.clear();
    } else if cfg.uniform_bucket_level_access.locked_time.is_empty() {
        cfg.uniform_bucket_level_access.locked_time =
            rfc3339(SystemTime::now() + UNIFORM_ACCESS_LOCK);
    }
    cfg.bucket_policy_only = cfg.uniform_bucket_level_access.clone();
    b.etag = etag(b.metageneration as u64);
}

/// `new` replacing `old` by a patch or a hand edit: read-only fields kept, the lock's and
/// uniform access's rules checked, the metageneration bumped.
fn change(old: &Bucket, mut new: Bucket) -> Result<Bucket, ApiError> {
    new.kind = old.kind.clone();
    new.id = old.id.clone();
    new.self_link = old.self_link.clone();
    new.project_number = old.project_number.clone();
    new.name = old.name.clone();
    new.time_created = old.time_created.clone();
    new.location = old.location.clone();
    new.location_type = old.location_type.clone();
    match (&old.retention_policy, &mut new.retention_policy) {
        (Some(o), None) if o.is_locked => return Err(locked(&old.name)),
        (Some(o), Some(n)) if o.is_locked && n.retention_period < o.retention_period => {
            return Err(locked(&old.name))
        }
        (Some(o), Some(n)) if o.retention_period == n.retention_period => {
            n.effective_time = o.effective_time.clone();
            n.is_locked = o.is_locked;
        }
        (o, Some(n)) => {
            n.effective_time = rfc3339(SystemTime::now());
            n.is_locked = o.as_ref().is_some_and(|o| o.is_locked);
        }
        (_, None) => {}
    }
    let was = &old.iam_configuration.uniform_bucket_level_access;
    let cfg = &mut new.iam_configuration;
    if cfg.bucket_policy_only != *was && cfg.uniform_bucket_level_access == *was {
        // Only the legacy alias was written.
        cfg.uniform_bucket_level_access = cfg.bucket_policy_only.clone();
    }
    let now = cfg.uniform_bucket_level_access.enabled;
    if was.enabled && !now && seconds_of(&was.locked_time).is_some_and(|t| t <= now_seconds()) {
        return Err(invalid(
            "Uniform bucket-level access cannot be disabled after its lockedTime.",
        ));
    }
    cfg.uniform_bucket_level_access.locked_time = if now && was.enabled {
        was.locked_time.clone()
    } else {
        String::new()
    };
    cfg.bucket_policy_only = cfg.uniform_bucket_level_access.clone();
    new.metageneration = old.metageneration + 1;
    new.updated = rfc3339(SystemTime::now());
    settle(&mut new);
    check(&new)?;
    Ok(new)
}

fn int_param(req: &Request, key: &str) -> Result<Option<i64>, ApiError> {
    req.q(key)
        .map(|v| {
            v.parse()
                .map_err(|_| invalid(format!("Invalid value for {key}: \"{v}\".")))
        })
        .transpose()
}

fn check_metageneration(req: &Request, b: &Bucket) -> Result<(), ApiError> {
    match int_param(req, "ifMetagenerationMatch")? {
        Some(n) if n != b.metageneration => Err(precondition_failed()),
        _ => Ok(()),
    }
}

fn required_project<'a>(st: &State, req: &'a Request) -> Result<&'a str, ApiError> {
    let project = req
        .q("project")
        .ok_or_else(|| gcs_error(400, "required", "Required parameter: project"))?;
    if !project.bytes().all(|c| c.is_ascii_digit()) {
        st.check_project(project)?;
    }
    Ok(project)
}

fn default_policy(project: &str, bucket: &str) -> Policy {
    Policy {
        kind: "storage#policy".into(),
        resource_id: format!("projects/_/buckets/{bucket}"),
        version: 1,
        bindings: vec![
            Binding {
                role: "roles/storage.legacyBucketOwner".into(),
                members: vec![
                    format!("projectEditor:{project}"),
                    format!("projectOwner:{project}"),
                ],
                condition: None,
            },
            Binding {
                role: "roles/storage.legacyBucketReader".into(),
                members: vec![format!("projectViewer:{project}")],
                condition: None,
            },
        ],
        etag: etag(1),
        revision: 1,
    }
}

/// Serves a request on the Cloud Storage listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let m = req.method.as_str();
    if let Some(rest) = req.path.strip_prefix("/upload/storage/v1/b/") {
        return match rest.split_once('/') {
            Some((bucket, "o")) if m == "POST" => upload(st, req, bucket),
            _ => Err(ApiError::not_found(format!(
                "no such method {m} {}",
                req.path
            ))),
        };
    }
    let Some(rest) = req.path.strip_prefix("/storage/v1/b") else {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (bucket, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some(object) = tail.strip_prefix("o/") {
        return on_object(st, req, bucket, object);
    }
    match (bucket, tail, m) {
        ("", "", "POST") => insert(st, req),
        ("", "", "GET") => list(st, req),
        (b, "", "GET") => {
            let got = st.storage.bucket(b)?;
            check_metageneration(req, got)?;
            json_reply(200, to_json(got))
        }
        (b, "", "PATCH") => patch(st, req, b),
        (b, "", "DELETE") => delete(st, req, b),
        (b, "lockRetentionPolicy", "POST") => lock(st, req, b),
        (b, "iam", "GET") => get_policy(st, req, b),
        (b, "iam", "PUT") => set_policy(st, req, b),
        (b, "o", "GET") => list_objects(st, req, b),
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

impl Store {
    fn bucket(&self, name: &str) -> Result<&Bucket, ApiError> {
        self.buckets.get(name).ok_or_else(no_bucket)
    }
}

fn body_json(req: &Request) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

fn insert(st: &mut State, req: &Request) -> Reply {
    let project = required_project(st, req)?.to_string();
    let mut b: Bucket = parse_strict(body_json(req)?)?;
    if !valid_bucket_name(&b.name) {
        return Err(invalid(format!("Invalid bucket name: '{}'", b.name)));
    }
    let number = project_number(&project).to_string();
    if let Some(taken) = st.storage.buckets.get(&b.name) {
        let message = if taken.project_number == number {
            "Your previous request to create the named bucket succeeded and you already own it."
        } else {
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
        };
        return Err(gcs_error(409, "conflict", message));
    }
    let now = rfc3339(SystemTime::now());
    b.kind = "storage#bucket".into();
    b.id = b.name.clone();
    b.self_link = format!("https://www.googleapis.com/storage/v1/b/{}", b.name);
    b.project_number = number;
    b.time_created = now.clone();
    b.updated = now.clone();
    b.metageneration = 1;
    b.location = if b.location.is_empty() {
        "US".into()
    } else {
        b.location.to_ascii_uppercase()
    };
    b.location_type = match b.location.as_str() {
        l if l.contains('-') => "region",
        "US" | "EU" | "ASIA" => "multi-region",
        _ => "dual-region",
    }
    .into();
    if b.storage_class.is_empty() {
        b.storage_class = "STANDARD".into();
    }
    if let Some(p) = &mut b.retention_policy {
        p.effective_time = now;
        p.is_locked = false;
    }
    let cfg = &mut b.iam_configuration;
    cfg.uniform_bucket_level_access.enabled |= cfg.bucket_policy_only.enabled;
    cfg.uniform_bucket_level_access.locked_time.clear();
    settle(&mut b);
    check(&b)?;
    let policy = default_policy(&project, &b.name);
    st.storage.policies.insert(b.name.clone(), policy);
    st.storage.objects.insert(b.name.clone(), BTreeMap::new());
    st.storage.buckets.insert(b.name.clone(), b.clone());
    json_reply(200, to_json(&b))
}

/// `items` (omitted when empty, as the API does) and `nextPageToken` of one page of `all`.
fn page(req: &Request, kind: &str, all: Vec<(String, Value)>) -> Result<Value, ApiError> {
    let max = int_param(req, "maxResults")?.unwrap_or(1000).clamp(1, 1000) as usize;
    let after = req.q("pageToken").unwrap_or_default();
    let mut items: Vec<(String, Value)> = all
        .into_iter()
        .filter(|(name, _)| after.is_empty() || name.as_str() > after)
        .collect();
    let mut out = json!({ "kind": kind });
    if items.len() > max {
        items.truncate(max);
        out["nextPageToken"] = json!(items[max - 1].0);
    }
    if !items.is_empty() {
        out["items"] = Value::Array(items.into_iter().map(|(_, v)| v).collect());
    }
    Ok(out)
}

fn list(st: &mut State, req: &Request) -> Reply {
    let number = project_number(required_project(st, req)?).to_string();
    let prefix = req.q("prefix").unwrap_or_default();
    let all = st
        .storage
        .buckets
        .values()
        .filter(|b| b.project_number == number && b.name.starts_with(prefix))
        .map(|b| (b.name.clone(), to_json(b)))
        .collect();
    json_reply(200, page(req, "storage#buckets", all)?)
}

fn patch(st: &mut State, req: &Request, name: &str) -> Reply {
    let old = st.storage.bucket(name)?.clone();
    check_metageneration(req, &old)?;
    let mut merged = old.clone();
    merge_edit(&mut merged, &body_json(req)?)?;
    let new = change(&old, merged)?;
    st.storage.buckets.insert(name.to_string(), new.clone());
    json_reply(200, to_json(&new))
}

fn delete(st: &mut State, req: &Request, name: &str) -> Reply {
    check_metageneration(req, st.storage.bucket(name)?)?;
    if st.storage.objects.get(name).is_some_and(|o| !o.is_empty()) {
        return Err(gcs_error(
            409,
            "conflict",
            "The bucket you tried to delete is not empty.",
        ));
    }
    st.storage.buckets.remove(name);
    st.storage.objects.remove(name);
    st.storage.policies.remove(name);
    json_reply(204, Value::Null)
}

fn lock(st: &mut State, req: &Request, name: &str) -> Reply {
    let b = st.storage.bucket(name)?;
    if req.q("ifMetagenerationMatch").is_none() {
        return Err(gcs_error(
            400,
            "required",
            "Required parameter: ifMetagenerationMatch",
        ));
    }
    check_metageneration(req, b)?;
    let Some(policy) = &b.retention_policy else {
        return Err(invalid(format!(
            "Bucket '{name}' has no retention policy to lock."
        )));
    };
    if policy.is_locked {
        return json_reply(200, to_json(b));
    }
    let mut new = b.clone();
    if let Some(p) = &mut new.retention_policy {
        p.is_locked = true;
    }
    new.metageneration += 1;
    new.updated = rfc3339(SystemTime::now());
    settle(&mut new);
    st.storage.buckets.insert(name.to_string(), new.clone());
    json_reply(200, to_json(&new))
}

fn has_conditions(p: &Policy) -> bool {
    p.bindings.iter().any(|b| b.condition.is_some())
}

fn get_policy(st: &mut State, req: &Request, name: &str) -> Reply {
    st.storage.bucket(name)?;
    let asked = int_param(req, "optionsRequestedPolicyVersion")?.unwrap_or(1);
    let p = &st.storage.policies[name];
    if has_conditions(p) && asked < 3 {
        return Err(invalid(format!(
            "The IAM policy of bucket '{name}' has IAM Conditions, which policy version {asked} cannot hold: request optionsRequestedPolicyVersion=3."
        )));
    }
    json_reply(200, to_json(p))
}

fn valid_member(m: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "user:",
        "serviceAccount:",
        "group:",
        "domain:",
        "projectOwner:",
        "projectEditor:",
        "projectViewer:",
        "principal:",
        "principalSet:",
        "deleted:",
    ];
    matches!(m, "allUsers" | "allAuthenticatedUsers")
        || PREFIXES
            .iter()
            .any(|p| m.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// Checks and stores a policy written to bucket `name` (by `PUT …/iam` or a hand edit).
fn store_policy(st: &mut State, name: &str, mut new: Policy) -> Result<Value, ApiError> {
    let b = st.storage.bucket(name)?;
    let uniform = b.iam_configuration.uniform_bucket_level_access.enabled;
    let pap = b.iam_configuration.public_access_prevention == "enforced";
    new.bindings.retain(|b| !b.members.is_empty());
    for binding in &new.bindings {
        let role_ok = ["roles/", "projects/", "organizations/"]
            .iter()
            .any(|p| binding.role.starts_with(p));
        if !role_ok {
            return Err(invalid(format!(
                "Role {} is not a valid role.",
                binding.role
            )));
        }
        if let Some(m) = binding.members.iter().find(|m| !valid_member(m)) {
            return Err(invalid(format!("Invalid member: {m}")));
        }
        if pap
            && binding
                .members
                .iter()
                .any(|m| m == "allUsers" || m == "allAuthenticatedUsers")
        {
            return Err(gcs_error(
                412,
                "conditionNotMet",
                format!("Public access prevention is enforced on bucket '{name}': allUsers and allAuthenticatedUsers cannot be granted access."),
            ));
        }
    }
    if has_conditions(&new) && (new.version < 3 || !uniform) {
        return Err(invalid(
            "IAM Conditions need policy version 3 and uniform bucket-level access on the bucket.",
        ));
    }
    let revision = st.storage.policies[name].revision + 1;
    new.kind = "storage#policy".into();
    new.resource_id = format!("projects/_/buckets/{name}");
    new.version = new.version.max(1);
    new.etag = etag(revision);
    new.revision = revision;
    let v = to_json(&new);
    st.storage.policies.insert(name.to_string(), new);
    Ok(v)
}

fn set_policy(st: &mut State, req: &Request, name: &str) -> Reply {
    st.storage.bucket(name)?;
    let new: Policy = parse_strict(body_json(req)?)?;
    if !new.etag.is_empty() && new.etag != st.storage.policies[name].etag {
        return Err(precondition_failed());
    }
    json_reply(200, store_policy(st, name, new)?)
}

/// When the bucket's current retention policy releases an object made at `created`.
fn retained_until(b: &Bucket, created: &str) -> Option<i64> {
    let period = b.retention_policy.as_ref()?.retention_period;
    Some(seconds_of(created)? + period)
}

fn object_view(b: &Bucket, o: &Object) -> Value {
    let mut o = o.clone();
    o.retention_expiration_time = retained_until(b, &o.time_created)
        .map(at_seconds)
        .unwrap_or_default();
    to_json(&o)
}

fn check_retention(b: &Bucket, o: &Object) -> Result<(), ApiError> {
    match retained_until(b, &o.time_created) {
        Some(until) if until > now_seconds() => Err(gcs_error(
            403,
            "retentionPolicyNotMet",
            format!(
                "Object '{}/{}' is subject to bucket's retention policy and cannot be deleted, overwritten or archived until {}",
                b.name,
                o.name,
                at_seconds(until)
            ),
        )),
        _ => Ok(()),
    }
}

/// CRC32C (Castagnoli), as the API reports it: base64 of the big-endian checksum.
fn crc32c(data: &[u8]) -> String {
    let mut crc: u32 = !0;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    base64(&(!crc).to_be_bytes())
}

fn valid_object_name(n: &str) -> bool {
    (1..=1024).contains(&n.len())
        && !n.contains(['\r', '\n'])
        && n != "."
        && n != ".."
        && !n.starts_with(".well-known/acme-challenge/")
}

fn upload(st: &mut State, req: &Request, bucket: &str) -> Reply {
    let b = st.storage.bucket(bucket)?.clone();
    match req.q("uploadType") {
        Some("media") => {}
        Some(other) => {
            return Err(ApiError::new(
                501,
                format!(
                    "uploadType={other} is not served by this test server: only media uploads are."
                ),
            ))
        }
        None => return Err(gcs_error(400, "required", "Required parameter: uploadType")),
    }
    let name = req
        .q("name")
        .ok_or_else(|| gcs_error(400, "required", "Required parameter: name"))?;
    if !valid_object_name(name) {
        return Err(invalid(format!("Invalid object name: '{name}'")));
    }
    let objects = st.storage.objects.entry(bucket.to_string()).or_default();
    let existing = objects.get(name);
    match (int_param(req, "ifGenerationMatch")?, existing) {
        (Some(0), Some(_)) => return Err(precondition_failed()),
        (Some(g), Some(o)) if g != 0 && g != o.generation => return Err(precondition_failed()),
        (Some(g), None) if g != 0 => return Err(precondition_failed()),
        _ => {}
    }
    if let Some(o) = existing {
        check_retention(&b, o)?;
    }
    let now = SystemTime::now();
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let generation = micros.max(existing.map_or(0, |o| o.generation + 1));
    let link = format!("https://www.googleapis.com/storage/v1/b/{bucket}/o/{name}");
    let o = Object {
        kind: "storage#object".into(),
        id: format!("{bucket}/{name}/{generation}"),
        self_link: link.clone(),
        media_link: format!("https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{name}?generation={generation}&alt=media"),
        name: name.to_string(),
        bucket: bucket.to_string(),
        generation,
        metageneration: 1,
        content_type: "application/octet-stream".into(),
        storage_class: b.storage_class.clone(),
        size: req.body.len() as i64,
        crc32c: crc32c(&req.body),
        time_created: rfc3339(now),
        updated: rfc3339(now),
        retention_expiration_time: String::new(),
    };
    objects.insert(name.to_string(), o.clone());
    json_reply(200, object_view(&b, &o))
}

fn list_objects(st: &mut State, req: &Request, bucket: &str) -> Reply {
    let b = st.storage.bucket(bucket)?;
    let prefix = req.q("prefix").unwrap_or_default();
    let all = st.storage.objects[bucket]
        .values()
        .filter(|o| o.name.starts_with(prefix))
        .map(|o| (o.name.clone(), object_view(b, o)))
        .collect();
    json_reply(200, page(req, "storage#objects", all)?)
}

fn on_object(st: &mut State, req: &Request, bucket: &str, name: &str) -> Reply {
    let b = st.storage.bucket(bucket)?.clone();
    let objects = st.storage.objects.entry(bucket.to_string()).or_default();
    let o = objects
        .get(name)
        .ok_or_else(|| gcs_error(404, "notFound", format!("No such object: {bucket}/{name}")))?;
    match req.method.as_str() {
        "GET" => json_reply(200, object_view(&b, o)),
        "DELETE" => {
            check_retention(&b, o)?;
            objects.remove(name);
            json_reply(204, Value::Null)
        }
        m => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

/// A hand change: `b/BUCKET` (a merge patch on the bucket, under the API's rules: a locked
/// retention cannot be lowered by hand either), `b/BUCKET:iamPolicy` (on its policy; a new
/// etag) or `b/BUCKET/o/OBJECT` (on an object's metadata, e.g. an older `timeCreated`).
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    let rest = name
        .strip_prefix("b/")
        .ok_or_else(|| ApiError::invalid(format!("{name}: expected b/BUCKET[...]")))?;
    if let Some(bucket) = rest.strip_suffix(":iamPolicy") {
        st.storage.bucket(bucket)?;
        let mut p = st.storage.policies[bucket].clone();
        merge_edit(&mut p, patch)?;
        return store_policy(st, bucket, p);
    }
    if let Some((bucket, object)) = rest.split_once("/o/") {
        let b = st.storage.bucket(bucket)?.clone();
        let o = st
            .storage
            .objects
            .get_mut(bucket)
            .and_then(|o| o.get_mut(object))
            .ok_or_else(|| ApiError::not_found(format!("No such object: {bucket}/{object}")))?;
        merge_edit(o, patch)?;
        return Ok(object_view(&b, o));
    }
    let old = st.storage.bucket(rest)?.clone();
    let mut merged = old.clone();
    merge_edit(&mut merged, patch)?;
    let new = change(&old, merged)?;
    st.storage.buckets.insert(rest.to_string(), new.clone());
    Ok(to_json(&new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_gcs_rules() {
        for ok in ["bmac-audit", "a_b", "abc", "logs.example.com", "x1-2"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "ab",
            "Upper",
            "-dash",
            "dash-",
            "192.168.1.1",
            "goog-x",
            "my-google-bucket",
            "my-g00gle",
            "a..b",
            "sp ace",
            long.as_str(),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn etags_and_checksums_look_like_googles() {
        assert_eq!(etag(1), "CAE=");
        assert_eq!(etag(300), "CKwC");
        // The CRC32C check value of "123456789" is 0xe3069283.
        assert_eq!(crc32c(b"123456789"), base64(&[0xe3, 0x06, 0x92, 0x83]));
    }
}

//! Cloud KMS (`cloudkms.googleapis.com/v1`): key rings, crypto keys and key IAM policies.
//!
//! Kept from the real API: `keyRingId` / `cryptoKeyId` of 1–63 letters, digits, `_` and `-`;
//! 409 `ALREADY_EXISTS` on a duplicate, 404 on an unknown ring or key (a key needs its ring);
//! a new key has version 1 as its `primary` (`ENABLED`, `GOOGLE_SYMMETRIC_ENCRYPTION` unless
//! the template says otherwise) and `purpose` `ENCRYPT_DECRYPT` by default; a rotation period
//! under one day, or one without `nextRotationTime`, is 400; `PATCH` needs an `updateMask`
//! and writes only its fields; `:getIamPolicy` (a `GET`, as KMS has it) / `:setIamPolicy`
//! keep etags (see [`crate::policy`]); a key's versions are listed and read, and
//! `:destroy` schedules a version's destruction (`DESTROY_SCHEDULED`, `destroyTime` after the
//! key's `destroyScheduledDuration`, 30 days by default; the key's `primary` shows it; an
//! already scheduled or destroyed version is 400 `FAILED_PRECONDITION`). Not kept: key versions
//! beyond the first, rotation actually happening, destruction actually happening, crypto
//! operations, import jobs, EKM, Autokey, deletion (KMS never deletes rings or keys).

use std::collections::BTreeMap;

use google_cloud_iam_v1::model::SetIamPolicyRequest;
use google_cloud_kms_v1::model::{
    crypto_key, crypto_key_version, CryptoKey, CryptoKeyVersion, KeyRing,
    ListCryptoKeyVersionsResponse, ListCryptoKeysResponse, ListKeyRingsResponse,
};
use serde_json::Value;

use crate::core::{
    apply_mask, merge_edit, now_timestamp, ok, parse_strict, split_path, to_json, under, ApiError,
    Reply, Request,
};
use crate::policy::Policies;
use crate::server::State;

/// Rings and keys by full name, and key policies.
#[derive(Debug, Default)]
pub struct Store {
    rings: BTreeMap<String, KeyRing>,
    keys: BTreeMap<String, CryptoKey>,
    policies: Policies,
}

fn valid_kms_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn id_param<'a>(req: &'a Request, key: &str) -> Result<&'a str, ApiError> {
    let id = req.q(key).unwrap_or_default();
    if !valid_kms_id(id) {
        return Err(ApiError::invalid(format!(
            "{key} \"{id}\" must match [a-zA-Z0-9_-]{{1,63}}."
        )));
    }
    Ok(id)
}

/// The rotation period and next rotation time rules, checked on the key's JSON.
fn check_rotation(key: &Value) -> Result<(), ApiError> {
    let Some(period) = key["rotationPeriod"].as_str() else {
        return Ok(());
    };
    let secs: f64 = period
        .strip_suffix('s')
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::invalid(format!("Invalid rotation_period \"{period}\".")))?;
    if secs < 86400.0 {
        return Err(ApiError::invalid(
            "The rotation_period must be at least 86400s (1 day).",
        ));
    }
    if key["nextRotationTime"].is_null() {
        return Err(ApiError::invalid(
            "next_rotation_time must be set when rotation_period is set.",
        ));
    }
    Ok(())
}

/// Serves a request on the Cloud KMS listener.
pub fn handle(st: &mut State, req: &Request) -> Reply {
    let (seg, verb) = split_path(&req.path, "v1")
        .ok_or_else(|| ApiError::not_found(format!("no such path {}", req.path)))?;
    if seg.len() < 5 || seg[0] != "projects" || seg[2] != "locations" || seg[4] != "keyRings" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    st.check_project(seg[1])?;
    let ring_parent = seg[..4].join("/");
    let name = seg.join("/");
    let m = req.method.as_str();
    let kms = &mut st.kms;
    match (&seg[5..], verb, m) {
        (_, Some("getIamPolicy"), "GET") | (_, Some("getIamPolicy"), "POST") => {
            kms.exists(&name)?;
            ok(&kms.policies.get(&name))
        }
        (_, Some("setIamPolicy"), "POST") => {
            kms.exists(&name)?;
            let r: SetIamPolicyRequest = req.json()?;
            ok(&kms.policies.set(&name, r)?)
        }
        ([], None, "POST") => {
            let id = id_param(req, "keyRingId")?;
            let mut ring: KeyRing = req.json()?;
            ring.name = format!("{ring_parent}/keyRings/{id}");
            if kms.rings.contains_key(&ring.name) {
                return Err(ApiError::already_exists(format!(
                    "KeyRing {} already exists.",
                    ring.name
                )));
            }
            ring.create_time = Some(now_timestamp());
            kms.rings.insert(ring.name.clone(), ring.clone());
            ok(&ring)
        }
        ([], None, "GET") => {
            let mut resp = ListKeyRingsResponse::default();
            resp.key_rings = under(&kms.rings, &format!("{ring_parent}/"));
            resp.total_size = resp.key_rings.len() as i32;
            ok(&resp)
        }
        ([_], None, "GET") => ok(kms.ring(&name)?),
        ([_, "cryptoKeys"], None, "POST") => {
            kms.ring(&seg[..6].join("/"))?;
            let id = id_param(req, "cryptoKeyId")?;
            let mut key: CryptoKey = req.json()?;
            key.name = format!("{name}/{id}");
            if kms.keys.contains_key(&key.name) {
                return Err(ApiError::already_exists(format!(
                    "CryptoKey {} already exists.",
                    key.name
                )));
            }
            check_rotation(&to_json(&key))?;
            if key.purpose == crypto_key::CryptoKeyPurpose::Unspecified {
                key.purpose = crypto_key::CryptoKeyPurpose::EncryptDecrypt;
            }
            let now = now_timestamp();
            key.create_time = Some(now);
            let mut version = CryptoKeyVersion::default();
            version.name = format!("{}/cryptoKeyVersions/1", key.name);
            version.state = crypto_key_version::CryptoKeyVersionState::Enabled;
            version.algorithm = key
                .version_template
                .as_ref()
                .map(|t| t.algorithm.clone())
                .filter(|a| *a != crypto_key_version::CryptoKeyVersionAlgorithm::Unspecified)
                .unwrap_or(
                    crypto_key_version::CryptoKeyVersionAlgorithm::GoogleSymmetricEncryption,
                );
            version.create_time = Some(now);
            key.primary = Some(version);
            kms.keys.insert(key.name.clone(), key.clone());
            ok(&key)
        }
        ([_, "cryptoKeys"], None, "GET") => {
            let mut resp = ListCryptoKeysResponse::default();
            resp.crypto_keys = under(&kms.keys, &format!("{name}/"));
            resp.total_size = resp.crypto_keys.len() as i32;
            ok(&resp)
        }
        ([_, "cryptoKeys", _], None, "GET") => ok(kms.key(&name)?),
        ([_, "cryptoKeys", _, "cryptoKeyVersions"], None, "GET") => {
            let key = kms.key(&seg[..8].join("/"))?;
            let mut resp = ListCryptoKeyVersionsResponse::default();
            resp.crypto_key_versions = key.primary.iter().cloned().collect();
            resp.total_size = resp.crypto_key_versions.len() as i32;
            ok(&resp)
        }
        ([_, "cryptoKeys", _, "cryptoKeyVersions", _], None, "GET") => {
            ok(&kms.version(&seg[..8].join("/"), &name)?.clone())
        }
        ([_, "cryptoKeys", _, "cryptoKeyVersions", _], Some("destroy"), "POST") => {
            use crypto_key_version::CryptoKeyVersionState as S;
            let key = kms.key(&seg[..8].join("/"))?;
            let wait = key
                .destroy_scheduled_duration
                .map(|d| d.seconds())
                .unwrap_or(30 * 86400);
            let v = kms.version(&seg[..8].join("/"), &name)?;
            if matches!(v.state, S::DestroyScheduled | S::Destroyed) {
                return Err(ApiError::failed_precondition(format!(
                    "The request cannot be fulfilled. CryptoKeyVersion {name} is not in state ENABLED or DISABLED."
                )));
            }
            let now = now_timestamp();
            let key = kms
                .keys
                .get_mut(&seg[..8].join("/"))
                .expect("checked above");
            let v = key.primary.as_mut().expect("checked above");
            v.state = S::DestroyScheduled;
            v.destroy_time = Some(google_cloud_wkt::Timestamp::clamp(now.seconds() + wait, 0));
            ok(&v.clone())
        }
        ([_, "cryptoKeys", _], None, "PATCH") => {
            let mask = req.update_mask();
            if mask.is_empty() {
                return Err(ApiError::invalid("The update_mask is required."));
            }
            let patch: CryptoKey = req.json()?;
            let mut v = to_json(kms.key(&name)?);
            apply_mask(&mut v, &to_json(&patch), &mask);
            check_rotation(&v)?;
            let key: CryptoKey = parse_strict(v)?;
            kms.keys.insert(name, key.clone());
            ok(&key)
        }
        _ => Err(ApiError::not_found(format!(
            "no such method {m} {}",
            req.path
        ))),
    }
}

impl Store {
    fn ring(&self, name: &str) -> Result<&KeyRing, ApiError> {
        self.rings
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("KeyRing {name} not found.")))
    }
    fn key(&self, name: &str) -> Result<&CryptoKey, ApiError> {
        self.keys
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("CryptoKey {name} not found.")))
    }
    /// Version `name` of key `key` (only the first version exists here).
    fn version(&self, key: &str, name: &str) -> Result<&CryptoKeyVersion, ApiError> {
        self.key(key)?
            .primary
            .as_ref()
            .filter(|v| v.name == name)
            .ok_or_else(|| ApiError::not_found(format!("CryptoKeyVersion {name} not found.")))
    }
    fn exists(&self, name: &str) -> Result<(), ApiError> {
        if self.rings.contains_key(name) || self.keys.contains_key(name) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("{name} not found.")))
        }
    }
}

/// A hand change to a crypto key (its full name) or, with a `:iamPolicy` suffix, to the
/// policy of a ring or key.
pub fn edit(st: &mut State, name: &str, patch: &Value) -> Result<Value, ApiError> {
    if let Some(res) = name.strip_suffix(":iamPolicy") {
        st.kms.exists(res)?;
        return st.kms.policies.edit(res, patch);
    }
    let key = st
        .kms
        .keys
        .get_mut(name)
        .ok_or_else(|| ApiError::not_found(format!("CryptoKey {name} not found.")))?;
    merge_edit(key, patch)
}

//! OAuth 2 tokens (`oauth2.googleapis.com/token`), what a token is
//! (`oauth2.googleapis.com/tokeninfo`) and service-account impersonation
//! (`iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{sa}:generateAccessToken`).
//!
//! Kept from the real services: the refresh-token grant of an `authorized_user` credentials
//! file (JSON, as google-cloud-auth sends it, or a form) answers `access_token`,
//! `expires_in`, `token_type`; a wrong client or refresh token is `400 invalid_grant` in
//! OAuth's own error shape. `generateAccessToken` needs a bearer token this server minted, a
//! service account that exists (404 otherwise) and either the test user (who owns every
//! project here) or `roles/iam.serviceAccountTokenCreator` for the caller in the service
//! account's policy (403 naming `iam.serviceAccounts.getAccessToken` otherwise); it answers
//! `accessToken` and `expireTime` for the asked `lifetime`. Every minted token is recorded
//! with its principal, so the request log shows who called.
//!
//! `GET /tokeninfo?access_token=TOKEN` (or a form `POST` of `access_token`) answers as Google's
//! does for an access token: `email` (the principal without its `user:` /
//! `serviceAccount:` prefix), `email_verified`, `sub` (a stable numeric id of the principal),
//! `azp` / `aud`, `scope`, `exp` (epoch seconds, as a string) and `expires_in`; a token this
//! server did not mint is `400 invalid_token` "Invalid Value". It needs no bearer token: it is
//! how a token's receiver (the test kube-apiserver's authentication webhook,
//! `scripts/eks-authenticator.py`) learns whose token it holds, as GKE's authenticator does.
//!
//! Not kept: token expiry (tokens stay valid for the process's life; `exp` is what the token
//! endpoint promised), scopes, delegation chains, JWT-bearer and external-account grants, ID
//! tokens.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::core::{new_id, rfc3339, ApiError, Reply, Request, Response};
use crate::server::{percent_decode, State};

/// The OAuth client id of the test server's `authorized_user` credentials.
pub const CLIENT_ID: &str = "bmac-test-client.apps.googleusercontent.com";
/// Its client secret.
pub const CLIENT_SECRET: &str = "bmac-test-client-secret";
/// Its refresh token.
pub const REFRESH_TOKEN: &str = "bmac-test-refresh-token";
/// The user those credentials belong to (an owner of every project here).
pub const USER: &str = "user:bmac-test@example.com";

/// How long a token of the refresh-token grant is said to last.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// The scope every token is said to have.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// One minted token.
#[derive(Debug)]
struct Minted {
    /// `user:…` / `serviceAccount:…`.
    principal: String,
    /// The expiry the token's issuer stated (not enforced).
    expires: SystemTime,
}

/// Minted tokens and their principals.
#[derive(Debug, Default)]
pub struct Store {
    tokens: BTreeMap<String, Minted>,
}

impl Store {
    /// The principal (`user:…` / `serviceAccount:…`) a token was minted for.
    pub fn principal(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(|m| m.principal.as_str())
    }

    /// The tokens as JSON (`/_bmac/tokens`).
    pub fn list(&self) -> Value {
        Value::Array(
            self.tokens
                .iter()
                .map(|(t, m)| json!({"token": t, "principal": m.principal}))
                .collect(),
        )
    }

    fn mint(&mut self, principal: &str, lifetime: Duration) -> String {
        let token = format!("ya29.bmac-{}", new_id());
        let minted = Minted {
            principal: principal.to_string(),
            expires: SystemTime::now() + lifetime,
        };
        self.tokens.insert(token.clone(), minted);
        token
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    grant_type: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
}

fn oauth_error(error: &str, description: &str) -> Reply {
    Ok(Response {
        status: 400,
        body: json!({"error": error, "error_description": description}),
    })
}

/// A form-encoded body as a JSON object of strings.
fn form(body: &[u8]) -> serde_json::Map<String, Value> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let value = Value::String(percent_decode(v, true));
            (percent_decode(k, true), value)
        })
        .collect()
}

/// The OAuth listener: `POST /token` and `/tokeninfo`.
pub fn handle_token(st: &mut State, req: &Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/token") => refresh(st, req),
        ("GET" | "POST", "/tokeninfo") => token_info(st, req),
        _ => Err(ApiError::not_found(format!("no such path {}", req.path))),
    }
}

/// The refresh-token grant.
fn refresh(st: &mut State, req: &Request) -> Reply {
    let parsed: Result<RefreshRequest, String> = if req.body.first() == Some(&b'{') {
        serde_json::from_slice(&req.body).map_err(|e| e.to_string())
    } else {
        serde_json::from_value(Value::Object(form(&req.body))).map_err(|e| e.to_string())
    };
    let r = match parsed {
        Ok(r) => r,
        Err(e) => return oauth_error("invalid_request", &e),
    };
    if r.grant_type != "refresh_token" {
        return oauth_error("unsupported_grant_type", "Invalid grant_type.");
    }
    if r.client_id != CLIENT_ID || r.client_secret != CLIENT_SECRET {
        return oauth_error("invalid_client", "The OAuth client was not found.");
    }
    if r.refresh_token != REFRESH_TOKEN {
        return oauth_error("invalid_grant", "Bad Request");
    }
    let token = st.oauth.mint(USER, TOKEN_LIFETIME);
    Ok(Response {
        status: 200,
        body: json!({
            "access_token": token,
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "token_type": "Bearer",
            "scope": SCOPE,
        }),
    })
}

/// A stable numeric id for a principal (Google's `sub` is a decimal number): FNV-1a of its
/// name, as 21 digits like Google's.
fn subject(principal: &str) -> String {
    let hash = principal.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("1{:020}", hash)
}

/// `tokeninfo` for an access token (see the module docs).
fn token_info(st: &State, req: &Request) -> Reply {
    let posted;
    let token = match req.q("access_token") {
        Some(t) => Some(t),
        None => {
            posted = form(&req.body);
            posted.get("access_token").and_then(Value::as_str)
        }
    };
    let Some(minted) = token.and_then(|t| st.oauth.tokens.get(t)) else {
        return oauth_error("invalid_token", "Invalid Value");
    };
    let principal = minted.principal.as_str();
    let email = principal
        .split_once(':')
        .map_or(principal, |(_, email)| email);
    let sub = subject(principal);
    let client = if principal == USER { CLIENT_ID } else { &sub };
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let left = minted
        .expires
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs());
    let mut body = json!({
        "azp": client,
        "aud": client,
        "sub": sub,
        "scope": SCOPE,
        "exp": epoch(minted.expires).to_string(),
        "expires_in": left.to_string(),
        "email": email,
        "email_verified": "true",
    });
    if principal == USER {
        body["access_type"] = json!("offline");
    }
    Ok(Response { status: 200, body })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GenerateAccessTokenRequest {
    #[serde(default)]
    delegates: Vec<String>,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    lifetime: Option<String>,
}

/// `generateAccessToken` on the IAM credentials listener.
pub fn handle_iamcredentials(st: &mut State, req: &Request, principal: Option<&str>) -> Reply {
    let target = req
        .path
        .strip_prefix("/v1/projects/-/serviceAccounts/")
        .and_then(|s| s.strip_suffix(":generateAccessToken"))
        .filter(|_| req.method == "POST")
        .ok_or_else(|| {
            ApiError::not_found(format!("no such method {} {}", req.method, req.path))
        })?;
    let caller = principal.ok_or_else(|| {
        ApiError::unauthenticated("Request had invalid authentication credentials.")
    })?;
    let r: GenerateAccessTokenRequest = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))?;
    let email = st
        .iam
        .email_of(target)
        .ok_or_else(|| ApiError::not_found(format!("Requested entity was not found: {target}.")))?;
    let resource = crate::iam::resource_name(&email);
    let allowed = caller == USER
        || st.iam.policies.get(&resource).bindings.iter().any(|b| {
            b.role == "roles/iam.serviceAccountTokenCreator"
                && b.members.iter().any(|m| m == caller)
        });
    if !allowed {
        return Err(ApiError::permission_denied(format!(
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource {resource} (or it may not exist)."
        )));
    }
    let secs = r
        .lifetime
        .as_deref()
        .and_then(|l| l.strip_suffix('s'))
        .and_then(|l| l.parse::<f64>().ok())
        .unwrap_or(3600.0);
    if !(0.0..=43200.0).contains(&secs) {
        return Err(ApiError::invalid("lifetime must be at most 43200s."));
    }
    let token = st.oauth.mint(
        &format!("serviceAccount:{email}"),
        Duration::from_secs_f64(secs),
    );
    Ok(Response {
        status: 200,
        body: json!({
            "accessToken": token,
            "expireTime": rfc3339(SystemTime::now() + Duration::from_secs_f64(secs)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{shared, Config};

    fn request(method: &str, path: &str, query: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            bearer: None,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    fn state() -> crate::server::Shared {
        shared(Config {
            delay: Duration::ZERO,
            cluster_endpoint: None,
            cluster_ca: None,
            allow_anonymous: false,
            projects: Vec::new(),
        })
    }

    #[test]
    fn tokeninfo_names_the_principal_of_a_minted_token_and_refuses_others() {
        let state = state();
        let mut st = state.lock().unwrap();
        let grant = format!(
            "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH_TOKEN}"
        );
        let minted = handle_token(&mut st, &request("POST", "/token", &[], &grant)).unwrap();
        let token = minted.body["access_token"].as_str().unwrap().to_owned();

        let info = handle_token(
            &mut st,
            &request("GET", "/tokeninfo", &[("access_token", &token)], ""),
        )
        .unwrap();
        assert_eq!(info.status, 200);
        assert_eq!(info.body["email"], "bmac-test@example.com");
        assert_eq!(info.body["email_verified"], "true");
        assert_eq!(info.body["aud"], CLIENT_ID);
        let left: u64 = info.body["expires_in"].as_str().unwrap().parse().unwrap();
        assert!((3500..=3599).contains(&left), "{left}");
        assert_eq!(info.body["sub"].as_str().unwrap().len(), 21);

        let posted = handle_token(
            &mut st,
            &request("POST", "/tokeninfo", &[], &format!("access_token={token}")),
        )
        .unwrap();
        assert_eq!(posted.body, info.body, "a form POST answers the same");

        let unknown = handle_token(
            &mut st,
            &request("GET", "/tokeninfo", &[("access_token", "ya29.forged")], ""),
        )
        .unwrap();
        assert_eq!(unknown.status, 400);
        assert_eq!(unknown.body["error"], "invalid_token");
        let none = handle_token(&mut st, &request("GET", "/tokeninfo", &[], "")).unwrap();
        assert_eq!(none.status, 400);
    }

    #[test]
    fn a_service_account_token_is_its_account_email() {
        let state = state();
        let mut st = state.lock().unwrap();
        let token = st.oauth.mint(
            "serviceAccount:nodes@acme.iam.gserviceaccount.com",
            Duration::from_secs(600),
        );
        let info = handle_token(
            &mut st,
            &request("GET", "/tokeninfo", &[("access_token", &token)], ""),
        )
        .unwrap();
        assert_eq!(info.body["email"], "nodes@acme.iam.gserviceaccount.com");
        assert_eq!(info.body["aud"], info.body["sub"]);
        assert!(info.body.get("access_type").is_none());
        assert_ne!(info.body["sub"], subject(USER));
    }
}

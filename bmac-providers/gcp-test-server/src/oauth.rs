//! OAuth 2 tokens (`oauth2.googleapis.com/token`) and service-account impersonation
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
//! with its principal, so the request log shows who called. Not kept: token expiry (tokens
//! stay valid for the process's life), scopes, delegation chains, JWT-bearer and
//! external-account grants, ID tokens.

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

/// Minted tokens and their principals.
#[derive(Debug, Default)]
pub struct Store {
    tokens: BTreeMap<String, String>,
}

impl Store {
    /// The principal (`user:…` / `serviceAccount:…`) a token was minted for.
    pub fn principal(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    /// The tokens as JSON (`/_bmac/tokens`).
    pub fn list(&self) -> Value {
        Value::Array(
            self.tokens
                .iter()
                .map(|(t, p)| json!({"token": t, "principal": p}))
                .collect(),
        )
    }

    fn mint(&mut self, principal: &str) -> String {
        let token = format!("ya29.bmac-{}", new_id());
        self.tokens.insert(token.clone(), principal.to_string());
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

/// `POST /token` on the OAuth listener.
pub fn handle_token(st: &mut State, req: &Request) -> Reply {
    if req.method != "POST" || req.path != "/token" {
        return Err(ApiError::not_found(format!("no such path {}", req.path)));
    }
    let parsed: Result<RefreshRequest, String> = if req.body.first() == Some(&b'{') {
        serde_json::from_slice(&req.body).map_err(|e| e.to_string())
    } else {
        let form: serde_json::Map<String, Value> = String::from_utf8_lossy(&req.body)
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                let value = Value::String(percent_decode(v, true));
                (percent_decode(k, true), value)
            })
            .collect();
        serde_json::from_value(Value::Object(form)).map_err(|e| e.to_string())
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
    let token = st.oauth.mint(USER);
    Ok(Response {
        status: 200,
        body: json!({
            "access_token": token,
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
        }),
    })
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
    let token = st.oauth.mint(&format!("serviceAccount:{email}"));
    Ok(Response {
        status: 200,
        body: json!({
            "accessToken": token,
            "expireTime": rfc3339(SystemTime::now() + Duration::from_secs_f64(secs)),
        }),
    })
}

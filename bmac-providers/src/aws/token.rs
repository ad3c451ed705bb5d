//! EKS bearer tokens, minted as `aws eks get-token` and aws-iam-authenticator mint them, and
//! the [`EksMinter`] that hands them to the kube provider for in-cluster steps.
//!
//! A token is a presigned STS `GetCallerIdentity` request: `GET
//! https://sts.<region>.<suffix>/?Action=GetCallerIdentity&Version=2011-06-15` signed with
//! SigV4 in the query string (service `sts`, `X-Amz-Expires=60`), with the header
//! `x-k8s-aws-id: <cluster>` among the signed headers so the token is good for that cluster
//! only. The token is `k8s-aws-v1.` followed by the presigned URL in unpadded base64url. The
//! API server accepts it for 15 minutes from its signing time; the minter reports it as
//! expiring after 14 (what `aws eks get-token` puts in its `ExecCredential`), so the kube
//! provider's cache mints a new one before the server would refuse it.
//!
//! Tokens are secrets: the minter keeps none (the kube provider's cache holds the current one
//! in memory), and its errors never contain one. The credentials come from the provider's
//! credential chain at mint time, so rotated or refreshed credentials are picked up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use bmac_core::ProviderError;
use bmac_steps::CredentialSource;

use super::clients::Aws;
use crate::kube::{MintedToken, TokenMinter};

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header naming the cluster a token is for.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL says it is valid (the authenticator's own value).
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// How long a token is used before a new one is minted.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// The STS endpoint of `region`, in its partition (China regions end in `.com.cn`).
pub fn sts_url(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{suffix}/?Action=GetCallerIdentity&Version=2011-06-15")
}

/// The bearer token for `cluster` in `region`, signed with `credentials` at `now`.
pub fn token(
    credentials: Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, ProviderError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ProviderError::permanent(format!(
            "cannot presign the EKS token for cluster {cluster}: {what}: {e}"
        ))
        .with_code("bmac::aws::token")
    };
    let identity = Identity::from(credentials);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| fail("signing parameters", &e))?
        .into();
    let url = sts_url(region);
    let signable = SignableRequest::new(
        "GET",
        &url,
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| fail("request", &e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| fail("signature", &e))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .body(())
        .map_err(|e| fail("request", &e))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
    ))
}

/// Mints EKS tokens for [`CredentialSource::Eks`] with the provider's credential chain.
pub struct EksMinter {
    aws: Arc<Aws>,
}

impl EksMinter {
    /// A minter using `aws`'s credentials.
    pub fn new(aws: Arc<Aws>) -> Self {
        EksMinter { aws }
    }
}

#[async_trait]
impl TokenMinter for EksMinter {
    async fn mint(&self, source: &CredentialSource) -> Result<MintedToken, ProviderError> {
        let CredentialSource::Eks { cluster, region } = source else {
            return Err(ProviderError::permanent(format!(
                "the EKS token minter cannot mint for a {} credential source",
                source.type_name()
            )));
        };
        let clients = self.aws.clients().await?;
        let provider = clients.sdk.credentials_provider().ok_or_else(|| {
            ProviderError::permanent("no AWS credentials provider is configured")
                .with_code("bmac::aws::no_credentials")
        })?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            ProviderError::permanent(format!(
                "no AWS credentials to mint an EKS token for cluster {cluster}: {e}"
            ))
            .with_code("bmac::aws::no_credentials")
        })?;
        let now = SystemTime::now();
        let token = token(credentials, region, cluster, now)?;
        Ok(MintedToken::new(token).expiring_at(now + TOKEN_LIFETIME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at_20240102() -> SystemTime {
        // 2024-01-02T03:04:05Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645)
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The SigV4 query-string signature, computed from the specification's own steps
    /// (canonical request, string to sign, derived key), independently of aws-sigv4.
    fn expected_signature(region: &str, cluster: &str) -> String {
        let scope = format!("20240102/{region}/sts/aws4_request");
        let credential = format!("{KEY_ID}%2F{}", scope.replace('/', "%2F"));
        let query = format!(
            "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={credential}&X-Amz-Date=20240102T030405Z&X-Amz-Expires=60\
             &X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"
        );
        let canonical = format!(
            "GET\n/\n{query}\nhost:sts.{region}.amazonaws.com\nx-k8s-aws-id:{cluster}\n\n\
             host;x-k8s-aws-id\n{}",
            hex(&Sha256::digest(b""))
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20240102T030405Z\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let k = hmac(format!("AWS4{SECRET}").as_bytes(), "20240102");
        let k = hmac(&k, region);
        let k = hmac(&k, "sts");
        let k = hmac(&k, "aws4_request");
        hex(&hmac(&k, &to_sign))
    }

    fn decode(token: &str) -> String {
        let body = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        assert!(!body.contains('='), "unpadded");
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_for_the_cluster() {
        let creds = Credentials::new(KEY_ID, SECRET, None, None, "test");
        let token = token(creds, "eu-west-1", "prod", at_20240102()).unwrap();
        let url = decode(&token);
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20240102T030405Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
        ] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        let signature = url.split("X-Amz-Signature=").nth(1).expect("signature");
        assert_eq!(signature, expected_signature("eu-west-1", "prod"));
    }

    #[test]
    fn the_token_is_bound_to_its_cluster_region_and_session() {
        let creds = || Credentials::new(KEY_ID, SECRET, None, None, "test");
        let a = token(creds(), "eu-west-1", "prod", at_20240102()).unwrap();
        let b = token(creds(), "eu-west-1", "staging", at_20240102()).unwrap();
        let c = token(creds(), "us-east-1", "prod", at_20240102()).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        let signature = |t: &str| {
            decode(t)
                .split("X-Amz-Signature=")
                .nth(1)
                .unwrap()
                .to_owned()
        };
        assert_eq!(signature(&b), expected_signature("eu-west-1", "staging"));
        assert_eq!(signature(&c), expected_signature("us-east-1", "prod"));
        let session = Credentials::new(KEY_ID, SECRET, Some("SESSION".into()), None, "test");
        let url = decode(&token(session, "eu-west-1", "prod", at_20240102()).unwrap());
        assert!(url.contains("X-Amz-Security-Token=SESSION"), "{url}");
        assert!(sts_url("cn-north-1").contains("sts.cn-north-1.amazonaws.com.cn"));
    }
}

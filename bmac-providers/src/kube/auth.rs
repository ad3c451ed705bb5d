//! Building a kube-rs [`Client`] for a [`ClusterAccess`]: the cluster part (endpoint, CA) always
//! comes from the access; the user part from its credentials.
//!
//! - A registered [`TokenMinter`] for the source's type wins: the client gets a request-stack
//!   step that asks the minter's [`TokenCache`] for every request's `Authorization` header.
//! - [`CredentialSource::Kubeconfig`]: the kubeconfig is read now and the context's *user* is
//!   handed to kube-rs as it is, so kube-rs does what it does for kubectl users: re-reads token
//!   files, and runs exec plugins again when their `expirationTimestamp` is a minute away.
//! - [`CredentialSource::Exec`]: the same, for a plugin named directly.
//! - `sim`, `eks`, `gke`, `aks` without a registered minter: a permanent error naming the
//!   missing minter.
//! - Static credentials: the token or client certificate as given.
//!
//! Exec plugins run non-interactively (`interactiveMode: Never`): stdin is closed and stderr is
//! captured, so a plugin that would prompt fails with its message instead of waiting on a
//! terminal bmac does not have; log in first (`aws sso login`, `kubelogin`'s token cache).
//! kube-rs runs a plugin while the client is built (a blocking call), so building happens on
//! the blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use bmac_core::ProviderError;
use bmac_steps::CredentialSource;
use kube::client::ClientBuilder;
use kube::config::{
    AuthInfo, Cluster, Context, ExecConfig, ExecInteractiveMode, KubeConfigOptions, Kubeconfig,
    NamedAuthInfo, NamedCluster, NamedContext,
};
use kube::Client;
use tower::buffer::BufferLayer;
use tower::filter::AsyncFilterLayer;

use super::access::{ClusterAccess, Credentials, StaticCredentials};
use super::error::describe_auth;
use super::kubeconfig;
use super::minter::{MintedAuth, TokenCache, TokenMinter};

/// Requests queued for a minted-token client (kube-rs's own client buffer is as large).
const BUFFER: usize = 1024;

/// A client for `access`, minting through `minters` where its source needs one.
pub(crate) async fn client(
    access: &ClusterAccess,
    minters: &HashMap<String, Arc<dyn TokenMinter>>,
) -> Result<Client, ProviderError> {
    let (user, minted) = match &access.credentials {
        Credentials::Static { secret, .. } => (static_user(secret), None),
        Credentials::Source(source) => match minters.get(source.type_name()) {
            Some(minter) => {
                let cache = TokenCache::new(minter.clone(), source.clone());
                (AuthInfo::default(), Some(MintedAuth(Arc::new(cache))))
            }
            None => (source_user(source)?, None),
        },
    };
    let command = user.exec.as_ref().and_then(|e| e.command.clone());
    let hint = user.exec.as_ref().and_then(|e| e.install_hint.clone());
    let config = config_with(access, user).await?;
    let built = tokio::task::spawn_blocking(move || {
        let builder = ClientBuilder::try_from(config)?;
        Ok::<_, kube::Error>(match minted {
            // The filter waits on a mint before calling on: it needs a clonable inner service.
            Some(auth) => builder
                .with_layer(&BufferLayer::new(BUFFER))
                .with_layer(&AsyncFilterLayer::new(auth))
                .build(),
            None => builder.build(),
        })
    })
    .await
    .map_err(|e| invalid(access, &e))?;
    built.map_err(|e| match e {
        kube::Error::Auth(auth) => {
            let mut said = describe_auth(&auth, command.as_deref());
            if let (Some(hint), kube::client::AuthError::AuthExecStart(_)) = (&hint, &auth) {
                said = format!("{said} ({hint})");
            }
            invalid(access, &said)
        }
        other => invalid(access, &other),
    })
}

/// The kube-rs configuration for `access` when no token minter is registered: the user comes
/// from its static credentials, kubeconfig context or exec plugin (a plugin runs when a client
/// is built from the configuration, not now); a source only a minter serves is an error
/// naming the missing minter.
pub(crate) async fn config(access: &ClusterAccess) -> Result<kube::Config, ProviderError> {
    let user = match &access.credentials {
        Credentials::Static { secret, .. } => static_user(secret),
        Credentials::Source(source) => source_user(source)?,
    };
    config_with(access, user).await
}

/// The configuration for the access's cluster, authenticating as `user`.
async fn config_with(
    access: &ClusterAccess,
    user: AuthInfo,
) -> Result<kube::Config, ProviderError> {
    kube::Config::from_custom_kubeconfig(kubeconfig_for(access, user), &options())
        .await
        .map_err(|e| invalid(access, &e))
}

/// A client or configuration for `access` cannot be made: permanent, naming the source.
fn invalid(access: &ClusterAccess, e: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::permanent(format!(
        "cannot build a Kubernetes client for {} with {}: {e}",
        access.endpoint,
        access.credentials.describe()
    ))
}

fn options() -> KubeConfigOptions {
    KubeConfigOptions {
        context: Some("bmac".into()),
        ..KubeConfigOptions::default()
    }
}

/// A one-context kubeconfig: the access's cluster and `user`.
fn kubeconfig_for(access: &ClusterAccess, user: AuthInfo) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(access.endpoint.clone()),
        certificate_authority_data: (!access.ca_data.is_empty()).then(|| access.ca_data.clone()),
        ..Cluster::default()
    };
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: "bmac".into(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "bmac".into(),
            auth_info: Some(user),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: "bmac".into(),
            context: Some(Context {
                cluster: "bmac".into(),
                user: Some("bmac".into()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some("bmac".into()),
        ..Kubeconfig::default()
    }
}

fn static_user(secret: &StaticCredentials) -> AuthInfo {
    match secret {
        StaticCredentials::Token(token) => AuthInfo {
            token: Some(token.clone()),
            ..AuthInfo::default()
        },
        StaticCredentials::ClientCertificate {
            certificate_data,
            key_data,
        } => AuthInfo {
            client_certificate_data: Some(certificate_data.clone()),
            client_key_data: Some(key_data.clone()),
            ..AuthInfo::default()
        },
    }
}

/// The kube-rs user for a source the kube provider mints itself.
fn source_user(source: &CredentialSource) -> Result<AuthInfo, ProviderError> {
    let mut user = match source {
        CredentialSource::Kubeconfig { path, context } => {
            kubeconfig::user(&kubeconfig::read(path.as_deref())?, context)?.clone()
        }
        CredentialSource::Exec {
            command,
            args,
            env,
            api_version,
            provide_cluster_info,
            install_hint,
        } => AuthInfo {
            exec: Some(ExecConfig {
                api_version: Some(api_version.clone()),
                command: Some(command.clone()),
                args: Some(args.clone()),
                env: Some(
                    env.iter()
                        .map(|v| {
                            HashMap::from([
                                ("name".to_owned(), v.name.clone()),
                                ("value".to_owned(), v.value.clone()),
                            ])
                        })
                        .collect(),
                ),
                install_hint: install_hint.clone(),
                provide_cluster_info: *provide_cluster_info,
                ..ExecConfig::default()
            }),
            ..AuthInfo::default()
        },
        other => return Err(no_minter(other)),
    };
    if let Some(exec) = user.exec.as_mut() {
        exec.interactive_mode = Some(ExecInteractiveMode::Never);
    }
    Ok(user)
}

fn no_minter(source: &CredentialSource) -> ProviderError {
    let kind = source.type_name();
    let who = match kind {
        "sim" => "the simulated cloud's provider",
        "eks" => "the AWS provider",
        "gke" => "the GCP provider",
        "aks" => "the Azure provider",
        _ => "the provider of that cloud",
    };
    ProviderError::permanent(format!(
        "the credentials are minted from {source}, and no token minter for source type \
         `{kind}` is registered with the kube provider: {who} mints them and registers one \
         with KubeProvider::with_minter(\"{kind}\", …); this bmac has none"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access(credentials: serde_json::Value) -> ClusterAccess {
        let mut inputs = bmac_core::Inputs::default();
        for (name, value) in [
            ("endpoint", json!("https://127.0.0.1:1")),
            ("ca_data", json!("")),
            ("credentials", credentials),
        ] {
            inputs
                .0
                .insert(name.into(), bmac_core::OutputValue::Plain(value));
        }
        ClusterAccess::from_inputs(&inputs).expect("access")
    }

    /// The error building a client for `access` without minters.
    async fn build_error(access: &ClusterAccess) -> ProviderError {
        match client(access, &HashMap::new()).await {
            Ok(_) => panic!("a client was built for {}", access.credentials.describe()),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn cloud_sources_without_a_minter_name_the_missing_minter() {
        let eks = access(json!({"type": "eks", "cluster": "shop", "region": "eu-west-1"}));
        let err = client(&eks, &HashMap::new())
            .await
            .err()
            .expect("no minter");
        assert!(!err.is_retryable());
        assert!(
            err.message
                .contains("no token minter for source type `eks`")
                && err.message.contains("EKS cluster \"shop\" in eu-west-1")
                && err.message.contains("the AWS provider"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_failing_exec_plugin_is_reported_without_what_it_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("plugin.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho '{\"status\": {\"token\": \"leaked-t0k3n\"}}'\n\
             echo 'not logged in: run login first' >&2\nexit 3\n",
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let exec = access(json!({"type": "exec", "command": script,
            "api_version": "client.authentication.k8s.io/v1beta1"}));
        let err = build_error(&exec).await;
        assert!(
            err.message.contains("exit status: 3")
                && err.message.contains("not logged in: run login first"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("leaked-t0k3n"), "{}", err.message);

        let missing = access(json!({"type": "exec", "command": dir.path().join("nope"),
            "api_version": "client.authentication.k8s.io/v1", "install_hint": "apt install nope"}));
        let err = build_error(&missing).await;
        assert!(
            err.message.contains("cannot run the exec plugin")
                && err.message.contains("(apt install nope)"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_configuration_is_made_from_a_cluster_steps_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\n\
             clusters: [{name: c, cluster: {server: \"https://10.0.0.1:6443\"}}]\n\
             users: [{name: u, user: {token: t0k3n}}]\n\
             contexts: [{name: prod, context: {cluster: c, user: u}}]\n",
        )
        .expect("kubeconfig");
        let cluster = |credentials: bmac_core::OutputValue| {
            let mut outputs = bmac_core::Outputs::new()
                .with("endpoint", "https://127.0.0.1:6443")
                .with("ca_data", "");
            outputs.insert("credentials", credentials);
            outputs
        };
        let source = json!({"type": "kubeconfig", "path": path, "context": "prod"});
        let config = crate::kube::client_config(&cluster(bmac_core::OutputValue::Plain(source)))
            .await
            .expect("a configuration");
        // The cluster is the step's endpoint; only the user comes from the context.
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(config.auth_info.token.is_some());

        // The simulated cloud's static token, as state keeps it: by digest only.
        let secret = bmac_core::OutputValue::sensitive(json!({"token": "simtok"})).redacted();
        let err = crate::kube::client_config(&cluster(secret))
            .await
            .expect_err("no token to use");
        assert!(
            err.message.contains("known only by its digest"),
            "{}",
            err.message
        );
        let eks = json!({"type": "eks", "cluster": "shop", "region": "eu-west-1"});
        let err = crate::kube::client_config(&cluster(bmac_core::OutputValue::Plain(eks)))
            .await
            .expect_err("no minter");
        assert!(err.message.contains("no token minter"), "{}", err.message);
    }
}

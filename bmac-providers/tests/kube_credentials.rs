//! Credentials as sources against a real kube-apiserver (see `kube_e2e.rs` for how to run): a
//! kubeconfig whose user is an exec plugin, an exec source named directly, and a registered
//! token minter whose first token the server rejects — re-minted once, and a permanent error
//! naming the source (never the token) when the second is rejected too.

#![cfg(feature = "kube")]

mod kube_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bmac_core::provider::Observed;
use bmac_core::{OutputValue, ProviderError};
use bmac_providers::kube::{KubeProvider, MintedToken, TokenMinter};
use bmac_steps::config::INPUT_CREDENTIALS;
use bmac_steps::{kinds, CredentialSource};
use kube_support::fixtures::namespace;
use kube_support::*;
use serde_json::json;

fn default_namespace() -> bmac_core::Step {
    in_cluster("ns.default", kinds::NAMESPACE, &namespace("default", &[]))
}

#[tokio::test]
async fn an_exec_plugin_user_authenticates_the_cluster_and_in_cluster_steps() {
    let Some(c) =
        connect("an_exec_plugin_user_authenticates_the_cluster_and_in_cluster_steps").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = ExecPlugin::new(dir.path(), &c.kubeconfig);
    let token = admin_token(&c.kubeconfig);

    let (run, outputs) = Run::new(plugin.kubeconfig_path(), EXEC_CONTEXT)
        .await
        .expect("the cluster step authenticates through the plugin");
    assert!(plugin.runs() >= 1, "the plugin ran");
    assert_eq!(
        outputs.get("credentials").and_then(|v| v.value()),
        Some(
            &json!({"type": "kubeconfig", "path": plugin.kubeconfig_path(),
                     "context": EXEC_CONTEXT})
        )
    );
    assert!(!format!("{outputs:?}").contains(&token));

    // The in-cluster step reuses the client: its token is valid for an hour, so the plugin is
    // not run again for every call.
    let runs = plugin.runs();
    for _ in 0..3 {
        assert!(matches!(
            run.observe(&default_namespace()).await.expect("observe"),
            Observed::Present { .. }
        ));
    }
    assert_eq!(plugin.runs(), runs, "a fresh token is not minted again");

    // Steps that start together in a fresh process wait for one client: the plugin runs as
    // often as for one step (kube-rs runs it more than once while building a client).
    let one = Run::with_inputs(KubeProvider::new(), run.inputs.clone());
    one.observe(&default_namespace()).await.expect("observe");
    let per_client = plugin.runs() - runs;
    let together = Run::with_inputs(KubeProvider::new(), run.inputs.clone());
    let step = default_namespace();
    let (a, b, c3, d) = tokio::join!(
        together.observe(&step),
        together.observe(&step),
        together.observe(&step),
        together.observe(&step)
    );
    for observed in [a, b, c3, d] {
        observed.expect("observe");
    }
    assert_eq!(
        plugin.runs() - runs,
        2 * per_client,
        "one client for four steps"
    );
    let runs = plugin.runs();

    // The same plugin named directly as an exec source.
    let mut inputs = run.inputs.clone();
    let source = CredentialSource::Exec {
        command: plugin.script.display().to_string(),
        args: Vec::new(),
        env: Vec::new(),
        api_version: "client.authentication.k8s.io/v1beta1".into(),
        provide_cluster_info: true,
        install_hint: None,
    };
    inputs.0.insert(
        INPUT_CREDENTIALS.into(),
        OutputValue::Plain(source.to_value()),
    );
    let direct = Run::with_inputs(KubeProvider::new(), inputs);
    assert!(matches!(
        direct
            .observe(&default_namespace())
            .await
            .expect("exec source"),
        Observed::Present { .. }
    ));
    assert!(plugin.runs() > runs, "the exec source ran the plugin");
}

/// Mints a rejected token for the first `bad` calls, then the admin token; counts its calls.
struct Minter {
    calls: AtomicUsize,
    bad: usize,
    good: String,
}

const BAD_TOKEN: &str = "bmac-test-rejected-token";

#[async_trait]
impl TokenMinter for Minter {
    async fn mint(&self, source: &CredentialSource) -> Result<MintedToken, ProviderError> {
        assert_eq!(source.type_name(), "eks");
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let token = if n < self.bad { BAD_TOKEN } else { &self.good };
        let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(900);
        Ok(MintedToken::new(token).expiring_at(expires))
    }
}

/// A minter giving `bad` rejected tokens before the test cluster's admin token.
fn counting(c: &TestCluster, bad: usize) -> Arc<Minter> {
    Arc::new(Minter {
        calls: AtomicUsize::new(0),
        bad,
        good: admin_token(&c.kubeconfig),
    })
}

/// A run on the test cluster whose credentials are an EKS source minted by `minter`.
async fn eks_run(c: &TestCluster, minter: Option<Arc<dyn TokenMinter>>) -> Run {
    let (admin, _) = Run::new(&c.kubeconfig, "bmac-admin")
        .await
        .expect("cluster");
    let mut inputs = admin.inputs.clone();
    let source = CredentialSource::Eks {
        cluster: "shop".into(),
        region: "eu-west-1".into(),
    };
    inputs.0.insert(
        INPUT_CREDENTIALS.into(),
        OutputValue::Plain(source.to_value()),
    );
    let provider = match minter {
        Some(minter) => KubeProvider::new().with_minter("eks", minter),
        None => KubeProvider::new(),
    };
    Run::with_inputs(provider, inputs)
}

#[tokio::test]
async fn a_rejected_minted_token_is_minted_again_once_and_then_cached() {
    let Some(c) = connect("a_rejected_minted_token_is_minted_again_once_and_then_cached").await
    else {
        return;
    };
    let minter = counting(&c, 1);
    let run = eks_run(&c, Some(minter.clone())).await;
    let observed = run
        .observe(&default_namespace())
        .await
        .expect("the second token is accepted");
    assert!(matches!(observed, Observed::Present { .. }));
    assert_eq!(
        minter.calls.load(Ordering::SeqCst),
        2,
        "minted, rejected, minted again"
    );
    for _ in 0..3 {
        run.observe(&default_namespace()).await.expect("observe");
    }
    assert_eq!(
        minter.calls.load(Ordering::SeqCst),
        2,
        "a token valid for 15 minutes is not minted again"
    );
}

#[tokio::test]
async fn a_token_rejected_twice_is_a_permanent_error_naming_the_source_not_the_token() {
    let Some(c) =
        connect("a_token_rejected_twice_is_a_permanent_error_naming_the_source_not_the_token")
            .await
    else {
        return;
    };
    let minter = counting(&c, usize::MAX);
    let run = eks_run(&c, Some(minter.clone())).await;
    let err = run
        .observe(&default_namespace())
        .await
        .expect_err("always rejected");
    assert!(!err.is_retryable(), "{}", err.message);
    assert_eq!(
        minter.calls.load(Ordering::SeqCst),
        2,
        "one retry, not more"
    );
    assert!(
        err.message.starts_with("step ns.default: cannot get ")
            && err.message.contains("401 Unauthorized")
            && err
                .message
                .contains("also after minting them again from EKS cluster \"shop\" in eu-west-1"),
        "{}",
        err.message
    );
    let chain = format!("{err:?}");
    assert!(
        !err.message.contains(BAD_TOKEN) && !chain.contains(BAD_TOKEN),
        "{chain}"
    );

    // Without the minter the source cannot be used at all: a clear error naming the minter.
    let err = eks_run(&c, None)
        .await
        .observe(&default_namespace())
        .await
        .expect_err("no minter");
    assert!(
        err.message
            .contains("no token minter for source type `eks` is registered"),
        "{}",
        err.message
    );
}

/// A minter whose token API fails.
struct Throttled;

#[async_trait]
impl TokenMinter for Throttled {
    async fn mint(&self, _: &CredentialSource) -> Result<MintedToken, ProviderError> {
        Err(ProviderError::retryable(
            "the token API is throttling requests",
        ))
    }
}

#[tokio::test]
async fn a_failing_minter_fails_the_step_with_its_own_class_and_words() {
    let Some(c) = connect("a_failing_minter_fails_the_step_with_its_own_class_and_words").await
    else {
        return;
    };
    let err = eks_run(&c, Some(Arc::new(Throttled)))
        .await
        .observe(&default_namespace())
        .await
        .expect_err("no token");
    assert!(
        err.is_retryable(),
        "the minter said retryable: {}",
        err.message
    );
    assert!(
        err.message.starts_with("step ns.default: cannot get ")
            && err
                .message
                .ends_with(": the token API is throttling requests"),
        "{}",
        err.message
    );
}

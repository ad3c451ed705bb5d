//! `Stack::kube_config` against a real kube-apiserver (see TEST-ENV.md; `scripts/kube-env.sh`
//! starts one and writes `$KUBECONFIG`): an existing cluster taken from a kubeconfig context
//! gives a configuration that reaches its API server, in a stack opened after the apply.
//!
//! Without `$KUBECONFIG` the test prints a notice and returns, unless `BMAC_E2E=1`, when it
//! fails instead of pretending to have checked anything.

#![cfg(feature = "kube")]

use bmac::prelude::*;
use bmac::steps::CredentialSource;

const SPEC: &str = r#"
[cluster]
name = "existing"
provider = "kube"
context = "bmac-admin"
"#;

fn stack(state: &std::path::Path) -> Stack {
    let spec = Spec::parse("bmac.toml", SPEC).expect("a valid spec");
    Stack::from_spec(spec, state, Options::new().state_dir(state)).expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_config_reaches_the_api_server_of_an_existing_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        assert!(
            std::env::var("BMAC_E2E").as_deref() != Ok("1"),
            "BMAC_E2E=1 but no $KUBECONFIG: start the server with scripts/kube-env.sh"
        );
        eprintln!("skipped: no $KUBECONFIG (scripts/kube-env.sh starts a kube-apiserver)");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let report = stack(state.path())
        .apply(ApplyOptions::new().allow_lint_errors(true))
        .await
        .expect("apply");
    assert!(report.is_success(), "{report:?}");

    // Another stack over the same state: what a later process would see.
    let stack = stack(state.path());
    let outputs = stack.outputs().await.expect("outputs");
    let cluster = outputs.cluster().expect("the cluster");
    assert!(
        matches!(&cluster.credentials, Some(CredentialSource::Kubeconfig { context, .. }) if context == "bmac-admin"),
        "{cluster:?}"
    );
    let config = stack.kube_config().await.expect("a configuration");
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        cluster.endpoint.trim_end_matches('/')
    );
    let client = bmac::kube::Client::try_from(config).expect("a client");
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");
}

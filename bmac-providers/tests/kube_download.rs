//! Bundles given by URL, against a local HTTPS server with a test CA (`kube_support/https.rs`,
//! 127.0.0.1 only) and the real kube-apiserver: downloaded and verified, then applied; used
//! from the cache on the next run with the server stopped; a wrong digest, a 404 or no server
//! without a cached copy refused with errors naming the URL and zero writes to the API server.
//!
//! The client trusts the test CA through [`BundleFetch::with_ca_file`] (on a user's machine,
//! `SSL_CERT_FILE` does the same for the platform roots).
//!
//! Run: `scripts/kube-env.sh start /tmp/k && . /tmp/k/env && BMAC_E2E=1 cargo test -p
//! bmac-providers --features kube --test kube_download`.

#![cfg(feature = "kube")]

mod kube_support;

use std::collections::HashMap;
use std::path::Path;

use bmac_providers::kube::{BundleFetch, KubeProvider};
use bmac_steps::bundle_cache::sha256_hex;
use bmac_steps::config::{Bundle, ManifestConfig};
use bmac_steps::{kinds, BundleCache};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube_support::https::FileServer;
use kube_support::releases::yaml;
use kube_support::*;
use serde_json::json;

fn url_step(id: &str, url: &str, sha256: &str, ns: &str) -> bmac_core::Step {
    let cfg = ManifestConfig {
        name: id.into(),
        objects: Vec::new(),
        bundle: Some(Bundle {
            source: url.into(),
            sha256: sha256.into(),
        }),
        namespace: Some(ns.into()),
    };
    in_cluster(&format!("manifest.{id}"), kinds::MANIFEST, &cfg)
}

fn provider(cache: &Path, ca: Option<&Path>) -> KubeProvider {
    let mut fetch = BundleFetch::new().with_cache(BundleCache::new(cache));
    if let Some(ca) = ca {
        fetch = fetch.with_ca_file(ca);
    }
    KubeProvider::new().with_bundles(fetch)
}

#[tokio::test]
async fn url_bundles_are_downloaded_verified_cached_and_used_offline() {
    let Some(c) = connect("url_bundles_are_downloaded_verified_cached_and_used_offline").await
    else {
        return;
    };
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = format!("dl-{}", suffix());
    let bundle = yaml(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "release-info"},
            "data": {"version": "v1.2.3"}}),
    ]);
    let digest = sha256_hex(bundle.as_bytes());
    let server = FileServer::start(
        HashMap::from([("/install.yaml".to_owned(), bundle.clone().into_bytes())]),
        dir.path(),
    )
    .await;
    let url = format!("{}/install.yaml", server.base);
    let cache = dir.path().join("cache");
    let (mut run, _) = Run::with_provider(
        &c.kubeconfig,
        "bmac-admin",
        provider(&cache, Some(&server.ca_file)),
    )
    .await
    .expect("cluster");

    // A wrong digest: downloaded, refused, nothing written, nothing cached.
    let wrong = "ab".repeat(32);
    let before = writes(&c.admin).await;
    let err = run
        .apply(&url_step("release", &url, &wrong, &ns))
        .await
        .expect_err("wrong digest");
    assert!(!err.is_retryable(), "{}", err.message);
    assert_eq!(err.code.as_deref(), Some("bmac::bundle::digest_mismatch"));
    assert!(
        err.message.contains(&url) && err.message.contains(&digest) && err.message.contains(&wrong),
        "{}",
        err.message
    );
    assert_eq!(writes(&c.admin).await - before, 0);
    assert!(!BundleCache::new(&cache).path(&digest).exists());

    // A 404 names the URL and the status; permanent.
    let missing = format!("{}/no-such-release.yaml", server.base);
    let err = run
        .apply(&url_step("release", &missing, &digest, &ns))
        .await
        .expect_err("404");
    assert!(!err.is_retryable(), "{}", err.message);
    assert!(
        err.message.contains(&missing) && err.message.contains("404"),
        "{}",
        err.message
    );

    // The right digest: downloaded once, verified, applied, cached 0600.
    let step = url_step("release", &url, &digest, &ns);
    let hits = server.hits();
    run.apply(&step)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(server.hits(), hits + 1, "one download");
    let cms: Api<ConfigMap> = Api::namespaced(c.admin.clone(), &ns);
    let info = cms
        .get("release-info")
        .await
        .expect("the bundle's ConfigMap, in its namespace");
    assert_eq!(info.data.unwrap_or_default()["version"], "v1.2.3");
    let cached = BundleCache::new(&cache).path(&digest);
    assert_eq!(
        std::fs::read(&cached).expect("cached copy"),
        bundle.as_bytes()
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cached)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Observing (what plan does) never downloads.
    let hits = server.hits();
    let (config, _) = present(run.observe(&step).await.expect("observe"));
    assert_eq!(config["bundle"]["sha256"], json!(digest));
    assert_eq!(server.hits(), hits);

    // The server goes away: a fresh run (a new process) applies from the cache, writing nothing.
    server.stop().await;
    let (mut offline, _) = Run::with_provider(&c.kubeconfig, "bmac-admin", provider(&cache, None))
        .await
        .expect("cluster");
    let before = writes(&c.admin).await;
    offline
        .apply(&step)
        .await
        .unwrap_or_else(|e| panic!("from cache: {}", e.message));
    assert_eq!(writes(&c.admin).await - before, 0);

    // No network and no cached copy: a clear error naming the URL, nothing written.
    let empty = dir.path().join("empty-cache");
    let (mut airgapped, _) =
        Run::with_provider(&c.kubeconfig, "bmac-admin", provider(&empty, None))
            .await
            .expect("cluster");
    let before = writes(&c.admin).await;
    let err = airgapped.apply(&step).await.expect_err("unreachable");
    assert!(err.message.contains(&url), "{}", err.message);
    assert!(err.message.contains("no copy is cached"), "{}", err.message);
    assert_eq!(err.code.as_deref(), Some("bmac::bundle::unreachable"));
    assert_eq!(writes(&c.admin).await - before, 0);

    offline.destroy(&step).await.expect("destroy");
}

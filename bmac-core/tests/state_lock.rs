//! The local store's apply lock.

use std::sync::Arc;

use bmac_core::state::{local_host, LockInfo, LockRequest, StateError, StateStore};
use bmac_core::LocalStore;

fn request(holder: &str) -> LockRequest {
    LockRequest {
        operation: "apply".into(),
        holder: holder.into(),
    }
}

#[tokio::test]
async fn a_second_lock_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path().join(".bmac")).unwrap();
    assert_eq!(store.lock_info().await.unwrap(), None);
    let held = store.lock(request("alice")).await.unwrap();
    assert_eq!(held.pid, std::process::id());
    assert_eq!(held.host, local_host());
    assert_eq!(store.lock_info().await.unwrap(), Some(held.clone()));

    let err = store.lock(request("bob")).await.unwrap_err();
    match &err {
        StateError::Locked { holder, stale } => {
            assert_eq!(holder, &held);
            assert!(!stale, "this process is alive");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let shown = err.to_string();
    let pid = held.pid.to_string();
    for part in [held.id.as_str(), "alice", held.host.as_str(), pid.as_str()] {
        assert!(shown.contains(part), "{shown} lacks {part}");
    }
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(
        help.contains(&format!("bmac state unlock {}", held.id)),
        "{help}"
    );
}

#[tokio::test]
async fn only_the_right_id_unlocks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path().join(".bmac")).unwrap();
    let held = store.lock(request("alice")).await.unwrap();
    match store.unlock("0123456789abcdef").await.unwrap_err() {
        StateError::LockMismatch { given, current } => {
            assert_eq!(given, "0123456789abcdef");
            assert_eq!(current, Some(held.clone()));
        }
        other => panic!("expected LockMismatch, got {other:?}"),
    }
    assert!(store.lock_info().await.unwrap().is_some(), "still held");
    store.unlock(&held.id).await.unwrap();
    assert_eq!(store.lock_info().await.unwrap(), None);
    assert!(matches!(
        store.unlock(&held.id).await,
        Err(StateError::LockMismatch { current: None, .. })
    ));
    let next = store.lock(request("bob")).await.unwrap();
    assert_ne!(next.id, held.id);
}

#[tokio::test]
async fn a_lock_outlives_its_store_until_broken_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let held = {
        let store = LocalStore::open(&dir).unwrap();
        store.lock(request("crashed-run")).await.unwrap()
    };
    let store = LocalStore::open(&dir).unwrap();
    assert_eq!(store.lock_info().await.unwrap(), Some(held.clone()));
    assert!(matches!(
        store.lock(request("next-run")).await,
        Err(StateError::Locked { .. })
    ));
    store.unlock(&held.id).await.unwrap();
    store.lock(request("next-run")).await.unwrap();
}

#[tokio::test]
async fn a_lock_whose_process_is_gone_is_reported_stale_but_still_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    let mut dead = LockInfo::new(request("ghost"));
    dead.pid = u32::MAX - 1; // above any pid_max
    std::fs::write(dir.join("lock.json"), serde_json::to_vec(&dead).unwrap()).unwrap();

    let err = store.lock(request("alice")).await.unwrap_err();
    if std::path::Path::new("/proc/self").exists() {
        assert!(
            matches!(err, StateError::Locked { stale: true, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("looks stale"), "{err}");
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(
            help.contains(&format!("bmac state unlock {}", dead.id)),
            "{help}"
        );
    }
    store.unlock(&dead.id).await.unwrap();
    store.lock(request("alice")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_many_concurrent_lockers_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(LocalStore::open(tmp.path().join(".bmac")).unwrap());
    let attempts = (0..16).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.lock(request(&format!("run-{i}"))).await })
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<LockInfo> = results
        .into_iter()
        .filter_map(|r| r.unwrap().ok())
        .collect();
    assert_eq!(winners.len(), 1);
    assert_eq!(store.lock_info().await.unwrap(), Some(winners[0].clone()));
    let leftovers = std::fs::read_dir(tmp.path().join(".bmac")).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary lock files left behind");
}

#[tokio::test]
async fn an_unreadable_lock_file_is_reported_not_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    std::fs::write(dir.join("lock.json"), b"{\"id\": \"ab").unwrap();
    let err = store.lock(request("alice")).await.unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { reason, .. } if reason.contains("delete it")),
        "{err:?}"
    );
}

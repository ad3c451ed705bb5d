//! Group commit in the local store: concurrent appends share syncs, stay ordered and are all
//! durable.

mod state_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use bmac_core::state::{Record, StateStore};
use bmac_core::LocalStore;
use state_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_syncs_and_keep_every_record() {
    // On the build disk, so syncs cost what they cost in real use.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join(".bmac");
    let store = Arc::new(LocalStore::open(&dir).unwrap());
    let shared: Arc<dyn StateStore> = store.clone();

    let tasks = (0..64).map(|t| {
        let store = Arc::clone(&shared);
        tokio::spawn(async move {
            let name = format!("task-{t}");
            let batch: Vec<Record> = match t % 3 {
                0 => vec![intent(&name)],
                1 => vec![intent(&name), applied(&name, t)],
                _ => vec![intent(&name), failed(&name), destroyed(&name)],
            };
            let serial = store.append(&batch).await.unwrap();
            (batch, serial)
        })
    });
    let results: Vec<(Vec<Record>, u64)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let total: usize = results.iter().map(|(b, _)| b.len()).sum();
    let serials: BTreeSet<u64> = results.iter().map(|(_, s)| *s).collect();
    assert_eq!(serials.len(), 64, "every append gets its own serial");
    assert_eq!(serials.last().copied(), Some(total as u64));

    let on_disk = store.records().unwrap();
    assert_eq!(on_disk.len(), total);
    for (batch, serial) in &results {
        let end = *serial as usize;
        assert_eq!(
            &on_disk[end - batch.len()..end],
            &batch[..],
            "an append's records are contiguous and end at its serial"
        );
    }
    let flushes = store.flushes();
    assert!(flushes >= 1);
    assert!(
        flushes < 64,
        "{flushes} syncs for 64 appends: no group commit"
    );

    let loaded = shared.load().await.unwrap();
    assert_eq!(loaded.state, fold(&on_disk, &loaded.state.lineage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_one_task_are_ordered_while_others_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(
        LocalStore::builder(tmp.path().join(".bmac"))
            .compact_every(7)
            .open()
            .unwrap(),
    );
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut last = 0;
            for r in history(20) {
                let serial = store.append(&[r]).await.unwrap();
                assert!(serial > last, "serials increase: {serial} after {last}");
                last = serial;
            }
        })
    };
    for _ in 0..5 {
        store.compact().await.unwrap();
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.state, fold(&history(20), &loaded.state.lineage));
}

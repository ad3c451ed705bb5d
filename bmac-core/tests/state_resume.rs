//! Resuming from a long journal is one streaming pass (DESIGN.md decision 5).

mod state_support;

use std::time::{Duration, Instant};

use bmac_core::state::StateStore;
use bmac_core::LocalStore;
use state_support::*;

/// 100 000 records — a 50 000-step apply journalled without compaction — load in well under
/// a second in an optimised build. Debug builds get a looser bound.
#[tokio::test]
async fn a_hundred_thousand_records_load_quickly() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::builder(&dir).compact_every(0).open().unwrap();
    let mut records = history(45_000);
    records.truncate(100_000);
    assert_eq!(records.len(), 100_000);
    for batch in records.chunks(5_000) {
        store.append(batch).await.unwrap();
    }
    drop(store);

    let store = LocalStore::open(&dir).unwrap();
    let started = Instant::now();
    let loaded = store.load().await.unwrap();
    let took = started.elapsed();
    assert_eq!(loaded.state.serial, 100_000);
    assert_eq!(loaded.state, fold(&records, &loaded.state.lineage));
    let bound = if cfg!(debug_assertions) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    assert!(took < bound, "loading 100k records took {took:?}");
    eprintln!("loaded 100k records in {took:?}");
}

//! Compaction of the local journal into a snapshot, including every state a crash in the
//! middle of a compaction can leave on disk.

mod state_support;

use bmac_core::state::{Compaction, Record, StateError, StateStore};
use bmac_core::LocalStore;
use state_support::*;

#[tokio::test]
async fn compaction_keeps_the_state_and_serials_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    let first = history(8);
    store.append(&first).await.unwrap();
    let before = store.load().await.unwrap().state;

    assert_eq!(store.compact().await.unwrap(), first.len() as u64);
    assert!(dir.join("snapshot.json").exists());
    assert!(
        store.records().unwrap().is_empty(),
        "the new journal is empty"
    );
    assert_eq!(lines(&dir).len(), 1, "only the header is left");
    assert_eq!(store.load().await.unwrap().state, before);
    assert_eq!(
        store.compact().await.unwrap(),
        first.len() as u64,
        "compacting again is a no-op"
    );

    let second = history(3);
    let serial = store.append(&second).await.unwrap();
    assert_eq!(serial, (first.len() + second.len()) as u64);
    assert_eq!(store.records().unwrap(), second);
    drop(store);

    let store = LocalStore::open(&dir).unwrap();
    let all: Vec<Record> = first.iter().chain(&second).cloned().collect();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.state, fold(&all, &before.lineage));
    assert!(loaded.warnings.is_empty());
}

#[tokio::test]
async fn the_journal_is_compacted_automatically_when_it_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::builder(&dir).compact_every(10).open().unwrap();
    let records = history(12); // 27 records
    for r in &records {
        store.append(std::slice::from_ref(r)).await.unwrap();
    }
    assert!(dir.join("snapshot.json").exists());
    let tail = store.records().unwrap();
    assert!(tail.len() < 10, "{} records since the snapshot", tail.len());
    assert_eq!(tail[..], records[records.len() - tail.len()..]);
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.state, fold(&records, &loaded.state.lineage));
}

#[tokio::test]
async fn by_default_a_journal_below_the_floor_is_not_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    let records = history(400); // 900 records, far below the 64 MiB floor
    for r in &records {
        store.append(std::slice::from_ref(r)).await.unwrap();
    }
    assert!(!dir.join("snapshot.json").exists());
    assert_eq!(store.records().unwrap(), records);
}

/// The size policy compacts once the journal passes the floor, and after that only when it
/// outgrows `ratio` × the snapshot: a bigger state compacts less often.
#[tokio::test]
async fn the_size_policy_compacts_past_the_floor_then_past_a_multiple_of_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let (floor, ratio) = (4_000, 2);
    let store = LocalStore::builder(&dir)
        .compaction(Compaction::Size {
            floor_bytes: floor,
            ratio,
        })
        .open()
        .unwrap();
    let records = history(300);
    // Bytes of records in the journal (its header, whose length varies, excluded).
    let journal_bytes = || -> u64 {
        let all = lines(&dir);
        all[1..].iter().map(|l| l.len() as u64).sum()
    };
    // Journal bytes just before each compaction, and the snapshot it then followed.
    let mut compactions: Vec<(u64, u64)> = Vec::new();
    let (mut before, mut snapshot) = (0, 0);
    for r in &records {
        store.append(std::slice::from_ref(r)).await.unwrap();
        // The writer answers an append before compacting; a load is served after that.
        store.load().await.unwrap();
        let now = journal_bytes();
        if now < before {
            assert_eq!(now, 0, "compaction leaves only the header");
            compactions.push((before, snapshot));
            snapshot = std::fs::metadata(dir.join("snapshot.json")).unwrap().len();
        }
        before = now;
    }
    assert!(compactions.len() >= 2, "{compactions:?}");
    for &(journal_bytes, snapshot_bytes) in &compactions {
        let threshold = floor.max(ratio * snapshot_bytes);
        // Compacted right after passing the threshold (the last record tipped it over).
        assert!(journal_bytes <= threshold, "{compactions:?}");
        assert!(journal_bytes + 400 > threshold, "{compactions:?}");
    }
    let later = compactions.last().unwrap();
    assert!(
        later.0 > floor,
        "a grown snapshot raises the threshold: {compactions:?}"
    );
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.state, fold(&records, &loaded.state.lineage));
}

#[tokio::test]
async fn compaction_can_be_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::builder(&dir).compact_every(0).open().unwrap();
    for r in &history(10) {
        store.append(std::slice::from_ref(r)).await.unwrap();
    }
    assert!(!dir.join("snapshot.json").exists());
    assert_eq!(store.records().unwrap(), history(10));
}

/// Crash after the snapshot was renamed into place, before the journal was replaced: the
/// old journal still holds every record the snapshot holds.
#[tokio::test]
async fn a_crash_between_snapshot_and_new_journal_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let records = history(6);
    let old_journal;
    let expected;
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&records).await.unwrap();
        expected = store.load().await.unwrap().state;
        old_journal = std::fs::read(journal(&dir)).unwrap();
        store.compact().await.unwrap();
    }
    std::fs::write(journal(&dir), &old_journal).unwrap();

    let store = LocalStore::open(&dir).unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.state, expected);
    assert!(loaded.warnings.is_empty());
    assert!(
        store.records().unwrap().is_empty(),
        "records up to the snapshot's serial are not replayed twice"
    );

    let serial = store.append(&[destroyed("step-0")]).await.unwrap();
    assert_eq!(serial, records.len() as u64 + 1);
    assert_eq!(
        lines(&dir).len(),
        2,
        "the interrupted compaction was finished: header + the new record"
    );
    let mut all = records.clone();
    all.push(destroyed("step-0"));
    drop(store);
    let loaded = LocalStore::open(&dir).unwrap().load().await.unwrap();
    assert_eq!(loaded.state, fold(&all, &expected.lineage));
}

/// Crash while writing the temporary files: the previous snapshot and journal are intact and
/// the half-written temporaries are ignored, then removed by the next write.
#[tokio::test]
async fn a_crash_before_the_renames_leaves_the_previous_files_in_charge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let first = history(3);
    let second = history(2);
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&first).await.unwrap();
        store.compact().await.unwrap();
        store.append(&second).await.unwrap();
    }
    std::fs::write(dir.join("snapshot.json.tmp"), b"{\"format\":1,\"sta").unwrap();
    std::fs::write(dir.join("journal.log.tmp"), b"garbage").unwrap();

    let store = LocalStore::open(&dir).unwrap();
    let loaded = store.load().await.unwrap();
    let all: Vec<Record> = first.iter().chain(&second).cloned().collect();
    assert_eq!(loaded.state, fold(&all, &loaded.state.lineage));
    assert_eq!(store.records().unwrap(), second);

    store.append(&[intent("next")]).await.unwrap();
    assert!(!dir.join("snapshot.json.tmp").exists());
    assert!(!dir.join("journal.log.tmp").exists());
    store.compact().await.unwrap();
    let mut all = all;
    all.push(intent("next"));
    assert_eq!(
        store.load().await.unwrap().state,
        fold(&all, &loaded.state.lineage)
    );
}

#[tokio::test]
async fn a_snapshot_without_its_journal_still_loads_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let records = history(4);
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&records).await.unwrap();
        store.compact().await.unwrap();
    }
    std::fs::remove_file(journal(&dir)).unwrap();
    let store = LocalStore::open(&dir).unwrap();
    let lineage = store.load().await.unwrap().state.lineage;
    assert_eq!(
        store.append(&[intent("x")]).await.unwrap(),
        records.len() as u64 + 1
    );
    let mut all = records;
    all.push(intent("x"));
    assert_eq!(store.load().await.unwrap().state, fold(&all, &lineage));
}

#[tokio::test]
async fn files_from_different_states_are_not_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    {
        let store_a = LocalStore::open(&a).unwrap();
        store_a.append(&history(2)).await.unwrap();
        store_a.compact().await.unwrap();
        let store_b = LocalStore::open(&b).unwrap();
        store_b.append(&history(2)).await.unwrap();
    }
    std::fs::copy(a.join("snapshot.json"), b.join("snapshot.json")).unwrap();
    let err = LocalStore::open(&b).unwrap().load().await.unwrap_err();
    match err {
        StateError::Corrupt { line, reason, .. } => {
            assert_eq!(line, 1);
            assert!(reason.contains("lineage"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_journal_that_skips_past_the_snapshot_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&history(2)).await.unwrap();
        store.compact().await.unwrap();
        store.append(&history(2)).await.unwrap();
        store.compact().await.unwrap();
    }
    // Put back nothing: remove the snapshot, leaving a journal that continues after it.
    std::fs::remove_file(dir.join("snapshot.json")).unwrap();
    let err = LocalStore::open(&dir).unwrap().load().await.unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { reason, .. } if reason.contains("no snapshot")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_damaged_snapshot_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&history(2)).await.unwrap();
        store.compact().await.unwrap();
    }
    let path = dir.join("snapshot.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 3]).unwrap();
    let err = LocalStore::open(&dir).unwrap().load().await.unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { path, .. } if path.ends_with("snapshot.json")),
        "{err:?}"
    );
}

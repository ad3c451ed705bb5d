//! The local state store: journal round trip, permissions, torn-record recovery, corruption
//! and secrets.

mod state_support;

use std::os::unix::fs::PermissionsExt;

use bmac_core::state::{LockRequest, Record, StateError, StateStore};
use bmac_core::{LocalStore, Outputs};
use state_support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn records_replay_to_the_in_memory_fold_across_batches_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let records = history(12);
    let store = LocalStore::open(&dir).unwrap();
    let mut serial = 0;
    for batch in records.chunks(5) {
        let after = store.append(batch).await.unwrap();
        serial += batch.len() as u64;
        assert_eq!(after, serial, "append returns the serial after its records");
    }
    let loaded = store.load().await.unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let lineage = loaded.state.lineage.clone();
    assert_eq!(lineage.len(), 32, "128-bit hex lineage: {lineage}");
    assert!(lineage.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(loaded.state, fold(&records, &lineage));
    assert_eq!(loaded.state.serial, records.len() as u64);
    assert_eq!(store.records().unwrap(), records);
    drop(store);

    let store = LocalStore::open(&dir).unwrap();
    let again = store.load().await.unwrap();
    assert_eq!(again.state, loaded.state, "reopening changes nothing");
    let more = [intent("step-0"), applied("step-0", 99)];
    assert_eq!(store.append(&more).await.unwrap(), records.len() as u64 + 2);
    let after = store.load().await.unwrap().state;
    assert_eq!(after.lineage, lineage, "the lineage is stable");
    let all: Vec<Record> = records.iter().chain(&more).cloned().collect();
    assert_eq!(after, fold(&all, &lineage));
}

#[tokio::test]
async fn a_fresh_store_is_empty_and_two_stores_get_different_lineages() {
    let tmp = tempfile::tempdir().unwrap();
    let a = LocalStore::open(tmp.path().join("a")).unwrap();
    let loaded = a.load().await.unwrap();
    assert_eq!(loaded.state.serial, 0);
    assert!(loaded.state.steps.is_empty());
    assert!(
        loaded.state.lineage.is_empty(),
        "no lineage before the first write"
    );
    assert!(
        !a.dir().join("journal.log").exists(),
        "loading writes nothing"
    );
    assert_eq!(a.append(&[]).await.unwrap(), 0);

    let b = LocalStore::open(tmp.path().join("b")).unwrap();
    a.append(&[intent("x")]).await.unwrap();
    b.append(&[intent("x")]).await.unwrap();
    let (la, lb) = (
        a.load().await.unwrap().state.lineage,
        b.load().await.unwrap().state.lineage,
    );
    assert_ne!(la, lb);
}

#[tokio::test]
async fn state_files_are_private_from_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    store.append(&history(3)).await.unwrap();
    store.compact().await.unwrap();
    store.append(&[intent("late")]).await.unwrap();
    store.lock(LockRequest::new("apply")).await.unwrap();
    for name in ["journal.log", "snapshot.json", "lock.json"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "no stray temporary files: {names:?}");
}

/// Loads a store whose last line was damaged by `damage`, and checks recovery end to end.
async fn recovers_from_a_torn_tail(damage: impl FnOnce(&mut Vec<u8>)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let records = history(4); // 9 records
    {
        let store = LocalStore::open(&dir).unwrap();
        for r in &records {
            store.append(std::slice::from_ref(r)).await.unwrap();
        }
    }
    let mut lines = lines(&dir);
    assert_eq!(
        lines.len(),
        records.len() + 1,
        "a header and one line per record"
    );
    damage(lines.last_mut().unwrap());
    write_lines(&dir, &lines);

    let store = LocalStore::open(&dir).unwrap();
    let loaded = store.load().await.unwrap();
    let good = &records[..records.len() - 1];
    assert_eq!(loaded.state, fold(good, &loaded.state.lineage));
    assert_eq!(loaded.warnings.len(), 1);
    let warning = &loaded.warnings[0];
    assert!(warning.contains("dropped a torn record"), "{warning}");
    assert!(warning.contains("journal.log (line 10)"), "{warning}");
    assert!(warning.contains("observed on the next apply"), "{warning}");
    assert_eq!(store.records().unwrap(), good);

    let serial = store.append(&[destroyed("step-0")]).await.unwrap();
    assert_eq!(
        serial,
        good.len() as u64 + 1,
        "the torn record's serial is reused"
    );
    drop(store);
    let store = LocalStore::open(&dir).unwrap();
    let reloaded = store.load().await.unwrap();
    assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
    let mut expected = good.to_vec();
    expected.push(destroyed("step-0"));
    assert_eq!(store.records().unwrap(), expected);
    assert_eq!(reloaded.state, fold(&expected, &loaded.state.lineage));
}

#[tokio::test]
async fn a_record_cut_off_mid_line_is_dropped_with_a_warning() {
    recovers_from_a_torn_tail(|line| line.truncate(line.len() / 2)).await;
}

#[tokio::test]
async fn a_garbled_last_record_is_dropped_with_a_warning() {
    recovers_from_a_torn_tail(|line| {
        let i = line.len() - 5;
        line[i] ^= 0x01;
    })
    .await;
}

#[tokio::test]
async fn a_last_record_missing_only_its_newline_is_dropped() {
    recovers_from_a_torn_tail(|line| {
        line.pop();
    })
    .await;
}

#[tokio::test]
async fn damage_before_the_last_record_is_an_error_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    {
        let store = LocalStore::open(&dir).unwrap();
        store.append(&history(3)).await.unwrap();
    }
    let mut lines = lines(&dir);
    let pristine = lines.clone();
    lines[2][20] ^= 0x01; // line 3: the second record
    write_lines(&dir, &lines);
    let store = LocalStore::open(&dir).unwrap();
    match store.load().await {
        Err(StateError::Corrupt { path, line, reason }) => {
            assert!(path.ends_with("journal.log"), "{path}");
            assert_eq!(line, 3);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        matches!(
            store.append(&[intent("x")]).await,
            Err(StateError::Corrupt { line: 3, .. })
        ),
        "nothing is appended to a damaged journal"
    );
    assert!(store.records().is_err());

    // A missing record (a gap in serials) is damage too.
    let mut gap = pristine.clone();
    gap.remove(3);
    write_lines(&dir, &gap);
    let err = LocalStore::open(&dir).unwrap().load().await.unwrap_err();
    assert!(
        matches!(&err, StateError::Corrupt { line: 4, reason, .. } if reason.contains("expected record 3")),
        "{err:?}"
    );
    let shown = format!("{err}");
    assert!(shown.contains("corrupt at line 4"), "{shown}");
}

#[tokio::test]
async fn secrets_never_reach_the_disk() {
    const SECRET: &str = "hunter2-Very-Secret-Token";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".bmac");
    let store = LocalStore::open(&dir).unwrap();
    let mut record = applied("cluster", 1);
    if let bmac_core::state::RecordKind::Applied { outputs, .. } = &mut record.kind {
        *outputs = Outputs::new()
            .with("endpoint", "https://k8s.example")
            .with_sensitive("admin_token", SECRET);
    }
    store.append(&[intent("cluster"), record]).await.unwrap();
    let check = |when: &str| {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET),
                "{when}: secret in {}",
                path.display()
            );
        }
    };
    check("journal");
    store.compact().await.unwrap();
    check("snapshot");
    let loaded = store.load().await.unwrap();
    let applied = loaded.state.applied(&id("cluster")).unwrap();
    assert!(applied.outputs.has_redacted_secret());
    assert_eq!(
        applied.outputs.get("admin_token").unwrap().to_string(),
        "(sensitive)"
    );
}

#[tokio::test]
async fn opening_a_file_as_the_state_directory_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = LocalStore::open(&file).unwrap_err();
    assert!(matches!(err, StateError::Io { .. }), "{err:?}");
}

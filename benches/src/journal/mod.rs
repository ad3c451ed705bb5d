//! Table 4 — the state journal: append vs rewrite, resume, torn-record recovery.
//!
//! - **Append, as a run appends**: the executor applies a seeded random DAG of `n` steps
//!   (provider calls return at once, cap [`RUN_CAP`]) journaling to a [`LocalStore`] in a fresh
//!   directory: an intent and a completion per step, each intent durable before its call,
//!   completions group-committed by the store's writer thread. This is the row the target is
//!   judged on: it is how bmac appends step completions.
//! - **Append, 64 concurrent callers**: the store alone, `n` completions appended by
//!   [`CONCURRENT_CALLERS`] callers at once, each awaiting its own record.
//! - **Append, one at a time**: `n` completions, each `append` awaited before the next — so
//!   each is its own write + fsync. No bmac run appends like this; it is the floor of a store
//!   used one record at a time, bounded by the disk's sync latency.
//! - **Rewrite**: the baseline the design rejects (Terraform's): after each completion the
//!   whole [`State`] is serialised to a temporary file, fsynced and renamed over the state
//!   file. Its cost grows with the state, so the total is quadratic; at full size it would
//!   write gigabytes, so it is *sampled*: every `stride`-th state size is rewritten for real
//!   and counts for the `stride` sizes around it (the midpoint rule, exact for a cost linear
//!   in size). Quick mode rewrites at every size. The table says which.
//! - **Resume**: a journal of `records` records (intent + applied per step, written in
//!   batches, no compaction) is loaded by a fresh `LocalStore` — open, read, checksum,
//!   deserialise, replay — against the reference of merely reading the same file and
//!   deserialising every record line.
//! - **Torn record**: the last line of a journal is cut in half, as a crash mid-write leaves
//!   it; loading must drop it with a warning, and the next append must continue the serials.
//!
//! Bytes written by the appends are the growth of the store's directory: the journal is
//! append-only and none of these runs reaches the compaction threshold, so growth is exactly
//! what was written (a per-process counter such as `/proc/self/io` would also count whatever
//! else the process writes meanwhile, e.g. other tests of the smoke suite).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmac_core::state::{LocalStore, Operation, Record, RecordKind, State, StateStore};
use bmac_core::step::{Kind, Outputs, Step};
use tokio::runtime::Runtime;

use crate::graphs::{step_id, Dag, Shape, BENCH_KIND};
use crate::scheduling::{plan_of, run_bmac_into};
use crate::SEED;

mod report;
use crate::table::Table;
use crate::{min_of, BenchError};
use report::table;

/// How much faster appending must be than rewriting.
pub const TARGET_APPEND_SPEEDUP: f64 = 50.0;
/// The most resuming may cost, in "read + deserialise" times.
pub const TARGET_RESUME_RATIO: f64 = 3.0;
/// Callers appending at once in the group-commit row (the scheduling benches' cap).
pub const CONCURRENT_CALLERS: usize = 64;
/// The executor's parallelism in the run row (the scheduling benches' cap).
pub const RUN_CAP: usize = 64;

/// Sizes of one run of the table.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Completions appended (and rewritten).
    pub appends: usize,
    /// Rewrite every `stride`-th state size (1: every size).
    pub stride: usize,
    /// Records in the resumed journal.
    pub resume_records: usize,
    /// Records in the journal whose last record is torn.
    pub torn_records: usize,
}

impl Sizes {
    /// The sizes, or small ones for the smoke test.
    pub fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                appends: 200,
                stride: 1,
                resume_records: 2_000,
                torn_records: 100,
            }
        } else {
            Sizes {
                appends: 10_000,
                stride: 50,
                resume_records: 100_000,
                torn_records: 1_000,
            }
        }
    }
}

/// The `Applied` record of benchmark step `i`.
pub fn applied_record(i: usize) -> Record {
    let id = step_id(i);
    let step = Step {
        id: id.clone(),
        kind: Kind::new(BENCH_KIND),
        config: serde_json::json!({ "n": i }).into(),
        deps: Default::default(),
        inputs: Default::default(),
    };
    let fingerprint = step.config_fingerprint();
    Record {
        id,
        kind: RecordKind::Applied {
            step: Arc::new(step),
            fingerprint,
            outputs: Outputs::new().with("id", format!("sim-{i:012x}")),
        },
    }
}

/// The `Intent` record of benchmark step `i`.
pub fn intent_record(i: usize) -> Record {
    Record {
        id: step_id(i),
        kind: RecordKind::Intent {
            op: Operation::Apply,
            fingerprint: None,
        },
    }
}

/// What the table measured.
#[derive(Debug, Clone)]
pub struct JournalReport {
    /// Completions appended.
    pub appends: usize,
    /// Time of the executor run that applied `appends` steps into a `LocalStore`.
    pub run_time: Duration,
    /// Bytes that run wrote.
    pub run_bytes: u64,
    /// Group commits the run's store made.
    pub run_fsyncs: u64,
    /// Records the run journaled (intent + completion per step).
    pub run_records: u64,
    /// Time to append them.
    pub append_time: Duration,
    /// Bytes the appends wrote.
    pub append_bytes: u64,
    /// Group commits (write + fsync) the store made for them.
    pub append_fsyncs: u64,
    /// Time to append the same completions from concurrent callers.
    pub group_time: Duration,
    /// Bytes those appends wrote.
    pub group_bytes: u64,
    /// Group commits they took.
    pub group_fsyncs: u64,
    /// Estimated time to rewrite the state after each completion.
    pub rewrite_time: Duration,
    /// Estimated bytes those rewrites write.
    pub rewrite_bytes: u64,
    /// Rewrites actually performed.
    pub rewrites_done: usize,
    /// Records in the resumed journal.
    pub resume_records: usize,
    /// Time to open + load + replay it.
    pub resume_time: Duration,
    /// Time to read and deserialise the same bytes.
    pub read_time: Duration,
    /// The journal's size.
    pub journal_bytes: u64,
    /// Records in the torn journal (the torn one included).
    pub torn_records: usize,
    /// Time of the load that recovered it.
    pub torn_load: Duration,
    /// Serial after recovery (should be `torn_records - 1`).
    pub torn_serial: u64,
    /// Warnings the recovering load gave.
    pub torn_warnings: usize,
    /// Serial after one more append and a reload (should be `torn_records`).
    pub torn_continued_serial: u64,
}

fn io(context: &str) -> impl Fn(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::new(context, e)
}

fn state_err(context: &str) -> impl Fn(bmac_core::state::StateError) -> BenchError + '_ {
    move |e| BenchError::new(context, e)
}

/// Applies a seeded random DAG of `n` steps with the executor, journaling to a `LocalStore` in
/// `dir`; returns (time, bytes, fsyncs, records), after checking every step ran and the
/// reloaded journal holds every step as applied.
fn apply_through_executor(
    dir: &Path,
    n: usize,
    rt: &Runtime,
) -> Result<(Duration, u64, u64, u64), BenchError> {
    let plan = plan_of(&Dag::generate(Shape::Random, n, SEED))?;
    let store = LocalStore::open(dir).map_err(state_err("opening the run's journal"))?;
    let before = dir_size(dir);
    let took = run_bmac_into(plan, RUN_CAP, rt, &store)?;
    let (written, fsyncs) = (written_since(before, dir), store.flushes());
    let loaded = rt
        .block_on(store.load())
        .map_err(state_err("reloading the run's journal"))?;
    let applied = loaded
        .state
        .steps
        .values()
        .filter(|s| s.applied.is_some() && !s.in_doubt)
        .count();
    if applied != n {
        return Err(BenchError(format!(
            "after the run the journal holds {applied} of {n} steps as applied"
        )));
    }
    Ok((took, written, fsyncs, loaded.state.serial))
}

/// Appends `n` completions one at a time; returns (time, bytes, fsyncs).
fn append_one_by_one(
    dir: &Path,
    n: usize,
    rt: &Runtime,
) -> Result<(Duration, u64, u64), BenchError> {
    let records: Vec<Record> = (0..n).map(applied_record).collect();
    let store = LocalStore::open(dir).map_err(state_err("opening the journal"))?;
    let before = dir_size(dir);
    let start = Instant::now();
    rt.block_on(async {
        for r in &records {
            store.append(std::slice::from_ref(r)).await?;
        }
        Ok::<_, bmac_core::state::StateError>(())
    })
    .map_err(state_err("appending"))?;
    let took = start.elapsed();
    appended(&store, dir, before, n, rt).map(|(written, fsyncs)| (took, written, fsyncs))
}

/// Bytes written and fsyncs made since `before`, once the journal is checked to hold all `n`
/// appended completions.
fn appended(
    store: &LocalStore,
    dir: &Path,
    before: u64,
    n: usize,
    rt: &Runtime,
) -> Result<(u64, u64), BenchError> {
    let (written, fsyncs) = (written_since(before, dir), store.flushes());
    let loaded = rt
        .block_on(store.load())
        .map_err(state_err("reloading the appended journal"))?;
    if loaded.state.serial != n as u64 || loaded.state.steps.len() != n {
        return Err(BenchError(format!(
            "after {n} appends the state has serial {} and {} steps",
            loaded.state.serial,
            loaded.state.steps.len()
        )));
    }
    Ok((written, fsyncs))
}

/// Appends `n` completions from [`CONCURRENT_CALLERS`] callers at once, as a run's steps do;
/// returns (time, bytes, fsyncs).
fn append_concurrently(
    dir: &Path,
    n: usize,
    rt: &Runtime,
) -> Result<(Duration, u64, u64), BenchError> {
    use futures::stream::{self, StreamExt};
    let records: Vec<Record> = (0..n).map(applied_record).collect();
    let store = LocalStore::open(dir).map_err(state_err("opening the journal"))?;
    let before = dir_size(dir);
    let start = Instant::now();
    let results: Vec<_> = rt.block_on(
        stream::iter(&records)
            .map(|r| store.append(std::slice::from_ref(r)))
            .buffer_unordered(CONCURRENT_CALLERS)
            .collect(),
    );
    let took = start.elapsed();
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(state_err("appending concurrently"))?;
    appended(&store, dir, before, n, rt).map(|(written, fsyncs)| (took, written, fsyncs))
}

/// Bytes the store's directory grew by since it measured `before` bytes.
fn written_since(before: u64, dir: &Path) -> u64 {
    dir_size(dir).saturating_sub(before)
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Serialises `state` to a temporary file, fsyncs it and renames it over `state.json`;
/// returns the bytes written.
fn rewrite_state(dir: &Path, state: &State) -> Result<u64, BenchError> {
    let temp = dir.join("state.json.tmp");
    let target = dir.join("state.json");
    let file = File::create(&temp).map_err(io("creating the temporary state"))?;
    let mut out = BufWriter::with_capacity(1 << 16, &file);
    serde_json::to_writer(&mut out, state).map_err(|e| BenchError::new("serialising", e))?;
    out.flush().map_err(io("writing the state"))?;
    drop(out);
    file.sync_all().map_err(io("syncing the state"))?;
    let len = file.metadata().map_err(io("sizing the state"))?.len();
    fs::rename(&temp, &target).map_err(io("renaming the state"))?;
    Ok(len)
}

/// The rewrite baseline; returns (estimated time, estimated bytes, rewrites done).
fn rewrite_each_time(
    dir: &Path,
    n: usize,
    stride: usize,
) -> Result<(Duration, u64, usize), BenchError> {
    let stride = stride.max(1);
    let mut state = State {
        lineage: "bench".to_owned(),
        ..State::default()
    };
    let (mut time, mut written, mut done) = (Duration::ZERO, 0u64, 0usize);
    for i in 0..n {
        state.apply(&applied_record(i));
        if i % stride != stride / 2 {
            continue;
        }
        // This size stands for the `stride` sizes of its bucket (fewer in a last short one).
        let weight = stride.min(n - (i - stride / 2)) as u32;
        let start = Instant::now();
        let len = rewrite_state(dir, &state)?;
        time += start.elapsed() * weight;
        written += len * u64::from(weight);
        done += 1;
    }
    // The state file must hold the state of the last sampled size: nothing was lost.
    let last_sampled = (0..n).rev().find(|i| i % stride == stride / 2);
    if let Some(last) = last_sampled {
        let text = fs::read(dir.join("state.json")).map_err(io("reading the rewritten state"))?;
        let back: State =
            serde_json::from_slice(&text).map_err(|e| BenchError::new("the rewritten state", e))?;
        if back.steps.len() != last + 1 {
            return Err(BenchError(format!(
                "the last rewrite holds {} steps, not {}",
                back.steps.len(),
                last + 1
            )));
        }
    }
    Ok((time, written, done))
}

/// Writes a journal of `records` records (intent + applied per step) in batches.
fn write_journal(dir: &Path, records: usize, rt: &Runtime) -> Result<(), BenchError> {
    let store = LocalStore::builder(dir)
        .compact_every(0)
        .open()
        .map_err(state_err("opening the resume journal"))?;
    let all: Vec<Record> = (0..records)
        .map(|k| {
            if k % 2 == 0 {
                intent_record(k / 2)
            } else {
                applied_record(k / 2)
            }
        })
        .collect();
    rt.block_on(async {
        for chunk in all.chunks(1_000) {
            store.append(chunk).await?;
        }
        Ok::<_, bmac_core::state::StateError>(())
    })
    .map_err(state_err("writing the resume journal"))
}

/// Opens a fresh store on `dir` and loads it; returns the time and the state.
fn resume(dir: &Path, rt: &Runtime) -> Result<(Duration, bmac_core::state::Loaded), BenchError> {
    let start = Instant::now();
    let store = LocalStore::open(dir).map_err(state_err("reopening the journal"))?;
    let loaded = rt.block_on(store.load()).map_err(state_err("resuming"))?;
    let took = start.elapsed();
    drop(store);
    Ok((took, loaded))
}

/// The reference: read the journal file and deserialise every record line.
fn read_and_deserialise(path: &Path) -> Result<(Duration, usize), BenchError> {
    let start = Instant::now();
    let text = fs::read(path).map_err(io("reading the journal"))?;
    let mut records: Vec<Record> = Vec::new();
    // Line = `crc tag json`; the first line is the header.
    for line in text.split(|&b| b == b'\n').skip(1) {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(_), Some(_), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let record: Record =
            serde_json::from_slice(json).map_err(|e| BenchError::new("a journal line", e))?;
        records.push(record);
    }
    let took = start.elapsed();
    Ok((took, records.len()))
}

/// Cuts the journal's last line in half, as a crash mid-append would.
fn tear_last_record(path: &Path) -> Result<(), BenchError> {
    let text = fs::read(path).map_err(io("reading the journal to tear"))?;
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let last_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let cut = last_start + (body.len() - last_start) / 2;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening the journal to tear"))?;
    file.set_len(cut as u64).map_err(io("tearing the journal"))
}

/// Runs the journal table with its scratch directories under `scratch`.
pub fn run(quick: bool, scratch: &Path) -> Result<(Table, JournalReport), BenchError> {
    let sizes = Sizes::new(quick);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting a runtime"))?;
    let temp = |what: &str| {
        tempfile::Builder::new()
            .prefix(&format!("bmac-bench-{what}-"))
            .tempdir_in(scratch)
            .map_err(io("creating a scratch directory"))
    };

    eprintln!("journal: a {}-step run into a LocalStore", sizes.appends);
    let dir = temp("run")?;
    let (run_time, run_bytes, run_fsyncs, run_records) =
        apply_through_executor(dir.path(), sizes.appends, &rt)?;
    drop(dir);

    eprintln!("journal: {} appends", sizes.appends);
    let dir = temp("append")?;
    let (append_time, append_bytes, append_fsyncs) =
        append_one_by_one(dir.path(), sizes.appends, &rt)?;
    drop(dir);
    let dir = temp("group")?;
    let (group_time, group_bytes, group_fsyncs) =
        append_concurrently(dir.path(), sizes.appends, &rt)?;
    drop(dir);

    eprintln!("journal: rewrite baseline (every {}th size)", sizes.stride);
    let dir = temp("rewrite")?;
    let (rewrite_time, rewrite_bytes, rewrites_done) =
        rewrite_each_time(dir.path(), sizes.appends, sizes.stride)?;
    drop(dir);

    eprintln!("journal: resume {} records", sizes.resume_records);
    let dir = temp("resume")?;
    write_journal(dir.path(), sizes.resume_records, &rt)?;
    let journal = dir.path().join("journal.log");
    let journal_bytes = fs::metadata(&journal)
        .map_err(io("sizing the journal"))?
        .len();
    let reps = if quick { 2 } else { 3 };
    let mut failure = None;
    let resume_time = min_of(reps, || match resume(dir.path(), &rt) {
        Ok((took, loaded)) => {
            let steps = sizes.resume_records.div_ceil(2);
            if loaded.state.serial != sizes.resume_records as u64
                || loaded.state.steps.len() != steps
            {
                failure = Some(BenchError(format!(
                    "resume found serial {} and {} steps",
                    loaded.state.serial,
                    loaded.state.steps.len()
                )));
            }
            took
        }
        Err(e) => {
            failure = Some(e);
            Duration::ZERO
        }
    });
    let read_time = min_of(reps, || match read_and_deserialise(&journal) {
        Ok((took, count)) => {
            if count != sizes.resume_records {
                failure = Some(BenchError(format!("read {count} journal records")));
            }
            took
        }
        Err(e) => {
            failure = Some(e);
            Duration::ZERO
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    drop(dir);

    eprintln!("journal: torn last record");
    let dir = temp("torn")?;
    write_journal(dir.path(), sizes.torn_records, &rt)?;
    tear_last_record(&dir.path().join("journal.log"))?;
    let (torn_load, loaded) = resume(dir.path(), &rt)?;
    let torn_serial = loaded.state.serial;
    let torn_warnings = loaded.warnings.len();
    let store = LocalStore::open(dir.path()).map_err(state_err("reopening the torn journal"))?;
    let continued = rt
        .block_on(async {
            store.append(&[applied_record(sizes.torn_records)]).await?;
            store.load().await
        })
        .map_err(state_err("appending after the torn record"))?;
    drop(store);

    let report = JournalReport {
        appends: sizes.appends,
        run_time,
        run_bytes,
        run_fsyncs,
        run_records,
        append_time,
        append_bytes,
        append_fsyncs,
        group_time,
        group_bytes,
        group_fsyncs,
        rewrite_time,
        rewrite_bytes,
        rewrites_done,
        resume_records: sizes.resume_records,
        resume_time,
        read_time,
        journal_bytes,
        torn_records: sizes.torn_records,
        torn_load,
        torn_serial,
        torn_warnings,
        torn_continued_serial: continued.state.serial,
    };
    Ok((table(&report, sizes), report))
}

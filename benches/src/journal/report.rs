//! The journal table's rendering: rows, notes and verdicts from a [`JournalReport`].

use super::{
    JournalReport, Sizes, CONCURRENT_CALLERS, RUN_CAP, TARGET_APPEND_SPEEDUP, TARGET_RESUME_RATIO,
};
use crate::table::{bytes, duration, ratio, Table};

/// The table for `r`, measured at `sizes`.
pub(super) fn table(r: &JournalReport, sizes: Sizes) -> Table {
    let mut t = Table::new(
        "4. State journal: append vs rewrite, resume, torn record",
        &[
            "measurement",
            "records",
            "time",
            "bytes written",
            "fsyncs",
            "ratio",
        ],
    );
    let over = |t: std::time::Duration| r.rewrite_time.as_secs_f64() / t.as_secs_f64().max(1e-9);
    let (run_speedup, group_speedup, single_speedup) =
        (over(r.run_time), over(r.group_time), over(r.append_time));
    let resume_ratio = r.resume_time.as_secs_f64() / r.read_time.as_secs_f64().max(1e-9);
    t.row(vec![
        format!(
            "a run: executor applies {} steps (random DAG, cap {RUN_CAP}) into LocalStore",
            r.appends
        ),
        format!("{} (intent + completion)", r.run_records),
        duration(r.run_time),
        bytes(r.run_bytes),
        r.run_fsyncs.to_string(),
        format!("rewrite ÷ run = {}", ratio(run_speedup)),
    ]);
    t.row(vec![
        format!("append, {CONCURRENT_CALLERS} concurrent callers (group commit)"),
        r.appends.to_string(),
        duration(r.group_time),
        bytes(r.group_bytes),
        r.group_fsyncs.to_string(),
        format!("rewrite ÷ append = {}", ratio(group_speedup)),
    ]);
    t.row(vec![
        "append, one at a time, each awaited (a sync per record)".into(),
        r.appends.to_string(),
        duration(r.append_time),
        bytes(r.append_bytes),
        r.append_fsyncs.to_string(),
        format!("rewrite ÷ append = {}", ratio(single_speedup)),
    ]);
    let sampled = if sizes.stride > 1 {
        format!(" (est. from {} sampled sizes)", r.rewrites_done)
    } else {
        String::new()
    };
    t.row(vec![
        format!("rewrite whole state: temp + fsync + rename{sampled}"),
        r.appends.to_string(),
        duration(r.rewrite_time),
        bytes(r.rewrite_bytes),
        r.appends.to_string(),
        String::new(),
    ]);
    t.row(vec![
        "resume: LocalStore open + load + replay".into(),
        r.resume_records.to_string(),
        duration(r.resume_time),
        format!("(journal {})", bytes(r.journal_bytes)),
        String::new(),
        format!("resume ÷ read = {}", ratio(resume_ratio)),
    ]);
    t.row(vec![
        "reference: read file + deserialise every record".into(),
        r.resume_records.to_string(),
        duration(r.read_time),
        String::new(),
        String::new(),
        String::new(),
    ]);
    let recovered = r.torn_warnings == 1
        && r.torn_serial + 1 == r.torn_records as u64
        && r.torn_continued_serial == r.torn_records as u64;
    t.row(vec![
        "torn last record: load drops it, next append continues".into(),
        r.torn_records.to_string(),
        duration(r.torn_load),
        String::new(),
        String::new(),
        format!(
            "kept {}, warned {}, next serial {}",
            r.torn_serial, r.torn_warnings, r.torn_continued_serial
        ),
    ]);
    t.note(format!(
        "The run row is how bmac appends: every intent durable before its provider call, \
         completions queued to the store's writer thread and group-committed; its time includes \
         the whole run (scheduling too) and it journals two records per step where the \
         rewrite baseline writes one state per completion. The one-at-a-time row is the floor of \
         a store fed one awaited record at a time (no run does this): one write + one \
         fdatasync each, bounded by the disk's sync latency ({} per record here). Other \
         records are `Applied` completions (step with a one-field config, one output). The \
         rewrite baseline serialises the whole State as JSON; {}. Resume: {} records, intent + \
         applied per step, no compaction; minimum of 3 runs.",
        duration(r.append_time / r.appends.max(1) as u32),
        if sizes.stride > 1 {
            format!(
                "it was run at every {}th state size and each run counted for its {} \
                 neighbours (midpoint rule; rewrite cost is linear in state size)",
                sizes.stride, sizes.stride
            )
        } else {
            "it was run at every state size".to_owned()
        },
        r.resume_records
    ));
    t.verdict(
        format!(
            "appending {} completions as a run does ≥ {TARGET_APPEND_SPEEDUP}× faster than \
             rewriting",
            r.appends
        ),
        run_speedup >= TARGET_APPEND_SPEEDUP,
        format!(
            "{run_speedup:.1}× faster ({} vs {}), {:.1}× fewer bytes; one awaited append at a \
             time: {single_speedup:.1}×",
            duration(r.run_time),
            duration(r.rewrite_time),
            r.rewrite_bytes as f64 / r.run_bytes.max(1) as f64
        ),
    );
    t.verdict(
        format!(
            "resume of {} records ≤ {TARGET_RESUME_RATIO}× read + deserialise",
            r.resume_records
        ),
        resume_ratio <= TARGET_RESUME_RATIO,
        format!(
            "{resume_ratio:.2}× ({} vs {})",
            duration(r.resume_time),
            duration(r.read_time)
        ),
    );
    t.verdict(
        "a torn last record is recovered",
        recovered,
        format!(
            "{} of {} records kept with {} warning; the next append got serial {}",
            r.torn_serial, r.torn_records, r.torn_warnings, r.torn_continued_serial
        ),
    );
    t
}

//! The journal table's rendering: rows, notes and verdicts from a [`JournalReport`].

use super::{JournalReport, Sizes, CONCURRENT_CALLERS, TARGET_APPEND_SPEEDUP, TARGET_RESUME_RATIO};
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
    let speedup = r.rewrite_time.as_secs_f64() / r.append_time.as_secs_f64().max(1e-9);
    let resume_ratio = r.resume_time.as_secs_f64() / r.read_time.as_secs_f64().max(1e-9);
    t.row(vec![
        "append to LocalStore journal, one awaited append each".into(),
        r.appends.to_string(),
        duration(r.append_time),
        bytes(r.append_bytes),
        r.append_fsyncs.to_string(),
        String::new(),
    ]);
    t.row(vec![
        format!("append, {CONCURRENT_CALLERS} concurrent callers (group commit, as a run does)"),
        r.appends.to_string(),
        duration(r.group_time),
        bytes(r.group_bytes),
        r.group_fsyncs.to_string(),
        String::new(),
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
        format!("rewrite ÷ append = {}", ratio(speedup)),
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
        "Records are `Applied` completions (step with a one-field config, one output). The \
         rewrite baseline serialises the whole State as JSON; {}. Resume: {} records, intent + \
         applied per step, no compaction; minimum of 3 runs.",
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
            "append ≥ {TARGET_APPEND_SPEEDUP}× faster than rewrite at {}",
            r.appends
        ),
        speedup >= TARGET_APPEND_SPEEDUP,
        format!(
            "{speedup:.1}× faster, {:.1}× fewer bytes",
            r.rewrite_bytes as f64 / r.append_bytes.max(1) as f64
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

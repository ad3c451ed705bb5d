//! The printed output: one [`Table`] per benchmark, each followed by its [`Verdict`]s.
//!
//! Tables render as GitHub-flavoured Markdown so the benchmark's output can be pasted into
//! `BENCHMARKS.md` as it is. Cells are plain strings; the benchmarks format their numbers.

use std::fmt;
use std::time::Duration;

/// Whether a target was met, and by how much it was missed when it was not.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The target, as the issue states it.
    pub target: String,
    /// Met or not.
    pub met: bool,
    /// The measured figure against the target.
    pub detail: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.met { "MET" } else { "MISSED" };
        write!(f, "- {mark}: {} — {}", self.target, self.detail)
    }
}

/// One benchmark's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The heading.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (how it was measured).
    pub notes: Vec<String>,
    /// The targets and how they went.
    pub verdicts: Vec<Verdict>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// Adds a row; short rows are padded with empty cells.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Adds a note line.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records a target's verdict.
    pub fn verdict(&mut self, target: impl Into<String>, met: bool, detail: impl Into<String>) {
        self.verdicts.push(Verdict {
            target: target.into(),
            met,
            detail: detail.into(),
        });
    }

    /// The cell under `header` in row `row`, if both exist.
    pub fn cell(&self, row: usize, header: &str) -> Option<&str> {
        let col = self.headers.iter().position(|h| h == header)?;
        self.rows.get(row)?.get(col).map(String::as_str)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "### {}", self.title)?;
        writeln!(f)?;
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([self.headers[c].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            write!(f, "|")?;
            for (cell, w) in cells.iter().zip(&widths) {
                write!(f, " {cell:<w$} |")?;
            }
            writeln!(f)
        };
        line(f, &self.headers)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(f, &rule)?;
        for row in &self.rows {
            line(f, row)?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for note in &self.notes {
                writeln!(f, "{note}")?;
            }
        }
        if !self.verdicts.is_empty() {
            writeln!(f)?;
            for v in &self.verdicts {
                writeln!(f, "{v}")?;
            }
        }
        Ok(())
    }
}

/// A duration in the unit that reads best (`1.23 s`, `45.6 ms`, `789 µs`, `12 ns`).
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{} ns", d.as_nanos())
    }
}

/// A byte count in KiB/MiB/GiB.
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// A ratio with two decimals.
pub fn ratio(r: f64) -> String {
    format!("{r:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown_with_notes_and_verdicts() {
        let mut t = Table::new("Planning", &["shape", "ratio"]);
        t.row(vec!["chain".into(), "3.10".into()]);
        t.row(vec!["random".into()]);
        t.note("min of 5 runs");
        t.verdict("ratio ≤ 10", true, "worst 3.10");
        let text = t.to_string();
        assert!(text.starts_with("### Planning\n"), "{text}");
        assert!(text.contains("| chain  | 3.10  |"), "{text}");
        assert!(text.contains("| random |       |"), "{text}");
        assert!(text.contains("- MET: ratio ≤ 10 — worst 3.10"), "{text}");
        assert_eq!(t.cell(0, "ratio"), Some("3.10"));
        assert_eq!(t.cell(1, "nope"), None);
    }

    #[test]
    fn units_read_well() {
        assert_eq!(duration(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(duration(Duration::from_micros(2500)), "2.50 ms");
        assert_eq!(duration(Duration::from_nanos(1500)), "1.5 µs");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}

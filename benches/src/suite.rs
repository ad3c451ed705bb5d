//! The whole benchmark: every table in order, at full or quick sizes.
//!
//! [`run`] measures and returns the tables (printing each to stdout as soon as it is done,
//! progress to stderr); a table that could not be measured becomes an error in the result
//! list rather than ending the run, so one broken measurement does not hide the others.
//! [`main`] is what the `cargo bench` target and the probe binary call.

use std::path::PathBuf;

use crate::scheduling::ExternalScheduler;
use crate::table::Table;
use crate::{critical_path, journal, memory, planning, scheduling, BenchError};

/// What to run.
pub struct Options<'a> {
    /// Small sizes, for the smoke test.
    pub quick: bool,
    /// The binary the memory probe runs as (`None`: skip the memory table).
    pub probe_exe: Option<PathBuf>,
    /// Where scratch directories (state stores) go; must be on a real disk for fsync to cost
    /// what it costs.
    pub scratch: PathBuf,
    /// The third-party scheduler for the scheduling table.
    pub external: Option<&'a dyn ExternalScheduler>,
    /// Print each table to stdout when it is done.
    pub print: bool,
    /// Run only the tables whose names are listed (`planning`, `scheduling`,
    /// `critical-path`, `journal`, `memory`); empty: all of them.
    pub only: Vec<String>,
}

impl Options<'_> {
    /// Whether the table `name` is to run.
    pub fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    /// Planning sizes.
    pub fn planning_sizes(&self) -> Vec<usize> {
        if self.quick {
            vec![100, 1_000]
        } else {
            vec![1_000, 10_000, 100_000]
        }
    }
}

/// One table, or why it could not be measured.
pub type Outcome = Result<Table, BenchError>;

/// Runs every table.
pub fn run(options: &Options<'_>) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = Vec::new();
    let mut emit = |t: Outcome| {
        if options.print {
            match &t {
                Ok(table) => println!("{table}"),
                Err(e) => println!("(table failed: {e})\n"),
            }
        }
        out.push(t);
    };
    if options.runs("planning") {
        emit(planning::run(&options.planning_sizes(), options.quick).map(|(t, _)| t));
    }
    if options.runs("scheduling") {
        emit(scheduling::run(options.quick, options.external).map(|(t, _)| t));
    }
    if options.runs("critical-path") {
        emit(critical_path::run(options.quick).map(|(t, _)| t));
    }
    if options.runs("journal") {
        emit(journal::run(options.quick, &options.scratch).map(|(t, _)| t));
    }
    if options.runs("memory") {
        match &options.probe_exe {
            Some(exe) => emit(memory::run(options.quick, exe, &options.scratch).map(|(t, _)| t)),
            None => emit(Err(BenchError("memory: no probe binary given".to_owned()))),
        }
    }
    out
}

/// The benchmark binary's entry point: `--memory-probe …` makes it the probe; otherwise it
/// runs every table (`--quick` for small sizes, `--only NAME` — repeatable — for some of
/// them; cargo's own `--bench` is ignored). Returns
/// the exit code: 0 when every table was measured (missed targets are reported, not errors).
pub fn main(args: &[String], external: Option<&dyn ExternalScheduler>) -> i32 {
    if let Some(at) = args.iter().position(|a| a == memory::PROBE_FLAG) {
        return memory::probe_main(&args[at + 1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scratch = std::env::var_os("BMAC_BENCH_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let options = Options {
        quick,
        probe_exe: std::env::current_exe().ok(),
        scratch,
        external,
        print: true,
        only: args
            .windows(2)
            .filter(|w| w[0] == "--only")
            .map(|w| w[1].clone())
            .collect(),
    };
    println!(
        "## bmac benchmarks{}\n",
        if quick { " (quick sizes)" } else { "" }
    );
    let outcomes = run(&options);
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if failed > 0 {
        eprintln!("{failed} table(s) could not be measured");
        1
    } else {
        0
    }
}

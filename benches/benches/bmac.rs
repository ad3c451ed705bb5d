//! `cargo bench -p bmac-benches`: prints the five tables of the performance issue.
//! `cargo bench -p bmac-benches -- --quick` runs them at small sizes.
//! Scratch state stores go to `$BMAC_BENCH_SCRATCH` (default: the system temp dir).

mod dagrs_runner;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = bmac_benches::suite::main(&args, Some(&dagrs_runner::Dagrs));
    std::process::exit(code);
}

//! `bmac-memory-probe`: runs one memory measurement in a process of its own (see
//! `bmac_benches::memory`). The benchmark re-executes itself for this; the test suite, which
//! cannot, runs this binary instead.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match args
        .iter()
        .position(|a| a == bmac_benches::memory::PROBE_FLAG)
    {
        Some(at) => &args[at + 1..],
        None => &args[..],
    };
    std::process::exit(bmac_benches::memory::probe_main(args));
}

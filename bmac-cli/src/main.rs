//! `bmac`: the command line over the `bmac` crate's [`bmac::Stack`]. Thin by design — parsing,
//! rendering, the prompt and exit codes live here; every command is one facade call. Built with
//! every provider (the `kube` and cloud features are on by default).

mod args;
mod commands;
mod exit;
mod render;
mod report;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    // 8 MiB worker stacks: the cloud SDKs' call chains run deep in debug builds.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(exit::FAILED.0);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code.0),
        Err(report) => {
            let code = exit::for_error(&report);
            eprintln!("{report:?}");
            std::process::ExitCode::from(code.0)
        }
    }
}

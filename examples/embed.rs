//! Embedding bmac: open the quickstart as a stack, apply it with a progress callback, and read
//! the cluster endpoint from the stack's outputs. State goes to a fresh temporary directory,
//! so every run builds from scratch on the simulated cloud.
//!
//! ```text
//! cargo run -p bmac --example embed -- examples/quickstart.toml
//! ```

use bmac::prelude::*;
use miette::{IntoDiagnostic, Result};

#[tokio::main]
async fn main() -> Result<()> {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or("examples/quickstart.toml".into());
    let state = tempfile::tempdir().into_diagnostic()?;
    let stack = Stack::open(spec, Options::new().state_dir(state.path()))?;

    let report = stack
        .apply(
            ApplyOptions::new()
                .parallelism(16)
                .on_event(|event| match event {
                    Event::PlanReady { summary } => println!("{summary}"),
                    Event::StepSucceeded { id, duration, .. } => {
                        println!("  built {id} in {} ms", duration.as_millis())
                    }
                    Event::StepFailed { id, error, .. } => println!("  {id} failed: {error}"),
                    _ => {}
                }),
        )
        .await?;
    if !report.is_success() {
        miette::bail!("the build did not succeed: {:?}", report.outcome);
    }
    let outputs = stack.outputs().await?;
    println!(
        "cluster endpoint: {}",
        outputs.endpoint().unwrap_or("(none)")
    );
    Ok(())
}

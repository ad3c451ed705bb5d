//! Embedding bmac: load a spec, expand it into steps, plan against local state and apply the
//! plan from your own Rust program, watching progress through an event callback.
//!
//! ```text
//! cargo run -p bmac-providers --example embed -- examples/quickstart.toml
//! ```
//!
//! State goes to a fresh temporary directory, so every run builds from scratch on the
//! simulated cloud.

use bmac_core::event::Event;
use bmac_core::spec::Spec;
use bmac_core::{Executor, LocalStore, Planner, StateStore};
use miette::{IntoDiagnostic, Result};

/// What the embedding program does with each event: here, print the interesting ones.
fn on_event(event: &Event) {
    match event {
        Event::StepSucceeded { id, duration, .. } => {
            println!("  built {id} in {} ms", duration.as_millis())
        }
        Event::StepFailed { id, error, .. } => println!("  {id} failed: {error}"),
        Event::RunFinished {
            outcome, counts, ..
        } => {
            println!("run {outcome:?}: {} steps changed", counts.succeeded)
        }
        _ => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/quickstart.toml".to_owned());
    let spec = Spec::load(path.as_ref())?;
    let expansion = bmac_steps::expand(&spec)?;

    let state_dir = tempfile::tempdir().into_diagnostic()?;
    let store = LocalStore::open(state_dir.path())?;
    let state = store.load().await?.state;
    let plan = Planner::new(expansion.steps, &state)
        .sources(expansion.sources)
        .plan()?;
    println!("{}", plan.summary());

    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            on_event(&event);
        }
    });
    let providers = bmac_providers::for_spec(&spec, state_dir.path())?;
    let report = Executor::new(providers)
        .parallelism(16)
        .events(events)
        .run(plan, &store)
        .await?;
    watcher.await.into_diagnostic()?;
    if !report.is_success() {
        return Err(miette::miette!(
            "the build did not succeed: {:?}",
            report.outcome
        ));
    }
    Ok(())
}

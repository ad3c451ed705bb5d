//! One function per verb, each a few lines over the library: load the project, call the
//! planner / executor / drift check, render, and return the exit code.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use bmac_core::event::{Event, Outcome};
use bmac_core::exec::FailurePolicy;
use bmac_core::plan::GraphFormat;
use bmac_core::spec::lint;
use bmac_core::{Executor, Plan, Planner, State, StateStore, StepId};
use bmac_providers::Overrides;
use miette::{miette, IntoDiagnostic, Result};
use tokio_util::sync::CancellationToken;

use crate::args::{Cli, Command, GraphKind, OutputFormat, Selection, StateCommand};
use crate::exit::{self, Exit};
use crate::project::Project;
use crate::{render, report};

/// Runs the command line and returns the process exit code.
pub async fn run(cli: Cli) -> Result<Exit> {
    let overrides = Overrides {
        profile: cli.profile.clone(),
        endpoints: cli.endpoints.clone(),
    };
    let project = || Project::load(&cli.spec, cli.state_dir.as_deref(), overrides.clone());
    match &cli.command {
        Command::Validate => validate(&project()?),
        Command::Lint { deny } => lint_cmd(&project()?, deny.is_some(), cli.output),
        Command::Plan {
            out,
            detailed_exitcode,
            select,
        } => {
            plan_cmd(
                &project()?,
                out.as_deref(),
                *detailed_exitcode,
                select,
                cli.output,
            )
            .await
        }
        Command::Apply {
            planfile,
            auto_approve,
            parallelism,
            keep_going,
            allow_lint_errors,
            select,
        } => {
            let p = project()?;
            p.verify_bundle()?;
            if !allow_lint_errors && lint_blocks(&p)? {
                return Ok(exit::INVALID);
            }
            let store = p.store()?;
            let state = p.state(&store).await?;
            let plan = match planfile {
                Some(file) => read_plan(file, &state)?,
                None => {
                    let state = refreshed(&p, state, select.refresh).await?;
                    planner(&p, &state, select)?.plan()?
                }
            };
            let run = RunOptions {
                parallelism: *parallelism,
                keep_going: *keep_going,
                auto_approve: *auto_approve,
                verb: report::Verb::Apply,
            };
            execute(&p, store, plan, &run, cli.output).await
        }
        Command::Destroy {
            auto_approve,
            parallelism,
            keep_going,
            targets,
        } => {
            let p = project()?;
            let store = p.store()?;
            let state = p.state(&store).await?;
            let select = Selection {
                targets: targets.clone(),
                ..Selection::default()
            };
            let plan = planner(&p, &state, &select)?.destroy().plan()?;
            let run = RunOptions {
                parallelism: *parallelism,
                keep_going: *keep_going,
                auto_approve: *auto_approve,
                verb: report::Verb::Destroy,
            };
            execute(&p, store, plan, &run, cli.output).await
        }
        Command::Graph { format } => {
            // The graph marked with what an apply would do against the recorded state.
            let p = project()?;
            let store = p.store()?;
            let state = p.state(&store).await?;
            let plan = planner(&p, &state, &Selection::default())?.plan()?;
            let format = match format {
                GraphKind::Dot => GraphFormat::Dot,
                GraphKind::Mermaid => GraphFormat::Mermaid,
                GraphKind::Text => GraphFormat::Text,
            };
            print!("{}", plan.render_graph(format));
            Ok(exit::OK)
        }
        Command::State(cmd) => state_cmd(&project()?, cmd, cli.output).await,
        Command::Drift => drift_cmd(&project()?, cli.output).await,
    }
}

fn validate(p: &Project) -> Result<Exit> {
    let (steps, sources) = p.steps()?;
    p.verify_bundle()?;
    let n = steps.len();
    Planner::new(steps, &State::default())
        .sources(sources)
        .plan()?;
    println!("The spec is valid: {n} steps.");
    Ok(exit::OK)
}

fn lint_cmd(p: &Project, deny_warnings: bool, output: OutputFormat) -> Result<Exit> {
    let mut findings = lint::lint(&p.spec);
    if deny_warnings {
        findings = lint::deny_warnings(findings);
    }
    let failed = lint::has_errors(&findings);
    match output {
        OutputFormat::Json => {
            for f in &findings {
                let line = serde_json::json!({
                    "rule": f.rule,
                    "severity": if f.severity == lint::Severity::Error { "error" } else { "warning" },
                    "message": f.message,
                    "offset": f.span.offset(),
                    "help": f.help,
                });
                println!("{line}");
            }
        }
        OutputFormat::Human => {
            for f in findings {
                eprintln!("{:?}", miette::Report::new(f));
            }
            if !failed {
                println!("No baseline errors.");
            }
        }
    }
    Ok(if failed { exit::INVALID } else { exit::OK })
}

/// Prints lint errors and says whether they block an apply.
fn lint_blocks(p: &Project) -> Result<bool> {
    let findings = lint::lint(&p.spec);
    if !lint::has_errors(&findings) {
        return Ok(false);
    }
    for f in findings {
        if f.severity == lint::Severity::Error {
            eprintln!("{:?}", miette::Report::new(f));
        }
    }
    eprintln!("Refusing to apply a spec that fails the security baseline; fix the errors above or pass --allow-lint-errors.");
    Ok(true)
}

fn planner<'s>(p: &Project, state: &'s State, select: &Selection) -> Result<Planner<'s>> {
    let (steps, sources) = p.steps()?;
    let mut planner = Planner::new(steps, state).sources(sources);
    for t in &select.targets {
        planner = planner.target(step_id(t)?);
    }
    for x in &select.excludes {
        planner = planner.exclude(step_id(x)?);
    }
    Ok(planner)
}

/// State refreshed from what exists (drift folded in), or as recorded when `refresh` is off.
async fn refreshed(p: &Project, state: State, refresh: bool) -> Result<State> {
    if !refresh || state.steps.is_empty() {
        return Ok(state);
    }
    let (steps, _) = p.steps()?;
    let refreshed = bmac_core::drift::refresh(&steps, &state, &p.providers()?).await?;
    Ok(refreshed.state)
}

fn step_id(text: &str) -> Result<StepId> {
    StepId::new(text).map_err(|e| miette!(code = "bmac::cli::step_id", "{e}"))
}

async fn plan_cmd(
    p: &Project,
    out: Option<&Path>,
    detailed: bool,
    select: &Selection,
    output: OutputFormat,
) -> Result<Exit> {
    p.verify_bundle()?;
    let store = p.store()?;
    let state = p.state(&store).await?;
    let state = refreshed(p, state, select.refresh).await?;
    let plan = planner(p, &state, select)?.plan()?;
    show_plan(&plan, output)?;
    if let Some(out) = out {
        write_private(out, plan.to_json().as_bytes())?;
        if output == OutputFormat::Human {
            println!(
                "Saved the plan to {}; apply it with `bmac apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if detailed && plan.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// Prints a plan: as text for people, as its `PlanReady` event (the counts) for scripts.
fn show_plan(plan: &Plan, output: OutputFormat) -> Result<()> {
    match output {
        OutputFormat::Human => print!("{}", render::plan(plan)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string(&Event::PlanReady {
                summary: plan.summary()
            })
            .into_diagnostic()?
        ),
    }
    Ok(())
}

fn read_plan(file: &Path, state: &State) -> Result<Plan> {
    let text = std::fs::read_to_string(file)
        .into_diagnostic()
        .map_err(|e| e.wrap_err(format!("cannot read the plan file {}", file.display())))?;
    let plan = Plan::from_json(&text)?;
    plan.check_fresh(state)?;
    Ok(plan)
}

/// Writes a file readable by its owner only (plans name every resource).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .into_diagnostic()?;
    f.write_all(bytes).into_diagnostic()
}

struct RunOptions {
    parallelism: usize,
    keep_going: bool,
    auto_approve: bool,
    verb: report::Verb,
}

async fn execute(
    p: &Project,
    store: Arc<bmac_core::LocalStore>,
    plan: Plan,
    run: &RunOptions,
    output: OutputFormat,
) -> Result<Exit> {
    // Scripts always get the plan's counts first, even when there is nothing to do.
    show_plan(&plan, output)?;
    if !plan.has_changes() {
        return Ok(exit::OK);
    }
    if !run.auto_approve && !confirm(run.verb.as_str())? {
        eprintln!("{} cancelled.", run.verb.as_str());
        return Ok(exit::OK);
    }
    let cancel = CancellationToken::new();
    watch_ctrl_c(cancel.clone());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let changes = plan.nodes().iter().filter(|n| n.action.is_change()).count();
    let reporter = tokio::spawn(report::consume(rx, output, changes, run.verb));
    let executor = Executor::new(p.providers()?)
        .parallelism(run.parallelism)
        .failure_policy(if run.keep_going {
            FailurePolicy::KeepGoing
        } else {
            FailurePolicy::FailFast
        })
        .cancel_token(cancel)
        .events(tx);
    let result = executor.run(plan, store.as_ref() as &dyn StateStore).await;
    drop(executor);
    let _ = reporter.await;
    let report = result?;
    Ok(match report.outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::Cancelled => exit::INTERRUPTED,
    })
}

/// Asks on the terminal; refuses to guess when stdin is not one.
fn confirm(verb: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            code = "bmac::cli::confirm",
            help = "pass --auto-approve to {verb} without a prompt",
            "stdin is not a terminal, so bmac cannot ask for confirmation"
        ));
    }
    eprint!("Do you want to {verb}? Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .into_diagnostic()?;
    Ok(answer.trim() == "yes")
}

/// First Ctrl-C: start no new steps and ask running calls to stop; the executor gives them a
/// grace period to wind down (a provider may finish the call or abandon it — the sim abandons
/// it, the change not made). Second: quit at once — the journal already holds an intent for
/// every running step, so the next apply observes them (the lock stays behind: see
/// `bmac state unlock`).
fn watch_ctrl_c(cancel: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "Interrupted: no new steps start; running steps are asked to stop (Ctrl-C again to quit now)…"
            );
            cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Quitting now. This run's lock stays behind: `bmac state list` shows its id, `bmac state unlock ID` releases it, then `bmac apply` resumes from the journal.");
                std::process::exit(i32::from(exit::INTERRUPTED.0));
            }
        }
    });
}

async fn state_cmd(p: &Project, cmd: &StateCommand, output: OutputFormat) -> Result<Exit> {
    let store = p.store()?;
    match cmd {
        StateCommand::List => {
            let state = p.state(&store).await?;
            if let Some(lock) = store.lock_info().await? {
                eprintln!("locked: {lock}");
            }
            match output {
                OutputFormat::Human => print!("{}", render::state_list(&state)),
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string(&state).into_diagnostic()?)
                }
            }
            Ok(exit::OK)
        }
        StateCommand::Show { id } => {
            let state = p.state(&store).await?;
            match render::state_show(&state, id) {
                Some(text) => {
                    print!("{text}");
                    Ok(exit::OK)
                }
                None => Err(miette!(
                    code = "bmac::state::unknown_step",
                    help = "`bmac state list` shows the steps in state",
                    "no step `{id}` in state"
                )),
            }
        }
        StateCommand::Unlock { lock_id } => {
            store.unlock(lock_id).await?;
            println!("Released lock `{lock_id}`.");
            Ok(exit::OK)
        }
    }
}

async fn drift_cmd(p: &Project, output: OutputFormat) -> Result<Exit> {
    let store = p.store()?;
    let state = p.state(&store).await?;
    let (steps, _) = p.steps()?;
    let report = bmac_core::drift::detect(&steps, &state, &p.providers()?).await?;
    match output {
        OutputFormat::Human => print!("{}", report.render()),
        OutputFormat::Json => println!("{}", serde_json::to_string(&report).into_diagnostic()?),
    }
    Ok(if report.has_drift() {
        exit::CHANGES
    } else {
        exit::OK
    })
}

//! One function per verb, each a facade call plus rendering: open the [`Stack`], call it,
//! render what it returns, and return the exit code. The recipe (where state lives, the bundle
//! and baseline checks, refresh-then-plan, the executor) is the `bmac` crate's; what is left
//! here is what a terminal needs — the prompt, Ctrl-C, the reporters, the exit codes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use bmac::core::event::{Event, Outcome};
use bmac::core::plan::GraphFormat;
use bmac::providers::Overrides;
use bmac::steps::spec::lint;
use bmac::{ApplyOptions, CancellationToken, Options, Plan, PlanOptions, Stack, StepId};
use miette::{miette, IntoDiagnostic, Result};

use crate::args::{Cli, Command, GraphKind, OutputFormat, Selection, StateCommand};
use crate::exit::{self, Exit};
use crate::{render, report};

/// Runs the command line and returns the process exit code.
pub async fn run(cli: Cli) -> Result<Exit> {
    let stack = || open(&cli);
    match &cli.command {
        Command::Validate => {
            let steps = stack()?.validate()?;
            println!("The spec is valid: {steps} steps.");
            Ok(exit::OK)
        }
        Command::Lint { deny } => lint_cmd(&stack()?, deny.is_some(), cli.output),
        Command::Plan {
            out,
            detailed_exitcode,
            select,
        } => {
            plan_cmd(
                &stack()?,
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
            let stack = stack()?;
            let run = ApplyOptions::new()
                .parallelism(*parallelism)
                .keep_going(*keep_going)
                .allow_lint_errors(*allow_lint_errors);
            match stack.preflight(&run) {
                Err(bmac::Error::Lint(refusal)) => {
                    for finding in refusal.findings {
                        eprintln!("{:?}", miette::Report::new(finding));
                    }
                    eprintln!("Refusing to apply a spec that fails the security baseline; fix the errors above or pass --allow-lint-errors.");
                    return Ok(exit::INVALID);
                }
                checked => checked?,
            }
            let plan = match planfile {
                Some(file) => stack.saved_plan(file).await?,
                None => stack.plan(&plan_options(select)?).await?,
            };
            let confirm = Confirm {
                auto_approve: *auto_approve,
                verb: report::Verb::Apply,
            };
            execute(&stack, plan, run, confirm, cli.output).await
        }
        Command::Destroy {
            auto_approve,
            parallelism,
            keep_going,
            targets,
        } => {
            let stack = stack()?;
            let select = Selection {
                targets: targets.clone(),
                ..Selection::default()
            };
            let plan = stack.plan_destroy(&plan_options(&select)?).await?;
            let run = ApplyOptions::new()
                .parallelism(*parallelism)
                .keep_going(*keep_going);
            let confirm = Confirm {
                auto_approve: *auto_approve,
                verb: report::Verb::Destroy,
            };
            execute(&stack, plan, run, confirm, cli.output).await
        }
        Command::Graph { format } => {
            // The graph marked with what an apply would do against the recorded state.
            let format = match format {
                GraphKind::Dot => GraphFormat::Dot,
                GraphKind::Mermaid => GraphFormat::Mermaid,
                GraphKind::Text => GraphFormat::Text,
            };
            print!("{}", stack()?.graph(format).await?);
            Ok(exit::OK)
        }
        Command::State(cmd) => state_cmd(&stack()?, cmd, cli.output).await,
        Command::Drift => drift_cmd(&stack()?, cli.output).await,
    }
}

/// The stack of `--spec`, its state in `--state-dir` when given; state warnings (a torn last
/// record) go to stderr.
fn open(cli: &Cli) -> Result<Stack> {
    let mut options = Options::new()
        .on_warning(|w| eprintln!("warning: {w}"))
        .cloud(Overrides {
            profile: cli.profile.clone(),
            endpoints: cli.endpoints.clone(),
        });
    if let Some(dir) = &cli.state_dir {
        options = options.state_dir(dir);
    }
    Ok(Stack::open(&cli.spec, options)?)
}

fn lint_cmd(stack: &Stack, deny_warnings: bool, output: OutputFormat) -> Result<Exit> {
    let mut findings = stack.lint();
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

/// The facade's plan options for `--target`, `--exclude` and `--refresh`.
fn plan_options(select: &Selection) -> Result<PlanOptions> {
    let mut options = PlanOptions::new().refresh(select.refresh);
    for t in &select.targets {
        options = options.target(step_id(t)?);
    }
    for x in &select.excludes {
        options = options.exclude(step_id(x)?);
    }
    Ok(options)
}

fn step_id(text: &str) -> Result<StepId> {
    StepId::new(text).map_err(|e| miette!(code = "bmac::cli::step_id", "{e}"))
}

async fn plan_cmd(
    stack: &Stack,
    out: Option<&Path>,
    detailed: bool,
    select: &Selection,
    output: OutputFormat,
) -> Result<Exit> {
    let plan = stack.plan(&plan_options(select)?).await?;
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

/// Whether to ask before a run, and what the run is called.
struct Confirm {
    auto_approve: bool,
    verb: report::Verb,
}

/// Shows the plan, asks (unless auto-approved), and runs it with Ctrl-C wired to cancel,
/// its events rendered as they come.
async fn execute(
    stack: &Stack,
    plan: Plan,
    run: ApplyOptions,
    confirm: Confirm,
    output: OutputFormat,
) -> Result<Exit> {
    // Scripts always get the plan's counts first, even when there is nothing to do.
    show_plan(&plan, output)?;
    if !plan.has_changes() {
        return Ok(exit::OK);
    }
    let verb = confirm.verb;
    if !confirm.auto_approve && !ask(verb.as_str())? {
        eprintln!("{} cancelled.", verb.as_str());
        return Ok(exit::OK);
    }
    let cancel = CancellationToken::new();
    watch_ctrl_c(cancel.clone());
    let changes = plan.nodes().iter().filter(|n| n.action.is_change()).count();
    let mut events = stack.apply_plan_stream(plan, run.cancel_token(cancel))?;
    report::consume(&mut events, output, changes, verb).await;
    let report = events.finish().await?;
    Ok(match report.outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::Cancelled => exit::INTERRUPTED,
    })
}

/// Asks on the terminal; refuses to guess when stdin is not one.
fn ask(verb: &str) -> Result<bool> {
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

async fn state_cmd(stack: &Stack, cmd: &StateCommand, output: OutputFormat) -> Result<Exit> {
    match cmd {
        StateCommand::List => {
            let state = stack.state().await?;
            if let Some(lock) = stack.lock_info().await? {
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
            let state = stack.state().await?;
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
            stack.unlock(lock_id).await?;
            println!("Released lock `{lock_id}`.");
            Ok(exit::OK)
        }
    }
}

async fn drift_cmd(stack: &Stack, output: OutputFormat) -> Result<Exit> {
    let report = stack.drift().await?;
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

//! Reporters: they consume the executor's public events and show them — a live progress view
//! on a terminal (an overall bar plus one line per running step), plain lines otherwise, or
//! JSON lines with `--output json`. They only read events; they never steer the run.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use bmac::core::event::{CancelReason, Event, Outcome, SkipReason};
use bmac::core::plan::Action;
use bmac::{RunStream, StepId};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::OutputFormat;

/// Which command the run serves; the closing line names it ("Destroy complete!").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `bmac apply`.
    Apply,
    /// `bmac destroy`.
    Destroy,
}

impl Verb {
    /// The command word: `apply`, `destroy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::Destroy => "destroy",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Verb::Apply => "Apply",
            Verb::Destroy => "Destroy",
        }
    }
}

/// Reads a run's events until its stream ends, showing them in the chosen format.
pub async fn consume(events: &mut RunStream, format: OutputFormat, total: usize, verb: Verb) {
    match format {
        OutputFormat::Json => {
            while let Some(e) = events.next_event().await {
                if let Ok(line) = serde_json::to_string(&e) {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{line}");
                    let _ = stdout.flush();
                }
            }
        }
        OutputFormat::Human if std::io::stderr().is_terminal() => {
            let mut live = Live::new(total, verb);
            while let Some(e) = events.next_event().await {
                live.event(&e);
            }
            live.finish();
        }
        OutputFormat::Human => {
            while let Some(e) = events.next_event().await {
                if let Some(line) = plain_line(&e, verb) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn doing(action: &Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update { .. } => "updating",
        Action::Replace { .. } => "replacing",
        Action::Delete => "destroying",
        Action::NoOp => "checking",
        _ => "working",
    }
}

fn done(action: &Action, changed: bool) -> &'static str {
    if !changed {
        return "unchanged";
    }
    match action {
        Action::Create => "created",
        Action::Update { .. } => "updated",
        Action::Replace { .. } => "replaced",
        Action::Delete => "destroyed",
        Action::NoOp => "unchanged",
        _ => "done",
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The one-line rendering of an event (None for events that print nothing).
pub fn plain_line(e: &Event, verb: Verb) -> Option<String> {
    Some(match e {
        Event::PlanReady { .. } => return None,
        Event::RunStarted { steps, parallelism } => {
            format!("Running {steps} steps, at most {parallelism} at a time.")
        }
        Event::StepStarted { id, action, .. } => format!("{id}: {}…", doing(action)),
        Event::StepProgress { id, message, .. } => format!("{id}: {message}"),
        Event::StepRetrying {
            id,
            attempt,
            delay,
            error,
        } => format!(
            "{id}: attempt {attempt} failed ({error}); retrying in {}",
            secs(*delay)
        ),
        Event::StepSucceeded {
            id,
            action,
            changed,
            duration,
            ..
        } => format!("{id}: {} after {}", done(action, *changed), secs(*duration)),
        Event::StepFailed {
            id,
            error,
            duration,
        } => format!("{id}: FAILED after {}: {error}", secs(*duration)),
        Event::StepSkipped { id, reason } => format!("{id}: skipped ({})", skip_text(reason)),
        Event::Cancelling { reason } => format!("Stopping: {}.", stop_text(*reason)),
        Event::RunFinished {
            outcome,
            counts,
            duration,
        } => {
            let (title, command) = (verb.title(), verb.as_str());
            let head = match outcome {
                Outcome::Succeeded => format!("{title} complete!"),
                Outcome::Failed => format!("{title} failed."),
                Outcome::Cancelled => {
                    format!("{title} cancelled; run `bmac {command}` again to resume.")
                }
            };
            format!(
                "{head} {} changed, {} unchanged, {} adopted, {} failed, {} skipped in {}.",
                counts.succeeded,
                counts.unchanged,
                counts.adopted,
                counts.failed,
                counts.skipped,
                secs(*duration)
            )
        }
        _ => return None,
    })
}

fn stop_text(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::StepFailed => {
            "a step failed, so no new steps start (--keep-going builds what does not depend on it)"
        }
        CancelReason::Requested => "interrupted, so no new steps start",
        CancelReason::GraceExpired => "the grace period ran out; running steps are abandoned",
    }
}

fn skip_text(reason: &SkipReason) -> String {
    match reason {
        SkipReason::DependencyFailed { dependency } => format!("{dependency} failed"),
        SkipReason::FailFast => "another step failed".to_owned(),
        SkipReason::Cancelled => "cancelled".to_owned(),
        _ => "not run".to_owned(),
    }
}

/// The terminal view: an overall bar plus a spinner per running step.
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    running: HashMap<StepId, ProgressBar>,
    verb: Verb,
}

impl Live {
    fn new(total: usize, verb: Verb) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Live {
            multi,
            overall,
            running: HashMap::new(),
            verb,
        }
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::StepStarted { id, action, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("{id}: {}", doing(action)));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(id.clone(), bar);
            }
            Event::StepRetrying { id, .. } | Event::StepProgress { id, .. } => {
                if let (Some(bar), Some(line)) = (self.running.get(id), plain_line(e, self.verb)) {
                    bar.set_message(line);
                }
            }
            Event::StepSucceeded { id, .. }
            | Event::StepFailed { id, .. }
            | Event::StepSkipped { id, .. } => {
                if let Some(bar) = self.running.remove(id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if let Some(line) = plain_line(e, self.verb) {
                    let _ = self.multi.println(line);
                }
                self.overall.inc(1);
            }
            Event::RunFinished { .. } | Event::Cancelling { .. } => {
                if let Some(line) = plain_line(e, self.verb) {
                    let _ = self.multi.println(line);
                }
            }
            _ => {}
        }
    }

    fn finish(self) {
        for bar in self.running.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}

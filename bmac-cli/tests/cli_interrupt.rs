//! End to end: `bmac apply` interrupted mid-run — by Ctrl-C (SIGINT) and by SIGKILL — and the
//! next `apply` finishing the job without repeating what was finished.
//!
//! The apply runs with `--output json` at a slower sim speed (`BMAC_SIM_SPEED`, so the
//! cluster alone takes a couple of seconds); the test reads its events as they come and sends
//! the signal once the cluster and a few more steps have succeeded, while the node pools are
//! still being built. Then it checks what a user relies on:
//!
//! - SIGINT: exit 130, the run reports itself cancelled, the lock is released, and the next
//!   apply starts none of the steps that had succeeded.
//! - SIGKILL: the lock stays behind and keeps the next apply out (exit 4, "looks stale", the
//!   unlock command to run); after `state unlock ID` the next apply starts none of the steps
//!   the journal holds as applied, and steps left in doubt are observed first.
//! - Both: the union of the two runs is every step, the sim's cloud log never creates a
//!   resource twice (a `put` with generation 1 per id at most once), and a final plan is
//!   empty.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{finished, ids, text, unwrapped, Sandbox};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Every step of the quickstart fixture.
const STEPS: usize = 28;
/// Slow enough that the node pools take over a second, fast enough to keep the test short.
const SLOW_SPEED: &str = "0.005";
/// Successes to wait for (the cluster among them) before sending the signal.
const SUCCESSES_BEFORE_SIGNAL: usize = 4;

/// What the interrupted run printed and how it ended.
struct Interrupted {
    events: Vec<Value>,
    status: ExitStatus,
    stderr: String,
}

/// Kills the child if the test is still waiting on it after a minute, so a hung `bmac` fails
/// the test instead of hanging the suite.
fn watchdog(pid: Pid) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !flag.load(Ordering::SeqCst) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
    done
}

/// Runs a slow `apply --output json`, sends `signal` once the cluster and a few other steps
/// have succeeded, and collects the rest of its output.
fn apply_and_interrupt(sandbox: &Sandbox, signal: Signal) -> Interrupted {
    let mut child: Child = sandbox
        .command(&["--output", "json", "apply", "--auto-approve"])
        .env("BMAC_SIM_SPEED", SLOW_SPEED)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bmac apply");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let done = watchdog(pid);
    let stdout = child.stdout.take().expect("piped stdout");

    let mut events = Vec::new();
    let mut signalled = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read bmac's stdout");
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        events.push(event);
        let succeeded = ids(&events, "step_succeeded");
        if !signalled
            && succeeded.len() >= SUCCESSES_BEFORE_SIGNAL
            && succeeded.iter().any(|id| id == "cluster")
        {
            kill(pid, signal).expect("signal bmac");
            signalled = true;
        }
    }
    let output = child.wait_with_output().expect("wait for bmac");
    done.store(true, Ordering::SeqCst);
    assert!(signalled, "the run ended before it could be interrupted");
    Interrupted {
        events,
        status: output.status,
        stderr: text(&output.stderr),
    }
}

/// Ids the sim cloud log creates (a `put` at generation 1) more than once.
fn created_twice(sandbox: &Sandbox) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for (id, generation) in sandbox.cloud_puts() {
        if generation == 1 && !seen.insert(id.clone()) {
            twice.push(id);
        }
    }
    twice
}

/// The resume: a second apply that starts none of `finished_before`, succeeds, and together
/// with the first run covers every step, with nothing created twice.
fn resume_and_check(sandbox: &Sandbox, finished_before: &BTreeSet<String>) {
    let in_doubt = sandbox.ids_with_status("in doubt");
    if !in_doubt.is_empty() {
        // The plan says it will look before it acts.
        let plan = text(&sandbox.run_expecting(&["plan"], 0).stdout);
        for id in &in_doubt {
            assert!(
                plan.lines().any(|l| l.contains(&format!(" {id} ("))
                    && l.contains("(in doubt after an interrupted run: will be observed first)")),
                "`{id}` is in doubt but the plan does not say so:\n{plan}"
            );
        }
    }

    let resumed = sandbox.apply_json();
    let started: BTreeSet<_> = ids(&resumed, "step_started").into_iter().collect();
    let repeated: Vec<_> = started.intersection(finished_before).collect();
    assert!(
        repeated.is_empty(),
        "finished steps were started again: {repeated:?}"
    );
    let end = finished(&resumed);
    assert_eq!(end["outcome"], "succeeded", "{end}");
    let counts = &end["counts"];
    let resumed_steps = counts["succeeded"].as_u64().unwrap_or_default()
        + counts["adopted"].as_u64().unwrap_or_default();
    assert_eq!(
        counts["unchanged"].as_u64().unwrap_or_default() + resumed_steps,
        STEPS as u64,
        "{end}"
    );

    let mut union = finished_before.clone();
    union.extend(ids(&resumed, "step_succeeded"));
    assert_eq!(
        union.len(),
        STEPS,
        "between them, the runs built every step"
    );
    assert_eq!(sandbox.ids_with_status("applied").len(), STEPS);
    assert_eq!(created_twice(sandbox), Vec::<String>::new());
    let cloud: BTreeSet<_> = sandbox.cloud_puts().into_iter().map(|(id, _)| id).collect();
    assert_eq!(cloud.len(), STEPS, "the cloud holds every resource");
    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 0);
}

#[test]
fn ctrl_c_stops_the_run_and_the_next_apply_finishes_it() {
    let sandbox = Sandbox::new("quickstart.toml");
    let run = apply_and_interrupt(&sandbox, Signal::SIGINT);

    assert_eq!(run.status.code(), Some(130), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("Interrupted: no new steps start"),
        "{}",
        run.stderr
    );
    assert!(
        run.events
            .iter()
            .any(|e| e["event"] == "cancelling" && e["reason"] == "requested"),
        "the run says why it stops"
    );
    let end = finished(&run.events);
    assert_eq!(end["outcome"], "cancelled");
    let succeeded: BTreeSet<_> = ids(&run.events, "step_succeeded").into_iter().collect();
    assert!(succeeded.contains("cluster"));
    assert!(
        succeeded.len() < STEPS,
        "the interrupt came before the end: {succeeded:?}"
    );
    // Every step that started also ended (succeeded, or stopped and reported): a graceful
    // stop leaves no call unaccounted for.
    let started: BTreeSet<_> = ids(&run.events, "step_started").into_iter().collect();
    let ended: BTreeSet<_> = ids(&run.events, "step_succeeded")
        .into_iter()
        .chain(ids(&run.events, "step_failed"))
        .collect();
    assert_eq!(started, ended);

    // A graceful stop releases the lock; what it finished is in state.
    let listing = sandbox.run_expecting(&["state", "list"], 0);
    assert!(
        !text(&listing.stderr).contains("locked"),
        "lock left behind"
    );
    let applied = sandbox.ids_with_status("applied");
    assert!(
        succeeded.is_subset(&applied),
        "{succeeded:?} vs {applied:?}"
    );

    resume_and_check(&sandbox, &applied);
}

#[test]
fn sigkill_leaves_a_stale_lock_and_after_unlock_the_next_apply_finishes_it() {
    let sandbox = Sandbox::new("quickstart.toml");
    let run = apply_and_interrupt(&sandbox, Signal::SIGKILL);

    assert_eq!(run.status.signal(), Some(9), "bmac was killed");
    let succeeded: BTreeSet<_> = ids(&run.events, "step_succeeded").into_iter().collect();
    assert!(succeeded.contains("cluster"));
    assert!(
        !run.events.iter().any(|e| e["event"] == "run_finished"),
        "a killed run cannot report its end"
    );

    // The killed run's lock is still there, and `state list` names it.
    let listing = sandbox.run_expecting(&["state", "list"], 0);
    let err = text(&listing.stderr);
    // (A kill during a write may also leave a torn record, reported on a line of its own.)
    let lock_id = err
        .lines()
        .find_map(|l| l.strip_prefix("locked: lock `"))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("state list names the lock: {err}"))
        .to_owned();
    assert_eq!(lock_id.len(), 16, "{err}");

    let refused = sandbox.run_expecting(&["apply", "--auto-approve"], 4);
    let refusal = unwrapped(&text(&refused.stderr));
    assert!(refusal.contains("the lock looks stale"), "{refusal}");
    assert!(
        refusal.contains(&format!("bmac state unlock {lock_id}")),
        "{refusal}"
    );

    // Everything the run reported as done is in the journal: applied, or — when the kill
    // came between the event and the result record reaching the disk — in doubt, to be
    // observed and adopted by the next run (an intent is always durable before the call).
    let applied = sandbox.ids_with_status("applied");
    let in_doubt = sandbox.ids_with_status("in doubt");
    assert!(
        succeeded
            .iter()
            .all(|id| applied.contains(id) || in_doubt.contains(id)),
        "{succeeded:?} vs applied {applied:?} / in doubt {in_doubt:?}"
    );
    assert!(applied.len() < STEPS, "the kill came before the end");

    sandbox.run_expecting(&["state", "unlock", &lock_id], 0);
    resume_and_check(&sandbox, &applied);
}

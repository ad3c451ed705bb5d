//! End to end: `bmac apply` SIGKILLed again and again while the simulated cluster is being
//! created — a long operation, as a managed cloud runs it — and every resume picking up the
//! *same* create.
//!
//! The simulated cloud accepts a cluster create at once (the resource exists, with a running
//! operation) and finishes it after the scaled latency; the provider checkpoints the
//! operation's id right after the create is accepted. The test runs `apply --target cluster`
//! at a speed where the create takes about half a minute and kills it 20 times, each after a
//! random delay, then lets one apply finish. What a user relies on:
//!
//! - the cloud's log shows exactly one create of the cluster (one `put` of generation 1 not
//!   yet done) and one operation id, however many runs were killed;
//! - every run that found the create under way waited on that operation (its progress events
//!   name it), and the operation the journal checkpointed is the one they polled;
//! - the last run completes and a plan afterwards has nothing to do.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{text, Sandbox};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The cluster create takes 600 s × 0.05 (± 20 %): 24–36 s.
const SPEED: &str = "0.05";
const KILLS: usize = 20;
/// The command every run makes.
const APPLY_CLUSTER: &[&str] = &[
    "--output",
    "json",
    "apply",
    "--auto-approve",
    "--target",
    "cluster",
];

/// A small xorshift generator: random delays without a dependency, seed printed for replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A delay in `from..to` milliseconds.
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

/// Starts `apply --target cluster --output json`, kills it after `after`, and returns the
/// progress messages it printed for the cluster.
fn apply_killed_after(sandbox: &Sandbox, after: Duration) -> Vec<String> {
    let mut child = sandbox
        .command(APPLY_CLUSTER)
        .env("BMAC_SIM_SPEED", SPEED)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bmac apply");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|e| e["event"] == "step_progress" && e["id"] == "cluster")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    let _ = kill(pid, Signal::SIGKILL);
    let status = child.wait().expect("wait for bmac");
    assert!(
        status.code().is_none(),
        "the create finished before the kill ({status:?}): the cloud is too fast for the test"
    );
    reader.join().expect("the reader thread")
}

/// The operation ids the journal checkpointed for the cluster.
fn checkpointed(sandbox: &Sandbox) -> Vec<String> {
    let journal = std::fs::read_to_string(sandbox.state_dir().join("journal.log"))
        .expect("the journal exists");
    journal
        .lines()
        .filter_map(|line| line.find('{').map(|at| &line[at..]))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|r| r["record"] == "checkpoint" && r["id"] == "cluster")
        .map(|r| {
            r["data"]["operation"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The cluster's `put` lines in the cloud log.
fn cluster_puts(sandbox: &Sandbox) -> Vec<Value> {
    std::fs::read_to_string(sandbox.state_dir().join("sim-cloud.log"))
        .expect("the sim persists its cloud")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|op| op["op"] == "put" && op["id"] == "cluster")
        .collect()
}

#[test]
fn twenty_kills_during_a_cluster_create_resume_the_same_create() {
    let sandbox = Sandbox::new("quickstart.toml");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("kill delays seeded with {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut polled = Vec::new();
    for _ in 0..KILLS {
        // Some kills land before the create is accepted, most while it runs.
        polled.push(apply_killed_after(&sandbox, rng.millis(20, 900)));
        sandbox.unlock_stale();
    }
    assert!(
        started.elapsed() < Duration::from_secs(24),
        "the kills must all land during the create"
    );

    let puts = cluster_puts(&sandbox);
    let creates: Vec<&Value> = puts.iter().filter(|p| p["generation"] == 1).collect();
    let operations: BTreeSet<&str> = puts
        .iter()
        .filter_map(|p| p["operation"]["id"].as_str())
        .collect();
    assert_eq!(operations.len(), 1, "one create operation: {puts:?}");
    let operation = operations.into_iter().next().unwrap().to_owned();
    assert!(
        creates.iter().all(|p| p["operation"]["done"] != true),
        "{creates:?}"
    );
    assert_eq!(creates.len(), 1, "the cluster was created once: {puts:?}");
    assert_eq!(
        checkpointed(&sandbox),
        std::slice::from_ref(&operation),
        "checkpointed once"
    );

    // Every run that found the create under way waited on that operation.
    let waited: Vec<&String> = polled.iter().flatten().collect();
    assert!(
        waited.len() >= KILLS / 2,
        "most runs waited on the create: {polled:?}"
    );
    for message in &waited {
        assert!(
            message.contains(&operation),
            "{message} does not poll {operation}"
        );
    }

    // Let the last run finish: it waits out what is left of the same create.
    let last = sandbox
        .bmac(APPLY_CLUSTER)
        .env("BMAC_SIM_SPEED", SPEED)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run bmac");
    assert_eq!(last.status.code(), Some(0), "{}", text(&last.stderr));
    let puts = cluster_puts(&sandbox);
    assert_eq!(puts.iter().filter(|p| p["generation"] == 1).count(), 1);
    assert!(puts
        .iter()
        .all(|p| p["operation"]["id"] == operation.as_str()));
    assert!(sandbox.ids_with_status("applied").contains("cluster"));
    sandbox.run_expecting(&["plan", "--detailed-exitcode", "--target", "cluster"], 0);
}

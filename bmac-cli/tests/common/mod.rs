//! What every CLI test shares: a [`Sandbox`] (a temporary directory holding one spec, its
//! `.bmac` state and the sim's persisted cloud), a `bmac` command that runs there with a clean
//! environment, readers for `--output json` events and the sim's cloud log, and the insta
//! filters that mask what changes from run to run (durations, lock ids, pids, hosts, times,
//! fingerprints).
//!
//! Every test builds its own sandbox, so tests run in parallel without sharing state. The
//! spec is always `bmac.toml` in the sandbox and commands run with the sandbox as their
//! working directory, so diagnostics name `bmac.toml` and no temporary path reaches a
//! snapshot. Human output is captured from pipes, i.e. in plain-line mode: miette renders
//! without colour at 80 columns, the reporter prints one line per event.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Variables a developer's shell may set that would change what bmac does or how it renders
/// (`BMAC_*`, miette's `NO_GRAPHICS`, hyperlinks); tests never inherit them.
const BMAC_ENV: &[&str] = &[
    "BMAC_SPEC",
    "BMAC_STATE_DIR",
    "BMAC_SIM_FAULTS",
    "BMAC_SIM_SEED",
    "BMAC_SIM_SPEED",
    "BMAC_SIM_CONSISTENCY_MS",
    "BMAC_SIM_CLOUD",
    "NO_GRAPHICS",
    "FORCE_HYPERLINK",
];

/// The fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture spec's text.
pub fn fixture(name: &str) -> String {
    let path = fixtures().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// A temporary project: `bmac.toml` plus whatever bmac writes beside it.
pub struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    /// A sandbox whose spec is the fixture `name`.
    pub fn new(name: &str) -> Sandbox {
        Sandbox::with_spec(&fixture(name))
    }

    /// A sandbox whose spec is `text`.
    pub fn with_spec(text: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("bmac-cli-test")
            .tempdir()
            .expect("create a temporary directory");
        let sandbox = Sandbox { dir };
        sandbox.write_spec(text);
        sandbox
    }

    /// The sandbox directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The spec file.
    pub fn spec(&self) -> PathBuf {
        self.path().join("bmac.toml")
    }

    /// The state directory (`.bmac` beside the spec, as `[state] path` says).
    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".bmac")
    }

    /// Replaces the spec.
    pub fn write_spec(&self, text: &str) {
        std::fs::write(self.spec(), text).expect("write bmac.toml");
    }

    /// Replaces the one occurrence of `from` in the spec with `to`; a fixture that no longer
    /// contains `from` fails the test here rather than silently testing the unedited spec.
    pub fn edit_spec(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.spec()).expect("read bmac.toml");
        assert_eq!(
            text.matches(from).count(),
            1,
            "the spec should contain `{from}` exactly once"
        );
        self.write_spec(&text.replacen(from, to, 1));
    }

    /// `bmac ARGS…` in the sandbox as a plain [`std::process::Command`] (for tests that
    /// spawn it and signal it): `--spec bmac.toml` unless ARGS name a spec, and a clean
    /// environment — no inherited `BMAC_*`, no colour, a fixed user name.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bmac"));
        cmd.current_dir(self.path());
        if !args.contains(&"--spec") {
            cmd.args(["--spec", "bmac.toml"]);
        }
        // COLUMNS is fixed for any renderer that reads it; miette measures the terminal
        // instead, and a pipe has none, so its reports wrap at 80 columns.
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("USER", "tester");
        for var in BMAC_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// [`Sandbox::command`] under assert_cmd, with an empty stdin that is not a terminal.
    pub fn bmac(&self, args: &[&str]) -> Command {
        let mut cmd = Command::from_std(self.command(args));
        cmd.write_stdin("");
        cmd
    }

    /// Runs `bmac ARGS…` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.bmac(args).output().expect("run bmac")
    }

    /// Runs `bmac ARGS…`, asserting exit code `code`; returns the output.
    pub fn run_expecting(&self, args: &[&str], code: i32) -> Output {
        self.run_with_env(args, &[], code)
    }

    /// Runs `bmac ARGS…` with extra environment variables (`BMAC_SIM_FAULTS`, …), asserting
    /// exit code `code`; returns the output.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> Output {
        let mut cmd = self.bmac(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.output().expect("run bmac");
        assert_eq!(
            out.status.code(),
            Some(code),
            "`bmac {}` should exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr),
        );
        out
    }

    /// `apply --auto-approve --output json`, asserting success; returns its events.
    pub fn apply_json(&self) -> Vec<Value> {
        let out = self.run_expecting(&["--output", "json", "apply", "--auto-approve"], 0);
        events(&out.stdout)
    }

    /// The dependency edges `(step, dependency)` from `bmac graph --format text`.
    pub fn dependency_edges(&self) -> Vec<(String, String)> {
        let out = self.run_expecting(&["graph", "--format", "text"], 0);
        graph_edges(&text(&out.stdout))
    }

    /// The step ids in state, from `bmac state list`.
    pub fn state_ids(&self) -> BTreeSet<String> {
        let out = self.run_expecting(&["state", "list"], 0);
        let listing = text(&out.stdout);
        if listing.trim() == "The state is empty." {
            return BTreeSet::new();
        }
        listing
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// The steps `state list` shows with this status (`applied`, `in doubt`).
    pub fn ids_with_status(&self, status: &str) -> BTreeSet<String> {
        let out = self.run_expecting(&["state", "list"], 0);
        text(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(&format!("  {status}")))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// Breaks the lock a killed run left behind, if it got as far as taking one: `bmac state
    /// list` names it on stderr (`locked: lock `ID` …`), `bmac state unlock ID` releases it —
    /// what the interrupted run's message tells a user to do.
    pub fn unlock_stale(&self) {
        let listing = self.run_expecting(&["state", "list"], 0);
        let err = text(&listing.stderr);
        if let Some(lock) = err
            .lines()
            .find_map(|l| l.strip_prefix("locked: lock `"))
            .and_then(|rest| rest.split('`').next())
        {
            self.run_expecting(&["state", "unlock", lock], 0);
        }
    }

    /// The `put` operations of the sim's persisted cloud, as `(id, generation)`, in order.
    pub fn cloud_puts(&self) -> Vec<(String, u64)> {
        let log = std::fs::read_to_string(self.state_dir().join("sim-cloud.log"))
            .expect("the sim persists its cloud in .bmac/sim-cloud.log");
        log.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).expect("a cloud log line is JSON"))
            .filter(|op| op["op"] == "put")
            .map(|op| {
                let id = op["id"].as_str().expect("a put names its id").to_owned();
                let generation = op["generation"].as_u64().expect("a put has a generation");
                (id, generation)
            })
            .collect()
    }
}

/// Bytes as text (bmac writes UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A miette report with its 80-column wrapping undone: every line's indentation and `│`
/// gutter dropped and the lines joined by single spaces, so a message can be searched for
/// whole wherever the renderer broke it.
pub fn unwrapped(report: &str) -> String {
    report
        .lines()
        .map(|l| l.trim_start_matches([' ', '│']).trim_end())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--output json` lines as values; a line that is not JSON fails the test.
pub fn events(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The ids of the events named `kind` (`step_started`, `step_succeeded`, …), in order.
pub fn ids(events: &[Value], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .map(|e| {
            e["id"]
                .as_str()
                .expect("a step event names its step")
                .to_owned()
        })
        .collect()
}

/// The one `run_finished` event.
pub fn finished(events: &[Value]) -> &Value {
    let mut all = events.iter().filter(|e| e["event"] == "run_finished");
    let last = all.next().expect("the run reports run_finished");
    assert!(all.next().is_none(), "a run finishes once");
    last
}

/// Position of each step's first event of `kind`.
pub fn positions(events: &[Value], kind: &str) -> BTreeMap<String, usize> {
    let mut at = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e["event"] == kind {
            if let Some(id) = e["id"].as_str() {
                at.entry(id.to_owned()).or_insert(i);
            }
        }
    }
    at
}

/// Edges from the text graph: each line is `[+] id (kind)[ ← dep, dep…]`.
pub fn graph_edges(graph: &str) -> Vec<(String, String)> {
    let mut edges = Vec::new();
    for line in graph.lines() {
        let line = line.trim_start_matches(|c: char| !c.is_alphanumeric());
        let Some(id) = line.split_whitespace().next() else {
            continue;
        };
        if let Some((_, deps)) = line.split_once(" ← ") {
            for dep in deps.split(", ") {
                edges.push((id.to_owned(), dep.trim().to_owned()));
            }
        }
    }
    edges
}

/// The insta filters: durations, long operations' ids and progress times, lock ids, pids, hosts, users, times and fingerprints.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\b\d+\.\ds\b", "[T]"),
        (
            r"CREATING \(sim-op-[0-9a-f]{12}\), [0-9ms]+",
            "CREATING ([OPERATION]), [T]",
        ),
        (r"\b[0-9a-f]{64}\b", "[FINGERPRINT]"),
        (r"\b[0-9a-f]{16}\b", "[LOCK]"),
        (r"pid \d+", "pid [PID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"bmac-cli-test\w+", "[SANDBOX]"),
    ]
}

/// Snapshot `value` with times and ids masked ([`filters`]).
#[macro_export]
macro_rules! assert_masked_snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ filters => $crate::common::filters() }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

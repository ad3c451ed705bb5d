//! The bmac side of the CLI end-to-end tests: a temporary directory holding a copy of
//! `examples/existing-cluster.toml` (edited per test, so tests use their own names) and
//! `examples/bundles/`, runs of the real `bmac` binary in it, and the JSON-lines events of
//! `--output json`.
//!
//! bmac finds the cluster through the inherited `$KUBECONFIG` (the spec names the context);
//! its state lives in `.bmac` beside the copied spec, so every test starts with none.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// Replaces the one occurrence of `from` in `text`; panics when there is not exactly one, so a
/// changed example fails loudly instead of silently testing something else.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(
        n, 1,
        "expected exactly one `{from}` in the example spec, found {n}"
    );
    text.replacen(from, to, 1)
}

/// A copied example project.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// One finished run of `bmac`.
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// What a finished process printed and how it exited.
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect_code(&self, code: i32, what: &str) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The JSON events printed with `--output json`, one per stdout line.
    pub fn events(&self) -> Vec<Value> {
        events_of(&self.stdout)
    }
}

/// Parses JSON lines; a line that is not JSON fails the test (`--output json` promises JSON).
pub fn events_of(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}")))
        .collect()
}

/// The step ids of events of one type (`step_started`, `step_succeeded`, …).
pub fn ids(events: &[Value], event: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["event"] == event)
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// The outcome of the `run_finished` event, if there was one.
pub fn outcome(events: &[Value]) -> Option<String> {
    events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .and_then(|e| e["outcome"].as_str().map(str::to_owned))
}

/// The `bmac` binary cargo built for this test (with the `kube` feature, on by default).
pub fn bmac_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bmac"))
}

/// Panics with the reason when a run's stderr shows a bmac built without the kube provider:
/// a shared target directory where a feature-less build replaced the binary mid-test would
/// otherwise look like a bmac bug.
fn check_build(stderr: &str) {
    assert!(
        !stderr.contains("bmac::setup::feature_missing"),
        "the bmac binary at {} has no kube provider (was it rebuilt with `--no-default-features` \
         while this test ran?):\n{stderr}",
        bmac_bin().display()
    );
}

impl Workspace {
    /// Copies the example spec (through `edit`) and its bundles into a fresh directory.
    pub fn new(edit: impl FnOnce(String) -> String) -> Workspace {
        let dir = tempfile::tempdir().expect("temporary directory");
        let bundles = dir.path().join("bundles");
        std::fs::create_dir(&bundles).expect("bundles directory");
        for entry in std::fs::read_dir(Path::new(EXAMPLES).join("bundles")).expect("examples") {
            let entry = entry.expect("bundle entry");
            std::fs::copy(entry.path(), bundles.join(entry.file_name())).expect("copy bundle");
        }
        let text = std::fs::read_to_string(Path::new(EXAMPLES).join("existing-cluster.toml"))
            .expect("examples/existing-cluster.toml");
        let ws = Workspace { dir };
        ws.write_spec(&edit(text));
        ws
    }

    /// The spec's path.
    pub fn spec(&self) -> PathBuf {
        self.dir.path().join("existing-cluster.toml")
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The spec's text.
    pub fn spec_text(&self) -> String {
        std::fs::read_to_string(self.spec()).expect("read spec")
    }

    /// Replaces the spec.
    pub fn write_spec(&self, text: &str) {
        std::fs::write(self.spec(), text).expect("write spec");
    }

    /// Edits the spec.
    pub fn edit_spec(&self, edit: impl FnOnce(String) -> String) {
        self.write_spec(&edit(self.spec_text()));
    }

    /// A `bmac --spec SPEC ARGS…` command, isolated from the caller's bmac settings.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bmac_bin());
        cmd.current_dir(self.dir.path())
            .env_remove("BMAC_SPEC")
            .env_remove("BMAC_STATE_DIR")
            .arg("--spec")
            .arg(self.spec())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `bmac ARGS…` to completion (off the async runtime's threads, so background tasks
    /// such as the namespace finalizer keep running).
    pub async fn bmac(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run bmac");
        let run = Run::from_output(out);
        check_build(&run.stderr);
        run
    }

    /// Starts `bmac --output json ARGS…`, reads its events as they come and SIGKILLs it once
    /// `kill_after` steps have reported `step_succeeded` (no grace, no cleanup: a crash).
    /// Returns the events seen before the kill, and whether the run had already finished.
    pub async fn bmac_killed(&self, args: &[&str], kill_after: usize) -> (Vec<Value>, bool) {
        let mut cmd = self.command(&[&["--output", "json"], args].concat());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start bmac");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut seen = Vec::new();
            let mut succeeded = 0;
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read bmac's stdout");
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                if event["event"] == "step_succeeded" {
                    succeeded += 1;
                }
                seen.push(event);
                if succeeded >= kill_after {
                    // std's kill is SIGKILL on Unix.
                    child.kill().expect("SIGKILL bmac");
                    break;
                }
            }
            let status = child.wait().expect("reap bmac");
            let finished = status.success() && outcome(&seen).is_some();
            (seen, finished)
        })
        .await
        .expect("join")
    }
}

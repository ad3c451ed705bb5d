//! The parent side of the crash tests: starting a child (this same test binary, re-executed
//! with only the ignored `crash_child` entry selected), following its milestone lines, and
//! killing it with SIGKILL.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::child::{ENV_CHILD, ENV_DIR, ENV_HANG, ENV_SCENARIO, MARK};
use super::cloud::Hang;
use super::scenario::Scenario;

/// The name of the test function that is the child's entry point.
pub const CHILD_TEST: &str = "crash_child";

/// A running child process.
pub struct ChildRun {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Ended {
    /// Its process id.
    pub pid: u32,
    /// Its exit status.
    pub status: ExitStatus,
    /// Its milestone lines, prefix removed.
    pub lines: Vec<String>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Ended {
    /// Whether SIGKILL ended it.
    pub fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }

    /// The first milestone line starting with `word`.
    pub fn line(&self, word: &str) -> Option<&str> {
        self.lines
            .iter()
            .map(String::as_str)
            .find(|l| l.split(' ').next() == Some(word))
    }

    /// The value of `key=` in the first milestone line starting with `word`.
    pub fn field(&self, word: &str, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.line(word)?
            .split(' ')
            .find_map(|kv| kv.strip_prefix(prefix.as_str()))
    }

    /// A description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "child pid {} ended with {}\n-- milestones --\n{}\n-- stderr --\n{}",
            self.pid,
            self.status,
            self.lines.join("\n"),
            self.stderr
        )
    }
}

impl ChildRun {
    /// Starts a child applying `scenario` in `dir`, optionally hanging in one step's apply.
    pub fn spawn(dir: &Path, scenario: Scenario, hang: Option<&Hang>) -> ChildRun {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let mut command = Command::new(exe);
        command
            .args([
                CHILD_TEST,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_CHILD, "1")
            .env(ENV_DIR, dir)
            .env(ENV_SCENARIO, scenario.encode())
            .env_remove(ENV_HANG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(hang) = hang {
            command.env(ENV_HANG, hang.encode());
        }
        let mut child = command.spawn().expect("the child process starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print `test crash_child ... ` before the child's first line.
                if let Some(at) = line.find(MARK) {
                    if tx.send(line[at + MARK.len()..].trim().to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        ChildRun {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a milestone line starting with `word`; `false` if the child
    /// stopped talking (exited) or the time ran out first.
    pub fn wait_for(&mut self, word: &str, timeout: Duration) -> bool {
        if self.seen.iter().any(|l| l.starts_with(word)) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.starts_with(word);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// SIGKILLs the child (if it is still running) and reaps it.
    pub fn kill(mut self) -> Ended {
        // `Child::kill` sends SIGKILL on Unix; it fails only if the child was already reaped.
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for the child to exit by itself, SIGKILLing it after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return self.finish(),
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("waiting for the child: {e}"),
            }
        }
        let _ = self.child.kill();
        let ended = self.finish();
        panic!(
            "the child did not finish within {timeout:?}: {}",
            ended.describe()
        );
    }

    fn finish(mut self) -> Ended {
        let pid = self.child.id();
        let status = self.child.wait().expect("the child can be reaped");
        // The reader thread ends when the pipe closes, so this drains every line.
        self.seen.extend(self.lines.iter());
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ended {
            pid,
            status,
            lines: self.seen,
            stderr,
        }
    }
}

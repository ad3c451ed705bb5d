//! Who holds a state lock: [`LockInfo`] (id, holder, pid, host, start time) and the
//! [`LockRequest`] a run makes to take one — shared by every backend.
//!
//! The lock is advisory between bmac processes; the id is what a user names to break a stale
//! lock (`bmac state unlock ID`), so a mistyped command cannot break someone else's.
//!
//! Staleness is only ever *reported* ([`LockInfo::looks_stale`]): a holder on this host whose
//! process is gone. Judging a lock by its age or breaking it automatically would let two
//! applies run at once after a long pause (a suspended laptop, a slow CI runner), so bmac
//! leaves that decision to a person. Times are formatted here ([`rfc3339`]) rather than
//! through a date crate: the lock only ever needs "now, in UTC, to the second".

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a run says about itself when it asks for the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    /// What the holder is doing (`apply`, `destroy`).
    pub operation: String,
    /// Who: user name or CI job.
    pub holder: String,
}

impl LockRequest {
    /// A request for `operation` by the current user.
    pub fn new(operation: impl Into<String>) -> Self {
        let holder = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        LockRequest {
            operation: operation.into(),
            holder,
        }
    }
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique id; naming it is the only way to break the lock.
    pub id: String,
    /// What the holder is doing.
    pub operation: String,
    /// Who holds it.
    pub holder: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When it was taken, RFC 3339 UTC.
    pub started: String,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock `{}` ({} by {} on {}, pid {}, since {})",
            self.id, self.operation, self.holder, self.host, self.pid, self.started
        )
    }
}

impl LockInfo {
    /// A lock for `request`, held by this process from now on: a fresh random id (16 hex
    /// digits, short enough to type into `bmac state unlock`), this pid and host, and the
    /// current time.
    pub fn new(request: LockRequest) -> Self {
        LockInfo {
            id: format!("{:016x}", rand::random::<u64>()),
            operation: request.operation,
            holder: request.holder,
            pid: std::process::id(),
            host: local_host(),
            started: rfc3339(SystemTime::now()),
        }
    }

    /// Whether the holder looks dead: it ran on this host and its process is gone.
    ///
    /// Only a lock taken on this host can be judged (a pid means nothing elsewhere), and only
    /// where `/proc` shows processes; anywhere else the answer is `false`. A pid reused by an
    /// unrelated process also reads as alive — the check errs towards "held". Being stale does
    /// not break a lock: the user still names its id.
    pub fn looks_stale(&self) -> bool {
        if self.host != local_host() || !Path::new("/proc/self").exists() {
            return false;
        }
        !Path::new("/proc").join(self.pid.to_string()).exists()
    }
}

/// This machine's host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `unknown`.
pub fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `time` as RFC 3339 in UTC to the second (`2024-02-29T12:34:56Z`); times before the Unix
/// epoch print as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in 400-year
/// eras of 146 097 days whose years start on 1 March (so the leap day ends a year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month from March = 0
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn formats_utc_times_as_rfc3339() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_new_lock_names_this_process() {
        let info = LockInfo::new(LockRequest {
            operation: "apply".into(),
            holder: "ci".into(),
        });
        assert_eq!(info.id.len(), 16);
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.host, local_host());
        assert!(info.started.ends_with('Z'));
        assert!(!info.looks_stale(), "this process is alive");
        let other = LockInfo::new(LockRequest::new("apply"));
        assert_ne!(info.id, other.id);
    }

    #[test]
    fn a_dead_pid_on_this_host_looks_stale_but_not_elsewhere() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        // Pids are capped well below u32::MAX (pid_max ≤ 2^22), so this one never runs.
        let mut info = LockInfo::new(LockRequest::new("apply"));
        info.pid = u32::MAX - 1;
        assert!(info.looks_stale());
        info.host = format!("{}-elsewhere", info.host);
        assert!(!info.looks_stale(), "a remote pid cannot be judged");
    }
}

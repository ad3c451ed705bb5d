//! Who holds a state lock: [`LockInfo`] (id, holder, pid, host, start time) and the
//! [`LockRequest`] a run makes to take one.
//!
//! The lock is advisory between bmac processes; the id is what a user names to break a stale
//! lock (`bmac state unlock ID`), so a mistyped command cannot break someone else's.

use std::fmt;

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

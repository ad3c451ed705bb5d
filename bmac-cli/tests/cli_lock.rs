//! The state lock through the CLI: a run holding the lock keeps `apply` and `destroy` out with
//! exit code 4 and an error naming the holder and the command that breaks the lock; `state
//! list` shows who holds it; `state unlock` needs the exact id.
//!
//! The holder here is this test process, taking the lock through the library
//! (`LocalStore` + `StateStore::lock`) exactly as a concurrent `bmac apply` would — alive, so
//! the lock does not look stale. The lock a killed run leaves behind is covered by
//! `cli_interrupt.rs`.

mod common;

use bmac_core::state::{LockInfo, LockRequest};
use bmac_core::{LocalStore, StateStore};
use common::{text, unwrapped, Sandbox};

/// Takes the lock on the sandbox's state as `apply` by `runner7`.
fn hold_lock(sandbox: &Sandbox) -> LockInfo {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = LocalStore::open(sandbox.state_dir()).expect("open the state");
        let request = LockRequest {
            operation: "apply".to_owned(),
            holder: "runner7".to_owned(),
        };
        store.lock(request).await.expect("take the lock")
    })
}

#[test]
fn a_held_lock_keeps_apply_and_destroy_out_until_unlocked_by_id() {
    let sandbox = Sandbox::new("quickstart.toml");
    let lock = hold_lock(&sandbox);

    let refused = sandbox.run_expecting(&["apply", "--auto-approve"], 4);
    let err = unwrapped(&text(&refused.stderr));
    assert!(err.contains(&format!("lock `{}`", lock.id)), "{err}");
    assert!(err.contains("apply by runner7"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(
        !err.contains("looks stale"),
        "the holder is alive, so the lock is not stale: {err}"
    );
    assert!(
        err.contains(&format!("bmac state unlock {}", lock.id)),
        "{err}"
    );
    assert!(sandbox.state_ids().is_empty(), "nothing was applied");
    assert!(
        !sandbox.state_dir().join("sim-cloud.log").exists() || sandbox.cloud_puts().is_empty(),
        "nothing was built"
    );

    // Planning reads state without taking the lock; so does a destroy with nothing to do.
    let empty = sandbox.run_expecting(&["destroy", "--auto-approve"], 0);
    assert_eq!(
        text(&empty.stdout),
        "No changes. The cluster matches the spec.\n"
    );
    sandbox.run_expecting(&["plan", "--detailed-exitcode"], 2);

    let listing = sandbox.run_expecting(&["state", "list"], 0);
    let err = text(&listing.stderr);
    assert!(
        err.starts_with(&format!("locked: lock `{}` (apply by runner7", lock.id)),
        "{err}"
    );

    let wrong = sandbox.run_expecting(&["state", "unlock", "0123456789abcdef"], 1);
    let err = unwrapped(&text(&wrong.stderr));
    assert!(err.contains("bmac::state::lock_mismatch"), "{err}");
    assert!(
        err.contains(&format!("the lock held is `{}`", lock.id)),
        "{err}"
    );
    sandbox.run_expecting(&["apply", "--auto-approve"], 4);

    let released = sandbox.run_expecting(&["state", "unlock", &lock.id], 0);
    assert_eq!(
        text(&released.stdout),
        format!("Released lock `{}`.\n", lock.id)
    );
    let listing = sandbox.run_expecting(&["state", "list"], 0);
    assert_eq!(text(&listing.stderr), "", "no lock is reported any more");

    let applied = sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    assert!(text(&applied.stderr).contains("Apply complete! 28 changed"));
    let after = sandbox.run_expecting(&["state", "list"], 0);
    assert_eq!(
        text(&after.stderr),
        "",
        "a finished apply releases its lock"
    );
}

#[test]
fn destroy_with_something_to_destroy_is_locked_out_too() {
    let sandbox = Sandbox::new("quickstart.toml");
    sandbox.run_expecting(&["apply", "--auto-approve"], 0);
    let lock = hold_lock(&sandbox);
    let refused = sandbox.run_expecting(&["destroy", "--auto-approve"], 4);
    assert!(text(&refused.stderr).contains(&lock.id));
    assert_eq!(sandbox.state_ids().len(), 28, "nothing was destroyed");
}

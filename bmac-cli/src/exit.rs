//! Exit codes, documented in the README, and how errors map onto them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (for `plan --detailed-exitcode` and `drift`: nothing to change) |
//! | 1    | a step failed, a saved plan is stale or damaged, or an error not listed below |
//! | 2    | `plan --detailed-exitcode`: changes pending; `drift`: drift found |
//! | 3    | the spec is invalid, fails lint, or its graph is (cycle, unknown dependency) |
//! | 4    | the state is locked by another run |
//! | 130  | interrupted (Ctrl-C); `bmac apply` resumes |

use bmac::core::exec::ExecError;
use bmac::core::state::StateError;
use bmac::core::PlanError;
use bmac::Error;

/// A process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

/// Success.
pub const OK: Exit = Exit(0);
/// A step failed, or another error.
pub const FAILED: Exit = Exit(1);
/// Changes pending / drift found.
pub const CHANGES: Exit = Exit(2);
/// Invalid spec, lint errors, invalid graph.
pub const INVALID: Exit = Exit(3);
/// State locked.
pub const LOCKED: Exit = Exit(4);
/// Interrupted.
pub const INTERRUPTED: Exit = Exit(130);

/// The exit code for an error: the facade's [`Error`] by its variant, anything else 1.
pub fn for_error(report: &miette::Report) -> Exit {
    report
        .downcast_ref::<Error>()
        .map_or(FAILED, for_stack_error)
}

/// A stale or damaged saved plan is not an invalid spec: the spec may be fine and a fresh
/// `bmac plan` succeeds, so it exits 1 (as Terraform does), not 3.
fn for_stack_error(error: &Error) -> Exit {
    let locked = |e: &StateError| matches!(e, StateError::Locked { .. });
    match error {
        Error::Spec(_) | Error::Catalogue(_) | Error::Lint(_) => INVALID,
        Error::Plan(e) if !matches!(e, PlanError::Stale(_) | PlanError::InvalidFile(_)) => INVALID,
        Error::State(e) if locked(e) => LOCKED,
        // The executor reports a held lock as its own `Locked` variant (`From<StateError>`
        // converts it); a `State` variant carrying one is matched too, for errors built by hand.
        Error::Exec(e) => match e.as_ref() {
            ExecError::Locked { .. } => LOCKED,
            ExecError::State(e) if locked(e) => LOCKED,
            _ => FAILED,
        },
        _ => FAILED,
    }
}

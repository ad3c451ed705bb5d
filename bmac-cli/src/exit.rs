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

use bmac_core::exec::ExecError;
use bmac_core::spec::SpecError;
use bmac_core::state::StateError;
use bmac_core::PlanError;

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

/// The exit code for an error.
///
/// A stale or damaged saved plan is not an invalid spec: the spec may be fine and a fresh
/// `bmac plan` succeeds, so it exits 1 (as Terraform does), not 3.
pub fn for_error(report: &miette::Report) -> Exit {
    let invalid_plan =
        |e: &PlanError| !matches!(e, PlanError::Stale(_) | PlanError::InvalidFile(_));
    if report.downcast_ref::<SpecError>().is_some()
        || report.downcast_ref::<PlanError>().is_some_and(invalid_plan)
        || report
            .downcast_ref::<bmac_steps::CatalogueError>()
            .is_some()
    {
        return INVALID;
    }
    let locked = |e: &StateError| matches!(e, StateError::Locked { .. });
    if report.downcast_ref::<StateError>().is_some_and(locked) {
        return LOCKED;
    }
    // The executor reports a held lock as its own `Locked` variant (`From<StateError>`
    // converts it); a `State` variant carrying one is matched too, for errors built by hand.
    match report.downcast_ref::<ExecError>() {
        Some(ExecError::Locked { .. }) => return LOCKED,
        Some(ExecError::State(e)) if locked(e) => return LOCKED,
        _ => {}
    }
    FAILED
}

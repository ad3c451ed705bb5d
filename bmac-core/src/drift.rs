//! Drift: what really exists, compared with what bmac last applied and with the spec.
//!
//! [`detect`] plans the spec against state (so steps come in dependency order, each with its
//! last applied config), then asks each applied step's provider to `observe` it — with inputs
//! resolved from what its upstream steps *observed*, so a secret that state keeps only as a
//! digest is re-read rather than needed. For each step it reports:
//! - **moved fields**: fields (JSON pointers) of the last applied config whose live value
//!   differs. By the provider contract ([`Observed::Present`]) a field left out of what was
//!   observed is one the provider cannot see or does not manage, so only fields present on both
//!   sides are compared; a managed value removed by hand (a deleted label) is reported by the
//!   provider as an explicit `null`, which is drift. Fields that exist only live (added by other
//!   managers) are not bmac's and are ignored. An array whose length changed moved as a whole.
//!   This is the same rule the executor uses to decide whether an in-doubt step exists as
//!   desired (`plan::diff::moved_pointers`), so the two never disagree;
//! - **missing**: the resource is gone;
//! - **pending**: fields where the spec differs from the last apply (not drift: `apply` will
//!   change them anyway), so a reader sees both at once.
//!
//! Observing runs through the executor ([`Executor::drift`], [`Executor::refresh`], module
//! `exec::refresh`): each step is observed as soon as the steps it depends on have been, under
//! the executor's parallelism cap and the providers' concurrency groups, each observe retried
//! with backoff and timed out as a run's provider calls are, and the whole stopped by the
//! executor's cancellation. A step still being changed ([`Observed::Pending`]) is reported in
//! progress, not waited for. [`detect`] and [`refresh`] here are the same with an executor of
//! default settings.
//!
//! [`refresh`] folds the drift into a copy of the state, which is what `plan` and `apply`
//! plan against by default: a field moved by hand becomes an update back to the spec, a
//! resource deleted by hand is created again.
//!
//! [`Executor::drift`]: crate::Executor::drift
//! [`Executor::refresh`]: crate::Executor::refresh

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::exec::{Executor, StepError};
use crate::plan::{changed_fields, moved_pointers, PlanError};
use crate::provider::{Observed, Prior, ProviderError, Providers};
use crate::state::State;
use crate::step::{Fingerprint, Outputs, Step, StepId};

/// One field that moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovedField {
    /// JSON pointer into the step's config.
    pub field: String,
    /// The value bmac applied.
    pub applied: Option<Value>,
    /// The value that exists now.
    pub actual: Option<Value>,
}

/// What was found for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepDrift {
    /// Exists as applied.
    InSync,
    /// Exists, with fields changed outside bmac.
    Drifted {
        /// The fields that moved.
        fields: Vec<MovedField>,
    },
    /// Was applied, no longer exists.
    Missing,
    /// Never applied (a plain `apply` creates it).
    NotApplied,
    /// Exists, but is still being created, updated or deleted (what the provider says); the
    /// next `apply` waits for it before deciding anything.
    InProgress {
        /// The provider's status text.
        #[serde(rename = "provider_status")]
        status: String,
    },
    /// The provider could not observe it.
    Unobservable {
        /// Why.
        error: String,
    },
}

/// The drift of one step, with the spec changes pending for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The step.
    pub id: StepId,
    /// Its kind.
    pub kind: String,
    /// What was found.
    #[serde(flatten)]
    pub drift: StepDrift,
    /// Fields where the spec differs from the last apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// The drift of every step in the spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftReport {
    /// Per step, in dependency order.
    pub steps: Vec<StepReport>,
}

impl DriftReport {
    /// Whether anything moved or went missing outside bmac.
    pub fn has_drift(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.drift, StepDrift::Drifted { .. } | StepDrift::Missing))
    }

    /// Text for people: one block per step that is not in sync.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            match &s.drift {
                StepDrift::InSync if s.pending.is_empty() => continue,
                StepDrift::InSync => {}
                StepDrift::Drifted { fields } => {
                    let _ = writeln!(out, "~ {} ({}) changed outside bmac:", s.id, s.kind);
                    for f in fields {
                        let _ = writeln!(
                            out,
                            "    {}: applied {} → now {}",
                            f.field,
                            show(f.applied.as_ref()),
                            show(f.actual.as_ref())
                        );
                    }
                }
                StepDrift::Missing => {
                    let _ = writeln!(out, "- {} ({}) was deleted outside bmac", s.id, s.kind);
                }
                StepDrift::NotApplied => {
                    let _ = writeln!(out, "+ {} ({}) is not built yet", s.id, s.kind);
                }
                StepDrift::InProgress { status } => {
                    let _ = writeln!(out, "… {} ({}) is in progress: {status}", s.id, s.kind);
                }
                StepDrift::Unobservable { error } => {
                    let _ = writeln!(
                        out,
                        "? {} ({}) could not be observed: {error}",
                        s.id, s.kind
                    );
                }
            }
            if !s.pending.is_empty() {
                let _ = writeln!(
                    out,
                    "    spec changes not yet applied: {}",
                    s.pending.join(", ")
                );
            }
        }
        let drifted = self
            .steps
            .iter()
            .filter(|s| matches!(s.drift, StepDrift::Drifted { .. } | StepDrift::Missing))
            .count();
        if drifted == 0 {
            out.push_str("No drift: everything bmac built is as it was applied.\n");
        } else {
            let _ = writeln!(
                out,
                "Drift in {drifted} step(s); `bmac apply` restores what the spec says."
            );
        }
        out
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// Errors from drift detection.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum DriftError {
    /// The spec's graph is invalid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    /// A step's kind has no provider.
    #[error("no provider serves steps of kind `{kind}` (step `{id}`)")]
    #[diagnostic(code(bmac::drift::no_provider))]
    NoProvider {
        /// The step.
        id: StepId,
        /// Its kind.
        kind: String,
    },
    /// The executor's cancellation fired before every step was observed; what was observed
    /// is dropped (a partial refresh would plan against a state half old, half new).
    #[error("refresh cancelled before every step was observed")]
    #[diagnostic(code(bmac::drift::cancelled))]
    Cancelled,
}

/// Observes every applied step of the spec and compares, with an executor of default
/// settings over `providers` (see [`Executor::drift`](crate::Executor::drift) to choose
/// them). See the module docs.
pub async fn detect(
    steps: &[Arc<Step>],
    state: &State,
    providers: &Providers,
) -> Result<DriftReport, DriftError> {
    Executor::new(providers.clone()).drift(steps, state).await
}

/// A state brought up to date with what exists, and the drift that took.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The state as plans should see it: a drifted step's applied config carries the live
    /// values and its fingerprint no longer matches anything, so the plan updates it and the
    /// executor calls the provider; a missing step is no longer applied, so it is created.
    pub state: State,
    /// What moved.
    pub report: DriftReport,
}

/// Refreshes state from what exists, as Terraform does before planning: observes every applied
/// step of the spec (see [`detect`]) and folds the drift into a copy of the state, so that
/// `apply` restores what moved by hand. The journal is not touched. Uses an executor of default
/// settings over `providers` (see [`Executor::refresh`](crate::Executor::refresh) to choose
/// them).
pub async fn refresh(
    steps: &[Arc<Step>],
    state: &State,
    providers: &Providers,
) -> Result<Refreshed, DriftError> {
    Executor::new(providers.clone()).refresh(steps, state).await
}

/// Folds what `report` found into a copy of `state` (see [`Refreshed::state`]).
pub(crate) fn fold(state: &State, report: DriftReport) -> Refreshed {
    let mut refreshed = state.clone();
    for s in &report.steps {
        let Some(entry) = refreshed.steps.get_mut(&s.id) else {
            continue;
        };
        match &s.drift {
            StepDrift::Missing => entry.applied = None,
            // Still being changed: the executor must look (and wait) before acting.
            StepDrift::InProgress { .. } => entry.in_doubt = true,
            StepDrift::Drifted { fields } => {
                // Copy on write: the refreshed state shares its records with `state`.
                if let Some(applied) = entry.applied.as_mut().map(Arc::make_mut) {
                    for f in fields {
                        if let (Some(slot), Some(actual)) = (
                            Arc::make_mut(&mut applied.step)
                                .config
                                .pointer_mut(&f.field),
                            &f.actual,
                        ) {
                            *slot = actual.clone();
                        }
                    }
                    // What was applied no longer exists as recorded: no fingerprint may match.
                    applied.fingerprint = Fingerprint::of_value(
                        &serde_json::json!({ "drifted": applied.step.config }),
                    );
                }
            }
            _ => {}
        }
    }
    Refreshed {
        state: refreshed,
        report,
    }
}

impl StepReport {
    /// A step that was never applied.
    pub(crate) fn not_applied(step: &Step) -> Self {
        StepReport::new(step, StepDrift::NotApplied, Vec::new())
    }

    /// What observing `step`, last applied as `prior`, found — with the outputs it has now,
    /// when it exists (its dependents' inputs come from them).
    pub(crate) fn observed(
        step: &Step,
        prior: &Prior,
        observed: Result<Observed, ProviderError>,
    ) -> (Self, Option<Outputs>) {
        let applied = prior.config();
        let pending = changed_fields(applied, &step.config);
        let (drift, outputs) = match observed {
            Err(e) => {
                let error = StepError::from_provider(&e).to_string();
                (StepDrift::Unobservable { error }, None)
            }
            Ok(Observed::Absent) => (StepDrift::Missing, None),
            Ok(Observed::Pending { status }) => (StepDrift::InProgress { status }, None),
            Ok(Observed::Present { config, outputs }) => {
                let fields = moved_fields(applied, &config);
                let drift = if fields.is_empty() {
                    StepDrift::InSync
                } else {
                    StepDrift::Drifted { fields }
                };
                (drift, Some(outputs))
            }
        };
        (StepReport::new(step, drift, pending), outputs)
    }

    fn new(step: &Step, drift: StepDrift, pending: Vec<String>) -> Self {
        StepReport {
            kind: step.kind.name().to_owned(),
            id: step.id.clone(),
            drift,
            pending,
        }
    }
}

/// The fields of `applied` whose value in `actual` differs, by the one rule for "does what
/// exists match" (see the module docs): compared only where both sides have the field; an
/// array whose length changed moved as a whole.
pub fn moved_fields(applied: &Value, actual: &Value) -> Vec<MovedField> {
    moved_pointers(applied, actual)
        .into_iter()
        .map(|field| MovedField {
            applied: applied.pointer(&field).cloned(),
            actual: actual.pointer(&field).cloned(),
            field,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hand_edited_label_is_drift_but_an_invisible_field_is_not() {
        let applied = json!({"name": "payments", "labels": {"team": "pay", "tier": "1"}, "quota": {"cpu": 4}});
        // `quota` and `name` are not visible to the provider; `tier` was deleted by hand.
        let actual = json!({"labels": {"team": "ops", "tier": null}});
        let moved = moved_fields(&applied, &actual);
        let fields: Vec<_> = moved.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields, ["/labels/team", "/labels/tier"]);
        assert_eq!(moved[0].actual, Some(json!("ops")));
        assert_eq!(moved[1].actual, Some(Value::Null));
    }

    #[test]
    fn an_array_that_grew_or_shrank_is_drift() {
        let applied = json!({"zones": ["a", "b"]});
        let actual = json!({"zones": ["a", "b", "c"]});
        assert_eq!(
            moved_fields(&applied, &actual),
            [MovedField {
                field: "/zones".into(),
                applied: Some(json!(["a", "b"])),
                actual: Some(json!(["a", "b", "c"])),
            }]
        );
        assert_eq!(moved_fields(&actual, &applied)[0].field, "/zones");
    }

    #[test]
    fn fields_other_managers_added_are_not_drift() {
        let applied = json!({"labels": {"team": "pay"}});
        let actual = json!({"labels": {"team": "pay", "added-by-someone": "x"}});
        assert!(moved_fields(&applied, &actual).is_empty());
    }

    mod refresh {
        use super::*;
        use crate::plan::{Action, Planner};
        use crate::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Provider};
        use crate::state::{Record, RecordKind};
        use crate::step::{Inputs, Kind};
        use async_trait::async_trait;
        use std::sync::Arc;

        /// Reports `ns.a` with a hand-edited label and `ns.b` as deleted.
        struct Live;

        #[async_trait]
        impl Provider for Live {
            fn name(&self) -> &str {
                "live"
            }
            async fn apply(&self, _: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
                Err(ProviderError::permanent("refresh never applies"))
            }
            async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
                Ok(match req.step.id.as_str() {
                    "ns.a" => Observed::Present {
                        config: json!({"labels": {"level": "privileged"}}),
                        outputs: Outputs::new(),
                    },
                    "ns.b" => Observed::Absent,
                    _ => Observed::Present {
                        config: req.step.config.value().clone(),
                        outputs: Outputs::new(),
                    },
                })
            }
            async fn destroy(&self, _: DestroyRequest<'_>) -> Result<(), ProviderError> {
                Ok(())
            }
        }

        fn ns(id: &str) -> Step {
            Step::new(
                StepId::new(id).unwrap(),
                Kind::new("namespace"),
                &json!({"name": id, "labels": {"level": "baseline"}}),
            )
            .unwrap()
        }

        #[tokio::test]
        async fn drift_becomes_an_update_and_a_deletion_a_create() {
            let steps = [ns("ns.a"), ns("ns.b"), ns("ns.c")].map(Arc::new);
            let mut state = State::default();
            for s in &steps {
                state.apply(&Record {
                    id: s.id.clone(),
                    kind: RecordKind::Applied {
                        step: Arc::clone(s),
                        fingerprint: s.fingerprint(&Inputs::default()),
                        outputs: Outputs::new(),
                    },
                });
            }
            let providers = Providers::new().fallback(Arc::new(Live));
            let refreshed = refresh(&steps, &state, &providers).await.unwrap();
            assert!(refreshed.report.has_drift());
            let plan = Planner::new(steps, &refreshed.state).plan().unwrap();
            let action = |id: &str| plan.node(&StepId::new(id).unwrap()).unwrap().action.clone();
            assert_eq!(
                action("ns.a"),
                Action::Update {
                    fields: vec!["/labels/level".into()],
                    inputs_may_change: false
                }
            );
            assert_eq!(action("ns.b"), Action::Create);
            assert_eq!(action("ns.c"), Action::NoOp);
            let a = plan.node(&StepId::new("ns.a").unwrap()).unwrap();
            assert_eq!(
                a.prior.as_ref().unwrap().config()["labels"]["level"],
                "privileged"
            );
            assert_ne!(
                a.prior_fingerprint(),
                Some(a.step.fingerprint(&Inputs::default())),
                "the executor must not skip the call"
            );
            // The original state is untouched: refresh never writes the journal.
            assert!(state.applied(&StepId::new("ns.b").unwrap()).is_some());
        }
    }
}

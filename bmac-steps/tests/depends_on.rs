//! The spec's `depends_on` items: how they become edges, and the planner diagnostics a wrong
//! one gets (unknown, with did-you-mean, at the item's span; a cycle listing its steps).

use bmac_core::plan::{PlanError, Planner};
use bmac_core::state::State;
use bmac_core::step::StepId;
use bmac_steps::spec::Spec;
use bmac_steps::{expand, Expansion};

const BASE: &str = r#"
[cluster]
name = "t"
provider = "sim"

[[node_pool]]
name = "system"
instance_types = ["sim.large"]
min = 1
max = 2

[[namespace]]
name = "payments"

[[workload_identity]]
name = "api"
namespace = "payments"
service_account = "api"
permissions = ["s3:GetObject"]
"#;

fn expand_text(text: &str) -> (Spec, Expansion) {
    let spec = Spec::parse("bmac.toml", text).unwrap_or_else(|e| panic!("{e:?}"));
    let e = expand(&spec).unwrap_or_else(|e| panic!("{e:?}"));
    (spec, e)
}

fn plan(e: Expansion) -> Result<bmac_core::Plan, PlanError> {
    Planner::new(e.steps, &State::default())
        .sources(e.sources)
        .plan()
}

fn deps_of(e: &Expansion, id: &str) -> Vec<String> {
    let s = e.steps.iter().find(|s| s.id.as_str() == id).unwrap();
    s.deps.iter().map(|d| d.as_str().to_owned()).collect()
}

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

#[test]
fn an_entry_id_means_every_step_of_that_entry() {
    let text = format!(
        "{BASE}\n[[namespace]]\nname = \"web\"\ndepends_on = [\"workload_identity.api\"]\n"
    );
    let (spec, e) = expand_text(&text);
    let deps = deps_of(&e, "namespace.web");
    assert!(
        deps.contains(&"workload_identity.api.role".to_owned()),
        "{deps:?}"
    );
    assert!(deps.contains(&"workload_identity.api.service_account".to_owned()));
    // Both edges point at the one `depends_on` item.
    let span = e.sources.edges[&(id("namespace.web"), id("workload_identity.api.role"))];
    assert_eq!(
        span,
        e.sources.edges[&(
            id("namespace.web"),
            id("workload_identity.api.service_account")
        )]
    );
    let text = spec.source().1;
    assert_eq!(
        &text[span.offset()..span.offset() + span.len()],
        "\"workload_identity.api\""
    );
    assert!(plan(e).is_ok());
}

#[test]
fn a_step_id_means_that_step_and_every_step_of_the_entry_waits() {
    let text = format!(
        "{BASE}\n[[manifest]]\nname = \"extra\"\ndepends_on = [\"workload_identity.api.role\"]\n\
         inline = \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {{name: x, namespace: payments}}\\n\"\n"
    );
    let (_, e) = expand_text(&text);
    let deps = deps_of(&e, "manifest.extra");
    assert!(deps.contains(&"workload_identity.api.role".to_owned()));
    assert!(!deps.contains(&"workload_identity.api.service_account".to_owned()));
    // The objects' namespace is declared: the manifest also waits for it.
    assert!(deps.contains(&"namespace.payments".to_owned()), "{deps:?}");
}

#[test]
fn a_known_entry_without_steps_adds_no_edge() {
    // `[registries]` without mirrors makes no steps; depending on it is not an error.
    let text = format!(
        "{BASE}\n[registries]\nallowed = [\"ghcr.io\"]\n\n[[namespace]]\nname = \"web\"\ndepends_on = [\"registries\"]\n"
    );
    let (_, e) = expand_text(&text);
    assert!(deps_of(&e, "namespace.web").is_empty());
    assert!(plan(e).is_ok());
}

#[test]
fn a_typo_is_the_planners_unknown_dep_at_the_item() {
    let text =
        format!("{BASE}\n[[namespace]]\nname = \"web\"\ndepends_on = [\"namespace.paymnets\"]\n");
    let (spec, e) = expand_text(&text);
    let err = plan(e).expect_err("the typo is unknown");
    let PlanError::UnknownDep(u) = &err else {
        panic!("expected unknown_dep, got {err:?}");
    };
    assert_eq!(u.step.as_str(), "namespace.web");
    assert_eq!(u.missing.as_str(), "namespace.paymnets");
    assert_eq!(
        u.suggestion.as_ref().map(StepId::as_str),
        Some("namespace.payments")
    );
    let span = u.span.expect("the diagnostic points into the spec");
    let src = spec.source().1;
    assert_eq!(
        &src[span.offset()..span.offset() + span.len()],
        "\"namespace.paymnets\""
    );
    let code = miette::Diagnostic::code(&err).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("bmac::plan::unknown_dep"));
}

#[test]
fn a_depends_on_cycle_is_the_planners_cycle_listing_the_steps() {
    let text = format!(
        "{BASE}\n[[namespace]]\nname = \"web\"\ndepends_on = [\"namespace.shop\"]\n\n\
         [[namespace]]\nname = \"shop\"\ndepends_on = [\"namespace.web\"]\n"
    );
    let (_, e) = expand_text(&text);
    let err = plan(e).expect_err("a cycle");
    let PlanError::Cycle(c) = &err else {
        panic!("expected a cycle, got {err:?}");
    };
    let ids: Vec<&str> = c.cycle.iter().map(StepId::as_str).collect();
    assert!(
        ids.contains(&"namespace.web") && ids.contains(&"namespace.shop"),
        "{ids:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("namespace.web") && shown.contains("namespace.shop"),
        "{shown}"
    );
    let code = miette::Diagnostic::code(&err).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("bmac::plan::cycle"));
}

#[test]
fn a_cycle_through_catalogue_edges_is_reported_too() {
    // The cluster cannot wait for a node pool that joins it.
    let text = BASE.replace(
        "provider = \"sim\"\n",
        "provider = \"sim\"\ndepends_on = [\"node_pool.system\"]\n",
    );
    let (_, e) = expand_text(&text);
    let err = plan(e).expect_err("a cycle");
    let PlanError::Cycle(c) = &err else {
        panic!("expected a cycle, got {err:?}");
    };
    let ids: Vec<&str> = c.cycle.iter().map(StepId::as_str).collect();
    assert!(
        ids.contains(&"cluster") && ids.contains(&"node_pool.system"),
        "{ids:?}"
    );
}

#[test]
fn a_typo_on_an_entry_of_several_steps_is_reported_once() {
    // `workload_identity.api` expands into a role and a service account: the one mistyped
    // item is an edge of both, and one mistake.
    let text = BASE.replace(
        "permissions = [\"s3:GetObject\"]",
        "permissions = [\"s3:GetObject\"]\ndepends_on = [\"namespace.paymnets\"]",
    );
    let (_, e) = expand_text(&text);
    let typo = StepId::new("namespace.paymnets").unwrap();
    let with_typo = e.steps.iter().filter(|s| s.deps.contains(&typo)).count();
    assert!(
        with_typo >= 2,
        "the item is an edge of every step of the entry"
    );
    let err = plan(e).expect_err("the typo is unknown");
    let PlanError::UnknownDep(u) = &err else {
        panic!("expected unknown_dep, got {err:?}");
    };
    assert_eq!(u.missing.as_str(), "namespace.paymnets");
    assert!(u.others.is_empty(), "reported once: {err:?}");
}

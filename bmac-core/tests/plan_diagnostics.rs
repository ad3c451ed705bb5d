//! What a user sees when the spec's graph is broken: the rendered miette reports, pointing
//! into `bmac.toml`, snapshot-tested.

use std::sync::Arc;

use bmac_core::plan::{PlanError, Planner, Sources};
use bmac_core::state::State;
use bmac_core::step::{Kind, Ref, Step, StepId};
use miette::{GraphicalReportHandler, GraphicalTheme, SourceSpan};
use serde_json::json;

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn step(name: &str, kind: &str) -> Step {
    Step::new(id(name), Kind::new(kind), &json!({})).unwrap()
}

/// The span of the `nth` (0-based) occurrence of `needle` in `text`.
fn span(text: &str, needle: &str, nth: usize) -> SourceSpan {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` #{nth} not in the text"))
        .0;
    (at, needle.len()).into()
}

fn render(err: &PlanError) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, err)
        .unwrap();
    out
}

const CYCLE_TOML: &str = r#"[steps.cluster]
kind = "cluster"
depends_on = ["policy"]

[steps.node_pool]
kind = "node_pool"
endpoint = "${cluster.outputs.endpoint}"

[steps.policy]
kind = "kyverno_policy"
depends_on = ["node_pool"]
"#;

#[test]
fn a_cycle_lists_every_step_and_points_at_each_edge() {
    let text = CYCLE_TOML;
    let mut sources = Sources::new("bmac.toml", Arc::<str>::from(text));
    for (name, header) in [
        ("cluster", "[steps.cluster]"),
        ("node_pool", "[steps.node_pool]"),
        ("policy", "[steps.policy]"),
    ] {
        sources.steps.insert(id(name), span(text, header, 0));
    }
    sources
        .edges
        .insert((id("cluster"), id("policy")), span(text, "\"policy\"", 0));
    sources.edges.insert(
        (id("node_pool"), id("cluster")),
        span(text, "${cluster.outputs.endpoint}", 0),
    );
    sources
        .edges
        // The second occurrence: the first is `kind = "node_pool"`.
        .insert(
            (id("policy"), id("node_pool")),
            span(text, "\"node_pool\"", 1),
        );

    let steps = vec![
        step("cluster", "cluster").depends_on(id("policy")),
        step("node_pool", "node_pool").input("endpoint", Ref::new(id("cluster"), "endpoint")),
        step("policy", "kyverno_policy").depends_on(id("node_pool")),
    ];
    let err = Planner::new(steps, &State::default())
        .sources(sources)
        .plan()
        .unwrap_err();
    let rendered = render(&err);
    insta::assert_snapshot!("cycle_with_sources", rendered);
}

#[test]
fn a_cycle_without_sources_still_names_everything() {
    let steps = vec![
        step("a", "k").depends_on(id("b")),
        step("b", "k").depends_on(id("a")),
    ];
    let err = Planner::new(steps, &State::default()).plan().unwrap_err();
    insta::assert_snapshot!("cycle_without_sources", render(&err));
}

const UNKNOWN_TOML: &str = r#"[steps."namespace.payments"]
kind = "namespace"

[steps.app]
kind = "deployment"
depends_on = ["nmespace.payments"]

[steps.sa]
kind = "service_account"
role = "${iam.role.outputs.arn}"
"#;

#[test]
fn unknown_dependencies_suggest_the_closest_id() {
    let text = UNKNOWN_TOML;
    let mut sources = Sources::new("bmac.toml", Arc::<str>::from(text));
    sources.edges.insert(
        (id("app"), id("nmespace.payments")),
        span(text, "\"nmespace.payments\"", 0),
    );
    sources.edges.insert(
        (id("sa"), id("iam.role")),
        span(text, "${iam.role.outputs.arn}", 0),
    );
    let steps = vec![
        step("namespace.payments", "namespace"),
        step("app", "deployment").depends_on(id("nmespace.payments")),
        step("sa", "service_account").input("role", Ref::new(id("iam.role"), "arn")),
    ];
    let err = Planner::new(steps, &State::default())
        .sources(sources)
        .plan()
        .unwrap_err();
    insta::assert_snapshot!("unknown_dep_did_you_mean", render(&err));
}

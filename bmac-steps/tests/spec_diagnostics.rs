//! What users see: rendered spec diagnostics, snapshot-tested (no colour, fixed width).

use bmac_steps::spec::{lint, Spec};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

fn render(diagnostic: &dyn Diagnostic) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, diagnostic)
        .expect("rendering into a String cannot fail");
    out
}

fn render_error(text: &str) -> String {
    match Spec::parse("bmac.toml", text) {
        Ok(_) => panic!("spec parsed but should not:\n{text}"),
        Err(e) => render(&e),
    }
}

#[test]
fn unknown_field_with_did_you_mean() {
    let text = r#"[cluster]
name = "prod"
provider = "sim"

[[node_pool]]
name = "workers"
instance_types = ["sim.large"]
min = 1
max = 5
desird = 3
"#;
    insta::assert_snapshot!(render_error(text));
}

#[test]
fn bad_value() {
    let text = r#"[cluster]
name = "prod"
provider = "sim"

[pod_security]
enforce = "restriced"
"#;
    insta::assert_snapshot!(render_error(text));
}

#[test]
fn contradiction() {
    let text = r#"[cluster]
name = "prod"
provider = "sim"

[[node_pool]]
name = "workers"
instance_types = ["sim.large"]
min = 5
max = 3
"#;
    insta::assert_snapshot!(render_error(text));
}

#[test]
fn toml_syntax_error() {
    let text = "[cluster]\nname = \"prod\nprovider = \"sim\"\n";
    insta::assert_snapshot!(render_error(text));
}

#[test]
fn several_problems_at_once() {
    let text = r#"[cluster]
name = "prod"
provider = "sim"
colour = "blue"

[[storage_class]]
name = "a"
type = "ssd"
encrypted = "yes"
"#;
    insta::assert_snapshot!(render_error(text));
}

#[test]
fn lint_finding() {
    let text = r#"[cluster]
name = "prod"
provider = "sim"
endpoint = { public = true, public_cidrs = ["0.0.0.0/0"] }

[audit]
archive = "s3://audit-bucket/prod"

[pod_security]
enforce = "restricted"

[policy]
engine = "kyverno"
version = "1.12.5"

[registries]
allowed = ["registry.internal"]
"#;
    let spec = Spec::parse("bmac.toml", text).expect("valid spec");
    let findings = lint::lint(&spec);
    assert_eq!(findings.len(), 1);
    insta::assert_snapshot!(render(&findings[0]));
}

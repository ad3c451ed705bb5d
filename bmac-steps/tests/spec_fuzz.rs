//! No input makes the spec reader, the validator, lint, or diagnostic rendering panic.
//!
//! Three sources of input, 2000+ cases each: arbitrary Unicode text, text over a TOML-ish
//! alphabet (so many inputs get past the TOML parser into decoding), and the example specs
//! with random byte edits, deletions, duplications and token insertions (so inputs reach
//! validation and lint). Each case parses, lints when valid, and renders every diagnostic —
//! a panic anywhere fails the test.

use bmac_steps::spec::{lint, Spec};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    include_str!("../../examples/quickstart.toml"),
    include_str!("../../examples/eks-baseline.toml"),
    include_str!("../../examples/gke-baseline.toml"),
    include_str!("../../examples/existing-cluster.toml"),
];

/// Pieces of TOML and of spec vocabulary worth splicing in.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "=",
    ",",
    ".",
    "\n",
    "#",
    "\\",
    "0",
    "-1",
    "4294967296",
    "1e309",
    "nan",
    "true",
    "false",
    "1979-05-27T07:32:00Z",
    "name = \"a.b\"",
    "depends_on = [\"namespace..x\"]",
    "depends_on = [\"cluster\"]",
    "enforce = \"privileged\"",
    "default = true",
    "min = 9",
    "desired = 0",
    "public = true",
    "provider = \"kube\"",
    "provider = \"eks\"",
    "engine = \"gatekeeper\"",
    "background = true",
    "\n[[node_pool]]\nname = \"p\"\ninstance_types = [\"x\"]\nmin = 1\nmax = 2\n",
    "\n[[namespace]]\nname = \"payments\"\n",
    "\n[sim]\n",
    "\n[cni]\n",
    "é",
    "\u{0}",
    "🦀",
];

/// One way of damaging a text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at a position.
    Byte(usize, u8),
    /// Delete a range.
    Delete(usize, usize),
    /// Copy a range and insert it at another position.
    Duplicate(usize, usize, usize),
    /// Insert a token.
    Token(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        (any::<usize>(), 0usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 0usize..80, any::<usize>())
            .prop_map(|(p, n, at)| Mutation::Duplicate(p, n, at)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Mutation::Token(p, t)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Byte(p, b) => {
                if let Some(slot) = bytes.get_mut(p % len) {
                    *slot = b;
                }
            }
            Mutation::Delete(p, n) => {
                let start = (p % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Duplicate(p, n, at) => {
                let start = (p % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, copy);
            }
            Mutation::Token(p, t) => {
                let at = (p % len).min(bytes.len());
                bytes.splice(at..at, TOKENS[t].bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn render(diagnostic: &dyn Diagnostic) -> String {
    let mut out = String::new();
    // A rendering error (not a panic) is acceptable; we only need it not to crash.
    let _ = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, diagnostic);
    out
}

/// Parse, then lint or render the error; returns whether the spec was valid.
fn exercise(text: &str) -> bool {
    match Spec::parse("fuzz.toml", text) {
        Ok(spec) => {
            for e in spec.entries() {
                assert!(e.span.offset() + e.span.len() <= text.len());
                for (_, at) in e.depends_on {
                    assert!(at.offset() + at.len() <= text.len());
                }
            }
            for f in lint::lint(&spec) {
                assert!(f.span.offset() + f.span.len() <= text.len());
                render(&f);
            }
            true
        }
        Err(e) => {
            assert!(
                !e.problems().is_empty(),
                "an invalid spec names at least one problem"
            );
            for p in e.problems() {
                assert!(
                    p.span.offset() + p.span.len() <= text.len(),
                    "{p:?} outside the text"
                );
            }
            let shown = render(&e);
            assert!(!shown.is_empty());
            false
        }
    }
}

proptest! {
    // 2000 cases each by default; `SPEC_FUZZ_CASES=100000` for a longer hunt.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SPEC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "[a-z_\\[\\]{}=\"'., \n0-9#-]{0,200}") {
        exercise(&text);
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..EXAMPLES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        exercise(&apply(EXAMPLES[which], &mutations));
    }
}

/// The mutation harness reaches every stage: some mutants still parse (and get linted), some
/// fail in decoding or validation, some in TOML syntax.
#[test]
fn mutants_reach_validation_and_lint() {
    let mut valid = 0;
    let mut invalid = 0;
    for example in EXAMPLES {
        // Sixteen places spread over the file: some land in strings and comments (the spec
        // stays valid and is linted), others break syntax, types or contradictions.
        for at in (0..16).map(|k| example.len() * k / 16) {
            for t in 0..TOKENS.len() {
                if exercise(&apply(example, &[Mutation::Token(at, t)])) {
                    valid += 1
                } else {
                    invalid += 1
                }
            }
        }
    }
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
}

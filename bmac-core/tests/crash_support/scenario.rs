//! The plans the crash tests apply, generated from a seed so that the parent (which checks)
//! and every child process (which applies) build exactly the same steps.
//!
//! A [`Scenario`] travels to the child as one environment variable ([`Scenario::encode`]).
//! What a step's resource outputs is a pure function of its id and the seed
//! ([`outputs_of`]): the test cloud hands it out, the parent recomputes it to know the
//! fingerprint every step must end with ([`expected_fingerprints`]), and a step whose id starts
//! with [`SECRET_PREFIX`] also outputs a sensitive `token` that downstream steps consume.

use std::collections::BTreeMap;

use bmac_core::step::Fingerprint;
use bmac_core::{Inputs, Kind, Outputs, Ref, Step, StepId};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Steps whose id starts with this output a sensitive `token`.
pub const SECRET_PREFIX: &str = "vault";

/// How far back a step's dependencies reach: a layered build, not a flat fan-out, so the run
/// has a critical path and kills land while several layers are still to come.
const DEP_WINDOW: usize = 24;

/// The kinds a generated step may have (all served by the one test cloud).
const KINDS: [&str; 5] = ["network", "cluster", "node_pool", "policy", "binding"];

/// Which plan a child applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A random DAG of `steps` steps.
    Dag {
        /// Seeds the DAG and the secret values.
        seed: u64,
        /// Number of steps.
        steps: usize,
    },
    /// `network` → `vault0001` (sensitive `token`) → `consumer` (takes the token) → `tail`.
    Secret {
        /// Seeds the secret value.
        seed: u64,
    },
}

impl Scenario {
    /// The text form passed to the child.
    pub fn encode(&self) -> String {
        match self {
            Scenario::Dag { seed, steps } => format!("dag:{seed}:{steps}"),
            Scenario::Secret { seed } => format!("secret:{seed}"),
        }
    }

    /// Parses [`Scenario::encode`]'s output.
    pub fn decode(text: &str) -> Result<Scenario, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|e| format!("bad number `{s}` in scenario `{text}`: {e}"))
        };
        match parts.as_slice() {
            ["dag", seed, steps] => Ok(Scenario::Dag {
                seed: number(seed)?,
                steps: number(steps)? as usize,
            }),
            ["secret", seed] => Ok(Scenario::Secret {
                seed: number(seed)?,
            }),
            _ => Err(format!("unknown scenario `{text}`")),
        }
    }

    /// The seed secrets are derived from.
    pub fn seed(&self) -> u64 {
        match self {
            Scenario::Dag { seed, .. } | Scenario::Secret { seed } => *seed,
        }
    }

    /// The steps, in spec order.
    pub fn steps(&self) -> Vec<Step> {
        match *self {
            Scenario::Dag { seed, steps } => random_dag(seed, steps),
            Scenario::Secret { .. } => secret_chain(),
        }
    }
}

fn step(id: &str, kind: &str, index: usize, size: u32) -> Step {
    let id = StepId::new(id).expect("generated ids are valid");
    Step::new(
        id.clone(),
        Kind::new(kind),
        &json!({"name": id.as_str(), "index": index, "size": size}),
    )
    .expect("a JSON object serialises")
}

fn id_of(index: usize, secret_at: usize) -> String {
    if index == secret_at {
        format!("{SECRET_PREFIX}{index:04}")
    } else {
        format!("s{index:04}")
    }
}

/// A seeded DAG: each step depends on 0–4 of the [`DEP_WINDOW`] steps before it, about a third
/// take an input from a dependency's `arn`, and one early step outputs a secret that four
/// later steps take as an input.
fn random_dag(seed: u64, n: usize) -> Vec<Step> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let secret_at = 5.min(n.saturating_sub(1));
    let ids: Vec<String> = (0..n).map(|i| id_of(i, secret_at)).collect();
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let mut s = step(&ids[i], kind, i, rng.gen_range(1..100));
        let window: Vec<usize> = (i.saturating_sub(DEP_WINDOW)..i).collect();
        let count = rng.gen_range(0..=4usize).min(window.len());
        let deps: Vec<usize> = window.choose_multiple(&mut rng, count).copied().collect();
        for &d in &deps {
            s = s.depends_on(StepId::new(&ids[d]).expect("valid"));
        }
        if let Some(&d) = deps.first() {
            if rng.gen_bool(0.35) {
                let from = StepId::new(&ids[d]).expect("valid");
                s = s.input("upstream_arn", Ref::new(from, "arn"));
            }
        }
        steps.push(s);
    }
    // Four consumers of the secret, spread over the rest of the plan.
    if n > secret_at + 8 {
        let vault = StepId::new(&ids[secret_at]).expect("valid");
        let later: Vec<usize> = (secret_at + 1..n).collect();
        for &c in later.choose_multiple(&mut rng, 4) {
            steps[c]
                .inputs
                .insert("vault_token".into(), Ref::new(vault.clone(), "token"));
        }
    }
    steps
}

fn secret_chain() -> Vec<Step> {
    let network = step("network", "network", 0, 1);
    let vault = step("vault0001", "binding", 1, 1).depends_on(network.id.clone());
    let consumer = step("consumer", "node_pool", 2, 3)
        .input("vault_token", Ref::new(vault.id.clone(), "token"))
        .input("upstream_arn", Ref::new(network.id.clone(), "arn"));
    let tail = step("tail", "policy", 3, 1).depends_on(consumer.id.clone());
    vec![network, vault, consumer, tail]
}

/// The secret a `vault…` step outputs: 64 hex digits derived from its id and the seed, so it
/// can be searched for byte-for-byte in state files and never appears there by accident.
pub fn secret_of(id: &StepId, seed: u64) -> String {
    Fingerprint::of_value(&json!({"secret-of": id.as_str(), "seed": seed})).to_string()
}

/// What the resource of step `id` outputs: always `arn`; a `token` secret for `vault…` steps.
pub fn outputs_of(id: &StepId, seed: u64) -> Outputs {
    let outputs = Outputs::new().with("arn", format!("arn:crash:{id}"));
    if id.as_str().starts_with(SECRET_PREFIX) {
        outputs.with_sensitive("token", secret_of(id, seed))
    } else {
        outputs
    }
}

/// A step's inputs as the executor resolves them from [`outputs_of`] its sources, or a
/// message naming the first input whose source does not output what it references.
pub fn expected_inputs(step: &Step, seed: u64) -> Result<Inputs, String> {
    let mut inputs = Inputs::default();
    for (name, r) in &step.inputs {
        let value = outputs_of(&r.step, seed)
            .get(&r.output)
            .cloned()
            .ok_or_else(|| format!("`{}` input `{name}`: no output `{r}`", step.id))?;
        inputs.0.insert(name.clone(), value);
    }
    Ok(inputs)
}

/// The fingerprint each step must be applied with: its config plus its resolved inputs.
pub fn expected_fingerprints(steps: &[Step], seed: u64) -> BTreeMap<StepId, Fingerprint> {
    steps
        .iter()
        .map(|s| {
            let inputs = expected_inputs(s, seed).expect("generated inputs reference outputs");
            (s.id.clone(), s.fingerprint(&inputs))
        })
        .collect()
}

//! The crash tests' "cloud": a provider whose every side effect is one appended line of a
//! file, so that what really happened survives the SIGKILL of the process that did it.
//!
//! ```text
//! create <step id> <fingerprint> <config JSON>
//! update <step id> <fingerprint> <config JSON>
//! noop   <step id> <fingerprint> <config JSON>     apply found it already as desired
//! destroy <step id> - null
//! ```
//!
//! Each line goes out in one `write(2)` on an `O_APPEND` file; SIGKILL leaves the page cache
//! alone, so no sync is needed. A line without its newline (a write cut short) never
//! happened: [`read_effects`] ignores it and [`Cloud::open`] cuts it off before appending.
//!
//! `apply` validates its inputs against [`outputs_of`] (a sensitive input must arrive with its
//! value, or the call fails permanently — a resumed run that lost a secret cannot pass),
//! sleeps a random 1–20 ms split around the effect so a kill can land before or after it, and
//! returns outputs derived from the id. `observe` answers from the file's replay, so a step a
//! crash left in doubt can be adopted. A `noop` line is written when apply is called for a
//! resource that already exists as desired: the executor should have adopted or skipped it,
//! so the tests count these as defects.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::step::Fingerprint;
use bmac_core::{Outputs, Provider, ProviderError, Step, StepId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::child::MARK;
use super::scenario::{expected_inputs, outputs_of};

/// What one line of the cloud file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A resource was created.
    Create,
    /// An existing resource was changed.
    Update,
    /// Apply was called for a resource already as desired.
    Noop,
    /// A resource was removed.
    Destroy,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Noop => "noop",
            Verb::Destroy => "destroy",
        }
    }
}

/// One side effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// What happened.
    pub verb: Verb,
    /// To which step's resource.
    pub id: String,
    /// The fingerprint applied (`-` for destroy).
    pub fingerprint: String,
    /// The config applied.
    pub config: Value,
}

/// Reads every complete effect line of the cloud file (none if it does not exist yet).
pub fn read_effects(path: &Path) -> io::Result<Vec<Effect>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .enumerate()
        .map(|(n, line)| {
            parse_line(line).map_err(|e| io::Error::other(format!("line {}: {e}", n + 1)))
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Effect, String> {
    let mut parts = line.splitn(4, ' ');
    let mut next = |what: &str| parts.next().ok_or(format!("no {what} in `{line}`"));
    let verb = match next("verb")? {
        "create" => Verb::Create,
        "update" => Verb::Update,
        "noop" => Verb::Noop,
        "destroy" => Verb::Destroy,
        other => return Err(format!("unknown verb `{other}`")),
    };
    let id = next("id")?.to_owned();
    let fingerprint = next("fingerprint")?.to_owned();
    let config = serde_json::from_str(next("config")?).map_err(|e| e.to_string())?;
    Ok(Effect {
        verb,
        id,
        fingerprint,
        config,
    })
}

/// What exists, replayed from the file.
struct World {
    file: File,
    /// Step id → (fingerprint, config).
    resources: HashMap<String, (String, Value)>,
}

impl World {
    fn record(
        &mut self,
        verb: Verb,
        id: &StepId,
        fingerprint: &str,
        config: &Value,
    ) -> io::Result<()> {
        let line = format!("{} {id} {fingerprint} {config}\n", verb.as_str());
        self.file.write_all(line.as_bytes())?;
        match verb {
            Verb::Destroy => {
                self.resources.remove(id.as_str());
            }
            _ => {
                self.resources
                    .insert(id.to_string(), (fingerprint.to_owned(), config.clone()));
            }
        }
        Ok(())
    }
}

/// The test provider. Serves every kind.
pub struct Cloud {
    world: Mutex<World>,
    rng: Mutex<SmallRng>,
    seed: u64,
    /// Where an apply hangs until the process is killed.
    hang: Option<Hang>,
}

/// A step whose apply hangs (until the process is killed), before or after its side effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hang {
    /// The step.
    pub step: String,
    /// Hang after the effect was recorded (else before it).
    pub after_effect: bool,
}

impl Hang {
    /// The text form: `before:<id>` or `after:<id>`.
    pub fn encode(&self) -> String {
        let when = if self.after_effect { "after" } else { "before" };
        format!("{when}:{}", self.step)
    }

    /// Parses [`Hang::encode`]'s output.
    pub fn decode(text: &str) -> Result<Hang, String> {
        let (when, step) = text
            .split_once(':')
            .ok_or_else(|| format!("a hang is `before:<id>` or `after:<id>`, not `{text}`"))?;
        let after_effect = match when {
            "before" => false,
            "after" => true,
            _ => return Err(format!("unknown hang point `{when}`")),
        };
        Ok(Hang {
            step: step.to_owned(),
            after_effect,
        })
    }

    async fn at(hang: &Option<Hang>, step: &StepId, after_effect: bool) {
        if let Some(h) = hang {
            if h.step == step.as_str() && h.after_effect == after_effect {
                println!("{MARK} hanging {}", h.encode());
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        }
    }
}

impl Cloud {
    /// Opens the cloud file at `path`, replaying it and cutting off a torn last line.
    pub fn open(path: PathBuf, seed: u64, hang: Option<Hang>) -> io::Result<Cloud> {
        let effects = read_effects(&path)?;
        let complete_len = match std::fs::read(&path) {
            Ok(bytes) => bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(complete_len as u64)?;
        let mut resources = HashMap::new();
        for e in effects {
            match e.verb {
                Verb::Destroy => {
                    resources.remove(&e.id);
                }
                _ => {
                    resources.insert(e.id, (e.fingerprint, e.config));
                }
            }
        }
        let rng_seed = seed ^ u64::from(std::process::id()).rotate_left(17);
        Ok(Cloud {
            world: Mutex::new(World { file, resources }),
            rng: Mutex::new(SmallRng::seed_from_u64(rng_seed)),
            seed,
            hang,
        })
    }

    fn millis(&self, range: std::ops::RangeInclusive<u64>) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(rng.gen_range(range))
    }

    /// Checks that every input arrived with the value its source outputs (secrets included).
    fn check_inputs(&self, step: &Step, inputs: &bmac_core::Inputs) -> Result<(), ProviderError> {
        let expected = expected_inputs(step, self.seed).map_err(ProviderError::permanent)?;
        for (name, want) in &expected.0 {
            let got = inputs.get(name).and_then(|v| v.value());
            if got != want.value() {
                // Never echo the values: one of them may be a secret.
                let what = if want.is_sensitive() {
                    "arrived without its secret value or with a wrong one"
                } else {
                    "does not carry its source's output"
                };
                return Err(ProviderError::permanent(format!(
                    "step `{}`: input `{name}` {what}",
                    step.id
                )));
            }
        }
        Ok(())
    }

    /// Brings the resource to `config` in one critical section: create, update, or a `noop`
    /// line when it already is as desired.
    fn converge(
        &self,
        id: &StepId,
        fingerprint: &str,
        config: &Value,
    ) -> Result<(), ProviderError> {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let verb = match world.resources.get(id.as_str()) {
            None => Verb::Create,
            Some((fp, have)) if fp == fingerprint && have == config => Verb::Noop,
            Some(_) => Verb::Update,
        };
        world.record(verb, id, fingerprint, config).map_err(|e| {
            ProviderError::permanent("the cloud file could not be written").with_source(e)
        })
    }
}

#[async_trait]
impl Provider for Cloud {
    fn name(&self) -> &str {
        "crash-cloud"
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let total = self.millis(1..=20);
        let before = self.millis(0..=total.as_millis() as u64);
        tokio::time::sleep(before).await;
        self.check_inputs(req.step, req.inputs)?;
        Hang::at(&self.hang, &req.step.id, false).await;
        let fingerprint: Fingerprint = req.step.fingerprint(req.inputs);
        let fingerprint = fingerprint.to_string();
        self.converge(&req.step.id, &fingerprint, &req.step.config)?;
        Hang::at(&self.hang, &req.step.id, true).await;
        tokio::time::sleep(total - before).await;
        Ok(outputs_of(&req.step.id, self.seed))
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        tokio::time::sleep(self.millis(0..=3)).await;
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match world.resources.get(req.step.id.as_str()) {
            Some((_, config)) => Observed::Present {
                config: config.clone(),
                outputs: outputs_of(&req.step.id, self.seed),
            },
            None => Observed::Absent,
        })
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world
            .record(Verb::Destroy, &req.step.id, "-", &Value::Null)
            .map_err(|e| {
                ProviderError::permanent("the cloud file could not be written").with_source(e)
            })
    }
}

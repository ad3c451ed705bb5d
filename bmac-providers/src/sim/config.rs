//! How a simulated cloud behaves: its seed, its speed, the faults it injects, how long new
//! resources take to become visible, and where it persists itself.
//!
//! Configuration comes from the spec (the embedder builds a [`SimConfig`]) and is then layered
//! with the environment ([`SimConfig::with_env`]), so a CI job or a curious user can turn on
//! faults without editing the spec:
//!
//! | variable | meaning | example |
//! |---|---|---|
//! | `BMAC_SIM_FAULTS` | fault rules, replacing the spec's (empty clears them) | `node_pool:throttle:0.5:2,*:server:0.1` |
//! | `BMAC_SIM_SEED` | the seed | `42` |
//! | `BMAC_SIM_SPEED` | latency multiplier (1 = real time, 0 = instant) | `0.01` |
//! | `BMAC_SIM_CONSISTENCY_MS` | eventual-consistency window before scaling, in ms | `2000` |
//! | `BMAC_SIM_CLOUD` | path of the persisted cloud's op log | `.bmac/sim-cloud.log` |
//! | `BMAC_SIM_TOKEN_TTL_MS` | cluster tokens' lifetime before scaling, in ms | `900000` |
//! | `BMAC_SIM_TOKEN_USES` | calls one cluster token admits (`1`: rotate every call) | `1` |
//!
//! Invariants: a validated config has a finite speed ≥ 0 and fault rates within `0..=1`;
//! bad input is a typed [`SimError`], never a panic. A fault rule prints back in the syntax it
//! parses from, so messages can quote it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::{FaultParseError, SimError};

/// The default latency multiplier: real latencies × 0.005, so a 10-minute cluster takes 3 s
/// and the quickstart's whole critical path about 5 s.
pub const DEFAULT_SPEED: f64 = 0.005;

/// The default eventual-consistency window, before scaling by speed.
pub const DEFAULT_CONSISTENCY_DELAY: Duration = Duration::from_secs(2);

/// The default lifetime of a cluster token, before scaling: EKS's 15 minutes.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// The kind of failure a fault rule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `429 too many requests`: retryable, with a `Retry-After` of 1 s (scaled).
    Throttle,
    /// `500 internal error`: retryable.
    ServerError,
    /// The call takes its full latency and then times out: retryable. The change itself
    /// lands — the response is what got lost — so retries must be idempotent.
    Timeout,
    /// `400 invalid request`: permanent.
    Permanent,
}

impl FaultKind {
    /// The name used in fault rules (`throttle`, `server`, `timeout`, `permanent`).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Throttle => "throttle",
            FaultKind::ServerError => "server",
            FaultKind::Timeout => "timeout",
            FaultKind::Permanent => "permanent",
        }
    }

    /// Parses a fault name; `server_error`, `5xx` and `500` are accepted for `server`,
    /// `429` for `throttle` and `400` for `permanent`.
    pub fn parse(name: &str) -> Option<FaultKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "throttle" | "throttling" | "429" => FaultKind::Throttle,
            "server" | "server_error" | "5xx" | "500" => FaultKind::ServerError,
            "timeout" => FaultKind::Timeout,
            "permanent" | "400" => FaultKind::Permanent,
            _ => return None,
        })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fault-injection rule: calls for steps of `kind` fail with `error` with probability
/// `rate`, at most `times` times per step.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The step kind it applies to; `None` (written `*`) for every kind.
    pub kind: Option<String>,
    /// What failure to inject.
    pub error: FaultKind,
    /// Probability per call, in `0..=1`.
    pub rate: f64,
    /// At most this many injections per step (`None`: unlimited).
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule for `kind` (`None` = every kind) failing with `error` at `rate`, unlimited times.
    pub fn new(kind: Option<&str>, error: FaultKind, rate: f64) -> Self {
        FaultRule {
            kind: kind.map(str::to_owned),
            error,
            rate,
            times: None,
        }
    }

    /// Limits the rule to `times` injections per step.
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Whether the rule applies to steps of `kind`.
    pub fn matches(&self, kind: &str) -> bool {
        self.kind.as_deref().is_none_or(|k| k == kind)
    }

    /// Parses a comma-separated list of rules (`kind:error:rate[:times],…`), the format of
    /// `BMAC_SIM_FAULTS`. Blank entries (a trailing comma) are ignored.
    pub fn parse_list(list: &str) -> Result<Vec<FaultRule>, FaultParseError> {
        list.split(',')
            .enumerate()
            .filter(|(_, entry)| !entry.trim().is_empty())
            .map(|(i, entry)| {
                parse_rule(entry.trim()).map_err(|problem| FaultParseError {
                    entry: entry.trim().to_owned(),
                    position: i + 1,
                    problem,
                })
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("rate {} is not between 0 and 1", self.rate));
        }
        match &self.kind {
            Some(kind) if !is_kind_name(kind) => Err(format!(
                "kind `{kind}` may contain only letters, digits, `_` and `-` (or be `*` for any)"
            )),
            _ => Ok(()),
        }
    }
}

fn is_kind_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_rule(entry: &str) -> Result<FaultRule, String> {
    let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
    if !(3..=4).contains(&parts.len()) {
        return Err(format!(
            "expected 3 or 4 `:`-separated fields (kind:error:rate[:times]), found {}",
            parts.len()
        ));
    }
    let kind = match parts[0] {
        "*" => None,
        k => Some(k.to_owned()),
    };
    let error = FaultKind::parse(parts[1]).ok_or_else(|| {
        format!(
            "unknown error `{}` (expected throttle, server, timeout or permanent)",
            parts[1]
        )
    })?;
    let rate: f64 = parts[2]
        .parse()
        .map_err(|_| format!("rate `{}` is not a number", parts[2]))?;
    let times = match parts.get(3) {
        None => None,
        Some(t) => Some(
            t.parse::<u32>()
                .map_err(|_| format!("times `{t}` is not a whole number"))?,
        ),
    };
    let rule = FaultRule {
        kind,
        error,
        rate,
        times,
    };
    rule.validate()?;
    Ok(rule)
}

impl FromStr for FaultRule {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rule(s.trim()).map_err(|problem| FaultParseError {
            entry: s.trim().to_owned(),
            position: 1,
            problem,
        })
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.kind.as_deref().unwrap_or("*"),
            self.error,
            self.rate
        )?;
        if let Some(times) = self.times {
            write!(f, ":{times}")?;
        }
        Ok(())
    }
}

/// How a simulated cloud behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed every latency, fault and id derives from.
    pub seed: u64,
    /// Latency multiplier: 1.0 is real time, 0.0 is instant.
    pub speed: f64,
    /// Fault-injection rules, checked in order; the first that fires wins.
    pub faults: Vec<FaultRule>,
    /// How long (before scaling by `speed`) a new resource may still read as absent.
    pub consistency_delay: Duration,
    /// Where the cloud persists itself (an append-only op log); `None` keeps it in memory.
    pub cloud_path: Option<PathBuf>,
    /// How long (before scaling by `speed`) a cluster token is admitted (see
    /// [`tokens`](super::tokens)).
    pub token_ttl: Duration,
    /// How many calls one cluster token admits; `None` for as many as its lifetime allows,
    /// `Some(1)` rotates the token on every call.
    pub token_uses: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            speed: DEFAULT_SPEED,
            faults: Vec::new(),
            consistency_delay: DEFAULT_CONSISTENCY_DELAY,
            cloud_path: None,
            token_ttl: DEFAULT_TOKEN_TTL,
            token_uses: None,
        }
    }
}

impl SimConfig {
    /// The defaults layered with the `BMAC_SIM_*` environment variables.
    pub fn from_env() -> Result<Self, SimError> {
        SimConfig::default().with_env()
    }

    /// This config layered with the `BMAC_SIM_*` environment variables (set ones win).
    pub fn with_env(self) -> Result<Self, SimError> {
        self.with_vars(|name| std::env::var(name).ok())
    }

    /// This config layered with variables from `lookup` (what [`SimConfig::with_env`] does
    /// with the process environment; tests pass a map instead of mutating the environment).
    pub fn with_vars(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SimError> {
        if let Some(faults) = lookup("BMAC_SIM_FAULTS") {
            self.faults = FaultRule::parse_list(&faults)?;
        }
        if let Some(seed) = non_empty(lookup("BMAC_SIM_SEED")) {
            self.seed = seed.trim().parse().map_err(|_| SimError::Env {
                var: "BMAC_SIM_SEED",
                value: seed.clone(),
                problem: "not a whole number between 0 and 2^64-1".into(),
            })?;
        }
        if let Some(speed) = non_empty(lookup("BMAC_SIM_SPEED")) {
            self.speed = speed.trim().parse().map_err(|_| SimError::Env {
                var: "BMAC_SIM_SPEED",
                value: speed.clone(),
                problem: "not a number".into(),
            })?;
        }
        if let Some(delay) = millis(&lookup, "BMAC_SIM_CONSISTENCY_MS")? {
            self.consistency_delay = delay;
        }
        if let Some(ttl) = millis(&lookup, "BMAC_SIM_TOKEN_TTL_MS")? {
            self.token_ttl = ttl;
        }
        if let Some(uses) = non_empty(lookup("BMAC_SIM_TOKEN_USES")) {
            let n: u32 =
                uses.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| SimError::Env {
                        var: "BMAC_SIM_TOKEN_USES",
                        value: uses.clone(),
                        problem: "not a whole number of calls greater than 0".into(),
                    })?;
            self.token_uses = Some(n);
        }
        if let Some(path) = non_empty(lookup("BMAC_SIM_CLOUD")) {
            self.cloud_path = Some(PathBuf::from(path));
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks the speed and every fault rule.
    pub fn validate(&self) -> Result<(), SimError> {
        if !self.speed.is_finite() || self.speed < 0.0 {
            return Err(SimError::Speed { speed: self.speed });
        }
        for (i, rule) in self.faults.iter().enumerate() {
            rule.validate().map_err(|problem| FaultParseError {
                entry: rule.to_string(),
                position: i + 1,
                problem,
            })?;
        }
        Ok(())
    }

    /// A real-world duration scaled by the speed factor.
    pub fn scale(&self, real: Duration) -> Duration {
        // `validate` guarantees a finite, non-negative speed; saturate rather than panic on
        // products beyond `Duration`'s range.
        Duration::try_from_secs_f64(real.as_secs_f64() * self.speed).unwrap_or(Duration::MAX)
    }
}

/// The duration in whole milliseconds that variable `var` holds, if it is set.
fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<Duration>, SimError> {
    let Some(ms) = non_empty(lookup(var)) else {
        return Ok(None);
    };
    let parsed: u64 = ms.trim().parse().map_err(|_| SimError::Env {
        var,
        value: ms.clone(),
        problem: "not a whole number of milliseconds".into(),
    })?;
    Ok(Some(Duration::from_millis(parsed)))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_back_in_their_syntax() {
        let rules = FaultRule::parse_list("node_pool:throttle:0.5:2, *:5xx:0.1,").unwrap();
        let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["node_pool:throttle:0.5:2", "*:server:0.1"]);
        assert_eq!(FaultRule::parse_list(&shown.join(",")).unwrap(), rules);
    }

    #[test]
    fn scale_saturates_instead_of_panicking() {
        let config = SimConfig {
            speed: 1e300,
            ..SimConfig::default()
        };
        assert_eq!(config.scale(Duration::from_secs(1)), Duration::MAX);
        let instant = SimConfig {
            speed: 0.0,
            ..SimConfig::default()
        };
        assert_eq!(instant.scale(Duration::from_secs(600)), Duration::ZERO);
    }
}

//! The simulated cloud: a deterministic, embedded provider that serves every step kind.
//!
//! It is what bmac runs against by default — the quickstart, the examples, the benches and
//! most tests — so it behaves like a cloud in the ways that matter to the engine:
//! - **Realistic, seeded latency per kind** ([`kinds::base_latency`]: a cluster takes ten
//!   minutes, a namespace a tenth of a second), jittered ±20 % by `(seed, step, attempt)` and
//!   multiplied by [`SimConfig::speed`] so a whole build takes seconds. Waiting is
//!   `tokio::time::sleep`, so tests run on a paused clock.
//! - **Eventual consistency**: a freshly created resource may read as absent for a seeded
//!   part of [`SimConfig::consistency_delay`].
//! - **Injectable faults** ([`FaultRule`]: throttling, 5xx, timeouts, permanent errors),
//!   chosen in the spec or `BMAC_SIM_FAULTS`, drawn per `(seed, step, attempt)` so a faulty
//!   run replays exactly.
//! - **Short-lived cluster tokens** ([`tokens`]): a cluster hands out a credential source,
//!   in-cluster calls mint tokens that expire (and, if configured, rotate on every call) and
//!   re-mint on a 401 — in memory only.
//! - **Its own persisted cloud** ([`SimCloud`], an append-only op log) so resume, drift
//!   (see [`SimCloud::tamper`]) and destroy are observable from one run to the next.
//!
//! Everything random derives from the seed (the private `seed` module's docs say why not `rand`),
//! so two runs with the same seed and spec produce the same ids, latencies and faults.

pub mod cloud;
pub mod config;
pub mod error;
pub mod kinds;
pub mod provider;
mod seed;
pub mod stats;
pub mod tokens;

pub use cloud::{Resource, SimCloud};
pub use config::{FaultKind, FaultRule, SimConfig};
pub use error::{FaultParseError, SimError};
pub use provider::SimProvider;
pub use stats::{Counters, SimStats};

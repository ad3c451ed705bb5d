//! Errors of the simulated cloud: bad configuration (fault rules, speed, environment
//! variables), an unreadable or corrupt persisted cloud, and bad `tamper` requests.
//!
//! These are user-facing — a typo in `BMAC_SIM_FAULTS` or a damaged `.bmac/sim-cloud.log`
//! must say what is wrong and how to fix it — so each variant carries a miette code under
//! `bmac::sim::…` and a help line. Errors of provider *calls* (injected faults, cancellation)
//! are not here: they are [`bmac_core::provider::ProviderError`]s the executor classifies.

use std::path::PathBuf;

/// Why one entry of a fault list (`BMAC_SIM_FAULTS`, or a spec's fault list) is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
#[error("invalid fault rule #{position} `{entry}`: {problem}")]
#[diagnostic(
    code(bmac::sim::bad_fault),
    help(
        "a fault rule is `kind:error:rate[:times]`, rules separated by commas, e.g. \
         `node_pool:throttle:0.5:2,*:server:0.1`; kind is a step kind or `*`, error one of \
         throttle, server, timeout, permanent, rate a number from 0 to 1, times a whole number"
    )
)]
pub struct FaultParseError {
    /// The offending entry, as written.
    pub entry: String,
    /// Its 1-based position in the comma-separated list.
    pub position: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// An error configuring or opening the simulated cloud.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum SimError {
    /// A fault rule did not parse.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Fault(#[from] FaultParseError),

    /// The latency multiplier is negative, infinite or not a number.
    #[error("invalid simulated-cloud speed {speed}: it must be a finite number ≥ 0")]
    #[diagnostic(
        code(bmac::sim::bad_speed),
        help("speed multiplies real-world latencies: 1 is real time, 0.01 is 100× faster, 0 is instant")
    )]
    Speed {
        /// The rejected value.
        speed: f64,
    },

    /// A `BMAC_SIM_*` environment variable has a value that does not parse.
    #[error("environment variable {var}=`{value}` is invalid: {problem}")]
    #[diagnostic(
        code(bmac::sim::bad_env),
        help("BMAC_SIM_SEED is a whole number, BMAC_SIM_SPEED a number ≥ 0, BMAC_SIM_CONSISTENCY_MS a whole number of milliseconds; unset the variable to use the default")
    )]
    Env {
        /// The variable's name.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The persisted cloud could not be read or written.
    #[error("cannot use the simulated cloud at {}", path.display())]
    #[diagnostic(
        code(bmac::sim::cloud_io),
        help("check that the directory exists and is writable; the simulated cloud is an append-only log bmac creates on first use")
    )]
    CloudIo {
        /// The op log's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A line of the persisted cloud (other than a torn last line) is not a valid operation.
    #[error("the simulated cloud at {} is corrupt at line {line}", path.display())]
    #[diagnostic(
        code(bmac::sim::corrupt_cloud),
        help("the file is written only by bmac; if it was edited by hand, restore it, or delete it to start over with an empty simulated cloud")
    )]
    CorruptLog {
        /// The op log's path.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// Why the line does not parse.
        #[source]
        source: serde_json::Error,
    },

    /// A resource cannot be stored: its JSON would not read back (nested deeper than the
    /// JSON reader's limit of 128 levels).
    #[error("the simulated cloud cannot store `{id}`")]
    #[diagnostic(
        code(bmac::sim::unstorable),
        help("the simulated cloud keeps resources as JSON, which it reads back at most 128 levels deep; nest the step's config less deeply")
    )]
    Unstorable {
        /// The resource's step id.
        id: String,
        /// Why its JSON does not read back.
        #[source]
        source: serde_json::Error,
    },

    /// `tamper` named a resource the cloud does not hold.
    #[error("the simulated cloud has no resource `{id}` to tamper with")]
    #[diagnostic(
        code(bmac::sim::no_such_resource),
        help("apply the step first; `SimCloud::resources()` lists what exists")
    )]
    NoSuchResource {
        /// The step id asked for.
        id: String,
    },

    /// `tamper`'s JSON pointer does not lead into the resource's config.
    #[error("cannot tamper with `{id}` at `{pointer}`: {problem}")]
    #[diagnostic(
        code(bmac::sim::bad_pointer),
        help("use a JSON pointer such as `/version` or `/endpoint/public`; its parent must exist and be an object or array")
    )]
    Pointer {
        /// The resource's step id.
        id: String,
        /// The pointer given.
        pointer: String,
        /// What is wrong with it.
        problem: String,
    },
}

//! The command line: global options and one subcommand per verb, as clap derives them.
//!
//! Every flag here maps onto one library call; defaults follow Terraform where a Terraform
//! user would look for them (`plan -out`, `-detailed-exitcode`, `apply PLANFILE`,
//! `-parallelism`, `-target`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build a managed Kubernetes cluster with its security baseline from one spec.
#[derive(Debug, Parser)]
#[command(name = "bmac", version, about, propagate_version = true)]
pub struct Cli {
    /// The spec file.
    #[arg(long, global = true, default_value = "bmac.toml", env = "BMAC_SPEC")]
    pub spec: PathBuf,
    /// Where state lives (default: `.bmac` beside the spec, or `[state] dir`).
    #[arg(long, global = true, env = "BMAC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// The profile of the cloud's credentials chain (default: `AWS_PROFILE` for `eks`,
    /// `CLOUDSDK_ACTIVE_CONFIG_NAME` for `gke`).
    #[arg(long, global = true, env = "BMAC_PROFILE")]
    pub profile: Option<String>,
    /// Call a cloud service at this URL instead of its public endpoint, as `SERVICE=URL`
    /// (`eks=http://127.0.0.1:5000`); repeatable; wins over `AWS_ENDPOINT_URL_<SERVICE>` and
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_<SERVICE>`.
    #[arg(long = "endpoint", global = true, value_name = "SERVICE=URL", value_parser = bmac::providers::Overrides::parse_endpoint)]
    pub endpoints: Vec<(String, String)>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Human-readable text, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text for people (progress bars on a terminal).
    Human,
    /// JSON lines for machines.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec: syntax, fields, values, contradictions, the step graph.
    Validate,
    /// Check the spec against the security baseline.
    Lint {
        /// Treat warnings as errors (`--deny warnings`).
        #[arg(long, value_parser = ["warnings"])]
        deny: Option<String>,
    },
    /// Show what apply would do.
    Plan {
        /// Save the plan to a file for `bmac apply FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 0 with no changes, 2 with changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        select: Selection,
    },
    /// Build or update the cluster.
    Apply {
        /// A plan saved by `bmac plan --out`.
        planfile: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// How many steps run at once.
        #[arg(short = 'p', long, default_value_t = 10)]
        parallelism: usize,
        /// Keep building independent steps after a failure.
        #[arg(long)]
        keep_going: bool,
        /// Apply even when `bmac lint` reports errors.
        #[arg(long)]
        allow_lint_errors: bool,
        #[command(flatten)]
        select: Selection,
    },
    /// Destroy everything bmac built, in reverse dependency order.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// How many steps run at once.
        #[arg(short = 'p', long, default_value_t = 10)]
        parallelism: usize,
        /// Keep destroying independent steps after a failure.
        #[arg(long)]
        keep_going: bool,
        /// Destroy only these steps and what depends on them.
        #[arg(long = "target", value_name = "ID")]
        targets: Vec<String>,
    },
    /// Print the step graph.
    Graph {
        /// `dot`, `mermaid` or `text`.
        #[arg(long, value_enum, default_value_t = GraphKind::Text)]
        format: GraphKind,
    },
    /// Inspect or unlock the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Compare what exists with the last apply and the spec.
    Drift,
}

/// Which part of the graph a command works on, and how state is read.
#[derive(Debug, Args, Default)]
pub struct Selection {
    /// Observe what exists before planning, so changes made by hand are put right (as
    /// Terraform's refresh); `--refresh=false` plans against recorded state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Only these steps and what they depend on.
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<String>,
    /// Leave out these steps and everything depending on them.
    #[arg(long = "exclude", value_name = "ID")]
    pub excludes: Vec<String>,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphKind {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// Indented text.
    Text,
}

/// `bmac state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the steps in state.
    List,
    /// Show one step: config, fingerprint, outputs (secrets hidden).
    Show {
        /// The step id.
        id: String,
    },
    /// Break a stale lock by naming its id.
    Unlock {
        /// The lock id, as the lock error shows it.
        lock_id: String,
    },
}

//! The spec model of what only cloud clusters have: `[network]`, and the cloud fields of
//! `[cluster]` (an existing encryption key, more cluster admins).
//!
//! `[network]` has two forms, as eksctl's `vpc` does:
//! - bmac creates the network: `cidr` (default `10.0.0.0/16`), `zones` (default: the first
//!   three the region offers, chosen at apply), `nat` (`single`, the default — one NAT gateway,
//!   as eksctl's default; `per_zone` for zone-independent egress; `none` for no egress);
//! - an existing one: `vpc_id` with `subnets.private` (and optionally `subnets.public`), each a
//!   table from availability zone to subnet id, so the zones are known before any cloud call
//!   (the provider still checks each subnet is where the spec says).
//!
//! On GKE (`provider = "gke"`) `[network]` is VPC-native, as GKE needs: bmac creates a network
//! and a regional subnetwork (`cidr`, the nodes' range) with two secondary ranges, `pods_cidr`
//! and `services_cidr`, and a Cloud NAT for the private nodes (`nat = "single"`, or `"none"`);
//! or it uses an existing `network` / `subnetwork` whose secondary ranges are named by
//! `pods_range` and `services_range` (see [`GkeNetwork`]). `zones` are the node locations.

use std::collections::BTreeMap;

use miette::SourceSpan;

use super::model::{spelled_enum, EntryMeta, Spanned};

spelled_enum! {
    /// How nodes in private subnets reach the internet.
    NatMode {
        /// One NAT gateway for every zone (cheapest; egress depends on one zone).
        Single = "single",
        /// A NAT gateway in each zone.
        PerZone = "per_zone",
        /// No NAT gateway: private subnets have no route out.
        None = "none",
    }
}

/// An existing VPC and its subnets.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingNetwork {
    /// The VPC id (`vpc-…`).
    pub vpc_id: Spanned<String>,
    /// Private subnets by availability zone.
    pub private_subnets: BTreeMap<String, Spanned<String>>,
    /// Public subnets by availability zone (may be empty).
    pub public_subnets: BTreeMap<String, Spanned<String>>,
    /// The `subnets` table.
    pub subnets_span: SourceSpan,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Entry id `network`.
    pub meta: EntryMeta,
    /// The VPC's address range when bmac creates it.
    pub cidr: Spanned<String>,
    /// The zones to spread subnets over; empty means the region's first [`DEFAULT_ZONES`].
    pub zones: Vec<Spanned<String>>,
    /// NAT gateways.
    pub nat: NatMode,
    /// Use this network instead of creating one.
    pub existing: Option<ExistingNetwork>,
    /// The GKE form's own fields (`provider = "gke"` only).
    pub gke: Option<GkeNetwork>,
}

/// The GKE form of `[network]`: the secondary ranges of a VPC-native cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct GkeNetwork {
    /// The pods' secondary range of a created subnetwork.
    pub pods_cidr: Spanned<String>,
    /// The services' secondary range of a created subnetwork.
    pub services_cidr: Spanned<String>,
    /// Use this network and subnetwork instead of creating them.
    pub existing: Option<ExistingGkeNetwork>,
}

/// An existing VPC network and subnetwork for a GKE cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingGkeNetwork {
    /// The network's name (or `projects/P/global/networks/N` of a Shared VPC host).
    pub network: Spanned<String>,
    /// The subnetwork's name (or `projects/P/regions/R/subnetworks/S`), in the cluster's region.
    pub subnetwork: Spanned<String>,
    /// The name of its secondary range for pods.
    pub pods_range: Spanned<String>,
    /// The name of its secondary range for services.
    pub services_range: Spanned<String>,
}

/// How many zones a created network spans when the spec names none.
pub const DEFAULT_ZONES: u32 = 3;
/// The address range of a created network when the spec names none.
pub const DEFAULT_CIDR: &str = "10.0.0.0/16";
/// GKE: the nodes' range of a created subnetwork when the spec names none.
pub const GKE_DEFAULT_CIDR: &str = "10.0.0.0/20";
/// GKE: the pods' secondary range when the spec names none (room for 1024 nodes of 110 pods).
pub const GKE_DEFAULT_PODS_CIDR: &str = "10.16.0.0/14";
/// GKE: the services' secondary range when the spec names none.
pub const GKE_DEFAULT_SERVICES_CIDR: &str = "10.20.0.0/20";

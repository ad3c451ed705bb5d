//! The tags bmac puts on what it creates in AWS, and how it finds those resources again.
//!
//! Every created resource carries `bmac.dev/cluster = <cluster>` and `bmac.dev/step = <step
//! id>` (plus a `Name` where the console shows one). Resources AWS lets two of exist with the
//! same parameters (a VPC, a subnet, a gateway) are looked up by these tags before they are
//! created, so a create interrupted after AWS made the resource but before the journal said so
//! adopts it instead of making a second one. Tags carry no secret.

/// The tag naming the cluster a resource belongs to.
pub const CLUSTER_TAG: &str = "bmac.dev/cluster";
/// The tag naming the step that made a resource.
pub const STEP_TAG: &str = "bmac.dev/step";
/// The tag naming a resource's part within its step (`private-eu-west-1a`).
pub const PART_TAG: &str = "bmac.dev/part";

/// The tags of a resource made by `step` for `cluster` (`part` names it within the step).
pub fn of(cluster: &str, step: &str, part: Option<&str>) -> Vec<(String, String)> {
    let mut tags = vec![
        (CLUSTER_TAG.to_owned(), cluster.to_owned()),
        (STEP_TAG.to_owned(), step.to_owned()),
    ];
    if let Some(part) = part {
        tags.push((PART_TAG.to_owned(), part.to_owned()));
    }
    tags
}

//! The labels that make what bmac creates findable again: `bmac-cluster` and `bmac-step` on
//! every Google resource that takes labels. Label values allow lower-case letters, digits, `_`
//! and `-` up to 63 characters, so a step id's dots become `_`.

use std::collections::HashMap;

/// The label naming the cluster a resource belongs to.
pub const CLUSTER: &str = "bmac-cluster";
/// The label naming the step that made a resource.
pub const STEP: &str = "bmac-step";

/// `value` as a label value (see the module docs).
pub fn value(value: &str) -> String {
    value
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .take(63)
        .collect()
}

/// The labels of a resource step `step` of cluster `cluster` makes.
pub fn of(cluster: &str, step: &str) -> HashMap<String, String> {
    HashMap::from([
        (CLUSTER.to_owned(), value(cluster)),
        (STEP.to_owned(), value(step)),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_ids_become_label_values() {
        let l = super::of("prod", "node_pool.general.role");
        assert_eq!(l["bmac-step"], "node_pool_general_role");
        assert_eq!(super::value(&"x".repeat(80)).len(), 63);
    }
}

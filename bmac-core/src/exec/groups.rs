//! Concurrency groups: named sets of steps that may run only so many at a time, on top of the
//! run's parallelism cap ([`Provider::concurrency_group`](crate::provider::Provider::concurrency_group)
//! — one update at a time per cluster, a per-API request budget).
//!
//! The coordinator and a refresh ([`Executor::refresh`](super::Executor::refresh)) both use
//! them. Groups are resolved once per run, when the topology is built: each node gets a group
//! number (or none), each group its limit. A ready node whose group is full is *parked* in its
//! group's own queue (in the run's scheduling order) instead of starting; when a node of the
//! group stops running, the best parked one goes back to the ready queue. A run whose provider
//! names no group keeps an empty table and pays one branch per start.

use std::collections::HashMap;

use crate::plan::PlanNode;
use crate::provider::Providers;

use super::topology::ReadyQueue;
use super::SchedulingOrder;

/// No group.
const NONE: u32 = u32::MAX;

/// The run's concurrency groups. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Per node, its group number (`NONE` for none); empty when no node has a group.
    of: Vec<u32>,
    /// Per group, its limit.
    limit: Vec<usize>,
    /// Per group, how many of its nodes are journaling or running.
    running: Vec<usize>,
    /// Per group, ready nodes waiting for a slot.
    parked: Vec<ReadyQueue>,
}

impl Groups {
    /// The groups the providers put a plan's steps in — those that `counts` says make
    /// provider calls (a run's changing steps, a refresh's applied ones). Steps naming one
    /// group with different limits get the smallest.
    pub(crate) fn build(
        nodes: &[PlanNode],
        providers: &Providers,
        order: SchedulingOrder,
        counts: impl Fn(&PlanNode) -> bool,
    ) -> Self {
        let mut groups = Groups::default();
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if !counts(node) {
                continue;
            }
            let Some(group) = providers
                .for_kind(node.step.kind.name())
                .and_then(|p| p.concurrency_group(&node.step))
            else {
                continue;
            };
            let next = names.len() as u32;
            let g = *names.entry(group.name).or_insert(next);
            if g == next {
                groups.limit.push(group.limit.max(1));
                groups.running.push(0);
                groups.parked.push(ReadyQueue::new(order, 0));
            } else {
                let limit = &mut groups.limit[g as usize];
                *limit = (*limit).min(group.limit.max(1));
            }
            if groups.of.is_empty() {
                groups.of = vec![NONE; nodes.len()];
            }
            groups.of[i] = g;
        }
        groups
    }

    fn group(&self, node: u32) -> Option<usize> {
        match self.of.get(node as usize) {
            Some(&g) if g != NONE => Some(g as usize),
            _ => None,
        }
    }

    /// Whether node `node` may start now. If its group is full it is parked (with
    /// `priority`) and comes back from [`release`](Groups::release).
    pub(crate) fn admit(&mut self, node: u32, priority: u64) -> bool {
        let Some(g) = self.group(node) else {
            return true;
        };
        if self.running[g] < self.limit[g] {
            return true;
        }
        self.parked[g].push(node, priority);
        false
    }

    /// Node `node` started (its slot is taken until [`release`](Groups::release)).
    pub(crate) fn started(&mut self, node: u32) {
        if let Some(g) = self.group(node) {
            self.running[g] += 1;
        }
    }

    /// Node `node` stopped running: frees its slot, and hands back the parked node that may
    /// start in it, if any.
    pub(crate) fn release(&mut self, node: u32) -> Option<u32> {
        let g = self.group(node)?;
        self.running[g] -= 1;
        self.parked[g].pop()
    }

    /// Every parked node, removed (the run stops starting steps).
    pub(crate) fn drain_parked(&mut self) -> Vec<u32> {
        self.parked.iter_mut().flat_map(ReadyQueue::drain).collect()
    }
}

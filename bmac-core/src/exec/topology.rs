//! The plan's graph as the coordinator needs it, built once per run in O(nodes + edges):
//! dependents in compressed-sparse-row form, initial dependency counters, and each node's
//! scheduling priority; plus the [`ReadyQueue`] ordered by that priority.
//!
//! Priority is the longest remaining path from a node to a sink, weighted by the provider's
//! `expected_duration` (1 s when it has no estimate; planned no-ops weigh nothing). A refresh
//! builds the same topology with its own weights (every observed step alike). Because a
//! sealed plan stores nodes in topological order (every dependency has a smaller index), one
//! reverse pass computes it: a node's dependents all come later, so theirs are known. Starting
//! the ready node with the longest tail first is what keeps a long chain (cluster → node pool
//! → CNI → policies) from waiting behind a crowd of short independent steps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use crate::plan::{Action, Plan, PlanNode};
use crate::provider::Providers;

use super::{ExecError, SchedulingOrder};

/// Estimate for a step whose provider gives none.
const DEFAULT_WEIGHT: Duration = Duration::from_secs(1);

/// Who depends on whom, in compressed-sparse-row form.
#[derive(Debug)]
pub(crate) struct Dependents {
    /// `targets[offsets[i]..offsets[i + 1]]` are the nodes that depend on node `i`.
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Dependents {
    /// The nodes that depend on node `i`.
    pub(crate) fn of(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Dependents, counters and priorities of a plan.
#[derive(Debug)]
pub(crate) struct Topology {
    /// Who depends on whom.
    pub(crate) dependents: Dependents,
    /// Unfinished dependencies per node, at the start.
    pub(crate) pending: Vec<u32>,
    /// Longest weighted path to a sink, in microseconds.
    pub(crate) priority: Vec<u64>,
}

impl Topology {
    /// Builds the topology of a run, checking the plan's ordering invariant and that every
    /// changing step has a provider. A step weighs its provider's `expected_duration`.
    pub(crate) fn build(plan: &Plan, providers: &Providers) -> Result<Self, ExecError> {
        for (i, node) in plan.nodes().iter().enumerate() {
            if let Some(&d) = node.deps.iter().find(|&&d| d as usize >= i) {
                return Err(ExecError::InvalidPlan {
                    node: i,
                    step: node.step.id.clone(),
                    dependency: d,
                });
            }
        }
        Topology::weighted(plan.nodes(), |node| {
            if node.action == Action::NoOp {
                return Ok(Duration::ZERO);
            }
            let provider =
                providers
                    .for_kind(node.step.kind.name())
                    .ok_or_else(|| ExecError::NoProvider {
                        step: node.step.id.clone(),
                        kind: node.step.kind.name().to_owned(),
                    })?;
            Ok(provider
                .expected_duration(&node.step)
                .unwrap_or(DEFAULT_WEIGHT))
        })
    }

    /// The topology of a plan's nodes, which are in topological order (every dependency has
    /// a smaller index, as the planner makes them), each node weighing what `weight` says (the
    /// first error it returns is returned).
    pub(crate) fn weighted<E>(
        nodes: &[PlanNode],
        mut weight: impl FnMut(&PlanNode) -> Result<Duration, E>,
    ) -> Result<Self, E> {
        let n = nodes.len();
        let mut pending = vec![0u32; n];
        let mut counts = vec![0u32; n + 1];
        for (i, node) in nodes.iter().enumerate() {
            for &d in &node.deps {
                counts[d as usize + 1] += 1;
            }
            pending[i] = node.deps.len() as u32;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts;
        let mut cursor = offsets.clone();
        let mut targets = vec![0u32; offsets[n] as usize];
        for (i, node) in nodes.iter().enumerate() {
            for &d in &node.deps {
                let slot = &mut cursor[d as usize];
                targets[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        let dependents = Dependents { offsets, targets };

        let mut priority = vec![0u64; n];
        for i in (0..n).rev() {
            let weight = weight(&nodes[i])?;
            let weight = u64::try_from(weight.as_micros()).unwrap_or(u64::MAX);
            let tail = dependents
                .of(i as u32)
                .iter()
                .map(|&d| priority[d as usize])
                .max()
                .unwrap_or(0);
            priority[i] = weight.saturating_add(tail);
        }
        Ok(Topology {
            dependents,
            pending,
            priority,
        })
    }
}

/// Ready nodes, popped highest priority first (ties: lower index) or in arrival order.
#[derive(Debug)]
pub(crate) enum ReadyQueue {
    /// Longest remaining path first.
    CriticalPath(BinaryHeap<(u64, Reverse<u32>)>),
    /// In the order nodes became ready.
    Fifo(VecDeque<u32>),
}

impl ReadyQueue {
    /// An empty queue for `order`.
    pub(crate) fn new(order: SchedulingOrder, capacity: usize) -> Self {
        match order {
            SchedulingOrder::CriticalPath => {
                ReadyQueue::CriticalPath(BinaryHeap::with_capacity(capacity))
            }
            SchedulingOrder::Fifo => ReadyQueue::Fifo(VecDeque::with_capacity(capacity)),
        }
    }

    /// Adds a ready node.
    pub(crate) fn push(&mut self, node: u32, priority: u64) {
        match self {
            ReadyQueue::CriticalPath(heap) => heap.push((priority, Reverse(node))),
            ReadyQueue::Fifo(queue) => queue.push_back(node),
        }
    }

    /// Puts back a node just popped, so it is the next one popped again.
    pub(crate) fn unpop(&mut self, node: u32, priority: u64) {
        match self {
            ReadyQueue::CriticalPath(heap) => heap.push((priority, Reverse(node))),
            ReadyQueue::Fifo(queue) => queue.push_front(node),
        }
    }

    /// The next node to start.
    pub(crate) fn pop(&mut self) -> Option<u32> {
        match self {
            ReadyQueue::CriticalPath(heap) => heap.pop().map(|(_, Reverse(n))| n),
            ReadyQueue::Fifo(queue) => queue.pop_front(),
        }
    }

    /// Removes every node, returning them.
    pub(crate) fn drain(&mut self) -> Vec<u32> {
        match self {
            ReadyQueue::CriticalPath(heap) => heap.drain().map(|(_, Reverse(n))| n).collect(),
            ReadyQueue::Fifo(queue) => queue.drain(..).collect(),
        }
    }
}

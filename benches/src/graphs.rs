//! Seeded benchmark graphs: the shapes every table is measured on, and their conversions to
//! bmac [`Step`]s, a petgraph `DiGraph` (the reference) and per-step latencies.
//!
//! A [`Dag`] stores, for each node, the earlier nodes it depends on (`parents[i]` holds only
//! indices `< i`), so node order is always a topological order and every generator is
//! acyclic by construction. Every generator is a pure function of its size and seed: two runs
//! of the benchmark measure the same graphs.
//!
//! Shapes (the list):
//! - [`Shape::Chain`]: `0 → 1 → … → n-1`, the deepest graph there is (no recursion may walk it);
//! - [`Shape::FanOut`]: one root, every other step depends on it alone;
//! - [`Shape::Diamond`]: a stack of diamonds — a join step forks into [`DIAMOND_WIDTH`]
//!   parallel steps that join again into the next join step;
//! - [`Shape::Random`]: each step depends on `0..=8` distinct earlier steps drawn uniformly.

use std::fmt;
use std::time::Duration;

use bmac_core::step::{Kind, Step, StepId};
use petgraph::graph::{DiGraph, NodeIndex};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The most parents a step of a random DAG has.
pub const MAX_PARENTS: usize = 8;
/// How many parallel steps each diamond of [`Shape::Diamond`] has.
pub const DIAMOND_WIDTH: usize = 16;
/// The step kind every benchmark step has.
pub const BENCH_KIND: &str = "bench";

/// A graph shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A single chain.
    Chain,
    /// One root and `n - 1` steps depending on it.
    FanOut,
    /// Stacked diamonds of width [`DIAMOND_WIDTH`].
    Diamond,
    /// Up to [`MAX_PARENTS`] uniformly drawn earlier parents per step.
    Random,
    /// No edges at all.
    Independent,
}

impl Shape {
    /// The four shapes the planning table covers.
    pub const PLANNING: [Shape; 4] = [Shape::Chain, Shape::FanOut, Shape::Diamond, Shape::Random];
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Chain => "chain",
            Shape::FanOut => "fan-out",
            Shape::Diamond => "diamond",
            Shape::Random => "random",
            Shape::Independent => "independent",
        })
    }
}

/// A DAG whose node order is a topological order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// `parents[i]`: the nodes `i` depends on, each `< i`, without duplicates.
    pub parents: Vec<Vec<u32>>,
}

impl Dag {
    /// A seeded graph of `shape` with `n` nodes.
    pub fn generate(shape: Shape, n: usize, seed: u64) -> Dag {
        let parents = match shape {
            Shape::Chain => (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i as u32 - 1] })
                .collect(),
            Shape::FanOut => (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![0] })
                .collect(),
            Shape::Independent => vec![Vec::new(); n],
            Shape::Diamond => diamonds(n),
            Shape::Random => random(n, seed),
        };
        Dag { parents }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.parents.iter().map(Vec::len).sum()
    }

    /// `children[i]`: the nodes that depend on `i`, ascending.
    pub fn children(&self) -> Vec<Vec<u32>> {
        let mut children = vec![Vec::new(); self.len()];
        for (i, ps) in self.parents.iter().enumerate() {
            for &p in ps {
                children[p as usize].push(i as u32);
            }
        }
        children
    }

    /// Depth of every node: 0 for a node without parents, else 1 + the deepest parent.
    pub fn levels(&self) -> Vec<u32> {
        let mut level = vec![0u32; self.len()];
        for (i, ps) in self.parents.iter().enumerate() {
            level[i] = ps.iter().map(|&p| level[p as usize] + 1).max().unwrap_or(0);
        }
        level
    }

    /// The longest path when node `i` takes `weights[i]` (the critical path).
    pub fn critical_path(&self, weights: &[Duration]) -> Duration {
        let mut finish = vec![Duration::ZERO; self.len()];
        for (i, ps) in self.parents.iter().enumerate() {
            let start = ps
                .iter()
                .map(|&p| finish[p as usize])
                .max()
                .unwrap_or_default();
            finish[i] = start + weights[i];
        }
        finish.into_iter().max().unwrap_or_default()
    }

    /// The petgraph form (edge from dependency to dependent), the planning reference.
    pub fn to_petgraph(&self) -> DiGraph<(), ()> {
        let mut g = DiGraph::with_capacity(self.len(), self.edge_count());
        for _ in 0..self.len() {
            g.add_node(());
        }
        for (i, ps) in self.parents.iter().enumerate() {
            for &p in ps {
                g.add_edge(NodeIndex::new(p as usize), NodeIndex::new(i), ());
            }
        }
        g
    }

    /// The graph as bmac steps: `s<i>` of kind [`BENCH_KIND`], a one-field config, explicit
    /// `depends_on` edges.
    pub fn to_steps(&self) -> Vec<Step> {
        let kind = Kind::new(BENCH_KIND);
        let ids: Vec<StepId> = (0..self.len()).map(step_id).collect();
        self.parents
            .iter()
            .enumerate()
            .map(|(i, ps)| Step {
                id: ids[i].clone(),
                kind: kind.clone(),
                config: serde_json::json!({ "n": i }).into(),
                deps: ps.iter().map(|&p| ids[p as usize].clone()).collect(),
                inputs: Default::default(),
            })
            .collect()
    }
}

/// The id of benchmark step `i`.
pub fn step_id(i: usize) -> StepId {
    // `s` followed by digits is always a valid id.
    StepId::new(format!("s{i}")).unwrap_or_else(|_| unreachable!("`s<digits>` is valid"))
}

/// The index of a benchmark step id (`s<i>`), if it is one.
pub fn step_index(id: &StepId) -> Option<usize> {
    id.as_str().strip_prefix('s')?.parse().ok()
}

fn diamonds(n: usize) -> Vec<Vec<u32>> {
    let mut parents: Vec<Vec<u32>> = Vec::with_capacity(n);
    let mut join: Option<u32> = None;
    let mut fork: Vec<u32> = Vec::with_capacity(DIAMOND_WIDTH);
    while parents.len() < n {
        let i = parents.len() as u32;
        if fork.len() == DIAMOND_WIDTH || join.is_none() {
            // A join step: after the whole fork (or the first step of the graph).
            parents.push(std::mem::take(&mut fork));
            join = Some(i);
        } else {
            parents.push(join.into_iter().collect());
            fork.push(i);
        }
    }
    parents
}

fn random(n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let k = rng.gen_range(0..=MAX_PARENTS.min(i));
            let mut ps: Vec<u32> = rand::seq::index::sample(&mut rng, i, k)
                .into_iter()
                .map(|p| p as u32)
                .collect();
            ps.sort_unstable();
            ps
        })
        .collect()
}

/// Seeded log-normal latencies: `exp(ln(median) + sigma · z)` with `z` standard normal
/// (Box–Muller), rounded to whole milliseconds and at least 1 ms.
pub fn lognormal_latencies(n: usize, seed: u64, median: Duration, sigma: f64) -> Vec<Duration> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mu = median.as_secs_f64().ln();
    (0..n)
        .map(|_| {
            let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
            let u2: f64 = rng.gen();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let secs = (mu + sigma * z).exp();
            Duration::from_millis(((secs * 1000.0).round() as u64).max(1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_topological(dag: &Dag) {
        for (i, ps) in dag.parents.iter().enumerate() {
            assert!(ps.iter().all(|&p| (p as usize) < i), "node {i}: {ps:?}");
            let mut sorted = ps.clone();
            sorted.dedup();
            assert_eq!(&sorted, ps, "duplicate parent at {i}");
        }
    }

    #[test]
    fn shapes_have_their_structure() {
        for shape in [
            Shape::Chain,
            Shape::FanOut,
            Shape::Diamond,
            Shape::Random,
            Shape::Independent,
        ] {
            let dag = Dag::generate(shape, 1000, 7);
            assert_eq!(dag.len(), 1000);
            check_topological(&dag);
        }
        assert_eq!(Dag::generate(Shape::Chain, 1000, 0).edge_count(), 999);
        assert_eq!(
            *Dag::generate(Shape::Chain, 1000, 0)
                .levels()
                .last()
                .unwrap(),
            999
        );
        assert_eq!(Dag::generate(Shape::FanOut, 1000, 0).edge_count(), 999);
        assert_eq!(Dag::generate(Shape::Independent, 10, 0).edge_count(), 0);
        let d = Dag::generate(Shape::Diamond, 35, 0);
        // join, 16 forks, join (after all 16), 16 forks, join.
        assert_eq!(d.parents[17].len(), DIAMOND_WIDTH);
        assert_eq!(d.parents[18], vec![17]);
        assert_eq!(d.levels()[34], 4);
        let r = Dag::generate(Shape::Random, 1000, 7);
        assert!(r.parents.iter().all(|p| p.len() <= MAX_PARENTS));
        assert!(r.edge_count() > 3000, "{}", r.edge_count());
    }

    #[test]
    fn generation_is_seeded() {
        assert_eq!(
            Dag::generate(Shape::Random, 500, 1),
            Dag::generate(Shape::Random, 500, 1)
        );
        assert_ne!(
            Dag::generate(Shape::Random, 500, 1),
            Dag::generate(Shape::Random, 500, 2)
        );
        let a = lognormal_latencies(100, 3, Duration::from_secs(1), 1.0);
        assert_eq!(a, lognormal_latencies(100, 3, Duration::from_secs(1), 1.0));
        assert!(a.iter().all(|d| *d >= Duration::from_millis(1)));
    }

    #[test]
    fn critical_path_is_the_longest_weighted_path() {
        // 0 → 2, 1 → 2: the path through the heavier root wins.
        let dag = Dag {
            parents: vec![vec![], vec![], vec![0, 1]],
        };
        let w = [1, 5, 2].map(Duration::from_secs);
        assert_eq!(dag.critical_path(&w), Duration::from_secs(7));
    }

    #[test]
    fn steps_mirror_the_graph() {
        let dag = Dag::generate(Shape::Random, 50, 9);
        let steps = dag.to_steps();
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(step_index(&s.id), Some(i));
            let deps: Vec<usize> = s.deps.iter().filter_map(step_index).collect();
            let want: Vec<usize> = dag.parents[i].iter().map(|&p| p as usize).collect();
            assert_eq!(deps, want);
        }
        assert_eq!(dag.to_petgraph().edge_count(), dag.edge_count());
    }
}

//! The `dagrs` side of the scheduling table: the same graph as a dagrs `Graph`, the same cap.
//!
//! dagrs 0.9's `Graph` has no parallelism setting: it spawns a task for every node of a
//! block up front, and a node learns that its predecessors finished by receiving on its
//! input channels (flow-based programming). So each node here is an action that (1) waits for
//! a message from every parent, (2) holds a permit of a semaphore shared by the whole graph
//! — the cap — while it "runs" (returns at once, like the other schedulers' steps), and
//! (3) broadcasts to its children. Graph construction is not timed; `async_start` is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmac_benches::graphs::Dag;
use bmac_benches::scheduling::ExternalScheduler;
use dagrs::async_trait::async_trait;
use dagrs::{
    Action, Content, DefaultNode, EnvVar, Graph, InChannels, Node, NodeTable, OutChannels, Output,
};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

/// One node: wait for every parent, run under the cap, tell every child.
struct CappedStep {
    permits: Arc<Semaphore>,
}

#[async_trait]
impl Action for CappedStep {
    async fn run(
        &self,
        input: &mut InChannels,
        output: &mut OutChannels,
        _env: Arc<EnvVar>,
    ) -> Output {
        let parents_ok = input.map(|m| m.is_ok()).await.into_iter().all(|ok| ok);
        if !parents_ok {
            return Output::error(dagrs::DagrsError::new(
                dagrs::ErrorCode::DgRun0006NodeExecutionFailed,
                "a parent's channel closed without a message",
            ));
        }
        match self.permits.acquire().await {
            Ok(_permit) => std::hint::black_box(()),
            Err(_) => return Output::empty(),
        }
        output.broadcast(Content::new(())).await;
        Output::empty()
    }
}

/// dagrs 0.9 as an [`ExternalScheduler`].
pub struct Dagrs;

impl ExternalScheduler for Dagrs {
    fn name(&self) -> String {
        "dagrs 0.9".to_owned()
    }

    fn run(&self, dag: &Dag, cap: usize, rt: &Runtime) -> Result<(Duration, usize), String> {
        let permits = Arc::new(Semaphore::new(cap));
        let mut table = NodeTable::new();
        let mut graph = Graph::new();
        let mut ids = Vec::with_capacity(dag.len());
        for i in 0..dag.len() {
            let node = DefaultNode::with_action(
                format!("s{i}"),
                CappedStep {
                    permits: Arc::clone(&permits),
                },
                &mut table,
            );
            ids.push(node.id());
            graph.add_node(node).map_err(|e| e.to_string())?;
        }
        for (i, children) in dag.children().iter().enumerate() {
            if !children.is_empty() {
                graph
                    .add_edge(ids[i], children.iter().map(|&c| ids[c as usize]))
                    .map_err(|e| e.to_string())?;
            }
        }
        let start = Instant::now();
        let report = rt
            .block_on(graph.async_start())
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        Ok((took, report.node_succeeded))
    }
}

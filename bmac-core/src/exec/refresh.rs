//! Refresh and drift through the executor: every applied step of a spec observed under the
//! rules a run's provider calls follow — [`Executor::drift`] reports what moved,
//! [`Executor::refresh`] folds it into a copy of the state (see [`crate::drift`] for what is
//! compared and how the fold works).
//!
//! # Shape
//! The spec is planned against the state (by the [`Planner`], so steps come in dependency
//! order with their last applied config), and one loop owns the refresh: dependency counters
//! and a ready queue ordered by the longest remaining chain of observes (the run's
//! [`Topology`] and [`ReadyQueue`], with every observed step weighing the same), the
//! providers' concurrency groups ([`Groups`], counting the steps that have something applied),
//! and at most `parallelism` observes in flight, polled together in the caller's task (an
//! observe is a read: it waits on the remote side, it does not compute). A step starts as soon
//! as every step it depends on has been observed, with its inputs taken from what those
//! observed — else from what state recorded — so a secret state keeps only as a digest is
//! re-read rather than needed. Steps never applied are reported at once, without a call;
//! deletions (in state, no longer in the spec) are not reported.
//!
//! # Calls
//! Each observe goes through the executor's attempt loop: per-attempt timeout (the provider's
//! `max_duration` for the step, else the executor's step timeout), retryable errors and
//! timeouts retried with backoff and jitter (seeded per step, as in a run), a
//! [`StepRetrying`](crate::event::Event::StepRetrying) event per retry when the executor has
//! an event sink. An observe that still fails is reported unobservable; one that answers
//! [`Observed::Pending`] is reported in progress — a refresh does not wait for it. The call's
//! context carries the step's last checkpoint from state, so a provider can look at the
//! operation a crashed run left running.
//!
//! # Cancellation
//! When the executor's token fires, no observe starts; those running see their context's
//! token fire and get the grace period to end, after which they are dropped. Either way the
//! refresh ends with [`DriftError::Cancelled`]: a report missing steps would make a plan
//! against a state half refreshed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;

use crate::drift::{self, DriftError, DriftReport, Refreshed, StepReport};
use crate::event::{CancelReason, Event};
use crate::plan::{Action, PlanNode, Planner};
use crate::provider::{Observed, Provider, ProviderError};
use crate::state::State;
use crate::step::{Inputs, Outputs, Step};

use super::groups::Groups;
use super::report::StepError;
use super::retry::{step_seed, Attempts};
use super::topology::{Dependents, ReadyQueue, Topology};
use super::Executor;

/// The weight of one observed step in the ready queue's order.
const OBSERVE_WEIGHT: Duration = Duration::from_secs(1);

impl Executor {
    /// Observes every applied step of `steps` and compares what exists with what `state`
    /// says was applied, under this executor's parallelism cap, retry policy, timeouts and
    /// cancellation (see the module docs and [`crate::drift`]). Touches no journal and takes
    /// no lock.
    pub async fn drift(
        &self,
        steps: &[Arc<Step>],
        state: &State,
    ) -> Result<DriftReport, DriftError> {
        let plan = Planner::new(steps.iter().cloned(), state).plan()?;
        Refresh::new(self, plan.nodes(), state)?.run().await
    }

    /// Refreshes state from what exists, as Terraform does before planning: observes as
    /// [`drift`](Executor::drift) does and folds what moved into a copy of `state` (see
    /// [`Refreshed`]). The journal is not touched.
    pub async fn refresh(
        &self,
        steps: &[Arc<Step>],
        state: &State,
    ) -> Result<Refreshed, DriftError> {
        let report = self.drift(steps, state).await?;
        Ok(drift::fold(state, report))
    }
}

/// An observe in flight: the node, and what its attempts came to.
type Observing<'a> =
    Pin<Box<dyn Future<Output = (u32, Result<Observed, ProviderError>)> + Send + 'a>>;

/// Whether a refresh observes `node`: it has something applied and is still in the spec.
fn is_observed(node: &PlanNode) -> bool {
    node.prior.is_some() && node.action != Action::Delete
}

/// The state of one refresh. See the module docs.
struct Refresh<'a> {
    exec: &'a Executor,
    nodes: &'a [PlanNode],
    state: &'a State,
    /// Per node, the provider that observes it (`None`: not observed).
    providers: Vec<Option<&'a dyn Provider>>,
    dependents: Dependents,
    /// Dependencies not yet observed, per node.
    pending: Vec<u32>,
    priority: Vec<u64>,
    ready: ReadyQueue,
    groups: Groups,
    /// Per node, the outputs observed (`None`: not observed, or it does not exist).
    outputs: Vec<Option<Outputs>>,
    /// Per node, what was found (`None` for deletions).
    reports: Vec<Option<StepReport>>,
}

impl<'a> Refresh<'a> {
    /// A refresh of `nodes` (a plan's, in its order), refusing a step to observe whose kind
    /// has no provider before anything is called.
    fn new(
        exec: &'a Executor,
        nodes: &'a [PlanNode],
        state: &'a State,
    ) -> Result<Self, DriftError> {
        let providers = nodes
            .iter()
            .map(|node| {
                if !is_observed(node) {
                    return Ok(None);
                }
                let kind = node.step.kind.name();
                match exec.providers.for_kind(kind) {
                    Some(provider) => Ok(Some(&**provider)),
                    None => Err(DriftError::NoProvider {
                        id: node.step.id.clone(),
                        kind: kind.to_owned(),
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Ok(topology) = Topology::weighted(nodes, |node| {
            Ok::<_, Infallible>(if is_observed(node) {
                OBSERVE_WEIGHT
            } else {
                Duration::ZERO
            })
        });
        let n = nodes.len();
        Ok(Refresh {
            exec,
            nodes,
            state,
            providers,
            dependents: topology.dependents,
            pending: topology.pending,
            priority: topology.priority,
            ready: ReadyQueue::new(exec.order, n.min(1024)),
            groups: Groups::build(nodes, &exec.providers, exec.order, is_observed),
            outputs: vec![None; n],
            reports: vec![None; n],
        })
    }

    /// Observes everything; the report, in plan order.
    async fn run(mut self) -> Result<DriftReport, DriftError> {
        for i in 0..self.nodes.len() as u32 {
            if self.pending[i as usize] == 0 {
                self.ready.push(i, self.priority[i as usize]);
            }
        }
        let cancel = &self.exec.cancel;
        let mut running: FuturesUnordered<Observing<'a>> = FuturesUnordered::new();
        // Armed once cancellation is seen: no new starts, and this long for those running.
        let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            if grace.is_none() && cancel.is_cancelled() {
                self.emit(CancelReason::Requested);
                grace = Some(Box::pin(tokio::time::sleep(self.exec.grace)));
            }
            if grace.is_none() {
                self.start_ready(&mut running);
            }
            if running.is_empty() {
                break;
            }
            let cancelling = grace.is_some();
            let grace_over = async {
                match grace.as_mut() {
                    Some(sleep) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if !cancelling => {}
                _ = grace_over => {
                    self.emit(CancelReason::GraceExpired);
                    break;
                }
                Some((i, observed)) = running.next() => self.finished(i, observed),
            }
        }
        if grace.is_some() {
            return Err(DriftError::Cancelled);
        }
        Ok(DriftReport {
            steps: self.reports.into_iter().flatten().collect(),
        })
    }

    fn emit(&self, reason: CancelReason) {
        if let Some(events) = &self.exec.events {
            let _ = events.send(Event::Cancelling { reason });
        }
    }

    /// Starts ready steps until the cap is reached or none is ready; steps with nothing to
    /// observe complete on the spot.
    fn start_ready(&mut self, running: &mut FuturesUnordered<Observing<'a>>) {
        let nodes = self.nodes;
        while let Some(i) = self.ready.pop() {
            let node = &nodes[i as usize];
            let Some(provider) = self.providers[i as usize] else {
                if node.action != Action::Delete {
                    self.reports[i as usize] = Some(StepReport::not_applied(&node.step));
                }
                self.complete(i);
                continue;
            };
            if running.len() >= self.exec.parallelism {
                self.ready.unpop(i, self.priority[i as usize]);
                break;
            }
            if !self.groups.admit(i, self.priority[i as usize]) {
                // Its group is full: parked until one of the group is observed.
                continue;
            }
            self.groups.started(i);
            let inputs = self.inputs(i);
            let checkpoint = self
                .state
                .steps
                .get(&node.step.id)
                .and_then(|s| s.checkpoint.as_ref());
            running.push(observe(self.exec, i, node, provider, inputs, checkpoint));
        }
    }

    /// Node `i`'s observe came to `observed`.
    fn finished(&mut self, i: u32, observed: Result<Observed, ProviderError>) {
        if let Some(next) = self.groups.release(i) {
            self.ready.push(next, self.priority[next as usize]);
        }
        let node = &self.nodes[i as usize];
        if let Some(prior) = &node.prior {
            let (report, outputs) = StepReport::observed(&node.step, prior, observed);
            self.reports[i as usize] = Some(report);
            self.outputs[i as usize] = outputs;
        }
        self.complete(i);
    }

    /// Node `i` is done: its dependents may start once all their dependencies are.
    fn complete(&mut self, i: u32) {
        for &d in self.dependents.of(i) {
            let left = &mut self.pending[d as usize];
            *left -= 1;
            if *left == 0 {
                self.ready.push(d, self.priority[d as usize]);
            }
        }
    }

    /// Node `i`'s inputs: from what the steps it takes them from observed, else from what
    /// state recorded for them.
    fn inputs(&self, i: u32) -> Inputs {
        let node = &self.nodes[i as usize];
        let mut inputs = Inputs::default();
        for (name, reference) in &node.step.inputs {
            let observed = node
                .deps
                .iter()
                .find(|&&d| self.nodes[d as usize].step.id == reference.step)
                .and_then(|&d| self.outputs[d as usize].as_ref())
                .and_then(|outputs| outputs.get(&reference.output));
            let value = observed.or_else(|| {
                self.state
                    .applied(&reference.step)
                    .and_then(|a| a.outputs.get(&reference.output))
            });
            if let Some(value) = value {
                inputs.0.insert(name.clone(), value.clone());
            }
        }
        inputs
    }
}

/// Observes node `i` through the executor's attempt loop (see the module docs).
fn observe<'a>(
    exec: &'a Executor,
    i: u32,
    node: &'a PlanNode,
    provider: &'a dyn Provider,
    inputs: Inputs,
    checkpoint: Option<&'a Arc<Value>>,
) -> Observing<'a> {
    Box::pin(async move {
        let (step, prior, inputs) = (&node.step, node.prior.as_ref(), &inputs);
        let attempts = Attempts {
            policy: &exec.retry,
            timeout: provider.max_duration(step).unwrap_or(exec.step_timeout),
            cancel: &exec.cancel,
            seed: step_seed(exec.seed, i),
            link: None,
        };
        let observed = attempts
            .observe(
                provider,
                step,
                inputs,
                prior,
                checkpoint,
                |attempt, delay, error| {
                    if let Some(events) = &exec.events {
                        let _ = events.send(Event::StepRetrying {
                            id: step.id.clone(),
                            attempt,
                            delay,
                            error: StepError::from_provider(error).to_string(),
                        });
                    }
                },
            )
            .await;
        (i, observed)
    })
}

//! Retrying provider calls: the [`RetryPolicy`], its backoff, and the attempt loop every
//! provider call of a step goes through — in a run, and in a refresh's observes.
//!
//! Each attempt runs under the per-step timeout; a timeout counts as a retryable error.
//! Retryable errors are retried up to `max_attempts` in total, waiting
//! `base * 2^(attempt-1)` capped at `max_delay` — or, with jitter, a uniformly random delay in
//! `[0, that]` ("full jitter", so many steps throttled together do not retry in lockstep). A
//! `retry_after` the remote side asked for wins when it is longer. Permanent errors are
//! returned at once. Cancellation stops the loop: no new attempt starts, and a wait between
//! attempts is cut short.
//!
//! Jitter comes from a random generator seeded by the executor's seed and the step's index,
//! so a run with a given seed waits the same delays whatever order steps happen to run in.
//!
//! The per-attempt timer is armed only when the call does not answer at once ([`within`]):
//! a call that returns on its first poll costs no timer, and the step's future stays small
//! (it is allocated once per started step).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use crate::provider::{ObserveRequest, Observed, Prior, Provider, ProviderError, StepContext};
use crate::step::{Inputs, Step};

use super::shared::Shared;

/// The code of the error an attempt that ran out of time ends with.
pub(crate) const TIMEOUT_CODE: &str = "bmac::timeout";

/// How retryable errors are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1 is always made). Default 5.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles each time. Default 1 s.
    pub base: Duration,
    /// Upper bound of a delay (before `retry_after`). Default 60 s.
    pub max_delay: Duration,
    /// Randomise each delay in `[0, backoff]` (full jitter). Default on.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The backoff after failed attempt `attempt` (1-based), before jitter:
    /// `base * 2^(attempt-1)`, capped at `max_delay`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// The wait after failed attempt `attempt`: the backoff (jittered when enabled, drawing
    /// from `rng`), or `retry_after` when that is longer.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut SmallRng,
    ) -> Duration {
        let backoff = self.backoff(attempt);
        let wait = if self.jitter && !backoff.is_zero() {
            let nanos = u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rng.gen_range(0..=nanos))
        } else {
            backoff
        };
        match retry_after {
            Some(asked) if asked > wait => asked,
            _ => wait,
        }
    }
}

/// Everything the attempt loop needs besides the call itself.
pub(crate) struct Attempts<'a> {
    /// The policy.
    pub policy: &'a RetryPolicy,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// The run's step cancellation, handed to providers and cutting waits short.
    pub cancel: &'a CancellationToken,
    /// Seed of the jitter generator (executor seed mixed with the step index).
    pub seed: u64,
    /// The run and node the calls belong to (their contexts report progress and checkpoints
    /// there, and carry the node's latest checkpoint); `None` outside a run.
    pub link: Option<(&'a Arc<Shared>, u32)>,
}

impl Attempts<'_> {
    /// Calls `op` until it succeeds, fails permanently, runs out of attempts or the run is
    /// cancelled. `on_retry(attempt, delay, error)` is told of each retry before its wait.
    pub(crate) async fn run<T, F, Fut, R>(
        &self,
        mut op: F,
        mut on_retry: R,
    ) -> Result<T, ProviderError>
    where
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
        R: FnMut(u32, Duration, &ProviderError),
    {
        let mut rng: Option<SmallRng> = None;
        let mut attempt = 1u32;
        loop {
            if self.cancel.is_cancelled() {
                // No new provider call starts once the run is cancelled.
                return Err(ProviderError::permanent(
                    "cancelled before the provider call started",
                ));
            }
            let ctx = match self.link {
                Some((shared, node)) => shared.context(node, attempt),
                None => StepContext::new(self.cancel.clone(), attempt),
            };
            let error = match within(self.timeout, pin!(op(ctx))).await {
                Some(Ok(value)) => return Ok(value),
                Some(Err(e)) => e,
                None => ProviderError::retryable(format!(
                    "timed out after {}",
                    human_duration(self.timeout)
                ))
                .with_code(TIMEOUT_CODE),
            };
            if !error.is_retryable() || attempt >= self.policy.max_attempts {
                return Err(error);
            }
            let rng = rng.get_or_insert_with(|| SmallRng::seed_from_u64(self.seed));
            let delay = self.policy.delay(attempt, error.retry_after, rng);
            on_retry(attempt, delay, &error);
            // Boxed: a retry is rare, and the timer would otherwise take room in every step's
            // future.
            let wait = Box::pin(tokio::time::sleep(delay));
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(error),
                _ = wait => {}
            }
            attempt += 1;
        }
    }

    /// Observes `step` through the attempt loop ([`run`](Attempts::run)); each call's context
    /// resumes from `resume` when given (a context linked to a run carries its own).
    pub(crate) async fn observe<R>(
        &self,
        provider: &dyn Provider,
        step: &Step,
        inputs: &Inputs,
        prior: Option<&Prior>,
        resume: Option<&Arc<Value>>,
        on_retry: R,
    ) -> Result<Observed, ProviderError>
    where
        R: FnMut(u32, Duration, &ProviderError),
    {
        self.run(
            |ctx| async move {
                let ctx = ctx.resuming(resume);
                provider
                    .observe(ObserveRequest {
                        step,
                        inputs,
                        prior,
                        ctx: &ctx,
                    })
                    .await
            },
            on_retry,
        )
        .await
    }
}

/// Runs `work` for at most `limit` (`None` when it ran out), like `tokio::time::timeout`,
/// except that nothing about the timer — not even a clock read — happens unless `work` is
/// still pending after its first poll: then the timer is created, on the heap, so it takes no
/// room in the caller's future. The deadline therefore counts from the moment the call first
/// has to wait (what runs before that is the call's synchronous first slice, which no timer
/// can interrupt). `work` is pinned by the caller, so that it is not stored twice.
pub(crate) fn within<F: Future>(
    limit: Duration,
    mut work: Pin<&mut F>,
) -> impl Future<Output = Option<F::Output>> + '_ {
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(move |cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let timer = timer.get_or_insert_with(|| {
            let now = Instant::now();
            // Beyond what `Instant` can hold: a deadline that never comes (as tokio's own).
            let deadline = now
                .checked_add(limit)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
            Box::pin(tokio::time::sleep_until(deadline))
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Mixes the executor's seed with a step index into a per-step jitter seed.
pub(crate) fn step_seed(seed: u64, node: u32) -> u64 {
    // SplitMix64's finaliser: neighbouring indices get unrelated seeds.
    let mut z = seed ^ u64::from(node).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `90s` → "1m30s", `1800s` → "30m", `500ms` → "500ms".
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        };
        let secs: Vec<u64> = (1..=8).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_backoff_and_is_seeded() {
        let p = RetryPolicy::default();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (1..=6)
                .map(|a| p.delay(a, None, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        for (i, d) in a.iter().enumerate() {
            assert!(*d <= p.backoff(i as u32 + 1), "{d:?}");
        }
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let p = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        };
        let mut rng = SmallRng::seed_from_u64(0);
        let ten = Duration::from_secs(10);
        assert_eq!(p.delay(1, Some(ten), &mut rng), ten);
        assert_eq!(p.delay(6, Some(ten), &mut rng), Duration::from_secs(32));
    }

    #[tokio::test(start_paused = true)]
    async fn within_answers_at_once_or_gives_up_at_the_deadline() {
        assert_eq!(
            within(Duration::from_secs(1), pin!(async { 7 })).await,
            Some(7)
        );
        // Already past the deadline, an answer ready at the first poll still counts.
        assert_eq!(within(Duration::ZERO, pin!(async { 8 })).await, Some(8));
        let start = Instant::now();
        let slow = pin!(tokio::time::sleep(Duration::from_secs(5)));
        assert_eq!(within(Duration::from_secs(2), slow).await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let late = pin!(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            9
        });
        assert_eq!(within(Duration::from_secs(2), late).await, Some(9));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // A limit too large for `Instant` never fires.
        let never = pin!(tokio::time::sleep(Duration::from_secs(60)));
        assert_eq!(within(Duration::MAX, never).await, Some(()));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }
}

//! Waiting on AWS's long operations: poll a status until it settles, reporting progress.
//!
//! [`until`] asks `probe` for the resource's status every [`POLL`] (growing to four times it),
//! reports `"<what> <STATUS>, <elapsed>"` through the step's progress events whenever the
//! status changes or a minute passes, and returns when `probe` says the wait is over. The run's
//! cancellation ends the wait early with a retryable error (the resource is left as it is and
//! observed by the next run). The caller bounds the wait: the executor's per-attempt timeout
//! ([`Handler::max`](super::Handler::max)) ends a call that waits too long, and a timed-out
//! create is in doubt, observed before it is retried.

use std::future::Future;
use std::time::{Duration, Instant};

use bmac_core::provider::StepContext;
use bmac_core::ProviderError;

/// The first interval between polls (the executor's pending-observe interval too).
pub const POLL: Duration = Duration::from_secs(5);
/// The longest interval between polls.
const MAX_POLL: Duration = Duration::from_secs(20);
/// Progress is reported at least this often while the status stays the same.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// What a probe saw.
pub enum Poll<T> {
    /// Still going, in this status (`CREATING`).
    Waiting(String),
    /// Done.
    Done(T),
}

/// Polls `probe` until it is done (see the module docs); `what` names the resource in
/// progress messages (`cluster prod`).
pub async fn until<T, F, Fut>(
    ctx: &StepContext,
    what: &str,
    mut probe: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ProviderError>>,
{
    let started = Instant::now();
    let mut interval = POLL;
    let mut last: Option<(String, Instant)> = None;
    loop {
        match probe().await? {
            Poll::Done(value) => return Ok(value),
            Poll::Waiting(status) => {
                let now = Instant::now();
                let report = match &last {
                    Some((s, at)) => *s != status || now.duration_since(*at) >= HEARTBEAT,
                    None => true,
                };
                if report {
                    ctx.progress(format!("{what} {status}, {}", elapsed(started.elapsed())));
                    last = Some((status, now));
                }
            }
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => {
                return Err(ProviderError::retryable(format!("stopped waiting for {what}: the run was cancelled")));
            }
            _ = tokio::time::sleep(interval) => {}
        }
        interval = (interval * 3 / 2).min(MAX_POLL);
    }
}

/// `6m12s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn polls_until_done_and_stops_on_cancel() {
        let ctx = StepContext::default();
        let calls = AtomicU32::new(0);
        let got = until(&ctx, "cluster a", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(if n < 3 {
                Poll::Waiting("CREATING".into())
            } else {
                Poll::Done(n)
            })
        })
        .await
        .unwrap();
        assert_eq!(got, 3);

        let ctx = StepContext::default();
        ctx.cancel.cancel();
        let err = until(&ctx, "cluster a", || async {
            Ok(Poll::<()>::Waiting("CREATING".into()))
        })
        .await
        .unwrap_err();
        assert!(err.is_retryable());
        assert!(err.message.contains("cancelled"));
        assert_eq!(elapsed(Duration::from_secs(372)), "6m12s");
    }
}

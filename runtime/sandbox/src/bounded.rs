//! Time bounds that cost nothing when the bounded work is done at its first poll.
//!
//! A run's secrets from an in-memory provider, and a guest that never waits on the host,
//! finish in one poll. Arming a tokio timer for them anyway (a clock read, the runtime
//! handle, a timer entry) showed in the fresh-sandbox profile (BENCHMARKS.md, R ÷ W0),
//! so the timer is armed only when the work has to wait.

use std::future::Future;
use std::task::Poll;

use tokio::time::{Instant, Sleep};

/// The deadline passed before the work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Runs `work` to its end, or until `deadline()` — asked for, and a timer armed, only
/// when `work` does not finish at its first poll. `work` is polled once per wake, as
/// under `tokio::time::timeout`, so a guest that yields (`yield_now` at an epoch tick)
/// gives its thread back at once.
///
/// # Errors
/// [`TimedOut`] when the deadline passed first; `work` is dropped then.
pub(crate) async fn ready_or_until<F: Future>(
    work: F,
    deadline: impl FnOnce() -> Instant,
) -> Result<F::Output, TimedOut> {
    let mut work = std::pin::pin!(work);
    let mut timer = std::pin::pin!(None::<Sleep>);
    let mut deadline = Some(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if let Some(deadline) = deadline.take() {
            timer.set(Some(tokio::time::sleep_until(deadline())));
        }
        match timer.as_mut().as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| Err(TimedOut)),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_work_never_asks_for_its_deadline_and_waiting_work_is_bounded() {
        let done = ready_or_until(async { 7 }, || unreachable!("no timer for ready work"));
        assert_eq!(done.await, Ok(7));

        let start = Instant::now();
        let never = ready_or_until(std::future::pending::<()>(), || {
            start + Duration::from_millis(50)
        });
        assert_eq!(
            never.await,
            Err(TimedOut),
            "pending work ends at its deadline"
        );
        assert_eq!(start.elapsed(), Duration::from_millis(50));

        let later = ready_or_until(
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                "late"
            },
            || start + Duration::from_secs(60),
        );
        assert_eq!(later.await, Ok("late"), "work that waits still finishes");
    }

    /// A yield is a yield: pending work is not polled again before its next wake (a
    /// second poll in a row would let a guest's `yield_now` return at once and keep the
    /// thread a tick longer).
    #[tokio::test]
    async fn pending_work_is_polled_once_per_wake() {
        let polls = Arc::new(AtomicU32::new(0));
        let counted = polls.clone();
        let work = std::future::poll_fn(move |cx| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready("yielded once")
            }
        });
        let bounded = ready_or_until(work, || Instant::now() + Duration::from_secs(60));
        let mut bounded = std::pin::pin!(bounded);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(bounded.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "one poll for one wake");
        assert_eq!(
            bounded.as_mut().poll(&mut cx),
            Poll::Ready(Ok("yielded once"))
        );
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}

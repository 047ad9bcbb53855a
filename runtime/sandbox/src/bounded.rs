//! Time bounds that cost nothing when the bounded work is done at its first poll.
//!
//! A run's secrets from an in-memory provider, and a guest that never waits on the host,
//! finish in one poll. Arming a tokio timer for them anyway (a clock read, the runtime
//! handle, a timer entry) showed in the fresh-sandbox profile (BENCHMARKS.md, R ÷ W0),
//! so the timer is armed only when the work has to wait.

use std::future::Future;
use std::task::Poll;

use tokio::time::Instant;
use tokio::time::error::Elapsed;

/// Runs `work` to its end, or until `deadline()` (asked for only when `work` does not
/// finish at its first poll).
///
/// # Errors
/// [`Elapsed`] when the deadline passed first; `work` is dropped then.
pub(crate) async fn ready_or_until<F: Future>(
    work: F,
    deadline: impl FnOnce() -> Instant,
) -> Result<F::Output, Elapsed> {
    let mut work = std::pin::pin!(work);
    match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout_at(deadline(), work).await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_work_never_asks_for_its_deadline_and_waiting_work_is_bounded() {
        let done = ready_or_until(async { 7 }, || unreachable!("no timer for ready work"));
        assert_eq!(done.await.unwrap(), 7);

        let start = Instant::now();
        let never = ready_or_until(std::future::pending::<()>(), || {
            start + Duration::from_millis(50)
        });
        assert!(never.await.is_err(), "pending work ends at its deadline");
        assert_eq!(start.elapsed(), Duration::from_millis(50));

        let later = ready_or_until(
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                "late"
            },
            || start + Duration::from_secs(60),
        );
        assert_eq!(
            later.await.unwrap(),
            "late",
            "work that waits still finishes"
        );
    }
}

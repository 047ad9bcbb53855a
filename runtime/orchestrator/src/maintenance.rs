//! Background upkeep: retention (finished runs and settled outbox rows older than the
//! retention period are removed in small batches), and the queue-depth gauges.

use std::sync::Arc;
use std::time::Duration;

use fluxo_store::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long finished runs and settled outbox rows are kept by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Runs upkeep every `every` until `stop`: prunes what is older than `retention`.
pub fn spawn(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let before = fluxo_store::now_ms()
                .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            loop {
                match store.prune(before).await {
                    Ok(pruned) if pruned.runs + pruned.outbox > 0 => {
                        tracing::debug!(runs = pruned.runs, outbox = pruned.outbox, "pruned");
                    }
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "pruning failed");
                        break;
                    }
                }
            }
            refresh_gauges(&*store, &metrics).await;
        }
    })
}

/// Sets the stored-runs gauges from the store's counts.
pub async fn refresh_gauges(store: &dyn Store, metrics: &Metrics) {
    match store.run_counts().await {
        Ok(counts) => {
            for phase in fluxo_store::RunPhase::ALL {
                let count = counts
                    .by_state
                    .iter()
                    .find(|(state, _)| *state == phase)
                    .map_or(0, |(_, count)| *count);
                metrics.set_stored(phase.as_str(), count);
            }
        }
        Err(error) => tracing::warn!(%error, "counting runs failed"),
    }
}

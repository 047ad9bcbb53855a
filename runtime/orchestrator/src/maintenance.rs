//! Background upkeep: retention (finished runs and settled outbox rows older than their
//! tenant's retention period are removed in small batches), and the queue-depth gauges.

use std::sync::Arc;
use std::time::Duration;

use fluxo_core::TenantId;
use fluxo_store::{PruneScope, Pruned, Store};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long finished runs and settled outbox rows are kept by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How long finished runs and settled outbox rows are kept: a default, and tenants with
/// a retention of their own (shorter or longer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// For every tenant not in `tenants`.
    pub default: Duration,
    /// Tenants with their own.
    pub tenants: Vec<(TenantId, Duration)>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            default: DEFAULT_RETENTION,
            tenants: Vec::new(),
        }
    }
}

impl Retention {
    /// The pruning passes at `now_ms`: one per tenant with its own retention, then one
    /// for every other tenant.
    #[must_use]
    pub fn scopes(&self, now_ms: i64) -> Vec<PruneScope> {
        let before = |keep: Duration| {
            now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
        };
        let mut scopes: Vec<PruneScope> = self
            .tenants
            .iter()
            .map(|(tenant, keep)| PruneScope {
                before_ms: before(*keep),
                tenant: Some(tenant.clone()),
                except: Vec::new(),
            })
            .collect();
        scopes.push(PruneScope {
            before_ms: before(self.default),
            tenant: None,
            except: self
                .tenants
                .iter()
                .map(|(tenant, _)| tenant.clone())
                .collect(),
        });
        scopes
    }
}

/// Prunes, in batches, everything `retention` lets go of at `now_ms`; answers how much.
pub async fn prune(store: &dyn Store, retention: &Retention, now_ms: i64) -> Pruned {
    let mut total = Pruned::default();
    for scope in retention.scopes(now_ms) {
        loop {
            match store.prune(&scope).await {
                Ok(pruned) if pruned.runs + pruned.outbox + pruned.inbox > 0 => {
                    tracing::debug!(runs = pruned.runs, outbox = pruned.outbox, inbox = pruned.inbox, tenant = ?scope.tenant, "pruned");
                    total.runs += pruned.runs;
                    total.outbox += pruned.outbox;
                    total.inbox += pruned.inbox;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "pruning failed");
                    break;
                }
            }
        }
    }
    total
}

/// Runs upkeep every `every` until `stop`: prunes what `retention` lets go of, and
/// refreshes the stored-run gauges.
pub fn spawn(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retention: Retention,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            prune(&*store, &retention, fluxo_store::now_ms()).await;
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

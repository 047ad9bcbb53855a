//! The host's metrics, in one registry per host (`prometheus-client`: no process-wide
//! recorder, so an embedder's or a test's several hosts never mix their counts). Units are
//! base units (seconds), as Prometheus' naming conventions ask.

use std::sync::Mutex;

use fluxo_core::RunReport;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The host's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    runs: Family<Labels, Counter>,
    limit_hits: Family<Labels, Counter>,
    egress_refusals: Counter,
    submits_rejected: Counter,
    uploads: Family<Labels, Counter>,
    run_duration: Histogram,
    run_fuel: Histogram,
    claim_latency: Histogram,
    lease_expiries: Counter,
    leases_lost: Counter,
    retries: Counter,
    dead: Counter,
    outbox: Family<Labels, Counter>,
    queue: Family<Labels, Gauge>,
    gauges_at: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<Labels, Counter>::default();
        registry.register(
            "fluxo_runs",
            "Finished attempts by mode (run or test), state and error kind",
            runs.clone(),
        );
        let limit_hits = Family::<Labels, Counter>::default();
        registry.register(
            "fluxo_limit_hits",
            "Runs ended by a limit, by limit",
            limit_hits.clone(),
        );
        let egress_refusals = Counter::default();
        registry.register(
            "fluxo_egress_refusals",
            "HTTP requests refused by the egress policy",
            egress_refusals.clone(),
        );
        let submits_rejected = Counter::default();
        registry.register(
            "fluxo_submits_rejected",
            "Submits refused because the tenant's backlog was full",
            submits_rejected.clone(),
        );
        let uploads = Family::<Labels, Counter>::default();
        registry.register("fluxo_uploads", "Uploads by outcome", uploads.clone());
        let run_duration = Histogram::new(exponential_buckets(0.001, 4.0, 9));
        registry.register(
            "fluxo_run_duration_seconds",
            "Wall time of attempts",
            run_duration.clone(),
        );
        let run_fuel = Histogram::new(exponential_buckets(10_000.0, 10.0, 7));
        registry.register("fluxo_run_fuel", "Fuel burnt by attempts", run_fuel.clone());
        let claim_latency = Histogram::new(exponential_buckets(0.000_1, 4.0, 10));
        registry.register(
            "fluxo_claim_latency_seconds",
            "Time one claim of runnable runs took",
            claim_latency.clone(),
        );
        let lease_expiries = Counter::default();
        registry.register(
            "fluxo_lease_expiries",
            "Runs taken over after their lease expired (crash redeliveries)",
            lease_expiries.clone(),
        );
        let leases_lost = Counter::default();
        registry.register(
            "fluxo_leases_lost",
            "Attempts that found their lease taken and committed nothing",
            leases_lost.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "fluxo_retries",
            "Attempts that failed and were queued again",
            retries.clone(),
        );
        let dead = Counter::default();
        registry.register("fluxo_dead_runs", "Runs parked as dead", dead.clone());
        let outbox = Family::<Labels, Counter>::default();
        registry.register(
            "fluxo_outbox_deliveries",
            "Outbox delivery attempts by kind and result",
            outbox.clone(),
        );
        let queue = Family::<Labels, Gauge>::default();
        registry.register("fluxo_runs_stored", "Stored runs by state", queue.clone());
        Self {
            registry: Mutex::new(registry),
            runs,
            limit_hits,
            egress_refusals,
            submits_rejected,
            uploads,
            run_duration,
            run_fuel,
            claim_latency,
            lease_expiries,
            leases_lost,
            retries,
            dead,
            outbox,
            queue,
            gauges_at: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

impl Metrics {
    /// Records a finished attempt; `mode` is `run` or `test` (tests are attempts too, but
    /// a dashboard of production runs must not count them).
    pub fn record_run(&self, mode: &str, report: &RunReport) {
        let state = if report.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        let kind = report.error_kind().map_or("", |kind| kind.as_str());
        if report
            .error_kind()
            .is_some_and(fluxo_core::ErrorKind::is_limit)
        {
            self.limit_hits
                .get_or_create(&vec![("limit", kind.to_owned())])
                .inc();
        }
        self.runs
            .get_or_create(&vec![
                ("mode", mode.to_owned()),
                ("state", state.to_owned()),
                ("error_kind", kind.to_owned()),
            ])
            .inc();
        let refusals = report
            .http
            .iter()
            .filter(|exchange| {
                exchange
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("denied"))
            })
            .count();
        self.egress_refusals
            .inc_by(u64::try_from(refusals).unwrap_or(0));
        #[allow(clippy::cast_precision_loss, reason = "metrics are approximate")]
        {
            self.run_duration
                .observe(report.usage.wall_ms as f64 / 1000.0);
            self.run_fuel.observe(report.usage.fuel as f64);
        }
    }

    /// Records a submit refused for a full backlog.
    pub fn record_rejected_submit(&self) {
        self.submits_rejected.inc();
    }

    /// Records an upload's outcome (`accepted` or the refusal's code).
    pub fn record_upload(&self, outcome: &str) {
        self.uploads
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// Records how long a claim took.
    pub fn record_claim(&self, seconds: f64) {
        self.claim_latency.observe(seconds);
    }

    /// Records crash redeliveries found by a claim.
    pub fn record_lease_expiries(&self, count: u64) {
        self.lease_expiries.inc_by(count);
    }

    /// Records an attempt whose lease was lost.
    pub fn record_lease_lost(&self) {
        self.leases_lost.inc();
    }

    /// Records a retry scheduled.
    pub fn record_retry(&self) {
        self.retries.inc();
    }

    /// Records a run parked as dead.
    pub fn record_dead(&self) {
        self.dead.inc();
    }

    /// Records an outbox delivery attempt.
    pub fn record_delivery(&self, kind: &str, result: &str) {
        self.outbox
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// Whether the stored-run gauges are older than `every` (and claims the refresh: one
    /// caller in an interval gets `true`).
    pub fn gauges_due(&self, every: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.gauges_at.load(Ordering::Relaxed);
        let every = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= every)
            && self
                .gauges_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Sets the stored runs' count by state (queue depth).
    pub fn set_stored(&self, state: &str, count: u64) {
        self.queue
            .get_or_create(&vec![("state", state.to_owned())])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series operators alert on are a contract: their names, labels and values.
    #[test]
    fn the_scheduler_s_series_are_exposed_by_name() {
        let metrics = Metrics::default();
        metrics.record_claim(0.002);
        metrics.record_claim(0.004);
        metrics.record_lease_expiries(3);
        metrics.record_lease_lost();
        metrics.record_retry();
        metrics.record_retry();
        metrics.record_dead();
        metrics.record_delivery("webhook", "sent");
        metrics.record_delivery("email", "retry");
        metrics.set_stored("queued", 7);
        metrics.set_stored("dead", 1);
        metrics.record_rejected_submit();
        let text = metrics.render();
        for line in [
            "fluxo_claim_latency_seconds_count 2",
            "fluxo_lease_expiries_total 3",
            "fluxo_leases_lost_total 1",
            "fluxo_retries_total 2",
            "fluxo_dead_runs_total 1",
            "fluxo_outbox_deliveries_total{kind=\"webhook\",result=\"sent\"} 1",
            "fluxo_outbox_deliveries_total{kind=\"email\",result=\"retry\"} 1",
            "fluxo_runs_stored{state=\"queued\"} 7",
            "fluxo_runs_stored{state=\"dead\"} 1",
            "fluxo_submits_rejected_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn gauges_are_refreshed_once_per_interval() {
        let metrics = Metrics::default();
        let every = std::time::Duration::from_secs(3600);
        assert!(metrics.gauges_due(every), "the first scrape refreshes");
        assert!(
            !metrics.gauges_due(every),
            "a second one within the hour does not"
        );
    }
}

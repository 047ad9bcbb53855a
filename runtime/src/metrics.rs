//! Counters and histograms of the host, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use crate::RunReport;

const DURATION_BUCKETS_MS: &[u64] = &[1, 5, 10, 25, 50, 100, 250, 500, 1_000, 5_000, 30_000];
const FUEL_BUCKETS: &[u64] = &[
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: u64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[u64], value: u64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (count, bound) in self.counts.iter_mut().zip(bounds) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum = self.sum.saturating_add(value);
        self.total += 1;
    }

    fn render(&self, out: &mut String, name: &str, bounds: &[u64]) {
        for (index, bound) in bounds.iter().enumerate() {
            let count = self.counts.get(index).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.total);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.total);
    }
}

#[derive(Debug, Default)]
struct Values {
    runs: BTreeMap<(String, String), u64>,
    limit_hits: BTreeMap<String, u64>,
    egress_refusals: u64,
    rejected_submits: u64,
    uploads: BTreeMap<String, u64>,
    duration_ms: Histogram,
    fuel: Histogram,
}

/// The host's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<Values>,
}

const LIMIT_KINDS: &[&str] = &[
    "fuel_exhausted",
    "deadline_exceeded",
    "memory_limit",
    "table_limit",
    "stack_overflow",
    "quota_exceeded",
    "host_timeout",
    "output_too_large",
];

impl Metrics {
    /// Records a finished run.
    pub fn record_run(&self, report: &RunReport) {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let state = if report.succeeded() {
            "succeeded"
        } else {
            "failed"
        };
        let kind = report
            .error
            .as_ref()
            .and_then(|error| serde_json::to_value(error.kind).ok())
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        if LIMIT_KINDS.contains(&kind.as_str()) {
            *values.limit_hits.entry(kind.clone()).or_default() += 1;
        }
        *values.runs.entry((state.to_owned(), kind)).or_default() += 1;
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
        values.egress_refusals += u64::try_from(refusals).unwrap_or(0);
        values
            .duration_ms
            .observe(DURATION_BUCKETS_MS, report.usage.wall_ms);
        values.fuel.observe(FUEL_BUCKETS, report.usage.fuel);
    }

    /// Records a submit refused because the queue was full.
    pub fn record_rejected_submit(&self) {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rejected_submits += 1;
    }

    /// Records an upload's outcome (`accepted` or the refusal's code).
    pub fn record_upload(&self, outcome: &str) {
        *self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .uploads
            .entry(outcome.to_owned())
            .or_default() += 1;
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        out.push_str("# HELP fluxo_runs_total Finished runs by state and error kind.\n# TYPE fluxo_runs_total counter\n");
        for ((state, kind), count) in &values.runs {
            let _ = writeln!(
                out,
                "fluxo_runs_total{{state=\"{state}\",error_kind=\"{kind}\"}} {count}"
            );
        }
        out.push_str("# HELP fluxo_limit_hits_total Runs ended by a limit, by limit.\n# TYPE fluxo_limit_hits_total counter\n");
        for (kind, count) in &values.limit_hits {
            let _ = writeln!(out, "fluxo_limit_hits_total{{limit=\"{kind}\"}} {count}");
        }
        out.push_str("# HELP fluxo_egress_refusals_total HTTP requests refused by the egress policy.\n# TYPE fluxo_egress_refusals_total counter\n");
        let _ = writeln!(
            out,
            "fluxo_egress_refusals_total {}",
            values.egress_refusals
        );
        out.push_str("# HELP fluxo_submits_rejected_total Submits refused because the queue was full.\n# TYPE fluxo_submits_rejected_total counter\n");
        let _ = writeln!(
            out,
            "fluxo_submits_rejected_total {}",
            values.rejected_submits
        );
        out.push_str(
            "# HELP fluxo_uploads_total Uploads by outcome.\n# TYPE fluxo_uploads_total counter\n",
        );
        for (outcome, count) in &values.uploads {
            let _ = writeln!(out, "fluxo_uploads_total{{outcome=\"{outcome}\"}} {count}");
        }
        out.push_str("# HELP fluxo_run_duration_ms Wall time of runs.\n# TYPE fluxo_run_duration_ms histogram\n");
        values
            .duration_ms
            .render(&mut out, "fluxo_run_duration_ms", DURATION_BUCKETS_MS);
        out.push_str(
            "# HELP fluxo_run_fuel Fuel burnt by runs.\n# TYPE fluxo_run_fuel histogram\n",
        );
        values.fuel.render(&mut out, "fluxo_run_fuel", FUEL_BUCKETS);
        out
    }
}

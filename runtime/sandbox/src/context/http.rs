//! The HTTP capability: live requests through the egress client, recorded per run.
//!
//! A replayed run's requests are answered from its record instead ([`super::HttpReplay`]).
//!
//! Requests that are not safe to repeat (every method but GET and HEAD) carry
//! `Idempotency-Key: RUN-ID:N` (N counts the run's requests from 1) unless the caller
//! set one: a run retried after a crash repeats its requests, and the upstream can
//! recognize them.

use std::time::{Duration, Instant};

use fluxo_core::limits::RECORD_OVERHEAD_BYTES;
use fluxo_core::{HttpExchange, Quota};
use fluxo_egress::{Allowance, EgressError, EgressRequest, EgressResponse};

use super::{CapResult, RunContext};
use crate::redact::Redactor;

/// The header that marks a repeated request as the same request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl RunContext {
    /// Sends `request` under the egress policy and records the exchange.
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `http_requests` quota or the report budget;
    /// refusals, timeouts and caps are [`EgressError`] values.
    pub async fn http(
        &mut self,
        mut request: EgressRequest,
    ) -> CapResult<EgressResponse, EgressError> {
        self.charge(Quota::HttpRequests)?;
        if !request.method.is_safe() && !request.has_header(IDEMPOTENCY_KEY) {
            request.headers.push((
                IDEMPOTENCY_KEY.to_owned(),
                format!("{}:{}", self.meta.run_id, self.counters.http_requests),
            ));
        }
        let started = Instant::now();
        let mut record = HttpExchange {
            method: request.method.to_string(),
            url: request.url.clone(),
            request_headers: request.headers.clone(),
            ..HttpExchange::default()
        };
        let allowance = Allowance {
            bytes: self
                .limits
                .quotas
                .http_bytes
                .saturating_sub(self.counters.http_bytes),
            time: self.remaining(),
            record_bytes: self
                .limits
                .max_recorded_body_bytes
                .saturating_sub(self.counters.recorded_body_bytes),
        };
        let result = match &self.replay {
            Some(replay) => {
                // Compared as the record shows it: a secret in the URL is redacted there.
                let url = Redactor::new(self.secrets.values()).redact(&request.url);
                replay.answer(&request, &url, &mut record)
            }
            None => {
                let egress = self.capabilities.egress.clone();
                egress
                    .send(self.meta.tenant.as_str(), request, allowance, &mut record)
                    .await
            }
        };
        record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record.error = result.as_ref().err().map(ToString::to_string);
        if let Ok(response) = &result {
            let budget = usize::try_from(allowance.record_bytes).unwrap_or(usize::MAX);
            let mut kept = response.body.len().min(budget);
            // Recording is for replay: a body the report budget cannot hold is cut
            // (and marked truncated) rather than ending the run.
            let room = self
                .limits
                .max_report_bytes
                .saturating_sub(self.counters.report_bytes)
                .saturating_sub(RECORD_OVERHEAD_BYTES);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if record.size() > room {
                let others = record.size().saturating_sub(record.response_body.len());
                // Base64 takes four characters for three bytes.
                let fits = room.saturating_sub(others).saturating_mul(3) / 4;
                kept = record.record_response_body(&response.body, budget.min(fits));
            }
            self.counters.recorded_body_bytes = self
                .counters
                .recorded_body_bytes
                .saturating_add(u64::try_from(kept).unwrap_or(u64::MAX));
        }
        self.counters.http_bytes = self
            .counters
            .http_bytes
            .saturating_add(record.request_bytes)
            .saturating_add(record.response_bytes);
        if let Ok(response) = &result
            && matches!(response.status, 429 | 503)
            && let Some(after) = response.header("retry-after").and_then(retry_after)
        {
            self.retry_after = Some(after);
        }
        let size = record.size();
        self.http.push(record);
        self.charge_record(size)?;
        Ok(result)
    }
}

/// A `Retry-After` value in seconds (RFC 9110 §10.2.3; the HTTP-date form is not
/// honoured: it needs the upstream's clock).
fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

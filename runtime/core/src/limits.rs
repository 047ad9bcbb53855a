//! Per-run limits, per-action overrides that may only tighten them, host-call quotas,
//! and the counters a run (or a whole workflow) charges against them.

use serde::{Deserialize, Serialize};

/// The longest deadline an operator may configure (one day): far above any action's
/// need, and far below what would overflow a `Duration` or an `Instant`.
pub const MAX_DEADLINE_MS: u64 = 86_400_000;

/// What every record a guest creates (a log line, an effect, an HTTP exchange, a
/// reply) costs on top of its bytes: the per-entry size of a report's record, so that a
/// flood of empty lines still reaches the caps (measured: an empty log line is ~40 bytes
/// in a JSON report and ~30 in MessagePack).
pub const RECORD_OVERHEAD_BYTES: u64 = 32;

/// Per-run limits. Defaults are the values a tenant gets unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) a run may burn.
    pub fuel: u64,
    /// Wall-clock time a run may take, host calls included, in milliseconds.
    pub deadline_ms: u64,
    /// Linear memory a run may grow to, in bytes.
    pub max_memory_bytes: u64,
    /// Elements a table may grow to.
    pub max_table_elements: u32,
    /// Bytes of output JSON and replies a run may return.
    pub max_output_bytes: u64,
    /// Bytes of log lines (and stdout/stderr) kept, each line costing
    /// [`RECORD_OVERHEAD_BYTES`] more; the rest is dropped and the log marked truncated.
    pub max_log_bytes: u64,
    /// Bytes of everything a run records that is not dropped (effects, HTTP exchanges,
    /// output), each record costing [`RECORD_OVERHEAD_BYTES`] more; past it the run ends
    /// with `report_too_large`.
    pub max_report_bytes: u64,
    /// Bytes of HTTP response bodies a run records for replay (`fluxo replay`), across
    /// its exchanges; a body past it is recorded cut and marked truncated (the run goes
    /// on). Recorded bodies count against `max_report_bytes` too.
    pub max_recorded_body_bytes: u64,
    /// How long one host call (other than HTTP, which has its own timeouts) may take,
    /// in milliseconds.
    pub host_call_timeout_ms: u64,
    /// Per-kind host-call quotas; exceeding one ends the run.
    pub quotas: Quotas,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            deadline_ms: 5_000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 20_000,
            max_output_bytes: 256 << 10,
            max_log_bytes: 64 << 10,
            max_report_bytes: 8 << 20,
            max_recorded_body_bytes: 1 << 20,
            host_call_timeout_ms: 2_000,
            quotas: Quotas::default(),
        }
    }
}

/// Why limits (or overrides) are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct InvalidLimit {
    /// The setting, as in the configuration (`limits.deadline_ms`).
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidLimit {
    fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

impl Limits {
    /// Checks that every limit is usable: positive where zero would refuse every run,
    /// and deadlines within [`MAX_DEADLINE_MS`] so no time arithmetic can overflow.
    ///
    /// # Errors
    /// [`InvalidLimit`] naming the first bad value (`limits.…`).
    pub fn check(&self) -> Result<(), InvalidLimit> {
        let positive = [
            ("limits.fuel", self.fuel),
            ("limits.deadline_ms", self.deadline_ms),
            ("limits.max_memory_bytes", self.max_memory_bytes),
            ("limits.max_output_bytes", self.max_output_bytes),
            ("limits.max_report_bytes", self.max_report_bytes),
            ("limits.host_call_timeout_ms", self.host_call_timeout_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(InvalidLimit::new(name, "must be greater than zero"));
        }
        for (name, value) in [
            ("limits.deadline_ms", self.deadline_ms),
            ("limits.host_call_timeout_ms", self.host_call_timeout_ms),
        ] {
            if value > MAX_DEADLINE_MS {
                return Err(InvalidLimit::new(
                    name,
                    format!("{value} ms is over the {MAX_DEADLINE_MS} ms ceiling"),
                ));
            }
        }
        Ok(())
    }

    /// These limits tightened by `overrides`, refusing an override that would loosen
    /// them.
    ///
    /// # Errors
    /// When an override is zero or above these limits.
    pub fn with_overrides(&self, overrides: &LimitOverrides) -> Result<Self, InvalidLimit> {
        let checks = [
            ("fuel", self.fuel, overrides.fuel),
            ("deadline_ms", self.deadline_ms, overrides.deadline_ms),
            (
                "max_memory_bytes",
                self.max_memory_bytes,
                overrides.max_memory_bytes,
            ),
        ];
        for (name, host, wanted) in checks {
            match wanted {
                Some(0) => return Err(InvalidLimit::new(name, "must be greater than zero")),
                Some(value) if value > host => {
                    return Err(InvalidLimit::new(
                        name,
                        format!("{value} is above the host's limit of {host}"),
                    ));
                }
                _ => {}
            }
        }
        Ok(self.tightened_by(overrides))
    }

    /// These limits with each override applied where it is tighter (what runs use:
    /// should the host's limits be lowered after an override was set, the host's win).
    #[must_use]
    pub fn tightened_by(&self, overrides: &LimitOverrides) -> Self {
        let tighter = |host: u64, wanted: Option<u64>| {
            wanted.filter(|v| *v > 0).map_or(host, |v| v.min(host))
        };
        Self {
            fuel: tighter(self.fuel, overrides.fuel),
            deadline_ms: tighter(self.deadline_ms, overrides.deadline_ms),
            max_memory_bytes: tighter(self.max_memory_bytes, overrides.max_memory_bytes),
            ..self.clone()
        }
    }
}

/// Per-action limit overrides: each may only lower the host's limit.
///
/// Stored overrides are decoded strictly (unknown fields refused): a record that does not
/// decode refuses the run, it never falls back to the looser host limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitOverrides {
    /// Fuel, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Deadline in milliseconds, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Memory in bytes, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
}

/// How many host calls of each kind a run may make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quotas {
    /// HTTP requests.
    pub http_requests: u32,
    /// Request plus response body bytes over all HTTP requests of the run.
    pub http_bytes: u64,
    /// E-mails queued.
    pub emails: u32,
    /// Messages to the platform queued: replies, notifications, handoffs.
    pub messages: u32,
    /// Runs started (a workflow's `trigger_workflow` steps).
    pub runs_started: u32,
    /// Field writes.
    pub field_writes: u32,
    /// Tag additions and removals.
    pub tag_changes: u32,
    /// State writes and deletes.
    pub state_writes: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            http_requests: 20,
            http_bytes: 16 << 20,
            emails: 5,
            messages: 10,
            runs_started: 5,
            field_writes: 100,
            tag_changes: 50,
            state_writes: 50,
        }
    }
}

/// A host-call quota kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// HTTP requests.
    HttpRequests,
    /// E-mails.
    Emails,
    /// Messages to the platform.
    Messages,
    /// Runs started.
    RunsStarted,
    /// Field writes.
    FieldWrites,
    /// Tag changes.
    TagChanges,
    /// State writes and deletes.
    StateWrites,
}

impl Quota {
    /// The quota's name as in the configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpRequests => "http_requests",
            Self::Emails => "emails",
            Self::Messages => "messages",
            Self::RunsStarted => "runs_started",
            Self::FieldWrites => "field_writes",
            Self::TagChanges => "tag_changes",
            Self::StateWrites => "state_writes",
        }
    }

    fn limit(self, quotas: &Quotas) -> u32 {
        match self {
            Self::HttpRequests => quotas.http_requests,
            Self::Emails => quotas.emails,
            Self::Messages => quotas.messages,
            Self::RunsStarted => quotas.runs_started,
            Self::FieldWrites => quotas.field_writes,
            Self::TagChanges => quotas.tag_changes,
            Self::StateWrites => quotas.state_writes,
        }
    }
}

/// A limit a run hit inside the host; it ends the run with a typed error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitHit {
    /// A host-call quota is used up.
    #[error("quota {} of {limit} calls exceeded", .quota.name())]
    Quota {
        /// Which quota.
        quota: Quota,
        /// Its limit.
        limit: u64,
    },
    /// Linear memory would grow past the limit.
    #[error("memory limit of {limit} bytes reached (asked for {asked})")]
    Memory {
        /// The limit.
        limit: u64,
        /// What growth asked for.
        asked: u64,
    },
    /// A table would grow past the limit.
    #[error("table limit of {limit} elements reached")]
    Table {
        /// The limit.
        limit: u32,
    },
    /// A host call took longer than its timeout.
    #[error("host call {call} took longer than {timeout_ms} ms")]
    HostCallTimeout {
        /// The call (`state.get`).
        call: &'static str,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The run's records passed the report budget.
    #[error("the run's records passed the {limit}-byte report budget")]
    ReportBudget {
        /// The budget.
        limit: u64,
    },
    /// The run's deadline passed while the host was working for it.
    #[error("deadline {deadline_ms} ms exceeded")]
    Deadline {
        /// The deadline.
        deadline_ms: u64,
    },
}

/// What a run has used so far: host calls by quota, HTTP bytes, report bytes. A
/// workflow carries one value across its steps, so its quotas cover the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// HTTP requests made.
    pub http_requests: u64,
    /// HTTP body bytes sent and received.
    pub http_bytes: u64,
    /// E-mails queued.
    pub emails: u64,
    /// Platform messages queued.
    pub messages: u64,
    /// Runs started.
    pub runs_started: u64,
    /// Field writes.
    pub field_writes: u64,
    /// Tag changes.
    pub tag_changes: u64,
    /// State writes and deletes.
    pub state_writes: u64,
    /// Bytes of kept records (with their overhead).
    pub report_bytes: u64,
    /// Bytes of response bodies recorded.
    pub recorded_body_bytes: u64,
}

impl Counters {
    /// Counts one call of `quota`'s kind.
    ///
    /// # Errors
    /// [`LimitHit::Quota`] when the quota is used up (nothing is counted then).
    pub fn charge(&mut self, quota: Quota, quotas: &Quotas) -> Result<(), LimitHit> {
        let limit = u64::from(quota.limit(quotas));
        let used = match quota {
            Quota::HttpRequests => &mut self.http_requests,
            Quota::Emails => &mut self.emails,
            Quota::Messages => &mut self.messages,
            Quota::RunsStarted => &mut self.runs_started,
            Quota::FieldWrites => &mut self.field_writes,
            Quota::TagChanges => &mut self.tag_changes,
            Quota::StateWrites => &mut self.state_writes,
        };
        if *used >= limit {
            return Err(LimitHit::Quota { quota, limit });
        }
        *used += 1;
        Ok(())
    }

    /// Charges a kept record of `bytes` (plus [`RECORD_OVERHEAD_BYTES`]) to the report
    /// budget.
    ///
    /// # Errors
    /// [`LimitHit::ReportBudget`] past `limits.max_report_bytes`.
    pub fn charge_record(&mut self, bytes: usize, limits: &Limits) -> Result<(), LimitHit> {
        let cost = u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(RECORD_OVERHEAD_BYTES);
        let total = self.report_bytes.saturating_add(cost);
        if total > limits.max_report_bytes {
            return Err(LimitHit::ReportBudget {
                limit: limits.max_report_bytes,
            });
        }
        self.report_bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_usable_and_bad_values_named() {
        Limits::default().check().unwrap();
        let zero = Limits {
            fuel: 0,
            ..Limits::default()
        };
        assert_eq!(zero.check().unwrap_err().name, "limits.fuel");
        let forever = Limits {
            deadline_ms: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(forever.check().unwrap_err().name, "limits.deadline_ms");
    }

    #[test]
    fn overrides_only_tighten() {
        let limits = Limits::default();
        let tighter = limits
            .with_overrides(&LimitOverrides {
                fuel: Some(10),
                deadline_ms: None,
                max_memory_bytes: Some(1 << 20),
            })
            .unwrap();
        assert_eq!(
            (tighter.fuel, tighter.deadline_ms, tighter.max_memory_bytes),
            (10, limits.deadline_ms, 1 << 20)
        );
        for looser in [
            LimitOverrides {
                fuel: Some(limits.fuel + 1),
                ..LimitOverrides::default()
            },
            LimitOverrides {
                deadline_ms: Some(0),
                ..LimitOverrides::default()
            },
        ] {
            assert!(limits.with_overrides(&looser).is_err());
        }
        let clamped = limits.tightened_by(&LimitOverrides {
            fuel: Some(u64::MAX),
            deadline_ms: Some(7),
            max_memory_bytes: Some(0),
        });
        assert_eq!(
            (clamped.fuel, clamped.deadline_ms, clamped.max_memory_bytes),
            (limits.fuel, 7, limits.max_memory_bytes)
        );
    }

    #[test]
    fn a_stored_override_that_does_not_decode_is_an_error() {
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"fuel_units": 5}"#).is_err());
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"fuel": "lots"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<LimitOverrides>(r#"{"fuel": 5}"#).unwrap(),
            LimitOverrides {
                fuel: Some(5),
                ..LimitOverrides::default()
            }
        );
    }

    #[test]
    fn counters_charge_up_to_the_quota_and_records_cost_their_overhead() {
        let quotas = Quotas {
            emails: 2,
            ..Quotas::default()
        };
        let mut counters = Counters::default();
        counters.charge(Quota::Emails, &quotas).unwrap();
        counters.charge(Quota::Emails, &quotas).unwrap();
        assert_eq!(
            counters.charge(Quota::Emails, &quotas),
            Err(LimitHit::Quota {
                quota: Quota::Emails,
                limit: 2
            })
        );
        assert_eq!(counters.emails, 2);
        let limits = Limits {
            max_report_bytes: 100,
            ..Limits::default()
        };
        counters.charge_record(0, &limits).unwrap();
        counters.charge_record(0, &limits).unwrap();
        counters.charge_record(0, &limits).unwrap();
        assert!(
            counters.charge_record(0, &limits).is_err(),
            "empty records cost too"
        );
    }
}

//! How a run ended: its outcome, or a typed error with who is to blame (which decides
//! whether a retry may help), and what it used.

use serde::{Deserialize, Serialize};

use crate::limits::LimitHit;

/// What a successful run returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunOutcome {
    /// Output variables (a JSON object).
    pub output: serde_json::Value,
    /// Replies for the conversation.
    #[serde(default)]
    pub replies: Vec<String>,
    /// The workflow branch chosen.
    #[serde(default)]
    pub branch: Option<String>,
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorKind {
    /// The fuel budget ran out.
    FuelExhausted,
    /// The wall-clock deadline passed.
    DeadlineExceeded,
    /// Linear memory growth went past the limit.
    MemoryLimit,
    /// Table growth went past the limit.
    TableLimit,
    /// The wasm stack overflowed.
    StackOverflow,
    /// A host-call quota (or the tenant's state cap) was used up.
    QuotaExceeded,
    /// A host call took longer than its timeout.
    HostTimeout,
    /// The output and replies are larger than the cap.
    OutputTooLarge,
    /// The run's records passed the report budget.
    ReportTooLarge,
    /// The output is not a JSON object.
    InvalidOutput,
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    Trap,
    /// The action returned an error.
    ActionError,
    /// The component could not be loaded.
    InvalidComponent,
    /// The limits given for the run are unusable (an embedder's or operator's error).
    InvalidLimits,
    /// The action (or a workflow's step) is disabled or was deleted.
    ActionDisabled,
    /// The run succeeded but its effects could not be applied.
    ApplyFailed,
    /// Something the host needs (a store, the instance pool) was unavailable.
    BackendUnavailable,
    /// The run was cancelled.
    Cancelled,
    /// The host stopped while running it too many times (it may be what kills the host).
    Crashed,
}

impl ErrorKind {
    /// The kind's name as in reports and metrics (`fuel_exhausted`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FuelExhausted => "fuel_exhausted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::MemoryLimit => "memory_limit",
            Self::TableLimit => "table_limit",
            Self::StackOverflow => "stack_overflow",
            Self::QuotaExceeded => "quota_exceeded",
            Self::HostTimeout => "host_timeout",
            Self::OutputTooLarge => "output_too_large",
            Self::ReportTooLarge => "report_too_large",
            Self::InvalidOutput => "invalid_output",
            Self::Trap => "trap",
            Self::ActionError => "action_error",
            Self::InvalidComponent => "invalid_component",
            Self::InvalidLimits => "invalid_limits",
            Self::ActionDisabled => "action_disabled",
            Self::ApplyFailed => "apply_failed",
            Self::BackendUnavailable => "backend_unavailable",
            Self::Cancelled => "cancelled",
            Self::Crashed => "crashed",
        }
    }

    /// Every kind (for metrics that list them all).
    pub const ALL: [Self; 19] = [
        Self::FuelExhausted,
        Self::DeadlineExceeded,
        Self::MemoryLimit,
        Self::TableLimit,
        Self::StackOverflow,
        Self::QuotaExceeded,
        Self::HostTimeout,
        Self::OutputTooLarge,
        Self::ReportTooLarge,
        Self::InvalidOutput,
        Self::Trap,
        Self::ActionError,
        Self::InvalidComponent,
        Self::InvalidLimits,
        Self::ActionDisabled,
        Self::ApplyFailed,
        Self::BackendUnavailable,
        Self::Cancelled,
        Self::Crashed,
    ];

    /// Whether the kind is a resource limit of the sandbox.
    #[must_use]
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            Self::FuelExhausted
                | Self::DeadlineExceeded
                | Self::MemoryLimit
                | Self::TableLimit
                | Self::StackOverflow
                | Self::QuotaExceeded
                | Self::HostTimeout
                | Self::OutputTooLarge
                | Self::ReportTooLarge
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a failure is attributed to; decides whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Blame {
    /// The tenant's code or input: the same run fails the same way again.
    Guest,
    /// A service the action called failed, and the action said a retry may help (a 5xx,
    /// a timeout upstream).
    Upstream,
    /// Fluxo itself (a host call timed out, the instance pool was full).
    Host,
    /// The platform's side (a store or backend unavailable).
    Platform,
}

/// A typed failure with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RunErrorWire", from = "RunErrorWire")]
pub struct RunError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Who it is attributed to.
    pub blame: Blame,
    /// What happened, with the limit and what was used (secrets redacted in records).
    pub message: String,
    /// How long an upstream asked to wait before a retry (`Retry-After`), when it did.
    pub retry_after_ms: Option<u64>,
}

impl RunError {
    /// A failure of `kind` blamed on the default party for it (the guest for sandbox
    /// limits, traps and action errors; the host for host-call timeouts; the platform for
    /// unavailable backends and failed applies).
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let blame = match kind {
            ErrorKind::HostTimeout => Blame::Host,
            ErrorKind::BackendUnavailable | ErrorKind::ApplyFailed => Blame::Platform,
            _ => Blame::Guest,
        };
        Self {
            kind,
            blame,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The same failure blamed on `blame`.
    #[must_use]
    pub fn blamed_on(mut self, blame: Blame) -> Self {
        self.blame = blame;
        self
    }

    /// Whether running again may succeed: failures of the guest's own making, and
    /// cancelled, crashed, disabled or unloadable runs, will not; the rest may.
    #[must_use]
    pub fn retryable(&self) -> bool {
        !matches!(self.blame, Blame::Guest)
            && !matches!(
                self.kind,
                ErrorKind::Cancelled
                    | ErrorKind::Crashed
                    | ErrorKind::ActionDisabled
                    | ErrorKind::InvalidComponent
                    | ErrorKind::InvalidLimits
            )
    }

    /// The error for a limit hit inside the host.
    #[must_use]
    pub fn from_limit(hit: &LimitHit) -> Self {
        let kind = match hit {
            LimitHit::Quota { .. } => ErrorKind::QuotaExceeded,
            LimitHit::Memory { .. } => ErrorKind::MemoryLimit,
            LimitHit::Table { .. } => ErrorKind::TableLimit,
            LimitHit::HostCallTimeout { .. } => ErrorKind::HostTimeout,
            LimitHit::ReportBudget { .. } => ErrorKind::ReportTooLarge,
            LimitHit::Deadline { .. } => ErrorKind::DeadlineExceeded,
        };
        Self::new(kind, hit.to_string())
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RunError {}

/// The serialized form: `retryable` is written for readers of reports and ignored when
/// read back (it is derived).
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RunError))]
pub(crate) struct RunErrorWire {
    /// What went wrong.
    kind: ErrorKind,
    /// Whose fault it is: the guest's, the host's or the platform's.
    blame: Blame,
    /// What happened, for people.
    message: String,
    /// Whether a retry may help: derived from kind and blame when written, ignored when
    /// read.
    retryable: bool,
    /// How long an upstream asked to wait before a retry, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl From<RunError> for RunErrorWire {
    fn from(error: RunError) -> Self {
        Self {
            retryable: error.retryable(),
            kind: error.kind,
            blame: error.blame,
            message: error.message,
            retry_after_ms: error.retry_after_ms,
        }
    }
}

impl From<RunErrorWire> for RunError {
    fn from(wire: RunErrorWire) -> Self {
        Self {
            kind: wire.kind,
            blame: wire.blame,
            message: wire.message,
            retry_after_ms: wire.retry_after_ms,
        }
    }
}

/// Resources a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Fuel burnt.
    pub fuel: u64,
    /// Wall time from instantiation to the end of the call, in milliseconds.
    pub wall_ms: u64,
    /// The largest linear memory reached, in bytes.
    pub peak_memory_bytes: u64,
}

impl Usage {
    /// This usage plus `other`'s (a workflow's steps): fuel and wall time add up, the peak
    /// is the larger.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            fuel: self.fuel.saturating_add(other.fuel),
            wall_ms: self.wall_ms.saturating_add(other.wall_ms),
            peak_memory_bytes: self.peak_memory_bytes.max(other.peak_memory_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_kind_and_blame() {
        assert!(!RunError::new(ErrorKind::FuelExhausted, "x").retryable());
        assert!(!RunError::new(ErrorKind::ActionError, "x").retryable());
        assert!(
            RunError::new(ErrorKind::ActionError, "x")
                .blamed_on(Blame::Upstream)
                .retryable()
        );
        assert!(RunError::new(ErrorKind::HostTimeout, "x").retryable());
        assert!(RunError::new(ErrorKind::BackendUnavailable, "x").retryable());
        assert!(
            !RunError::new(ErrorKind::Cancelled, "x")
                .blamed_on(Blame::Platform)
                .retryable()
        );
    }

    #[test]
    fn errors_round_trip_and_show_retryable() {
        let error = RunError {
            retry_after_ms: Some(1500),
            ..RunError::new(ErrorKind::ActionError, "crm said 503").blamed_on(Blame::Upstream)
        };
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["retryable"], true);
        assert_eq!(json["kind"], "action_error");
        assert_eq!(serde_json::from_value::<RunError>(json).unwrap(), error);
        let packed = rmp_serde::to_vec_named(&error).unwrap();
        assert_eq!(rmp_serde::from_slice::<RunError>(&packed).unwrap(), error);
        for kind in ErrorKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().to_owned())
            );
        }
    }
}

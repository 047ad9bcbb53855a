//! The record of one run: status, outcome or typed error, effects, HTTP exchanges, logs
//! and resource use. Serialized as the JSON `fluxo run` prints.

use serde::Serialize;

use crate::host::http::HttpExchange;
use crate::host::log::LogLine;
use crate::journal::Effect;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// `run` returned `ok` within every limit, and its effects were applied.
    Succeeded,
    /// Anything else; nothing was applied.
    Failed,
}

/// Why a run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// A host-call quota was used up.
    QuotaExceeded,
    /// A host call took longer than its timeout.
    HostTimeout,
    /// The output and replies are larger than the cap.
    OutputTooLarge,
    /// The output is not a JSON object.
    InvalidOutput,
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    Trap,
    /// The action returned an error.
    ActionError,
    /// The component could not be loaded.
    InvalidComponent,
    /// The run succeeded but its effects could not be applied.
    ApplyFailed,
    /// A platform backend (secrets, state) could not be reached before the run.
    BackendUnavailable,
}

/// A typed failure with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, with the limit and what was used (secrets redacted).
    pub message: String,
    /// Whether running again may succeed.
    pub retryable: bool,
}

/// What a successful run returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    /// Output variables (a JSON object).
    pub output: serde_json::Value,
    /// Replies for the conversation.
    pub replies: Vec<String>,
    /// The workflow branch chosen.
    pub branch: Option<String>,
}

/// Resources a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Fuel burnt.
    pub fuel: u64,
    /// Wall time from instantiation to the end of the call.
    pub wall_ms: u64,
    /// The largest linear memory reached.
    pub peak_memory_bytes: u64,
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The outcome, when it succeeded.
    pub outcome: Option<RunOutcome>,
    /// The error, when it failed.
    pub error: Option<RunError>,
    /// The effects the run recorded, in order.
    pub effects: Vec<Effect>,
    /// Whether the effects were applied (only ever for a succeeded run).
    pub applied: bool,
    /// Every HTTP exchange.
    pub http: Vec<HttpExchange>,
    /// Log lines (log interface, stdout, stderr).
    pub logs: Vec<LogLine>,
    /// Whether log lines were dropped at the cap.
    pub logs_truncated: bool,
    /// Resource use.
    pub usage: Usage,
}

impl RunReport {
    /// Whether the run succeeded.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The report of a run that never started because its component was refused.
    #[must_use]
    pub fn invalid_component(error: &crate::Error) -> Self {
        Self::not_started(
            String::new(),
            ErrorKind::InvalidComponent,
            error.to_string(),
            false,
        )
    }

    /// The report of a run that never started because a backend was unavailable.
    pub(crate) fn unavailable(run_id: String, message: &str) -> Self {
        Self::not_started(
            run_id,
            ErrorKind::BackendUnavailable,
            message.to_owned(),
            true,
        )
    }

    fn not_started(run_id: String, kind: ErrorKind, message: String, retryable: bool) -> Self {
        Self {
            run_id,
            status: RunStatus::Failed,
            outcome: None,
            error: Some(RunError {
                kind,
                message,
                retryable,
            }),
            effects: Vec::new(),
            applied: false,
            http: Vec::new(),
            logs: Vec::new(),
            logs_truncated: false,
            usage: Usage::default(),
        }
    }

    /// The error kind, when the run failed.
    #[must_use]
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|error| error.kind)
    }
}

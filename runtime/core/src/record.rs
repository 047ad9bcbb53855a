//! The records of a run: its HTTP exchanges, its log lines, and the report that holds
//! them with the outcome or error, the effects and the usage.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::ids::RunId;
use crate::outcome::{ErrorKind, RunError, RunOutcome, Usage};

/// One HTTP exchange of a run (credentials masked and secrets redacted in records).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpExchange {
    /// The method.
    pub method: String,
    /// The URL asked for.
    pub url: String,
    /// The URLs redirected to, in order.
    #[serde(default)]
    pub redirects: Vec<String>,
    /// The status, when a response came.
    #[serde(default)]
    pub status: Option<u16>,
    /// The request headers the guest set.
    #[serde(default)]
    pub request_headers: Vec<(String, String)>,
    /// The response headers.
    #[serde(default)]
    pub response_headers: Vec<(String, String)>,
    /// Request body size in bytes.
    #[serde(default)]
    pub request_bytes: u64,
    /// Response body bytes read.
    #[serde(default)]
    pub response_bytes: u64,
    /// The response body as recorded, whole unless the run's recording budget
    /// (`limits.max_recorded_body_bytes`) ran out: the bytes themselves when they are
    /// UTF-8, else their base64 (`response_body_encoding`).
    #[serde(default)]
    pub response_body: String,
    /// How `response_body` holds the bytes: `text` (absent) or `base64`.
    #[serde(default, skip_serializing_if = "BodyEncoding::is_text")]
    pub response_body_encoding: BodyEncoding,
    /// Whether `response_body` holds less than the whole body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub response_body_truncated: bool,
    /// Whether a secret was redacted out of `response_body` (the upstream echoed it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub response_body_redacted: bool,
    /// Time from start to the end of the body, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// Why there was no response (`denied: …`, `timeout`, …).
    #[serde(default)]
    pub error: Option<String>,
}

/// How a recorded body holds its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BodyEncoding {
    /// The bytes are UTF-8 text, kept as they are.
    #[default]
    Text,
    /// The bytes are not UTF-8: standard base64 with padding (RFC 4648 §4).
    Base64,
}

impl BodyEncoding {
    /// Whether this is [`BodyEncoding::Text`].
    #[must_use]
    pub fn is_text(&self) -> bool {
        *self == Self::Text
    }
}

impl HttpExchange {
    /// Records the first `keep` bytes of `body` (text when they are UTF-8, else base64),
    /// marking the record truncated when `keep` is shorter than the body. Returns the
    /// number of body bytes kept.
    pub fn record_response_body(&mut self, body: &[u8], keep: usize) -> usize {
        let kept = body.get(..keep.min(body.len())).unwrap_or_default();
        match std::str::from_utf8(kept) {
            Ok(text) => {
                self.response_body = text.to_owned();
                self.response_body_encoding = BodyEncoding::Text;
            }
            Err(_) => {
                self.response_body = base64::engine::general_purpose::STANDARD.encode(kept);
                self.response_body_encoding = BodyEncoding::Base64;
            }
        }
        self.response_body_truncated = kept.len() < body.len();
        kept.len()
    }

    /// The recorded response body's bytes (`None` when a base64 body does not decode:
    /// a record edited by hand).
    #[must_use]
    pub fn response_body_bytes(&self) -> Option<Vec<u8>> {
        match self.response_body_encoding {
            BodyEncoding::Text => Some(self.response_body.clone().into_bytes()),
            BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&self.response_body)
                .ok(),
        }
    }

    /// Bytes the record holds (for the report budget).
    #[must_use]
    pub fn size(&self) -> usize {
        self.method.len()
            + self.url.len()
            + self.redirects.iter().map(String::len).sum::<usize>()
            + self
                .request_headers
                .iter()
                .chain(&self.response_headers)
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
            + self.response_body.len()
            + self.error.as_ref().map_or(0, String::len)
    }
}

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LogLevel {
    /// Fine-grained tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress (stdout lines).
    Info,
    /// Something unexpected (stderr lines, host warnings).
    Warn,
    /// A failure.
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LogSource {
    /// The `log` interface.
    Log,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The host, about the run (a workflow step, a replaced character).
    Host,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// How important.
    pub level: LogLevel,
    /// Where from.
    pub source: LogSource,
    /// The text (secrets redacted in records).
    pub message: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunStatus {
    /// `run` returned `ok` within every limit.
    Succeeded,
    /// Anything else.
    Failed,
}

/// Everything about one execution of a run, as recorded: secrets redacted, credentials
/// masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReport {
    /// The run's id.
    pub run_id: RunId,
    /// Which attempt this is (1 for the first).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// How it ended.
    pub status: RunStatus,
    /// The outcome, when it succeeded.
    pub outcome: Option<RunOutcome>,
    /// The error, when it failed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::outcome::RunErrorWire>))]
    pub error: Option<RunError>,
    /// The effects the run recorded, in order.
    pub effects: Vec<Effect>,
    /// Whether the effects were committed (only ever for a succeeded run).
    pub applied: bool,
    /// Every HTTP exchange.
    pub http: Vec<HttpExchange>,
    /// Log lines (log interface, stdout, stderr, host notes).
    pub logs: Vec<LogLine>,
    /// Whether log lines were dropped at the cap.
    pub logs_truncated: bool,
    /// Resource use.
    pub usage: Usage,
}

fn first_attempt() -> u32 {
    1
}

impl RunReport {
    /// Whether the run succeeded.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The error kind, when the run failed.
    #[must_use]
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|error| error.kind)
    }

    /// The report of a run that never started.
    #[must_use]
    pub fn not_started(run_id: RunId, attempt: u32, error: RunError) -> Self {
        Self {
            run_id,
            attempt,
            status: RunStatus::Failed,
            outcome: None,
            error: Some(error),
            effects: Vec::new(),
            applied: false,
            http: Vec::new(),
            logs: Vec::new(),
            logs_truncated: false,
            usage: Usage::default(),
        }
    }

    /// This report failed with `error`: nothing applied (the commit refused it).
    #[must_use]
    pub fn failed_with(mut self, error: RunError) -> Self {
        self.status = RunStatus::Failed;
        self.outcome = None;
        self.error = Some(error);
        self.applied = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_body_reads_back_as_the_bytes_it_kept() {
        let mut exchange = HttpExchange::default();
        assert_eq!(exchange.record_response_body("héllo".as_bytes(), 100), 6);
        assert_eq!(exchange.response_body, "héllo");
        assert!(exchange.response_body_encoding.is_text());
        assert!(!exchange.response_body_truncated);

        // Cut inside `é`: the kept bytes are not UTF-8, so they are kept as base64.
        assert_eq!(exchange.record_response_body("héllo".as_bytes(), 2), 2);
        assert_eq!(exchange.response_body_encoding, BodyEncoding::Base64);
        assert_eq!(exchange.response_body_bytes(), Some(vec![b'h', 0xc3]));
        assert!(exchange.response_body_truncated);

        // Through JSON, as the API hands records out.
        let json = serde_json::to_value(&exchange).unwrap();
        assert_eq!(json["response_body_encoding"], "base64");
        let read: HttpExchange = serde_json::from_value(json).unwrap();
        assert_eq!(read.response_body_bytes(), Some(vec![b'h', 0xc3]));
        let text = serde_json::to_value(HttpExchange::default()).unwrap();
        assert!(text.get("response_body_encoding").is_none());
    }
}

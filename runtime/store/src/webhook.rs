//! The completion webhook's message: what every backend writes to the outbox when a run
//! ends (succeeded, dead or cancelled), in the Standard Webhooks payload shape
//! (`{"type", "timestamp", "data"}`).

use fluxo_core::{RunError, RunId};

use crate::records::{RunPhase, RunTarget};

/// The event types a tenant's endpoints receive.
#[must_use]
pub fn event_type(state: RunPhase) -> Option<&'static str> {
    match state {
        RunPhase::Succeeded => Some("run.succeeded"),
        RunPhase::Dead => Some("run.dead"),
        RunPhase::Cancelled => Some("run.cancelled"),
        _ => None,
    }
}

/// The message for a run that ended in `state`: `(webhook-id, body, timestamp seconds)`,
/// or `None` for states that send none. The id (`msg_RUN-ID_ATTEMPT`) is the same for
/// every delivery attempt, so receivers deduplicate on it.
#[must_use]
pub fn completion_message(
    run: RunId,
    attempt: u32,
    target: &RunTarget,
    state: RunPhase,
    error: Option<&RunError>,
    at_ms: i64,
) -> Option<(String, String, i64)> {
    let kind = event_type(state)?;
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    let body = serde_json::json!({
        "type": kind,
        "timestamp": humantime::format_rfc3339_millis(time).to_string(),
        "data": {
            "run_id": run,
            "action": target.name(),
            "version": target.version(),
            "state": state,
            "attempt": attempt,
            "error": error,
        },
    });
    Some((
        format!("msg_{run}_{attempt}"),
        body.to_string(),
        at_ms.div_euclid(1000),
    ))
}

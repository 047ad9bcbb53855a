//! The completion webhook's message: what every backend writes to the outbox when a run
//! ends (succeeded, failed for good, dead or cancelled; not tests), in the Standard Webhooks payload shape
//! (`{"type", "timestamp", "data"}`).

use fluxo_core::{RunError, RunId};

use crate::records::{RunPhase, RunTarget};

/// The event types a tenant's endpoints receive.
#[must_use]
pub fn event_type(state: RunPhase) -> Option<&'static str> {
    match state {
        RunPhase::Succeeded => Some("run.succeeded"),
        RunPhase::Failed => Some("run.failed"),
        RunPhase::Dead => Some("run.dead"),
        RunPhase::Cancelled => Some("run.cancelled"),
        _ => None,
    }
}

/// The message for a run that ended in `state`: `(webhook-id, body, timestamp seconds)`,
/// or `None` for states that send none. The id (`msg_RUN-ID_FENCE`) is the same for every
/// delivery attempt, so receivers deduplicate on it; the fence (the lease's token, which
/// only grows) makes a run retried by hand after it ended send a new event, not a
/// duplicate of the old one.
#[must_use]
pub fn completion_message(
    run: RunId,
    attempt: u32,
    fence: u64,
    target: &RunTarget,
    state: RunPhase,
    error: Option<&RunError>,
    at_ms: i64,
) -> Option<(String, String, i64)> {
    let kind = event_type(state)?;
    let data = serde_json::json!({
        "run_id": run,
        "action": target.name(),
        "version": target.version(),
        "state": state,
        "attempt": attempt,
        "error": error,
    });
    Some((
        format!("msg_{run}_{fence}"),
        event_body(kind, &data, at_ms),
        at_ms.div_euclid(1000),
    ))
}

/// The Standard Webhooks envelope `{"type", "timestamp", "data"}` as JSON text, the
/// timestamp being `at_ms` (Unix milliseconds) in RFC 3339 with milliseconds. Every event
/// Fluxo sends (completions, conversation messages) is built here, so they share one shape.
#[must_use]
pub fn event_body(kind: &str, data: &serde_json::Value, at_ms: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    serde_json::json!({
        "type": kind,
        "timestamp": humantime::format_rfc3339_millis(time).to_string(),
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_attempt(body: &str) -> u64 {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        body["data"]["attempt"].as_u64().unwrap()
    }

    #[test]
    fn every_final_phase_sends_one_event_and_the_id_is_per_lease() {
        let sent: Vec<_> = RunPhase::ALL.into_iter().filter_map(event_type).collect();
        assert_eq!(
            sent,
            ["run.succeeded", "run.failed", "run.dead", "run.cancelled"]
        );
        let run = RunId::new();
        let target = RunTarget::Action {
            name: "crm-lead".parse().unwrap(),
            version: 3,
        };
        let (id, body, seconds) = completion_message(
            run,
            2,
            7,
            &target,
            RunPhase::Failed,
            None,
            1_700_000_000_123,
        )
        .unwrap();
        assert_eq!(
            id,
            format!("msg_{run}_7"),
            "the id follows the lease's fence"
        );
        assert_eq!(body_attempt(&body), 2);
        assert_eq!(seconds, 1_700_000_000);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "run.failed");
        assert_eq!(body["data"]["version"], 3);
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert!(completion_message(run, 1, 1, &target, RunPhase::Running, None, 0).is_none());
    }
}

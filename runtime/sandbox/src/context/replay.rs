//! Replay: a run's HTTP answered from its record, nothing sent (`fluxo replay`).
//!
//! The run's requests are answered in order: request N gets the N-th recorded
//! exchange's response (status, headers, body) or its error, provided it asks for the
//! same method and URL with a body of the same size. What cannot be answered exactly —
//! a different request, a request past the record's last, a body the record kept cut or
//! redacted, a response header masked as a credential — is written down as a divergence;
//! a request the record cannot answer gets a `connect` error, as if the network were
//! gone.

use std::sync::{Mutex, PoisonError};

use fluxo_core::HttpExchange;
use fluxo_egress::{EgressError, EgressRequest, EgressResponse};

use crate::redact::REDACTED;

/// The recorded exchanges of one run and where the replay is in them.
#[derive(Debug, Default)]
pub struct HttpReplay {
    state: Mutex<ReplayState>,
}

#[derive(Debug, Default)]
struct ReplayState {
    recorded: Vec<HttpExchange>,
    next: usize,
    divergences: Vec<String>,
}

impl HttpReplay {
    /// A replay answering from `recorded` (a run report's `http`, in order).
    #[must_use]
    pub fn new(recorded: Vec<HttpExchange>) -> Self {
        Self {
            state: Mutex::new(ReplayState {
                recorded,
                next: 0,
                divergences: Vec::new(),
            }),
        }
    }

    /// Why the replay may differ from the original, one line per cause, in the order
    /// found: requests that differ from the record, requests past it or left unmade,
    /// bodies recorded cut or redacted.
    #[must_use]
    pub fn divergences(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines = state.divergences.clone();
        let unmade = state.recorded.len().saturating_sub(state.next);
        if unmade > 0 {
            lines.push(format!(
                "the original made {} HTTP requests, the replay {}",
                state.recorded.len(),
                state.next
            ));
        }
        lines
    }

    /// Answers the next request from the record, filling `record` as a live exchange
    /// would. `url` is the request's URL as the record would show it (secrets
    /// redacted).
    pub(crate) fn answer(
        &self,
        request: &EgressRequest,
        url: &str,
        record: &mut HttpExchange,
    ) -> Result<EgressResponse, EgressError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let index = state.next;
        state.next += 1;
        let number = index + 1;
        let method = request.method.to_string();
        let Some(original) = state.recorded.get(index).cloned() else {
            state.divergences.push(format!(
                "request {number} ({method} {url}) was not made by the original run"
            ));
            return Err(EgressError::Connect(format!(
                "replay: the original run made no request {number}"
            )));
        };
        if original.method != method || original.url != url {
            state.divergences.push(format!(
                "request {number} is {method} {url}; the original's was {} {}",
                original.method, original.url
            ));
            return Err(EgressError::Connect(format!(
                "replay: request {number} differs from the original's"
            )));
        }
        let body_bytes = request.body.as_ref().map_or(0, Vec::len);
        if u64::try_from(body_bytes).ok() != Some(original.request_bytes) {
            state.divergences.push(format!(
                "request {number} ({method} {url}) sends {body_bytes} body bytes; the original sent {}",
                original.request_bytes
            ));
        }
        record.redirects.clone_from(&original.redirects);
        record.status = original.status;
        record
            .response_headers
            .clone_from(&original.response_headers);
        record.request_bytes = original.request_bytes;
        record.response_bytes = original.response_bytes;
        if let Some(text) = &original.error {
            return Err(EgressError::from_record(text).unwrap_or_else(|| {
                state.divergences.push(format!(
                    "request {number}: the recorded error {text:?} is not one this host reads; answered as a lost connection"
                ));
                EgressError::Connect(format!("replay: the recorded error is {text:?}"))
            }));
        }
        let Some(status) = original.status else {
            state.divergences.push(format!(
                "request {number}: the record has neither a status nor an error"
            ));
            return Err(EgressError::Connect(format!(
                "replay: request {number} has no recorded status"
            )));
        };
        let masked: Vec<&str> = original
            .response_headers
            .iter()
            .filter(|(_, value)| value.contains(REDACTED))
            .map(|(name, _)| name.as_str())
            .collect();
        if !masked.is_empty() {
            state.divergences.push(format!(
                "request {number}: response headers {} were masked in the record (credentials)",
                masked.join(", ")
            ));
        }
        let Some(body) = original.response_body_bytes() else {
            state.divergences.push(format!(
                "request {number}: the recorded body does not decode (the record was edited)"
            ));
            return Err(EgressError::Connect(format!(
                "replay: request {number}'s recorded body does not decode"
            )));
        };
        if original.response_body_truncated {
            state.divergences.push(format!(
                "request {number}: the body was recorded cut at {} bytes of {} (the run's recording budget, limits.max_recorded_body_bytes)",
                body.len(),
                original.response_bytes
            ));
        }
        if original.response_body_redacted {
            state.divergences.push(format!(
                "request {number}: a secret was redacted out of the recorded body"
            ));
        }
        record.record_response_body(&body, body.len());
        record.response_body_truncated = original.response_body_truncated;
        record.response_body_redacted = original.response_body_redacted;
        Ok(EgressResponse {
            status,
            headers: original.response_headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use fluxo_egress::Method;

    use super::*;

    fn exchange(method: &str, url: &str, status: u16, body: &[u8]) -> HttpExchange {
        let mut exchange = HttpExchange {
            method: method.to_owned(),
            url: url.to_owned(),
            status: Some(status),
            response_headers: vec![("content-type".into(), "application/octet-stream".into())],
            response_bytes: u64::try_from(body.len()).unwrap(),
            ..HttpExchange::default()
        };
        exchange.record_response_body(body, body.len());
        exchange
    }

    #[test]
    fn requests_are_answered_in_order_with_the_recorded_bytes() {
        let binary = [0_u8, 159, 146, 150, 255];
        let replay = HttpReplay::new(vec![
            exchange("GET", "http://crm.test/a", 200, b"{\"id\":7}"),
            exchange("GET", "http://crm.test/b", 404, &binary),
        ]);
        let mut record = HttpExchange::default();
        let first = replay
            .answer(
                &EgressRequest::new(Method::Get, "http://crm.test/a"),
                "http://crm.test/a",
                &mut record,
            )
            .unwrap();
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"{\"id\":7}"[..])
        );
        let second = replay
            .answer(
                &EgressRequest::new(Method::Get, "http://crm.test/b"),
                "http://crm.test/b",
                &mut record,
            )
            .unwrap();
        assert_eq!((second.status, second.body), (404, binary.to_vec()));
        assert_eq!(record.response_body_bytes(), Some(binary.to_vec()));
        assert_eq!(
            second.headers,
            vec![(
                "content-type".to_owned(),
                "application/octet-stream".to_owned()
            )]
        );
        assert!(
            replay.divergences().is_empty(),
            "{:?}",
            replay.divergences()
        );
    }

    #[test]
    fn a_recorded_error_is_answered_as_that_error() {
        let mut failed = exchange("POST", "http://crm.test/deals", 0, b"");
        failed.status = None;
        failed.error = Some("timeout".into());
        let replay = HttpReplay::new(vec![failed]);
        let answered = replay.answer(
            &EgressRequest::new(Method::Post, "http://crm.test/deals"),
            "http://crm.test/deals",
            &mut HttpExchange::default(),
        );
        assert_eq!(answered, Err(EgressError::Timeout));
    }

    #[test]
    fn what_the_record_cannot_answer_exactly_is_written_down() {
        let mut cut = exchange("GET", "http://crm.test/big", 200, b"0123456789");
        cut.record_response_body(b"0123456789", 4);
        let replay = HttpReplay::new(vec![
            cut,
            exchange("GET", "http://crm.test/a", 200, b"a"),
            exchange("GET", "http://crm.test/never", 200, b"n"),
        ]);
        let mut record = HttpExchange::default();
        let big = replay
            .answer(
                &EgressRequest::new(Method::Get, "http://crm.test/big"),
                "http://crm.test/big",
                &mut record,
            )
            .unwrap();
        assert_eq!(big.body, b"0123".to_vec());
        assert!(record.response_body_truncated);
        let other = replay.answer(
            &EgressRequest::new(Method::Get, "http://crm.test/other"),
            "http://crm.test/other",
            &mut record,
        );
        assert!(matches!(other, Err(EgressError::Connect(_))), "{other:?}");
        let divergences = replay.divergences();
        assert_eq!(divergences.len(), 3, "{divergences:?}");
        assert!(divergences[0].contains("recorded cut at 4 bytes of 10"));
        assert!(divergences[1].contains("request 2 is GET http://crm.test/other"));
        assert!(divergences[2].contains("the original made 3 HTTP requests, the replay 2"));
        let never = replay.answer(
            &EgressRequest::new(Method::Get, "http://crm.test/never"),
            "http://crm.test/never",
            &mut record,
        );
        assert_eq!(never.unwrap().body, b"n".to_vec());
        let past = replay.answer(
            &EgressRequest::new(Method::Get, "http://crm.test/late"),
            "http://crm.test/late",
            &mut record,
        );
        let past = past.unwrap_err();
        assert!(past.to_string().contains("made no request 4"), "{past}");
        assert!(
            replay.divergences()[2].contains("request 4 (GET http://crm.test/late) was not made"),
            "{:?}",
            replay.divergences()
        );
    }
}

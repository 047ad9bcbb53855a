//! The run-starting capability: a workflow's `trigger_workflow` step asks for another
//! action or workflow to run as its own run. The request is journaled like any effect;
//! the commit that applies this run's effects queues the new run in the same
//! transaction, keyed by the request's id, so it is queued once or not at all.

use fluxo_core::{ActionName, ContactId, Effect, MAX_RUN_DEPTH, Quota, RunRequest};

use super::{CapResult, RunContext};

/// The largest input a started run may be given, in bytes of JSON: the API's own cap
/// on a run's input (64 KiB).
pub const MAX_START_INPUT_BYTES: usize = 64 * 1024;

/// Why a start was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The name, contact or input is malformed, or the chain of runs is too deep.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// A run to start, before it gets its id.
#[derive(Debug, Clone, PartialEq)]
pub struct StartDraft {
    /// The action or workflow to run.
    pub action: String,
    /// The contact the new run is about; `None` for none.
    pub contact: Option<String>,
    /// The new run's input (a JSON object).
    pub input: serde_json::Value,
}

impl RunContext {
    /// Journals a request to start `draft.action` as its own run once this run commits;
    /// returns the request's id, `start_RUN-ID.N` (N counts the run's requests from 1,
    /// across a workflow's steps and waits), which is also the new run's idempotency
    /// key.
    ///
    /// Whether the action exists and is enabled is the caller's to check (the sandbox
    /// knows no registry); the commit pins its active version.
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `runs_started` quota or the report budget;
    /// [`StartError::Invalid`] for a malformed action name or contact id, an input that
    /// is not an object or passes [`MAX_START_INPUT_BYTES`], or a run already at
    /// [`MAX_RUN_DEPTH`].
    pub fn start_run(&mut self, draft: StartDraft) -> CapResult<String, StartError> {
        let invalid = |why: String| Ok(Err(StartError::Invalid(why)));
        if self.meta.depth >= MAX_RUN_DEPTH {
            return invalid(format!(
                "this run is the {}th of a chain of runs starting one another, the most allowed ({MAX_RUN_DEPTH})",
                self.meta.depth
            ));
        }
        let Ok(action) = ActionName::parse(&draft.action) else {
            return invalid(format!("{:?} is not an action name", draft.action));
        };
        let contact = match draft.contact.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) => match ContactId::parse(id) {
                Ok(id) => Some(id),
                Err(error) => return invalid(format!("the contact id {id:?}: {error}")),
            },
        };
        if !draft.input.is_object() {
            return invalid("the input must be a JSON object".to_owned());
        }
        let size = serde_json::to_vec(&draft.input).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_START_INPUT_BYTES {
            return invalid(format!(
                "the input is {size} bytes of JSON, more than {MAX_START_INPUT_BYTES}"
            ));
        }
        self.charge(Quota::RunsStarted)?;
        self.charge_record(size + action.as_str().len())?;
        let request_id = format!("start_{}.{}", self.meta.run_id, self.counters.runs_started);
        let mut request = RunRequest {
            request_id: request_id.clone(),
            action: action.to_string(),
            contact,
            input: draft.input,
            depth: self.meta.depth + 1,
            root: self.meta.root.unwrap_or(self.meta.run_id),
        };
        // A value an upstream echoed does not travel into another run's input.
        crate::redact::Redactor::new(self.secrets.values()).redact_json(&mut request.input);
        self.journal.record(Effect::StartRun(request));
        Ok(Ok(request_id))
    }
}

#[cfg(test)]
mod tests {
    use fluxo_core::LimitHit;
    use serde_json::json;

    use super::*;
    use crate::context::tests::quiet_context;

    fn draft(action: &str, contact: Option<&str>, input: serde_json::Value) -> StartDraft {
        StartDraft {
            action: action.to_owned(),
            contact: contact.map(str::to_owned),
            input,
        }
    }

    #[test]
    fn a_start_is_journaled_with_its_own_key_and_the_next_depth() {
        let mut ctx = quiet_context();
        let first = ctx
            .start_run(draft("to-contact", Some("c-9"), json!({"text": "hi"})))
            .unwrap()
            .unwrap();
        let second = ctx
            .start_run(draft("to-contact", None, json!({})))
            .unwrap()
            .unwrap();
        let run = ctx.meta().run_id;
        assert_eq!(first, format!("start_{run}.1"));
        assert_eq!(second, format!("start_{run}.2"));
        let requests: Vec<_> = ctx
            .journal()
            .effects()
            .iter()
            .filter_map(|effect| match effect {
                Effect::StartRun(request) => Some(request.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].contact.as_ref().unwrap().as_str(), "c-9");
        assert_eq!(requests[0].depth, 1);
        assert_eq!(requests[1].contact, None);
    }

    #[test]
    fn malformed_starts_are_refused_and_charge_nothing() {
        let mut ctx = quiet_context();
        for bad in [
            draft("no spaces allowed", None, json!({})),
            draft("ok", Some("bad\nid"), json!({})),
            draft("ok", None, json!([1, 2])),
            draft(
                "ok",
                None,
                json!({"big": "x".repeat(MAX_START_INPUT_BYTES)}),
            ),
        ] {
            assert!(matches!(
                ctx.start_run(bad.clone()),
                Ok(Err(StartError::Invalid(_)))
            ));
        }
        assert_eq!(ctx.counters().runs_started, 0);
        assert!(ctx.journal().effects().is_empty());
    }

    #[test]
    fn the_quota_and_the_depth_bound_starts() {
        let mut ctx = quiet_context();
        let quota = ctx.limits().quotas.runs_started;
        for _ in 0..quota {
            ctx.start_run(draft("a", None, json!({}))).unwrap().unwrap();
        }
        assert!(matches!(
            ctx.start_run(draft("a", None, json!({}))),
            Err(LimitHit::Quota {
                quota: Quota::RunsStarted,
                ..
            })
        ));
        let mut deep = quiet_context();
        deep.meta.depth = MAX_RUN_DEPTH;
        let refused = deep.start_run(draft("a", None, json!({}))).unwrap();
        assert!(matches!(refused, Err(StartError::Invalid(why)) if why.contains("chain")));
    }
}

//! The platform-message capability: replies into the conversation, notifications to a
//! platform user and handoffs are validated and journaled; committed ones reach the
//! platform through the outbox (the embedder's `Conversation`, by default a signed
//! webhook).

use fluxo_core::{Effect, MessageKind, PlatformMessage, Quota};

use super::{CapResult, RunContext};

/// Longest message text, in characters: the text-message limit of both the WhatsApp
/// Cloud API and the Telegram Bot API (4 096), so a platform never has to cut what
/// Fluxo accepted.
pub const MAX_TEXT_CHARS: usize = 4_096;
/// Longest recipient or service name, in bytes.
pub const MAX_TARGET_BYTES: usize = 256;

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The run is about no contact, or the message is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// A message to queue, before it gets its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDraft {
    /// What the platform is asked to do.
    pub kind: MessageKind,
    /// The text (a reply or notification needs one).
    pub text: String,
    /// A notification's recipient.
    pub to: Option<String>,
    /// A handoff's destination.
    pub service: Option<String>,
}

fn check_target(what: &str, value: Option<&str>) -> Result<(), MessageError> {
    let Some(value) = value else {
        return Err(MessageError::Invalid(format!("{what} is missing")));
    };
    if value.trim().is_empty()
        || value.len() > MAX_TARGET_BYTES
        || value.chars().any(char::is_control)
    {
        return Err(MessageError::Invalid(format!(
            "{what} must be 1 to {MAX_TARGET_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_draft(draft: &MessageDraft) -> Result<(), MessageError> {
    let chars = draft.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(MessageError::Invalid(format!(
            "the text is {chars} characters, more than {MAX_TEXT_CHARS}"
        )));
    }
    if draft.text.contains('\0') {
        return Err(MessageError::Invalid("NUL in the text".to_owned()));
    }
    match draft.kind {
        MessageKind::Reply | MessageKind::Notify if draft.text.trim().is_empty() => {
            return Err(MessageError::Invalid(format!(
                "a {} needs a text",
                draft.kind.as_str()
            )));
        }
        _ => {}
    }
    match draft.kind {
        MessageKind::Reply => Ok(()),
        MessageKind::Notify => check_target("the recipient (`to`)", draft.to.as_deref()),
        MessageKind::Handoff => check_target("the service", draft.service.as_deref()),
    }
}

impl RunContext {
    /// Queues a message for the platform in the journal; returns its id,
    /// `msg_RUN-ID.N` (N counts the run's messages from 1, across a workflow's steps).
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `messages` quota or the report budget;
    /// [`MessageError::Invalid`] when the run is about no contact, a reply or
    /// notification has no text, a notification no recipient, a handoff no service, or
    /// the text passes [`MAX_TEXT_CHARS`].
    ///
    /// The run's secrets are redacted from the text, recipient and service before they
    /// are journaled: a value an upstream echoed never reaches a chat.
    pub fn send_message(&mut self, draft: MessageDraft) -> CapResult<String, MessageError> {
        let Some(contact) = self.contact.id.clone() else {
            return Ok(Err(MessageError::Invalid(
                "the run is about no contact (its event has no contact id)".to_owned(),
            )));
        };
        if let Err(error) = check_draft(&draft) {
            return Ok(Err(error));
        }
        self.charge(Quota::Messages)?;
        let message_id = format!("msg_{}.{}", self.meta.run_id, self.counters.messages);
        let redactor = crate::redact::Redactor::new(self.secrets.values());
        let redact = |text: String| redactor.redact(&text);
        let message = PlatformMessage {
            message_id: message_id.clone(),
            run_id: self.meta.run_id,
            kind: draft.kind,
            contact,
            text: redact(draft.text),
            to: draft
                .to
                .filter(|_| draft.kind == MessageKind::Notify)
                .map(redact),
            service: draft
                .service
                .filter(|_| draft.kind == MessageKind::Handoff)
                .map(redact),
        };
        self.charge_record(message.size())?;
        self.journal.record(Effect::SendMessage(message));
        Ok(Ok(message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(kind: MessageKind, text: &str) -> MessageDraft {
        MessageDraft {
            kind,
            text: text.to_owned(),
            to: None,
            service: None,
        }
    }

    #[test]
    fn each_kind_needs_its_parts() {
        assert!(check_draft(&draft(MessageKind::Reply, "Olá")).is_ok());
        assert!(check_draft(&draft(MessageKind::Reply, "  ")).is_err());
        assert!(check_draft(&draft(MessageKind::Notify, "Ana is stuck")).is_err());
        let mut notify = draft(MessageKind::Notify, "Ana is stuck");
        notify.to = Some("owner".to_owned());
        assert!(check_draft(&notify).is_ok());
        notify.to = Some("own\ner".to_owned());
        assert!(check_draft(&notify).is_err());
        let mut handoff = draft(MessageKind::Handoff, "");
        assert!(
            check_draft(&handoff).is_err(),
            "a handoff names its service"
        );
        handoff.service = Some("support".to_owned());
        assert!(
            check_draft(&handoff).is_ok(),
            "a handoff's note may be empty"
        );
        assert!(check_draft(&draft(MessageKind::Reply, &"ç".repeat(MAX_TEXT_CHARS))).is_ok());
        assert!(check_draft(&draft(MessageKind::Reply, &"x".repeat(MAX_TEXT_CHARS + 1))).is_err());
        assert!(check_draft(&draft(MessageKind::Reply, "a\0b")).is_err());
    }
}

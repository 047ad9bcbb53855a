//! Platform messages — replies into a conversation, notifications to a platform user,
//! handoffs — leave the outbox through a [`Conversation`]: the embedding platform's own
//! delivery, or the server's default, [`super::PlatformWebhooks`], which posts each as a
//! signed Standard Webhooks event to the tenant's endpoints.

use fluxo_core::{PlatformMessage, TenantId};
use fluxo_store::BoxFuture;

use super::SendError;

/// The platform's side of a conversation: delivers what a run committed. Called at
/// least once per message (a delivery cut short is tried again after its lease, with the
/// same `message_id`), so an implementation deduplicates on the id.
pub trait Conversation: Send + Sync {
    /// Delivers `message` of `tenant`, queued at `queued_ms` (milliseconds since the
    /// Unix epoch).
    ///
    /// # Errors
    /// [`SendError::Transient`] to be tried again on the webhook backoff schedule,
    /// [`SendError::Permanent`] to give the message up (the outbox row keeps why).
    fn deliver<'a>(
        &'a self,
        tenant: &'a TenantId,
        message: &'a PlatformMessage,
        queued_ms: i64,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// The event type of a message: `conversation.reply`, `conversation.notify`,
/// `conversation.handoff`.
#[must_use]
pub fn event_type(message: &PlatformMessage) -> String {
    format!("conversation.{}", message.kind.as_str())
}

/// The Standard Webhooks body of `tenant`'s message: `{"type", "timestamp", "data"}`
/// with the message and the tenant as `data`, and its `webhook-id` (the message's id,
/// the same on every attempt).
#[must_use]
pub fn webhook_message(
    tenant: &TenantId,
    message: &PlatformMessage,
    queued_ms: i64,
) -> (String, String, i64) {
    super::platform_webhooks::tenant_event(
        &event_type(message),
        &message.message_id,
        message,
        tenant,
        queued_ms,
    )
}

#[cfg(test)]
mod tests {
    use fluxo_core::{ContactId, MessageKind};

    use super::*;

    #[test]
    fn a_message_is_a_standard_webhooks_event_keyed_by_its_id() {
        let message = PlatformMessage {
            message_id: "msg_r1.2".to_owned(),
            run_id: fluxo_core::RunId::new(),
            kind: MessageKind::Handoff,
            contact: ContactId::parse("c1").unwrap(),
            text: String::new(),
            to: None,
            service: Some("support".to_owned()),
        };
        let tenant = TenantId::parse("acme").unwrap();
        let (id, body, seconds) = webhook_message(&tenant, &message, 1_700_000_000_123);
        assert_eq!((id.as_str(), seconds), ("msg_r1.2", 1_700_000_000));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "conversation.handoff");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(body["data"]["service"], "support");
        assert_eq!(body["data"]["contact"], "c1");
        assert_eq!(body["data"]["type"], "handoff");
        assert_eq!(body["data"]["tenant"], "acme");
        assert_eq!(body["data"]["run_id"], message.run_id.to_string());
    }
}

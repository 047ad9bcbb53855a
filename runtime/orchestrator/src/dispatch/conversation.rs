//! Platform messages — replies into a conversation, notifications to a platform user,
//! handoffs — leave the outbox through a [`Conversation`]: the embedding platform's own
//! delivery, or the server's default, [`WebhookConversation`], which posts each as a
//! signed Standard Webhooks event to the tenant's endpoints.

use std::sync::Arc;

use fluxo_core::{PlatformMessage, TenantId};
use fluxo_store::{BoxFuture, Store, WebhookMessage};

use super::SendError;
use super::webhook::{Delivered, WebhookSender};

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

/// The Standard Webhooks body of a message: `{"type", "timestamp", "data"}` with the
/// message as `data`, and its `webhook-id` (the message's id, the same on every
/// attempt).
#[must_use]
pub fn webhook_message(message: &PlatformMessage, queued_ms: i64) -> (String, String, i64) {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(queued_ms).unwrap_or(0));
    let body = serde_json::json!({
        "type": event_type(message),
        "timestamp": humantime::format_rfc3339_millis(time).to_string(),
        "data": message,
    });
    (
        message.message_id.clone(),
        body.to_string(),
        queued_ms.div_euclid(1000),
    )
}

/// Delivers messages as signed webhooks to every enabled endpoint of the tenant, the
/// same way completion events go (egress rules, signatures, 410 disables an endpoint).
///
/// A message is delivered when every enabled endpoint accepted it; when one fails
/// transiently, the next attempt sends to all again with the same `webhook-id`, which
/// Standard Webhooks receivers deduplicate. A tenant with no enabled endpoint keeps its
/// messages queued (tried again on the schedule) until one is added.
pub struct WebhookConversation {
    sender: Arc<WebhookSender>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for WebhookConversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConversation")
            .finish_non_exhaustive()
    }
}

impl WebhookConversation {
    /// Delivers through `sender` to the endpoints `store` lists.
    #[must_use]
    pub fn new(sender: Arc<WebhookSender>, store: Arc<dyn Store>) -> Self {
        Self { sender, store }
    }

    async fn deliver_all(
        &self,
        tenant: &TenantId,
        message: &PlatformMessage,
        queued_ms: i64,
    ) -> Result<(), SendError> {
        let endpoints = self
            .store
            .endpoints(tenant)
            .await
            .map_err(|error| SendError::Transient(error.to_string()))?;
        let enabled: Vec<_> = endpoints.into_iter().filter(|e| e.enabled).collect();
        if enabled.is_empty() {
            return Err(SendError::Transient(
                "the tenant has no enabled webhook endpoint to deliver conversation messages to"
                    .to_owned(),
            ));
        }
        let (webhook_id, body, timestamp) = webhook_message(message, queued_ms);
        let mut failure = None;
        for endpoint in enabled {
            let webhook = WebhookMessage {
                endpoint: endpoint.id.clone(),
                webhook_id: webhook_id.clone(),
                body: body.clone(),
                timestamp,
            };
            match self.sender.send(tenant, &webhook).await {
                Ok(Delivered::Accepted) => {}
                Ok(Delivered::Gone) => {
                    if let Err(error) = self
                        .store
                        .disable_endpoint(tenant, &endpoint.id, "the endpoint answered 410 Gone")
                        .await
                    {
                        tracing::warn!(%error, endpoint = %endpoint.id, "could not disable a gone endpoint");
                    }
                }
                Err(error) => {
                    let error = match error {
                        SendError::Transient(why) => {
                            SendError::Transient(format!("{}: {why}", endpoint.id))
                        }
                        SendError::Permanent(why) => {
                            SendError::Permanent(format!("{}: {why}", endpoint.id))
                        }
                    };
                    // A transient failure anywhere makes the message worth trying again.
                    if !matches!(failure, Some(SendError::Transient(_))) {
                        failure = Some(error);
                    }
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl Conversation for WebhookConversation {
    fn deliver<'a>(
        &'a self,
        tenant: &'a TenantId,
        message: &'a PlatformMessage,
        queued_ms: i64,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver_all(tenant, message, queued_ms))
    }
}

#[cfg(test)]
mod tests {
    use fluxo_core::{ContactId, MessageKind};

    use super::*;

    #[test]
    fn a_message_is_a_standard_webhooks_event_keyed_by_its_id() {
        let message = PlatformMessage {
            message_id: "msg_r1.2".to_owned(),
            kind: MessageKind::Handoff,
            contact: ContactId::parse("c1").unwrap(),
            text: String::new(),
            to: None,
            service: Some("support".to_owned()),
        };
        let (id, body, seconds) = webhook_message(&message, 1_700_000_000_123);
        assert_eq!((id.as_str(), seconds), ("msg_r1.2", 1_700_000_000));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "conversation.handoff");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(body["data"]["service"], "support");
        assert_eq!(body["data"]["contact"], "c1");
        assert_eq!(body["data"]["type"], "handoff");
    }
}

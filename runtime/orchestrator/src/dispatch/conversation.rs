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

/// The Standard Webhooks body of `tenant`'s message: `{"type", "timestamp", "data"}`
/// with the message and the tenant as `data`, and its `webhook-id` (the message's id,
/// the same on every attempt).
#[must_use]
pub fn webhook_message(
    tenant: &TenantId,
    message: &PlatformMessage,
    queued_ms: i64,
) -> (String, String, i64) {
    let mut data = serde_json::to_value(message).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.insert("tenant".to_owned(), serde_json::json!(tenant));
    }
    (
        message.message_id.clone(),
        fluxo_store::webhook::event_body(&event_type(message), &data, queued_ms),
        queued_ms.div_euclid(1000),
    )
}

/// Delivers messages as signed webhooks to every enabled endpoint of the tenant, at
/// once, the same way completion events go (egress rules, signatures, 410 disables an
/// endpoint).
///
/// The outcome of one attempt, over the endpoints:
/// - any transient failure (timeout, connection, 408/425/429, 5xx): tried again later,
///   to every endpoint, with the same `webhook-id`, which Standard Webhooks receivers
///   deduplicate;
/// - else, at least one endpoint accepted (2xx): delivered; another endpoint's refusal
///   (other 4xx) is logged;
/// - else (no endpoint, or all gone or refusing): tried again later while the schedule
///   lasts, so a tenant adding an endpoint still gets recent messages, then failed with
///   the reasons.
///
/// An endpoint deleted or disabled between the listing and its send is skipped.
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

/// What one endpoint made of an attempt.
enum Answer {
    Accepted,
    Skipped,
    Gone,
    Refused(String),
    Transient(String),
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
        let (webhook_id, body, timestamp) = webhook_message(tenant, message, queued_ms);
        let mut sends = tokio::task::JoinSet::new();
        for endpoint in endpoints.into_iter().filter(|e| e.enabled) {
            let webhook = WebhookMessage {
                endpoint: endpoint.id,
                webhook_id: webhook_id.clone(),
                body: body.clone(),
                timestamp,
            };
            let (sender, store, tenant) = (self.sender.clone(), self.store.clone(), tenant.clone());
            sends.spawn(async move {
                let answer = match sender.send(&tenant, &webhook).await {
                    Ok(Delivered::Accepted) => Answer::Accepted,
                    // Deleted or disabled since the listing: not this message's concern.
                    Ok(Delivered::Unavailable(_)) => Answer::Skipped,
                    Ok(Delivered::Gone) => {
                        if let Err(error) = store
                            .disable_endpoint(&tenant, &webhook.endpoint, "the endpoint answered 410 Gone")
                            .await
                        {
                            tracing::warn!(%error, endpoint = %webhook.endpoint, "could not disable a gone endpoint");
                        }
                        Answer::Gone
                    }
                    Err(SendError::Transient(why)) => Answer::Transient(why),
                    Err(SendError::Permanent(why)) => Answer::Refused(why),
                };
                (webhook.endpoint, answer)
            });
        }
        let mut accepted = 0;
        let mut transient = Vec::new();
        let mut refused = Vec::new();
        while let Some(done) = sends.join_next().await {
            let Ok((endpoint, answer)) = done else {
                transient.push("a delivery task failed".to_owned());
                continue;
            };
            match answer {
                Answer::Accepted => accepted += 1,
                Answer::Skipped => {}
                Answer::Gone => refused.push(format!("{endpoint}: gone (410), disabled")),
                Answer::Refused(why) => refused.push(format!("{endpoint}: {why}")),
                Answer::Transient(why) => transient.push(format!("{endpoint}: {why}")),
            }
        }
        if !transient.is_empty() {
            return Err(SendError::Transient(transient.join("; ")));
        }
        if accepted > 0 {
            if !refused.is_empty() {
                tracing::warn!(tenant = %tenant, message = %message.message_id, refused = %refused.join("; "), "a conversation message was refused by some endpoints");
            }
            return Ok(());
        }
        let why = if refused.is_empty() {
            "the tenant has no enabled webhook endpoint to deliver conversation messages to"
                .to_owned()
        } else {
            format!("no endpoint accepted it: {}", refused.join("; "))
        };
        Err(SendError::Transient(why))
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

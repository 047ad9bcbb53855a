//! The server's default platform side: platform messages and contact updates as signed
//! Standard Webhooks events to the tenant's endpoints.

use std::sync::Arc;

use fluxo_core::{PlatformMessage, TenantId};
use fluxo_store::{BoxFuture, ContactUpdate, Store, WebhookMessage};

use super::webhook::{Delivered, WebhookSender};
use super::{ContactSync, Conversation, SendError, contact_sync, conversation};

/// The server's platform side: delivers platform messages ([`Conversation`]) and contact
/// updates ([`ContactSync`]) as signed Standard Webhooks events (`conversation.*`,
/// `contact.updated`) to every enabled endpoint of the tenant, at once, the same way
/// completion events go (egress rules, signatures, 410 disables an endpoint).
///
/// The outcome of one attempt, over the endpoints:
/// - any transient failure (timeout, connection, 408/425/429, 5xx): tried again later,
///   to every endpoint, with the same `webhook-id`, which Standard Webhooks receivers
///   deduplicate;
/// - else, at least one endpoint accepted (2xx): delivered; another endpoint's refusal
///   (other 4xx) is logged;
/// - else (no endpoint, or all gone or refusing): tried again later while the schedule
///   lasts, so a tenant adding an endpoint still gets recent events, then failed with
///   the reasons.
///
/// An endpoint deleted or disabled between the listing and its send is skipped.
pub struct PlatformWebhooks {
    sender: Arc<WebhookSender>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for PlatformWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformWebhooks").finish_non_exhaustive()
    }
}

/// A tenant's event as Standard Webhooks sends it: `(webhook-id, body, webhook-timestamp
/// in seconds)`. The body is `{"type": event_type, "timestamp", "data"}` with `payload`'s
/// fields and `"tenant"` as `data`; the timestamps are those of `queued_ms`
/// (milliseconds since the Unix epoch), so every attempt sends the same event.
#[must_use]
pub(crate) fn tenant_event<T: serde::Serialize>(
    event_type: &str,
    id: &str,
    payload: &T,
    tenant: &TenantId,
    queued_ms: i64,
) -> (String, String, i64) {
    let mut data = serde_json::to_value(payload).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.insert("tenant".to_owned(), serde_json::json!(tenant));
    }
    (
        id.to_owned(),
        fluxo_store::webhook::event_body(event_type, &data, queued_ms),
        queued_ms.div_euclid(1000),
    )
}

/// What one endpoint made of an attempt.
enum Answer {
    Accepted,
    Skipped,
    Gone,
    Refused(String),
    Transient(String),
}

impl PlatformWebhooks {
    /// Delivers through `sender` to the endpoints `store` lists.
    #[must_use]
    pub fn new(sender: Arc<WebhookSender>, store: Arc<dyn Store>) -> Self {
        Self { sender, store }
    }

    /// Sends one event (`what` names it in logs and errors) to every enabled endpoint.
    async fn fan_out(
        &self,
        tenant: &TenantId,
        (webhook_id, body, timestamp): (String, String, i64),
        what: &str,
    ) -> Result<(), SendError> {
        let endpoints = self
            .store
            .endpoints(tenant)
            .await
            .map_err(|error| SendError::Transient(error.to_string()))?;
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
                tracing::warn!(tenant = %tenant, event = %webhook_id, refused = %refused.join("; "), "{what} was refused by some endpoints");
            }
            return Ok(());
        }
        let why = if refused.is_empty() {
            format!("the tenant has no enabled webhook endpoint to deliver {what} to")
        } else {
            format!("no endpoint accepted it: {}", refused.join("; "))
        };
        Err(SendError::Transient(why))
    }
}

impl Conversation for PlatformWebhooks {
    fn deliver<'a>(
        &'a self,
        tenant: &'a TenantId,
        message: &'a PlatformMessage,
        queued_ms: i64,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        let event = conversation::webhook_message(tenant, message, queued_ms);
        Box::pin(self.fan_out(tenant, event, "a conversation message"))
    }
}

impl ContactSync for PlatformWebhooks {
    fn update<'a>(
        &'a self,
        tenant: &'a TenantId,
        update: &'a ContactUpdate,
        queued_ms: i64,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        let event = contact_sync::webhook_message(tenant, update, queued_ms);
        Box::pin(self.fan_out(tenant, event, "a contact update"))
    }
}

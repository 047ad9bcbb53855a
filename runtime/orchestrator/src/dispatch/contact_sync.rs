//! Contact updates — a run's field and tag changes on a contact the platform owns — leave
//! the outbox through a [`ContactSync`]: the embedding platform's own, or the server's
//! default, [`super::PlatformWebhooks`], which posts each as a signed Standard Webhooks
//! `contact.updated` event to the tenant's endpoints.

use fluxo_core::TenantId;
use fluxo_store::{BoxFuture, ContactUpdate};

use super::SendError;

/// The platform's side of the contacts it owns: applies what a run committed. Called at
/// least once per update (a delivery cut short is tried again after its lease, with the
/// same `update_id`), so an implementation deduplicates on the id. The updates of one
/// contact that one claim takes come in commit order; one retried later may come after
/// a newer one, so an implementation applies each change only when its update's
/// `sequence` is above that of the last update that changed the same field or tag
/// (never skipping a whole update: see [`ContactUpdate`]).
pub trait ContactSync: Send + Sync {
    /// Applies `update` of `tenant`'s contact, committed at `queued_ms` (milliseconds
    /// since the Unix epoch).
    ///
    /// # Errors
    /// [`SendError::Transient`] to be tried again on the webhook backoff schedule,
    /// [`SendError::Permanent`] to give the update up (the outbox row keeps why).
    fn update<'a>(
        &'a self,
        tenant: &'a TenantId,
        update: &'a ContactUpdate,
        queued_ms: i64,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// The event type of every contact update.
pub const EVENT_TYPE: &str = "contact.updated";

/// The Standard Webhooks body of `tenant`'s update: `{"type": "contact.updated",
/// "timestamp", "data"}` with the update (`update_id`, `run_id`, `contact`, `sequence`,
/// `changes`: `{"kind": "set_field", "name", "value"}`, `{"kind": "add_tag", "tag"}`,
/// `{"kind": "remove_tag", "tag"}`) and the tenant as `data`, and its `webhook-id` (the
/// update's id, the same on every attempt).
#[must_use]
pub fn webhook_message(
    tenant: &TenantId,
    update: &ContactUpdate,
    queued_ms: i64,
) -> (String, String, i64) {
    super::platform_webhooks::tenant_event(EVENT_TYPE, &update.update_id, update, tenant, queued_ms)
}

#[cfg(test)]
mod tests {
    use fluxo_core::{ContactId, Effect, RunId};
    use fluxo_store::ContactChange;

    use super::*;

    #[test]
    fn an_update_is_a_standard_webhooks_event_keyed_by_its_id() {
        let run = RunId::new();
        let contact = ContactId::parse("c1").unwrap();
        let effects = [
            Effect::SetState {
                scope: fluxo_core::StateScope::Tenant,
                key: "k".into(),
                value: fluxo_core::Bytes(vec![1]),
                ttl_seconds: None,
            },
            Effect::SetField {
                name: "stage".into(),
                value: "won".into(),
            },
            Effect::RemoveTag { tag: "lead".into() },
        ];
        let update = ContactUpdate::new(run, 7, contact, 3, ContactChange::of(&effects));
        let tenant = TenantId::parse("acme").unwrap();
        let (id, body, seconds) = webhook_message(&tenant, &update, 1_700_000_000_123);
        assert_eq!((id, seconds), (format!("cu_{run}.7"), 1_700_000_000));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "contact.updated");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(body["data"]["tenant"], "acme");
        assert_eq!(body["data"]["contact"], "c1");
        assert_eq!(body["data"]["run_id"], run.to_string());
        assert_eq!(body["data"]["sequence"], 3);
        assert_eq!(
            body["data"]["changes"],
            serde_json::json!([
                {"kind": "set_field", "name": "stage", "value": "won"},
                {"kind": "remove_tag", "tag": "lead"},
            ]),
            "state is not the contact's: only fields and tags, in order"
        );
        assert!(ContactChange::of(&effects[..1]).is_empty());
    }
}

//! Dispatchers: the loop that claims due outbox rows and delivers them — e-mails over
//! SMTP, completion webhooks over HTTP, platform messages through the embedder's
//! [`Conversation`], contact updates through its [`ContactSync`] — with bounded
//! concurrency (one slow relay or
//! endpoint does not hold the others), each row claimed first (so two loops, in two
//! processes or on two nodes, never send the same row), and every attempt recorded with
//! its result.

pub mod contact_sync;
pub mod conversation;
pub mod platform_webhooks;
pub mod smtp;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use fluxo_store::{OutboxItem, OutboxKind, OutboxPayload, Settlement, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use self::contact_sync::ContactSync;
pub use self::conversation::Conversation;
pub use self::platform_webhooks::PlatformWebhooks;
use self::smtp::SmtpTransport;
use self::webhook::{Delivered, WebhookSender};
use crate::metrics::Metrics;

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a 4xx SMTP reply, a dropped connection, a timeout, a 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Not worth retrying: a 5xx SMTP reply, a refused address, a 4xx endpoint answer.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// When to try again after `attempts` failed attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Delays after the 1st, 2nd, … failure; past the end the row fails for good.
    pub schedule: Vec<Duration>,
}

impl Backoff {
    /// E-mail: 8 attempts over about an hour (5 s doubling, capped at 10 min).
    #[must_use]
    pub fn email() -> Self {
        let schedule = (0..7)
            .map(|n| Duration::from_secs((5u64 << n).min(600)))
            .collect();
        Self { schedule }
    }

    /// Webhooks: the Standard Webhooks retry schedule stretched to about three days
    /// (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h).
    #[must_use]
    pub fn webhook() -> Self {
        let schedule = [5, 300, 1800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        Self { schedule }
    }

    /// Platform messages: 7 attempts over about 1 h 45 min (5 s, 30 s, 2 min, 10 min,
    /// 30 min, 1 h), then failed: a chat reply delivered hours late does more harm than
    /// one never sent, so messages do not wait the webhooks' three days.
    #[must_use]
    pub fn message() -> Self {
        let schedule = [5, 30, 120, 600, 1_800, 3_600]
            .into_iter()
            .map(Duration::from_secs)
            .collect();
        Self { schedule }
    }

    /// The delay after `attempts` failed attempts, with up to 10 % jitter (a random draw
    /// in `[0, 1)`), or `None` when the schedule is over.
    #[must_use]
    pub fn after(&self, attempts: u32, unit: f64) -> Option<Duration> {
        let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let base = *self.schedule.get(index)?;
        Some(base.mul_f64(1.0 + unit.clamp(0.0, 1.0) / 10.0))
    }
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// This node's name (in claims).
    pub node: String,
    /// Rows claimed per pass.
    pub batch: u32,
    /// How long a claim lasts before another loop may take the row over.
    pub lease: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Pause when nothing is due.
    pub poll: Duration,
    /// When a failed e-mail is tried again.
    pub email_backoff: Backoff,
    /// When a failed webhook is tried again.
    pub webhook_backoff: Backoff,
    /// When a platform message that was not delivered is tried again.
    pub message_backoff: Backoff,
    /// When a contact update that was not delivered is tried again: the webhooks'
    /// three days by default (a late update is still the contact's truth, unlike a late
    /// chat reply).
    pub contact_update_backoff: Backoff,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            node: "local".to_owned(),
            batch: 32,
            lease: Duration::from_secs(120),
            concurrency: 8,
            poll: Duration::from_millis(500),
            email_backoff: Backoff::email(),
            webhook_backoff: Backoff::webhook(),
            message_backoff: Backoff::message(),
            contact_update_backoff: Backoff::webhook(),
        }
    }
}

/// What one lane's delivery did: each row tried (its settlement, `None` when the claim
/// was lost or the result not recorded), and how many rows went back untried.
#[derive(Debug, Default)]
struct Lane {
    settled: Vec<Option<Settlement>>,
    released: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassStats {
    /// Rows delivered.
    pub sent: u32,
    /// Rows scheduled for another attempt.
    pub retried: u32,
    /// Rows given up.
    pub failed: u32,
    /// Rows given back untried (behind a message of their conversation that was not
    /// sent), due again with it.
    pub released: u32,
}

/// Delivers the outbox.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    email: Option<Arc<SmtpTransport>>,
    webhooks: Option<Arc<WebhookSender>>,
    conversation: Option<Arc<dyn Conversation>>,
    contact_sync: Option<Arc<dyn ContactSync>>,
    options: DispatchOptions,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher of `store`'s outbox: e-mails when `email` is given (otherwise they
    /// wait in the outbox), webhooks when `webhooks` is.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        email: Option<SmtpTransport>,
        webhooks: Option<Arc<WebhookSender>>,
        options: DispatchOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            metrics,
            store,
            email: email.map(Arc::new),
            webhooks,
            conversation: None,
            contact_sync: None,
            slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
            options,
        }
    }

    /// Delivers platform messages (replies, notifications, handoffs) through
    /// `conversation`; without one they wait in the outbox.
    #[must_use]
    pub fn with_conversation(mut self, conversation: Arc<dyn Conversation>) -> Self {
        self.conversation = Some(conversation);
        self
    }

    /// Delivers contact updates (the changes runs made to contacts the platform owns)
    /// through `sync`; without one they wait in the outbox.
    #[must_use]
    pub fn with_contact_sync(mut self, sync: Arc<dyn ContactSync>) -> Self {
        self.contact_sync = Some(sync);
        self
    }

    fn kinds(&self) -> Vec<OutboxKind> {
        let mut kinds = Vec::new();
        if self.email.is_some() {
            kinds.push(OutboxKind::Email);
        }
        if self.webhooks.is_some() {
            kinds.push(OutboxKind::Webhook);
        }
        if self.conversation.is_some() {
            kinds.push(OutboxKind::Message);
        }
        if self.contact_sync.is_some() {
            kinds.push(OutboxKind::ContactUpdate);
        }
        kinds
    }

    /// Claims what is due and delivers it, waiting for every delivery of the pass.
    ///
    /// # Errors
    /// When the store fails to claim.
    pub async fn pass(&self) -> Result<PassStats, fluxo_store::StoreError> {
        let kinds = self.kinds();
        if kinds.is_empty() {
            return Ok(PassStats::default());
        }
        let lease_ms = u64::try_from(self.options.lease.as_millis()).unwrap_or(u64::MAX);
        let items = self
            .store
            .claim_due(&self.options.node, &kinds, self.options.batch, lease_ms)
            .await?;
        let claimed_at = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in lanes(items) {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tasks.spawn(async move {
                let outcomes = this.deliver_lane(lane, claimed_at).await;
                drop(permit);
                outcomes
            });
        }
        let mut stats = PassStats::default();
        while let Some(done) = tasks.join_next().await {
            let lane = done.unwrap_or_default();
            stats.released = stats
                .released
                .saturating_add(u32::try_from(lane.released).unwrap_or(u32::MAX));
            for outcome in lane.settled {
                match outcome {
                    Some(Settlement::Sent) => stats.sent += 1,
                    Some(Settlement::Retry { .. }) => stats.retried += 1,
                    Some(Settlement::Failed { .. }) => stats.failed += 1,
                    None => {}
                }
            }
        }
        Ok(stats)
    }

    /// Delivers a lane's rows one after the other, in order.
    /// - After a row that failed (retried later, or for good), the rows left go back to
    ///   the queue untried, all in one transaction ([`fluxo_store::Outbox::release_rows`]),
    ///   due when the failed row is tried again (or now): a message does not overtake
    ///   the one before it, and the rest come back together.
    /// - Once half the claim's lease has passed since `claimed_at`, the rows left go
    ///   back the same way, due now (a row is never sent after its claim could have been
    ///   taken over).
    /// - When a row's result could not be recorded (it may have been sent), the rows
    ///   left stay claimed until the lease ends, when that row is claimed again first.
    async fn deliver_lane(&self, lane: Vec<OutboxItem>, claimed_at: std::time::Instant) -> Lane {
        let mut done = Lane::default();
        let mut rows = lane.into_iter();
        let mut release_at = None;
        for item in rows.by_ref() {
            if claimed_at.elapsed() >= self.options.lease / 2 {
                release_at = Some((fluxo_store::now_ms(), Some(item)));
                break;
            }
            let outcome = self.deliver(item).await;
            done.settled.push(outcome.clone());
            match outcome {
                Some(Settlement::Sent) => {}
                Some(Settlement::Retry { at_ms, .. }) => {
                    release_at = Some((at_ms, None));
                    break;
                }
                Some(Settlement::Failed { .. }) => {
                    release_at = Some((fluxo_store::now_ms(), None));
                    break;
                }
                None => return done,
            }
        }
        if let Some((at_ms, current)) = release_at {
            let left: Vec<(i64, u64)> = current
                .into_iter()
                .chain(rows)
                .map(|item| (item.id, item.claim))
                .collect();
            if !left.is_empty() {
                match self.store.release_rows(&left, at_ms).await {
                    Ok(count) => done.released = count,
                    Err(error) => {
                        tracing::warn!(%error, rows = left.len(), "could not give rows back; they are claimed again when their lease ends");
                    }
                }
            }
        }
        done
    }

    /// Delivers one claimed row and settles it; `None` when the claim was lost meanwhile.
    async fn deliver(&self, item: OutboxItem) -> Option<Settlement> {
        let attempts = item.attempts + 1;
        let (result, backoff) = match &item.payload {
            OutboxPayload::Email(email) => {
                let result = match configured(&self.email, "no SMTP server configured") {
                    Ok(transport) => transport.send(email).await.map(|()| Delivered::Accepted),
                    Err(error) => Err(error),
                };
                (result, &self.options.email_backoff)
            }
            OutboxPayload::Webhook(message) => {
                let result = match configured(&self.webhooks, "webhooks are not dispatched") {
                    Ok(sender) => sender.send(&item.tenant, message).await,
                    Err(error) => Err(error),
                };
                (result, &self.options.webhook_backoff)
            }
            OutboxPayload::Message(message) => {
                let result =
                    match configured(&self.conversation, "platform messages are not dispatched") {
                        Ok(side) => side.deliver(&item.tenant, message, item.created_ms).await,
                        Err(error) => Err(error),
                    };
                (
                    result.map(|()| Delivered::Accepted),
                    &self.options.message_backoff,
                )
            }
            OutboxPayload::ContactUpdate(update) => {
                let result =
                    match configured(&self.contact_sync, "contact updates are not dispatched") {
                        Ok(side) => side.update(&item.tenant, update, item.created_ms).await,
                        Err(error) => Err(error),
                    };
                (
                    result.map(|()| Delivered::Accepted),
                    &self.options.contact_update_backoff,
                )
            }
        };
        let settlement = match result {
            Ok(Delivered::Accepted) => Settlement::Sent,
            Ok(Delivered::Unavailable(error)) => Settlement::Failed { error },
            Ok(Delivered::Gone) => {
                if let OutboxPayload::Webhook(message) = &item.payload
                    && let Err(error) = self
                        .store
                        .disable_endpoint(
                            &item.tenant,
                            &message.endpoint,
                            "the endpoint answered 410 Gone",
                        )
                        .await
                {
                    tracing::warn!(%error, endpoint = %message.endpoint, "could not disable a gone endpoint");
                }
                Settlement::Failed {
                    error: "the endpoint answered 410 Gone; it was disabled".to_owned(),
                }
            }
            Err(SendError::Transient(error)) => match backoff.after(attempts, rand::random()) {
                Some(delay) => Settlement::Retry {
                    at_ms: fluxo_store::now_ms()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                    error,
                },
                None => Settlement::Failed { error },
            },
            Err(SendError::Permanent(error)) => Settlement::Failed { error },
        };
        let result = match &settlement {
            Settlement::Sent => "sent",
            Settlement::Retry { .. } => "retry",
            Settlement::Failed { .. } => "failed",
        };
        self.metrics
            .record_delivery(item.payload.kind().as_str(), result);
        if let Settlement::Failed { error } | Settlement::Retry { error, .. } = &settlement {
            tracing::info!(row = item.id, tenant = %item.tenant, attempts, %error, "delivery attempt failed");
        }
        match self
            .store
            .settle(item.id, item.claim, settlement.clone())
            .await
        {
            Ok(()) => Some(settlement),
            Err(error) => {
                tracing::warn!(row = item.id, %error, "could not record a delivery attempt");
                None
            }
        }
    }

    /// Runs passes until `stop` is cancelled; store errors are logged and retried after
    /// the poll interval.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let kinds = self.kinds();
            if kinds.is_empty() {
                stop.cancelled().await;
                return;
            }
            let lease_ms = u64::try_from(self.options.lease.as_millis()).unwrap_or(u64::MAX);
            let mut running = tokio::task::JoinSet::new();
            // Claims whenever a delivery slot is free, never waiting for a whole batch: a
            // slow endpoint holds its own slot, not everyone's.
            loop {
                while running.try_join_next().is_some() {}
                let free = self.slots.available_permits();
                if free == 0 {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        done = running.join_next() => if done.is_none() {
                            tokio::time::sleep(self.options.poll).await;
                        },
                    }
                    continue;
                }
                let max = u32::try_from(free)
                    .unwrap_or(u32::MAX)
                    .min(self.options.batch);
                let items = match self
                    .store
                    .claim_due(&self.options.node, &kinds, max, lease_ms)
                    .await
                {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::warn!(%error, "the outbox could not be claimed");
                        Vec::new()
                    }
                };
                if items.is_empty() {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(self.options.poll) => {}
                    }
                    continue;
                }
                let claimed_at = std::time::Instant::now();
                for lane in lanes(items) {
                    let Ok(permit) = self.slots.clone().acquire_owned().await else {
                        break;
                    };
                    let this = self.clone();
                    running.spawn(async move {
                        this.deliver_lane(lane, claimed_at).await;
                        drop(permit);
                    });
                }
            }
            // Deliveries under way get a moment; a row cut short is claimed again after
            // its lease (at least once, same Message-ID or webhook-id).
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while running.join_next().await.is_some() {}
            })
            .await;
        })
    }
}

/// Splits claimed rows into lanes delivered in parallel: the platform messages of one
/// conversation (tenant and contact) share a lane, and so do the contact updates of one
/// contact (a lane apart from its messages: a reply never waits behind an update's
/// retries, which run on the webhooks' three-day schedule), each in commit order (row
/// id: the order the runs made them — a handoff before the reply that follows it, a
/// field set before a later run's change of it); every other row is a lane of its own.
/// Order holds among the rows one claim takes (a run's rows commit together, so they
/// are due together, and a lane stops at its first failure); rows of one contact
/// claimed apart (a busy dispatcher claims only as many rows as it has free slots;
/// another node) and a row retried later may arrive out of order — an update's
/// `sequence` lets the receiver tell.
fn lanes(items: Vec<OutboxItem>) -> Vec<Vec<OutboxItem>> {
    let mut lanes: Vec<Vec<OutboxItem>> = Vec::new();
    let mut contacts: std::collections::HashMap<(OutboxKind, String, String), usize> =
        std::collections::HashMap::new();
    for item in items {
        let contact = match &item.payload {
            OutboxPayload::Message(message) => Some(&message.contact),
            OutboxPayload::ContactUpdate(update) => Some(&update.contact),
            OutboxPayload::Email(_) | OutboxPayload::Webhook(_) => None,
        };
        if let Some(contact) = contact {
            let key = (
                item.payload.kind(),
                item.tenant.to_string(),
                contact.to_string(),
            );
            if let Some(&lane) = contacts.get(&key) {
                if let Some(lane) = lanes.get_mut(lane) {
                    lane.push(item);
                }
                continue;
            }
            contacts.insert(key, lanes.len());
        }
        lanes.push(vec![item]);
    }
    // Claims hand rows out in no order a lane can rely on (SQLite: expired claims
    // first, then by due time; PostgreSQL: `UPDATE … RETURNING` in no set order): the
    // row id is commit order.
    for lane in &mut lanes {
        lane.sort_by_key(|item| item.id);
    }
    lanes
}

/// The delivery `side` of a row's kind, or a transient error (`missing` says why) when
/// this dispatcher has none: the row waits for a dispatcher that has one.
fn configured<'a, T: ?Sized>(side: &'a Option<Arc<T>>, missing: &str) -> Result<&'a T, SendError> {
    side.as_deref()
        .ok_or_else(|| SendError::Transient(missing.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, contact: &str) -> OutboxItem {
        OutboxItem {
            id,
            tenant: "acme".parse().unwrap(),
            payload: OutboxPayload::Message(fluxo_core::PlatformMessage {
                message_id: format!("msg_{id}"),
                run_id: fluxo_core::RunId::new(),
                kind: fluxo_core::MessageKind::Reply,
                contact: contact.parse().unwrap(),
                text: "hi".to_owned(),
                to: None,
                service: None,
            }),
            attempts: 0,
            claim: 1,
            created_ms: 0,
        }
    }

    fn update(id: i64, contact: &str) -> OutboxItem {
        let changes = vec![fluxo_store::ContactChange::AddTag { tag: "vip".into() }];
        OutboxItem {
            payload: OutboxPayload::ContactUpdate(fluxo_store::ContactUpdate::new(
                fluxo_core::RunId::new(),
                1,
                contact.parse().unwrap(),
                1,
                changes,
            )),
            ..message(id, "unused")
        }
    }

    #[test]
    fn one_contact_s_messages_and_its_updates_each_keep_a_lane_in_commit_order() {
        // Out of order, as a claim may hand them out.
        let lanes = lanes(vec![
            message(6, "c-1"),
            message(2, "c-1"),
            message(5, "c-2"),
            update(3, "c-1"),
            update(1, "c-1"),
            update(4, "c-3"),
        ]);
        let ids: Vec<Vec<i64>> = lanes
            .iter()
            .map(|lane| lane.iter().map(|item| item.id).collect())
            .collect();
        assert_eq!(ids, [vec![2, 6], vec![5], vec![1, 3], vec![4]]);
    }

    #[test]
    fn one_conversation_s_messages_share_a_lane_in_order() {
        let lanes = lanes(vec![
            message(1, "c-1"),
            message(2, "c-2"),
            message(3, "c-1"),
            message(4, "c-1"),
        ]);
        let ids: Vec<Vec<i64>> = lanes
            .iter()
            .map(|lane| lane.iter().map(|item| item.id).collect())
            .collect();
        assert_eq!(ids, [vec![1, 3, 4], vec![2]]);
    }

    #[test]
    fn schedules_end_and_jitter_a_little() {
        let email = Backoff::email();
        assert_eq!(email.after(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(email.after(3, 0.0), Some(Duration::from_secs(20)));
        assert_eq!(email.after(8, 0.0), None);
        let webhook = Backoff::webhook();
        let total: Duration = webhook.schedule.iter().sum();
        assert!(total > Duration::from_secs(2 * 86_400) && total < Duration::from_secs(4 * 86_400));
        let message: Duration = Backoff::message().schedule.iter().sum();
        assert!(
            message < Duration::from_secs(2 * 3_600),
            "a late reply is worse than none"
        );
        let jittered = webhook.after(2, 0.5).unwrap();
        assert!(jittered > Duration::from_secs(300) && jittered <= Duration::from_secs(330));
    }
}

//! The durable e-mail outbox: committed e-mails are rows; the delivery loop
//! ([`crate::delivery`]) sends them and records the result on each row.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{SqliteStore, StoreError, now_ms};
use crate::host::email::Mailer;
use crate::host::{BackendError, BoxFuture};
use crate::journal::OutgoingEmail;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for (another) delivery attempt.
    Queued,
    /// Accepted by the SMTP server.
    Sent,
    /// Refused for good (5xx) or out of attempts; `last_error` says why.
    Failed,
}

/// One message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxMessage {
    /// The row id.
    pub id: i64,
    /// The tenant whose run sent it.
    pub tenant: String,
    /// The message.
    pub email: OutgoingEmail,
    /// Its status.
    pub status: OutboxStatus,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last failure (the server's reply for SMTP errors).
    pub last_error: Option<String>,
}

/// [`Mailer`] that commits e-mails to the embedded store; idempotent on the Message-ID.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    store: SqliteStore,
}

fn status_text(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Queued => "queued",
        OutboxStatus::Sent => "sent",
        OutboxStatus::Failed => "failed",
    }
}

fn row_to_message(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, u32, Option<String>)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn decode(
    (id, tenant, payload, status, attempts, last_error): (
        i64,
        String,
        String,
        String,
        u32,
        Option<String>,
    ),
) -> Result<OutboxMessage, StoreError> {
    let email: OutgoingEmail = serde_json::from_str(&payload)
        .map_err(|error| StoreError::Task(format!("outbox row {id} is corrupt: {error}")))?;
    let status = match status.as_str() {
        "sent" => OutboxStatus::Sent,
        "failed" => OutboxStatus::Failed,
        _ => OutboxStatus::Queued,
    };
    Ok(OutboxMessage {
        id,
        tenant,
        email,
        status,
        attempts,
        last_error,
    })
}

const COLUMNS: &str = "id, tenant, payload, status, attempts, last_error";

impl SqliteOutbox {
    /// The outbox in `store`.
    #[must_use]
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    /// Queued messages whose next attempt is due, oldest first, at most `limit`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn due(&self, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        self.store
            .with(move |connection| {
                let mut statement = connection.prepare(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE status = 'queued' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms, id LIMIT ?2"
                ))?;
                let rows = statement.query_map(params![now_ms(), limit], row_to_message)?;
                rows.map(|row| decode(row?)).collect()
            })
            .await
    }

    /// Every message, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn messages(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        self.store
            .with(|connection| {
                let mut statement =
                    connection.prepare(&format!("SELECT {COLUMNS} FROM outbox ORDER BY id"))?;
                let rows = statement.query_map([], row_to_message)?;
                rows.map(|row| decode(row?)).collect()
            })
            .await
    }

    /// The message with `message_id`, if any.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn find(&self, message_id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let message_id = message_id.to_owned();
        self.store
            .with(move |connection| {
                connection
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM outbox WHERE message_id = ?1"),
                        params![message_id],
                        row_to_message,
                    )
                    .optional()?
                    .map(decode)
                    .transpose()
            })
            .await
    }

    /// Records an attempt's result: `status`, the error if any, and when to try next.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn record_attempt(
        &self,
        id: i64,
        status: OutboxStatus,
        error: Option<String>,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        self.store
            .with(move |connection| {
                connection.execute(
                    "UPDATE outbox SET status = ?2, attempts = attempts + 1, last_error = ?3,
                     next_attempt_ms = ?4, updated_ms = ?5 WHERE id = ?1",
                    params![id, status_text(status), error, next_attempt_ms, now_ms()],
                )?;
                Ok(())
            })
            .await
    }
}

impl Mailer for SqliteOutbox {
    fn deliver<'a>(
        &'a self,
        tenant: &'a str,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let tenant = tenant.to_owned();
        let email = email.clone();
        Box::pin(async move {
            let payload =
                serde_json::to_string(&email).map_err(|error| BackendError(error.to_string()))?;
            self.store
                .with(move |connection| {
                    let now = now_ms();
                    // A second commit of the same message (a retried apply) is a no-op.
                    connection.execute(
                        "INSERT INTO outbox (tenant, message_id, payload, status, next_attempt_ms, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, 'queued', ?4, ?4, ?4) ON CONFLICT (message_id) DO NOTHING",
                        params![tenant, email.message_id, payload, now],
                    )?;
                    Ok(())
                })
                .await
                .map_err(BackendError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(id: &str) -> OutgoingEmail {
        OutgoingEmail::sample(id)
    }

    #[tokio::test]
    async fn commits_are_idempotent_and_attempts_recorded() {
        let outbox = SqliteOutbox::new(SqliteStore::open_in_memory().unwrap());
        outbox.deliver("acme", &email("<1@fluxo>")).await.unwrap();
        outbox.deliver("acme", &email("<1@fluxo>")).await.unwrap();
        let due = outbox.due(10).await.unwrap();
        assert_eq!(due.len(), 1);
        outbox
            .record_attempt(
                due[0].id,
                OutboxStatus::Queued,
                Some("451 busy".into()),
                now_ms() + 60_000,
            )
            .await
            .unwrap();
        assert!(outbox.due(10).await.unwrap().is_empty(), "backed off");
        let message = outbox.find("<1@fluxo>").await.unwrap().unwrap();
        assert_eq!(
            (message.attempts, message.last_error.as_deref()),
            (1, Some("451 busy"))
        );
    }
}

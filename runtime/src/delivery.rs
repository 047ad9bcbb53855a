//! Delivers the durable outbox: sends due messages through a [`Transport`], retries
//! transient failures (4xx replies, connection errors) with exponential backoff and
//! jitter, and marks permanent ones (5xx) failed with the server's reply.
//!
//! Every message carries the stable Message-ID its run gave it, and a message is marked
//! sent only after the server accepted it: a crash between the two repeats the send with
//! the same Message-ID (at-least-once; receivers deduplicate on it).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::host::BoxFuture;
use crate::journal::OutgoingEmail;
use crate::store::outbox::{OutboxStatus, SqliteOutbox};
use crate::store::{StoreError, now_ms};

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a 4xx reply, a dropped connection, a timeout.
    #[error("transient: {0}")]
    Transient(String),
    /// Not worth retrying: a 5xx reply, an address the server refuses.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends one message.
pub trait Transport: Send + Sync + 'static {
    /// Sends `email` on behalf of `tenant`.
    fn send<'a>(
        &'a self,
        tenant: &'a str,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// SMTP through lettre: plain, STARTTLS or implicit TLS (rustls), with optional auth.
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// How to reach the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS) or
    /// `smtps://host:port` (implicit TLS).
    pub url: String,
    /// The sender, e.g. `Fluxo <no-reply@platform.example>`.
    pub from: String,
    /// SMTP user, if the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<String>,
    /// Time for one SMTP exchange.
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_smtp_timeout_ms() -> u64 {
    10_000
}

impl SmtpTransport {
    /// A transport for `config`.
    ///
    /// # Errors
    /// When the URL or the sender is malformed.
    pub fn new(config: &SmtpConfig) -> Result<Self, crate::Error> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| crate::Error::Config(format!("email.from: {error}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|error| crate::Error::Config(format!("email.url: {error}")))?
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    fn message(&self, email: &OutgoingEmail) -> Result<Message, SendError> {
        let address = |text: &String| {
            text.parse::<Mailbox>()
                .map_err(|error| SendError::Permanent(format!("address {text:?}: {error}")))
        };
        let mut builder = Message::builder()
            .message_id(Some(email.message_id.clone()))
            .from(self.from.clone())
            .subject(email.subject.clone());
        for to in &email.to {
            builder = builder.to(address(to)?);
        }
        for cc in &email.cc {
            builder = builder.cc(address(cc)?);
        }
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(address(reply_to)?);
        }
        let message = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.clone(),
            )),
            None => builder.body(email.text.clone()),
        };
        message.map_err(|error| SendError::Permanent(format!("building the message: {error}")))
    }
}

impl Transport for SmtpTransport {
    fn send<'a>(
        &'a self,
        _tenant: &'a str,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let message = self.message(email)?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
                Err(error) => Err(SendError::Transient(error.to_string())),
            }
        })
    }
}

/// Retry policy of the delivery loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Delay after the first failure; doubles each time.
    pub base_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
    /// Messages taken per pass.
    pub batch: u32,
    /// Pause between passes when nothing is due.
    pub poll_interval: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
            batch: 32,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl DeliveryPolicy {
    /// The delay after `attempts` failed attempts: exponential, capped, with up to 25 %
    /// jitter so retries of many messages spread out.
    #[must_use]
    pub fn backoff(&self, attempts: u32, jitter_seed: u64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        let delay = self
            .base_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let quarter = u64::try_from(delay.as_millis() / 4).unwrap_or(0);
        let jitter = if quarter == 0 {
            0
        } else {
            jitter_seed % quarter
        };
        delay + Duration::from_millis(jitter)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassStats {
    /// Messages accepted by the server.
    pub sent: u32,
    /// Messages scheduled for another attempt.
    pub retried: u32,
    /// Messages marked failed.
    pub failed: u32,
}

/// The delivery loop over an outbox.
#[derive(Clone)]
pub struct Delivery {
    outbox: SqliteOutbox,
    transport: Arc<dyn Transport>,
    policy: DeliveryPolicy,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Delivers `outbox` through `transport` under `policy`.
    pub fn new(
        outbox: SqliteOutbox,
        transport: Arc<dyn Transport>,
        policy: DeliveryPolicy,
    ) -> Self {
        Self {
            outbox,
            transport,
            policy,
        }
    }

    /// Sends every due message once.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn pass(&self) -> Result<PassStats, StoreError> {
        let mut stats = PassStats::default();
        for message in self.outbox.due(self.policy.batch).await? {
            let attempts = message.attempts + 1;
            match self.transport.send(&message.tenant, &message.email).await {
                Ok(()) => {
                    self.outbox
                        .record_attempt(message.id, OutboxStatus::Sent, None, 0)
                        .await?;
                    stats.sent += 1;
                }
                Err(SendError::Transient(reason)) if attempts < self.policy.max_attempts => {
                    let seed = u64::try_from(message.id)
                        .unwrap_or(0)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ u64::try_from(now_ms()).unwrap_or(0);
                    let delay = self.policy.backoff(attempts, seed);
                    let next = now_ms()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    self.outbox
                        .record_attempt(message.id, OutboxStatus::Queued, Some(reason), next)
                        .await?;
                    stats.retried += 1;
                }
                Err(SendError::Transient(reason) | SendError::Permanent(reason)) => {
                    self.outbox
                        .record_attempt(message.id, OutboxStatus::Failed, Some(reason), 0)
                        .await?;
                    stats.failed += 1;
                }
            }
        }
        Ok(stats)
    }

    /// Runs passes forever on the current tokio runtime; store errors are retried after
    /// the poll interval.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let busy = matches!(self.pass().await, Ok(stats) if stats.sent + stats.retried + stats.failed > 0);
                if !busy {
                    tokio::time::sleep(self.policy.poll_interval).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_a_quarter() {
        let policy = DeliveryPolicy {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..DeliveryPolicy::default()
        };
        assert_eq!(policy.backoff(1, 0), Duration::from_secs(1));
        assert_eq!(policy.backoff(3, 0), Duration::from_secs(4));
        assert_eq!(policy.backoff(30, 0), Duration::from_secs(10));
        let jittered = policy.backoff(2, 123_456);
        assert!(jittered >= Duration::from_secs(2) && jittered < Duration::from_millis(2500));
    }
}

//! `fluxo:action/email`: validated, journaled, and handed to a [`Mailer`] after success.
//!
//! Header injection is impossible by construction: addresses and the subject are refused
//! when they hold CR, LF or NUL, and addresses must be plain `local@domain`.

use std::sync::{Mutex, PoisonError};

use super::{BackendError, BoxFuture, RunState};
use crate::bindings::fluxo::action::email::{EmailError, EmailMessage, Host};
use crate::executor::limits::Quota;
use crate::journal::{Effect, OutgoingEmail};

/// Largest message (subject plus bodies).
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// Most recipients (to plus cc).
pub const MAX_RECIPIENTS: usize = 20;

/// Delivers committed e-mails. Called once per e-mail of a successful run; the
/// `message_id` is stable, so a delivery retried after a failure never duplicates.
pub trait Mailer: Send + Sync + 'static {
    /// Delivers (or durably queues) `email` for `tenant`.
    fn deliver<'a>(
        &'a self,
        tenant: &'a str,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// The default mailer: an in-memory outbox the embedder drains (and tests inspect).
#[derive(Debug, Default)]
pub struct Outbox {
    messages: Mutex<Vec<(String, OutgoingEmail)>>,
}

impl Outbox {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The queued messages with their tenant, oldest first.
    #[must_use]
    pub fn messages(&self) -> Vec<(String, OutgoingEmail)> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes every queued message out of the outbox.
    pub fn drain(&self) -> Vec<(String, OutgoingEmail)> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Mailer for Outbox {
    fn deliver<'a>(
        &'a self,
        tenant: &'a str,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
            // Idempotent on the Message-ID: a retried delivery is not a second message.
            if !messages
                .iter()
                .any(|(_, queued)| queued.message_id == email.message_id)
            {
                messages.push((tenant.to_owned(), email.clone()));
            }
            Ok(())
        })
    }
}

/// Checks one address: `local@domain`, printable ASCII or UTF-8 without spaces, angle
/// brackets, commas, quotes or control characters.
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "<>,;\"()[]\\".contains(c);
    let Some((local, domain)) = address.split_once('@') else {
        return Err(format!("{address:?} is not an address"));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || address.len() > 254
        || address.chars().any(forbidden)
    {
        return Err(format!("{address:?} is not an address"));
    }
    Ok(())
}

/// Checks a whole message; returns the reason it is refused.
pub(crate) fn check_message(message: &EmailMessage) -> Result<(), EmailError> {
    if message.to.is_empty() {
        return Err(EmailError::Invalid("no recipient".to_owned()));
    }
    if message.to.len() + message.cc.len() > MAX_RECIPIENTS {
        return Err(EmailError::Invalid(format!(
            "more than {MAX_RECIPIENTS} recipients"
        )));
    }
    for address in message
        .to
        .iter()
        .chain(&message.cc)
        .chain(&message.reply_to)
    {
        check_address(address).map_err(EmailError::Invalid)?;
    }
    if message
        .subject
        .chars()
        .any(|c| matches!(c, '\r' | '\n' | '\0'))
    {
        return Err(EmailError::Invalid(
            "line break or NUL in the subject".to_owned(),
        ));
    }
    let size =
        message.subject.len() + message.text.len() + message.html.as_ref().map_or(0, String::len);
    if size > MAX_MESSAGE_BYTES {
        return Err(EmailError::TooLarge);
    }
    Ok(())
}

impl Host for RunState {
    async fn send(
        &mut self,
        message: EmailMessage,
    ) -> wasmtime::Result<Result<String, EmailError>> {
        self.charge(Quota::Emails)?;
        if let Err(error) = check_message(&message) {
            return Ok(Err(error));
        }
        let message_id = format!("<{}.{}@fluxo>", self.run_id, self.counters.emails);
        self.journal.record(Effect::SendEmail(OutgoingEmail {
            message_id: message_id.clone(),
            to: message.to,
            cc: message.cc,
            subject: message.subject,
            text: message.text,
            html: message.html,
            reply_to: message.reply_to,
        }));
        Ok(Ok(message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, to: &str) -> EmailMessage {
        EmailMessage {
            to: vec![to.to_owned()],
            cc: Vec::new(),
            subject: subject.to_owned(),
            text: "body".to_owned(),
            html: None,
            reply_to: None,
        }
    }

    #[test]
    fn header_injection_is_refused() {
        assert!(check_message(&message("hello", "a@b.test")).is_ok());
        for (subject, to) in [
            ("hi\r\nBcc: x@y.test", "a@b.test"),
            ("hi\nX: y", "a@b.test"),
            ("hi\0", "a@b.test"),
            ("hi", "a@b.test\r\nBcc: x@y.test"),
            ("hi", "a@b.test, x@y.test"),
            ("hi", "Ana <a@b.test>"),
            ("hi", "nobody"),
            ("hi", "a@localhost"),
        ] {
            assert!(
                matches!(
                    check_message(&message(subject, to)),
                    Err(EmailError::Invalid(_))
                ),
                "{subject:?} {to:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_outbox_is_idempotent_on_message_id() {
        let outbox = Outbox::new();
        let email = OutgoingEmail::sample("<r.1@fluxo>");
        outbox.deliver("acme", &email).await.unwrap();
        outbox.deliver("acme", &email).await.unwrap();
        assert_eq!(outbox.messages().len(), 1);
    }
}

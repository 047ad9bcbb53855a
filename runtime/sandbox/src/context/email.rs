//! The e-mail capability: messages are validated and journaled; committed ones go out
//! through the outbox.
//!
//! Header injection is impossible by construction: addresses and the subject are refused
//! when they hold CR, LF or NUL, and addresses must be plain `local@domain`.

use fluxo_core::{Effect, OutgoingEmail, Quota};

use super::{CapResult, RunContext};

/// Largest message (subject plus bodies), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// Most recipients (to plus cc).
pub const MAX_RECIPIENTS: usize = 20;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmailMessage {
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Copy recipients.
    pub cc: Vec<String>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// An optional HTML body.
    pub html: Option<String>,
    /// An optional reply-to address.
    pub reply_to: Option<String>,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// The message is malformed: a bad address, a line break in a header, no recipient.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("too large")]
    TooLarge,
}

/// Checks one address: `local@domain`, printable ASCII or UTF-8 without spaces, angle
/// brackets, commas, quotes or control characters.
///
/// # Errors
/// The reason, naming the address.
pub fn check_address(address: &str) -> Result<(), String> {
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

/// Checks a whole message.
fn check_message(message: &EmailMessage) -> Result<(), EmailError> {
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
    if [Some(&message.text), message.html.as_ref()]
        .into_iter()
        .flatten()
        .any(|body| body.contains('\0'))
    {
        return Err(EmailError::Invalid("NUL in the body".to_owned()));
    }
    let size =
        message.subject.len() + message.text.len() + message.html.as_ref().map_or(0, String::len);
    if size > MAX_MESSAGE_BYTES {
        return Err(EmailError::TooLarge);
    }
    Ok(())
}

impl RunContext {
    /// Queues `message` in the journal; returns its Message-ID, `<RUN-ID.N@fluxo>` (N
    /// counts the run's e-mails from 1, across a workflow's steps).
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `emails` quota or the report budget.
    pub fn send_email(&mut self, message: EmailMessage) -> CapResult<String, EmailError> {
        self.charge(Quota::Emails)?;
        if let Err(error) = check_message(&message) {
            return Ok(Err(error));
        }
        let message_id = format!("<{}.{}@fluxo>", self.meta.run_id, self.counters.emails);
        let email = OutgoingEmail {
            message_id: message_id.clone(),
            to: message.to,
            cc: message.cc,
            subject: message.subject,
            text: message.text,
            html: message.html,
            reply_to: message.reply_to,
        };
        self.charge_record(email.size())?;
        self.journal.record(Effect::SendEmail(email));
        Ok(Ok(message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(subject: &str, to: &str) -> EmailMessage {
        EmailMessage {
            to: vec![to.to_owned()],
            subject: subject.to_owned(),
            text: "body".to_owned(),
            ..EmailMessage::default()
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
}

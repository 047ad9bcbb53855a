//! E-mail (WIT `fluxo:action/email`).
//!
//! A message is queued when [`Email::send`] returns and delivered by the platform only
//! if the run succeeds.
//!
//! ```no_run
//! use fluxo_sdk::prelude::*;
//!
//! # fn demo() -> fluxo_sdk::Result<()> {
//! let id = email::to("admin@shop.example")
//!     .subject("New lead")
//!     .text("Ana asked for a quote")
//!     .send()?;
//! # let _ = id;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use crate::{Error, Result, backend};

/// An e-mail message; build it with [`to`] and finish with [`Email::send`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Email {
    /// Recipients.
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

/// Starts a message to `address`.
pub fn to(address: impl Into<String>) -> Email {
    Email {
        to: vec![address.into()],
        ..Email::default()
    }
}

impl Email {
    /// Adds a recipient.
    #[must_use]
    pub fn to(mut self, address: impl Into<String>) -> Self {
        self.to.push(address.into());
        self
    }

    /// Adds a copy recipient.
    #[must_use]
    pub fn cc(mut self, address: impl Into<String>) -> Self {
        self.cc.push(address.into());
        self
    }

    /// Sets the subject.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Sets the plain-text body.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// Sets an HTML body.
    #[must_use]
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// Sets the reply-to address.
    #[must_use]
    pub fn reply_to(mut self, address: impl Into<String>) -> Self {
        self.reply_to = Some(address.into());
        self
    }

    /// Queues the message; returns its Message-ID.
    ///
    /// # Errors
    /// [`EmailError`] when the message is malformed or too large.
    pub fn send(self) -> Result<String> {
        backend::with(|host| host.email_send(&self)).map_err(Error::from)
    }
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailError {
    /// A bad address, a line break in a header, no recipient.
    Invalid(String),
    /// Larger than the host allows.
    TooLarge,
}

impl fmt::Display for EmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(reason) => write!(f, "invalid e-mail: {reason}"),
            Self::TooLarge => f.write_str("e-mail too large"),
        }
    }
}

impl std::error::Error for EmailError {}

impl From<EmailError> for Error {
    fn from(error: EmailError) -> Self {
        Error::new(error.to_string())
    }
}

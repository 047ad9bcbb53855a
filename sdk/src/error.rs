//! The one error type of an action.

use std::fmt;

/// What went wrong in an action. Every capability's error converts into it with `?`.
///
/// When the action returns it, the run fails, nothing the action recorded is applied, and
/// [`Error::is_retryable`] tells the scheduler whether running again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    retryable: bool,
}

impl Error {
    /// A failure that running again will not fix (bad input, a missing field, a 4xx).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// The step's input or the contact lacks something the action needs.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(message)
    }

    /// A transient failure (a 5xx upstream, a timeout): running again may succeed.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// The message recorded in the run report.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether running the action again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::new(format!("json: {error}"))
    }
}

/// The result type of actions and SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The tenant's secrets (WIT `fluxo:action/secrets`).
//!
//! The host redacts secret values from every record it writes: logs, HTTP exchanges,
//! errors and outputs.

use std::fmt;

use crate::{Error, Result, backend};

/// The value of the secret `name`.
///
/// # Errors
/// [`SecretError::NotFound`] when the tenant has no such secret.
pub fn get(name: &str) -> Result<String> {
    backend::with(|host| host.secret(name)).map_err(Error::from)
}

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The tenant has no secret with this name.
    NotFound(String),
    /// The name is malformed.
    Invalid(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(name) => write!(f, "secret {name:?} is not set"),
            Self::Invalid(reason) => write!(f, "invalid secret name: {reason}"),
        }
    }
}

impl std::error::Error for SecretError {}

impl From<SecretError> for Error {
    fn from(error: SecretError) -> Self {
        Error::new(error.to_string())
    }
}

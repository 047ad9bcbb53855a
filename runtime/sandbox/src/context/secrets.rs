//! The secrets capability: a tenant secret by name. Values never reach a record: the
//! run's [`crate::Redactor`] replaces them (and their encoded forms) everywhere.

use super::{RunContext, check_name};

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The tenant has no secret with this name.
    #[error("no such secret")]
    NotFound,
    /// The name is empty, too long or malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl RunContext {
    /// The value of the tenant's secret `name`.
    ///
    /// # Errors
    /// [`SecretError`] for a malformed or unknown name.
    pub fn secret(&self, name: &str) -> Result<String, SecretError> {
        check_name("secret name", name, 128).map_err(SecretError::Invalid)?;
        self.secrets
            .get(name)
            .map(str::to_owned)
            .ok_or(SecretError::NotFound)
    }
}

//! A small key-value store kept between runs (WIT `fluxo:action/state`).
//!
//! Keys are scoped to the tenant or to the run's contact. Writes are journaled: reads in
//! the run see them, and they are kept only when the run succeeds.
//!
//! ```no_run
//! use fluxo_sdk::prelude::*;
//!
//! # fn demo() -> fluxo_sdk::Result<()> {
//! let tries: u32 = state::get_json(Scope::Contact, "tries")?.unwrap_or(0);
//! state::set_json(Scope::Contact, "tries", &(tries + 1), Some(3600))?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result, backend};

/// Which keys a call sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Keys shared by every run of the tenant.
    Tenant,
    /// Keys of the run's contact only.
    Contact,
}

/// The bytes under `key`, or `None` when absent or expired.
///
/// # Errors
/// [`StateError`] for a bad key or an unreachable store.
pub fn get(scope: Scope, key: &str) -> Result<Option<Vec<u8>>> {
    backend::with(|host| host.state_get(scope, key)).map_err(Error::from)
}

/// Stores `value` under `key`, expiring after `ttl_seconds` when given.
///
/// # Errors
/// [`StateError`] for a bad key, an oversized value or an unreachable store.
pub fn set(scope: Scope, key: &str, value: &[u8], ttl_seconds: Option<u32>) -> Result<()> {
    backend::with(|host| host.state_set(scope, key, value, ttl_seconds)).map_err(Error::from)
}

/// Removes `key`; returns whether it was present.
///
/// # Errors
/// [`StateError`] for a bad key or an unreachable store.
pub fn delete(scope: Scope, key: &str) -> Result<bool> {
    backend::with(|host| host.state_delete(scope, key)).map_err(Error::from)
}

/// The JSON value under `key`, deserialized.
///
/// # Errors
/// As [`get`], or when the stored bytes are not JSON of that shape.
pub fn get_json<T: DeserializeOwned>(scope: Scope, key: &str) -> Result<Option<T>> {
    get(scope, key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
        .transpose()
}

/// Stores `value` as JSON under `key`.
///
/// # Errors
/// As [`set`].
pub fn set_json(
    scope: Scope,
    key: &str,
    value: &impl Serialize,
    ttl_seconds: Option<u32>,
) -> Result<()> {
    set(scope, key, &serde_json::to_vec(value)?, ttl_seconds)
}

/// Why a state call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key is empty, too long or malformed.
    Invalid(String),
    /// The value is larger than the host allows.
    TooLarge,
    /// The store could not be reached.
    Unavailable(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(reason) => write!(f, "invalid state key: {reason}"),
            Self::TooLarge => f.write_str("state value too large"),
            Self::Unavailable(reason) => write!(f, "state store unavailable: {reason}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for Error {
    fn from(error: StateError) -> Self {
        match error {
            StateError::Unavailable(_) => Error::retryable(error.to_string()),
            _ => Error::new(error.to_string()),
        }
    }
}

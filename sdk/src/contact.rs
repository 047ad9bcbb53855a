//! The run's contact: fields and tags (WIT `fluxo:action/contact`).
//!
//! Reads see the run's own writes at once; writes reach the platform only when the run
//! succeeds.
//!
//! ```no_run
//! use fluxo_sdk::prelude::*;
//!
//! # fn demo() -> fluxo_sdk::Result<()> {
//! if let Some(name) = contact::field("name").and_then(|v| v.as_text().map(str::to_owned)) {
//!     contact::set_field("greeted_as", name)?;
//! }
//! contact::add_tag("greeted")?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use crate::{Error, FieldValue, Result, backend};

/// The current value of field `name`, or `None` when the contact has no such field.
pub fn field(name: &str) -> Option<FieldValue> {
    backend::with(|host| host.get_field(name))
}

/// The current text of field `name`, when it holds text.
pub fn text(name: &str) -> Option<String> {
    field(name).and_then(|value| value.as_text().map(str::to_owned))
}

/// Sets field `name`; [`FieldValue::Null`] clears it.
///
/// # Errors
/// [`ContactError`] for a bad name or an oversized value.
pub fn set_field(name: &str, value: impl Into<FieldValue>) -> Result<()> {
    let value = value.into();
    backend::with(|host| host.set_field(name, &value)).map_err(Error::from)
}

/// Adds a tag (no-op when present).
///
/// # Errors
/// [`ContactError`] for a bad tag.
pub fn add_tag(tag: &str) -> Result<()> {
    backend::with(|host| host.add_tag(tag)).map_err(Error::from)
}

/// Removes a tag (no-op when absent).
///
/// # Errors
/// [`ContactError`] for a bad tag.
pub fn remove_tag(tag: &str) -> Result<()> {
    backend::with(|host| host.remove_tag(tag)).map_err(Error::from)
}

/// Whether the contact has `tag`.
pub fn has_tag(tag: &str) -> bool {
    backend::with(|host| host.has_tag(tag))
}

/// All the contact's tags.
pub fn tags() -> Vec<String> {
    backend::with(|host| host.tags())
}

/// Why a contact change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactError {
    /// The name or tag is empty, too long or holds control characters.
    Invalid(String),
    /// The value is larger than the host allows.
    TooLarge,
}

impl fmt::Display for ContactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(reason) => write!(f, "invalid contact change: {reason}"),
            Self::TooLarge => f.write_str("contact value too large"),
        }
    }
}

impl std::error::Error for ContactError {}

impl From<ContactError> for Error {
    fn from(error: ContactError) -> Self {
        Error::new(error.to_string())
    }
}

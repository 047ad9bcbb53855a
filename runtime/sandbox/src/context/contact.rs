//! Contact capabilities: typed fields and tags of the run's contact. Reads see the
//! snapshot overlaid with the run's writes; writes are journaled.

use fluxo_core::{Effect, FieldValue, Quota};

use super::{CapResult, RunContext, check_name};

/// Longest field name or tag, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest field value, in bytes.
pub const MAX_FIELD_VALUE_BYTES: usize = 16 << 10;

/// Why a contact change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The name is empty, too long or holds control characters; the value is not
    /// finite; or the run is about no contact.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The value is larger than [`MAX_FIELD_VALUE_BYTES`].
    #[error("too large")]
    TooLarge,
}

impl RunContext {
    /// The field's current value, or `None` when the contact has no such field.
    #[must_use]
    pub fn get_field(&self, name: &str) -> Option<FieldValue> {
        self.journal.field(&self.contact, name)
    }

    /// Sets a field (`Null` clears it).
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `field_writes` quota or the report budget.
    pub fn set_field(&mut self, name: String, value: FieldValue) -> CapResult<(), ContactError> {
        self.charge(Quota::FieldWrites)?;
        if let Err(error) = self.check_contact_write("field name", &name) {
            return Ok(Err(error));
        }
        if value.size() > MAX_FIELD_VALUE_BYTES {
            return Ok(Err(ContactError::TooLarge));
        }
        if let FieldValue::Number(number) = value
            && !number.is_finite()
        {
            return Ok(Err(ContactError::Invalid(
                "number is not finite".to_owned(),
            )));
        }
        self.charge_record(name.len() + value.size())?;
        self.journal.record(Effect::SetField { name, value });
        Ok(Ok(()))
    }

    /// Adds a tag (a no-op if present).
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `tag_changes` quota or the report budget.
    pub fn add_tag(&mut self, tag: String) -> CapResult<(), ContactError> {
        self.charge(Quota::TagChanges)?;
        if let Err(error) = self.check_contact_write("tag", &tag) {
            return Ok(Err(error));
        }
        self.charge_record(tag.len())?;
        self.journal.record(Effect::AddTag { tag });
        Ok(Ok(()))
    }

    /// Removes a tag (a no-op if absent).
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `tag_changes` quota or the report budget.
    pub fn remove_tag(&mut self, tag: String) -> CapResult<(), ContactError> {
        self.charge(Quota::TagChanges)?;
        if let Err(error) = self.check_contact_write("tag", &tag) {
            return Ok(Err(error));
        }
        self.charge_record(tag.len())?;
        self.journal.record(Effect::RemoveTag { tag });
        Ok(Ok(()))
    }

    /// Whether the contact has the tag.
    #[must_use]
    pub fn has_tag(&self, tag: &str) -> bool {
        self.journal.tags(&self.contact).iter().any(|t| t == tag)
    }

    /// All the contact's tags.
    #[must_use]
    pub fn tags(&self) -> Vec<String> {
        self.journal.tags(&self.contact)
    }

    fn check_contact_write(&self, what: &str, name: &str) -> Result<(), ContactError> {
        if self.contact.id.is_none() {
            return Err(ContactError::Invalid(
                "the run is about no contact (its event has no contact id)".to_owned(),
            ));
        }
        check_name(what, name, MAX_NAME_BYTES).map_err(ContactError::Invalid)
    }
}

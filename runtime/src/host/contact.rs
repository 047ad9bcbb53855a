//! `fluxo:action/contact`: typed fields and tags of the run's contact.
//!
//! Reads are answered from the event's snapshot overlaid with the run's journal; writes
//! are journaled and reach the platform through [`ContactStore::apply`] only when the run
//! succeeds.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{BackendError, BoxFuture, RunState, check_name};
use crate::bindings::fluxo::action::contact::{ContactError, Host};
use crate::bindings::fluxo::action::types::FieldValue as WitValue;
use crate::event::{Contact, FieldValue};
use crate::executor::limits::Quota;
use crate::journal::{Effect, apply_to_contact};

/// Longest field name or tag.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest field value.
pub const MAX_VALUE_BYTES: usize = 16 << 10;

/// The platform's contacts. Fluxo calls it once per successful run with every contact
/// effect of the run, in order; an implementation applies them atomically.
pub trait ContactStore: Send + Sync + 'static {
    /// Applies the contact changes among `effects` (the run's journal, in order:
    /// `SetField`, `AddTag` and `RemoveTag`; other effects are not this store's and are
    /// ignored) to the contact. Called once per successful run that changed the contact.
    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        contact_id: &'a str,
        effects: &'a [Effect],
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// An in-memory contact store: the default, and what tests inspect.
#[derive(Debug, Default)]
pub struct MemoryContacts {
    contacts: Mutex<HashMap<(String, String), Contact>>,
}

impl MemoryContacts {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `contact` in the store under `tenant`.
    pub fn insert(&self, tenant: &str, contact: Contact) {
        self.lock()
            .insert((tenant.to_owned(), contact.id.clone()), contact);
    }

    /// The stored contact, if any.
    #[must_use]
    pub fn get(&self, tenant: &str, contact_id: &str) -> Option<Contact> {
        self.lock()
            .get(&(tenant.to_owned(), contact_id.to_owned()))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Contact>> {
        self.contacts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ContactStore for MemoryContacts {
    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        contact_id: &'a str,
        effects: &'a [Effect],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut contacts = self.lock();
            let contact = contacts
                .entry((tenant.to_owned(), contact_id.to_owned()))
                .or_insert_with(|| Contact {
                    id: contact_id.to_owned(),
                    ..Contact::default()
                });
            apply_to_contact(contact, effects);
            Ok(())
        })
    }
}

pub(crate) fn from_wit(value: WitValue) -> FieldValue {
    match value {
        WitValue::Text(text) => FieldValue::Text(text),
        WitValue::Number(number) => FieldValue::Number(number),
        WitValue::Boolean(flag) => FieldValue::Bool(flag),
        WitValue::DateTime(date_time) => FieldValue::DateTime { date_time },
        WitValue::Null => FieldValue::Null,
    }
}

pub(crate) fn to_wit(value: FieldValue) -> WitValue {
    match value {
        FieldValue::Text(text) => WitValue::Text(text),
        FieldValue::Number(number) => WitValue::Number(number),
        FieldValue::Bool(flag) => WitValue::Boolean(flag),
        FieldValue::DateTime { date_time } => WitValue::DateTime(date_time),
        FieldValue::Null => WitValue::Null,
    }
}

impl Host for RunState {
    async fn get_field(&mut self, name: String) -> wasmtime::Result<Option<WitValue>> {
        Ok(self.journal.field(&self.contact, &name).map(to_wit))
    }

    async fn set_field(
        &mut self,
        name: String,
        value: WitValue,
    ) -> wasmtime::Result<Result<(), ContactError>> {
        self.charge(Quota::FieldWrites)?;
        if let Err(reason) = check_name("field name", &name, MAX_NAME_BYTES) {
            return Ok(Err(ContactError::Invalid(reason)));
        }
        let value = from_wit(value);
        if value.size() > MAX_VALUE_BYTES {
            return Ok(Err(ContactError::TooLarge));
        }
        if let FieldValue::Number(number) = value
            && !number.is_finite()
        {
            return Ok(Err(ContactError::Invalid(
                "number is not finite".to_owned(),
            )));
        }
        self.journal.record(Effect::SetField { name, value });
        Ok(Ok(()))
    }

    async fn add_tag(&mut self, tag: String) -> wasmtime::Result<Result<(), ContactError>> {
        self.charge(Quota::TagChanges)?;
        if let Err(reason) = check_name("tag", &tag, MAX_NAME_BYTES) {
            return Ok(Err(ContactError::Invalid(reason)));
        }
        self.journal.record(Effect::AddTag { tag });
        Ok(Ok(()))
    }

    async fn remove_tag(&mut self, tag: String) -> wasmtime::Result<Result<(), ContactError>> {
        self.charge(Quota::TagChanges)?;
        if let Err(reason) = check_name("tag", &tag, MAX_NAME_BYTES) {
            return Ok(Err(ContactError::Invalid(reason)));
        }
        self.journal.record(Effect::RemoveTag { tag });
        Ok(Ok(()))
    }

    async fn has_tag(&mut self, tag: String) -> wasmtime::Result<bool> {
        Ok(self.journal.tags(&self.contact).contains(&tag))
    }

    async fn tags(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.journal.tags(&self.contact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_applies_effects_in_order() {
        let store = MemoryContacts::new();
        let effects = [
            Effect::SetField {
                name: "stage".into(),
                value: "won".into(),
            },
            Effect::AddTag { tag: "vip".into() },
            Effect::AddTag { tag: "vip".into() },
        ];
        store.apply("acme", "c1", &effects).await.unwrap();
        let contact = store.get("acme", "c1").unwrap();
        assert_eq!(contact.fields["stage"], FieldValue::from("won"));
        assert_eq!(contact.tags, ["vip"]);
        assert!(store.get("other", "c1").is_none());
    }
}

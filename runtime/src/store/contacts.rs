//! The embedded contact store: what `fluxo serve` applies contact effects to when no
//! platform store is plugged in. One JSON record per contact, changed in a transaction.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, StoreError, now_ms};
use crate::event::Contact;
use crate::host::contact::ContactStore;
use crate::host::{BackendError, BoxFuture};
use crate::journal::{Effect, apply_to_contact};

/// [`ContactStore`] backed by the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteContacts {
    store: SqliteStore,
}

impl SqliteContacts {
    /// Contacts in `store`.
    #[must_use]
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    /// The stored contact, if any.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Contact>, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.store
            .with(move |c| {
                let record: Option<String> = c
                    .query_row(
                        "SELECT record FROM contacts WHERE tenant = ?1 AND id = ?2",
                        params![tenant, id],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(record.and_then(|text| serde_json::from_str(&text).ok()))
            })
            .await
    }
}

impl ContactStore for SqliteContacts {
    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        contact_id: &'a str,
        effects: &'a [Effect],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let (tenant, id, effects) = (tenant.to_owned(), contact_id.to_owned(), effects.to_vec());
        Box::pin(async move {
            self.store
                .with(move |c| {
                    let transaction = c.transaction()?;
                    let current: Option<String> = transaction
                        .query_row(
                            "SELECT record FROM contacts WHERE tenant = ?1 AND id = ?2",
                            params![tenant, id],
                            |row| row.get(0),
                        )
                        .optional()?;
                    let mut contact: Contact = current
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_else(|| Contact { id: id.clone(), ..Contact::default() });
                    apply_to_contact(&mut contact, &effects);
                    let record = serde_json::to_string(&contact).unwrap_or_default();
                    transaction.execute(
                        "INSERT INTO contacts (tenant, id, record, updated_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (tenant, id) DO UPDATE SET record = ?3, updated_ms = ?4",
                        params![tenant, id, record, now_ms()],
                    )?;
                    transaction.commit()?;
                    Ok(())
                })
                .await
                .map_err(BackendError::from)
        })
    }
}

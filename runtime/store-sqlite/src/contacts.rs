//! The embedded contact store: one JSON record per contact, changed by the ledger in the
//! commit's transaction. A record that does not decode is an error (the commit fails and
//! nothing is applied), never replaced by an empty contact.

use fluxo_core::{Contact, ContactId, Effect, TenantId, apply_to_contact};
use fluxo_store::{Contacts, StoreError, StoreFuture};
use rusqlite::{Connection, params};

use crate::writer::sql;
use crate::{SqliteStore, optional};

fn decode(record: &str) -> Result<Contact, StoreError> {
    serde_json::from_str(record).map_err(|error| StoreError::corrupt("contact", error))
}

/// Applies a run's contact effects to the stored contact (creating it).
pub(crate) fn apply(
    connection: &Connection,
    tenant: &str,
    id: &ContactId,
    effects: &[Effect],
    now: i64,
) -> Result<(), StoreError> {
    let stored: Option<String> = optional(connection.query_row(
        "SELECT record FROM contacts WHERE tenant = ?1 AND id = ?2",
        params![tenant, id.as_str()],
        |row| row.get(0),
    ))?;
    let mut contact = match stored {
        Some(record) => decode(&record)?,
        None => Contact::with_id(id.clone()),
    };
    apply_to_contact(&mut contact, effects);
    let record = serde_json::to_string(&contact)
        .map_err(|error| StoreError::permanent(format!("encoding a contact: {error}")))?;
    connection
        .execute(
            "INSERT INTO contacts (tenant, id, record, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, id) DO UPDATE SET record = ?3, updated_ms = ?4",
            params![tenant, id.as_str(), record, now],
        )
        .map_err(sql)?;
    Ok(())
}

/// The next number of `id`'s contact updates (from 1), counted in the commit's
/// transaction: commits are serial on the writer, so the numbers follow commit order.
pub(crate) fn next_update(
    connection: &Connection,
    tenant: &str,
    id: &ContactId,
) -> Result<u64, StoreError> {
    let sequence: i64 = connection
        .query_row(
            "INSERT INTO contact_update_seq (tenant, contact, seq) VALUES (?1, ?2, 1)
             ON CONFLICT (tenant, contact) DO UPDATE SET seq = contact_update_seq.seq + 1
             RETURNING seq",
            params![tenant, id.as_str()],
            |row| row.get(0),
        )
        .map_err(sql)?;
    u64::try_from(sequence).map_err(|error| StoreError::corrupt("contact update number", error))
}

impl Contacts for SqliteStore {
    fn contact<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a ContactId,
    ) -> StoreFuture<'a, Option<Contact>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.read(move |connection| {
            let record: Option<String> = optional(connection.query_row(
                "SELECT record FROM contacts WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
                |row| row.get(0),
            ))?;
            record.as_deref().map(decode).transpose()
        }))
    }
}

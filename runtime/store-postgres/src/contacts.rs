//! The embedded contact store on PostgreSQL: one JSON record per contact, changed by the
//! ledger under a row lock, so two nodes committing runs of one contact apply both.

use fluxo_core::{Contact, ContactId, Effect, TenantId, apply_to_contact};
use fluxo_store::{Contacts, StoreError, StoreFuture};

use crate::{PostgresStore, Tx, pg};

fn decode(record: &str) -> Result<Contact, StoreError> {
    serde_json::from_str(record).map_err(|error| StoreError::corrupt("contact", error))
}

/// The next number of `id`'s contact updates (from 1), counted in the commit's
/// transaction: the counter's row stays locked until it commits, so a second commit for
/// the contact waits and numbers after it, and the outbox row it then inserts gets a
/// later id too (updates follow commit order whichever way they are read).
pub(crate) async fn next_update(
    tx: &Tx<'_>,
    tenant: &str,
    id: &ContactId,
) -> Result<u64, StoreError> {
    let sequence: i64 = tx
        .query_one(
            "INSERT INTO contact_update_seq (tenant, contact, seq) VALUES ($1, $2, 1)
             ON CONFLICT (tenant, contact) DO UPDATE SET seq = contact_update_seq.seq + 1
             RETURNING seq",
            &[&tenant, &id.as_str()],
        )
        .await
        .map_err(pg)?
        .get(0);
    u64::try_from(sequence).map_err(|error| StoreError::corrupt("contact update number", error))
}

/// Applies a run's contact effects to the stored contact (creating it).
pub(crate) async fn apply(
    tx: &Tx<'_>,
    tenant: &str,
    id: &ContactId,
    effects: &[Effect],
    now: i64,
) -> Result<(), StoreError> {
    let fresh = serde_json::to_string(&Contact::with_id(id.clone()))
        .map_err(|error| StoreError::permanent(format!("encoding a contact: {error}")))?;
    // Create-then-lock: the row exists for every writer, who then change it in turn.
    tx.execute(
        "INSERT INTO contacts (tenant, id, record, updated_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, id) DO NOTHING",
        &[&tenant, &id.as_str(), &fresh, &now],
    )
    .await
    .map_err(pg)?;
    let record: String = tx
        .query_one(
            "SELECT record FROM contacts WHERE tenant = $1 AND id = $2 FOR UPDATE",
            &[&tenant, &id.as_str()],
        )
        .await
        .map_err(pg)?
        .get(0);
    let mut contact = decode(&record)?;
    apply_to_contact(&mut contact, effects);
    let record = serde_json::to_string(&contact)
        .map_err(|error| StoreError::permanent(format!("encoding a contact: {error}")))?;
    tx.execute(
        "UPDATE contacts SET record = $3, updated_ms = $4 WHERE tenant = $1 AND id = $2",
        &[&tenant, &id.as_str(), &record, &now],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

impl Contacts for PostgresStore {
    fn contact<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a ContactId,
    ) -> StoreFuture<'a, Option<Contact>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        "SELECT record FROM contacts WHERE tenant = $1 AND id = $2",
                        &[&tenant, &id],
                    )
                    .await
                    .map_err(pg)?
                    .map(|row| decode(&row.get::<_, String>(0)))
                    .transpose()
            })
        }))
    }
}

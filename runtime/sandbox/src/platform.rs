//! The platform's side, for embedders: where committed contact changes, state and
//! e-mails go ([`ContactStore`], [`StateStore`], [`Mailer`]) and where secrets come from
//! ([`SecretSource`]), each with a real in-memory default. A run reads state through
//! [`StateReader`] only; writes reach a store after the run, by [`crate::Runtime::run`]
//! (these traits) or by a server's one-transaction ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(test)]
use fluxo_core::StateScope;
use fluxo_core::{Contact, ContactId, Effect, OutgoingEmail, TenantId, apply_to_contact};
pub use fluxo_egress::BoxFuture;

use crate::redact::Secrets;

/// A failure of a platform backend: opaque, with one question callers decide on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    transient: bool,
    message: String,
}

impl BackendError {
    /// A failure that may pass (a timeout, a lost connection).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            transient: true,
            message: message.into(),
        }
    }

    /// A failure that will not pass by retrying (a refused write).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            transient: false,
            message: message.into(),
        }
    }

    /// Whether retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

pub use fluxo_core::{StateKey, StateUsage};

/// Read access to durable state during a run.
pub trait StateReader: Send + Sync + 'static {
    /// The live (unexpired) value under `key`.
    fn get<'a>(&'a self, key: &'a StateKey)
    -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>>;
    /// The tenant's use and cap, and the size of `key`'s entry.
    fn usage<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<StateUsage, BackendError>>;
}

/// One state change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Store `value`, expiring after `ttl` when given.
    Set {
        /// Where.
        key: StateKey,
        /// What.
        value: Vec<u8>,
        /// Expiry from now.
        ttl: Option<Duration>,
    },
    /// Remove the key.
    Delete {
        /// Where.
        key: StateKey,
    },
}

/// The state changes among a run's effects.
#[must_use]
pub fn state_changes(
    tenant: &TenantId,
    contact: Option<&ContactId>,
    effects: &[Effect],
) -> Vec<StateChange> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SetState {
                scope,
                key,
                value,
                ttl_seconds,
            } => Some(StateChange::Set {
                key: StateKey::of(tenant, contact, *scope, key)?,
                value: value.0.clone(),
                ttl: ttl_seconds.map(|s| Duration::from_secs(u64::from(s))),
            }),
            Effect::DeleteState { scope, key } => Some(StateChange::Delete {
                key: StateKey::of(tenant, contact, *scope, key)?,
            }),
            _ => None,
        })
        .collect()
}

/// Durable state an embedder keeps: read during runs, changed after successful ones.
pub trait StateStore: StateReader {
    /// Applies one run's `changes` in order, atomically, refusing them all when a tenant
    /// would pass its cap.
    fn apply<'a>(&'a self, changes: &'a [StateChange]) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// The platform's contacts. Called once per successful run that changed its contact.
pub trait ContactStore: Send + Sync + 'static {
    /// Applies the contact changes among `effects` (in order: `SetField`, `AddTag`,
    /// `RemoveTag`; other effects are not this store's and are ignored), atomically.
    fn apply<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: &'a ContactId,
        effects: &'a [Effect],
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// Delivers committed e-mails. Called once per e-mail of a successful run; the
/// `message_id` is stable, so a retried delivery never duplicates.
pub trait Mailer: Send + Sync + 'static {
    /// Delivers (or durably queues) `email` for `tenant`.
    fn deliver<'a>(
        &'a self,
        tenant: &'a TenantId,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// Where tenants' secrets come from. Read once at the start of each run.
pub trait SecretSource: Send + Sync + 'static {
    /// The tenant's secrets by name.
    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<Secrets, BackendError>>;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-memory contact store: the default, and what tests inspect.
#[derive(Debug, Default)]
pub struct MemoryContacts {
    contacts: Mutex<HashMap<(TenantId, ContactId), Contact>>,
}

impl MemoryContacts {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored contact, if any.
    #[must_use]
    pub fn get(&self, tenant: &str, contact: &str) -> Option<Contact> {
        lock(&self.contacts)
            .iter()
            .find(|((t, c), _)| t.as_str() == tenant && c.as_str() == contact)
            .map(|(_, record)| record.clone())
    }
}

impl ContactStore for MemoryContacts {
    fn apply<'a>(
        &'a self,
        tenant: &'a TenantId,
        contact: &'a ContactId,
        effects: &'a [Effect],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut contacts = lock(&self.contacts);
            let record = contacts
                .entry((tenant.clone(), contact.clone()))
                .or_insert_with(|| Contact::with_id(contact.clone()));
            apply_to_contact(record, effects);
            Ok(())
        })
    }
}

/// The default mailer: an in-memory outbox the embedder drains (and tests inspect).
#[derive(Debug, Default)]
pub struct MemoryMailer {
    messages: Mutex<Vec<(TenantId, OutgoingEmail)>>,
}

impl MemoryMailer {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The queued messages with their tenant, oldest first.
    #[must_use]
    pub fn messages(&self) -> Vec<(TenantId, OutgoingEmail)> {
        lock(&self.messages).clone()
    }

    /// Takes every queued message out.
    pub fn drain(&self) -> Vec<(TenantId, OutgoingEmail)> {
        std::mem::take(&mut *lock(&self.messages))
    }
}

impl Mailer for MemoryMailer {
    fn deliver<'a>(
        &'a self,
        tenant: &'a TenantId,
        email: &'a OutgoingEmail,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut messages = lock(&self.messages);
            // Idempotent on the Message-ID: a retried delivery is not a second message.
            if !messages
                .iter()
                .any(|(_, queued)| queued.message_id == email.message_id)
            {
                messages.push((tenant.clone(), email.clone()));
            }
            Ok(())
        })
    }
}

/// A stored value and when it expires.
type Expiring = (Vec<u8>, Option<Instant>);

/// An in-memory state store with TTL and a per-tenant cap.
#[derive(Debug)]
pub struct MemoryState {
    values: Mutex<HashMap<StateKey, Expiring>>,
    tenant_limit: u64,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self {
            values: Mutex::new(HashMap::new()),
            tenant_limit: u64::MAX,
        }
    }
}

impl MemoryState {
    /// An empty store without a cap.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store capping each tenant at `bytes` of keys and values.
    #[must_use]
    pub fn with_tenant_limit(bytes: u64) -> Self {
        Self {
            tenant_limit: bytes,
            ..Self::default()
        }
    }

    fn live_bytes(
        values: &HashMap<StateKey, (Vec<u8>, Option<Instant>)>,
        tenant: &TenantId,
    ) -> u64 {
        let now = Instant::now();
        let bytes: usize = values
            .iter()
            .filter(|(key, (_, expiry))| &key.tenant == tenant && expiry.is_none_or(|at| at > now))
            .map(|(key, (value, _))| key.key.len() + value.len())
            .sum();
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

impl StateReader for MemoryState {
    fn get<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let values = lock(&self.values);
            Ok(values
                .get(key)
                .filter(|(_, expiry)| expiry.is_none_or(|at| at > Instant::now()))
                .map(|(value, _)| value.clone()))
        })
    }

    fn usage<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<StateUsage, BackendError>> {
        Box::pin(async move {
            let values = lock(&self.values);
            let key_bytes = values
                .get(key)
                .filter(|(_, expiry)| expiry.is_none_or(|at| at > Instant::now()))
                .map_or(0, |(value, _)| key.key.len() + value.len());
            Ok(StateUsage {
                bytes: Self::live_bytes(&values, &key.tenant),
                limit: self.tenant_limit,
                key_bytes: u64::try_from(key_bytes).unwrap_or(u64::MAX),
            })
        })
    }
}

impl StateStore for MemoryState {
    fn apply<'a>(&'a self, changes: &'a [StateChange]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut values = lock(&self.values);
            let before = values.clone();
            let mut tenants = Vec::new();
            for change in changes {
                match change {
                    StateChange::Set { key, value, ttl } => {
                        let expiry = ttl.map(|ttl| Instant::now() + ttl);
                        values.insert(key.clone(), (value.clone(), expiry));
                        tenants.push(key.tenant.clone());
                    }
                    StateChange::Delete { key } => {
                        values.remove(key);
                    }
                }
            }
            if let Some(tenant) = tenants
                .iter()
                .find(|tenant| Self::live_bytes(&values, tenant) > self.tenant_limit)
            {
                let message = format!(
                    "tenant {tenant} would pass its {}-byte state cap",
                    self.tenant_limit
                );
                *values = before;
                return Err(BackendError::permanent(message));
            }
            Ok(())
        })
    }
}

/// Secrets fixed in the configuration (`[secrets.TENANT]`).
#[derive(Debug, Clone, Default)]
pub struct StaticSecrets {
    by_tenant: BTreeMap<String, Secrets>,
}

impl StaticSecrets {
    /// Secrets by tenant, then by name.
    #[must_use]
    pub fn new(by_tenant: &BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self {
            by_tenant: by_tenant
                .iter()
                .map(|(tenant, secrets)| (tenant.clone(), Secrets::new(secrets.clone())))
                .collect(),
        }
    }
}

impl SecretSource for StaticSecrets {
    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<Secrets, BackendError>> {
        Box::pin(async move {
            Ok(self
                .by_tenant
                .get(tenant.as_str())
                .cloned()
                .unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

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
        store
            .apply(&tenant("acme"), &"c1".parse().unwrap(), &effects)
            .await
            .unwrap();
        let contact = store.get("acme", "c1").unwrap();
        assert_eq!(contact.fields["stage"], "won".into());
        assert_eq!(contact.tags, ["vip"]);
        assert!(store.get("other", "c1").is_none());
    }

    #[tokio::test]
    async fn state_expires_scopes_are_separate_and_the_cap_refuses_a_whole_batch() {
        let store = MemoryState::with_tenant_limit(100);
        let acme = tenant("acme");
        let c1: ContactId = "c1".parse().unwrap();
        let tenant_key = StateKey::of(&acme, Some(&c1), StateScope::Tenant, "k").unwrap();
        let contact_key = StateKey::of(&acme, Some(&c1), StateScope::Contact, "k").unwrap();
        assert!(StateKey::of(&acme, None, StateScope::Contact, "k").is_none());
        store
            .apply(&[
                StateChange::Set {
                    key: tenant_key.clone(),
                    value: b"t".to_vec(),
                    ttl: None,
                },
                StateChange::Set {
                    key: contact_key.clone(),
                    value: b"c".to_vec(),
                    ttl: Some(Duration::ZERO),
                },
            ])
            .await
            .unwrap();
        assert_eq!(store.get(&tenant_key).await.unwrap(), Some(b"t".to_vec()));
        assert_eq!(store.get(&contact_key).await.unwrap(), None);
        let big = StateChange::Set {
            key: StateKey::of(&acme, None, StateScope::Tenant, "big").unwrap(),
            value: vec![0; 200],
            ttl: None,
        };
        let delete = StateChange::Delete {
            key: tenant_key.clone(),
        };
        assert!(store.apply(&[delete, big]).await.is_err());
        assert_eq!(store.get(&tenant_key).await.unwrap(), Some(b"t".to_vec()));
    }
}

//! `fluxo:action/state`: a small key-value store per tenant (and optionally per contact)
//! with TTL. Writes are journaled and applied through [`StateStore::apply`] only when the
//! run succeeds; reads see the run's own writes first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{BackendError, BoxFuture, RunState, bounded, check_name};
use crate::bindings::fluxo::action::state::{Host, Scope, StateError};
use crate::executor::limits::Quota;
use crate::journal::{Effect, StateScope};

/// Longest key.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Where a value lives: the tenant, the contact when contact-scoped, and the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    /// The tenant.
    pub tenant: String,
    /// The contact, for contact-scoped keys.
    pub contact: Option<String>,
    /// The key.
    pub key: String,
}

/// One change to apply.
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

/// How much state a tenant holds, and how much it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateUsage {
    /// Bytes of live keys and values.
    pub bytes: u64,
    /// The tenant's cap.
    pub limit: u64,
}

/// Durable key-value state. `apply` receives every change of one successful run and
/// applies them atomically, refusing the whole batch when a tenant would pass its cap.
pub trait StateStore: Send + Sync + 'static {
    /// The live (unexpired) value under `key`.
    fn get<'a>(&'a self, key: &'a StateKey)
    -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>>;
    /// The tenant's current use and cap.
    fn usage<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<StateUsage, BackendError>>;
    /// Applies `changes` in order.
    fn apply<'a>(&'a self, changes: &'a [StateChange]) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// A stored value and its expiry.
type Stored = (Vec<u8>, Option<Instant>);

/// The default state store, in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    values: Mutex<HashMap<StateKey, Stored>>,
}

impl MemoryState {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryState {
    fn get<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
            let expired = values
                .get(key)
                .is_some_and(|(_, expiry)| expiry.is_some_and(|at| at <= Instant::now()));
            if expired {
                values.remove(key);
            }
            Ok(values.get(key).map(|(value, _)| value.clone()))
        })
    }

    fn usage<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<StateUsage, BackendError>> {
        Box::pin(async move {
            let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let bytes = values
                .iter()
                .filter(|(key, (_, expiry))| {
                    key.tenant == tenant && expiry.is_none_or(|at| at > now)
                })
                .map(|(key, (value, _))| key.key.len() + value.len())
                .sum::<usize>();
            Ok(StateUsage {
                bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
                limit: u64::MAX,
            })
        })
    }

    fn apply<'a>(&'a self, changes: &'a [StateChange]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
            for change in changes {
                match change {
                    StateChange::Set { key, value, ttl } => {
                        let expiry = ttl.map(|ttl| Instant::now() + ttl);
                        values.insert(key.clone(), (value.clone(), expiry));
                    }
                    StateChange::Delete { key } => {
                        values.remove(key);
                    }
                }
            }
            Ok(())
        })
    }
}

/// The store key for a run's scoped key.
pub(crate) fn store_key(tenant: &str, contact_id: &str, scope: StateScope, key: &str) -> StateKey {
    StateKey {
        tenant: tenant.to_owned(),
        contact: match scope {
            StateScope::Tenant => None,
            StateScope::Contact => Some(contact_id.to_owned()),
        },
        key: key.to_owned(),
    }
}

/// The state changes among a run's effects, as store changes.
pub(crate) fn changes(tenant: &str, contact_id: &str, effects: &[Effect]) -> Vec<StateChange> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SetState {
                scope,
                key,
                value,
                ttl_seconds,
            } => Some(StateChange::Set {
                key: store_key(tenant, contact_id, *scope, key),
                value: value.clone(),
                ttl: ttl_seconds.map(|s| Duration::from_secs(u64::from(s))),
            }),
            Effect::DeleteState { scope, key } => Some(StateChange::Delete {
                key: store_key(tenant, contact_id, *scope, key),
            }),
            _ => None,
        })
        .collect()
}

fn scope_of(scope: Scope) -> StateScope {
    match scope {
        Scope::Tenant => StateScope::Tenant,
        Scope::Contact => StateScope::Contact,
    }
}

impl RunState {
    async fn read_state(
        &mut self,
        scope: StateScope,
        key: &str,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StateError>> {
        if let Some(decided) = self.journal.state(scope, key) {
            return Ok(Ok(decided));
        }
        let store_key = store_key(&self.tenant, &self.contact.id, scope, key);
        let store = self.services.state.clone();
        let read = bounded(self.call_timeout(), "state.get", async move {
            store.get(&store_key).await
        })
        .await?;
        Ok(read.map_err(|error| StateError::Unavailable(error.0)))
    }
}

impl Host for RunState {
    async fn get(
        &mut self,
        scope: Scope,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, StateError>> {
        if let Err(reason) = check_name("key", &key, MAX_KEY_BYTES) {
            return Ok(Err(StateError::Invalid(reason)));
        }
        self.read_state(scope_of(scope), &key).await
    }

    async fn set(
        &mut self,
        scope: Scope,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), StateError>> {
        self.charge(Quota::StateWrites)?;
        if let Err(reason) = check_name("key", &key, MAX_KEY_BYTES) {
            return Ok(Err(StateError::Invalid(reason)));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(StateError::TooLarge));
        }
        let store = self.services.state.clone();
        let tenant = self.tenant.clone();
        let usage = bounded(self.call_timeout(), "state.usage", async move {
            store.usage(&tenant).await
        })
        .await?;
        let usage = match usage {
            Ok(usage) => usage,
            Err(error) => return Ok(Err(StateError::Unavailable(error.0))),
        };
        let pending = self.journal.state_bytes() + key.len() + value.len();
        if usage
            .bytes
            .saturating_add(u64::try_from(pending).unwrap_or(u64::MAX))
            > usage.limit
        {
            return Ok(Err(StateError::TooLarge));
        }
        self.journal.record(Effect::SetState {
            scope: scope_of(scope),
            key,
            value,
            ttl_seconds,
        });
        Ok(Ok(()))
    }

    async fn delete(
        &mut self,
        scope: Scope,
        key: String,
    ) -> wasmtime::Result<Result<bool, StateError>> {
        self.charge(Quota::StateWrites)?;
        if let Err(reason) = check_name("key", &key, MAX_KEY_BYTES) {
            return Ok(Err(StateError::Invalid(reason)));
        }
        let scope = scope_of(scope);
        let existed = match self.read_state(scope, &key).await? {
            Ok(value) => value.is_some(),
            Err(error) => return Ok(Err(error)),
        };
        self.journal.record(Effect::DeleteState { scope, key });
        Ok(Ok(existed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_expire_and_scopes_are_separate() {
        let store = MemoryState::new();
        let tenant_key = store_key("acme", "c1", StateScope::Tenant, "k");
        let contact_key = store_key("acme", "c1", StateScope::Contact, "k");
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
        let other_tenant = store_key("other", "c1", StateScope::Tenant, "k");
        assert_eq!(store.get(&other_tenant).await.unwrap(), None);
    }
}

//! The state capability: a small key-value store per tenant (and optionally per
//! contact) with TTL. Writes are journaled; reads see the run's own writes first, then
//! the store. The tenant's byte cap is checked here as early feedback and again, as the
//! rule that holds, inside the commit.

use std::collections::BTreeMap;

use fluxo_core::{Bytes, Effect, Quota, StateScope};

use super::{CapResult, RunContext, bounded, check_name};
use crate::platform::StateKey;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Why a state call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is empty, too long or holds control characters; or a contact-scoped key
    /// in a run about no contact.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The value is larger than [`MAX_VALUE_BYTES`], or storing it would take the tenant
    /// past its state cap.
    #[error("too large")]
    TooLarge,
    /// The store could not be reached; retrying the run may help.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl RunContext {
    fn state_key(&self, scope: StateScope, key: &str) -> Result<StateKey, StateError> {
        check_name("key", key, MAX_KEY_BYTES).map_err(StateError::Invalid)?;
        let contact = match scope {
            StateScope::Tenant => None,
            StateScope::Contact => Some(self.contact.id.clone().ok_or_else(|| {
                StateError::Invalid(
                    "contact-scoped state in a run about no contact (its event has no contact id)"
                        .to_owned(),
                )
            })?),
        };
        Ok(StateKey {
            tenant: self.meta.tenant.clone(),
            contact,
            key: key.to_owned(),
        })
    }

    /// The value under `key`, or `None` when absent or expired.
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit::HostCallTimeout`] when the store does not answer in time.
    pub async fn state_get(
        &mut self,
        scope: StateScope,
        key: &str,
    ) -> CapResult<Option<Vec<u8>>, StateError> {
        let store_key = match self.state_key(scope, key) {
            Ok(store_key) => store_key,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(decided) = self.journal.state(scope, key) {
            return Ok(Ok(decided));
        }
        let store = self.capabilities.state.clone();
        let read = bounded(self.call_timeout(), "state.get", store.get(&store_key)).await?;
        Ok(read.map_err(|error| StateError::Unavailable(error.to_string())))
    }

    /// Stores `value` under `key`, expiring after `ttl_seconds` when given.
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `state_writes` quota, the report budget, or the
    /// host-call timeout.
    pub async fn state_set(
        &mut self,
        scope: StateScope,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> CapResult<(), StateError> {
        self.charge(Quota::StateWrites)?;
        let store_key = match self.state_key(scope, &key) {
            Ok(store_key) => store_key,
            Err(error) => return Ok(Err(error)),
        };
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(StateError::TooLarge));
        }
        let store = self.capabilities.state.clone();
        let usage = bounded(self.call_timeout(), "state.usage", store.usage(&store_key)).await?;
        let usage = match usage {
            Ok(usage) => usage,
            Err(error) => return Ok(Err(StateError::Unavailable(error.to_string()))),
        };
        let projected = usage
            .bytes
            .saturating_sub(usage.key_bytes)
            .saturating_add(to_u64(key.len() + value.len()))
            .saturating_add(self.pending_state_bytes(scope, &key));
        if projected > usage.limit {
            return Ok(Err(StateError::TooLarge));
        }
        self.charge_record(key.len() + value.len())?;
        self.journal.record(Effect::SetState {
            scope,
            key,
            value: Bytes(value),
            ttl_seconds,
        });
        Ok(Ok(()))
    }

    /// Removes `key`; returns whether it was present.
    ///
    /// # Errors
    /// [`fluxo_core::LimitHit`] past the `state_writes` quota, the report budget, or the
    /// host-call timeout.
    pub async fn state_delete(
        &mut self,
        scope: StateScope,
        key: String,
    ) -> CapResult<bool, StateError> {
        self.charge(Quota::StateWrites)?;
        let existed = match self.state_get(scope, &key).await? {
            Ok(value) => value.is_some(),
            Err(error) => return Ok(Err(error)),
        };
        self.charge_record(key.len())?;
        self.journal.record(Effect::DeleteState { scope, key });
        Ok(Ok(existed))
    }

    /// Bytes this run's journal will write for keys other than (`scope`, `key`): the
    /// last write of each key counts, a delete counts nothing.
    fn pending_state_bytes(&self, scope: StateScope, key: &str) -> u64 {
        let mut last: BTreeMap<(StateScope, &str), u64> = BTreeMap::new();
        for effect in self.journal.effects() {
            match effect {
                Effect::SetState {
                    scope: s,
                    key: k,
                    value,
                    ..
                } => {
                    last.insert((*s, k.as_str()), to_u64(k.len() + value.len()));
                }
                Effect::DeleteState { scope: s, key: k } => {
                    last.insert((*s, k.as_str()), 0);
                }
                _ => {}
            }
        }
        last.iter()
            .filter(|((s, k), _)| !(*s == scope && *k == key))
            .map(|(_, bytes)| *bytes)
            .sum()
    }
}

fn to_u64(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

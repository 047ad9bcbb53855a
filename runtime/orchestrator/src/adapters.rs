//! The sandbox's platform seams served by the store: state reads for runs, and the
//! tenant's secrets.

use std::sync::Arc;

use fluxo_core::{StateKey, StateUsage, TenantId};
use fluxo_sandbox::Secrets;
use fluxo_sandbox::platform::{BackendError, BoxFuture, SecretSource, StateReader};
use fluxo_store::{Store, StoreError};

use crate::vault::Vault;

fn backend(error: &StoreError) -> BackendError {
    if error.is_transient() {
        BackendError::transient(error.to_string())
    } else {
        BackendError::permanent(error.to_string())
    }
}

/// State reads from the store.
#[derive(Clone)]
pub struct StoreState(pub Arc<dyn Store>);

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState").finish_non_exhaustive()
    }
}

impl StateReader for StoreState {
    fn get<'a>(
        &'a self,
        key: &'a StateKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move { self.0.state(key).await.map_err(|error| backend(&error)) })
    }

    fn usage<'a>(&'a self, key: &'a StateKey) -> BoxFuture<'a, Result<StateUsage, BackendError>> {
        Box::pin(async move {
            self.0
                .state_usage(key)
                .await
                .map_err(|error| backend(&error))
        })
    }
}

/// The tenant's secrets from the catalog, opened with the vault.
#[derive(Clone)]
pub struct StoreSecrets {
    /// Where the sealed values are.
    pub store: Arc<dyn Store>,
    /// What opens them.
    pub vault: Arc<Vault>,
}

impl std::fmt::Debug for StoreSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSecrets").finish_non_exhaustive()
    }
}

impl SecretSource for StoreSecrets {
    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<Secrets, BackendError>> {
        Box::pin(async move {
            let sealed = self
                .store
                .secrets(tenant)
                .await
                .map_err(|error| backend(&error))?;
            let opened = self.vault.open_secrets(tenant, sealed).map_err(|error| {
                // Not retryable by waiting: a key is missing or a value was altered.
                BackendError::permanent(error.to_string())
            })?;
            Ok(Secrets::new(opened))
        })
    }
}

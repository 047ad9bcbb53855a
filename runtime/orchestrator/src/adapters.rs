//! The sandbox's platform seams served by the store: state reads for runs, and the
//! tenant's secrets.

use std::sync::Arc;

use fluxo_core::{StateKey, StateUsage, TenantId};
use fluxo_sandbox::Secrets;
use fluxo_sandbox::platform::{BackendError, BoxFuture, SecretSource, StateReader};
use fluxo_store::{Store, StoreError};

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

/// The tenant's secrets from the catalog.
#[derive(Clone)]
pub struct StoreSecrets(pub Arc<dyn Store>);

impl std::fmt::Debug for StoreSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSecrets").finish_non_exhaustive()
    }
}

impl SecretSource for StoreSecrets {
    fn secrets<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<Secrets, BackendError>> {
        Box::pin(async move {
            self.0
                .secrets(tenant)
                .await
                .map(Secrets::new)
                .map_err(|error| backend(&error))
        })
    }
}

//! The registry: validates, compiles (only here) and stores tenants' components, with
//! versions and a lifecycle (enable, disable, activate, delete).
//!
//! Upload: name check → size and framing (`validate::pre_check`) → the component is
//! written under its SHA-256 in the component directory → compiled out of process into
//! the artifact directory ([`compile`]) → loaded from there and checked against the world
//! (`validate::link`) → recorded as a new version, which becomes active. Both
//! directories are opened with `cap-std` and only ever addressed by host-made names.

pub mod compile;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

pub use self::compile::{CompileError, CompileLimits, Compiler};
pub use self::validate::{ActionComponent, DEFAULT_MAX_COMPONENT_BYTES};
pub(crate) use self::validate::{link as link_checked, load};
use crate::Runtime;
use crate::store::StoreError;
use crate::store::catalog::{ActionRecord, VersionRecord};
use crate::store::port::CatalogStore;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The action name is not acceptable.
    #[error(
        "invalid action name {0:?}: use 1-64 characters a-z, 0-9, '-' or '_', starting with a letter"
    )]
    InvalidName(String),
    /// The component was refused (size, framing, world).
    #[error(transparent)]
    Component(#[from] crate::Error),
    /// Compilation failed or ran out of time.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The tenant has no such action.
    #[error("no action named {0:?}")]
    NotFound(String),
    /// The action has no such version.
    #[error("action {0:?} has no version {1}")]
    NoSuchVersion(String, u32),
    /// The action is disabled: it accepts no new runs.
    #[error("action {0:?} is disabled")]
    Disabled(String),
    /// A delete was not confirmed with the action's name.
    #[error("to delete {name:?}, confirm with its name (got {given:?})")]
    ConfirmationMismatch {
        /// The action.
        name: String,
        /// What was given.
        given: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The component or artifact directory failed.
    #[error("component storage: {0}")]
    Storage(String),
}

/// The registry of a Fluxo host.
pub struct Registry {
    runtime: Arc<Runtime>,
    catalog: Arc<dyn CatalogStore>,
    root: PathBuf,
    components: Dir,
    artifacts: Dir,
    compiler: Compiler,
    fingerprint: String,
    loaded: Mutex<HashMap<String, ActionComponent>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn storage(error: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(error.to_string())
}

/// Checks an action name: 1–64 of `a-z 0-9 - _`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(RegistryError::InvalidName(name.to_owned()))
    }
}

impl Registry {
    /// A registry keeping components and artifacts under `data_dir`.
    ///
    /// # Errors
    /// When the directories cannot be created or opened.
    pub fn open(
        runtime: Arc<Runtime>,
        catalog: Arc<dyn CatalogStore>,
        data_dir: &Path,
        compiler: Compiler,
    ) -> Result<Self, RegistryError> {
        for sub in ["components", "artifacts"] {
            std::fs::create_dir_all(data_dir.join(sub)).map_err(storage)?;
        }
        let open = |sub: &str| {
            Dir::open_ambient_dir(data_dir.join(sub), ambient_authority()).map_err(storage)
        };
        let fingerprint = compile::fingerprint(runtime.engine());
        Ok(Self {
            components: open("components")?,
            artifacts: open("artifacts")?,
            root: data_dir.to_owned(),
            runtime,
            catalog,
            compiler,
            fingerprint,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The catalog this registry records into.
    #[must_use]
    pub fn catalog(&self) -> &Arc<dyn CatalogStore> {
        &self.catalog
    }

    /// Checks, compiles and stores `bytes` as a new version of `tenant`'s action `name`;
    /// the new version becomes active.
    ///
    /// # Errors
    /// [`RegistryError`] naming what was refused; nothing is recorded then.
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        description: Option<&str>,
        bytes: &[u8],
    ) -> Result<(ActionRecord, VersionRecord), RegistryError> {
        check_name(name)?;
        validate::pre_check(bytes, self.runtime.max_component_bytes())?;
        let hash = format!("{:x}", Sha256::digest(bytes));
        let component_file = format!("{hash}.wasm");
        if !self.components.exists(&component_file) {
            self.components
                .write(&component_file, bytes)
                .map_err(storage)?;
        }
        let component = self.compiled(&hash).await?;
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let version = self
            .catalog
            .add_version(tenant, name, description, &hash, size, component.imports())
            .await?;
        let action = self
            .catalog
            .action(tenant, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        let record = self
            .catalog
            .version(tenant, name, version)
            .await?
            .ok_or(RegistryError::NoSuchVersion(name.to_owned(), version))?;
        Ok((action, record))
    }

    /// The action and the component of `version` (the active one when `None`).
    ///
    /// # Errors
    /// When the action or version does not exist.
    pub async fn resolve(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<(ActionRecord, VersionRecord, ActionComponent), RegistryError> {
        let action = self
            .catalog
            .action(tenant, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_owned()))?;
        let number = version.unwrap_or(action.active_version);
        let record = self
            .catalog
            .version(tenant, name, number)
            .await?
            .ok_or_else(|| RegistryError::NoSuchVersion(name.to_owned(), number))?;
        let component = self.compiled(&record.hash).await?;
        Ok((action, record, component))
    }

    /// Deletes an action when `confirm` repeats its name. Runs in flight keep their
    /// loaded component and finish.
    ///
    /// # Errors
    /// On a mismatched confirmation or a missing action.
    pub async fn delete(
        &self,
        tenant: &str,
        name: &str,
        confirm: &str,
    ) -> Result<(), RegistryError> {
        if confirm != name {
            return Err(RegistryError::ConfirmationMismatch {
                name: name.to_owned(),
                given: confirm.to_owned(),
            });
        }
        if self.catalog.delete_action(tenant, name).await? {
            Ok(())
        } else {
            Err(RegistryError::NotFound(name.to_owned()))
        }
    }

    /// The loaded component for `hash`: from memory, else from its artifact, else
    /// compiled from the stored component.
    async fn compiled(&self, hash: &str) -> Result<ActionComponent, RegistryError> {
        if let Some(component) = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
        {
            return Ok(component.clone());
        }
        let artifact_file = format!("{hash}-{}.cwasm", self.fingerprint);
        if !self.artifacts.exists(&artifact_file) {
            let partial = format!("{artifact_file}.partial");
            let result = self
                .compiler
                .compile(
                    self.runtime.engine(),
                    self.runtime.engine_options().metering,
                    &self.root.join("components").join(format!("{hash}.wasm")),
                    &self.root.join("artifacts").join(&partial),
                )
                .await;
            if let Err(error) = result {
                let _ = self.artifacts.remove_file(&partial);
                return Err(error.into());
            }
            self.artifacts
                .rename(&partial, &self.artifacts, &artifact_file)
                .map_err(storage)?;
        }
        let artifact = self.artifacts.read(&artifact_file).map_err(storage)?;
        let size = self
            .components
            .metadata(format!("{hash}.wasm"))
            .map_or(0, |m| usize::try_from(m.len()).unwrap_or(0));
        let component = compile::deserialize(self.runtime.engine(), &artifact)?;
        let component = self.runtime.link(&component, size)?;
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash.to_owned(), component.clone());
        Ok(component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["crm-lead", "a", "second_copy2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Crm",
            "1lead",
            "../etc",
            "a b",
            "crm.lead",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}

//! Secrets at rest: every tenant secret and webhook signing secret is stored sealed with
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), under a key that never enters
//! the database.
//!
//! - **The key** is 32 random bytes: `FLUXO_SECRETS_KEY` (base64) when set, else the
//!   file `secrets.key` in the data directory, created mode 0600 on first start.
//! - **Sealed values** are text: `fxs1.<key id>.<base64url(nonce ‖ ciphertext)>`, the key
//!   id being the first 8 hex digits of the key's SHA-256 (so a value names the key that
//!   opens it) and the nonce 24 random bytes (XChaCha's extended nonce: random nonces
//!   never collide in practice, RFC draft-irtf-cfrg-xchacha §3.1). The associated data is
//!   the value's place (a tenant secret's tenant and name; a signing secret's tenant): a
//!   sealed value copied to another tenant's row, or to another secret's, does not open.
//! - **Rotation** (`fluxo secrets rotate-key`) writes the next key beside the current one
//!   (`secrets.key.next`, or `FLUXO_SECRETS_KEY_NEXT`), re-seals every stored value with
//!   it in one store transaction, then makes it current. Both keys open values
//!   meanwhile, and a vault that meets an unknown key id reads its key files again, so a
//!   running server keeps working through a rotation made beside it, and a rotation cut
//!   short by a crash resumes.
//! - **Values stored before sealing existed** (plain text) are sealed at start
//!   ([`Vault::seal_stored`]).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fluxo_core::TenantId;
use fluxo_store::{SecretKind, Store, StoreError};
use sha2::{Digest as _, Sha256};

/// The prefix of a sealed value (format version 1).
const SEALED_PREFIX: &str = "fxs1.";
/// The key file in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The next key's file, during a rotation.
pub const NEXT_KEY_FILE: &str = "secrets.key.next";
/// The environment variable holding the key (base64), instead of the file.
pub const KEY_ENV: &str = "FLUXO_SECRETS_KEY";
/// The environment variable holding the next key during a rotation.
pub const NEXT_KEY_ENV: &str = "FLUXO_SECRETS_KEY_NEXT";
/// Nonce length of XChaCha20-Poly1305.
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed or opened, or the key not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key file or variable is unreadable or not 32 bytes of base64.
    #[error("the secrets key ({source_name}) is unusable: {reason}")]
    Key {
        /// Where the key came from.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The value was sealed under a key this vault does not hold.
    #[error("a stored secret is sealed under key {0}, which is not loaded")]
    UnknownKey(String),
    /// The value does not open: altered, or moved to another row.
    #[error("a stored secret does not open: altered, or not the secret of this place")]
    Tampered,
    /// Writing the key file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's randomness failed.
    #[error("no randomness: {0}")]
    Random(String),
}

/// One key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let id = digest
            .iter()
            .take(4)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum Source {
    /// `secrets.key` (and `secrets.key.next`) in this directory.
    Dir(PathBuf),
    /// `FLUXO_SECRETS_KEY` (and `FLUXO_SECRETS_KEY_NEXT`).
    Env,
    /// Keys given directly (tests, embedders).
    Fixed,
}

/// The keys in use: the current one seals; the current and the next one open.
struct Keys {
    current: Key,
    next: Option<Key>,
}

/// Seals and opens stored secrets.
pub struct Vault {
    source: Source,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("Vault")
            .field("source", &self.source)
            .field("current_key_id", &keys.current.id)
            .field("next_key_id", &keys.next.as_ref().map(|key| key.id.clone()))
            .finish()
    }
}

/// A value's place: its associated data. A tenant secret and an inbound hook's secret
/// are bound to their tenant and name; a webhook signing secret to its tenant (its endpoint's id is made by the store
/// after the secret is sealed).
fn place(kind: SecretKind, tenant: &TenantId, name: &str) -> Vec<u8> {
    match kind {
        SecretKind::Tenant => format!("tenant\0{tenant}\0{name}").into_bytes(),
        SecretKind::Webhook => format!("webhook\0{tenant}").into_bytes(),
        SecretKind::Hook => format!("hook\0{tenant}\0{name}").into_bytes(),
    }
}

/// Whether a stored value is sealed (else it predates sealing).
#[must_use]
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

impl Vault {
    /// The vault of the data directory `dir`: keys from `FLUXO_SECRETS_KEY` (and
    /// `FLUXO_SECRETS_KEY_NEXT`) when set, else from `dir/secrets.key` (created mode
    /// 0600 with a new random key when missing) and `dir/secrets.key.next`.
    ///
    /// # Errors
    /// [`VaultError::Key`] for an unusable key, [`VaultError::Io`] when the key file
    /// cannot be written.
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        let source = if std::env::var_os(KEY_ENV).is_some() {
            Source::Env
        } else {
            Source::Dir(dir.to_owned())
        };
        let keys = load(&source, true)?;
        Ok(Self {
            source,
            keys: RwLock::new(keys),
        })
    }

    /// The vault of a node on a **shared** store (PostgreSQL): every node must seal and
    /// open with the same key, so none is made up here. Keys from `FLUXO_SECRETS_KEY`
    /// (and `FLUXO_SECRETS_KEY_NEXT`) when set, else from an existing
    /// `dir/secrets.key` that the operator copied to every node.
    ///
    /// # Errors
    /// [`VaultError::Key`] when neither is there (the message says what to set), or a
    /// key is unusable.
    pub fn open_shared(dir: &Path) -> Result<Self, VaultError> {
        let source = if std::env::var_os(KEY_ENV).is_some() {
            Source::Env
        } else {
            Source::Dir(dir.to_owned())
        };
        let keys = load(&source, false).map_err(|error| match error {
            VaultError::Key {
                source_name,
                reason,
            } if reason == "missing" => VaultError::Key {
                source_name,
                reason: format!(
                    "missing: with a shared store every node needs the same key; set \
                     {KEY_ENV} (base64 of 32 random bytes, e.g. `head -c32 /dev/urandom | \
                     base64`) on every node, or copy one node's secrets.key into each data \
                     directory"
                ),
            },
            other => other,
        })?;
        Ok(Self {
            source,
            keys: RwLock::new(keys),
        })
    }

    /// A vault holding `key` only (tests, and embedders that manage keys themselves).
    #[must_use]
    pub fn with_key(key: &[u8; 32]) -> Self {
        Self {
            source: Source::Fixed,
            keys: RwLock::new(Keys {
                current: Key::from_bytes(key),
                next: None,
            }),
        }
    }

    /// Seals `plaintext` as the secret of `(kind, tenant, name)`.
    ///
    /// # Errors
    /// [`VaultError::Random`] when the OS cannot give a nonce.
    pub fn seal(
        &self,
        kind: SecretKind,
        tenant: &TenantId,
        name: &str,
        plaintext: &str,
    ) -> Result<String, VaultError> {
        let key = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .current
            .clone();
        seal_with(&key, kind, tenant, name, plaintext)
    }

    /// Opens a stored value of `(kind, tenant, name)`. A value stored before sealing
    /// existed is returned as it is.
    ///
    /// # Errors
    /// [`VaultError::UnknownKey`] when no loaded key (even after reading the key files
    /// again) has its id; [`VaultError::Tampered`] when it does not open.
    pub fn open_value(
        &self,
        kind: SecretKind,
        tenant: &TenantId,
        name: &str,
        stored: &str,
    ) -> Result<String, VaultError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once('.').ok_or(VaultError::Tampered)?;
        let key = match self.key_by_id(id) {
            Some(key) => key,
            None => {
                // A rotation may have happened beside this process.
                self.reload()?;
                self.key_by_id(id)
                    .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?
            }
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| VaultError::Tampered)?;
        let (nonce, ciphertext) = bytes
            .split_at_checked(NONCE_BYTES)
            .ok_or(VaultError::Tampered)?;
        let aad = place(kind, tenant, name);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        String::from_utf8(plain).map_err(|_| VaultError::Tampered)
    }

    /// Opens every value of a tenant's secrets map (`name → stored`).
    ///
    /// # Errors
    /// As [`Vault::open_value`].
    pub fn open_secrets(
        &self,
        tenant: &TenantId,
        stored: std::collections::BTreeMap<String, String>,
    ) -> Result<std::collections::BTreeMap<String, String>, VaultError> {
        stored
            .into_iter()
            .map(|(name, value)| {
                let plain = self.open_value(SecretKind::Tenant, tenant, &name, &value)?;
                Ok((name, plain))
            })
            .collect()
    }

    /// Seals every stored value that is not sealed yet (values written before sealing
    /// existed), in one store transaction; returns how many.
    ///
    /// # Errors
    /// [`VaultError::Store`] when the store fails.
    pub async fn seal_stored(&self, store: &dyn Store) -> Result<usize, VaultError> {
        let mut changed = Vec::new();
        for mut stored in store.stored_secrets().await? {
            if is_sealed(&stored.value) {
                continue;
            }
            stored.value = self.seal(stored.kind, &stored.tenant, &stored.name, &stored.value)?;
            changed.push(stored);
        }
        let count = changed.len();
        if count > 0 {
            store.replace_stored_secrets(changed).await?;
        }
        Ok(count)
    }

    /// Rotates the key: a next key (the one already prepared by a rotation cut short,
    /// else a new one; from `FLUXO_SECRETS_KEY_NEXT` in environment mode), every stored
    /// value re-sealed with it in one transaction, then it becomes the current key.
    /// Returns how many values were re-sealed and the new key's id.
    ///
    /// # Errors
    /// [`VaultError::Key`] in environment mode without `FLUXO_SECRETS_KEY_NEXT`; a value
    /// that does not open; the store; writing the key files.
    pub async fn rotate(&self, store: &dyn Store) -> Result<(usize, String), VaultError> {
        let next = match &self.source {
            Source::Dir(dir) => {
                let path = dir.join(NEXT_KEY_FILE);
                match read_key_file(&path)? {
                    Some(key) => key,
                    None => {
                        let mut bytes = [0u8; 32];
                        getrandom::fill(&mut bytes)
                            .map_err(|error| VaultError::Random(error.to_string()))?;
                        write_key_file(&path, &bytes)?;
                        Key::from_bytes(&bytes)
                    }
                }
            }
            Source::Env => read_key_env(NEXT_KEY_ENV)?.ok_or_else(|| VaultError::Key {
                source_name: NEXT_KEY_ENV.to_owned(),
                reason: "set it to the new key (32 random bytes, base64) to rotate".to_owned(),
            })?,
            Source::Fixed => {
                return Err(VaultError::Key {
                    source_name: "a fixed key".to_owned(),
                    reason: "an embedder's vault is rotated by its embedder".to_owned(),
                });
            }
        };
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next = Some(next.clone());
        let mut resealed = Vec::new();
        for mut stored in store.stored_secrets().await? {
            let plain =
                self.open_value(stored.kind, &stored.tenant, &stored.name, &stored.value)?;
            stored.value = seal_with(&next, stored.kind, &stored.tenant, &stored.name, &plain)?;
            resealed.push(stored);
        }
        let count = resealed.len();
        if count > 0 {
            store.replace_stored_secrets(resealed).await?;
        }
        if let Source::Dir(dir) = &self.source {
            let from = dir.join(NEXT_KEY_FILE);
            let to = dir.join(KEY_FILE);
            std::fs::rename(&from, &to).map_err(|source| VaultError::Io {
                path: to.clone(),
                source,
            })?;
            sync_dir(dir)?;
        }
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.current = next.clone();
        keys.next = None;
        Ok((count, next.id))
    }

    fn key_by_id(&self, id: &str) -> Option<Key> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::iter::once(&keys.current)
            .chain(keys.next.as_ref())
            .find(|key| key.id == id)
            .cloned()
    }

    fn reload(&self) -> Result<(), VaultError> {
        if matches!(self.source, Source::Fixed) {
            return Ok(());
        }
        let keys = load(&self.source, false)?;
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }
}

fn seal_with(
    key: &Key,
    kind: SecretKind,
    tenant: &TenantId,
    name: &str,
    plaintext: &str,
) -> Result<String, VaultError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|error| VaultError::Random(error.to_string()))?;
    let aad = place(kind, tenant, name);
    let ciphertext = key
        .cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Tampered)?;
    let mut body = nonce.to_vec();
    body.extend_from_slice(&ciphertext);
    Ok(format!(
        "{SEALED_PREFIX}{}.{}",
        key.id,
        URL_SAFE_NO_PAD.encode(body)
    ))
}

fn load(source: &Source, create: bool) -> Result<Keys, VaultError> {
    match source {
        Source::Env => {
            let current = read_key_env(KEY_ENV)?.ok_or_else(|| VaultError::Key {
                source_name: KEY_ENV.to_owned(),
                reason: "not set".to_owned(),
            })?;
            Ok(Keys {
                current,
                next: read_key_env(NEXT_KEY_ENV)?,
            })
        }
        Source::Dir(dir) => {
            let path = dir.join(KEY_FILE);
            let current = match read_key_file(&path)? {
                Some(key) => key,
                None if create => {
                    let mut bytes = [0u8; 32];
                    getrandom::fill(&mut bytes)
                        .map_err(|error| VaultError::Random(error.to_string()))?;
                    write_key_file(&path, &bytes)?;
                    Key::from_bytes(&bytes)
                }
                None => {
                    return Err(VaultError::Key {
                        source_name: path.display().to_string(),
                        reason: "missing".to_owned(),
                    });
                }
            };
            Ok(Keys {
                current,
                next: read_key_file(&dir.join(NEXT_KEY_FILE))?,
            })
        }
        Source::Fixed => Err(VaultError::Key {
            source_name: "a fixed key".to_owned(),
            reason: "nothing to load".to_owned(),
        }),
    }
}

fn decode_key(source_name: &str, text: &str) -> Result<Key, VaultError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|error| VaultError::Key {
            source_name: source_name.to_owned(),
            reason: format!("not base64: {error}"),
        })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| VaultError::Key {
        source_name: source_name.to_owned(),
        reason: format!("{} bytes, not 32", bytes.len()),
    })?;
    Ok(Key::from_bytes(&bytes))
}

fn read_key_env(name: &str) -> Result<Option<Key>, VaultError> {
    match std::env::var(name) {
        Ok(text) => decode_key(name, &text).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(VaultError::Key {
            source_name: name.to_owned(),
            reason: "not UTF-8".to_owned(),
        }),
    }
}

fn read_key_file(path: &Path) -> Result<Option<Key>, VaultError> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&path.display().to_string(), &text).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VaultError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a key file mode 0600 (never replacing one: `create_new`), synced with its
/// directory.
fn write_key_file(path: &Path, bytes: &[u8; 32]) -> Result<(), VaultError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| VaultError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(format!("{}\n", STANDARD.encode(bytes)).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| VaultError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The secret-kind name of a stored value, for logs.
#[must_use]
pub fn kind_name(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Tenant => "tenant secret",
        SecretKind::Webhook => "webhook signing secret",
        SecretKind::Hook => "inbound hook secret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        id.parse().unwrap()
    }

    #[test]
    fn sealed_values_open_only_in_their_place_and_hide_the_plaintext() {
        let vault = Vault::with_key(&[7; 32]);
        let sealed = vault
            .seal(
                SecretKind::Tenant,
                &tenant("acme"),
                "crm_token",
                "s3cret-value",
            )
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        let again = vault
            .seal(
                SecretKind::Tenant,
                &tenant("acme"),
                "crm_token",
                "s3cret-value",
            )
            .unwrap();
        assert_ne!(sealed, again, "a fresh nonce every time");
        assert_eq!(
            vault
                .open_value(SecretKind::Tenant, &tenant("acme"), "crm_token", &sealed)
                .unwrap(),
            "s3cret-value"
        );
        for (kind, who, name) in [
            (SecretKind::Tenant, "other", "crm_token"),
            (SecretKind::Tenant, "acme", "billing_token"),
            (SecretKind::Webhook, "acme", "crm_token"),
        ] {
            assert!(matches!(
                vault.open_value(kind, &tenant(who), name, &sealed),
                Err(VaultError::Tampered)
            ));
        }
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(matches!(
            vault.open_value(SecretKind::Tenant, &tenant("acme"), "crm_token", &flipped),
            Err(VaultError::Tampered)
        ));
        let stranger = Vault::with_key(&[9; 32]);
        assert!(matches!(
            stranger.open_value(SecretKind::Tenant, &tenant("acme"), "crm_token", &sealed),
            Err(VaultError::UnknownKey(_))
        ));
        assert_eq!(
            vault
                .open_value(SecretKind::Tenant, &tenant("acme"), "legacy", "plain")
                .unwrap(),
            "plain",
            "values from before sealing read as they are"
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = Vault::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first
            .seal(SecretKind::Webhook, &tenant("acme"), "ep_1", "whsec_abc")
            .unwrap();
        let second = Vault::open(dir.path()).unwrap();
        assert_eq!(
            second
                .open_value(SecretKind::Webhook, &tenant("acme"), "ep_1", &sealed)
                .unwrap(),
            "whsec_abc"
        );
        std::fs::write(dir.path().join(KEY_FILE), "short").unwrap();
        assert!(matches!(
            Vault::open(dir.path()),
            Err(VaultError::Key { .. })
        ));
    }
}

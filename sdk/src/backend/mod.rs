//! The seam between the capability modules and whatever answers them: the real host
//! (through the generated bindings) inside WebAssembly, the mock host of
//! [`crate::testing`] in native tests. Both implement [`Host`], so they cannot drift.

use crate::FieldValue;
use crate::contact::ContactError;
use crate::email::{Email, EmailError};
use crate::http::{HttpError, Request, Response};
use crate::log::Level;
use crate::secrets::SecretError;
use crate::state::{Scope, StateError};

#[cfg(target_arch = "wasm32")]
pub(crate) mod wasm;

/// Every host call an action can make.
pub(crate) trait Host {
    fn http_request(&mut self, request: &Request) -> Result<Response, HttpError>;
    fn email_send(&mut self, email: &Email) -> Result<String, EmailError>;
    fn get_field(&mut self, name: &str) -> Option<FieldValue>;
    fn set_field(&mut self, name: &str, value: &FieldValue) -> Result<(), ContactError>;
    fn add_tag(&mut self, tag: &str) -> Result<(), ContactError>;
    fn remove_tag(&mut self, tag: &str) -> Result<(), ContactError>;
    fn has_tag(&mut self, tag: &str) -> bool;
    fn tags(&mut self) -> Vec<String>;
    fn log(&mut self, level: Level, message: &str);
    fn state_get(&mut self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    fn state_set(
        &mut self,
        scope: Scope,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u32>,
    ) -> Result<(), StateError>;
    fn state_delete(&mut self, scope: Scope, key: &str) -> Result<bool, StateError>;
    fn secret(&mut self, name: &str) -> Result<String, SecretError>;
}

/// Runs `call` against the host of this build.
#[cfg(target_arch = "wasm32")]
pub(crate) fn with<R>(call: impl FnOnce(&mut dyn Host) -> R) -> R {
    call(&mut wasm::WasmHost)
}

/// Runs `call` against the mock host of the current thread.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn with<R>(call: impl FnOnce(&mut dyn Host) -> R) -> R {
    crate::testing::with_current(call)
}

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

// The generated bindings name this crate by its public path, as guests see it.
extern crate self as fluxo_sdk;

mod backend;
pub mod contact;
pub mod email;
mod error;
mod event;
pub mod http;
pub mod log;
mod outcome;
pub mod secrets;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod value;

pub use error::{Error, Result};
pub use event::{Contact, Event, Message, Trigger};
pub use fluxo_sdk_macros::action;
pub use outcome::{IntoOutcome, Outcome};
pub use value::{DateTime, FieldValue};

/// Everything an action usually needs, in one `use`.
pub mod prelude {
    pub use crate::state::Scope;
    pub use crate::{
        Error, Event, FieldValue, Outcome, Result, action, contact, email, http, log, secrets,
        state,
    };
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
}

/// Support for the `#[action]` macro; not part of the API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::backend::wasm::{bindings, bindings::Guest, run_action};
    #[cfg(target_arch = "wasm32")]
    pub use bindings::export_action;
    #[cfg(target_arch = "wasm32")]
    pub use bindings::fluxo::action::types::{
        ActionError as WitActionError, Event as WitEvent, Outcome as WitOutcome,
    };
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;
}

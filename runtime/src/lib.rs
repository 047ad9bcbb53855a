//! Fluxo's host: runs tenant-written actions as WebAssembly components in a sandbox.
//!
//! A chat platform embeds this crate (or runs the `fluxo` binary beside it). It loads a
//! tenant's component — checked against the `fluxo:action` world and compiled once —
//! and runs it for an [`Event`] in a fresh store with a fuel budget, a wall-clock
//! deadline, memory and table limits, host-call quotas and timeouts. The action's field,
//! tag, state and e-mail writes are journaled and applied through the platform's
//! [`ContactStore`], [`StateStore`] and [`Mailer`] only when the run succeeds. The result
//! is a [`RunReport`]: outcome or typed error, effects, HTTP exchanges, logs, usage.
//!
//! The map of the crate and its invariants are in `ARCHITECTURE.md` at the repository root.

mod bindings;
pub mod config;
pub mod delivery;
mod engine;
mod error;
mod event;
mod executor;
pub mod host;
mod journal;
pub mod metrics;
pub mod registry;
mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;

pub use config::{AllowRule, Config, HttpPolicy, LimitOverrides, Limits, Quotas};
pub use engine::{EPOCH_TICK, EngineOptions, MAX_MEMORY_BYTES, Metering};
pub use error::{Error, Result};
pub use event::{Contact, Event, FieldValue, Message, Trigger};
pub use executor::limits::Quota;
pub use executor::report::{ErrorKind, RunError, RunOutcome, RunReport, RunStatus, Usage};
pub use host::contact::{ContactStore, MemoryContacts};
pub use host::email::{Mailer, Outbox};
pub use host::http::resolve::{Resolve, SystemResolver};
pub use host::secrets::{SecretSource, StaticSecrets};
pub use host::state::{MemoryState, StateStore, StateUsage};
pub use host::{BackendError, BoxFuture};
pub use journal::{Effect, OutgoingEmail, StateScope, apply_to_contact};
pub use registry::{ActionComponent, DEFAULT_MAX_COMPONENT_BYTES, Registry, RegistryError};
pub use runtime::{RunOptions, Runtime, RuntimeBuilder};

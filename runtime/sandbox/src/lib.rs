//! Fluxo's sandbox: runs tenant-written actions as WebAssembly components.
//!
//! A [`Sandbox`] loads a tenant's component — checked against the `fluxo:action` world
//! and compiled once — and executes it for an [`Event`] in a fresh store with a fuel
//! budget, a wall-clock deadline, memory and table limits, host-call quotas and
//! timeouts. What a run may do lives in [`RunContext`] (no wasm in it: workflow blocks
//! use it too); the WIT glue only converts types. [`Sandbox::execute`] returns an
//! [`Execution`] and commits nothing; [`Runtime`] is the embedder's convenience that also
//! applies a successful run's effects through the platform's traits.
//!
//! This crate is what an embedder depends on: no HTTP server, SQL, SMTP or CLI.
//! `ARCHITECTURE.md` at the repository root maps the crates and their invariants.

mod bindings;
mod bounded;
pub mod context;
pub mod engine;
mod execute;
mod limiter;
pub mod load;
pub mod platform;
pub mod redact;
mod runtime;
mod wasm;

pub use context::{CapResult, Capabilities, HttpReplay, RunContext, RunMeta};
pub use engine::{EPOCH_TICK, EngineOptions, MAX_MEMORY_BYTES, Metering, PoolShape};
pub use execute::{Execution, Sandbox};
pub use fluxo_core::{
    ActionName, Blame, Contact, ContactId, Effect, ErrorKind, Event, FieldValue, HttpExchange,
    Input, Journal, LimitOverrides, Limits, LogLevel, LogLine, LogSource, Message, OutgoingEmail,
    Quota, Quotas, RunError, RunId, RunOutcome, RunReport, RunStatus, StateScope, TenantId,
    Trigger, Usage,
};
pub use fluxo_egress::{AllowRule, HttpPolicy};
pub use load::{ActionComponent, DEFAULT_MAX_COMPONENT_BYTES, LoadError};
pub use platform::{
    BackendError, ContactStore, Mailer, MemoryContacts, MemoryMailer, MemoryState, SecretSource,
    StateReader, StateStore, StaticSecrets,
};
pub use redact::{Redactor, Secrets};
pub use runtime::{Config, RunOptions, Runtime, RuntimeBuilder};

/// Why a sandbox or runtime could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The configuration is inconsistent (a zero limit, a bad rule, a deadline past the
    /// ceiling).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The engine could not be built (pool sizes this machine cannot reserve, say).
    #[error("could not build the wasm engine: {0}")]
    Engine(String),
}

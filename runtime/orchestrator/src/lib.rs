//! Fluxo's orchestrator: everything between an API request and a committed run.
//!
//! - [`registry`]: uploads checked, compiled (out of process, bounded, one compile per
//!   component at a time) into a local artifact cache written atomically and verified
//!   before loading; versions and their lifecycle.
//! - [`scheduler`]: the durable queue's producer and this node's workers — claim, execute
//!   in the sandbox, commit through the ledger — with leases, heartbeats, retries,
//!   cancellation and graceful shutdown.
//! - [`dispatch`]: the outbox's delivery loop (SMTP e-mails, signed completion webhooks).
//! - [`signing`]: Standard Webhooks signatures, and the verifier receivers can use.
//! - [`vault`]: secrets sealed at rest (XChaCha20-Poly1305), the key outside the store.
//! - [`metrics`], [`maintenance`]: observability and upkeep.

pub mod adapters;
pub mod dispatch;
pub mod maintenance;
pub mod metrics;
pub mod registry;
pub mod scheduler;
pub mod signing;
pub mod vault;
pub mod workflow_run;

pub use registry::{Registry, RegistryError, RegistryOptions};
pub use scheduler::{Scheduler, SchedulerOptions, SubmitError};
pub use vault::{Vault, VaultError};

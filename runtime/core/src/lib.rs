//! Fluxo's core types, shared by every other crate: identifiers, the event, field values,
//! limits and quotas, the effects journal, run errors with their blame, and the records
//! of a run. No engine, no async runtime, no SQL, no HTTP.
//!
//! Everything here round-trips through serde: JSON for reports and the API, MessagePack
//! ([`codec`]) for stored records.

pub mod codec;
pub mod effect;
pub mod event;
pub mod ids;
pub mod json;
pub mod limits;
pub mod outcome;
pub mod record;
pub mod value;

pub use effect::{
    Effect, Journal, MessageKind, OutgoingEmail, PlatformMessage, RunRequest, StateKey, StateScope,
    StateUsage, apply_to_contact,
};
pub use event::{Contact, Event, Input, MAX_RUN_DEPTH, MAX_RUNS_PER_TREE, Message, Trigger};
pub use ids::{ActionName, ContactId, InvalidId, RunId, TenantId};
pub use limits::{Counters, InvalidLimit, LimitHit, LimitOverrides, Limits, Quota, Quotas};
pub use outcome::{Blame, ErrorKind, RunError, RunOutcome, Usage};
pub use record::{BodyEncoding, HttpExchange, LogLevel, LogLine, LogSource, RunReport, RunStatus};
pub use value::{Bytes, FieldValue};
pub mod retry;
pub use retry::RetryPolicy;

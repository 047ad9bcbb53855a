//! How records are spelled in SQL columns, shared by the SQL backends so both read and
//! write the same text: a run's mode, its target, its id, an outbox row's status. A
//! value that does not parse is [`StoreError::corrupt`], never a guess.

use fluxo_core::RunId;

use crate::{OutboxStatus, RunMode, RunTarget, StoreError};

/// `run` or `test`.
#[must_use]
pub fn mode_text(mode: RunMode) -> &'static str {
    match mode {
        RunMode::Run => "run",
        RunMode::Test => "test",
    }
}

/// The mode stored as [`mode_text`].
///
/// # Errors
/// Corrupt when it is neither.
pub fn parse_mode(text: &str) -> Result<RunMode, StoreError> {
    match text {
        "run" => Ok(RunMode::Run),
        "test" => Ok(RunMode::Test),
        other => Err(StoreError::corrupt("run mode", format!("{other:?}"))),
    }
}

/// A target as its `(kind, name, version)` columns.
#[must_use]
pub fn target_columns(target: &RunTarget) -> (&'static str, String, i64) {
    match target {
        RunTarget::Action { name, version } => ("action", name.to_string(), i64::from(*version)),
    }
}

/// The target stored as [`target_columns`].
///
/// # Errors
/// Corrupt for an unknown kind, a bad name or a version out of range.
pub fn target_of(kind: &str, name: &str, version: i64) -> Result<RunTarget, StoreError> {
    let name = name
        .parse()
        .map_err(|error| StoreError::corrupt("run target", error))?;
    let version =
        u32::try_from(version).map_err(|error| StoreError::corrupt("run version", error))?;
    match kind {
        "action" => Ok(RunTarget::Action { name, version }),
        other => Err(StoreError::corrupt("run target", format!("kind {other:?}"))),
    }
}

/// A run id stored as text.
///
/// # Errors
/// Corrupt when it is not one.
pub fn parse_id(text: &str) -> Result<RunId, StoreError> {
    RunId::parse(text).map_err(|error| StoreError::corrupt("run id", error))
}

/// An outbox row's status: `queued`, `sending`, `sent` or `failed`.
///
/// # Errors
/// Corrupt for anything else.
pub fn parse_outbox_status(text: &str) -> Result<OutboxStatus, StoreError> {
    Ok(match text {
        "queued" => OutboxStatus::Queued,
        "sending" => OutboxStatus::Sending,
        "sent" => OutboxStatus::Sent,
        "failed" => OutboxStatus::Failed,
        other => return Err(StoreError::corrupt("outbox status", format!("{other:?}"))),
    })
}

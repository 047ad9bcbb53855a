//! Log lines captured into the run record (WIT `fluxo:action/log`).
//!
//! The host keeps a capped number of bytes per run and redacts secret values.

use crate::backend;

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine-grained tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// A failure.
    Error,
}

/// Records one line at `level`.
pub fn write(level: Level, message: &str) {
    backend::with(|host| host.log(level, message));
}

/// Records a trace line.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Records a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Records an info line.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Records a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Records an error line.
pub fn error(message: &str) {
    write(Level::Error, message);
}

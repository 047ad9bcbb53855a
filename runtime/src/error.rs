//! The library's error type, for everything except the outcome of a run (a failed run is
//! a [`crate::RunReport`] with a [`crate::RunError`], not an `Err`).

use std::path::PathBuf;

/// What can go wrong setting up the runtime or loading a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is inconsistent (a zero limit, a bad CIDR, a bad rule).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration file could not be read or parsed.
    #[error("could not read configuration {path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bytes are not a component Fluxo can run; the reason says why.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component is larger than the configured cap.
    #[error("component is {size} bytes, over the {limit}-byte cap")]
    ComponentTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The component imports an interface outside the `fluxo:action` world.
    #[error("component imports {import:?}, which is outside the fluxo:action world{}", others_suffix(.others))]
    ForbiddenImport {
        /// The first offending import.
        import: String,
        /// Further offending imports.
        others: Vec<String>,
    },
    /// The engine could not be built (bad pooling sizes for this machine, for example).
    #[error("could not build the wasm engine: {0}")]
    Engine(String),
}

fn others_suffix(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", others.join(", "))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The store port's error: opaque, with the kinds callers decide on. No backend type
//! crosses it; the backend's error is kept as the source, for logs.

use std::fmt;

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The thing asked for does not exist.
    NotFound,
    /// The write conflicts with what is stored (a duplicate, a state that moved on).
    Conflict,
    /// The store is busy or unreachable; retrying may help.
    Transient,
    /// The store refused the operation for good.
    Permanent,
    /// The caller's lease on a run or outbox row is gone (it expired, or a newer holder
    /// took it): the caller must stop and write nothing.
    LeaseLost,
    /// A stored record does not decode: an error, never read as an empty record.
    Corrupt,
    /// A limit on what may wait is reached (a tenant's backlog): retry later.
    Overloaded,
}

/// A failure of a store backend.
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, keeping the backend's error as its source.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// [`StoreErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::NotFound, message)
    }

    /// [`StoreErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Conflict, message)
    }

    /// [`StoreErrorKind::Transient`].
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Transient, message)
    }

    /// [`StoreErrorKind::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Permanent, message)
    }

    /// [`StoreErrorKind::LeaseLost`].
    pub fn lease_lost(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::LeaseLost, message)
    }

    /// [`StoreErrorKind::Corrupt`], naming the record.
    pub fn corrupt(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::new(
            StoreErrorKind::Corrupt,
            format!("stored {what} is corrupt: {reason}"),
        )
    }

    /// Whether the thing asked for does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }

    /// Whether the write conflicts with what is stored.
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        self.kind == StoreErrorKind::Conflict
    }

    /// Whether retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }

    /// Whether the caller's lease is gone.
    #[must_use]
    pub fn is_lease_lost(&self) -> bool {
        self.kind == StoreErrorKind::LeaseLost
    }

    /// [`StoreErrorKind::Overloaded`].
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Overloaded, message)
    }

    /// Whether a limit on what may wait is reached.
    #[must_use]
    pub fn is_overloaded(&self) -> bool {
        self.kind == StoreErrorKind::Overloaded
    }

    /// Whether a stored record does not decode.
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        self.kind == StoreErrorKind::Corrupt
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("StoreError");
        debug
            .field("kind", &self.kind)
            .field("message", &self.message);
        if let Some(source) = &self.source {
            debug.field("source", &source.to_string());
        }
        debug.finish()
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<fluxo_core::codec::CodecError> for StoreError {
    fn from(error: fluxo_core::codec::CodecError) -> Self {
        Self::corrupt(error.what, &error.reason)
    }
}

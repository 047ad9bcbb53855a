//! The stored record format: MessagePack with field names (`rmp-serde`'s named form), so
//! records are compact, keep bytes as bytes, and read back after fields are added.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{what} record: {reason}")]
pub struct CodecError {
    /// Which record (`event`, `journal`).
    pub what: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// Encodes `value` as a MessagePack record.
///
/// # Errors
/// [`CodecError`] when a value cannot be represented (a map with non-string keys).
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|error| CodecError {
        what,
        reason: error.to_string(),
    })
}

/// Decodes a MessagePack record.
///
/// # Errors
/// [`CodecError`] when the bytes are not a record of this type: callers treat it as a
/// corrupt record, never as an empty one.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|error| CodecError {
        what,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{LimitOverrides, Limits};

    #[test]
    fn records_round_trip_and_corrupt_ones_are_errors() {
        let limits = Limits::default();
        let bytes = encode("limits", &limits).unwrap();
        assert_eq!(decode::<Limits>("limits", &bytes).unwrap(), limits);
        assert!(decode::<Limits>("limits", &bytes[..bytes.len() / 2]).is_err());
        let unknown = encode("x", &serde_json::json!({ "fuel_units": 5 })).unwrap();
        assert!(decode::<LimitOverrides>("limit overrides", &unknown).is_err());
    }
}

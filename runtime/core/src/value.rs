//! Values a run reads and writes: typed contact fields, and byte strings that survive
//! every record format.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A typed contact field value. JSON: `"text"`, `1.5`, `true`, `null`, or
/// `{"date_time": "2026-11-25T10:00:00Z"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FieldValue {
    /// Free text.
    Text(String),
    /// A number.
    Number(f64),
    /// A yes/no flag.
    Bool(bool),
    /// A timestamp, RFC 3339.
    DateTime {
        /// The timestamp text.
        date_time: String,
    },
    /// No value; setting it clears the field.
    Null,
}

impl FieldValue {
    /// The text, when this is a text value.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The value's size in bytes as limits count it: text and timestamps by their
    /// length, numbers 8, flags and null 1.
    #[must_use]
    pub fn size(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::DateTime { date_time } => date_time.len(),
            Self::Number(_) => 8,
            Self::Bool(_) | Self::Null => 1,
        }
    }

    /// The value as JSON (`{"date_time": …}` for timestamps).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Text(text) => serde_json::Value::String(text.clone()),
            Self::Number(number) => serde_json::Number::from_f64(*number)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Self::Bool(flag) => serde_json::Value::Bool(*flag),
            Self::DateTime { date_time } => serde_json::json!({ "date_time": date_time }),
            Self::Null => serde_json::Value::Null,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

/// A byte string (a state value) that round-trips losslessly through every format the
/// project writes.
///
/// In MessagePack (stored records) it is a `bin` value. In JSON (reports, the API) it
/// is `{"text": "…"}` when the bytes are UTF-8, so people can read it, and
/// `{"base64": "…"}` otherwise; both read back to the same bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// How many bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "b{text:?}"),
            Err(_) => write!(f, "{} bytes", self.0.len()),
        }
    }
}

/// The JSON form of [`Bytes`], for the API document: UTF-8 text as `{"text": …}`,
/// anything else as `{"base64": …}` (standard alphabet, padded).
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = Bytes)]
#[expect(dead_code, reason = "a schema for the document, never built")]
pub(crate) enum BytesJson {
    /// UTF-8 text.
    Text {
        /// The text.
        text: String,
    },
    /// Any other bytes.
    Base64 {
        /// The bytes, base64.
        base64: String,
    },
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(&self.0);
        }
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(1))?;
        match std::str::from_utf8(&self.0) {
            Ok(text) => map.serialize_entry("text", text)?,
            Err(_) => map.serialize_entry("base64", &BASE64.encode(&self.0))?,
        }
        map.end()
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes, or {\"text\": …} or {\"base64\": …}")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Bytes(bytes))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom("expected a `text` or `base64` entry"));
        };
        let value: String = map.next_value()?;
        let bytes = match key.as_str() {
            "text" => value.into_bytes(),
            "base64" => BASE64
                .decode(value.as_bytes())
                .map_err(|error| de::Error::custom(format!("bad base64: {error}")))?,
            other => return Err(de::Error::unknown_field(other, &["text", "base64"])),
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom("expected exactly one entry"));
        }
        Ok(Bytes(bytes))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`: inside tagged enums serde buffers the input, and the buffer
        // claims to be human-readable whatever the format was.
        deserializer.deserialize_any(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_readable_in_json_and_binary_in_messagepack() {
        let text = Bytes(b"3".to_vec());
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"text":"3"}"#);
        let binary = Bytes(vec![0xff, 0x00, 0x80]);
        assert_eq!(
            serde_json::to_string(&binary).unwrap(),
            r#"{"base64":"/wCA"}"#
        );
        for bytes in [text, binary, Bytes::default()] {
            let json = serde_json::to_string(&bytes).unwrap();
            assert_eq!(serde_json::from_str::<Bytes>(&json).unwrap(), bytes);
            let packed = rmp_serde::to_vec_named(&bytes).unwrap();
            assert_eq!(rmp_serde::from_slice::<Bytes>(&packed).unwrap(), bytes);
        }
    }

    #[test]
    fn field_values_parse_from_their_json_forms() {
        let values: Vec<FieldValue> = serde_json::from_str(
            r#"["Ana", 31, true, {"date_time": "2026-01-01T00:00:00Z"}, null]"#,
        )
        .unwrap();
        assert_eq!(
            values,
            [
                FieldValue::from("Ana"),
                FieldValue::Number(31.0),
                FieldValue::Bool(true),
                FieldValue::DateTime {
                    date_time: "2026-01-01T00:00:00Z".into()
                },
                FieldValue::Null
            ]
        );
        for value in values {
            let packed = rmp_serde::to_vec_named(&value).unwrap();
            assert_eq!(rmp_serde::from_slice::<FieldValue>(&packed).unwrap(), value);
        }
    }
}

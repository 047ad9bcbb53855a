//! Typed contact field values (WIT `types.field-value`).

use serde::{Deserialize, Serialize};

/// The value of a contact field: typed, not stringly typed.
///
/// In JSON a value is written naturally — `"Ana"`, `42`, `true`, `null` — and a date-time
/// as `{"date_time": "2026-11-25T10:00:00Z"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// Free text.
    Text(String),
    /// A number.
    Number(f64),
    /// A yes/no flag.
    Bool(bool),
    /// A point in time, RFC 3339.
    DateTime(DateTime),
    /// An empty value; setting it clears the field.
    Null,
}

/// An RFC 3339 timestamp carried as text (`{"date_time": "…"}` in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateTime {
    /// The timestamp, e.g. `2026-11-25T10:00:00Z`.
    pub date_time: String,
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

    /// The number, when this is a number value.
    #[must_use]
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// The flag, when this is a boolean value.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(flag) => Some(*flag),
            _ => None,
        }
    }

    /// A date-time value from an RFC 3339 string.
    #[must_use]
    pub fn date_time(rfc3339: impl Into<String>) -> Self {
        Self::DateTime(DateTime {
            date_time: rfc3339.into(),
        })
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

impl From<&String> for FieldValue {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<f64> for FieldValue {
    fn from(number: f64) -> Self {
        Self::Number(number)
    }
}

impl From<i32> for FieldValue {
    fn from(number: i32) -> Self {
        Self::Number(f64::from(number))
    }
}

impl From<bool> for FieldValue {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}

impl<T: Into<FieldValue>> From<Option<T>> for FieldValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_are_natural() {
        let values: Vec<FieldValue> = serde_json::from_str(
            r#"["Ana", 4.5, true, null, {"date_time": "2026-11-25T10:00:00Z"}]"#,
        )
        .unwrap_or_default();
        assert_eq!(
            values,
            vec![
                FieldValue::from("Ana"),
                FieldValue::Number(4.5),
                FieldValue::Bool(true),
                FieldValue::Null,
                FieldValue::date_time("2026-11-25T10:00:00Z"),
            ]
        );
    }
}

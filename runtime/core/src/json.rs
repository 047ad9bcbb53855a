//! Reading JSON from the outside (events, API bodies) without losing a customer's
//! message to an encoding slip: an unpaired UTF-16 surrogate escape (`\ud83d` — what a
//! JavaScript client writes after cutting an emoji in half) is replaced by U+FFFD, the
//! replacement character, and reported, instead of failing the whole document; and a
//! document that does not fit names the field and the position that failed.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() || path == "." { String::new() } else { format!("at `{path}`: ") })]
pub struct JsonError {
    /// Where it failed (`contact.id`, `input`), empty for the document itself.
    pub path: String,
    /// What failed, with the line and column.
    pub message: String,
}

/// A document read: the value and what was changed while reading it.
#[derive(Debug)]
pub struct Lenient<T> {
    /// The value.
    pub value: T,
    /// One line per change (an unpaired surrogate replaced), for the run's log.
    pub warnings: Vec<String>,
}

/// Parses `bytes` as `T`, replacing unpaired surrogate escapes with `\ufffd`.
///
/// # Errors
/// [`JsonError`] naming the failing field and position.
pub fn from_slice_lenient<T: DeserializeOwned>(bytes: &[u8]) -> Result<Lenient<T>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|error| JsonError {
        path: String::new(),
        message: format!("the body is not UTF-8: {error}"),
    })?;
    let (text, replaced) = replace_lone_surrogates(text);
    let value = from_str_strict(&text)?;
    let warnings = if replaced == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{replaced} unpaired UTF-16 surrogate escape(s) in the input replaced by U+FFFD"
        )]
    };
    Ok(Lenient { value, warnings })
}

/// Parses `text` as `T`, naming the failing field's path on error.
///
/// # Errors
/// [`JsonError`] naming the failing field and position.
pub fn from_str_strict<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| JsonError {
        path: error.path().to_string(),
        message: error.inner().to_string(),
    })?;
    deserializer.end().map_err(|error| JsonError {
        path: String::new(),
        message: error.to_string(),
    })?;
    Ok(value)
}

/// `text` with every `\uXXXX` escape of an unpaired surrogate replaced by `\ufffd`, and
/// how many were replaced. Pairs (a high surrogate escape followed by a low one) and
/// everything outside escapes are left as they are.
#[must_use]
pub fn replace_lone_surrogates(text: &str) -> (Cow<'_, str>, usize) {
    if !text.contains("\\u") && !text.contains("\\U") {
        return (Cow::Borrowed(text), 0);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut replaced = 0;
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if bytes.get(at) != Some(&b'\\') {
            at += 1;
            continue;
        }
        let Some(unit) = escape_at(bytes, at) else {
            // Some other escape (`\\`, `\"`, `\n`, …): skip both characters.
            at += 2;
            continue;
        };
        let paired = (0xD800..=0xDBFF).contains(&unit)
            && escape_at(bytes, at + 6).is_some_and(|next| (0xDC00..=0xDFFF).contains(&next));
        if paired {
            at += 12;
            continue;
        }
        if (0xD800..=0xDFFF).contains(&unit) {
            out.push_str(text.get(copied..at).unwrap_or_default());
            out.push_str("\\ufffd");
            replaced += 1;
            copied = at + 6;
        }
        at += 6;
    }
    if replaced == 0 {
        return (Cow::Borrowed(text), 0);
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    (Cow::Owned(out), replaced)
}

/// The code unit of a `\uXXXX` escape starting at `at`.
fn escape_at(bytes: &[u8], at: usize) -> Option<u32> {
    if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
        return None;
    }
    let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_emoji_is_replaced_and_reported() {
        let body = br#"{"message": {"text": "obrigado \ud83d"}}"#;
        let read: Lenient<serde_json::Value> = from_slice_lenient(body).unwrap();
        assert_eq!(read.value["message"]["text"], "obrigado \u{fffd}");
        assert_eq!(read.warnings.len(), 1);
        let low = br#"{"t": "\udc4b tail"}"#;
        let read: Lenient<serde_json::Value> = from_slice_lenient(low).unwrap();
        assert_eq!(read.value["t"], "\u{fffd} tail");
    }

    #[test]
    fn pairs_and_other_escapes_are_untouched() {
        for text in [
            r#"{"t": "hi \ud83d\udc4b"}"#,
            r#"{"t": "a \\ud83d b"}"#,
            r#"{"t": "\n\"\u00e9"}"#,
        ] {
            let (out, replaced) = replace_lone_surrogates(text);
            assert_eq!((out.as_ref(), replaced), (text, 0), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
        let read: Lenient<serde_json::Value> =
            from_slice_lenient(br#"{"t": "hi \ud83d\udc4b"}"#).unwrap();
        assert_eq!(read.value["t"], "hi 👋");
        assert!(read.warnings.is_empty());
    }

    #[test]
    fn errors_name_the_field_and_position() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code, reason = "only parsed")]
        struct Body {
            contact: crate::event::Contact,
        }
        let error = from_slice_lenient::<Body>(br#"{"contact": {"id": ""}}"#).unwrap_err();
        assert_eq!(error.path, "contact.id");
        assert!(error.message.contains("column"), "{error}");
        let error = from_slice_lenient::<Body>(b"{\"contact\": ").unwrap_err();
        assert!(error.message.contains("EOF"), "{error}");
    }
}

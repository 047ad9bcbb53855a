//! Keeps secrets out of every record: the tenant's secret values (and the forms they
//! take on the wire) are replaced by [`REDACTED`], and credential headers are masked by
//! name whatever their value.
//!
//! Derived forms: a secret sent as HTTP Basic auth or in a token is base64 of a larger
//! string, so each secret is also matched as base64 and base64url at each of the three
//! byte alignments (the characters that depend on the secret alone), percent-encoded
//! (upper- and lower-case escapes, `+` for space as in forms), and hex (both cases).
//! All forms are found in one pass with Aho–Corasick.

use std::collections::BTreeMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use fluxo_core::{BodyEncoding, Effect, FieldValue, HttpExchange, LogLine};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest derived (encoded) form matched: shorter fragments would also match
/// innocent text.
const MIN_DERIVED_CHARS: usize = 6;

/// Whether a header's value is a credential, by its name: `authorization`,
/// `proxy-authorization`, `cookie`, `set-cookie`, and any name containing `key`,
/// `token`, `secret`, `auth` or `session` (`x-api-key`, `x-auth-token`, `x-session-id`).
#[must_use]
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "cookie" | "set-cookie")
        || ["key", "token", "secret", "auth", "session"]
            .iter()
            .any(|part| name.contains(part))
}

/// A credential header's value, masked. `Authorization` and `Proxy-Authorization` keep
/// their authentication scheme (`Bearer abc` → `Bearer [REDACTED]`: RFC 9110 §11.6.2,
/// the scheme names a method and says nothing secret); every other value is replaced
/// whole, since any part of it may be the secret.
fn masked_credential(name: &str, value: &str) -> String {
    let keeps_scheme = name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization");
    match value.split_once(' ') {
        Some((scheme, _))
            if keeps_scheme
                && !scheme.is_empty()
                && scheme.len() <= 16
                && scheme.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

/// A tenant's secrets by name. `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Arc<BTreeMap<String, String>>);

impl Secrets {
    /// The secrets `by_name`.
    #[must_use]
    pub fn new(by_name: BTreeMap<String, String>) -> Self {
        Self(Arc::new(by_name))
    }

    /// The value of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every value.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `value` to be redacted like a secret without a name any call can read (it
    /// is stored under a name with a NUL, which no secret name may hold): a credential
    /// the run obtained, such as an OAuth 2.0 access token. A value already held is not
    /// added again.
    ///
    /// Values shorter than 8 bytes are not added (the API's own minimum for a secret):
    /// they would match innocent text, and redaction would mangle every record.
    pub fn redact_also(&mut self, value: &str) {
        if value.len() < 8 || self.0.values().any(|held| held == value) {
            return;
        }
        let map = Arc::make_mut(&mut self.0);
        let name = format!("\0obtained:{}", map.len());
        map.insert(name, value.to_owned());
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Replaces secrets, in every form, in the text of records.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<Arc<AhoCorasick>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("active", &self.matcher.is_some())
            .finish()
    }
}

impl Redactor {
    /// A redactor for `secrets` (empty values are ignored).
    #[must_use]
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            patterns.extend(forms(secret));
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Self::default();
        }
        // Leftmost-longest: where one form contains another, the longer one is replaced
        // whole.
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()
            .map(Arc::new);
        Self { matcher }
    }

    /// True when there is nothing to redact.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every form of every secret replaced.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        self.redact_in_place(&mut text);
        text
    }

    /// Redacts `text` where it is; allocates only when a secret is found.
    pub fn redact_in_place(&self, text: &mut String) {
        self.replace_in_text(text);
    }

    /// Redacts bytes: the UTF-8 parts are redacted as text, the rest kept.
    pub fn redact_bytes(&self, bytes: &mut Vec<u8>) {
        self.replace_in_bytes(bytes);
    }

    /// Replaces every form of every secret in `text`; whether one was found.
    fn replace_in_text(&self, text: &mut String) -> bool {
        let Some(matcher) = &self.matcher else {
            return false;
        };
        let found = matcher.is_match(text.as_str());
        if found {
            let replacements = vec![REDACTED; matcher.patterns_len()];
            *text = matcher.replace_all(text, &replacements);
        }
        found
    }

    /// Replaces every form of every secret in `bytes`; whether one was found.
    fn replace_in_bytes(&self, bytes: &mut Vec<u8>) -> bool {
        let Some(matcher) = &self.matcher else {
            return false;
        };
        let found = matcher.is_match(bytes.as_slice());
        if found {
            let replacements = vec![REDACTED.as_bytes(); matcher.patterns_len()];
            *bytes = matcher.replace_all_bytes(bytes, &replacements);
        }
        found
    }

    /// Redacts every string inside a JSON value (keys included).
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(text) => self.redact_in_place(text),
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| self.redact_json(item));
            }
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.redact_json(&mut item);
                    map.insert(self.redact(&key), item);
                }
            }
            _ => {}
        }
    }

    /// Redacts an effect's text and bytes.
    pub fn redact_effect(&self, effect: &mut Effect) {
        if self.is_empty() {
            return;
        }
        match effect {
            Effect::SetField { name, value } => {
                self.redact_in_place(name);
                match value {
                    FieldValue::Text(text) => self.redact_in_place(text),
                    FieldValue::DateTime { date_time } => self.redact_in_place(date_time),
                    _ => {}
                }
            }
            Effect::AddTag { tag } | Effect::RemoveTag { tag } => self.redact_in_place(tag),
            Effect::SetState { key, value, .. } => {
                self.redact_in_place(key);
                self.redact_bytes(&mut value.0);
            }
            Effect::DeleteState { key, .. } => self.redact_in_place(key),
            Effect::SendEmail(email) => {
                for address in email.to.iter_mut().chain(email.cc.iter_mut()) {
                    self.redact_in_place(address);
                }
                for text in [&mut email.reply_to, &mut email.html].into_iter().flatten() {
                    self.redact_in_place(text);
                }
                self.redact_in_place(&mut email.subject);
                self.redact_in_place(&mut email.text);
            }
            Effect::SendMessage(message) => {
                for text in [&mut message.to, &mut message.service]
                    .into_iter()
                    .flatten()
                {
                    self.redact_in_place(text);
                }
                self.redact_in_place(&mut message.text);
            }
            Effect::StartRun(request) => self.redact_json(&mut request.input),
        }
    }

    /// Redacts a log line.
    pub fn redact_log(&self, line: &mut LogLine) {
        self.redact_in_place(&mut line.message);
    }

    /// Masks credential headers by name and redacts the rest of an exchange.
    pub fn redact_exchange(&self, exchange: &mut HttpExchange) {
        for (name, value) in exchange
            .request_headers
            .iter_mut()
            .chain(exchange.response_headers.iter_mut())
        {
            if is_credential_header(name) {
                *value = masked_credential(name, value);
            } else {
                self.redact_in_place(value);
            }
        }
        if self.is_empty() {
            return;
        }
        self.redact_in_place(&mut exchange.url);
        exchange
            .redirects
            .iter_mut()
            .for_each(|url| self.redact_in_place(url));
        if let Some(error) = &mut exchange.error {
            self.redact_in_place(error);
        }
        let redacted = match exchange.response_body_encoding {
            BodyEncoding::Text => self.replace_in_text(&mut exchange.response_body),
            // The secret is matched in the bytes, not in their base64.
            BodyEncoding::Base64 => match exchange.response_body_bytes() {
                Some(mut bytes) => {
                    let found = self.replace_in_bytes(&mut bytes);
                    if found {
                        exchange.response_body = STANDARD.encode(&bytes);
                    }
                    found
                }
                // Not base64 (a record made elsewhere): nothing in it can be checked.
                None => {
                    exchange.response_body = STANDARD.encode(REDACTED);
                    true
                }
            },
        };
        exchange.response_body_redacted |= redacted;
    }
}

/// Every form of `secret` that is matched.
fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut forms = vec![secret.to_owned()];
    let percent: String = url::form_urlencoded::byte_serialize(bytes).collect();
    let strict = percent_escape(bytes);
    forms.extend([
        percent.clone(),
        lower_escapes(&percent),
        strict.clone(),
        lower_escapes(&strict),
    ]);
    // As a JSON string's content (a secret holding `"`, `\` or a control character,
    // written into a JSON body).
    if let Some(escaped) = serde_json::to_string(secret).ok().and_then(|quoted| {
        quoted
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .map(str::to_owned)
    }) {
        forms.push(escaped);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(hex.to_ascii_uppercase());
    forms.push(hex);
    for alignment in 0..3 {
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            if let Some(core) = base64_core(bytes, alignment, engine) {
                forms.push(core);
            }
        }
    }
    forms.retain(|form| form == secret || form.len() >= MIN_DERIVED_CHARS);
    forms
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn percent_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `%2F` → `%2f`: the same escapes in lower case.
fn lower_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(digit) = chars.next() {
                    out.push(digit.to_ascii_lowercase());
                }
            }
        }
    }
    out
}

/// The base64 characters that encode `secret` alone when it starts `alignment` bytes
/// into a 3-byte group: the characters mixing in bytes before or after it are cut.
fn base64_core(
    secret: &[u8],
    alignment: usize,
    engine: &base64::engine::GeneralPurpose,
) -> Option<String> {
    let mut padded = vec![0u8; alignment];
    padded.extend_from_slice(secret);
    let encoded = engine.encode(&padded);
    let start = (alignment * 8).div_ceil(6);
    let end = (padded.len() * 8) / 6;
    encoded.get(start..end).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "PLACEHOLDER-s3cret-pw";

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let redactor = Redactor::new(["abcdefgh", "abcdefghijkl", ""]);
        assert_eq!(
            redactor.redact("x abcdefghijkl y abcdefgh"),
            "x [REDACTED] y [REDACTED]"
        );
        let mut json = serde_json::json!({"abcdefgh": ["abcdefghijkl", 1, {"k": "zabcdefgh"}]});
        redactor.redact_json(&mut json);
        assert_eq!(
            json,
            serde_json::json!({"[REDACTED]": ["[REDACTED]", 1, {"k": "z[REDACTED]"}]})
        );
    }

    #[test]
    fn basic_auth_of_a_secret_is_redacted_at_every_offset() {
        let redactor = Redactor::new([SECRET]);
        for user in ["billing-user", "u", "ab", "abc", ""] {
            let credentials = format!("{user}:{SECRET}");
            for encoded in [
                base64::engine::general_purpose::STANDARD.encode(&credentials),
                base64::engine::general_purpose::URL_SAFE.encode(&credentials),
            ] {
                let header = format!("Basic {encoded}");
                let redacted = redactor.redact(&header);
                assert!(redacted.contains(REDACTED), "{user}: {redacted}");
                // Nothing left decodes back to the secret.
                let rest = redacted.replace(REDACTED, "");
                assert!(!rest.contains(&encoded), "{redacted}");
            }
        }
    }

    #[test]
    fn percent_and_hex_forms_are_redacted() {
        let secret = "p@ss w/rd+ünï";
        let redactor = Redactor::new([secret]);
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for text in [
            format!("https://x.test/?token={form}"),
            format!(
                "https://x.test/?token={}",
                percent_escape(secret.as_bytes())
            ),
            format!("sig={hex}"),
            format!("SIG={}", hex.to_ascii_uppercase()),
        ] {
            let redacted = redactor.redact(&text);
            assert!(redacted.contains(REDACTED), "{text} -> {redacted}");
        }
    }

    #[test]
    fn a_secret_inside_a_json_string_is_redacted() {
        let secret = "pa\"ss\\wo\nrd-long";
        let redactor = Redactor::new([secret]);
        let body = serde_json::to_string(&serde_json::json!({ "token": secret })).unwrap();
        assert!(
            !body.contains(secret),
            "the JSON form differs from the raw one"
        );
        let redacted = redactor.redact(&body);
        assert_eq!(redacted, r#"{"token":"[REDACTED]"}"#);
    }

    #[test]
    fn credential_headers_are_masked_by_name() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "cookie",
            "Set-Cookie",
            "x-api-key",
            "X-Auth-Token",
            "x-session-id",
            "x-client-secret",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        for name in ["accept", "content-type", "user-agent", "x-request-id"] {
            assert!(!is_credential_header(name), "{name}");
        }
        let mut exchange = HttpExchange {
            request_headers: vec![
                ("authorization".into(), "Bearer opaque-token".into()),
                ("accept".into(), "application/json".into()),
                ("x-api-key".into(), "part1 part2".into()),
                ("proxy-authorization".into(), "opaque".into()),
            ],
            ..HttpExchange::default()
        };
        Redactor::default().redact_exchange(&mut exchange);
        assert_eq!(exchange.request_headers[0].1, "Bearer [REDACTED]");
        assert_eq!(exchange.request_headers[1].1, "application/json");
        assert_eq!(exchange.request_headers[2].1, REDACTED, "no part survives");
        assert_eq!(exchange.request_headers[3].1, REDACTED);
    }

    #[test]
    fn a_secret_echoed_in_a_body_is_redacted_in_text_and_in_bytes_and_marked() {
        let redactor = Redactor::new([SECRET]);
        let mut text = HttpExchange::default();
        text.record_response_body(format!("{{\"token\":\"{SECRET}\"}}").as_bytes(), 1 << 20);
        redactor.redact_exchange(&mut text);
        assert_eq!(text.response_body, "{\"token\":\"[REDACTED]\"}");
        assert!(text.response_body_redacted);

        // Not UTF-8: recorded as base64, so the secret is looked for in the bytes.
        let mut body = vec![0xff, 0x00];
        body.extend_from_slice(SECRET.as_bytes());
        let mut binary = HttpExchange::default();
        binary.record_response_body(&body, 1 << 20);
        assert_eq!(binary.response_body_encoding, BodyEncoding::Base64);
        redactor.redact_exchange(&mut binary);
        let mut expected = vec![0xff, 0x00];
        expected.extend_from_slice(REDACTED.as_bytes());
        assert_eq!(binary.response_body_bytes(), Some(expected));
        assert!(binary.response_body_redacted);

        let mut broken = HttpExchange {
            response_body: "not base64 at all".into(),
            response_body_encoding: BodyEncoding::Base64,
            ..HttpExchange::default()
        };
        redactor.redact_exchange(&mut broken);
        assert_eq!(
            broken.response_body_bytes(),
            Some(REDACTED.as_bytes().to_vec())
        );
        assert!(broken.response_body_redacted);

        let mut clean = HttpExchange::default();
        clean.record_response_body(&[0xff, 1, 2], 1 << 20);
        redactor.redact_exchange(&mut clean);
        assert!(!clean.response_body_redacted);
        assert_eq!(clean.response_body_bytes(), Some(vec![0xff, 1, 2]));
    }

    #[test]
    fn debug_of_secrets_shows_names_only() {
        let secrets = Secrets::new(BTreeMap::from([("crm".to_owned(), SECRET.to_owned())]));
        let shown = format!("{secrets:?}");
        assert!(shown.contains("crm") && !shown.contains(SECRET), "{shown}");
    }
}

//! E-mail over SMTP (lettre, rustls): plain, STARTTLS or implicit TLS, optional auth.
//!
//! Messages cannot be smuggled or refused for their form: bodies have their line breaks
//! normalized (a bare CR or LF becomes CRLF, RFC 5321 §2.3.8), header values with
//! non-ASCII text are RFC 2047 encoded words (lettre), and every header line is folded at
//! whitespace to at most 78 bytes where it can be and never past 998 (RFC 5322 §2.1.1,
//! §2.2.3) before the raw message goes out. A subject holding a word too long to fold
//! is written as base64 encoded words (RFC 2047 §2, at most 75 characters each), which
//! may be split anywhere, so it folds too and reads back the same.

use std::time::Duration;

use fluxo_core::OutgoingEmail;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::SendError;

/// How to reach the SMTP server. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS) or
    /// `smtps://host:port` (implicit TLS).
    pub url: String,
    /// The sender, e.g. `Fluxo <no-reply@platform.example>`.
    pub from: String,
    /// SMTP user, if the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<String>,
    /// Time for one SMTP exchange, in milliseconds.
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_smtp_timeout_ms() -> u64 {
    10_000
}

/// Why an SMTP transport could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [email] settings: {0}")]
pub struct SmtpSetupError(pub String);

/// Sends e-mails over SMTP.
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Longest header line written when a fold point exists (RFC 5322 §2.1.1 "SHOULD").
const FOLD_AT: usize = 78;
/// Longest line allowed at all (RFC 5322 §2.1.1 "MUST").
const MAX_LINE: usize = 998;

impl SmtpTransport {
    /// A transport for `config`.
    ///
    /// # Errors
    /// [`SmtpSetupError`] when the URL or the sender is malformed.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpSetupError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| SmtpSetupError(format!("email.from: {error}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|error| SmtpSetupError(format!("email.url: {error}")))?
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// The raw message for `email`, ready for `DATA`: normalized, encoded, folded.
    ///
    /// # Errors
    /// [`SendError::Permanent`] when an address does not parse.
    pub fn raw_message(&self, email: &OutgoingEmail) -> Result<(Envelope, Vec<u8>), SendError> {
        let address = |text: &String| {
            text.parse::<Mailbox>()
                .map_err(|error| SendError::Permanent(format!("address {text:?}: {error}")))
        };
        let mut builder = Message::builder()
            .message_id(Some(email.message_id.clone()))
            .from(self.from.clone());
        builder = match encoded_words(&email.subject) {
            Some(encoded) => builder.raw_header(HeaderValue::dangerous_new_pre_encoded(
                HeaderName::new_from_ascii_str("Subject"),
                email.subject.clone(),
                encoded,
            )),
            None => builder.subject(email.subject.clone()),
        };
        for to in &email.to {
            builder = builder.to(address(to)?);
        }
        for cc in &email.cc {
            builder = builder.cc(address(cc)?);
        }
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(address(reply_to)?);
        }
        let text = normalize_breaks(&email.text);
        let message = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text,
                normalize_breaks(html),
            )),
            None => builder.body(text),
        }
        .map_err(|error| SendError::Permanent(format!("building the message: {error}")))?;
        let envelope = message.envelope().clone();
        Ok((envelope, fold_headers(&message.formatted())))
    }

    /// Sends `email`.
    ///
    /// # Errors
    /// [`SendError::Transient`] for 4xx replies and broken connections,
    /// [`SendError::Permanent`] for 5xx replies and malformed addresses.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let (envelope, raw) = self.raw_message(email)?;
        match self.transport.send_raw(&envelope, &raw).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
            Err(error) => Err(SendError::Transient(error.to_string())),
        }
    }
}

/// The longest word a header line can hold after a fold (the fold's space, then the
/// word) within [`FOLD_AT`], with room for a field name on the first line.
const LONGEST_FOLDABLE_WORD: usize = FOLD_AT - "Subject: ".len();
/// Subject bytes per encoded word: base64 of 39 bytes is 52 characters, 64 with
/// `=?utf-8?b?` and `?=`: under RFC 2047's 75 for a word and, after `Subject: `, under
/// its 76 for a line holding encoded words (§2).
const ENCODED_WORD_BYTES: usize = 39;

/// `subject` as space-separated base64 encoded words when one of its words is too long
/// to fold at whitespace; `None` when lettre's own encoding folds it.
fn encoded_words(subject: &str) -> Option<String> {
    use base64::Engine as _;
    if subject
        .split([' ', '\t'])
        .all(|word| word.len() <= LONGEST_FOLDABLE_WORD)
    {
        return None;
    }
    let mut words = Vec::new();
    let mut rest = subject;
    while !rest.is_empty() {
        // Cut at a character boundary: an encoded word holds whole characters (§5).
        let mut cut = rest.len().min(ENCODED_WORD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        words.push(format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(chunk)
        ));
        rest = tail;
    }
    Some(words.join(" "))
}

/// Line breaks as `\n` only (lettre writes each as CRLF): CRLF, and bare CR or LF alike.
fn normalize_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Folds every header line longer than [`FOLD_AT`] at whitespace (after a comma first),
/// so no line passes [`MAX_LINE`]; the body is left as it is.
fn fold_headers(raw: &[u8]) -> Vec<u8> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(raw.len(), |at| at + 2);
    let (head, body) = raw.split_at(split);
    let mut out = Vec::with_capacity(raw.len() + 64);
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        fold_line(line, &mut out);
    }
    out.extend_from_slice(body);
    out
}

/// Writes one header line, folded: a fold is CRLF before a space or tab, so the line
/// reads back the same (RFC 5322 §2.2.3).
fn fold_line(line: &[u8], out: &mut Vec<u8>) {
    let mut rest = line;
    while rest.len() > FOLD_AT {
        let window = rest.get(..=FOLD_AT).unwrap_or(rest);
        // Fold before whitespace, preferring the whitespace after a comma; never at the
        // line's first characters (the field name).
        let after_comma = window
            .windows(2)
            .rposition(|pair| pair == b", ")
            .map(|at| at + 1)
            .filter(|&at| at > 1);
        let at_space = window
            .iter()
            .rposition(|&b| b == b' ' || b == b'\t')
            .filter(|&at| at > 1);
        let fold = after_comma.or(at_space).or_else(|| {
            // Nothing to fold at within 78: take the first whitespace before 998.
            rest.iter()
                .take(MAX_LINE)
                .enumerate()
                .skip(2)
                .find(|(_, b)| **b == b' ' || **b == b'\t')
                .map(|(at, _)| at)
        });
        let Some(at) = fold else { break };
        let (head, tail) = rest.split_at(at);
        out.extend_from_slice(head);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> SmtpTransport {
        SmtpTransport::new(&SmtpConfig {
            url: "smtp://127.0.0.1:2525".into(),
            from: "Bot <bot@platform.test>".into(),
            username: None,
            password: Some("hunter2-password".into()),
            timeout_ms: 1000,
        })
        .unwrap()
    }

    /// Every line of `raw` ends in CRLF, holds no other CR or LF, and is at most 998
    /// bytes; header lines at most 78 where they could fold.
    fn assert_well_formed(raw: &[u8]) {
        let text = raw;
        let mut start = 0;
        let mut in_head = true;
        for (at, pair) in text.windows(2).enumerate() {
            if pair == b"\r\n" {
                let line = &text[start..at];
                assert!(
                    !line.contains(&b'\r') && !line.contains(&b'\n'),
                    "bare break in {:?}",
                    String::from_utf8_lossy(line)
                );
                assert!(line.len() <= MAX_LINE, "line of {}", line.len());
                if line.is_empty() {
                    in_head = false;
                } else if in_head {
                    assert!(
                        line.len() <= FOLD_AT,
                        "header line of {}: {}",
                        line.len(),
                        String::from_utf8_lossy(line)
                    );
                }
                start = at + 2;
            }
        }
        assert!(!text[start..].contains(&b'\r'));
    }

    #[tokio::test]
    async fn bare_carriage_returns_never_reach_the_stream() {
        let email = OutgoingEmail {
            text: "Your receipt is attached.\r.\r\nMAIL FROM:<ceo@bank.example>\rRCPT\nDATA\n"
                .into(),
            ..OutgoingEmail::sample("<r.1@fluxo>")
        };
        let (_, raw) = transport().raw_message(&email).unwrap();
        assert_well_formed(&raw);
    }

    #[tokio::test]
    async fn twenty_recipients_and_a_long_non_ascii_subject_fold() {
        let email = OutgoingEmail {
            to: (0..20)
                .map(|i| format!("recipient-number-{i:02}@a-rather-long-domain-name.example"))
                .collect(),
            subject: "Relatório de atendimento — ações pendentes para o cliente número 4821 "
                .repeat(4),
            ..OutgoingEmail::sample("<r.2@fluxo>")
        };
        let (envelope, raw) = transport().raw_message(&email).unwrap();
        assert_eq!(envelope.to().len(), 20);
        assert_well_formed(&raw);
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.contains("=?utf-8?"),
            "non-ASCII subjects are encoded words"
        );
    }

    /// The words of a header value decoded (RFC 2047 base64 words; plain words as is),
    /// with the whitespace between two encoded words dropped (§6.2).
    fn decode_header(value: &str) -> String {
        use base64::Engine as _;
        let mut out = String::new();
        let mut last_encoded = false;
        for word in value.split_whitespace() {
            let decoded = word
                .strip_prefix("=?utf-8?b?")
                .and_then(|w| w.strip_suffix("?="))
                .map(|b64| {
                    String::from_utf8(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap(),
                    )
                    .unwrap()
                });
            match decoded {
                Some(text) => {
                    if !last_encoded && !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(&text);
                    last_encoded = true;
                }
                None => {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(word);
                    last_encoded = false;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_word_too_long_to_fold_is_encoded_and_reads_back_the_same() {
        for subject in [
            format!("{}{}", "word ".repeat(250), "X".repeat(1100)),
            "Y".repeat(3000),
            format!("número {} fim", "ção".repeat(400)),
        ] {
            let email = OutgoingEmail {
                subject: subject.clone(),
                ..OutgoingEmail::sample("<r.3@fluxo>")
            };
            let (_, raw) = transport().raw_message(&email).unwrap();
            assert_well_formed(&raw);
            let text = String::from_utf8(raw).unwrap();
            let head = text.split("\r\n\r\n").next().unwrap();
            let unfolded = head.replace("\r\n ", " ");
            let value = unfolded
                .lines()
                .find_map(|line| line.strip_prefix("Subject: "))
                .unwrap();
            assert_eq!(decode_header(value), subject);
        }
        assert!(encoded_words("a short subject").is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let config = SmtpConfig {
            url: "smtp://x".into(),
            from: "a@b.test".into(),
            username: Some("u".into()),
            password: Some("hunter2-password".into()),
            timeout_ms: 1,
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

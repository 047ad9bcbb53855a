//! The benchmark action, once, for every contender: triage a chat event.
//!
//! Each contender (native closure, wasm guest, Extism plug-in, child process) wraps
//! [`triage`] and then performs the two effects it names — `set-field("priority", …)`
//! and `tag("support")` — through its own host. The JavaScript contender mirrors this
//! logic in [`TRIAGE_JS`]; the benchmark smoke test proves that all of them agree.
//!
//! [`scan`] is the CPU-heavy variant used to price fuel and epoch interruption.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The field the action sets.
pub const PRIORITY_FIELD: &str = "priority";
/// The tag the action adds.
pub const SUPPORT_TAG: &str = "support";

/// Words that make a message urgent (matched case-insensitively, ASCII).
const URGENT_WORDS: [&str; 3] = ["urgent", "refund", "cancel"];

/// A chat event as the action reads it (other members are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatEvent {
    /// The channel the message came in on.
    pub channel: String,
    /// Who wrote it.
    pub author: Author,
    /// The message text.
    pub text: String,
    /// The contact's fields as the platform sent them.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

/// The author of a chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Author {
    /// Display name.
    pub name: String,
}

/// What the action decided; serialized, it is the action's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Who wrote the message.
    pub author: String,
    /// The channel it came in on.
    pub channel: String,
    /// `"high"` or `"normal"`: the value for the `priority` field.
    pub priority: &'static str,
    /// Words in the message.
    pub words: usize,
}

impl Decision {
    /// The output as a JSON object text.
    #[must_use]
    pub fn output(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a chat event (JSON) and decides its priority.
///
/// # Errors
/// When `input` is not a chat event.
pub fn triage(input: &str) -> Result<Decision, serde_json::Error> {
    serde_json::from_str(input).map(decide)
}

/// Decides a parsed event's priority.
#[must_use]
pub fn decide(event: ChatEvent) -> Decision {
    let text = event.text.to_ascii_lowercase();
    let urgent = URGENT_WORDS.iter().any(|word| text.contains(word));
    let enterprise = event.fields.get("plan").and_then(Value::as_str) == Some("enterprise");
    let priority = if urgent || enterprise {
        "high"
    } else {
        "normal"
    };
    Decision {
        words: event.text.split_whitespace().count(),
        author: event.author.name,
        channel: event.channel,
        priority,
    }
}

/// The same action in JavaScript, for the QuickJS contender: `run(input)` calls the
/// globals `setField(name, value)` and `tag(name)` and returns the output string.
pub const TRIAGE_JS: &str = r#"
function run(input) {
  const event = JSON.parse(input);
  const text = event.text.toLowerCase();
  const urgent = ["urgent", "refund", "cancel"].some((word) => text.includes(word));
  const enterprise = !!event.fields && event.fields.plan === "enterprise";
  const priority = urgent || enterprise ? "high" : "normal";
  const words = event.text.split(/\s+/).filter((word) => word.length > 0).length;
  setField("priority", priority);
  tag("support");
  return JSON.stringify({ author: event.author.name, channel: event.channel, priority, words });
}
"#;

/// A chat event of about 1 KiB, as a platform's webhook would deliver it.
#[must_use]
pub fn sample_event() -> String {
    serde_json::json!({
        "id": "msg-7f3a9c2e-51b4-4d0e-9a66-0c2f1e8d4b17",
        "channel": "whatsapp",
        "sent_at": "2026-11-25T09:14:03Z",
        "author": {
            "id": "contact-48213",
            "name": "Marina Costa",
            "phone": "+55 11 91234-5678",
            "locale": "pt-BR"
        },
        "text": "Hi, I was charged twice for invoice 2026-0117 and I need a refund urgently. \
                 The second charge shows on my card statement from last Tuesday. Can someone \
                 from billing call me back today? Order reference is ORD-99812.",
        "fields": {
            "plan": "pro",
            "company": "Costa Importados Ltda",
            "city": "Campinas",
            "lifetime_value": 18450.75,
            "open_tickets": 1,
            "vip": false
        },
        "attachments": [
            {"kind": "image", "url": "https://cdn.example.invalid/a/3b1f.jpg", "bytes": 48211}
        ],
        "history": [
            {"from": "bot", "text": "Hello Marina! How can we help you today?"},
            {"from": "contact", "text": "billing problem"},
            {"from": "bot", "text": "Sorry to hear that. Please describe the issue."}
        ],
        "conversation": {"id": "conv-55021", "inbox": "billing", "assignee": null}
    })
    .to_string()
}

/// The CPU-heavy action: scans the event's 64 KiB `blob` (a byte histogram and an
/// FNV-1a checksum), rewrites the document with the results added, and returns a
/// digest of the rewritten document (`bytes`, `checksum`).
///
/// # Errors
/// When `input` is not a JSON object.
pub fn scan(input: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(input).and_then(scan_document)
}

/// [`scan`] on a parsed document.
///
/// # Errors
/// When the rewritten document cannot be serialized (it always can).
pub fn scan_document(
    mut document: serde_json::Map<String, Value>,
) -> Result<Value, serde_json::Error> {
    let blob = document.get("blob").and_then(Value::as_str).unwrap_or("");
    let mut histogram = [0_u32; 256];
    let mut checksum: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in blob.bytes() {
        if let Some(count) = histogram.get_mut(usize::from(byte)) {
            *count += 1;
        }
        checksum = (checksum ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut counts = String::new();
    for (byte, count) in histogram
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
    {
        let _ = write!(counts, "{byte:02x}:{count};");
    }
    let checksum = format!("{checksum:016x}");
    document.insert("checksum".to_owned(), Value::from(checksum.clone()));
    document.insert("histogram".to_owned(), Value::from(counts));
    let rewritten = serde_json::to_string(&document)?;
    Ok(serde_json::json!({ "bytes": rewritten.len(), "checksum": checksum }))
}

/// A scan event with a 64 KiB blob of chat-like text.
#[must_use]
pub fn scan_event() -> String {
    let line = "order ORD-99812 paid twice; customer asks for a refund before friday. ";
    let mut blob = String::with_capacity(64 << 10);
    while blob.len() + line.len() <= 64 << 10 {
        blob.push_str(line);
    }
    serde_json::json!({ "kind": "transcript", "blob": blob }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_event_is_about_one_kibibyte_and_urgent() {
        let event = sample_event();
        assert!((900..=1300).contains(&event.len()), "{} bytes", event.len());
        let decision = triage(&event).unwrap();
        assert_eq!(decision.priority, "high");
        assert_eq!(
            decision.output(),
            r#"{"author":"Marina Costa","channel":"whatsapp","priority":"high","words":37}"#
        );
    }

    #[test]
    fn calm_messages_from_small_plans_are_normal() {
        let event = r#"{"channel":"web","author":{"name":"Ana"},"text":"hello there","fields":{"plan":"free"}}"#;
        assert_eq!(triage(event).unwrap().priority, "normal");
        let event = r#"{"channel":"web","author":{"name":"Ana"},"text":"hello","fields":{"plan":"enterprise"}}"#;
        assert_eq!(triage(event).unwrap().priority, "high");
    }

    #[test]
    fn a_broken_event_is_an_error() {
        assert!(triage("{\"channel\": 1}").is_err());
        assert!(triage("not json").is_err());
    }

    #[test]
    fn the_scan_is_deterministic_and_covers_the_blob() {
        let event = scan_event();
        assert!(event.len() > 60 << 10);
        assert_eq!(scan(&event).unwrap(), scan(&event).unwrap());
        assert!(scan(&event).unwrap()["checksum"].is_string());
    }
}

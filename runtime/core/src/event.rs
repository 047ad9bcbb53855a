//! What a run is about: the event handed to the action, as the platform supplies it.
//!
//! JSON (the `fluxo run --event` file, the API's bodies):
//! `{"tenant":…,"action":…,"trigger":"test","contact":{"id":…,"fields":{…},"tags":[…]},
//! "message":{"text":…},"input":{…}}` — everything but `tenant` and `action` may be left out.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{ActionName, ContactId, TenantId};
use crate::value::FieldValue;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Trigger {
    /// A message in a live conversation.
    Conversation,
    /// A background automation rule.
    Automation,
    /// A workflow step.
    Workflow,
    /// A test run.
    #[default]
    Test,
}

/// A contact as the platform knows it. `id` is absent for runs about no contact (then
/// contact writes and contact-scoped state are refused with a capability error).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contact {
    /// The platform's id (never empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ContactId>,
    /// Fields by name.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldValue>,
    /// Tags, in order of addition.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Contact {
    /// A contact with `id` and nothing else.
    #[must_use]
    pub fn with_id(id: ContactId) -> Self {
        Self {
            id: Some(id),
            ..Self::default()
        }
    }
}

/// The triggering message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// Its text.
    pub text: String,
    /// The channel it came in on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A step's input: a JSON document, serialized to text at most once however many times
/// it is handed to a guest.
#[derive(Clone)]
pub struct Input {
    value: serde_json::Value,
    text: OnceLock<Arc<str>>,
}

impl Input {
    /// The input `value`.
    #[must_use]
    pub fn new(value: serde_json::Value) -> Self {
        Self {
            value,
            text: OnceLock::new(),
        }
    }

    /// The empty object `{}`.
    #[must_use]
    pub fn empty() -> Self {
        Self::new(serde_json::Value::Object(serde_json::Map::new()))
    }

    /// The document.
    #[must_use]
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The document as JSON text (computed once).
    #[must_use]
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            // `to_string` writes into a byte buffer; `Value`'s `Display` goes through
            // `fmt` one fragment at a time (~2 µs a run for a 1 KiB event).
            serde_json::to_string(&self.value)
                .unwrap_or_else(|_| "{}".to_owned())
                .into()
        })
    }
}

impl Default for Input {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.value, f)
    }
}

impl PartialEq for Input {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl From<serde_json::Value> for Input {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value)
    }
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.value.serialize(serializer)
        } else {
            // Stored records keep the JSON text: MessagePack has no faithful form for
            // every JSON number, and the text is what the guest is given anyway.
            serializer.serialize_str(self.text())
        }
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            return serde_json::Value::deserialize(deserializer).map(Self::new);
        }
        let text = String::deserialize(deserializer)?;
        let value = serde_json::from_str(&text).map_err(serde::de::Error::custom)?;
        let input = Self::new(value);
        let _ = input.text.set(text.into());
        Ok(input)
    }
}

/// Everything a run is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// The tenant that owns the action.
    pub tenant: TenantId,
    /// The action's (or workflow's) name.
    pub action: ActionName,
    /// What started the run.
    #[serde(default)]
    pub trigger: Trigger,
    /// The contact the run is about.
    #[serde(default)]
    pub contact: Contact,
    /// The triggering message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// The step's input.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub input: Input,
    /// What the host changed while reading the event (an unpaired UTF-16 surrogate
    /// replaced, say); written to the run's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How many runs started one another to lead to this one: 0 for a run the platform
    /// started, 1 for a run a workflow's `trigger_workflow` step started, and so on, up
    /// to [`MAX_RUN_DEPTH`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The run that started the chain of runs this one belongs to (the platform
    /// started that one); `None` for such a run itself. The runs of one tree are
    /// counted against [`MAX_RUNS_PER_TREE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub root: Option<crate::ids::RunId>,
}

/// The most runs one tree of runs starting runs may start in all (whatever their
/// depth): the depth bounds a chain, this bounds a fan-out (5 starts per run over 8
/// levels would be 488 280 runs).
pub const MAX_RUNS_PER_TREE: u64 = 100;

/// The longest chain of runs starting runs: a run at this depth cannot start another
/// (a workflow that starts itself stops there instead of forever).
pub const MAX_RUN_DEPTH: u32 = 8;

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl Event {
    /// An event for `tenant`'s `action` with an empty contact and input.
    #[must_use]
    pub fn new(tenant: TenantId, action: ActionName) -> Self {
        Self {
            tenant,
            action,
            trigger: Trigger::default(),
            contact: Contact::default(),
            message: None,
            input: Input::empty(),
            warnings: Vec::new(),
            depth: 0,
            root: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_event_file_parses() {
        let event: Event = serde_json::from_str(
            r#"{"tenant":"acme","action":"crm-lead","contact":{"id":"c1","fields":{"name":"Ana","age":31,"vip":true,"since":{"date_time":"2026-01-01T00:00:00Z"},"gone":null}}}"#,
        )
        .unwrap();
        assert_eq!(event.trigger, Trigger::Test);
        assert_eq!(event.contact.fields.len(), 5);
        assert_eq!(event.input.value(), &serde_json::json!({}));
        assert!(serde_json::from_str::<Event>(r#"{"tenant":"a","action":"b","extra":1}"#).is_err());
    }

    #[test]
    fn an_empty_contact_id_or_tenant_is_refused() {
        let error =
            serde_json::from_str::<Event>(r#"{"tenant":"acme","action":"a","contact":{"id":""}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("contact id"), "{error}");
        assert!(serde_json::from_str::<Event>(r#"{"tenant":"","action":"a"}"#).is_err());
    }

    #[test]
    fn events_round_trip_through_messagepack() {
        let mut event = Event::new("acme".parse().unwrap(), "crm-lead".parse().unwrap());
        event.contact.id = Some("c1".parse().unwrap());
        event
            .contact
            .fields
            .insert("n".into(), FieldValue::Number(1.5));
        event.message = Some(Message {
            text: "oi 👋".into(),
            channel: Some("whatsapp".into()),
        });
        event.input =
            Input::new(serde_json::json!({ "big": 12345678901234567890u64, "x": [1, "a"] }));
        let packed = rmp_serde::to_vec_named(&event).unwrap();
        let back: Event = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.input.text(), event.input.text());
    }
}

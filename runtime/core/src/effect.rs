//! The effects journal: what a run asked to change, recorded during the run and
//! committed only when it succeeds.
//!
//! Reads within the run see the journal (a field set earlier reads back), but nothing
//! reaches a store until the run's journal is committed. A journal round-trips
//! losslessly through serde (JSON for reports, MessagePack for stored records): state
//! values stay bytes.

use serde::{Deserialize, Serialize};

use crate::event::Contact;
use crate::value::{Bytes, FieldValue};

/// One change a run made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Effect {
    /// Set (or clear, with `null`) a contact field.
    SetField {
        /// The field.
        name: String,
        /// The new value.
        value: FieldValue,
    },
    /// Add a tag to the contact.
    AddTag {
        /// The tag.
        tag: String,
    },
    /// Remove a tag from the contact.
    RemoveTag {
        /// The tag.
        tag: String,
    },
    /// Store a state value.
    SetState {
        /// Tenant- or contact-wide.
        scope: StateScope,
        /// The key.
        key: String,
        /// The value.
        #[cfg_attr(feature = "openapi", schema(value_type = crate::value::BytesJson))]
        value: Bytes,
        /// Expiry, in seconds from the commit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<u32>,
    },
    /// Delete a state key.
    DeleteState {
        /// Tenant- or contact-wide.
        scope: StateScope,
        /// The key.
        key: String,
    },
    /// Send an e-mail.
    SendEmail(OutgoingEmail),
    /// Send a message to the platform: a reply into the conversation, a notification
    /// to a platform user, a handoff of the conversation.
    SendMessage(PlatformMessage),
    /// Start another action or workflow as its own run once this run's effects commit
    /// (in the same transaction: the new run is queued exactly once, or not at all).
    StartRun(RunRequest),
}

impl Effect {
    /// Whether this effect changes the contact (a field or a tag).
    #[must_use]
    pub fn touches_contact(&self) -> bool {
        matches!(
            self,
            Self::SetField { .. } | Self::AddTag { .. } | Self::RemoveTag { .. }
        )
    }
}

/// Which keys a state change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StateScope {
    /// Every run of the tenant.
    Tenant,
    /// The run's contact only.
    Contact,
}

/// Where a state value lives: the tenant, the contact when contact-scoped, and the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateKey {
    /// The tenant.
    pub tenant: crate::ids::TenantId,
    /// The contact, for contact-scoped keys.
    pub contact: Option<crate::ids::ContactId>,
    /// The key.
    pub key: String,
}

impl StateKey {
    /// The key of a run's (`scope`, `key`), or `None` for a contact-scoped key in a run
    /// about no contact.
    #[must_use]
    pub fn of(
        tenant: &crate::ids::TenantId,
        contact: Option<&crate::ids::ContactId>,
        scope: StateScope,
        key: &str,
    ) -> Option<Self> {
        let contact = match scope {
            StateScope::Tenant => None,
            StateScope::Contact => Some(contact?.clone()),
        };
        Some(Self {
            tenant: tenant.clone(),
            contact,
            key: key.to_owned(),
        })
    }
}

/// How much state a tenant holds, and how much it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUsage {
    /// Bytes of the tenant's live keys and values.
    pub bytes: u64,
    /// The tenant's cap.
    pub limit: u64,
    /// Bytes of the asked key and its value, when it exists.
    pub key_bytes: u64,
}

/// An e-mail a run queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutgoingEmail {
    /// `<RUN-ID.N@fluxo>`: derived from the run and the e-mail's number in it, so a
    /// retried delivery never makes a second message.
    pub message_id: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Reply-to address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl OutgoingEmail {
    /// A minimal message with Message-ID `id` (for tests and examples).
    #[must_use]
    pub fn sample(id: &str) -> Self {
        Self {
            message_id: id.into(),
            to: vec!["a@b.test".into()],
            cc: vec![],
            subject: "s".into(),
            text: "t".into(),
            html: None,
            reply_to: None,
        }
    }

    /// Bytes of the message's text parts (for limits).
    #[must_use]
    pub fn size(&self) -> usize {
        self.subject.len()
            + self.text.len()
            + self.html.as_ref().map_or(0, String::len)
            + self
                .to
                .iter()
                .chain(&self.cc)
                .chain(&self.reply_to)
                .map(String::len)
                .sum::<usize>()
    }
}

/// What a [`PlatformMessage`] asks the platform to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessageKind {
    /// Send `text` into the contact's conversation, as the bot.
    Reply,
    /// Send `text` to a platform user (`to`: `owner` for the chat's owner, or a user's
    /// id), not to the contact.
    Notify,
    /// Hand the contact's conversation to `service` (a department, a helpdesk, or the
    /// platform's name for its bot to hand it back), with an optional `text` note.
    Handoff,
}

impl MessageKind {
    /// The name used in definitions, events and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reply => "reply",
            Self::Notify => "notify",
            Self::Handoff => "handoff",
        }
    }
}

/// A message a run queued for the platform (the embedder), delivered after the commit
/// through the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformMessage {
    /// `msg_RUN-ID.N`: derived from the run and the message's number in it, so a retried
    /// delivery is recognised by the receiver as the same message.
    pub message_id: String,
    /// The run that sent it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub run_id: crate::ids::RunId,
    /// What the platform is asked to do.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The contact whose conversation it concerns.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub contact: crate::ids::ContactId,
    /// The text: the reply, the notification, or the handoff's note (may be empty).
    pub text: String,
    /// A notification's recipient: `owner` or a platform user's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A handoff's destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl PlatformMessage {
    /// Bytes of its text parts (for limits).
    #[must_use]
    pub fn size(&self) -> usize {
        self.text.len()
            + self.to.as_ref().map_or(0, String::len)
            + self.service.as_ref().map_or(0, String::len)
    }
}

/// A run another run asked for ([`Effect::StartRun`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRequest {
    /// `start_RUN-ID.N` (N counts the run's requests from 1): the new run's idempotency
    /// key, so committing the same request twice queues one run.
    pub request_id: String,
    /// The action or workflow to run (its active version when the request commits).
    pub action: String,
    /// The contact the new run is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub contact: Option<crate::ids::ContactId>,
    /// The new run's input: a JSON object.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: serde_json::Value,
    /// The new run's [`crate::Event::depth`] (the requesting run's plus one).
    pub depth: u32,
    /// The tree's first run ([`crate::Event::root`]): the requesting run's root, or the
    /// requesting run itself.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub root: crate::ids::RunId,
}

/// The effects of one run, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Journal {
    effects: Vec<Effect>,
}

impl Journal {
    /// An empty journal.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an effect.
    pub fn record(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// The effects, in order.
    #[must_use]
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The effects, owned.
    #[must_use]
    pub fn into_effects(self) -> Vec<Effect> {
        self.effects
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    /// Appends every effect of `other`.
    pub fn extend(&mut self, other: Journal) {
        self.effects.extend(other.effects);
    }

    /// The field's value as the run sees it: its last write, else the snapshot's.
    #[must_use]
    pub fn field(&self, snapshot: &Contact, name: &str) -> Option<FieldValue> {
        let written = self.effects.iter().rev().find_map(|effect| match effect {
            Effect::SetField { name: field, value } if field == name => Some(value.clone()),
            _ => None,
        });
        match written {
            Some(FieldValue::Null) => None,
            Some(value) => Some(value),
            None => snapshot.fields.get(name).cloned(),
        }
    }

    /// The contact's tags as the run sees them.
    #[must_use]
    pub fn tags(&self, snapshot: &Contact) -> Vec<String> {
        let mut tags = snapshot.tags.clone();
        for effect in &self.effects {
            match effect {
                Effect::AddTag { tag } if !tags.contains(tag) => tags.push(tag.clone()),
                Effect::RemoveTag { tag } => tags.retain(|t| t != tag),
                _ => {}
            }
        }
        tags
    }

    /// The state value as the run sees it: `Some(..)` when the journal decides it
    /// (`Some(None)` for a delete), `None` when the store must be asked.
    #[must_use]
    pub fn state(&self, scope: StateScope, key: &str) -> Option<Option<Vec<u8>>> {
        self.effects.iter().rev().find_map(|effect| match effect {
            Effect::SetState {
                scope: s,
                key: k,
                value,
                ..
            } if *s == scope && k == key => Some(Some(value.0.clone())),
            Effect::DeleteState { scope: s, key: k } if *s == scope && k == key => Some(None),
            _ => None,
        })
    }

    /// The contact as it is after this journal's contact effects.
    #[must_use]
    pub fn apply_to(&self, snapshot: &Contact) -> Contact {
        let mut contact = snapshot.clone();
        apply_to_contact(&mut contact, &self.effects);
        contact
    }
}

/// Applies contact effects to a contact record (in-memory stores, reports and the
/// embedded contact store use it; other effects are ignored).
pub fn apply_to_contact(contact: &mut Contact, effects: &[Effect]) {
    for effect in effects {
        match effect {
            Effect::SetField {
                name,
                value: FieldValue::Null,
            } => {
                contact.fields.remove(name);
            }
            Effect::SetField { name, value } => {
                contact.fields.insert(name.clone(), value.clone());
            }
            Effect::AddTag { tag } if !contact.tags.contains(tag) => contact.tags.push(tag.clone()),
            Effect::RemoveTag { tag } => contact.tags.retain(|t| t != tag),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_effect() -> Vec<Effect> {
        vec![
            Effect::SetField {
                name: "stage".into(),
                value: "won".into(),
            },
            Effect::SetField {
                name: "score".into(),
                value: FieldValue::Number(0.1),
            },
            Effect::SetField {
                name: "vip".into(),
                value: FieldValue::Bool(true),
            },
            Effect::SetField {
                name: "since".into(),
                value: FieldValue::DateTime {
                    date_time: "2026-11-30T10:00:00Z".into(),
                },
            },
            Effect::SetField {
                name: "gone".into(),
                value: FieldValue::Null,
            },
            Effect::AddTag { tag: "vip".into() },
            Effect::RemoveTag { tag: "lead".into() },
            Effect::SetState {
                scope: StateScope::Contact,
                key: "blob".into(),
                value: Bytes(vec![0, 0xff, 0xfe, b'a', 0x80]),
                ttl_seconds: Some(60),
            },
            Effect::SetState {
                scope: StateScope::Tenant,
                key: "text".into(),
                value: Bytes(b"plain text".to_vec()),
                ttl_seconds: None,
            },
            Effect::DeleteState {
                scope: StateScope::Tenant,
                key: "old".into(),
            },
            Effect::SendEmail(OutgoingEmail {
                html: Some("<b>hi</b>".into()),
                reply_to: Some("r@b.test".into()),
                cc: vec!["c@b.test".into()],
                ..OutgoingEmail::sample("<x.0@fluxo>")
            }),
            Effect::SendMessage(PlatformMessage {
                message_id: "msg_x.1".into(),
                run_id: crate::ids::RunId::new(),
                kind: MessageKind::Notify,
                contact: crate::ids::ContactId::parse("c1").unwrap(),
                text: "Ana did not answer".into(),
                to: Some("owner".into()),
                service: None,
            }),
        ]
    }

    #[test]
    fn every_effect_round_trips_losslessly_through_json_and_messagepack() {
        let mut journal = Journal::new();
        for effect in every_effect() {
            journal.record(effect);
        }
        let json = serde_json::to_string(&journal).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&json).unwrap(), journal);
        let packed = rmp_serde::to_vec_named(&journal).unwrap();
        let back: Journal = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, journal);
        let Some(Effect::SetState { value, .. }) = back.effects().get(7) else {
            panic!("{back:?}");
        };
        assert_eq!(
            value.as_slice(),
            [0, 0xff, 0xfe, b'a', 0x80],
            "bytes stay bytes"
        );
    }

    #[test]
    fn reads_see_the_runs_own_writes() {
        let mut snapshot = Contact::default();
        snapshot.fields.insert("name".into(), "Ana".into());
        snapshot.tags.push("lead".into());
        let mut journal = Journal::default();
        journal.record(Effect::SetField {
            name: "name".into(),
            value: FieldValue::Null,
        });
        journal.record(Effect::SetField {
            name: "stage".into(),
            value: "won".into(),
        });
        journal.record(Effect::RemoveTag { tag: "lead".into() });
        journal.record(Effect::AddTag {
            tag: "client".into(),
        });
        assert_eq!(journal.field(&snapshot, "name"), None);
        assert_eq!(journal.field(&snapshot, "stage"), Some("won".into()));
        assert_eq!(journal.tags(&snapshot), vec!["client".to_owned()]);
        let applied = journal.apply_to(&snapshot);
        assert_eq!(applied.fields.get("stage"), Some(&"won".into()));
        assert!(!applied.fields.contains_key("name"));
        assert_eq!(applied.tags, vec!["client".to_owned()]);
    }

    #[test]
    fn state_reads_follow_the_last_write() {
        let mut journal = Journal::default();
        assert_eq!(journal.state(StateScope::Tenant, "k"), None);
        journal.record(Effect::SetState {
            scope: StateScope::Tenant,
            key: "k".into(),
            value: Bytes(b"1".to_vec()),
            ttl_seconds: None,
        });
        assert_eq!(
            journal.state(StateScope::Tenant, "k"),
            Some(Some(b"1".to_vec()))
        );
        assert_eq!(journal.state(StateScope::Contact, "k"), None);
        journal.record(Effect::DeleteState {
            scope: StateScope::Tenant,
            key: "k".into(),
        });
        assert_eq!(journal.state(StateScope::Tenant, "k"), Some(None));
    }
}

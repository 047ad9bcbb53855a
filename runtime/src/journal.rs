//! The effects journal: what a run asked to change, recorded during the run and applied
//! only when it succeeds.
//!
//! Reads within the run see the journal (a field set earlier reads back), but nothing
//! reaches the platform's stores until [`crate::Runtime`] applies the journal after `run`
//! returned `Ok` within every limit.

use serde::{Deserialize, Serialize, Serializer};

use crate::event::{Contact, FieldValue};

/// One change a run made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
        /// The value (shown as text in reports).
        #[serde(serialize_with = "bytes_as_text")]
        value: Vec<u8>,
        /// Expiry, in seconds from the write.
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
}

/// Which keys a state change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateScope {
    /// Every run of the tenant.
    Tenant,
    /// The run's contact only.
    Contact,
}

/// An e-mail a run queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    /// Stable per journaled message, so a retried delivery never makes a second message.
    pub message_id: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Copy recipients.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: Option<String>,
    /// Reply-to address.
    pub reply_to: Option<String>,
}

#[cfg(test)]
impl OutgoingEmail {
    /// A minimal message with Message-ID `id`, for tests.
    pub(crate) fn sample(id: &str) -> Self {
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
}

fn bytes_as_text<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}

/// The effects of one run, in the order they were made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Journal {
    effects: Vec<Effect>,
}

impl Journal {
    pub(crate) fn record(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(crate) fn effects(&self) -> &[Effect] {
        &self.effects
    }

    pub(crate) fn into_effects(self) -> Vec<Effect> {
        self.effects
    }

    /// The field's value as the run sees it: its last write, else the snapshot's.
    pub(crate) fn field(&self, snapshot: &Contact, name: &str) -> Option<FieldValue> {
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
    pub(crate) fn tags(&self, snapshot: &Contact) -> Vec<String> {
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

    /// Bytes of keys and values this run has written to state so far.
    pub(crate) fn state_bytes(&self) -> usize {
        self.effects
            .iter()
            .map(|effect| match effect {
                Effect::SetState { key, value, .. } => key.len() + value.len(),
                _ => 0,
            })
            .sum()
    }

    /// The state value as the run sees it: `Some(..)` when the journal decides it
    /// (`Some(None)` for a delete), `None` when the store must be asked.
    pub(crate) fn state(&self, scope: StateScope, key: &str) -> Option<Option<Vec<u8>>> {
        self.effects.iter().rev().find_map(|effect| match effect {
            Effect::SetState {
                scope: s,
                key: k,
                value,
                ..
            } if *s == scope && k == key => Some(Some(value.clone())),
            Effect::DeleteState { scope: s, key: k } if *s == scope && k == key => Some(None),
            _ => None,
        })
    }
}

/// Applies contact effects to a contact record (used by in-memory stores and reports).
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

        let mut applied = snapshot.clone();
        apply_to_contact(&mut applied, journal.effects());
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
            value: b"1".to_vec(),
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

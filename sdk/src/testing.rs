//! A mock host for testing actions as plain Rust with `cargo test`.
//!
//! [`MockHost`] plays the platform: it holds a contact, secrets and state, answers HTTP
//! from [`Fixture`]s matched on method, URL, headers and body, and records every call.
//! Unlike the real host it applies writes at once, so a test reads the effects straight
//! from it; the real host journals them and applies them only when the run succeeds.
//!
//! ```
//! use fluxo_sdk::prelude::*;
//! use fluxo_sdk::testing::{Fixture, MockHost};
//!
//! fn greet(event: Event) -> Result<Outcome> {
//!     let name = contact::text("name").ok_or_else(|| Error::input("no name"))?;
//!     let token = secrets::get("token")?;
//!     let reply = http::get("https://api.example/greeting").bearer(&token).send()?;
//!     contact::add_tag("greeted")?;
//!     Ok(Outcome::new().reply(format!("{} {name}", reply.text()?)))
//! }
//!
//! let mut host = MockHost::new()
//!     .field("name", "Ana")
//!     .secret("token", "t0k")
//!     .respond(Fixture::get("https://api.example/greeting")
//!         .header("authorization", "Bearer t0k")
//!         .reply(200, "Hello"));
//! let event = host.event();
//! let outcome = host.run(|| greet(event)).unwrap();
//! assert_eq!(outcome.replies(), ["Hello Ana"]);
//! assert!(host.has_tag("greeted"));
//! assert_eq!(host.http_requests().len(), 1);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::backend::Host;
use crate::contact::ContactError;
use crate::email::{Email, EmailError};
use crate::http::{HttpError, Method, Request, Response};
use crate::log::Level;
use crate::secrets::SecretError;
use crate::state::{Scope, StateError};
use crate::{Contact, Event, FieldValue, Trigger};

/// One recorded host call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// An HTTP request, as sent.
    Http(Request),
    /// An e-mail queued.
    Email(Email),
    /// A field set.
    SetField(String, FieldValue),
    /// A tag added.
    AddTag(String),
    /// A tag removed.
    RemoveTag(String),
    /// A state value stored.
    StateSet(Scope, String, Vec<u8>),
    /// A state key deleted.
    StateDelete(Scope, String),
    /// A secret read (by name).
    Secret(String),
    /// A log line.
    Log(Level, String),
}

/// A canned HTTP exchange: what to match, and what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<BodyMatch>,
    answer: Result<Response, HttpError>,
}

#[derive(Debug, Clone, PartialEq)]
enum BodyMatch {
    Bytes(Vec<u8>),
    Json(serde_json::Value),
}

impl Fixture {
    /// Matches `method` on exactly `url`; answers `200` with an empty body until told otherwise.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            answer: Ok(Response {
                status: 200,
                ..Response::default()
            }),
        }
    }

    /// Matches a GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// Matches a POST to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Also requires header `name` (case-insensitive) with exactly `value`.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Also requires exactly these body bytes.
    #[must_use]
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(BodyMatch::Bytes(bytes.into()));
        self
    }

    /// Also requires a JSON body equal to `value` (key order and spacing ignored).
    #[must_use]
    pub fn json_body(mut self, value: serde_json::Value) -> Self {
        self.body = Some(BodyMatch::Json(value));
        self
    }

    /// Answers with `status` and `body`.
    #[must_use]
    pub fn reply(mut self, status: u16, body: impl Into<Vec<u8>>) -> Self {
        self.answer = Ok(Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        });
        self
    }

    /// Answers with `status` and `value` as a JSON body.
    #[must_use]
    pub fn reply_json(mut self, status: u16, value: &serde_json::Value) -> Self {
        self.answer = Ok(Response {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: value.to_string().into_bytes(),
        });
        self
    }

    /// Fails the request with `error` instead of answering.
    #[must_use]
    pub fn fail(mut self, error: HttpError) -> Self {
        self.answer = Err(error);
        self
    }

    fn matches(&self, request: &Request) -> bool {
        self.method == request.method
            && self.url == request.url
            && self.headers.iter().all(|(name, value)| {
                request
                    .headers
                    .iter()
                    .any(|(key, sent)| key.eq_ignore_ascii_case(name) && sent == value)
            })
            && match &self.body {
                None => true,
                Some(BodyMatch::Bytes(bytes)) => request.body.as_deref() == Some(bytes.as_slice()),
                Some(BodyMatch::Json(expected)) => request
                    .body
                    .as_deref()
                    .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
                    .is_some_and(|sent| &sent == expected),
            }
    }
}

/// The platform, played for a native test. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct MockHost {
    state: MockState,
}

#[derive(Debug, Clone, Default)]
struct MockState {
    contact: Contact,
    secrets: BTreeMap<String, String>,
    store: BTreeMap<(Scope, String), Vec<u8>>,
    fixtures: Vec<Fixture>,
    calls: Vec<Call>,
}

thread_local! {
    static CURRENT: RefCell<MockState> = RefCell::new(MockState::default());
}

pub(crate) fn with_current<R>(call: impl FnOnce(&mut dyn Host) -> R) -> R {
    CURRENT.with(|current| call(&mut *current.borrow_mut()))
}

impl MockHost {
    /// An empty host: a contact with id `contact-1`, no fields, no tags, no fixtures.
    #[must_use]
    pub fn new() -> Self {
        let mut host = Self::default();
        host.state.contact.id = "contact-1".to_owned();
        host
    }

    /// Sets a contact field.
    #[must_use]
    pub fn field(mut self, name: &str, value: impl Into<FieldValue>) -> Self {
        self.state
            .contact
            .fields
            .insert(name.to_owned(), value.into());
        self
    }

    /// Gives the contact a tag.
    #[must_use]
    pub fn tag(mut self, tag: &str) -> Self {
        self.state.contact.tags.push(tag.to_owned());
        self
    }

    /// Sets a tenant secret.
    #[must_use]
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.state.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Stores a state value.
    #[must_use]
    pub fn state(mut self, scope: Scope, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.state
            .store
            .insert((scope, key.to_owned()), value.into());
        self
    }

    /// Adds an HTTP fixture; the first that matches a request answers it.
    #[must_use]
    pub fn respond(mut self, fixture: Fixture) -> Self {
        self.state.fixtures.push(fixture);
        self
    }

    /// An event for the current contact with an empty input.
    #[must_use]
    pub fn event(&self) -> Event {
        self.event_with_input(serde_json::Value::Object(serde_json::Map::new()))
    }

    /// An event for the current contact with `input`.
    #[must_use]
    pub fn event_with_input(&self, input: serde_json::Value) -> Event {
        Event {
            run_id: "00000000-0000-7000-8000-000000000000".to_owned(),
            attempt: 1,
            idempotency_key: "00000000-0000-7000-8000-000000000000".to_owned(),
            tenant: "test-tenant".to_owned(),
            action: "test-action".to_owned(),
            trigger: Trigger::Test,
            contact: self.state.contact.clone(),
            message: None,
            input,
        }
    }

    /// Runs `action` with this host answering its calls.
    pub fn run<R>(&mut self, action: impl FnOnce() -> R) -> R {
        CURRENT.with(|current| std::mem::swap(&mut *current.borrow_mut(), &mut self.state));
        let result = action();
        CURRENT.with(|current| std::mem::swap(&mut *current.borrow_mut(), &mut self.state));
        result
    }

    /// Every call made, in order.
    #[must_use]
    pub fn calls(&self) -> &[Call] {
        &self.state.calls
    }

    /// The HTTP requests made, in order.
    #[must_use]
    pub fn http_requests(&self) -> Vec<&Request> {
        self.state
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::Http(request) => Some(request),
                _ => None,
            })
            .collect()
    }

    /// The e-mails queued, in order.
    #[must_use]
    pub fn emails(&self) -> Vec<&Email> {
        self.state
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::Email(email) => Some(email),
                _ => None,
            })
            .collect()
    }

    /// The log lines, in order.
    #[must_use]
    pub fn logs(&self) -> Vec<(Level, &str)> {
        self.state
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::Log(level, line) => Some((*level, line.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The contact's current field `name`.
    #[must_use]
    pub fn field_value(&self, name: &str) -> Option<&FieldValue> {
        self.state.contact.fields.get(name)
    }

    /// Whether the contact now has `tag`.
    #[must_use]
    pub fn has_tag(&self, tag: &str) -> bool {
        self.state.contact.tags.iter().any(|t| t == tag)
    }

    /// The state value under `key`.
    #[must_use]
    pub fn state_value(&self, scope: Scope, key: &str) -> Option<&[u8]> {
        self.state
            .store
            .get(&(scope, key.to_owned()))
            .map(Vec::as_slice)
    }
}

impl Host for MockState {
    fn http_request(&mut self, request: &Request) -> Result<Response, HttpError> {
        self.calls.push(Call::Http(request.clone()));
        match self
            .fixtures
            .iter()
            .find(|fixture| fixture.matches(request))
        {
            Some(fixture) => fixture.answer.clone(),
            None => Err(HttpError::Denied(format!(
                "no fixture matches {} {}",
                request.method, request.url
            ))),
        }
    }

    fn email_send(&mut self, email: &Email) -> Result<String, EmailError> {
        if email.to.is_empty() {
            return Err(EmailError::Invalid("no recipient".to_owned()));
        }
        self.calls.push(Call::Email(email.clone()));
        Ok(format!("<mock-{}@fluxo.test>", self.calls.len()))
    }

    fn get_field(&mut self, name: &str) -> Option<FieldValue> {
        self.contact.fields.get(name).cloned()
    }

    fn set_field(&mut self, name: &str, value: &FieldValue) -> Result<(), ContactError> {
        if name.is_empty() {
            return Err(ContactError::Invalid("empty field name".to_owned()));
        }
        self.calls
            .push(Call::SetField(name.to_owned(), value.clone()));
        if *value == FieldValue::Null {
            self.contact.fields.remove(name);
        } else {
            self.contact.fields.insert(name.to_owned(), value.clone());
        }
        Ok(())
    }

    fn add_tag(&mut self, tag: &str) -> Result<(), ContactError> {
        if tag.is_empty() {
            return Err(ContactError::Invalid("empty tag".to_owned()));
        }
        self.calls.push(Call::AddTag(tag.to_owned()));
        if !self.contact.tags.iter().any(|t| t == tag) {
            self.contact.tags.push(tag.to_owned());
        }
        Ok(())
    }

    fn remove_tag(&mut self, tag: &str) -> Result<(), ContactError> {
        self.calls.push(Call::RemoveTag(tag.to_owned()));
        self.contact.tags.retain(|t| t != tag);
        Ok(())
    }

    fn has_tag(&mut self, tag: &str) -> bool {
        self.contact.tags.iter().any(|t| t == tag)
    }

    fn tags(&mut self) -> Vec<String> {
        self.contact.tags.clone()
    }

    fn log(&mut self, level: Level, message: &str) {
        self.calls.push(Call::Log(level, message.to_owned()));
    }

    fn state_get(&mut self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.store.get(&(scope, key.to_owned())).cloned())
    }

    fn state_set(
        &mut self,
        scope: Scope,
        key: &str,
        value: &[u8],
        _ttl_seconds: Option<u32>,
    ) -> Result<(), StateError> {
        if key.is_empty() {
            return Err(StateError::Invalid("empty key".to_owned()));
        }
        self.calls
            .push(Call::StateSet(scope, key.to_owned(), value.to_vec()));
        self.store.insert((scope, key.to_owned()), value.to_vec());
        Ok(())
    }

    fn state_delete(&mut self, scope: Scope, key: &str) -> Result<bool, StateError> {
        self.calls.push(Call::StateDelete(scope, key.to_owned()));
        Ok(self.store.remove(&(scope, key.to_owned())).is_some())
    }

    fn secret(&mut self, name: &str) -> Result<String, SecretError> {
        self.calls.push(Call::Secret(name.to_owned()));
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn fixtures_match_on_body_and_headers() {
        let mut host = MockHost::new().respond(
            Fixture::post("https://crm.example/deals")
                .header("Authorization", "Bearer t")
                .json_body(json!({"a": 1, "b": [2]}))
                .reply(201, "made"),
        );
        let good = host.run(|| {
            http::post("https://crm.example/deals")
                .bearer("t")
                .body(r#"{"b":[2], "a":1}"#)
                .send()
        });
        assert_eq!(good.map(|r| r.status).ok(), Some(201));
        let wrong_body = host.run(|| {
            http::post("https://crm.example/deals")
                .bearer("t")
                .json(&json!({"a": 2}))
                .send()
        });
        assert!(wrong_body.is_err());
        let no_auth = host.run(|| http::post("https://crm.example/deals").send());
        assert!(no_auth.is_err());
        assert_eq!(host.http_requests().len(), 3);
    }

    #[test]
    fn writes_are_visible_and_recorded() {
        let mut host = MockHost::new().field("name", "Ana").tag("lead");
        host.run(|| -> crate::Result<()> {
            contact::set_field("stage", "won")?;
            contact::set_field("name", FieldValue::Null)?;
            contact::remove_tag("lead")?;
            assert_eq!(contact::text("stage").as_deref(), Some("won"));
            Ok(())
        })
        .unwrap();
        assert_eq!(host.field_value("name"), None);
        assert!(!host.has_tag("lead"));
        assert_eq!(host.calls().len(), 3);
    }
}

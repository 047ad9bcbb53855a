//! The real host: calls through the bindings generated from `wit/`. Generated types stay
//! in this module; the public API only sees the SDK's own types.

use super::Host;
use crate::contact::ContactError;
use crate::email::{Email, EmailError};
use crate::http::{HttpError, Method, Request, Response};
use crate::log::Level;
use crate::secrets::SecretError;
use crate::state::{Scope, StateError};
use crate::{DateTime, Event, FieldValue, IntoOutcome, Result as SdkResult, Trigger};

/// The generated bindings; public only so the `#[action]` macro can reach them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "action",
        pub_export_macro: true,
        export_macro_name: "export_action",
        default_bindings_module: "::fluxo_sdk::__private::bindings",
        runtime_path: "::fluxo_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::fluxo::action as wit;

/// The host of a WebAssembly build.
pub(crate) struct WasmHost;

impl Host for WasmHost {
    fn http_request(&mut self, request: &Request) -> Result<Response, HttpError> {
        let method = match request.method {
            Method::Get => wit::http::Method::Get,
            Method::Post => wit::http::Method::Post,
            Method::Put => wit::http::Method::Put,
            Method::Patch => wit::http::Method::Patch,
            Method::Delete => wit::http::Method::Delete,
            Method::Head => wit::http::Method::Head,
        };
        let wit_request = wit::http::HttpRequest {
            method,
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            timeout_ms: request.timeout_ms,
        };
        match wit::http::request(&wit_request) {
            Ok(response) => Ok(Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(error) => Err(match error {
                wit::http::HttpError::Denied(reason) => HttpError::Denied(reason),
                wit::http::HttpError::Timeout => HttpError::Timeout,
                wit::http::HttpError::TooLarge => HttpError::TooLarge,
                wit::http::HttpError::Invalid(reason) => HttpError::Invalid(reason),
                wit::http::HttpError::Connect(reason) => HttpError::Connect(reason),
                wit::http::HttpError::LimitExceeded => HttpError::LimitExceeded,
            }),
        }
    }

    fn email_send(&mut self, email: &Email) -> Result<String, EmailError> {
        let message = wit::email::EmailMessage {
            to: email.to.clone(),
            cc: email.cc.clone(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            reply_to: email.reply_to.clone(),
        };
        wit::email::send(&message).map_err(|error| match error {
            wit::email::EmailError::Invalid(reason) => EmailError::Invalid(reason),
            wit::email::EmailError::TooLarge => EmailError::TooLarge,
        })
    }

    fn get_field(&mut self, name: &str) -> Option<FieldValue> {
        wit::contact::get_field(name).map(from_wit_value)
    }

    fn set_field(&mut self, name: &str, value: &FieldValue) -> Result<(), ContactError> {
        wit::contact::set_field(name, &to_wit_value(value)).map_err(contact_error)
    }

    fn add_tag(&mut self, tag: &str) -> Result<(), ContactError> {
        wit::contact::add_tag(tag).map_err(contact_error)
    }

    fn remove_tag(&mut self, tag: &str) -> Result<(), ContactError> {
        wit::contact::remove_tag(tag).map_err(contact_error)
    }

    fn has_tag(&mut self, tag: &str) -> bool {
        wit::contact::has_tag(tag)
    }

    fn tags(&mut self) -> Vec<String> {
        wit::contact::tags()
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::log::Level::Trace,
            Level::Debug => wit::log::Level::Debug,
            Level::Info => wit::log::Level::Info,
            Level::Warn => wit::log::Level::Warn,
            Level::Error => wit::log::Level::Error,
        };
        wit::log::write(level, message);
    }

    fn state_get(&mut self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        wit::state::get(wit_scope(scope), key).map_err(state_error)
    }

    fn state_set(
        &mut self,
        scope: Scope,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u32>,
    ) -> Result<(), StateError> {
        wit::state::set(wit_scope(scope), key, value, ttl_seconds).map_err(state_error)
    }

    fn state_delete(&mut self, scope: Scope, key: &str) -> Result<bool, StateError> {
        wit::state::delete(wit_scope(scope), key).map_err(state_error)
    }

    fn secret(&mut self, name: &str) -> Result<String, SecretError> {
        wit::secrets::get(name).map_err(|error| match error {
            wit::secrets::SecretError::NotFound => SecretError::NotFound(name.to_owned()),
            wit::secrets::SecretError::Invalid(reason) => SecretError::Invalid(reason),
        })
    }
}

fn contact_error(error: wit::contact::ContactError) -> ContactError {
    match error {
        wit::contact::ContactError::Invalid(reason) => ContactError::Invalid(reason),
        wit::contact::ContactError::TooLarge => ContactError::TooLarge,
    }
}

fn state_error(error: wit::state::StateError) -> StateError {
    match error {
        wit::state::StateError::Invalid(reason) => StateError::Invalid(reason),
        wit::state::StateError::TooLarge => StateError::TooLarge,
        wit::state::StateError::Unavailable(reason) => StateError::Unavailable(reason),
    }
}

fn wit_scope(scope: Scope) -> wit::state::Scope {
    match scope {
        Scope::Tenant => wit::state::Scope::Tenant,
        Scope::Contact => wit::state::Scope::Contact,
    }
}

fn from_wit_value(value: wit::types::FieldValue) -> FieldValue {
    match value {
        wit::types::FieldValue::Text(text) => FieldValue::Text(text),
        wit::types::FieldValue::Number(number) => FieldValue::Number(number),
        wit::types::FieldValue::Boolean(flag) => FieldValue::Bool(flag),
        wit::types::FieldValue::DateTime(date_time) => FieldValue::DateTime(DateTime { date_time }),
        wit::types::FieldValue::Null => FieldValue::Null,
    }
}

fn to_wit_value(value: &FieldValue) -> wit::types::FieldValue {
    match value {
        FieldValue::Text(text) => wit::types::FieldValue::Text(text.clone()),
        FieldValue::Number(number) => wit::types::FieldValue::Number(*number),
        FieldValue::Bool(flag) => wit::types::FieldValue::Boolean(*flag),
        FieldValue::DateTime(DateTime { date_time }) => {
            wit::types::FieldValue::DateTime(date_time.clone())
        }
        FieldValue::Null => wit::types::FieldValue::Null,
    }
}

fn from_wit_event(event: wit::types::Event) -> Result<Event, crate::Error> {
    let input = if event.input.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&event.input)
            .map_err(|error| crate::Error::input(format!("input is not JSON: {error}")))?
    };
    Ok(Event {
        run_id: event.run_id,
        attempt: event.attempt,
        idempotency_key: event.idempotency_key,
        tenant: event.tenant,
        action: event.action,
        trigger: match event.trigger {
            wit::types::Trigger::Conversation => Trigger::Conversation,
            wit::types::Trigger::Automation => Trigger::Automation,
            wit::types::Trigger::Workflow => Trigger::Workflow,
            wit::types::Trigger::Test => Trigger::Test,
        },
        contact: crate::Contact {
            id: event.contact.id,
            fields: event
                .contact
                .fields
                .into_iter()
                .map(|field| (field.name, from_wit_value(field.value)))
                .collect(),
            tags: event.contact.tags,
        },
        message: event.message.map(|message| crate::Message {
            text: message.text,
            channel: message.channel,
        }),
        input,
    })
}

fn to_wit_error(error: &crate::Error) -> wit::types::ActionError {
    wit::types::ActionError {
        message: error.message().to_owned(),
        retryable: error.is_retryable(),
    }
}

/// The body of the exported `run`: converts the event, calls the action, converts back.
#[doc(hidden)]
pub fn run_action<T: IntoOutcome>(
    event: wit::types::Event,
    action: impl FnOnce(Event) -> SdkResult<T>,
) -> Result<wit::types::Outcome, wit::types::ActionError> {
    let event = from_wit_event(event).map_err(|error| to_wit_error(&error))?;
    let outcome = action(event)
        .map_err(|error| to_wit_error(&error))?
        .into_outcome();
    let (output, replies, branch) = outcome.into_parts();
    let output = serde_json::to_string(&output).map_err(|error| wit::types::ActionError {
        message: format!("output is not serializable: {error}"),
        retryable: false,
    })?;
    Ok(wit::types::Outcome {
        output,
        replies,
        branch,
    })
}

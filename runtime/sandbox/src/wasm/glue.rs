//! The WIT host traits, implemented for [`WasmState`] by converting the generated types
//! and calling [`crate::RunContext`]. One macro serves each published version of the
//! `fluxo:action` package: their interfaces have the same shapes, only the generated
//! types differ.

use fluxo_core::LimitHit;

use super::WasmState;

/// A limit hit ends the run: a trap carrying it.
fn trap(hit: LimitHit) -> wasmtime::Error {
    wasmtime::Error::new(hit)
}

macro_rules! host_glue {
    ($version:ident) => {
        const _: () = {
            use crate::bindings::$version::fluxo::action as wit;
            use fluxo_core::{FieldValue, LogLevel, StateScope};
            use fluxo_egress::{EgressError, EgressRequest, EgressResponse, Method};

            use crate::context::{ContactError, EmailError, EmailMessage, SecretError, StateError};

            fn to_wit(value: FieldValue) -> wit::types::FieldValue {
                match value {
                    FieldValue::Text(text) => wit::types::FieldValue::Text(text),
                    FieldValue::Number(number) => wit::types::FieldValue::Number(number),
                    FieldValue::Bool(flag) => wit::types::FieldValue::Boolean(flag),
                    FieldValue::DateTime { date_time } => {
                        wit::types::FieldValue::DateTime(date_time)
                    }
                    FieldValue::Null => wit::types::FieldValue::Null,
                }
            }

            fn from_wit(value: wit::types::FieldValue) -> FieldValue {
                match value {
                    wit::types::FieldValue::Text(text) => FieldValue::Text(text),
                    wit::types::FieldValue::Number(number) => FieldValue::Number(number),
                    wit::types::FieldValue::Boolean(flag) => FieldValue::Bool(flag),
                    wit::types::FieldValue::DateTime(date_time) => {
                        FieldValue::DateTime { date_time }
                    }
                    wit::types::FieldValue::Null => FieldValue::Null,
                }
            }

            fn contact_error(error: ContactError) -> wit::contact::ContactError {
                match error {
                    ContactError::Invalid(reason) => wit::contact::ContactError::Invalid(reason),
                    ContactError::TooLarge => wit::contact::ContactError::TooLarge,
                }
            }

            fn state_error(error: StateError) -> wit::state::StateError {
                match error {
                    StateError::Invalid(reason) => wit::state::StateError::Invalid(reason),
                    StateError::TooLarge => wit::state::StateError::TooLarge,
                    StateError::Unavailable(reason) => wit::state::StateError::Unavailable(reason),
                }
            }

            fn scope(scope: wit::state::Scope) -> StateScope {
                match scope {
                    wit::state::Scope::Tenant => StateScope::Tenant,
                    wit::state::Scope::Contact => StateScope::Contact,
                }
            }

            impl wit::types::Host for WasmState {}

            impl wit::contact::Host for WasmState {
                async fn get_field(
                    &mut self,
                    name: String,
                ) -> wasmtime::Result<Option<wit::types::FieldValue>> {
                    Ok(self.ctx.get_field(&name).map(to_wit))
                }

                async fn set_field(
                    &mut self,
                    name: String,
                    value: wit::types::FieldValue,
                ) -> wasmtime::Result<Result<(), wit::contact::ContactError>> {
                    let result = self.ctx.set_field(name, from_wit(value)).map_err(trap)?;
                    Ok(result.map_err(contact_error))
                }

                async fn add_tag(
                    &mut self,
                    tag: String,
                ) -> wasmtime::Result<Result<(), wit::contact::ContactError>> {
                    Ok(self.ctx.add_tag(tag).map_err(trap)?.map_err(contact_error))
                }

                async fn remove_tag(
                    &mut self,
                    tag: String,
                ) -> wasmtime::Result<Result<(), wit::contact::ContactError>> {
                    Ok(self
                        .ctx
                        .remove_tag(tag)
                        .map_err(trap)?
                        .map_err(contact_error))
                }

                async fn has_tag(&mut self, tag: String) -> wasmtime::Result<bool> {
                    Ok(self.ctx.has_tag(&tag))
                }

                async fn tags(&mut self) -> wasmtime::Result<Vec<String>> {
                    Ok(self.ctx.tags())
                }
            }

            impl wit::state::Host for WasmState {
                async fn get(
                    &mut self,
                    scope_in: wit::state::Scope,
                    key: String,
                ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::state::StateError>> {
                    let result = self.ctx.state_get(scope(scope_in), &key).await;
                    Ok(result.map_err(trap)?.map_err(state_error))
                }

                async fn set(
                    &mut self,
                    scope_in: wit::state::Scope,
                    key: String,
                    value: Vec<u8>,
                    ttl_seconds: Option<u32>,
                ) -> wasmtime::Result<Result<(), wit::state::StateError>> {
                    let result = self
                        .ctx
                        .state_set(scope(scope_in), key, value, ttl_seconds)
                        .await;
                    Ok(result.map_err(trap)?.map_err(state_error))
                }

                async fn delete(
                    &mut self,
                    scope_in: wit::state::Scope,
                    key: String,
                ) -> wasmtime::Result<Result<bool, wit::state::StateError>> {
                    let result = self.ctx.state_delete(scope(scope_in), key).await;
                    Ok(result.map_err(trap)?.map_err(state_error))
                }
            }

            impl wit::email::Host for WasmState {
                async fn send(
                    &mut self,
                    message: wit::email::EmailMessage,
                ) -> wasmtime::Result<Result<String, wit::email::EmailError>> {
                    let message = EmailMessage {
                        to: message.to,
                        cc: message.cc,
                        subject: message.subject,
                        text: message.text,
                        html: message.html,
                        reply_to: message.reply_to,
                    };
                    let result = self.ctx.send_email(message).map_err(trap)?;
                    Ok(result.map_err(|error| match error {
                        EmailError::Invalid(reason) => wit::email::EmailError::Invalid(reason),
                        EmailError::TooLarge => wit::email::EmailError::TooLarge,
                    }))
                }
            }

            impl wit::log::Host for WasmState {
                async fn write(
                    &mut self,
                    level: wit::log::Level,
                    message: String,
                ) -> wasmtime::Result<()> {
                    let level = match level {
                        wit::log::Level::Trace => LogLevel::Trace,
                        wit::log::Level::Debug => LogLevel::Debug,
                        wit::log::Level::Info => LogLevel::Info,
                        wit::log::Level::Warn => LogLevel::Warn,
                        wit::log::Level::Error => LogLevel::Error,
                    };
                    self.ctx.log(level, message);
                    Ok(())
                }
            }

            impl wit::secrets::Host for WasmState {
                async fn get(
                    &mut self,
                    name: String,
                ) -> wasmtime::Result<Result<String, wit::secrets::SecretError>> {
                    Ok(self.ctx.secret(&name).map_err(|error| match error {
                        SecretError::NotFound => wit::secrets::SecretError::NotFound,
                        SecretError::Invalid(reason) => wit::secrets::SecretError::Invalid(reason),
                    }))
                }
            }

            impl wit::http::Host for WasmState {
                async fn request(
                    &mut self,
                    request: wit::http::HttpRequest,
                ) -> wasmtime::Result<Result<wit::http::HttpResponse, wit::http::HttpError>>
                {
                    let method = match request.method {
                        wit::http::Method::Get => Method::Get,
                        wit::http::Method::Post => Method::Post,
                        wit::http::Method::Put => Method::Put,
                        wit::http::Method::Patch => Method::Patch,
                        wit::http::Method::Delete => Method::Delete,
                        wit::http::Method::Head => Method::Head,
                    };
                    let request = EgressRequest {
                        method,
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                        timeout: request
                            .timeout_ms
                            .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
                    };
                    let result = self.ctx.http(request).await.map_err(trap)?;
                    Ok(result
                        .map(
                            |EgressResponse {
                                 status,
                                 headers,
                                 body,
                             }| wit::http::HttpResponse {
                                status,
                                headers,
                                body,
                            },
                        )
                        .map_err(|error| match error {
                            EgressError::Denied(reason) => wit::http::HttpError::Denied(reason),
                            EgressError::Timeout => wit::http::HttpError::Timeout,
                            EgressError::TooLarge => wit::http::HttpError::TooLarge,
                            EgressError::Invalid(reason) => wit::http::HttpError::Invalid(reason),
                            EgressError::Connect(reason) => wit::http::HttpError::Connect(reason),
                            EgressError::LimitExceeded => wit::http::HttpError::LimitExceeded,
                        }))
                }
            }
        };
    };
}

host_glue!(v0_1);
host_glue!(v0_2);

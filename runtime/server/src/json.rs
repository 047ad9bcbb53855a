//! JSON request bodies that do not insist on `Content-Type` (so `curl -d` works), answer
//! malformed JSON with the API's own error shape naming the field and position, and — for
//! events — keep a customer's message whose emoji was cut in half (an unpaired UTF-16
//! surrogate becomes U+FFFD, and the run's log says so).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request body parsed as JSON; an empty body reads as `{}`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

/// An event-bearing body, read leniently: the value and the warnings for the run's log.
#[derive(Debug)]
pub(crate) struct EventJson<T>(pub(crate) T, pub(crate) Vec<String>);

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::new(rejection.status(), "body_rejected", rejection.body_text())
        })
}

fn or_empty(bytes: &[u8]) -> &[u8] {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    }
}

fn invalid(error: &fluxo_core::json::JsonError) -> ApiError {
    ApiError::bad_request(format!("invalid JSON body: {error}"))
        .details(serde_json::json!({ "path": error.path }))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        fluxo_core::json::from_slice_lenient(or_empty(&bytes))
            .map(|read| Self(read.value))
            .map_err(|error| invalid(&error))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for EventJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        fluxo_core::json::from_slice_lenient(or_empty(&bytes))
            .map(|read| Self(read.value, read.warnings))
            .map_err(|error| invalid(&error))
    }
}

//! JSON request bodies that do not insist on `Content-Type` (so `curl -d` works), answer
//! malformed JSON with the API's own error shape naming the field and position, and — for
//! events — keep a customer's message whose emoji was cut in half (an unpaired UTF-16
//! surrogate becomes U+FFFD, and the run's log says so).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request body parsed as a JSON object; no body reads as `{}`.
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

/// No body at all (`curl -X POST` without `-d`) reads as `{}`; anything else must be
/// JSON (a body of whitespace is not).
fn or_empty(bytes: &[u8]) -> &[u8] {
    if bytes.is_empty() { b"{}" } else { bytes }
}

/// Every body of this API is a JSON object: serde would also read a struct from an
/// array of its fields in order (`[null, null]`), which no client means.
fn object(bytes: &[u8]) -> Result<&[u8], ApiError> {
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => Ok(bytes),
        _ => Err(
            ApiError::bad_request("invalid JSON body: expected a JSON object (`{…}`)")
                .details(serde_json::json!({ "path": "" })),
        ),
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
        fluxo_core::json::from_slice_lenient(object(or_empty(&bytes))?)
            .map(|read| Self(read.value))
            .map_err(|error| invalid(&error))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for EventJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        fluxo_core::json::from_slice_lenient(object(or_empty(&bytes))?)
            .map(|read| Self(read.value, read.warnings))
            .map_err(|error| invalid(&error))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        fuel: Option<u64>,
    }

    async fn read(body: &'static str) -> Result<Option<u64>, ApiError> {
        let request = Request::builder().body(Body::from(body)).unwrap();
        JsonBody::<Limits>::from_request(request, &())
            .await
            .map(|JsonBody(limits)| limits.fuel)
    }

    #[tokio::test]
    async fn only_a_json_object_or_no_body_is_read() {
        assert_eq!(read("").await.unwrap(), None, "no body reads as {{}}");
        assert_eq!(read(r#" {"fuel": 5}"#).await.unwrap(), Some(5));
        for body in ["[null]", "[5]", "\n", "  ", "5", "null"] {
            let error = read(body).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(error.code(), "bad_request", "{body:?}");
        }
    }
}

//! A JSON request body that does not insist on `Content-Type` (so `curl -d` works) and
//! answers malformed JSON with the API's own error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The request body parsed as JSON; an empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(rejection.status(), "body_rejected", rejection.body_text())
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(Self)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}

//! Path and query parameters that answer a bad parameter with the API's own error body
//! (`{code, message, details}` as JSON), where axum's extractors answer plain text — a
//! client generated from the OpenAPI document expects the documented shape on every 400.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A path parameter; 400 in the API's error shape when it does not decode (a percent-
/// encoded byte sequence that is not UTF-8, say).
#[derive(Debug)]
pub(crate) struct PathParam<T>(pub(crate) T);

/// The query string; 400 in the API's error shape for an unknown or malformed parameter.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| {
                let status = rejection.status();
                if status.is_server_error() {
                    // A route without the parameter it extracts: a bug, not the caller's.
                    ApiError::new(status, "internal", rejection.body_text())
                } else {
                    ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
                }
            })
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, StatusCode};

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Page {
        limit: Option<u32>,
    }

    async fn query(uri: &str) -> Result<Option<u32>, ApiError> {
        let (mut parts, ()) = Request::builder().uri(uri).body(()).unwrap().into_parts();
        QueryParams::<Page>::from_request_parts(&mut parts, &())
            .await
            .map(|QueryParams(page)| page.limit)
    }

    #[tokio::test]
    async fn a_bad_query_is_the_api_s_own_400() {
        assert_eq!(query("/v1/runs?limit=3").await.unwrap(), Some(3));
        for uri in ["/v1/runs?limit=x", "/v1/runs?other=1"] {
            let error = query(uri).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(error.code(), "bad_request", "{uri}");
        }
    }
}

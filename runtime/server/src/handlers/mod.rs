//! The API's handlers, one module per resource. Each takes typed extractors and returns
//! JSON or an [`ApiError`]; another tenant's objects are simply not found.

pub(crate) mod actions;
pub(crate) mod admin;
pub(crate) mod hooks;
pub(crate) mod runs;
pub(crate) mod tenant_data;
pub(crate) mod workflows;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

pub(crate) type ApiResult = Result<Response, ApiError>;

/// Answers `status` with `body` as JSON. Every body is a type whose schema the OpenAPI
/// document derives (`routes.rs`), so the two cannot disagree.
pub(crate) fn ok<T: Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// What a `DELETE` removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    /// The name or id of what was deleted.
    pub(crate) deleted: String,
}

/// Parses a path segment as a name, answering 404 for one that cannot exist.
pub(crate) fn name_in_path(name: &str) -> Result<fluxo_core::ActionName, ApiError> {
    fluxo_core::ActionName::parse(name)
        .map_err(|_| ApiError::not_found(format!("no action named {name:?}")))
}

/// Parses a run id in a path, answering 404 for one that cannot exist.
pub(crate) fn run_in_path(id: &str) -> Result<fluxo_core::RunId, ApiError> {
    fluxo_core::RunId::parse(id).map_err(|_| ApiError::not_found(format!("no run {id:?}")))
}

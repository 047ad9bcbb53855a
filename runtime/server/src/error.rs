//! API errors: a status and a JSON body `{code, message, details}`. Codes are stable;
//! messages are for people.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fluxo_orchestrator::registry::CompileError;
use fluxo_orchestrator::{RegistryError, SubmitError};
use fluxo_sandbox::LoadError;
use fluxo_store::{StoreError, StoreErrorKind};
use serde_json::{Value, json};

/// The body of every error the API answers (`application/json`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable, machine-readable code (`not_found`, `overloaded`, `forbidden_import`, …).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Structured details of some codes (the cap and size of `component_too_large`, the
    /// path of a malformed JSON body, …), `null` otherwise.
    pub details: Value,
}

/// An error answered by the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, a stable `code` and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
        }
    }

    /// Adds details.
    #[must_use]
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Adds a `Retry-After` (seconds).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 404 for anything the caller may not see.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            details: self.details,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The answer for a path no route serves: the API's own 404 body, not an empty one.
pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer for a method a path does not serve (405, the API's error body).
pub(crate) async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not serve that method (see /v1/openapi.json)",
    )
}

/// The answer when a handler panicked: a 500 in the API's error body (the panic's text
/// stays in the server's log, never in the answer).
#[allow(
    clippy::needless_pass_by_value,
    reason = "the signature tower-http's CatchPanicLayer::custom calls"
)]
pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed on this request",
    )
    .into_response()
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error.kind() {
            StoreErrorKind::NotFound => Self::not_found(message),
            StoreErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreErrorKind::Transient => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            )
            .retry_after(1),
            StoreErrorKind::Overloaded => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message).retry_after(1)
            }
            StoreErrorKind::Corrupt => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_record", message)
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let message = error.to_string();
        match error {
            RegistryError::InvalidName(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_name", message)
            }
            RegistryError::Component(LoadError::TooLarge { size, limit }) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "component_too_large",
                message,
            )
            .details(json!({ "size": size, "limit": limit })),
            RegistryError::Component(LoadError::ForbiddenImport { import, others }) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "forbidden_import",
                message,
            )
            .details(json!({ "import": import, "others": others })),
            RegistryError::Component(LoadError::Shape {
                what,
                needed,
                allowed,
                setting,
            }) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "component_too_big",
                message,
            )
            .details(
                json!({ "what": what, "needed": needed, "allowed": allowed, "setting": setting }),
            ),
            RegistryError::Component(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_component",
                message,
            ),
            RegistryError::Compile(CompileError::Timeout(_)) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "compile_timeout", message)
            }
            RegistryError::Compile(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "compile_failed", message)
            }
            RegistryError::NotFound(_) | RegistryError::NoSuchVersion(..) => {
                Self::not_found(message)
            }
            RegistryError::Disabled(_) => {
                Self::new(StatusCode::CONFLICT, "action_disabled", message)
            }
            RegistryError::ConfirmationMismatch { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "confirmation_mismatch", message)
            }
            RegistryError::KindMismatch { .. } => {
                Self::new(StatusCode::CONFLICT, "kind_mismatch", message)
            }
            RegistryError::Workflow(problems) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_workflow",
                message,
            )
            .details(serde_json::to_value(problems).unwrap_or(Value::Null)),
            RegistryError::Store(error) => error.into(),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", message),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Overloaded { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                error.to_string(),
            )
            .retry_after(retry_after.as_secs()),
            SubmitError::Registry(error) => error.into(),
            SubmitError::Store(error) => error.into(),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
        }
    }
}

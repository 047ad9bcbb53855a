//! Liveness, metrics, the API document, and the admin's tenant and token management.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fluxo_core::TenantId;
use serde::{Deserialize, Serialize};

use super::{ApiResult, ok};
use crate::AppState;
use crate::auth::{Admin, hash_token, new_token};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::params::PathParam;

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// Always `true` (an unready node answers 503 with an error).
    ready: bool,
}

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /readyz`: the store answers and its schema is this Fluxo's; 503 with the reason
/// otherwise (a load balancer stops sending traffic, the process stays up).
pub(crate) async fn readyz(State(state): State<AppState>) -> ApiResult {
    match state.store.ready().await {
        Ok(()) => ok(StatusCode::OK, &Ready { ready: true }),
        Err(error) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            error.to_string(),
        )),
    }
}

/// `GET /healthz`: the process is up (no store access, so it answers while workers are
/// busy).
pub(crate) async fn healthz() -> ApiResult {
    ok(StatusCode::OK, &Health { status: "ok" })
}

/// `GET /metrics`
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // Counting stored runs reads the whole index: at most once per interval, however
    // often (and by whomever) /metrics is scraped.
    if state.metrics.gauges_due(std::time::Duration::from_secs(5)) {
        fluxo_orchestrator::maintenance::refresh_gauges(&*state.store, &state.metrics).await;
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /v1/openapi.json`
pub(crate) async fn openapi() -> Response {
    axum::Json(crate::routes::openapi()).into_response()
}

/// The body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    /// The tenant's id: 1 to 64 characters `a-z`, `0-9`, `-` or `_`, starting with a letter.
    // fluxo_core::ids::NAME_PATTERN (the attribute takes a literal).
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$")]
    id: String,
}

/// The answer of `POST /v1/tenants`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TenantCreated {
    /// The new tenant's id.
    id: TenantId,
}

/// The answer of `POST /v1/tenants/{tenant}/tokens`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenCreated {
    /// The tenant.
    tenant: TenantId,
    /// The bearer token (`fxt_…`): shown here once, only its hash is kept.
    token: String,
}

/// `POST /v1/tenants`
pub(crate) async fn create_tenant(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewTenant>,
) -> ApiResult {
    let tenant = TenantId::parse(&body.id)
        .map_err(|_| ApiError::bad_request(format!("invalid tenant id {:?}", body.id)))?;
    if state.store.create_tenant(&tenant).await? {
        ok(StatusCode::CREATED, &TenantCreated { id: tenant })
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            format!("tenant {tenant:?} exists"),
        ))
    }
}

/// `POST /v1/tenants/{tenant}/tokens`
pub(crate) async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    PathParam(tenant): PathParam<String>,
) -> ApiResult {
    let Ok(tenant) = TenantId::parse(&tenant) else {
        return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
    };
    if !state.store.tenant_exists(&tenant).await? {
        return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
    }
    let token = new_token("fxt")?;
    state.store.add_token(&tenant, &hash_token(&token)).await?;
    ok(StatusCode::CREATED, &TokenCreated { tenant, token })
}

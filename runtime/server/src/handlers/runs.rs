//! Runs: submit (with an `Idempotency-Key`), list, show, cancel, retry a dead run.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fluxo_core::{ActionName, Trigger};
use fluxo_store::{CancelOutcome, RunFilter, RunPhase};
use serde::Deserialize;
use serde_json::json;

use super::actions::EventBody;
use super::{ApiResult, name_in_path, ok, run_in_path};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::EventJson;

/// The longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_BYTES)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// `POST /v1/runs`: accepts a run; 202 with its id once it is durable. With an
/// `Idempotency-Key` the tenant used before, answers 200 with that run instead.
pub(crate) async fn submit(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    EventJson(body, warnings): EventJson<EventBody>,
) -> ApiResult {
    let key = idempotency_key(&headers)?;
    let action = body
        .action
        .clone()
        .ok_or_else(|| ApiError::bad_request("`action` is required"))?;
    let action = ActionName::parse(&action)
        .map_err(|_| ApiError::not_found(format!("no action named {action:?}")))?;
    let (event, version) = body.into_event(&tenant, &action, Trigger::Automation, warnings);
    let enqueued = state
        .scheduler
        .submit(&tenant, &action, version, event, key)
        .await?;
    let status = if enqueued.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    ok(
        status,
        json!({ "run_id": enqueued.id, "state": enqueued.state, "deduplicated": enqueued.deduplicated }),
    )
}

/// The query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunQuery {
    action: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /v1/runs`
pub(crate) async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<RunQuery>,
) -> ApiResult {
    let phase = match query.state.as_deref() {
        None => None,
        Some(text) => Some(
            RunPhase::parse(text)
                .map_err(|_| ApiError::bad_request(format!("unknown run state {text:?}")))?,
        ),
    };
    let action = match query.action.as_deref() {
        None => None,
        Some(name) => Some(
            name_in_path(name)
                .map_err(|_| ApiError::bad_request(format!("invalid action name {name:?}")))?,
        ),
    };
    let after = match query.after.as_deref() {
        None => None,
        Some(id) => Some(
            run_in_path(id).map_err(|_| ApiError::bad_request(format!("invalid run id {id:?}")))?,
        ),
    };
    let filter = RunFilter {
        action,
        state: phase,
        limit: query.limit,
        after,
    };
    ok(
        StatusCode::OK,
        json!({ "runs": state.store.runs(&tenant, &filter).await? }),
    )
}

/// `GET /v1/runs/{id}`
pub(crate) async fn show(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    let run = state
        .store
        .run(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    ok(StatusCode::OK, json!(run))
}

/// `POST /v1/runs/{id}/cancel`
pub(crate) async fn cancel(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    match state.scheduler.cancel(&tenant, id).await? {
        CancelOutcome::Cancelled => ok(
            StatusCode::OK,
            json!({ "run_id": id, "state": RunPhase::Cancelled }),
        ),
        CancelOutcome::Requested => ok(
            StatusCode::ACCEPTED,
            json!({ "run_id": id, "state": RunPhase::Running, "cancel_requested": true }),
        ),
        CancelOutcome::AlreadyFinal(phase) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_finished",
            format!("run {id} is already {phase}"),
        )),
    }
}

/// `POST /v1/runs/{id}/retry`: queues a dead run again.
pub(crate) async fn retry(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    if state.scheduler.retry(&tenant, id).await? {
        return ok(
            StatusCode::ACCEPTED,
            json!({ "run_id": id, "state": RunPhase::Queued }),
        );
    }
    match state.store.run(&tenant, id).await? {
        Some(run) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!("run {id} is {}; only dead runs are retried", run.state),
        )),
        None => Err(ApiError::not_found(format!("no run {id}"))),
    }
}

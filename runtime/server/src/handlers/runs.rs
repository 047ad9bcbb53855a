//! Runs: submit (with an `Idempotency-Key`), list, show, cancel, retry a dead run.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fluxo_core::{ActionName, RunId, Trigger};
use fluxo_store::{CancelOutcome, RunFilter, RunPhase, RunRecord};
use serde::{Deserialize, Serialize};

use super::actions::EventBody;
use super::{ApiResult, name_in_path, ok, run_in_path};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::EventJson;
use crate::params::{PathParam, QueryParams};

/// The longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            (1..=MAX_KEY_BYTES).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// The answer of `POST /v1/runs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunAccepted {
    /// The run's id (the earlier run's, when deduplicated).
    run_id: RunId,
    /// Its state now (`queued` for a new run).
    state: RunPhase,
    /// Whether the `Idempotency-Key` named an earlier run (200, nothing new accepted).
    deduplicated: bool,
}

/// A run's state after a cancel or a retry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunStateChange {
    /// The run.
    run_id: RunId,
    /// Its state now.
    state: RunPhase,
    /// Present and `true` when the run is running: it stops at its next host call or
    /// epoch tick (202).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancel_requested: bool,
}

/// The answer of `GET /v1/runs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunList {
    /// The runs: newest first, or oldest first after `after`.
    runs: Vec<RunRecord>,
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
        &RunAccepted {
            run_id: enqueued.id,
            state: enqueued.state,
            deduplicated: enqueued.deduplicated,
        },
    )
}

/// The query of `GET /v1/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    /// Only this action's runs.
    action: Option<String>,
    /// Only runs in this state (`queued`, `running`, `succeeded`, `failed`, `dead`, …).
    state: Option<String>,
    /// At most this many (default 50; more than 500 reads as 500).
    limit: Option<u32>,
    /// Runs newer than this run id, oldest first (to follow runs as they come: the last
    /// id seen).
    after: Option<String>,
}

/// `GET /v1/runs`
pub(crate) async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<RunQuery>,
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
    let runs = state.store.runs(&tenant, &filter).await?;
    ok(StatusCode::OK, &RunList { runs })
}

/// `GET /v1/runs/{id}`
pub(crate) async fn show(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    let run = state
        .store
        .run(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    ok(StatusCode::OK, &run)
}

/// `POST /v1/runs/{id}/cancel`
pub(crate) async fn cancel(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    match state.scheduler.cancel(&tenant, id).await? {
        CancelOutcome::Cancelled => ok(
            StatusCode::OK,
            &RunStateChange {
                run_id: id,
                state: RunPhase::Cancelled,
                cancel_requested: false,
            },
        ),
        CancelOutcome::Requested => ok(
            StatusCode::ACCEPTED,
            &RunStateChange {
                run_id: id,
                state: RunPhase::Running,
                cancel_requested: true,
            },
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
    PathParam(id): PathParam<String>,
) -> ApiResult {
    let id = run_in_path(&id)?;
    if state.scheduler.retry(&tenant, id).await? {
        return ok(
            StatusCode::ACCEPTED,
            &RunStateChange {
                run_id: id,
                state: RunPhase::Queued,
                cancel_requested: false,
            },
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

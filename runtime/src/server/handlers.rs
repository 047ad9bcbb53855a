//! The API's handlers. Each takes typed extractors and returns JSON or an [`ApiError`];
//! another tenant's objects are simply not found.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, Tenant, hash_token, new_token};
use super::error::ApiError;
use super::json::JsonBody;
use crate::event::{Contact, Event, Message, Trigger};
use crate::journal::{Effect, apply_to_contact};
use crate::registry::check_name;
use crate::store::runs::{RunFilter, RunState};

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// `GET /healthz`
pub async fn healthz() -> ApiResult {
    ok(StatusCode::OK, json!({ "status": "ok" }))
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    if let Ok(counts) = state.runs.count_by_state().await {
        text.push_str(
            "# HELP fluxo_runs_stored Stored runs by state.\n# TYPE fluxo_runs_stored gauge\n",
        );
        for (run_state, count) in counts {
            text.push_str(&format!(
                "fluxo_runs_stored{{state=\"{run_state}\"}} {count}\n"
            ));
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// `GET /v1/openapi.json`
pub async fn openapi() -> Response {
    Json(super::routes::openapi()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
}

/// `POST /v1/tenants`
pub async fn create_tenant(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewTenant>,
) -> ApiResult {
    check_name(&body.id)
        .map_err(|_| ApiError::bad_request(format!("invalid tenant id {:?}", body.id)))?;
    if state.catalog.create_tenant(&body.id).await? {
        ok(StatusCode::CREATED, json!({ "id": body.id }))
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            format!("tenant {:?} exists", body.id),
        ))
    }
}

/// `POST /v1/tenants/{tenant}/tokens`
pub async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult {
    if !state.catalog.tenant_exists(&tenant).await? {
        return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
    }
    let token = new_token("fxt")?;
    state
        .catalog
        .add_token(&tenant, &hash_token(&token))
        .await?;
    ok(
        StatusCode::CREATED,
        json!({ "tenant": tenant, "token": token }),
    )
}

/// `GET /v1/actions`
pub async fn list_actions(Tenant(tenant): Tenant, State(state): State<AppState>) -> ApiResult {
    let actions = state.catalog.actions(&tenant).await?;
    ok(StatusCode::OK, json!({ "actions": actions }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    description: Option<String>,
}

/// `POST /v1/actions/{name}/versions` with the component as the body.
pub async fn upload(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let limit = state.runtime.max_component_bytes();
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "component_too_large",
                format!("component is over the {limit}-byte cap"),
            )
            .details(json!({ "limit": limit }))
        } else {
            ApiError::new(rejection.status(), "body_rejected", rejection.body_text())
        }
    })?;
    match state
        .registry
        .upload(&tenant, &name, query.description.as_deref(), &body)
        .await
    {
        Ok((action, version)) => {
            state.metrics.record_upload("accepted");
            ok(
                StatusCode::CREATED,
                json!({ "action": action, "version": version }),
            )
        }
        Err(error) => {
            let error = ApiError::from(error);
            state.metrics.record_upload(error.code());
            Err(error)
        }
    }
}

/// `GET /v1/actions/{name}`
pub async fn show_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    let action = state
        .catalog
        .action(&tenant, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action named {name:?}")))?;
    let versions = state.catalog.versions(&tenant, &name).await?;
    let permissions = versions
        .iter()
        .find(|v| v.version == action.active_version)
        .map(|v| v.imports.clone())
        .unwrap_or_default();
    ok(
        StatusCode::OK,
        json!({ "action": action, "permissions": permissions, "versions": versions }),
    )
}

/// `GET /v1/actions/{name}/versions`
pub async fn list_versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    if state.catalog.action(&tenant, &name).await?.is_none() {
        return Err(ApiError::not_found(format!("no action named {name:?}")));
    }
    ok(
        StatusCode::OK,
        json!({ "versions": state.catalog.versions(&tenant, &name).await? }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    version: u32,
}

/// `POST /v1/actions/{name}/activate`
pub async fn activate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Activate>,
) -> ApiResult {
    if state.catalog.activate(&tenant, &name, body.version).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.catalog.action(&tenant, &name).await? }),
        )
    } else {
        Err(ApiError::not_found(format!(
            "action {name:?} has no version {}",
            body.version
        )))
    }
}

async fn set_enabled(state: &AppState, tenant: &str, name: &str, enabled: bool) -> ApiResult {
    if state.catalog.set_enabled(tenant, name, enabled).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.catalog.action(tenant, name).await? }),
        )
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `PUT /v1/actions/{name}/limits`: overrides that may only tighten the host's limits.
pub async fn set_limits(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<crate::config::LimitOverrides>,
) -> ApiResult {
    state
        .runtime
        .config()
        .limits
        .with_overrides(&body)
        .map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_limits", error.to_string())
        })?;
    if state.catalog.set_limits(&tenant, &name, &body).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.catalog.action(&tenant, &name).await? }),
        )
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `POST /v1/actions/{name}/enable`
pub async fn enable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, true).await
}

/// `POST /v1/actions/{name}/disable`
pub async fn disable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    confirm: Option<String>,
}

/// `DELETE /v1/actions/{name}?confirm={name}`
pub async fn delete_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult {
    state
        .registry
        .delete(&tenant, &name, query.confirm.as_deref().unwrap_or(""))
        .await?;
    ok(StatusCode::OK, json!({ "deleted": name }))
}

/// The event part of a test or run request: everything but tenant and action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    #[serde(default)]
    trigger: Option<Trigger>,
    #[serde(default)]
    contact: Contact,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    action: Option<String>,
}

impl EventBody {
    fn into_event(self, tenant: &str, action: &str, trigger: Trigger) -> (Event, Option<u32>) {
        let mut event = Event::new(tenant, action);
        event.trigger = self.trigger.unwrap_or(trigger);
        event.contact = self.contact;
        event.message = self.message;
        if let Some(input) = self.input {
            event.input = input;
        }
        (event, self.version)
    }
}

fn diff(before: &Contact, effects: &[Effect]) -> Value {
    let mut after = before.clone();
    apply_to_contact(&mut after, effects);
    let mut fields = serde_json::Map::new();
    for name in before.fields.keys().chain(after.fields.keys()) {
        let (old, new) = (before.fields.get(name), after.fields.get(name));
        if old != new {
            fields.insert(name.clone(), json!({ "before": old, "after": new }));
        }
    }
    let added: Vec<_> = after
        .tags
        .iter()
        .filter(|t| !before.tags.contains(t))
        .collect();
    let removed: Vec<_> = before
        .tags
        .iter()
        .filter(|t| !after.tags.contains(t))
        .collect();
    json!({
        "before": before,
        "after": after,
        "fields": fields,
        "tags": { "added": added, "removed": removed },
    })
}

/// `POST /v1/actions/{name}/test`: a dry run with production limits and policy.
pub async fn test_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<EventBody>,
) -> ApiResult {
    let (event, version) = body.into_event(&tenant, &name, Trigger::Test);
    let (action, pinned, component) = state.registry.resolve(&tenant, &name, version).await?;
    let limits = state.runtime.config().limits.tightened_by(&action.limits);
    let options = crate::RunOptions {
        run_id: None,
        limits: Some(limits),
        apply: false,
    };
    let report = state.runtime.run_with(&component, &event, options).await;
    let emails: Vec<_> = report
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendEmail(email) => Some(email),
            _ => None,
        })
        .collect();
    let diff = diff(&event.contact, &report.effects);
    ok(
        StatusCode::OK,
        json!({ "version": pinned.version, "report": report, "contact": diff, "emails": emails }),
    )
}

/// `POST /v1/runs`: accepts a run; 202 with its id.
pub async fn submit_run(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<EventBody>,
) -> ApiResult {
    let action = body
        .action
        .clone()
        .ok_or_else(|| ApiError::bad_request("`action` is required"))?;
    let (event, version) = body.into_event(&tenant, &action, Trigger::Automation);
    match state
        .scheduler
        .submit(&tenant, &action, version, event)
        .await
    {
        Ok(run_id) => ok(
            StatusCode::ACCEPTED,
            json!({ "run_id": run_id, "state": RunState::Queued }),
        ),
        Err(error) => {
            if matches!(error, crate::scheduler::SubmitError::Overloaded { .. }) {
                state.metrics.record_rejected_submit();
            }
            Err(error.into())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    action: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/runs`
pub async fn list_runs(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(query): Query<RunQuery>,
) -> ApiResult {
    let run_state = match query.state.as_deref() {
        None => None,
        Some(text) => Some(
            serde_json::from_value::<RunState>(Value::String(text.to_owned()))
                .map_err(|_| ApiError::bad_request(format!("unknown run state {text:?}")))?,
        ),
    };
    let filter = RunFilter {
        action: query.action,
        state: run_state,
        limit: query.limit,
    };
    ok(
        StatusCode::OK,
        json!({ "runs": state.runs.list(&tenant, &filter).await? }),
    )
}

/// `GET /v1/runs/{id}`
pub async fn show_run(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let run = state
        .runs
        .get(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id:?}")))?;
    ok(StatusCode::OK, json!(run))
}

/// `GET /v1/contacts/{id}`: a contact in the embedded contact store.
pub async fn show_contact(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let contact = state
        .contacts
        .get(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no contact {id:?}")))?;
    ok(StatusCode::OK, json!(contact))
}

/// `GET /v1/secrets`: names only, never values.
pub async fn list_secrets(Tenant(tenant): Tenant, State(state): State<AppState>) -> ApiResult {
    let names: Vec<String> = state.catalog.secrets(&tenant).await?.into_keys().collect();
    ok(StatusCode::OK, json!({ "secrets": names }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    value: String,
}

/// `PUT /v1/secrets/{name}`
pub async fn set_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SecretValue>,
) -> ApiResult {
    crate::host::check_name("secret name", &name, 128).map_err(ApiError::bad_request)?;
    if body.value.is_empty() || body.value.len() > 4096 {
        return Err(ApiError::bad_request("a secret value is 1 to 4096 bytes"));
    }
    state
        .catalog
        .set_secret(&tenant, &name, &body.value)
        .await?;
    ok(StatusCode::OK, json!({ "name": name }))
}

/// `DELETE /v1/secrets/{name}`
pub async fn delete_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    if state.catalog.delete_secret(&tenant, &name).await? {
        ok(StatusCode::OK, json!({ "deleted": name }))
    } else {
        Err(ApiError::not_found(format!("no secret {name:?}")))
    }
}

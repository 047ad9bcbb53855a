//! Actions: upload, list, show, versions, activate, limits, retry policy, enable,
//! disable, delete, test.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use fluxo_core::{
    Contact, Effect, Event, LimitOverrides, Message, RetryPolicy, Trigger, apply_to_contact,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, name_in_path, ok};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::JsonBody;

/// `GET /v1/actions`
pub(crate) async fn list(Tenant(tenant): Tenant, State(state): State<AppState>) -> ApiResult {
    let actions = state.store.actions(&tenant).await?;
    ok(StatusCode::OK, json!({ "actions": actions }))
}

/// The query of `POST /v1/actions/{name}/versions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    description: Option<String>,
}

/// `POST /v1/actions/{name}/versions` with the component as the body.
pub(crate) async fn upload(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let limit = state.registry.max_component_bytes();
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
        .upload(&tenant, &name, query.description.as_deref(), body.to_vec())
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

async fn action_or_404(
    state: &AppState,
    tenant: &fluxo_core::TenantId,
    name: &str,
) -> Result<(fluxo_core::ActionName, fluxo_store::ActionRecord), ApiError> {
    let parsed = name_in_path(name)?;
    let action = state
        .store
        .action(tenant, &parsed)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action named {name:?}")))?;
    Ok((parsed, action))
}

/// `GET /v1/actions/{name}`
pub(crate) async fn show(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    let (parsed, action) = action_or_404(&state, &tenant, &name).await?;
    let versions = state.store.versions(&tenant, &parsed).await?;
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
pub(crate) async fn versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    let (parsed, _) = action_or_404(&state, &tenant, &name).await?;
    ok(
        StatusCode::OK,
        json!({ "versions": state.store.versions(&tenant, &parsed).await? }),
    )
}

/// The body of `POST /v1/actions/{name}/activate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Activate {
    version: u32,
}

/// `POST /v1/actions/{name}/activate`
pub(crate) async fn activate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Activate>,
) -> ApiResult {
    let parsed = name_in_path(&name)?;
    if state.store.activate(&tenant, &parsed, body.version).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.store.action(&tenant, &parsed).await? }),
        )
    } else {
        Err(ApiError::not_found(format!(
            "action {name:?} has no version {}",
            body.version
        )))
    }
}

async fn set_enabled(
    state: &AppState,
    tenant: &fluxo_core::TenantId,
    name: &str,
    enabled: bool,
) -> ApiResult {
    let parsed = name_in_path(name)?;
    if state.store.set_enabled(tenant, &parsed, enabled).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.store.action(tenant, &parsed).await? }),
        )
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `PUT /v1/actions/{name}/limits`: overrides that may only tighten the host's limits.
pub(crate) async fn set_limits(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<LimitOverrides>,
) -> ApiResult {
    state
        .scheduler
        .limits()
        .with_overrides(&body)
        .map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_limits", error.to_string())
        })?;
    let parsed = name_in_path(&name)?;
    if state.store.set_limits(&tenant, &parsed, &body).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.store.action(&tenant, &parsed).await? }),
        )
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `PUT /v1/actions/{name}/retry`: the action's retry policy.
pub(crate) async fn set_retry(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RetryPolicy>,
) -> ApiResult {
    body.check().map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_retry", error.to_string())
    })?;
    let parsed = name_in_path(&name)?;
    if state.store.set_retry(&tenant, &parsed, &body).await? {
        ok(
            StatusCode::OK,
            json!({ "action": state.store.action(&tenant, &parsed).await? }),
        )
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `POST /v1/actions/{name}/enable`
pub(crate) async fn enable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, true).await
}

/// `POST /v1/actions/{name}/disable`
pub(crate) async fn disable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, false).await
}

/// The query of `DELETE /v1/actions/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    confirm: Option<String>,
}

/// `DELETE /v1/actions/{name}?confirm={name}`
pub(crate) async fn delete(
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
pub(crate) struct EventBody {
    #[serde(default)]
    pub(crate) trigger: Option<Trigger>,
    #[serde(default)]
    pub(crate) contact: Contact,
    #[serde(default)]
    pub(crate) message: Option<Message>,
    #[serde(default)]
    pub(crate) input: Option<Value>,
    #[serde(default)]
    pub(crate) version: Option<u32>,
    #[serde(default)]
    pub(crate) action: Option<String>,
}

impl EventBody {
    pub(crate) fn into_event(
        self,
        tenant: &fluxo_core::TenantId,
        action: &fluxo_core::ActionName,
        trigger: Trigger,
        warnings: Vec<String>,
    ) -> (Event, Option<u32>) {
        let mut event = Event::new(tenant.clone(), action.clone());
        event.trigger = self.trigger.unwrap_or(trigger);
        event.contact = self.contact;
        event.message = self.message;
        if let Some(input) = self.input {
            event.input = input.into();
        }
        event.warnings = warnings;
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

/// `POST /v1/actions/{name}/test`: a run through the tenant's slots with production
/// limits and policy that applies nothing; answers with its report, the contact's
/// before/after diff and the e-mails it would send.
pub(crate) async fn test(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
    crate::json::EventJson(body, warnings): crate::json::EventJson<EventBody>,
) -> ApiResult {
    let action = name_in_path(&name)?;
    let (event, version) = body.into_event(&tenant, &action, Trigger::Test, warnings);
    let contact = event.contact.clone();
    let record = state
        .scheduler
        .test(&tenant, &action, version, event)
        .await?;
    let report = record.report.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the test has no report",
        )
    })?;
    let emails: Vec<_> = report
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendEmail(email) => Some(email),
            _ => None,
        })
        .collect();
    let diff = diff(&contact, &report.effects);
    ok(
        StatusCode::OK,
        json!({ "version": record.version, "report": report, "contact": diff, "emails": emails }),
    )
}

//! Actions: upload, list, show, versions (and a version's component), activate, limits,
//! retry policy, enable, disable, delete, test.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use fluxo_core::{
    Contact, Effect, Event, LimitOverrides, Message, RetryPolicy, Trigger, apply_to_contact,
};
use fluxo_core::{FieldValue, OutgoingEmail, PlatformMessage, RunReport};
use fluxo_store::{ActionRecord, VersionKind, VersionRecord};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiResult, Deleted, name_in_path, ok};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::params::{PathParam, QueryParams};

/// The answer of `GET /v1/actions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ActionList {
    /// The tenant's actions, by name.
    actions: Vec<ActionRecord>,
}

/// An action after a change (activate, enable, disable, limits, retry policy).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ActionChanged {
    /// The action as it is now.
    action: ActionRecord,
}

/// The answer of `POST /v1/actions/{name}/versions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Uploaded {
    /// The action (made by the first upload).
    pub(crate) action: ActionRecord,
    /// The new version.
    pub(crate) version: VersionRecord,
}

/// The answer of `GET /v1/actions/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ActionDetail {
    /// The action.
    action: ActionRecord,
    /// What its active version imports: what it may do.
    permissions: Vec<String>,
    /// Every version, oldest first.
    versions: Vec<VersionRecord>,
}

/// The answer of `GET /v1/actions/{name}/versions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionList {
    /// Every version, oldest first.
    versions: Vec<VersionRecord>,
}

/// `GET /v1/actions`
pub(crate) async fn list(Tenant(tenant): Tenant, State(state): State<AppState>) -> ApiResult {
    let actions = state.store.actions(&tenant).await?;
    ok(StatusCode::OK, &ActionList { actions })
}

/// The query of `POST /v1/actions/{name}/versions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// What the action does, for people (kept from the first upload when absent).
    pub(crate) description: Option<String>,
}

/// `POST /v1/actions/{name}/versions` with the component as the body.
pub(crate) async fn upload(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(query): QueryParams<UploadQuery>,
    body: Body,
) -> ApiResult {
    // Read up to a little past the cap: the registry refuses "just over" with the
    // component's size; far over, the read stops here.
    let limit = state.registry.max_component_bytes(&tenant);
    let body = match Limited::new(body, limit.saturating_add(64 << 10))
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "component_too_large",
                format!("component is over the {limit}-byte cap"),
            )
            .details(json!({ "limit": limit })));
        }
        Err(error) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_rejected",
                format!("the component could not be read: {error}"),
            ));
        }
    };
    let uploaded = state
        .registry
        .upload(&tenant, &name, query.description.as_deref(), body.to_vec())
        .await;
    answer_upload(&state, uploaded)
}

/// The answer to an upload (a component's or a workflow's), counted in the metrics.
pub(crate) fn answer_upload(
    state: &AppState,
    uploaded: Result<(ActionRecord, VersionRecord), fluxo_orchestrator::registry::RegistryError>,
) -> ApiResult {
    match uploaded {
        Ok((action, version)) => {
            state.metrics.record_upload("accepted");
            ok(StatusCode::CREATED, &Uploaded { action, version })
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
    PathParam(name): PathParam<String>,
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
        &ActionDetail {
            action,
            permissions,
            versions,
        },
    )
}

/// `GET /v1/actions/{name}/versions`
pub(crate) async fn versions(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult {
    let (parsed, _) = action_or_404(&state, &tenant, &name).await?;
    let versions = state.store.versions(&tenant, &parsed).await?;
    ok(StatusCode::OK, &VersionList { versions })
}

/// `GET /v1/actions/{name}/versions/{version}/component`: the bytes uploaded as that
/// version, as they were uploaded (what `fluxo replay` runs). 404 for an unknown
/// version; 409 for a workflow's version (its definition is in `GET /v1/workflows/{name}`).
pub(crate) async fn component(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam((name, version)): PathParam<(String, u32)>,
) -> ApiResult {
    let (parsed, _) = action_or_404(&state, &tenant, &name).await?;
    let record = state
        .store
        .version(&tenant, &parsed, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("action {name:?} has no version {version}")))?;
    if record.kind != VersionKind::Component {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "version {version} of {name:?} is a workflow definition, not a component: GET /v1/workflows/{name} shows it"
            ),
        ));
    }
    let bytes = state.store.component(&record.hash).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the bytes of version {version} of {name:?} are not stored"),
        )
    })?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/wasm")],
        bytes,
    )
        .into_response())
}

/// The body of `POST /v1/actions/{name}/activate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Activate {
    /// The version new runs use from now on.
    version: u32,
}

/// Answers with the action as it is after a change; 404 if it went meanwhile.
async fn changed(
    state: &AppState,
    tenant: &fluxo_core::TenantId,
    action: &fluxo_core::ActionName,
) -> ApiResult {
    match state.store.action(tenant, action).await? {
        Some(action) => ok(StatusCode::OK, &ActionChanged { action }),
        None => Err(ApiError::not_found(format!(
            "no action named {:?}",
            action.as_str()
        ))),
    }
}

/// `POST /v1/actions/{name}/activate`
pub(crate) async fn activate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(body): JsonBody<Activate>,
) -> ApiResult {
    let parsed = name_in_path(&name)?;
    if state.store.activate(&tenant, &parsed, body.version).await? {
        changed(&state, &tenant, &parsed).await
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
        changed(state, tenant, &parsed).await
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `PUT /v1/actions/{name}/limits`: overrides that may only tighten the host's limits.
pub(crate) async fn set_limits(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
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
        changed(&state, &tenant, &parsed).await
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `PUT /v1/actions/{name}/retry`: the action's retry policy.
pub(crate) async fn set_retry(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(body): JsonBody<RetryPolicy>,
) -> ApiResult {
    body.check().map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_retry", error.to_string())
    })?;
    let parsed = name_in_path(&name)?;
    if state.store.set_retry(&tenant, &parsed, &body).await? {
        changed(&state, &tenant, &parsed).await
    } else {
        Err(ApiError::not_found(format!("no action named {name:?}")))
    }
}

/// `POST /v1/actions/{name}/enable`
pub(crate) async fn enable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, true).await
}

/// `POST /v1/actions/{name}/disable`
pub(crate) async fn disable(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult {
    set_enabled(&state, &tenant, &name, false).await
}

/// The query of `DELETE /v1/actions/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// The action's name again: deleting needs it typed twice.
    confirm: Option<String>,
}

/// `DELETE /v1/actions/{name}?confirm={name}`
pub(crate) async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> ApiResult {
    state
        .registry
        .delete(&tenant, &name, query.confirm.as_deref().unwrap_or(""))
        .await?;
    ok(StatusCode::OK, &Deleted { deleted: name })
}

/// The body of `POST /v1/runs` and `POST /v1/actions/{name}/test`: the event, and
/// which action and version run for it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBody {
    /// What started the run (`automation` for a run, `test` for a test by default).
    #[serde(default)]
    pub(crate) trigger: Option<Trigger>,
    /// The contact the run is for: its id, fields and tags.
    #[serde(default)]
    pub(crate) contact: Contact,
    /// The message that triggered it, if any.
    #[serde(default)]
    pub(crate) message: Option<Message>,
    /// The action's input (any JSON; `{}` when absent).
    #[serde(default)]
    pub(crate) input: Option<Value>,
    /// A version to pin (the active one when absent).
    #[serde(default)]
    pub(crate) version: Option<u32>,
    /// The action to run (required by `POST /v1/runs`; a test names it in the path).
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

/// A contact field's change in a test.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct FieldChange {
    /// The value before the run; `null` when the field did not exist (or held `null`).
    #[schema(nullable = false)]
    before: Option<FieldValue>,
    /// The value after it; `null` when the run removed or cleared the field.
    #[schema(nullable = false)]
    after: Option<FieldValue>,
}

/// The tags a test added and removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TagChanges {
    /// Tags the run added.
    added: Vec<String>,
    /// Tags the run removed.
    removed: Vec<String>,
}

/// What a test would do to the contact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ContactDiff {
    /// The contact as sent.
    before: Contact,
    /// The contact as the run would leave it.
    after: Contact,
    /// Each changed field, by name.
    fields: std::collections::BTreeMap<String, FieldChange>,
    /// Tags added and removed.
    tags: TagChanges,
}

/// The answer of `POST /v1/actions/{name}/test`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TestResult {
    /// The version that ran.
    version: u32,
    /// The run's report (nothing in it was applied).
    report: RunReport,
    /// What it would do to the contact.
    contact: ContactDiff,
    /// The e-mails it would send.
    emails: Vec<OutgoingEmail>,
    /// The replies, notifications and handoffs it would send to the platform.
    messages: Vec<PlatformMessage>,
}

/// The e-mails and platform messages among `effects`, in order.
pub(crate) fn outgoing(effects: &[Effect]) -> (Vec<OutgoingEmail>, Vec<PlatformMessage>) {
    let mut emails = Vec::new();
    let mut messages = Vec::new();
    for effect in effects {
        match effect {
            Effect::SendEmail(email) => emails.push(email.clone()),
            Effect::SendMessage(message) => messages.push(message.clone()),
            _ => {}
        }
    }
    (emails, messages)
}

pub(crate) fn diff(before: &Contact, effects: &[Effect]) -> ContactDiff {
    let mut after = before.clone();
    apply_to_contact(&mut after, effects);
    let mut fields = std::collections::BTreeMap::new();
    for name in before.fields.keys().chain(after.fields.keys()) {
        let (old, new) = (before.fields.get(name), after.fields.get(name));
        if old != new {
            fields.insert(
                name.clone(),
                FieldChange {
                    before: old.cloned(),
                    after: new.cloned(),
                },
            );
        }
    }
    let added = after
        .tags
        .iter()
        .filter(|t| !before.tags.contains(t))
        .cloned()
        .collect();
    let removed = before
        .tags
        .iter()
        .filter(|t| !after.tags.contains(t))
        .cloned()
        .collect();
    ContactDiff {
        before: before.clone(),
        after,
        fields,
        tags: TagChanges { added, removed },
    }
}

/// `POST /v1/actions/{name}/test`: a run through the tenant's slots with production
/// limits and policy that applies nothing; answers with its report, the contact's
/// before/after diff and the e-mails and platform messages it would send.
pub(crate) async fn test(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
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
    let (emails, messages) = outgoing(&report.effects);
    let contact = diff(&contact, &report.effects);
    ok(
        StatusCode::OK,
        &TestResult {
            version: record.version,
            report,
            contact,
            emails,
            messages,
        },
    )
}

#[cfg(test)]
mod tests {
    use fluxo_core::{ContactId, Effect, FieldValue};

    use super::*;

    /// A test's contact diff with a field added, one cleared and a tag removed matches the
    /// document (a cleared field is `null`, which the schema must take exactly once).
    #[test]
    fn a_contact_diff_as_answered_matches_its_schema() {
        let mut before = Contact::with_id(ContactId::parse("c1").unwrap());
        before
            .fields
            .insert("old".into(), FieldValue::Text("x".into()));
        before.tags.push("new".into());
        let effects = vec![
            Effect::SetField {
                name: "old".into(),
                value: FieldValue::Null,
            },
            Effect::SetField {
                name: "deal".into(),
                value: FieldValue::Number(7.0),
            },
            Effect::RemoveTag { tag: "new".into() },
        ];
        let diff = serde_json::to_value(diff(&before, &effects)).unwrap();
        crate::routes::check_against_document("ContactDiff", &diff).unwrap();
    }
}

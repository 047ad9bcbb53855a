//! Inbound hooks: a tenant's signed URLs through which an outside system — a helpdesk
//! reporting that an agent replied or closed a ticket — starts one of the tenant's
//! workflows with its JSON payload.
//!
//! `POST /v1/hooks/{tenant}/{hook}` carries no bearer token: it is authenticated by a
//! Standard Webhooks signature (<https://www.standardwebhooks.com>: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`) under the hook's
//! own `whsec_` secret, with the reference libraries' 5-minute timestamp tolerance
//! against replays. The `webhook-id` is the started run's idempotency key, so a sender
//! retrying a delivery starts one run.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use fluxo_core::{ActionName, ContactId, Event, RunId, TenantId, Trigger};
use fluxo_orchestrator::signing;
use fluxo_store::{InboundHook, RunPhase, SecretKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiResult, Deleted, ok};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::params::PathParam;

/// The largest payload a hook accepts: 256 KiB (a helpdesk event is a few KiB).
pub(crate) const MAX_HOOK_PAYLOAD_BYTES: usize = 256 * 1024;

/// The body of `PUT /v1/hooks/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookSettings {
    /// The workflow (or component action) each call starts.
    workflow: String,
    /// Where in the payload the run's contact id is: a path such as
    /// `ticket.external_id` or `data[contact]` (a string or a whole number there).
    /// Without it, runs are about no contact.
    #[serde(default)]
    contact_path: Option<String>,
}

/// The answer of `PUT /v1/hooks/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HookSaved {
    /// The hook.
    hook: InboundHook,
    /// Where the outside system posts: `/v1/hooks/{tenant}/{name}`.
    path: String,
    /// The signing secret (`whsec_…`), shown only when the hook is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// The answer of `GET /v1/hooks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HookList {
    /// The tenant's hooks, by name.
    hooks: Vec<InboundHook>,
}

/// The answer of `POST /v1/hooks/{tenant}/{hook}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HookAccepted {
    /// The run started (the earlier one for a repeated `webhook-id`).
    run_id: RunId,
    /// Its state now.
    state: RunPhase,
    /// Whether this `webhook-id` had started a run already (200, nothing new).
    deduplicated: bool,
}

fn hook_name(name: &str) -> Result<ActionName, ApiError> {
    ActionName::parse(name).map_err(|_| {
        ApiError::bad_request(format!(
            "{name:?} is not a hook name: {}",
            fluxo_core::ids::NAME_RULE
        ))
    })
}

/// `PUT /v1/hooks/{name}`: creates the hook (201, with its secret shown once) or changes
/// the workflow it starts and its contact path (200; the secret stays).
pub(crate) async fn put(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(settings): JsonBody<HookSettings>,
) -> ApiResult {
    let name = hook_name(&name)?;
    let workflow = ActionName::parse(&settings.workflow).map_err(|_| {
        ApiError::bad_request(format!(
            "`workflow`: {:?} is not a name: {}",
            settings.workflow,
            fluxo_core::ids::NAME_RULE
        ))
    })?;
    if state.store.action(&tenant, &workflow).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no workflow or action named `{workflow}`"
        )));
    }
    let contact_path = match settings.contact_path {
        None => None,
        Some(path) => {
            fluxo_workflow::path::parse(&path)
                .map_err(|why| ApiError::bad_request(format!("`contact_path`: {path:?}: {why}")))?;
            Some(path)
        }
    };
    let hook = InboundHook {
        name: name.to_string(),
        workflow: workflow.to_string(),
        contact_path,
        created_ms: fluxo_store::now_ms(),
    };
    let secret = super::tenant_data::new_signing_secret()?;
    let sealed = state
        .vault
        .seal(SecretKind::Hook, &tenant, name.as_str(), &secret)
        .map_err(super::tenant_data::sealing)?;
    let created = state.store.put_hook(&tenant, &hook, &sealed).await?;
    let (hook, _) = state
        .store
        .hook(&tenant, name.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no hook {name}")))?;
    let answer = HookSaved {
        path: format!("/v1/hooks/{tenant}/{name}"),
        secret: created.then_some(secret),
        hook,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, &answer)
}

/// `GET /v1/hooks`
pub(crate) async fn list(Tenant(tenant): Tenant, State(state): State<AppState>) -> ApiResult {
    let hooks = state.store.hooks(&tenant).await?;
    ok(StatusCode::OK, &HookList { hooks })
}

/// `DELETE /v1/hooks/{name}`: later calls answer 404.
pub(crate) async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult {
    if !state.store.delete_hook(&tenant, &name).await? {
        return Err(ApiError::not_found(format!("no hook named {name:?}")));
    }
    ok(StatusCode::OK, &Deleted { deleted: name })
}

/// A secret no hook has: an unknown tenant or hook is checked against it, so it costs
/// and answers what a wrong signature does (no probing for names).
const NO_HOOK_SECRET: &str = "whsec_bm8tc3VjaC1ob29rLW5vLXN1Y2gtaG9vaw==";

/// `POST /v1/hooks/{tenant}/{hook}`: verifies the signature, then starts the hook's
/// workflow with `input = {"payload": <the body>, "hook": <name>, "webhook_id": <id>}`,
/// about the contact found at the hook's contact path. 202 with the run; 200 for a
/// `webhook-id` seen before; 401 `invalid_signature` (also for no such tenant or hook:
/// names cannot be probed); 413 past [`MAX_HOOK_PAYLOAD_BYTES`] (the route's body
/// limit: nothing larger is read); 422 `no_contact` when the payload has no contact id at
/// the path.
pub(crate) async fn receive(
    State(state): State<AppState>,
    PathParam((tenant, name)): PathParam<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(
            status,
            code,
            format!(
                "the payload could not be read (at most {MAX_HOOK_PAYLOAD_BYTES} bytes): {rejection}"
            ),
        )
    })?;
    let found = match TenantId::parse(&tenant) {
        Ok(tenant) => state
            .store
            .hook(&tenant, &name)
            .await?
            .map(|found| (tenant, found)),
        Err(_) => None,
    };
    let secret = match &found {
        Some((tenant, (_, stored))) => state
            .vault
            .open_value(SecretKind::Hook, tenant, &name, stored)
            .map_err(super::tenant_data::opening)?,
        None => NO_HOOK_SECRET.to_owned(),
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let now = fluxo_store::now_ms() / 1000;
    let verified = signing::verify(
        &secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        now,
        signing::DEFAULT_TOLERANCE_SECONDS,
    );
    let unsigned = |why: String| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            format!("the call is not signed with this hook's secret: {why}"),
        )
    };
    let (tenant_id, (hook, _)) = match (found, verified) {
        (_, Err(error)) => return Err(unsigned(error.to_string())),
        (None, Ok(())) => return Err(unsigned(signing::VerifyError::Signature.to_string())),
        (Some(found), Ok(())) => found,
    };
    let webhook_id = header("webhook-id").unwrap_or_default().to_owned();
    if webhook_id.len() > 200 || webhook_id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "webhook-id must be at most 200 bytes without control characters",
        ));
    }
    // As the API reads events: an unpaired surrogate escape (a chat message cut in
    // the middle of an emoji) becomes U+FFFD, noted in the run's warnings, rather than a
    // refusal the sender would retry forever.
    let read = fluxo_core::json::from_slice_lenient::<Value>(&body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the payload is not JSON: {error}"),
        )
    })?;
    let payload = read.value;
    let workflow = ActionName::parse(&hook.workflow)
        .map_err(|_| ApiError::not_found(format!("no workflow named {:?}", hook.workflow)))?;
    let mut event = Event::new(tenant_id.clone(), workflow.clone());
    event.trigger = Trigger::Automation;
    if let Some(path) = &hook.contact_path {
        event.contact.id = Some(contact_at(&payload, path)?);
    }
    event.input = json!({"payload": payload, "hook": name, "webhook_id": webhook_id}).into();
    event.warnings = read.warnings;
    let enqueued = state
        .scheduler
        .submit(
            &tenant_id,
            &workflow,
            None,
            event,
            Some(format!("hook:{name}:{webhook_id}")),
        )
        .await?;
    let status = if enqueued.deduplicated {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    ok(
        status,
        &HookAccepted {
            run_id: enqueued.id,
            state: enqueued.state,
            deduplicated: enqueued.deduplicated,
        },
    )
}

/// The contact id at `path` in `payload`: a string, or a whole number written out.
fn contact_at(payload: &Value, path: &str) -> Result<ContactId, ApiError> {
    let no_contact =
        |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_contact", why);
    let segments = fluxo_workflow::path::parse(path)
        .map_err(|why| no_contact(format!("the hook's contact path {path:?}: {why}")))?;
    let text = match fluxo_workflow::path::lookup(payload, &segments) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(other) => {
            return Err(no_contact(format!(
                "the payload's `{path}` is {other}, not a contact id"
            )));
        }
        None => return Err(no_contact(format!("the payload has no `{path}`"))),
    };
    ContactId::parse(&text)
        .map_err(|error| no_contact(format!("the payload's `{path}` ({text:?}): {error}")))
}

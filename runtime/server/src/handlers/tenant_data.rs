//! A tenant's contacts (the embedded store), secrets and completion-webhook endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use fluxo_core::ContactId;
use fluxo_store::{SecretKind, WebhookEndpoint};
use serde::{Deserialize, Serialize};

use super::{ApiResult, Deleted, ok};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::params::PathParam;

/// The shortest secret accepted: shorter values would match innocent text, and the
/// redactor would mangle every report.
pub(crate) const MIN_SECRET_BYTES: usize = 8;
/// The longest secret accepted.
pub(crate) const MAX_SECRET_BYTES: usize = 4096;

/// `GET /v1/contacts/{id}`: a contact in the embedded contact store (404 saying so for a
/// tenant whose contacts the platform keeps: its runs change none, and contacts stored
/// before the switch are not shown as if they were current).
pub(crate) async fn show_contact(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> ApiResult {
    if state.scheduler.options().contact_owners.of(&tenant) == fluxo_store::ContactOwner::Platform {
        return Err(ApiError::not_found(format!(
            "no contact {id:?} here: tenant {tenant}'s contacts are kept by the platform, which gets runs' changes as contact.updated events"
        )));
    }
    let contact_id =
        ContactId::parse(&id).map_err(|_| ApiError::not_found(format!("no contact {id:?}")))?;
    let contact = state
        .store
        .contact(&tenant, &contact_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no contact {id:?}")))?;
    ok(StatusCode::OK, &contact)
}

/// The longest message text accepted from a contact: 64 KiB (the chat platforms' own
/// limits are lower: 4 096 characters on WhatsApp and Telegram).
pub(crate) const MAX_INBOUND_TEXT_BYTES: usize = 64 * 1024;

/// The answer of `POST /v1/contacts/{id}/messages`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageDelivered {
    /// The runs that were waiting for this contact's reply and go on with it now.
    resumed: Vec<fluxo_core::RunId>,
}

/// `POST /v1/contacts/{id}/messages`: the platform reports a message from the contact.
/// Runs waiting for the contact's reply go on with it; a run still running when it
/// arrives gets it when it reaches its wait (the message is kept 25 hours).
pub(crate) async fn deliver_message(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    JsonBody(message): JsonBody<fluxo_core::Message>,
) -> ApiResult {
    let contact = ContactId::parse(&id).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_contact",
            error.to_string(),
        )
    })?;
    check_inbound(&message.text, message.channel.as_deref())?;
    let resumed = state
        .scheduler
        .deliver_reply(&tenant, &contact, &message)
        .await?;
    ok(StatusCode::ACCEPTED, &MessageDelivered { resumed })
}

/// The longest channel name accepted with a contact's message, in bytes.
pub(crate) const MAX_CHANNEL_BYTES: usize = 64;

/// Checks a message from a contact (reported, or a test's sample reply): its text at most
/// [`MAX_INBOUND_TEXT_BYTES`] (413 `message_too_large`), its channel a short name
/// without control characters (400 `invalid_channel`).
pub(crate) fn check_inbound(text: &str, channel: Option<&str>) -> Result<(), ApiError> {
    if text.len() > MAX_INBOUND_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!(
                "the message's text is {} bytes, over the {MAX_INBOUND_TEXT_BYTES}-byte limit",
                text.len()
            ),
        ));
    }
    if let Some(channel) = channel
        && (channel.len() > MAX_CHANNEL_BYTES || channel.chars().any(char::is_control))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_channel",
            format!(
                "a channel is a name of at most {MAX_CHANNEL_BYTES} bytes without control characters"
            ),
        ));
    }
    Ok(())
}

/// The answer of `GET /v1/secrets`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SecretNames {
    /// The tenant's secret names (never their values).
    secrets: Vec<String>,
}

/// The answer of `PUT /v1/secrets/{name}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SecretSaved {
    /// The secret's name.
    name: String,
}

/// The answer of `POST /v1/webhooks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointCreated {
    /// The endpoint.
    endpoint: WebhookEndpoint,
    /// Its signing secret (`whsec_…`, Standard Webhooks): shown here once.
    secret: String,
}

/// The answer of `GET /v1/webhooks`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointList {
    /// The tenant's endpoints.
    endpoints: Vec<WebhookEndpoint>,
}

/// The answer of `POST /v1/webhooks/{id}/rotate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SecretRotated {
    /// The endpoint.
    id: String,
    /// Its new signing secret: shown here once.
    secret: String,
}

/// `GET /v1/secrets`: names only, never values.
pub(crate) async fn list_secrets(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> ApiResult {
    let names: Vec<String> = state.store.secrets(&tenant).await?.into_keys().collect();
    ok(StatusCode::OK, &SecretNames { secrets: names })
}

/// The body of `PUT /v1/secrets/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretValue {
    /// The value: 8 to 4096 bytes of UTF-8 (bytes, not characters).
    value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

fn check_secret_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "a secret name is 1 to 128 bytes without control characters",
        ))
    }
}

/// `PUT /v1/secrets/{name}`
pub(crate) async fn set_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(body): JsonBody<SecretValue>,
) -> ApiResult {
    check_secret_name(&name)?;
    if body.value.len() < MIN_SECRET_BYTES || body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_secret",
            format!(
                "a secret value is {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes: shorter ones cannot be told apart from ordinary text when records are redacted"
            ),
        ));
    }
    let sealed = state
        .vault
        .seal(SecretKind::Tenant, &tenant, &name, &body.value)
        .map_err(sealing)?;
    state.store.set_secret(&tenant, &name, &sealed).await?;
    ok(StatusCode::OK, &SecretSaved { name })
}

/// A new Standard Webhooks secret (`whsec_…`) for an endpoint or an inbound hook.
pub(crate) fn new_signing_secret() -> Result<String, ApiError> {
    fluxo_orchestrator::signing::new_secret().map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("randomness: {error}"),
        )
    })
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(sealing)`")]
pub(crate) fn sealing(error: fluxo_orchestrator::VaultError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("sealing the secret: {error}"),
    )
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(opening)`")]
pub(crate) fn opening(error: fluxo_orchestrator::VaultError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("opening a stored secret: {error}"),
    )
}

/// `DELETE /v1/secrets/{name}`
pub(crate) async fn delete_secret(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult {
    if state.store.delete_secret(&tenant, &name).await? {
        ok(StatusCode::OK, &Deleted { deleted: name })
    } else {
        Err(ApiError::not_found(format!("no secret {name:?}")))
    }
}

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEndpoint {
    /// Where deliveries go: `http` or `https` with a host, no credentials.
    url: String,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| ApiError::bad_request(format!("invalid URL {url:?}: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ApiError::bad_request(
            "a webhook URL is http(s) with a host",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::bad_request(
            "a webhook URL may not carry credentials",
        ));
    }
    Ok(())
}

/// `POST /v1/webhooks`: registers a completion-webhook endpoint; its signing secret is
/// shown once.
pub(crate) async fn create_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewEndpoint>,
) -> ApiResult {
    check_url(&body.url)?;
    let secret = new_signing_secret()?;
    let sealed = state
        .vault
        .seal(SecretKind::Webhook, &tenant, "", &secret)
        .map_err(sealing)?;
    let endpoint = state
        .store
        .add_endpoint(&tenant, &body.url, &sealed)
        .await?;
    ok(StatusCode::CREATED, &EndpointCreated { endpoint, secret })
}

/// `GET /v1/webhooks`
pub(crate) async fn list_endpoints(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> ApiResult {
    let endpoints = state.store.endpoints(&tenant).await?;
    ok(StatusCode::OK, &EndpointList { endpoints })
}

/// `POST /v1/webhooks/{id}/rotate`: a new signing secret (shown once); the old ones keep
/// signing for 24 hours so receivers can switch.
pub(crate) async fn rotate_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> ApiResult {
    let secret = new_signing_secret()?;
    let keep_until = fluxo_store::now_ms().saturating_add(86_400_000);
    let sealed = state
        .vault
        .seal(SecretKind::Webhook, &tenant, &id, &secret)
        .map_err(sealing)?;
    if state
        .store
        .rotate_endpoint_secret(&tenant, &id, &sealed, keep_until)
        .await?
    {
        ok(StatusCode::OK, &SecretRotated { id, secret })
    } else {
        Err(ApiError::not_found(format!("no endpoint {id:?}")))
    }
}

/// `DELETE /v1/webhooks/{id}`
pub(crate) async fn delete_endpoint(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> ApiResult {
    if state.store.delete_endpoint(&tenant, &id).await? {
        ok(StatusCode::OK, &Deleted { deleted: id })
    } else {
        Err(ApiError::not_found(format!("no endpoint {id:?}")))
    }
}

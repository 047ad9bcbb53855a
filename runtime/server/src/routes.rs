//! The route table: one list that builds both the router and the OpenAPI document, so
//! every served route is documented and every documented route is served.

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Map, Value, json};

use super::AppState;
use super::handlers as h;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The admin token.
    Admin,
    /// A tenant token.
    Tenant,
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// The path, with `{param}` segments.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The success status.
    pub status: u16,
}

const fn doc(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    status: u16,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        access,
        status,
    }
}

/// Every route with its handler.
pub fn routes() -> Vec<(RouteDoc, MethodRouter<AppState>)> {
    use Access::{Admin, Public, Tenant};
    use h::{actions, admin, runs, tenant_data as data};
    vec![
        (
            doc("GET", "/healthz", "Liveness", Public, 200),
            get(admin::healthz),
        ),
        (
            doc(
                "GET",
                "/readyz",
                "Readiness: the store answers and its schema is current (503 otherwise)",
                Public,
                200,
            ),
            get(admin::readyz),
        ),
        (
            doc(
                "GET",
                "/metrics",
                "Prometheus (OpenMetrics) metrics",
                Public,
                200,
            ),
            get(admin::metrics),
        ),
        (
            doc("GET", "/v1/openapi.json", "This document", Public, 200),
            get(admin::openapi),
        ),
        (
            doc("POST", "/v1/tenants", "Create a tenant", Admin, 201),
            post(admin::create_tenant),
        ),
        (
            doc(
                "POST",
                "/v1/tenants/{tenant}/tokens",
                "Create a tenant token (shown once)",
                Admin,
                201,
            ),
            post(admin::create_token),
        ),
        (
            doc("GET", "/v1/actions", "List actions", Tenant, 200),
            get(actions::list),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}",
                "Show an action, its permissions and versions",
                Tenant,
                200,
            ),
            get(actions::show),
        ),
        (
            doc(
                "DELETE",
                "/v1/actions/{name}",
                "Delete an action (?confirm=NAME)",
                Tenant,
                200,
            ),
            delete(actions::delete),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/versions",
                "Upload a component as a new version (body: the .wasm bytes; ?description=)",
                Tenant,
                201,
            ),
            post(actions::upload),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}/versions",
                "List versions",
                Tenant,
                200,
            ),
            get(actions::versions),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/activate",
                "Make a version active: {\"version\": N}",
                Tenant,
                200,
            ),
            post(actions::activate),
        ),
        (
            doc(
                "PUT",
                "/v1/actions/{name}/limits",
                "Set limit overrides (only tighter than the host's): {\"fuel\", \"deadline_ms\", \"max_memory_bytes\"}",
                Tenant,
                200,
            ),
            put(actions::set_limits),
        ),
        (
            doc(
                "PUT",
                "/v1/actions/{name}/retry",
                "Set the retry policy: {\"max_attempts\", \"initial_delay_ms\", \"multiplier\", \"max_delay_ms\", …}",
                Tenant,
                200,
            ),
            put(actions::set_retry),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/enable",
                "Accept new runs",
                Tenant,
                200,
            ),
            post(actions::enable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/disable",
                "Refuse new runs",
                Tenant,
                200,
            ),
            post(actions::disable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/test",
                "Test against a sample event through the tenant's slots: report, contact diff, e-mails; nothing applied",
                Tenant,
                200,
            ),
            post(actions::test),
        ),
        (
            doc(
                "POST",
                "/v1/runs",
                "Submit a run (durable on 202): {\"action\", \"contact\", \"message\", \"input\", \"version\"}; Idempotency-Key header",
                Tenant,
                202,
            ),
            post(runs::submit),
        ),
        (
            doc(
                "GET",
                "/v1/runs",
                "List runs (?action=&state=&limit=&after=)",
                Tenant,
                200,
            ),
            get(runs::list),
        ),
        (
            doc(
                "GET",
                "/v1/runs/{id}",
                "Show a run, its attempts and report",
                Tenant,
                200,
            ),
            get(runs::show),
        ),
        (
            doc(
                "POST",
                "/v1/runs/{id}/cancel",
                "Cancel a queued or running run",
                Tenant,
                200,
            ),
            post(runs::cancel),
        ),
        (
            doc(
                "POST",
                "/v1/runs/{id}/retry",
                "Queue a dead run again",
                Tenant,
                202,
            ),
            post(runs::retry),
        ),
        (
            doc(
                "GET",
                "/v1/contacts/{id}",
                "Show a contact of the embedded contact store",
                Tenant,
                200,
            ),
            get(data::show_contact),
        ),
        (
            doc("GET", "/v1/secrets", "List secret names", Tenant, 200),
            get(data::list_secrets),
        ),
        (
            doc(
                "PUT",
                "/v1/secrets/{name}",
                "Set a secret (8 to 4096 bytes): {\"value\"}",
                Tenant,
                200,
            ),
            put(data::set_secret),
        ),
        (
            doc(
                "DELETE",
                "/v1/secrets/{name}",
                "Delete a secret",
                Tenant,
                200,
            ),
            delete(data::delete_secret),
        ),
        (
            doc(
                "POST",
                "/v1/webhooks",
                "Register a completion-webhook endpoint: {\"url\"}; its whsec_ secret is shown once",
                Tenant,
                201,
            ),
            post(data::create_endpoint),
        ),
        (
            doc("GET", "/v1/webhooks", "List webhook endpoints", Tenant, 200),
            get(data::list_endpoints),
        ),
        (
            doc(
                "POST",
                "/v1/webhooks/{id}/rotate",
                "A new signing secret (shown once); the old one signs too for 24 h",
                Tenant,
                200,
            ),
            post(data::rotate_endpoint),
        ),
        (
            doc(
                "DELETE",
                "/v1/webhooks/{id}",
                "Delete a webhook endpoint",
                Tenant,
                200,
            ),
            delete(data::delete_endpoint),
        ),
    ]
}

/// The router of every route (state still to be given).
pub fn router() -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (doc, handler)| {
            router.route(doc.path, handler)
        })
}

/// The OpenAPI 3.1 document of the route table.
#[must_use]
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for (doc, _) in routes() {
        let parameters: Vec<Value> = doc
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let security = match doc.access {
            Access::Public => json!([]),
            Access::Admin => json!([{ "admin": [] }]),
            Access::Tenant => json!([{ "tenant": [] }]),
        };
        let mut responses = Map::new();
        responses.insert(
            doc.status.to_string(),
            json!({ "description": "success", "content": { "application/json": {} } }),
        );
        for (status, meaning) in [
            ("400", "malformed request"),
            ("401", "missing or unknown token"),
            ("404", "not found (or another tenant's)"),
            ("422", "component refused"),
            (
                "409",
                "conflict (disabled action, finished run, existing tenant)",
            ),
            ("429", "the tenant's backlog is full (see Retry-After)"),
        ] {
            responses.insert(status.to_owned(), json!({ "$ref": format!("#/components/responses/Error{status}"), "description": meaning }));
        }
        let operation = json!({
            "summary": doc.summary,
            "parameters": parameters,
            "security": security,
            "responses": responses,
        });
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(methods) = entry.as_object_mut() {
            methods.insert(doc.method.to_ascii_lowercase(), operation);
        }
    }
    let error_responses: Map<String, Value> = ["400", "401", "404", "409", "422", "429"]
        .iter()
        .map(|status| {
            (
                format!("Error{status}"),
                json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
            )
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Fluxo", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": { "type": "http", "scheme": "bearer" },
                "tenant": { "type": "http", "scheme": "bearer" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" },
                        "details": {},
                    },
                },
            },
            "responses": error_responses,
        },
    })
}

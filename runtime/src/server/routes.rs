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
    vec![
        (
            doc("GET", "/healthz", "Liveness", Public, 200),
            get(h::healthz),
        ),
        (
            doc("GET", "/metrics", "Prometheus metrics", Public, 200),
            get(h::metrics),
        ),
        (
            doc("GET", "/v1/openapi.json", "This document", Public, 200),
            get(h::openapi),
        ),
        (
            doc("POST", "/v1/tenants", "Create a tenant", Admin, 201),
            post(h::create_tenant),
        ),
        (
            doc(
                "POST",
                "/v1/tenants/{tenant}/tokens",
                "Create a tenant token (shown once)",
                Admin,
                201,
            ),
            post(h::create_token),
        ),
        (
            doc("GET", "/v1/actions", "List actions", Tenant, 200),
            get(h::list_actions),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}",
                "Show an action, its permissions and versions",
                Tenant,
                200,
            ),
            get(h::show_action),
        ),
        (
            doc(
                "DELETE",
                "/v1/actions/{name}",
                "Delete an action (?confirm=NAME)",
                Tenant,
                200,
            ),
            delete(h::delete_action),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/versions",
                "Upload a component as a new version (body: the .wasm bytes; ?description=)",
                Tenant,
                201,
            ),
            post(h::upload),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}/versions",
                "List versions",
                Tenant,
                200,
            ),
            get(h::list_versions),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/activate",
                "Make a version active: {\"version\": N}",
                Tenant,
                200,
            ),
            post(h::activate),
        ),
        (
            doc(
                "PUT",
                "/v1/actions/{name}/limits",
                "Set limit overrides (only tighter than the host's): {\"fuel\", \"deadline_ms\", \"max_memory_bytes\"}",
                Tenant,
                200,
            ),
            put(h::set_limits),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/enable",
                "Accept new runs",
                Tenant,
                200,
            ),
            post(h::enable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/disable",
                "Refuse new runs",
                Tenant,
                200,
            ),
            post(h::disable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/test",
                "Dry run against a sample event: report, contact diff, e-mails",
                Tenant,
                200,
            ),
            post(h::test_action),
        ),
        (
            doc(
                "POST",
                "/v1/runs",
                "Submit a run: {\"action\", \"contact\", \"message\", \"input\", \"version\"}",
                Tenant,
                202,
            ),
            post(h::submit_run),
        ),
        (
            doc(
                "GET",
                "/v1/runs",
                "List runs (?action=&state=&limit=)",
                Tenant,
                200,
            ),
            get(h::list_runs),
        ),
        (
            doc(
                "GET",
                "/v1/runs/{id}",
                "Show a run and its report",
                Tenant,
                200,
            ),
            get(h::show_run),
        ),
        (
            doc(
                "GET",
                "/v1/contacts/{id}",
                "Show a contact of the embedded contact store",
                Tenant,
                200,
            ),
            get(h::show_contact),
        ),
        (
            doc("GET", "/v1/secrets", "List secret names", Tenant, 200),
            get(h::list_secrets),
        ),
        (
            doc(
                "PUT",
                "/v1/secrets/{name}",
                "Set a secret: {\"value\"}",
                Tenant,
                200,
            ),
            put(h::set_secret),
        ),
        (
            doc(
                "DELETE",
                "/v1/secrets/{name}",
                "Delete a secret",
                Tenant,
                200,
            ),
            delete(h::delete_secret),
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
            ("429", "queue full (see Retry-After)"),
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
    let error_responses: Map<String, Value> = ["400", "401", "404", "422", "429"]
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

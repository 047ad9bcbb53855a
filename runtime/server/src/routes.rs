//! The route table: one list that builds both the router and the OpenAPI document, so
//! every served route is documented and every documented route is served. The bodies'
//! schemas are derived from the very types the handlers serialize and parse
//! (`utoipa::ToSchema`), so the document cannot drift from what is answered.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::handlers as h;
use crate::error::ErrorBody;

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

/// The named schemas a document collects: `(name, schema)`.
type Schemas = Vec<(String, RefOr<Schema>)>;

/// Adds a type's schema (and the schemas it refers to) and answers a `$ref` to it.
pub type SchemaOf = fn(&mut Schemas) -> Value;

fn schema_of<T: ToSchema>(schemas: &mut Schemas) -> Value {
    let name = T::name();
    schemas.push((name.to_string(), T::schema()));
    T::schemas(schemas);
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn query_of<P: IntoParams>() -> Vec<Parameter> {
    P::into_params(|| Some(ParameterIn::Query))
}

/// A route's request body.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody {
    /// None is read.
    None,
    /// JSON of a type (an empty body reads as `{}`).
    Json(SchemaOf),
    /// A WebAssembly component's bytes.
    Component,
    /// Any JSON value (an outside system's payload).
    AnyJson,
}

/// A route's success body.
#[derive(Debug, Clone, Copy)]
pub enum ResponseBody {
    /// JSON of a type.
    Json(SchemaOf),
    /// Text of a media type (`/metrics`).
    Text(&'static str),
    /// Any JSON object (`/v1/openapi.json`).
    AnyObject,
    /// Bytes of a media type (a component).
    Bytes(&'static str),
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
    /// Another success status with the same body (a deduplicated submission's 200, a
    /// requested cancel's 202).
    pub also: Option<u16>,
    /// What it reads.
    pub request: RequestBody,
    /// Its query parameters.
    pub query: Option<fn() -> Vec<Parameter>>,
    /// What it answers on success.
    pub response: ResponseBody,
}

fn nothing(_: &mut Schemas) -> Value {
    json!({})
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
        also: None,
        request: RequestBody::None,
        query: None,
        response: ResponseBody::Json(nothing),
    }
}

impl RouteDoc {
    fn body<T: ToSchema>(mut self) -> Self {
        self.request = RequestBody::Json(schema_of::<T>);
        self
    }

    fn any_json(mut self) -> Self {
        self.request = RequestBody::AnyJson;
        self
    }

    fn component(mut self) -> Self {
        self.request = RequestBody::Component;
        self
    }

    fn query<P: IntoParams>(mut self) -> Self {
        self.query = Some(query_of::<P>);
        self
    }

    fn returns<T: ToSchema>(mut self) -> Self {
        self.response = ResponseBody::Json(schema_of::<T>);
        self
    }

    fn text(mut self, media_type: &'static str) -> Self {
        self.response = ResponseBody::Text(media_type);
        self
    }

    fn bytes(mut self, media_type: &'static str) -> Self {
        self.response = ResponseBody::Bytes(media_type);
        self
    }

    fn any_object(mut self) -> Self {
        self.response = ResponseBody::AnyObject;
        self
    }

    fn also(mut self, status: u16) -> Self {
        self.also = Some(status);
        self
    }
}

/// Every route with its handler.
pub fn routes() -> Vec<(RouteDoc, MethodRouter<AppState>)> {
    use Access::{Admin, Public, Tenant};
    use h::{actions, admin, hooks, runs, tenant_data as data, workflows};
    vec![
        (
            doc("GET", "/healthz", "Liveness", Public, 200).returns::<admin::Health>(),
            get(admin::healthz),
        ),
        (
            doc(
                "GET",
                "/readyz",
                "Readiness: the store answers and its schema is current (503 otherwise)",
                Public,
                200,
            ).returns::<admin::Ready>(),
            get(admin::readyz),
        ),
        (
            doc(
                "GET",
                "/metrics",
                "Prometheus (OpenMetrics) metrics",
                Public,
                200,
            ).text("application/openmetrics-text"),
            get(admin::metrics),
        ),
        (
            doc("GET", "/v1/openapi.json", "This document", Public, 200).any_object(),
            get(admin::openapi),
        ),
        (
            doc("POST", "/v1/tenants", "Create a tenant", Admin, 201).body::<admin::NewTenant>().returns::<admin::TenantCreated>(),
            post(admin::create_tenant),
        ),
        (
            doc(
                "POST",
                "/v1/tenants/{tenant}/tokens",
                "Create a tenant token (shown once)",
                Admin,
                201,
            ).returns::<admin::TokenCreated>(),
            post(admin::create_token),
        ),
        (
            doc("GET", "/v1/actions", "List actions", Tenant, 200).returns::<actions::ActionList>(),
            get(actions::list),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}",
                "Show an action, its permissions and versions",
                Tenant,
                200,
            ).returns::<actions::ActionDetail>(),
            get(actions::show),
        ),
        (
            doc(
                "DELETE",
                "/v1/actions/{name}",
                "Delete an action (?confirm=NAME)",
                Tenant,
                200,
            ).query::<actions::DeleteQuery>().returns::<h::Deleted>(),
            delete(actions::delete),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/versions",
                "Upload a component as a new version (body: the .wasm bytes; ?description=)",
                Tenant,
                201,
            ).query::<actions::UploadQuery>().component().returns::<actions::Uploaded>(),
            // The component cap (configuration) is enforced by the handler itself.
            post(actions::upload).layer(DefaultBodyLimit::disable()),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}/versions",
                "List versions",
                Tenant,
                200,
            ).returns::<actions::VersionList>(),
            get(actions::versions),
        ),
        (
            doc(
                "GET",
                "/v1/actions/{name}/versions/{version}/component",
                "Download a version's component, as uploaded (what fluxo replay runs)",
                Tenant,
                200,
            ).bytes("application/wasm"),
            get(actions::component),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/activate",
                "Make a version active: {\"version\": N}",
                Tenant,
                200,
            ).body::<actions::Activate>().returns::<actions::ActionChanged>(),
            post(actions::activate),
        ),
        (
            doc(
                "PUT",
                "/v1/actions/{name}/limits",
                "Set limit overrides (only tighter than the host's): {\"fuel\", \"deadline_ms\", \"max_memory_bytes\"}",
                Tenant,
                200,
            ).body::<fluxo_core::LimitOverrides>().returns::<actions::ActionChanged>(),
            put(actions::set_limits),
        ),
        (
            doc(
                "PUT",
                "/v1/actions/{name}/retry",
                "Set the retry policy: {\"max_attempts\", \"initial_delay_ms\", \"multiplier\", \"max_delay_ms\", …}",
                Tenant,
                200,
            ).body::<fluxo_core::RetryPolicy>().returns::<actions::ActionChanged>(),
            put(actions::set_retry),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/enable",
                "Accept new runs",
                Tenant,
                200,
            ).returns::<actions::ActionChanged>(),
            post(actions::enable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/disable",
                "Refuse new runs",
                Tenant,
                200,
            ).returns::<actions::ActionChanged>(),
            post(actions::disable),
        ),
        (
            doc(
                "POST",
                "/v1/actions/{name}/test",
                "Test against a sample event through the tenant's slots: report, contact diff, e-mails; nothing applied",
                Tenant,
                200,
            ).body::<actions::EventBody>().returns::<actions::TestResult>(),
            post(actions::test),
        ),
        (
            doc(
                "POST",
                "/v1/workflows/{name}/versions",
                "Store a workflow definition as a new, active version of the action NAME (?description=); then manage and run it under /v1/actions and /v1/runs",
                Tenant,
                201,
            ).query::<actions::UploadQuery>().body::<workflows::WorkflowDocument>().returns::<actions::Uploaded>(),
            post(workflows::upload),
        ),
        (
            doc(
                "GET",
                "/v1/workflows/{name}",
                "Show a stored workflow definition (the active version, or ?version=)",
                Tenant,
                200,
            ).query::<workflows::DefinitionQuery>().returns::<workflows::StoredDefinition>(),
            get(workflows::show),
        ),
        (
            doc(
                "POST",
                "/v1/workflows/validate",
                "Validate a workflow definition: every problem, with its step and field",
                Tenant,
                200,
            ).body::<workflows::WorkflowDocument>().returns::<workflows::Validation>(),
            post(workflows::validate_definition),
        ),
        (
            doc(
                "POST",
                "/v1/workflows/test",
                "Test a workflow with a sample contact and message (live HTTP or fixtures): a per-step trace; nothing applied",
                Tenant,
                200,
            ).body::<workflows::WorkflowTest>().returns::<workflows::WorkflowTestResult>(),
            post(workflows::test),
        ),
        (
            doc(
                "POST",
                "/v1/runs",
                "Submit a run (durable on 202): {\"action\", \"contact\", \"message\", \"input\", \"version\"}; Idempotency-Key header",
                Tenant,
                202,
            ).body::<actions::EventBody>().returns::<runs::RunAccepted>().also(200),
            post(runs::submit),
        ),
        (
            doc(
                "GET",
                "/v1/runs",
                "List runs (?action=&state=&limit=&after=)",
                Tenant,
                200,
            ).query::<runs::RunQuery>().returns::<runs::RunList>(),
            get(runs::list),
        ),
        (
            doc(
                "GET",
                "/v1/runs/{id}",
                "Show a run, its attempts and report",
                Tenant,
                200,
            ).returns::<fluxo_store::RunRecord>(),
            get(runs::show),
        ),
        (
            doc(
                "POST",
                "/v1/runs/{id}/cancel",
                "Cancel a queued or running run",
                Tenant,
                200,
            ).returns::<runs::RunStateChange>().also(202),
            post(runs::cancel),
        ),
        (
            doc(
                "POST",
                "/v1/runs/{id}/retry",
                "Queue a dead run again",
                Tenant,
                202,
            ).returns::<runs::RunStateChange>(),
            post(runs::retry),
        ),
        (
            doc(
                "GET",
                "/v1/contacts/{id}",
                "Show a contact of the embedded contact store (404 for a tenant whose contacts the platform keeps)",
                Tenant,
                200,
            ).returns::<fluxo_core::Contact>(),
            get(data::show_contact),
        ),
        (
            doc(
                "POST",
                "/v1/contacts/{id}/messages",
                "Report a message from the contact: {\"text\", \"channel\"?}; runs waiting for its reply go on",
                Tenant,
                202,
            ).body::<fluxo_core::Message>().returns::<data::MessageDelivered>(),
            post(data::deliver_message),
        ),
        (
            doc(
                "PUT",
                "/v1/hooks/{name}",
                "Create an inbound hook (201, its whsec_ secret shown once) or change it (200): {\"workflow\", \"contact_path\"?}",
                Tenant,
                201,
            ).body::<hooks::HookSettings>().returns::<hooks::HookSaved>().also(200),
            put(hooks::put),
        ),
        (
            doc("GET", "/v1/hooks", "List inbound hooks", Tenant, 200).returns::<hooks::HookList>(),
            get(hooks::list),
        ),
        (
            doc("DELETE", "/v1/hooks/{name}", "Delete an inbound hook", Tenant, 200).returns::<h::Deleted>(),
            delete(hooks::delete),
        ),
        (
            doc(
                "POST",
                "/v1/hooks/{tenant}/{hook}",
                "An outside system's signed call (Standard Webhooks headers, the hook's secret): starts the hook's workflow with the JSON payload; the webhook-id deduplicates",
                Public,
                202,
            ).any_json().returns::<hooks::HookAccepted>().also(200),
            // Nothing larger is read: the route is open to anyone.
            post(hooks::receive).layer(DefaultBodyLimit::max(hooks::MAX_HOOK_PAYLOAD_BYTES)),
        ),
        (
            doc("GET", "/v1/secrets", "List secret names", Tenant, 200).returns::<data::SecretNames>(),
            get(data::list_secrets),
        ),
        (
            doc(
                "PUT",
                "/v1/secrets/{name}",
                "Set a secret (8 to 4096 bytes): {\"value\"}",
                Tenant,
                200,
            ).body::<data::SecretValue>().returns::<data::SecretSaved>(),
            put(data::set_secret),
        ),
        (
            doc(
                "DELETE",
                "/v1/secrets/{name}",
                "Delete a secret",
                Tenant,
                200,
            ).returns::<h::Deleted>(),
            delete(data::delete_secret),
        ),
        (
            doc(
                "POST",
                "/v1/webhooks",
                "Register a completion-webhook endpoint: {\"url\"}; its whsec_ secret is shown once",
                Tenant,
                201,
            ).body::<data::NewEndpoint>().returns::<data::EndpointCreated>(),
            post(data::create_endpoint),
        ),
        (
            doc("GET", "/v1/webhooks", "List webhook endpoints", Tenant, 200).returns::<data::EndpointList>(),
            get(data::list_endpoints),
        ),
        (
            doc(
                "POST",
                "/v1/webhooks/{id}/rotate",
                "A new signing secret (shown once); the old one signs too for 24 h",
                Tenant,
                200,
            ).returns::<data::SecretRotated>(),
            post(data::rotate_endpoint),
        ),
        (
            doc(
                "DELETE",
                "/v1/webhooks/{id}",
                "Delete a webhook endpoint",
                Tenant,
                200,
            ).returns::<h::Deleted>(),
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

/// The error statuses of an inbound hook's call, with what each means.
const HOOK_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "the payload is not JSON, or the webhook-id is malformed",
    ),
    (
        401,
        "not signed with the hook's secret (also for no such tenant or hook), a header missing, or a timestamp outside 5 minutes",
    ),
    (404, "the hook's workflow no longer exists"),
    (409, "the hook's workflow is disabled"),
    (413, "the payload is over 256 KiB"),
    (
        422,
        "the payload has no contact id at the hook's contact path",
    ),
    (
        429,
        "the tenant's run backlog is full; retry after the hint",
    ),
    (500, "the hook's stored secret could not be opened"),
    (503, "the store is unavailable; retry"),
];

/// The error statuses every guarded route may answer, with what each means.
const GUARDED_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "malformed request: the message names the field and position",
    ),
    (401, "missing or unknown token"),
    (
        403,
        "the wrong kind of token (the admin token on a tenant route, or the reverse)",
    ),
    (404, "not found (or another tenant's)"),
    (
        409,
        "conflict (disabled action, finished run, existing tenant)",
    ),
    (413, "body over the size cap"),
    (
        422,
        "refused content: a component (forbidden import, too big a shape, failed compile) or a workflow with problems (each in `details`)",
    ),
    (
        429,
        "the tenant's backlog is full or the store is busy (see Retry-After)",
    ),
    (
        500,
        "an internal error (the message says which; a bug if it repeats)",
    ),
    (503, "the store is unreachable (see Retry-After)"),
];

/// The OpenAPI 3.1 document of the route table: every path, its parameters, request
/// and response bodies (schemas derived from the Rust types), security and errors.
#[must_use]
pub fn openapi() -> Value {
    let mut schemas = Schemas::new();
    let error = schema_of::<ErrorBody>(&mut schemas);
    let mut paths = Map::new();
    for (doc, _) in routes() {
        let mut parameters: Vec<Value> = doc
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                // Action names and tenant ids follow fluxo_core::NAME_RULE; a secret's
                // name is 1 to 128 bytes; a version is a number; run and endpoint ids are
                // opaque.
                let schema = if doc.path.starts_with("/v1/secrets/") {
                    json!({ "type": "string", "description": "1 to 128 bytes, no control characters" })
                } else if name == "version" {
                    json!({ "type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX })
                } else if matches!(name, "name" | "tenant") {
                    json!({ "type": "string", "pattern": fluxo_core::ids::NAME_PATTERN })
                } else {
                    json!({ "type": "string" })
                };
                json!({ "name": name, "in": "path", "required": true, "schema": schema })
            })
            .collect();
        if let Some(query) = doc.query {
            parameters.extend(query().iter().filter_map(|p| serde_json::to_value(p).ok()));
        }
        if doc.path == "/v1/runs" && doc.method == "POST" {
            parameters.push(json!({
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "1 to 255 visible ASCII characters: the same key (per tenant) answers the same run",
                "schema": { "type": "string", "pattern": "^[!-~]{1,255}$" },
            }));
        }
        let security = match doc.access {
            Access::Public => json!([]),
            Access::Admin => json!([{ "admin": [] }]),
            Access::Tenant => json!([{ "tenant": [] }]),
        };
        let success = match doc.response {
            ResponseBody::Json(schema) => {
                json!({ "description": "success", "content": { "application/json": { "schema": schema(&mut schemas) } } })
            }
            ResponseBody::Text(media_type) => {
                json!({ "description": "success", "content": { media_type: { "schema": { "type": "string" } } } })
            }
            ResponseBody::AnyObject => {
                json!({ "description": "success", "content": { "application/json": { "schema": { "type": "object" } } } })
            }
            ResponseBody::Bytes(media_type) => {
                json!({ "description": "success", "content": { media_type: { "schema": { "type": "string", "format": "binary" } } } })
            }
        };
        let mut responses = Map::new();
        for status in std::iter::once(doc.status).chain(doc.also) {
            responses.insert(status.to_string(), success.clone());
        }
        let errors: &[(u16, &str)] = match doc.access {
            Access::Public if doc.path == "/readyz" => {
                &[(503, "not ready: the reason is in the message")]
            }
            Access::Public if doc.path == "/v1/hooks/{tenant}/{hook}" => HOOK_ERRORS,
            Access::Public => &[],
            Access::Admin | Access::Tenant => GUARDED_ERRORS,
        };
        for (status, meaning) in errors {
            responses.insert(
                status.to_string(),
                json!({ "description": meaning, "content": { "application/json": { "schema": error } } }),
            );
        }
        let mut operation = json!({
            "summary": doc.summary,
            "operationId": operation_id(&doc),
            "parameters": parameters,
            "security": security,
            "responses": responses,
        });
        let request = match doc.request {
            RequestBody::None => None,
            RequestBody::Json(schema) => Some(
                json!({ "required": false, "content": { "application/json": { "schema": schema(&mut schemas) } } }),
            ),
            RequestBody::AnyJson => Some(
                json!({ "required": true, "content": { "application/json": { "schema": {} } } }),
            ),
            RequestBody::Component => Some(json!({
                "required": true,
                "content": {
                    "application/wasm": { "schema": { "type": "string", "format": "binary" } },
                    "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                },
            })),
        };
        if let (Some(request), Some(operation)) = (request, operation.as_object_mut()) {
            operation.insert("requestBody".to_owned(), request);
        }
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        if let Some(methods) = entry.as_object_mut() {
            methods.insert(doc.method.to_ascii_lowercase(), operation);
        }
    }
    let schemas: Map<String, Value> = schemas
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
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
            "schemas": schemas,
        },
    })
}

/// A stable operation id: the method and the path's words (`post_v1_actions_name_test`).
fn operation_id(doc: &RouteDoc) -> String {
    let words: Vec<&str> = doc
        .path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    format!("{}_{}", doc.method.to_ascii_lowercase(), words.join("_"))
}

/// Checks `value` against the document's schema `name`: the test that ties what a
/// handler serializes to what the document says.
#[cfg(test)]
pub(crate) fn check_against_document(name: &str, value: &Value) -> Result<(), String> {
    let mut root = openapi();
    if let Some(root) = root.as_object_mut() {
        root.insert(
            "$ref".to_owned(),
            json!(format!("#/components/schemas/{name}")),
        );
        root.insert(
            "$schema".to_owned(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    }
    let validator = jsonschema::draft202012::new(&root).map_err(|error| error.to_string())?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_json_answer_has_a_schema() {
        let document = openapi();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 30, "the document refers to its schemas");
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the schemas: {target}"));
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "{target} does not resolve"
            );
        }
        for (doc, _) in routes() {
            let operation = &document["paths"][doc.path][doc.method.to_ascii_lowercase()];
            let success = &operation["responses"][doc.status.to_string()]["content"];
            assert!(
                success.as_object().is_some_and(|content| content
                    .values()
                    .all(|media| media["schema"].as_object().is_some_and(|s| !s.is_empty()))),
                "{} {} documents no success body",
                doc.method,
                doc.path
            );
        }
    }

    #[test]
    fn derived_schemas_describe_what_the_types_serialize() {
        let document = openapi();
        let schemas = &document["components"]["schemas"];
        let run = &schemas["RunRecord"];
        for field in ["id", "action", "state", "event", "attempts", "created_ms"] {
            assert!(
                run["required"]
                    .as_array()
                    .is_some_and(|required| required.iter().any(|f| f == field)),
                "RunRecord requires {field}: {run}"
            );
        }
        let phases = schemas["RunPhase"]["enum"]
            .as_array()
            .expect("RunPhase is an enum");
        assert!(phases.iter().any(|p| p == "dead"), "{phases:?}");
        let effect = serde_json::to_string(&schemas["Effect"]).unwrap_or_default();
        assert!(
            effect.contains("set_field") && effect.contains("send_email"),
            "the effect kinds are the serde tags: {effect}"
        );
        let error = &schemas["Error"];
        assert_eq!(error["required"], json!(["code", "message", "details"]));
    }

    /// A run with every effect kind, HTTP headers, logs and an error: serialized as the
    /// API answers it, it matches the document.
    #[test]
    fn a_stored_run_as_answered_matches_its_schema() {
        use fluxo_core::{
            Bytes, Effect, ErrorKind, Event, FieldValue, HttpExchange, LogLevel, LogLine,
            LogSource, OutgoingEmail, RunError, RunId, RunReport, StateScope, Usage,
        };
        let id = RunId::new();
        let mut report = RunReport::not_started(id, 2, RunError::new(ErrorKind::Trap, "boom"));
        report.effects = vec![
            Effect::SetField {
                name: "cleared".into(),
                value: FieldValue::Null,
            },
            Effect::SetField {
                name: "when".into(),
                value: FieldValue::DateTime {
                    date_time: "2026-11-30T10:00:00Z".into(),
                },
            },
            Effect::AddTag { tag: "vip".into() },
            Effect::RemoveTag { tag: "new".into() },
            Effect::SetState {
                scope: StateScope::Contact,
                key: "k".into(),
                value: Bytes(vec![0, 0xff]),
                ttl_seconds: Some(60),
            },
            Effect::DeleteState {
                scope: StateScope::Tenant,
                key: "k".into(),
            },
            Effect::SendEmail(OutgoingEmail::sample("m1")),
        ];
        report.http = vec![HttpExchange {
            method: "POST".into(),
            url: "https://crm.example/deals".into(),
            status: Some(201),
            request_headers: vec![("authorization".into(), "[REDACTED]".into())],
            response_headers: vec![("content-type".into(), "application/json".into())],
            ..HttpExchange::default()
        }];
        report.logs = vec![LogLine {
            level: LogLevel::Info,
            source: LogSource::Stdout,
            message: "hi".into(),
        }];
        report.usage = Usage {
            fuel: 10,
            wall_ms: 3,
            peak_memory_bytes: 65_536,
        };
        let mut event = Event::new("acme".parse().unwrap(), "crm-lead".parse().unwrap());
        event.input = json!({ "any": ["json", 1] }).into();
        let run = fluxo_store::RunRecord {
            id,
            action: "crm-lead".parse().unwrap(),
            version: 1,
            mode: fluxo_store::RunMode::Run,
            state: fluxo_store::RunPhase::Dead,
            attempt: 2,
            error_kind: Some(ErrorKind::Trap),
            event,
            limits: Some(fluxo_core::Limits::default()),
            report: Some(report),
            attempts: Vec::new(),
            idempotency_key: Some("k-1".into()),
            created_ms: 1,
            started_ms: Some(2),
            finished_ms: Some(3),
            next_attempt_ms: None,
            node: Some("node-a".into()),
            segments: 1,
            waiting_until_ms: Some(4),
        };
        let answered = serde_json::to_value(&run).unwrap();
        check_against_document("RunRecord", &answered).unwrap();
        let error = serde_json::to_value(ErrorBody {
            code: "not_found",
            message: "no run".into(),
            details: Value::Null,
        })
        .unwrap();
        check_against_document("Error", &error).unwrap();
        assert!(
            check_against_document("RunRecord", &json!({ "id": 5 })).is_err(),
            "the check can fail"
        );
    }
}

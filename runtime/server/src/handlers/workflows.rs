//! Workflows: validate a definition (every problem, with its step and field) and test
//! one against a sample contact and message — live HTTP under the tenant's egress
//! policy and secrets, or answers from fixtures — applying nothing.
//!
//! A stored workflow is an action whose versions hold definitions: uploaded here,
//! then listed, activated, enabled, disabled, limited, deleted and run (`POST /v1/runs`)
//! under `/v1/actions` like any action.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use fluxo_core::{
    ActionName, Blame, Contact, Effect, ErrorKind, Message, OutgoingEmail, PlatformMessage,
    TenantId,
};
use fluxo_sandbox::Redactor;
use fluxo_workflow::{
    FixtureResponse, HttpMode, Interpreter, Problem, Start, StepTrace, Waits, Workflow,
    WorkflowRun, validate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use fluxo_store::VersionKind;

use super::actions::{ContactDiff, UploadQuery, answer_upload, diff};
use super::{ApiResult, name_in_path, ok};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::params::{PathParam, QueryParams};

/// A workflow definition: `{"name", "description", "start", "steps": [...], "budget"}`
/// (`docs/workflows.md`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct WorkflowDocument(Map<String, Value>);

/// The answer of `POST /v1/workflows/validate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Validation {
    /// Whether the definition may be saved.
    valid: bool,
    /// Every problem, each with its step and field.
    problems: Vec<Problem>,
}

/// The query of `GET /v1/workflows/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DefinitionQuery {
    /// A version other than the active one.
    version: Option<u32>,
}

/// The answer of `GET /v1/workflows/{name}`: a stored definition as uploaded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StoredDefinition {
    /// The workflow (an action) name.
    name: String,
    /// The version shown.
    version: u32,
    /// Whether it is the version new runs use.
    active: bool,
    /// The definition.
    #[schema(value_type = Object)]
    definition: Value,
}

/// The body of `POST /v1/workflows/test`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowTest {
    /// The definition to test.
    #[schema(value_type = Object)]
    workflow: Map<String, Value>,
    /// The sample contact.
    #[serde(default)]
    contact: Contact,
    /// The sample message.
    #[serde(default)]
    message: Option<Message>,
    /// Variables set before the first step (a run's `input`; `input` is accepted too).
    #[serde(default, alias = "input")]
    #[schema(value_type = Object)]
    vars: Map<String, Value>,
    /// HTTP answers by step id: when given, nothing leaves the host and a step without
    /// one fails; when absent, requests are live (under the tenant's egress policy).
    #[serde(default)]
    fixtures: Option<BTreeMap<String, FixtureResponse>>,
    /// The contact's answers to the run's `wait_for_reply` steps, in order: a text, or
    /// `null` for a wait that times out. With none left, the test stops at the wait
    /// (`waiting` names it).
    #[serde(default)]
    replies: Vec<Option<String>>,
}

/// Why a tested workflow failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowFailure {
    /// The step it failed in, if it failed in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    /// The error's kind.
    kind: ErrorKind,
    /// Whose fault it is.
    blame: Blame,
    /// Whether a run failing so would be retried.
    retryable: bool,
    /// What happened.
    message: String,
}

/// The answer of `POST /v1/workflows/test`: nothing in it was applied.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowTestResult {
    /// The workflow's name.
    workflow: String,
    /// Whether it did not fail (it reached an end, or a wait with no sample reply left).
    succeeded: bool,
    /// The `wait_for_reply` step it stopped at, with no sample reply left for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting: Option<String>,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<WorkflowFailure>,
    /// Each step as it ran: inputs after templating, the port taken, outputs (HTTP
    /// status, headers and body), effects, changes.
    trace: Vec<StepTrace>,
    /// The variables at the end.
    #[schema(value_type = Object)]
    vars: Map<String, Value>,
    /// What the run would do to the contact.
    contact: ContactDiff,
    /// The e-mails it would send.
    emails: Vec<OutgoingEmail>,
    /// The replies, notifications and handoffs it would send to the platform.
    messages: Vec<PlatformMessage>,
    /// The runs it would start (`trigger_workflow`).
    runs: Vec<fluxo_core::RunRequest>,
    /// Every write it journaled, in order.
    effects: Vec<Effect>,
}

fn unprocessable(problems: &[Problem]) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
        format!(
            "the workflow has {} problem(s); the first: {}",
            problems.len(),
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
    )
    .details(serde_json::to_value(problems).unwrap_or(Value::Null))
}

/// `POST /v1/workflows/{name}/versions` with the definition as the body: validated
/// (every problem listed), stored as the action's new, active version.
pub(crate) async fn upload(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(query): QueryParams<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "body_rejected", rejection.body_text())
    })?;
    let uploaded = state
        .registry
        .upload_workflow(&tenant, &name, query.description.as_deref(), body.to_vec())
        .await;
    answer_upload(&state, uploaded)
}

/// `GET /v1/workflows/{name}`: the stored definition (the active version, or
/// `?version=`).
pub(crate) async fn show(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(query): QueryParams<DefinitionQuery>,
) -> ApiResult {
    let action_name = name_in_path(&name)?;
    let (action, record) = state
        .registry
        .records(&tenant, &action_name, query.version)
        .await?;
    let number = record.version;
    if record.kind != VersionKind::Workflow {
        return Err(ApiError::not_found(format!(
            "{name:?} version {number} is a component, not a workflow"
        )));
    }
    let store = state.registry.store();
    let bytes = store.component(&record.hash).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_record",
            format!("the definition of {name:?} version {number} is not stored"),
        )
    })?;
    let definition: Value = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_record",
            format!("the stored definition does not parse: {error}"),
        )
    })?;
    ok(
        StatusCode::OK,
        &StoredDefinition {
            name: action.name.to_string(),
            version: number,
            active: number == action.active_version,
            definition,
        },
    )
}

/// Every problem of `workflow` for `tenant`: its own, and its action steps' against the
/// tenant's actions (as an upload would find them).
async fn problems_of(
    state: &AppState,
    tenant: &TenantId,
    workflow: &Workflow,
) -> Result<Vec<Problem>, ApiError> {
    let mut problems = validate(workflow, state.workflows.templates());
    problems.extend(
        state
            .registry
            .action_step_problems(tenant, workflow)
            .await?,
    );
    Ok(problems)
}

/// `POST /v1/workflows/validate`
pub(crate) async fn validate_definition(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(WorkflowDocument(document)): JsonBody<WorkflowDocument>,
) -> ApiResult {
    let problems = match Workflow::from_value(Value::Object(document)) {
        Err(problems) => problems,
        Ok(workflow) => problems_of(&state, &tenant, &workflow).await?,
    };
    ok(
        StatusCode::OK,
        &Validation {
            valid: problems.is_empty(),
            problems,
        },
    )
}

/// `POST /v1/workflows/test`
pub(crate) async fn test(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<WorkflowTest>,
) -> ApiResult {
    let interpreter: &Interpreter = &state.workflows;
    let workflow = Workflow::from_value(Value::Object(body.workflow))
        .map_err(|problems| unprocessable(&problems))?;
    let problems = problems_of(&state, &tenant, &workflow).await?;
    if !problems.is_empty() {
        return Err(unprocessable(&problems));
    }
    // The run's name in records: the workflow's, when it is a valid action name.
    let name = ActionName::parse(&workflow.name)
        .or_else(|_| ActionName::parse("workflow-test"))
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let contact = body.contact;
    let mut ctx = state
        .scheduler
        .test_context(&tenant, name, contact.clone())
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                error.message,
            )
            .retry_after(1)
        })?;
    let mode = body.fixtures.map_or(HttpMode::Live, HttpMode::Fixtures);
    for reply in body.replies.iter().flatten() {
        super::tenant_data::check_inbound(reply, None)?;
    }
    let replies = body
        .replies
        .into_iter()
        .map(|reply| {
            reply.map(|text| Message {
                text,
                channel: body.message.as_ref().and_then(|m| m.channel.clone()),
            })
        })
        .collect();
    let start = Start {
        message: body.message,
        vars: body.vars,
        waits: Waits::Answers(replies),
        resume: None,
    };
    let run = interpreter
        .run(&workflow, &mut ctx, start, &mode, &mut rand::random::<f64>)
        .await;
    ok(StatusCode::OK, &answer(workflow.name, run, ctx, &contact))
}

/// The answer of a test: the run, and what its context journaled (secrets redacted).
fn answer(
    workflow: String,
    mut run: WorkflowRun,
    ctx: fluxo_sandbox::RunContext,
    contact: &Contact,
) -> WorkflowTestResult {
    let parts = ctx.into_parts();
    let redactor = Redactor::new(parts.secrets.values());
    // Every tenant secret, not only those the templates read: an action step's
    // component may read and echo any of them.
    run.redact(&redactor);
    let mut effects = parts.journal.into_effects();
    for effect in &mut effects {
        redactor.redact_effect(effect);
    }
    let (emails, messages) = super::actions::outgoing(&effects);
    let runs = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::StartRun(request) => Some(request.clone()),
            _ => None,
        })
        .collect();
    let error = run.error.map(|failure| WorkflowFailure {
        step: failure.step,
        kind: failure.error.kind,
        blame: failure.error.blame,
        retryable: failure.error.retryable(),
        message: failure.error.message,
    });
    WorkflowTestResult {
        workflow,
        succeeded: error.is_none(),
        waiting: run.waiting.map(|checkpoint| checkpoint.step),
        error,
        trace: run.trace,
        vars: run.vars,
        contact: diff(contact, &effects),
        emails,
        messages,
        runs,
        effects,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fluxo_core::{ContactId, Limits, TenantId};
    use fluxo_egress::{Egress, HttpPolicy};
    use fluxo_sandbox::platform::MemoryState;
    use fluxo_sandbox::{Capabilities, RunContext, RunMeta, Secrets};
    use serde_json::json;

    use super::*;

    struct NoDns;

    impl fluxo_egress::Resolve for NoDns {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
        ) -> fluxo_egress::BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
            Box::pin(async { Err(std::io::Error::other("no DNS in tests")) })
        }
    }

    /// The definition body is documented as any JSON object (the route's job is to say
    /// what is wrong with it), so an empty object is schema-valid and a list is not.
    #[test]
    fn a_definition_is_documented_as_any_object() {
        crate::routes::check_against_document("WorkflowDocument", &json!({})).unwrap();
        crate::routes::check_against_document("WorkflowDocument", &json!({"name": "x"})).unwrap();
        assert!(crate::routes::check_against_document("WorkflowDocument", &json!([])).is_err());
    }

    /// A test answer holding every block's trace, a failure, changes and an e-mail
    /// matches the document's schema.
    #[tokio::test]
    async fn a_workflow_test_as_answered_matches_its_schema() {
        let workflow = Workflow::from_value(json!({"name": "all", "steps": [
            {"id": "call", "type": "http", "method": "POST", "url": "https://crm.example/x",
             "auth": {"bearer": {"secret": "TOKEN"}},
             "body": {"json": [{"key": "a[b]", "value": "{{contact.fields.name}}"}]},
             "save": [{"path": "data.id", "var": "id"}], "next": "ab"},
            {"id": "ab", "type": "split", "branches": [{"weight": 1, "next": "check"}]},
            {"id": "check", "type": "condition", "rules": [{"left": "vars.id", "op": "exists"}], "then": "set"},
            {"id": "set", "type": "set_field", "field": "deal", "value": "{{vars.id}}", "next": "count"},
            {"id": "count", "type": "set_variable", "name": "n", "increment": 1, "next": "tag"},
            {"id": "tag", "type": "tag", "tag": "t", "next": "untag"},
            {"id": "untag", "type": "untag", "tag": "old", "next": "mail"},
            {"id": "mail", "type": "send_email", "to": ["a@b.example"], "subject": "s", "text": "t", "next": "fail"},
            {"id": "fail", "type": "set_field", "field": "x", "value": "{{ vars.id.missing.deeper }}"}
        ]}))
        .unwrap();
        assert_eq!(
            validate(&workflow, &fluxo_workflow::Templates::new()),
            Vec::new()
        );
        let egress = Egress::new(&HttpPolicy::default(), Arc::new(NoDns)).unwrap();
        let capabilities = Arc::new(Capabilities {
            egress: Arc::new(egress),
            state: Arc::new(MemoryState::new()),
        });
        let mut contact = Contact::with_id(ContactId::parse("c1").unwrap());
        contact.fields.insert("name".into(), "Ana".into());
        contact.tags.push("old".into());
        let secrets = Secrets::new([("TOKEN".to_owned(), "tok-secret".to_owned())].into());
        let mut ctx = RunContext::new(
            RunMeta::new(
                TenantId::parse("acme").unwrap(),
                ActionName::parse("all").unwrap(),
            ),
            Limits::default(),
            capabilities,
        )
        .with_contact(contact.clone())
        .with_secrets(secrets);
        let fixtures = [(
            "call".to_owned(),
            FixtureResponse {
                status: 200,
                headers: [("x-trace".to_owned(), "1".to_owned())].into(),
                body: json!({"data": {"id": 7}}),
            },
        )]
        .into();
        let run = Interpreter::new()
            .run(
                &workflow,
                &mut ctx,
                Start::default(),
                &HttpMode::Fixtures(fixtures),
                &mut || 0.5,
            )
            .await;
        assert_eq!(run.trace.len(), 9, "{run:#?}");
        let result = answer(workflow.name, run, ctx, &contact);
        assert_eq!(
            result.error.as_ref().and_then(|e| e.step.as_deref()),
            Some("fail")
        );
        let value = serde_json::to_value(&result).unwrap();
        assert!(!value.to_string().contains("tok-secret"), "{value:#}");
        crate::routes::check_against_document("WorkflowTestResult", &value).unwrap();
    }
}

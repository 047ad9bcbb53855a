//! Runs a workflow's blocks through a [`RunContext`]: the same quotas, egress policy,
//! secrets and journal as a component, and nothing committed here — the caller commits
//! the context's journal (or, for a test, shows it).
//!
//! The run ends when a step has no next step (succeeded) or fails: a limit of the
//! tenant's (`LimitHit`), the workflow's own budget (steps in all, visits per step), a
//! template that does not render, a capability refusing its input, or an HTTP request
//! that fails with no `on_error` port. Every step leaves a [`StepTrace`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use fluxo_core::{
    Blame, Effect, ErrorKind, FieldValue, LimitHit, LogLevel, LogSource, Message, MessageKind,
    RunError,
};
use fluxo_egress::{EgressError, EgressRequest, EgressResponse};
use fluxo_sandbox::RunContext;
use fluxo_sandbox::context::{EmailMessage, MessageDraft, StartDraft};
use fluxo_sandbox::redact::{Redactor, is_credential_header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::actions::ActionRunner;
use crate::condition::{holds, text_of};
use crate::definition::{
    ActionBlock, Auth, Block, Body, ClientAuth, ConditionBlock, Context, Fixtures, HttpBlock,
    Match, SendEmailBlock, SetVariableBlock, SplitBlock, Step, TriggerWorkflowBlock,
    WaitForReplyBlock, Workflow, is_json,
};
use crate::oauth::{Client, TokenCache, TokenError};
use crate::path;
use crate::template::Templates;

/// An HTTP answer given by a test instead of a live request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FixtureResponse {
    /// The status code.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: JSON, or a string for a text body.
    #[serde(default)]
    pub body: Value,
}

/// How HTTP blocks reach the network.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum HttpMode {
    /// Live requests through the egress client.
    #[default]
    Live,
    /// Answers from fixtures keyed by step id; nothing leaves the host (a step with no
    /// fixture fails).
    Fixtures(Fixtures),
}

/// What starts a workflow run besides its contact (which the context carries).
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// The message that triggered it.
    pub message: Option<Message>,
    /// Variables set before the first step.
    pub vars: Map<String, Value>,
    /// How `wait_for_reply` steps behave.
    pub waits: Waits,
    /// A suspended run to go on with, and how its wait ended (then `message` and `vars`
    /// are not used: the checkpoint has them).
    pub resume: Option<(Checkpoint, Resolution)>,
}

/// How `wait_for_reply` steps behave.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Waits {
    /// The run suspends: it ends with a [`Checkpoint`] the host stores (a real run).
    #[default]
    Suspend,
    /// Each wait takes the next sample reply (`None`: the wait times out); with none
    /// left, the run stops at the wait with its checkpoint (a test).
    Answers(std::collections::VecDeque<Option<Message>>),
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The contact's message arrived.
    Reply(Message),
    /// The timeout passed first.
    Timeout,
}

/// Where a run suspended at a `wait_for_reply` step stands: everything the run needs to
/// go on except the contact and the quota counters (the host keeps those with it, from
/// the context). Stored as JSON with the waiting run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The wait step.
    pub step: String,
    /// How long it waits, in seconds.
    pub timeout_seconds: u64,
    /// The variables.
    pub vars: Map<String, Value>,
    /// The last message from the contact.
    pub message: Option<Message>,
    /// HTTP steps' answers so far (`steps.<id>`).
    pub responses: Map<String, Value>,
    /// Visits per step so far (loop limits hold across waits).
    pub visits: BTreeMap<String, u32>,
    /// Steps executed so far (`budget.max_steps` holds across waits).
    pub executed: u32,
    /// The names of the secrets the run's HTTP steps used (never their values: a
    /// checkpoint is stored in the clear).
    pub secrets_used: Vec<String>,
}

/// One step as it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepTrace {
    /// The step's id.
    pub step: String,
    /// Its block type.
    pub block: String,
    /// Its inputs after templating (secrets redacted, credential headers masked).
    pub inputs: Value,
    /// The port taken (`next`, `on_error`, `then`, `else`, `branches[i]`), or `None`
    /// when the run ended here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The step it led to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// What the block decided or produced: a condition's rule results, a split's draw,
    /// an HTTP response (status, headers, body), saved values.
    pub outputs: Value,
    /// The writes it journaled.
    pub effects: Vec<Effect>,
    /// Fields and tags before and after the step (only what changed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Host time spent, microseconds.
    pub duration_us: u64,
}

/// A contact value before and after a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// `fields.<name>` or `tags`.
    pub what: String,
    /// The value before.
    pub before: Value,
    /// The value after.
    pub after: Value,
}

/// A finished workflow run (its journal stays in the context).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRun {
    /// The failure, or `None` when the run reached an end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Every step executed, in order.
    pub trace: Vec<StepTrace>,
    /// The variables at the end.
    pub vars: Map<String, Value>,
    /// Where the run waits for the contact's reply, when it stopped at a
    /// `wait_for_reply` step: its journal so far commits, and the host stores this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Checkpoint>,
}

impl StepTrace {
    /// One log line: `step create_deal (http): next → tag_onboarded, HTTP 201`.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut line = format!("step {} ({})", self.step, self.block);
        if let Some(error) = &self.error {
            line.push_str(&format!(": failed: {error}"));
            return line;
        }
        if self.outputs.get("waiting") == Some(&Value::Bool(true)) {
            line.push_str(": waiting for the contact's reply");
            return line;
        }
        match (&self.port, &self.next) {
            (Some(port), Some(next)) => line.push_str(&format!(": {port} → {next}")),
            _ => line.push_str(": end"),
        }
        if let Some(status) = self.outputs.pointer("/response/status") {
            line.push_str(&format!(", HTTP {status}"));
        }
        if let Some(Value::String(reply)) = self.outputs.get("reply") {
            // The contact's answer, as much as a log line should hold.
            let shown: String = reply.chars().take(80).collect();
            let more = if shown.len() < reply.len() { "…" } else { "" };
            line.push_str(&format!(", reply {shown:?}{more}"));
        }
        line
    }
}

impl WorkflowRun {
    /// Whether the run reached an end without failing.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    /// Whether the run stopped at a wait (it did not fail, and has not ended).
    #[must_use]
    pub fn is_waiting(&self) -> bool {
        self.error.is_none() && self.waiting.is_some()
    }
}

/// A failure and the step it happened in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepError {
    /// The step it failed in (for a budget or deadline failure, the step it was about
    /// to run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The error, as for a component's run.
    pub error: RunError,
}

/// Runs workflows; one per host (it holds the template engine and the action runner).
#[derive(Default)]
pub struct Interpreter {
    templates: Templates,
    actions: Option<Arc<dyn ActionRunner>>,
    /// OAuth 2.0 access tokens of the HTTP blocks' clients, per tenant.
    tokens: TokenCache,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("actions", &self.actions.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a step failed: either it ends the run as is, or an HTTP failure a port may catch.
enum Failure {
    Run(RunError),
    Http(RunError),
}

impl From<LimitHit> for Failure {
    fn from(hit: LimitHit) -> Self {
        Self::Run(RunError::from_limit(&hit))
    }
}

fn definition_error(message: impl Into<String>) -> Failure {
    Failure::Run(RunError::new(ErrorKind::ActionError, message).blamed_on(Blame::Guest))
}

/// An HTTP block's OAuth 2.0 access token, as far as it was had.
enum Bearer {
    /// The block does not use OAuth 2.0.
    None,
    /// A test with fixtures: no token is requested.
    Fixture,
    /// The client's token (the client, to drop it when the API refuses it).
    Token { client: Client, token: String },
    /// Why no token was had: the step fails as an HTTP failure does.
    Failed(String, Blame),
}

impl Bearer {
    /// What the request's `Authorization: Bearer` carries.
    fn token(&self) -> Option<&str> {
        match self {
            Self::Token { token, .. } => Some(token),
            Self::Fixture => Some("fixture-token"),
            Self::None | Self::Failed(..) => None,
        }
    }
}

/// What a step hands back to the loop.
struct Outcome {
    port: Option<(String, Option<String>)>,
    inputs: Value,
    outputs: Value,
}

impl Interpreter {
    /// An interpreter with its template engine.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `action` steps through `runner` (without one they fail with a clear reason).
    #[must_use]
    pub fn with_actions(mut self, runner: Arc<dyn ActionRunner>) -> Self {
        self.actions = Some(runner);
        self
    }

    /// The template engine (validation uses the same one).
    #[must_use]
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Runs `workflow` in `ctx` from its start, or from a wait when `start.resume` says
    /// so, drawing splits with `draw` (a number in `[0, 1)`; `rand::random` in
    /// production, fixed in tests). The run ends at a step with no next step, at a
    /// failure, or at a `wait_for_reply` step ([`WorkflowRun::waiting`]).
    pub async fn run(
        &self,
        workflow: &Workflow,
        ctx: &mut RunContext,
        start: Start,
        mode: &HttpMode,
        draw: &mut (dyn FnMut() -> f64 + Send),
    ) -> WorkflowRun {
        let limits = crate::validate::visit_limits(workflow);
        let (mut state, first) = match start.resume {
            Some((checkpoint, resolution)) => {
                let step = checkpoint.step.clone();
                (
                    RunState::resumed(checkpoint, resolution, start.waits, ctx),
                    step,
                )
            }
            None => {
                let mut vars = start.vars;
                for input in &workflow.inputs {
                    vars.entry(input.clone()).or_insert(Value::Null);
                }
                let state = RunState {
                    vars,
                    message: start.message,
                    responses: Map::new(),
                    secrets_used: Vec::new(),
                    visits: BTreeMap::new(),
                    executed: 0,
                    waits: start.waits,
                    resolution: None,
                    suspended: false,
                };
                (state, workflow.start.clone())
            }
        };
        // A resumed wait step was counted when the run first reached it.
        let mut resuming = state.resolution.is_some();
        let mut trace = Vec::new();
        let mut error = None;
        let mut waiting = None;
        let mut current = Some(first);
        while let Some(id) = current.take() {
            let Some(step) = workflow.step(&id) else {
                error = Some(StepError {
                    step: Some(id.clone()),
                    error: RunError::new(ErrorKind::ActionError, format!("no step `{id}`"))
                        .blamed_on(Blame::Guest),
                });
                break;
            };
            if !std::mem::take(&mut resuming)
                && let Some(stop) = self.check_budget(workflow, step, ctx, &limits, &mut state)
            {
                error = Some(stop);
                break;
            }
            let started = Instant::now();
            let journal_before = ctx.journal().effects().len();
            let contact_before = ctx.contact();
            let result = self.step(step, ctx, &mut state, mode, draw).await;
            let effects = ctx
                .journal()
                .effects()
                .get(journal_before..)
                .map(<[Effect]>::to_vec)
                .unwrap_or_default();
            let changes = changes(&contact_before, &ctx.contact());
            let mut record = StepTrace {
                step: step.id.clone(),
                block: step.block.kind().to_owned(),
                inputs: Value::Null,
                port: None,
                next: None,
                outputs: Value::Null,
                effects,
                changes,
                error: None,
                duration_us: 0,
            };
            match result {
                Ok(outcome) => {
                    record.inputs = outcome.inputs;
                    record.outputs = outcome.outputs;
                    if let Some((port, next)) = outcome.port {
                        record.port = Some(port);
                        record.next.clone_from(&next);
                        current = next;
                    }
                }
                Err((inputs, failure)) => {
                    record.inputs = inputs;
                    // An HTTP step that failed still shows the answer it got.
                    if let Some(answer) = state.responses.get(&step.id) {
                        record.outputs = answer.clone();
                    }
                    let (Failure::Run(run_error) | Failure::Http(run_error)) = failure;
                    record.error = Some(run_error.message.clone());
                    error = Some(StepError {
                        step: Some(step.id.clone()),
                        error: run_error,
                    });
                }
            }
            record.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            // In the run's log as it happens, between the lines an action step's
            // component writes: `fluxo logs` shows the path taken, in order.
            let level = if record.error.is_some() {
                LogLevel::Error
            } else {
                LogLevel::Info
            };
            ctx.push_log(level, LogSource::Host, record.describe());
            trace.push(record);
            if error.is_some() {
                break;
            }
            if std::mem::take(&mut state.suspended) {
                waiting = Some(state.checkpoint(step));
                break;
            }
            // Blocks without I/O never await: yield between steps so a long workflow
            // does not hold a runtime thread (the API stays responsive).
            tokio::task::yield_now().await;
        }
        let mut run = WorkflowRun {
            error,
            trace,
            vars: state.vars,
            waiting,
        };
        // Every value the run could have seen: the tenant's secrets and what the run
        // obtained (an OAuth 2.0 access token).
        let redactor = Redactor::new(ctx.secrets().values());
        if !redactor.is_empty() {
            redact_run(&redactor, &mut run);
        }
        run
    }

    fn check_budget(
        &self,
        workflow: &Workflow,
        step: &Step,
        ctx: &RunContext,
        limits: &BTreeMap<String, u32>,
        state: &mut RunState,
    ) -> Option<StepError> {
        let limit_error = |message: String| StepError {
            step: Some(step.id.clone()),
            error: RunError::new(ErrorKind::QuotaExceeded, message).blamed_on(Blame::Guest),
        };
        if ctx.remaining().is_zero() {
            return Some(StepError {
                step: Some(step.id.clone()),
                error: RunError::from_limit(&LimitHit::Deadline {
                    deadline_ms: ctx.limits().deadline_ms,
                }),
            });
        }
        state.executed = state.executed.saturating_add(1);
        if state.executed > workflow.budget.max_steps {
            return Some(limit_error(format!(
                "the workflow ran {} steps, its budget (budget.max_steps)",
                workflow.budget.max_steps
            )));
        }
        let count = state.visits.entry(step.id.clone()).or_insert(0);
        *count = count.saturating_add(1);
        let allowed = limits
            .get(&step.id)
            .copied()
            .unwrap_or(workflow.budget.max_visits);
        if *count > allowed {
            return Some(limit_error(format!(
                "step `{}` was reached {} times, over its loop limit of {allowed} (max_visits)",
                step.id, *count
            )));
        }
        None
    }

    async fn step(
        &self,
        step: &Step,
        ctx: &mut RunContext,
        state: &mut RunState,
        mode: &HttpMode,
        draw: &mut (dyn FnMut() -> f64 + Send),
    ) -> Result<Outcome, (Value, Failure)> {
        let scope = state.scope(ctx);
        let text = |source: &str, field: &str| {
            self.templates
                .render(source, Context::Text, &scope)
                .map_err(|why| (Value::Null, definition_error(format!("{field}: {why}"))))
        };
        let next = |port: &str, target: &Option<String>| Some((port.to_owned(), target.clone()));
        match &step.block {
            Block::Http(http) => self.http(step, http, ctx, state, mode).await,
            Block::Action(action) => {
                let mut input = Map::new();
                for (key, source) in &action.input {
                    input.insert(
                        key.clone(),
                        Value::String(text(source, &format!("input.{key}"))?),
                    );
                }
                if matches!(mode, HttpMode::Fixtures(_)) {
                    return Err((
                        json!({"action": action.action, "input": input}),
                        definition_error(
                            "an action step runs its component live, which a test with fixtures does not do: test it without fixtures",
                        ),
                    ));
                }
                self.action(&step.id, action, Value::Object(input), ctx, state)
                    .await
            }
            Block::SetField(set) => {
                let value = text(&set.value, "value")?;
                let inputs = json!({"field": set.field, "value": value});
                capability(
                    ctx.set_field(set.field.clone(), FieldValue::Text(value)),
                    &inputs,
                )?;
                Ok(Outcome {
                    port: next("next", &set.next),
                    inputs,
                    outputs: Value::Null,
                })
            }
            Block::Tag(tag) | Block::Untag(tag) => {
                let name = text(&tag.tag, "tag")?.trim().to_owned();
                let inputs = json!({"tag": name});
                let result = if matches!(step.block, Block::Tag(_)) {
                    ctx.add_tag(name)
                } else {
                    ctx.remove_tag(name)
                };
                capability(result, &inputs)?;
                Ok(Outcome {
                    port: next("next", &tag.next),
                    inputs,
                    outputs: Value::Null,
                })
            }
            Block::SetVariable(set) => {
                let value = set_variable(set, state, |source| text(source, "value"))?;
                let inputs = json!({"name": set.name});
                state.vars.insert(set.name.clone(), value.clone());
                Ok(Outcome {
                    port: next("next", &set.next),
                    inputs,
                    outputs: json!({ "value": value }),
                })
            }
            Block::Condition(condition) => {
                let (result, inputs, outputs) = self.condition(condition, &scope, state, ctx)?;
                let port = if result {
                    next("then", &condition.then)
                } else {
                    next("else", &condition.otherwise)
                };
                Ok(Outcome {
                    port,
                    inputs,
                    outputs,
                })
            }
            Block::Split(split) => {
                let (index, value) = choose(split, draw());
                let target = split.branches.get(index).map(|branch| branch.next.clone());
                Ok(Outcome {
                    port: Some((format!("branches[{index}]"), target)),
                    inputs: Value::Null,
                    outputs: json!({"draw": value, "branch": index}),
                })
            }
            Block::SendEmail(email) => {
                let (message, inputs) = render_email(email, |source, field| text(source, field))?;
                let id = capability(ctx.send_email(message), &inputs)?;
                Ok(Outcome {
                    port: next("next", &email.next),
                    inputs,
                    outputs: json!({"message_id": id}),
                })
            }
            Block::Reply(reply) => {
                let draft = MessageDraft {
                    kind: MessageKind::Reply,
                    text: text(&reply.text, "text")?,
                    to: None,
                    service: None,
                };
                send_message(ctx, draft, &reply.next)
            }
            Block::Notify(notify) => {
                let draft = MessageDraft {
                    kind: MessageKind::Notify,
                    text: text(&notify.text, "text")?,
                    to: Some(text(&notify.to, "to")?.trim().to_owned()),
                    service: None,
                };
                send_message(ctx, draft, &notify.next)
            }
            Block::Handoff(handoff) => {
                let draft = MessageDraft {
                    kind: MessageKind::Handoff,
                    text: text(&handoff.text, "text")?,
                    to: None,
                    service: Some(text(&handoff.service, "service")?.trim().to_owned()),
                };
                send_message(ctx, draft, &handoff.next)
            }
            Block::WaitForReply(wait) => wait_for_reply(wait, ctx, state),
            Block::TriggerWorkflow(trigger) => {
                let mut input = Map::new();
                for (key, source) in &trigger.input {
                    input.insert(
                        key.clone(),
                        Value::String(text(source, &format!("input.{key}"))?),
                    );
                }
                let contact = match &trigger.contact {
                    Some(source) => Some(text(source, "contact")?.trim().to_owned()),
                    None => ctx.contact_snapshot().id.as_ref().map(ToString::to_string),
                };
                self.trigger(trigger, contact, Value::Object(input), ctx)
                    .await
            }
        }
    }

    /// Runs a `trigger_workflow` step: checks the target can start, then journals the
    /// request (queued when this run's effects commit).
    async fn trigger(
        &self,
        trigger: &TriggerWorkflowBlock,
        contact: Option<String>,
        input: Value,
        ctx: &mut RunContext,
    ) -> Result<Outcome, (Value, Failure)> {
        let inputs = json!({"workflow": trigger.workflow, "contact": contact, "input": input});
        let Some(runner) = &self.actions else {
            return Err((
                inputs,
                definition_error(
                    "runs cannot be started here: this host gives workflows no action runner",
                ),
            ));
        };
        if let Err(error) = runner.check_startable(&trigger.workflow, ctx).await {
            return Err((inputs, Failure::Run(error)));
        }
        let draft = StartDraft {
            action: trigger.workflow.clone(),
            contact: contact.filter(|id| !id.is_empty()),
            input,
        };
        let id = capability(ctx.start_run(draft), &inputs)?;
        Ok(Outcome {
            port: Some(("next".to_owned(), trigger.next.clone())),
            inputs,
            outputs: json!({"request_id": id}),
        })
    }

    fn condition(
        &self,
        condition: &ConditionBlock,
        scope: &minijinja::Value,
        state: &RunState,
        ctx: &RunContext,
    ) -> Result<(bool, Value, Value), (Value, Failure)> {
        let data = state.data(ctx);
        let mut results = Vec::new();
        let mut inputs = Vec::new();
        for (i, rule) in condition.rules.iter().enumerate() {
            let render = |source: &str, field: String| {
                self.templates
                    .render(source, Context::Text, scope)
                    .map_err(|why| (Value::Null, definition_error(format!("{field}: {why}"))))
            };
            let value = rule
                .value
                .as_deref()
                .map(|source| render(source, format!("rules[{i}].value")))
                .transpose()?;
            let values = rule
                .values
                .iter()
                .enumerate()
                .map(|(j, source)| render(source, format!("rules[{i}].values[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let left = path::parse(&rule.left)
                .ok()
                .and_then(|segments| path::lookup(&data, &segments).cloned());
            let held = holds(rule, left.as_ref(), value.as_deref(), &values)
                .map_err(|why| (Value::Null, definition_error(format!("rules[{i}]: {why}"))))?;
            inputs.push(json!({"left": rule.left, "is": left, "op": rule.op, "value": value, "values": values}));
            results.push(held);
        }
        let result = match condition.combine {
            Match::All => results.iter().all(|held| *held),
            Match::Any => results.iter().any(|held| *held),
        };
        Ok((
            result,
            Value::Array(inputs),
            json!({"rules": results, "result": result}),
        ))
    }

    /// Runs an `action` step: the tenant's component in a child of the run's context.
    async fn action(
        &self,
        step: &str,
        action: &ActionBlock,
        input: Value,
        ctx: &mut RunContext,
        state: &mut RunState,
    ) -> Result<Outcome, (Value, Failure)> {
        let inputs = json!({"action": action.action, "input": input});
        let Some(runner) = &self.actions else {
            return Err((
                inputs,
                definition_error(
                    "actions cannot run here: this host gives workflows no action runner",
                ),
            ));
        };
        // The step's visit number (counted by the budget check before it ran).
        let visit = state.visits.get(step).copied().unwrap_or(1);
        let key = format!("{step}.{visit}");
        let ran = runner
            .run_action(&action.action, &key, input, state.message.clone(), ctx)
            .await;
        let redactor = Redactor::new(ctx.secrets().values());
        match ran {
            Ok(outcome) => {
                // A component's replies are the conversation's, as a workflow's are.
                for reply in &outcome.replies {
                    let draft = MessageDraft {
                        kind: MessageKind::Reply,
                        text: reply.clone(),
                        to: None,
                        service: None,
                    };
                    capability(ctx.send_message(draft), &inputs)?;
                }
                if let Some(var) = &action.save_as {
                    state.vars.insert(var.clone(), outcome.output.clone());
                }
                let branch = outcome
                    .branch
                    .as_ref()
                    .and_then(|name| action.branches.get(name).map(|target| (name, target)));
                let port = match branch {
                    Some((name, target)) => (format!("branches.{name}"), Some(target.clone())),
                    None => ("next".to_owned(), action.next.clone()),
                };
                let mut outputs = json!({"output": outcome.output, "branch": outcome.branch, "replies": outcome.replies});
                redactor.redact_json(&mut outputs);
                Ok(Outcome {
                    port: Some(port),
                    inputs,
                    outputs,
                })
            }
            Err(error) if catchable(&error) && action.on_error.is_some() => {
                let mut outputs = json!({"error": {"kind": error.kind, "message": error.message}});
                redactor.redact_json(&mut outputs);
                Ok(Outcome {
                    port: Some(("on_error".to_owned(), action.on_error.clone())),
                    inputs,
                    outputs,
                })
            }
            Err(error) => Err((inputs, Failure::Run(error))),
        }
    }

    async fn http(
        &self,
        step: &Step,
        http: &HttpBlock,
        ctx: &mut RunContext,
        state: &mut RunState,
        mode: &HttpMode,
    ) -> Result<Outcome, (Value, Failure)> {
        let bearer = self.oauth_token(http, ctx, mode).await?;
        let (request, inputs) = self
            .render_request(http, ctx, state, bearer.token())
            .map_err(|failure| (Value::Null, failure))?;
        let response = if let Bearer::Failed(why, blame) = &bearer {
            Err((why.clone(), *blame))
        } else {
            match mode {
                HttpMode::Live => match ctx.http(request).await {
                    Err(hit) => return Err((inputs, hit.into())),
                    // The run's HTTP byte quota: a limit, not an answer a port may catch.
                    Ok(Err(EgressError::LimitExceeded)) => {
                        let error = RunError::new(
                            ErrorKind::QuotaExceeded,
                            "the run's HTTP byte quota is spent (limit-exceeded)",
                        )
                        .blamed_on(Blame::Guest);
                        return Err((inputs, Failure::Run(error)));
                    }
                    Ok(Err(error)) => Err((
                        format!("request refused or failed: {error}"),
                        blame_of(&error),
                    )),
                    Ok(Ok(response)) => Ok(response),
                },
                HttpMode::Fixtures(fixtures) => match fixtures.get(&step.id) {
                    Some(fixture) => Ok(fixture_response(fixture)),
                    None => Err((
                        format!(
                            "no fixture for step `{}` (a test with fixtures sends nothing)",
                            step.id
                        ),
                        Blame::Guest,
                    )),
                },
            }
        };
        let failure_port = |message: String, blame: Blame| {
            let error = RunError::new(ErrorKind::ActionError, message).blamed_on(blame);
            match &http.on_error {
                Some(target) => Ok(Some(("on_error".to_owned(), Some(target.clone())))),
                None => Err(Failure::Http(error)),
            }
        };
        let response = match response {
            Ok(response) => response,
            Err((message, blame)) => {
                state.responses.insert(
                    step.id.clone(),
                    json!({"response": {"status": 0, "headers": {}, "body": null, "error": message}}),
                );
                let port = failure_port(message.clone(), blame)
                    .map_err(|failure| (inputs.clone(), failure))?;
                return Ok(Outcome {
                    port,
                    inputs,
                    outputs: json!({"error": message}),
                });
            }
        };
        // A token the API no longer takes is not used again.
        if response.status == 401
            && let Bearer::Token { client, .. } = &bearer
        {
            self.tokens.forget(client);
        }
        let body = response_body(&response);
        let headers: Map<String, Value> = response
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        let answer = json!({"status": response.status, "headers": headers, "body": body});
        state
            .responses
            .insert(step.id.clone(), json!({ "response": answer }));
        if !(200..300).contains(&response.status) {
            let blame = if response.status >= 500 || response.status == 429 {
                Blame::Upstream
            } else {
                Blame::Guest
            };
            let port = failure_port(format!("the upstream answered {}", response.status), blame)
                .map_err(|failure| (inputs.clone(), failure))?;
            return Ok(Outcome {
                port,
                inputs,
                outputs: json!({"response": answer}),
            });
        }
        // Every value is found before any is kept: a save that misses keeps none.
        let mut found = Vec::with_capacity(http.save.len());
        for save in &http.save {
            let value = path::parse(&save.path)
                .ok()
                .and_then(|segments| path::lookup(&body, &segments).cloned());
            let Some(value) = value else {
                let message = format!("the response has nothing at `{}`", save.path);
                // Later steps see why: `steps.<id>.response.error`.
                if let Some(Value::Object(response)) = state
                    .responses
                    .get_mut(&step.id)
                    .and_then(|entry| entry.get_mut("response"))
                {
                    response.insert("error".to_owned(), Value::String(message.clone()));
                }
                let port = failure_port(message.clone(), Blame::Upstream)
                    .map_err(|failure| (inputs.clone(), failure))?;
                return Ok(Outcome {
                    port,
                    inputs,
                    outputs: json!({"response": answer, "error": message}),
                });
            };
            found.push((save, value));
        }
        let mut saved = Map::new();
        for (save, value) in found {
            if let Some(var) = &save.var {
                state.vars.insert(var.clone(), value.clone());
                saved.insert(format!("vars.{var}"), value.clone());
            }
            if let Some(field) = &save.field {
                capability(ctx.set_field(field.clone(), field_value(&value)), &inputs)?;
                saved.insert(format!("fields.{field}"), value);
            }
        }
        Ok(Outcome {
            port: Some(("next".to_owned(), http.next.clone())),
            inputs,
            outputs: json!({"response": answer, "saved": saved}),
        })
    }

    /// An OAuth 2.0 block's client and access token (cached, or requested through the
    /// run's egress: a live request, so not under fixtures), or why none was had (the
    /// step then fails as an HTTP failure, which `on_error` may catch).
    async fn oauth_token(
        &self,
        http: &HttpBlock,
        ctx: &mut RunContext,
        mode: &HttpMode,
    ) -> Result<Bearer, (Value, Failure)> {
        let Some(Auth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            client_auth,
        }) = &http.auth
        else {
            return Ok(Bearer::None);
        };
        if matches!(mode, HttpMode::Fixtures(_)) {
            return Ok(Bearer::Fixture);
        }
        let secret = ctx.secret(client_secret).map_err(|error| {
            (
                Value::Null,
                definition_error(format!(
                    "secret `{client_secret}`: {error} (set it with `fluxo secrets set`)"
                )),
            )
        })?;
        let client = Client {
            tenant: ctx.meta().tenant.clone(),
            token_url: token_url.clone(),
            client_id: client_id.clone(),
            client_secret: secret,
            scope: scope.clone(),
            in_body: *client_auth == ClientAuth::Body,
        };
        match self.tokens.token(&client, ctx).await {
            Ok(token) => Ok(Bearer::Token { client, token }),
            Err(TokenError::Limit(hit)) => Err((Value::Null, hit.into())),
            Err(TokenError::Run(error)) => Err((Value::Null, Failure::Run(error))),
            Err(TokenError::Failed(why, blame)) => Ok(Bearer::Failed(why, blame)),
        }
    }

    /// The request an HTTP block sends, and its inputs for the trace (credential
    /// headers masked; secret values are redacted from the whole trace at the end).
    /// `oauth_token` is an OAuth 2.0 block's access token.
    fn render_request(
        &self,
        http: &HttpBlock,
        ctx: &RunContext,
        state: &mut RunState,
        oauth_token: Option<&str>,
    ) -> Result<(EgressRequest, Value), Failure> {
        let mut secrets = Map::new();
        let mut wanted: Vec<String> = Vec::new();
        for (_, source, _) in crate::definition::templates(&Block::Http(http.clone())) {
            let names = self.templates.variables(source).map_err(definition_error)?;
            wanted.extend(
                names
                    .iter()
                    .filter_map(|name| name.strip_prefix("secrets."))
                    .map(|name| name.split('.').next().unwrap_or(name).to_owned()),
            );
        }
        match &http.auth {
            Some(Auth::Bearer { secret } | Auth::ApiKey { secret, .. }) => {
                wanted.push(secret.clone())
            }
            Some(Auth::Basic {
                password_secret, ..
            }) => wanted.push(password_secret.clone()),
            Some(Auth::OAuth2 { client_secret, .. }) => wanted.push(client_secret.clone()),
            None => {}
        }
        for name in wanted {
            let value = ctx.secret(&name).map_err(|error| {
                definition_error(format!(
                    "secret `{name}`: {error} (set it with `fluxo secrets set`)"
                ))
            })?;
            if !state.secrets_used.contains(&name) {
                state.secrets_used.push(name.clone());
            }
            secrets.insert(name, Value::String(value));
        }
        let mut data = state.data(ctx);
        if let Value::Object(map) = &mut data {
            map.insert("secrets".to_owned(), Value::Object(secrets.clone()));
        }
        let scope = minijinja::Value::from_serialize(&data);
        let render = |source: &str, context: Context, field: &str| {
            self.templates
                .render(source, context, &scope)
                .map_err(|why| definition_error(format!("{field}: {why}")))
        };
        // What the trace shows: a value whose template reads a secret is shown as its
        // template, never rendered (no filter or encoding can then slip a secret past
        // the redactor).
        let reads_secret = |source: &str| {
            self.templates
                .variables(source)
                .is_ok_and(|names| names.iter().any(|name| name.starts_with("secrets")))
        };
        let url = render(&http.url, Context::Url, "url")?;
        let mut parsed = url::Url::parse(&url)
            .map_err(|error| definition_error(format!("url: `{url}` is not a URL: {error}")))?;
        let mut url_shown = if reads_secret(&http.url) {
            http.url.clone()
        } else {
            url
        };
        if !http.query.is_empty() {
            let mut pairs = Vec::new();
            let mut shown = url::form_urlencoded::Serializer::new(String::new());
            for (i, pair) in http.query.iter().enumerate() {
                let value = render(&pair.value, Context::Secret, &format!("query[{i}].value"))?;
                let display = if reads_secret(&pair.value) {
                    pair.value.as_str()
                } else {
                    value.as_str()
                };
                shown.append_pair(&pair.key, display);
                pairs.push((pair.key.clone(), value));
            }
            parsed.query_pairs_mut().extend_pairs(pairs);
            url_shown.push(if url_shown.contains('?') { '&' } else { '?' });
            url_shown.push_str(&shown.finish());
        }
        let mut request = EgressRequest::new(http.method.to_egress(), parsed.to_string());
        let mut headers_shown = Vec::new();
        for (i, pair) in http.headers.iter().enumerate() {
            let value = render(&pair.value, Context::Secret, &format!("headers[{i}].value"))?;
            let name = pair.key.to_ascii_lowercase();
            let display = if is_credential_header(&name) {
                "[redacted]".to_owned()
            } else if reads_secret(&pair.value) {
                pair.value.clone()
            } else {
                value.clone()
            };
            headers_shown.push(json!([name, display]));
            request.headers.push((name, value));
        }
        match &http.auth {
            Some(Auth::Bearer { secret }) => {
                let token = secret_value(&secrets, secret);
                request
                    .headers
                    .push(("authorization".to_owned(), format!("Bearer {token}")));
                headers_shown.push(json!(["authorization", "[redacted]"]));
            }
            Some(Auth::Basic {
                username,
                password_secret,
            }) => {
                let user = render(username, Context::Secret, "auth.basic.username")?;
                let password = secret_value(&secrets, password_secret);
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                request
                    .headers
                    .push(("authorization".to_owned(), format!("Basic {encoded}")));
                headers_shown.push(json!(["authorization", "[redacted]"]));
            }
            Some(Auth::ApiKey { header, secret }) => {
                let name = header.to_ascii_lowercase();
                request
                    .headers
                    .push((name.clone(), secret_value(&secrets, secret)));
                headers_shown.push(json!([name, "[redacted]"]));
            }
            Some(Auth::OAuth2 { .. }) => {
                let token = oauth_token.unwrap_or_default();
                request
                    .headers
                    .push(("authorization".to_owned(), format!("Bearer {token}")));
                headers_shown.push(json!(["authorization", "[redacted]"]));
            }
            None => {}
        }
        let mut body_shown = Value::Null;
        match &http.body {
            Some(Body::Json(pairs)) => {
                let mut rendered = Vec::new();
                let mut display = Vec::new();
                for (i, pair) in pairs.iter().enumerate() {
                    let value = render(&pair.value, Context::Secret, &format!("body[{i}].value"))?;
                    let shown = if reads_secret(&pair.value) {
                        pair.value.clone()
                    } else {
                        value.clone()
                    };
                    rendered.push((pair.key.as_str(), Value::String(value)));
                    display.push((pair.key.as_str(), Value::String(shown)));
                }
                let document = path::build_json(rendered)
                    .map_err(|why| definition_error(format!("body: {why}")))?
                    .to_json_string();
                body_shown = path::build_json(display)
                    .map(|node| Value::String(node.to_json_string()))
                    .unwrap_or(Value::Null);
                set_content_type(&mut request, "application/json");
                request.body = Some(document.into_bytes());
            }
            Some(Body::Form(pairs)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                let mut display = url::form_urlencoded::Serializer::new(String::new());
                for (i, pair) in pairs.iter().enumerate() {
                    let value = render(&pair.value, Context::Secret, &format!("body[{i}].value"))?;
                    let shown = if reads_secret(&pair.value) {
                        pair.value.as_str()
                    } else {
                        value.as_str()
                    };
                    display.append_pair(&pair.key, shown);
                    form.append_pair(&pair.key, &value);
                }
                let encoded = form.finish();
                set_content_type(&mut request, "application/x-www-form-urlencoded");
                body_shown = Value::String(display.finish());
                request.body = Some(encoded.into_bytes());
            }
            Some(Body::Raw { content_type, text }) => {
                let context = if is_json(content_type) {
                    Context::Json
                } else {
                    Context::Secret
                };
                let rendered = render(text, context, "body.raw.text")?;
                set_content_type(&mut request, content_type);
                body_shown = Value::String(if reads_secret(text) {
                    text.clone()
                } else {
                    rendered.clone()
                });
                request.body = Some(rendered.into_bytes());
            }
            None => {}
        }
        request.timeout = http.timeout_ms.map(std::time::Duration::from_millis);
        let inputs = json!({
            "method": request.method.to_string(),
            "url": url_shown,
            "headers": headers_shown,
            "body": body_shown,
        });
        Ok((request, inputs))
    }
}

/// Whose fault a refused or failed request is: the definition's when the request could
/// never be sent (a host not allowed, a bad header, a body over the cap), the upstream's
/// when it may answer next time (a timeout, a failed connection).
pub(crate) fn blame_of(error: &EgressError) -> Blame {
    match error {
        EgressError::Timeout | EgressError::Connect(_) => Blame::Upstream,
        _ => Blame::Guest,
    }
}

fn secret_value(secrets: &Map<String, Value>, name: &str) -> String {
    secrets.get(name).map(text_of).unwrap_or_default()
}

fn set_content_type(request: &mut EgressRequest, content_type: &str) {
    if !request.has_header("content-type") {
        request
            .headers
            .push(("content-type".to_owned(), content_type.to_owned()));
    }
}

/// The response body as JSON when it parses as JSON, else as text.
fn response_body(response: &EgressResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()))
}

fn fixture_response(fixture: &FixtureResponse) -> EgressResponse {
    let body = match &fixture.body {
        Value::String(text) => text.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    };
    EgressResponse {
        status: fixture.status,
        headers: fixture
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect(),
        body,
    }
}

/// Whether an action's failure may be taken to its step's `on_error` port: its own
/// failures are; the run's shared limits, a disabled action, a backend outage (the run
/// is retried) and a cancel are not.
fn catchable(error: &RunError) -> bool {
    !matches!(
        error.kind,
        ErrorKind::DeadlineExceeded
            | ErrorKind::QuotaExceeded
            | ErrorKind::ReportTooLarge
            | ErrorKind::HostTimeout
            | ErrorKind::ActionDisabled
            | ErrorKind::BackendUnavailable
            | ErrorKind::Cancelled
    )
}

/// Queues a platform message; the trace shows what was sent and its id.
fn send_message(
    ctx: &mut RunContext,
    draft: MessageDraft,
    next: &Option<String>,
) -> Result<Outcome, (Value, Failure)> {
    let mut shown = Map::new();
    shown.insert("text".to_owned(), json!(draft.text));
    if let Some(to) = &draft.to {
        shown.insert("to".to_owned(), json!(to));
    }
    if let Some(service) = &draft.service {
        shown.insert("service".to_owned(), json!(service));
    }
    let inputs = Value::Object(shown);
    let id = capability(ctx.send_message(draft), &inputs)?;
    Ok(Outcome {
        port: Some(("next".to_owned(), next.clone())),
        inputs,
        outputs: json!({"message_id": id}),
    })
}

/// A capability's result: a limit ends the run; an error value fails the step (the
/// definition asked for something the capability refuses).
fn capability<T, E: std::fmt::Display>(
    result: Result<Result<T, E>, LimitHit>,
    inputs: &Value,
) -> Result<T, (Value, Failure)> {
    match result {
        Err(hit) => Err((inputs.clone(), hit.into())),
        Ok(Err(error)) => Err((inputs.clone(), definition_error(error.to_string()))),
        Ok(Ok(value)) => Ok(value),
    }
}

fn set_variable(
    set: &SetVariableBlock,
    state: &RunState,
    text: impl Fn(&str) -> Result<String, (Value, Failure)>,
) -> Result<Value, (Value, Failure)> {
    if let Some(step) = set.increment {
        let current = match state.vars.get(&set.name) {
            None | Some(Value::Null) => 0.0,
            Some(value) => text_of(value).trim().parse::<f64>().map_err(|_| {
                (
                    Value::Null,
                    definition_error(format!(
                        "`vars.{}` is not a number: cannot increment it",
                        set.name
                    )),
                )
            })?,
        };
        #[allow(
            clippy::cast_precision_loss,
            reason = "increments are small whole numbers"
        )]
        let sum = current + step as f64;
        return Ok(
            serde_json::Number::from_f64(sum).map_or(Value::Null, |number| {
                if sum.fract() == 0.0 && sum.abs() < 9.0e15 {
                    #[allow(
                        clippy::cast_possible_truncation,
                        reason = "whole and in range, checked above"
                    )]
                    Value::from(sum as i64)
                } else {
                    Value::Number(number)
                }
            }),
        );
    }
    Ok(Value::String(text(
        set.value.as_deref().unwrap_or_default(),
    )?))
}

/// The branch `draw` (in `[0, 1)`) selects, by weight; and the draw scaled to the
/// weights' sum (recorded in the trace).
fn choose(split: &SplitBlock, draw: f64) -> (usize, f64) {
    let total: u64 = split.branches.iter().map(|b| u64::from(b.weight)).sum();
    #[allow(clippy::cast_precision_loss, reason = "weights are small")]
    let point = draw.clamp(0.0, 1.0) * total as f64;
    let mut edge = 0.0;
    for (index, branch) in split.branches.iter().enumerate() {
        edge += f64::from(branch.weight);
        if point < edge {
            return (index, point);
        }
    }
    (split.branches.len().saturating_sub(1), point)
}

fn render_email(
    email: &SendEmailBlock,
    text: impl Fn(&str, &str) -> Result<String, (Value, Failure)>,
) -> Result<(EmailMessage, Value), (Value, Failure)> {
    let to = email
        .to
        .iter()
        .enumerate()
        .map(|(i, source)| text(source, &format!("to[{i}]")).map(|a| a.trim().to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let cc = email
        .cc
        .iter()
        .enumerate()
        .map(|(i, source)| text(source, &format!("cc[{i}]")).map(|a| a.trim().to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let subject = text(&email.subject, "subject")?;
    let body = text(&email.text, "text")?;
    let inputs = json!({"to": to, "cc": cc, "subject": subject, "text": body});
    Ok((
        EmailMessage {
            to,
            cc,
            subject,
            text: body,
            html: None,
            reply_to: None,
        },
        inputs,
    ))
}

/// A saved JSON value as a contact field: strings, numbers and flags keep their type;
/// lists and objects are stored as their JSON text.
fn field_value(value: &Value) -> FieldValue {
    match value {
        Value::String(text) => FieldValue::Text(text.clone()),
        Value::Number(number) => number.as_f64().map_or(FieldValue::Null, FieldValue::Number),
        Value::Bool(flag) => FieldValue::Bool(*flag),
        Value::Null => FieldValue::Null,
        other => FieldValue::Text(other.to_string()),
    }
}

/// A `wait_for_reply` step: the wait's end when there is one (a resumed run, a test's
/// sample reply), else the run suspends here.
fn wait_for_reply(
    wait: &WaitForReplyBlock,
    ctx: &RunContext,
    state: &mut RunState,
) -> Result<Outcome, (Value, Failure)> {
    let inputs = json!({"timeout_seconds": wait.timeout_seconds, "save_as": wait.save_as});
    let resolution = state.resolution.take().or_else(|| match &mut state.waits {
        Waits::Suspend => None,
        Waits::Answers(answers) => answers
            .pop_front()
            .map(|answer| answer.map_or(Resolution::Timeout, Resolution::Reply)),
    });
    match resolution {
        None => {
            // Waiting needs someone to answer: a real run is about a contact.
            let contact = ctx.contact_snapshot().id.clone();
            if contact.is_none() && state.waits == Waits::Suspend {
                return Err((
                    inputs,
                    definition_error(
                        "a wait for a reply needs the run to be about a contact (its event has no contact id)",
                    ),
                ));
            }
            state.suspended = true;
            Ok(Outcome {
                port: None,
                inputs,
                outputs: json!({"waiting": true, "contact": contact}),
            })
        }
        Some(Resolution::Reply(mut message)) => {
            // A contact answers where it was asked: the channel carries over when the
            // platform does not say.
            if message.channel.is_none() {
                message.channel = state.message.as_ref().and_then(|m| m.channel.clone());
            }
            state
                .vars
                .insert(wait.save_as.clone(), Value::String(message.text.clone()));
            let outputs = json!({"reply": message.text});
            state.message = Some(message);
            Ok(Outcome {
                port: Some(("next".to_owned(), wait.next.clone())),
                inputs,
                outputs,
            })
        }
        Some(Resolution::Timeout) => {
            state.vars.insert(wait.save_as.clone(), Value::Null);
            Ok(Outcome {
                port: Some(("on_timeout".to_owned(), wait.on_timeout.clone())),
                inputs,
                outputs: json!({"timed_out": true}),
            })
        }
    }
}

/// A run's own state: what templates and conditions read (rebuilt into a scope before
/// each step from the context, so a field set by one step is seen by the next), its
/// budget so far, and its wait.
struct RunState {
    vars: Map<String, Value>,
    message: Option<Message>,
    responses: Map<String, Value>,
    secrets_used: Vec<String>,
    /// Visits per step so far (loop limits; an action step's idempotency key).
    visits: BTreeMap<String, u32>,
    /// Steps executed so far.
    executed: u32,
    waits: Waits,
    /// How the wait the run resumes at ended.
    resolution: Option<Resolution>,
    /// Set by a wait with no answer: the run stops after this step.
    suspended: bool,
}

impl RunState {
    fn resumed(
        checkpoint: Checkpoint,
        resolution: Resolution,
        waits: Waits,
        ctx: &RunContext,
    ) -> Self {
        Self {
            vars: checkpoint.vars,
            message: checkpoint.message,
            responses: checkpoint.responses,
            // Names only: a checkpoint written before they were names held values,
            // which must not be written back.
            secrets_used: checkpoint
                .secrets_used
                .into_iter()
                .filter(|name| ctx.secret(name).is_ok())
                .collect(),
            visits: checkpoint.visits,
            executed: checkpoint.executed,
            waits,
            resolution: Some(resolution),
            suspended: false,
        }
    }

    fn checkpoint(&self, step: &Step) -> Checkpoint {
        let timeout_seconds = match &step.block {
            Block::WaitForReply(wait) => wait.timeout_seconds,
            _ => 0,
        };
        Checkpoint {
            step: step.id.clone(),
            timeout_seconds,
            vars: self.vars.clone(),
            message: self.message.clone(),
            responses: self.responses.clone(),
            visits: self.visits.clone(),
            executed: self.executed,
            secrets_used: self.secrets_used.clone(),
        }
    }

    fn data(&self, ctx: &RunContext) -> Value {
        let contact = ctx.contact();
        let fields: Map<String, Value> = contact
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), shortest(value.to_json())))
            .collect();
        let message = self.message.as_ref().map_or_else(
            || json!({"text": "", "channel": ""}),
            |message| {
                json!({"text": message.text, "channel": message.channel.clone().unwrap_or_default()})
            },
        );
        json!({
            "contact": {
                "id": contact.id.as_ref().map(ToString::to_string),
                "fields": fields,
                "tags": contact.tags,
            },
            "message": message,
            "vars": self.vars,
            "steps": self.responses,
        })
    }

    fn scope(&self, ctx: &RunContext) -> minijinja::Value {
        minijinja::Value::from_serialize(self.data(ctx))
    }
}

/// Whole numbers as integers (`2`, not `2.0`, in templates).
fn shortest(value: Value) -> Value {
    match &value {
        Value::Number(number) => match number.as_f64() {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "whole and in range, checked"
            )]
            Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
                Value::from(float as i64)
            }
            _ => value,
        },
        _ => value,
    }
}

/// Fields and tags that differ between two views of the contact.
fn changes(before: &fluxo_core::Contact, after: &fluxo_core::Contact) -> Vec<Change> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        before.fields.keys().chain(after.fields.keys()).collect();
    for name in names {
        let (a, b) = (before.fields.get(name), after.fields.get(name));
        if a != b {
            out.push(Change {
                what: format!("fields.{name}"),
                before: a.map_or(Value::Null, FieldValue::to_json),
                after: b.map_or(Value::Null, FieldValue::to_json),
            });
        }
    }
    if before.tags != after.tags {
        out.push(Change {
            what: "tags".to_owned(),
            before: json!(before.tags),
            after: json!(after.tags),
        });
    }
    out
}

impl WorkflowRun {
    /// Redacts `redactor`'s secrets from everything the run shows: the trace (inputs,
    /// outputs, effects, changes, errors), the error and the variables. A test answer
    /// uses every tenant secret: an action step's component may read any of them.
    pub fn redact(&mut self, redactor: &Redactor) {
        redact_run(redactor, self);
    }
}

fn redact_run(redactor: &Redactor, run: &mut WorkflowRun) {
    for step in &mut run.trace {
        redactor.redact_json(&mut step.inputs);
        redactor.redact_json(&mut step.outputs);
        for effect in &mut step.effects {
            redactor.redact_effect(effect);
        }
        for change in &mut step.changes {
            redactor.redact_json(&mut change.before);
            redactor.redact_json(&mut change.after);
        }
        if let Some(error) = &mut step.error {
            redactor.redact_in_place(error);
        }
    }
    if let Some(error) = &mut run.error {
        redactor.redact_in_place(&mut error.error.message);
    }
    for value in run.vars.values_mut() {
        redactor.redact_json(value);
    }
    // A checkpoint is stored in the clear: a secret or token an upstream echoed into a
    // saved answer or variable is not kept in it.
    if let Some(checkpoint) = &mut run.waiting {
        for value in checkpoint
            .vars
            .values_mut()
            .chain(checkpoint.responses.values_mut())
        {
            redactor.redact_json(value);
        }
        if let Some(message) = &mut checkpoint.message {
            redactor.redact_in_place(&mut message.text);
        }
    }
}

//! What a workflow is: a named JSON document of steps, each a block with its parameters
//! and its outgoing ports.
//!
//! ```json
//! {"name": "lead-sync", "start": "create_deal",
//!  "steps": [
//!    {"id": "create_deal", "type": "http", "method": "POST",
//!     "url": "https://crm.example/api/deals",
//!     "body": {"json": [{"key": "deal[name]", "value": "{{contact.fields.name}}"}]},
//!     "next": "tag"},
//!    {"id": "tag", "type": "tag", "tag": "onboarded"}]}
//! ```
//!
//! A step without `next` ends the workflow. [`Workflow::parse`] reads every step even
//! when some are malformed, so [`crate::validate`] can list every problem at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// Names a workflow may not take: `/v1/workflows/validate` and `/v1/workflows/test` are
/// the API's routes, so a workflow of that name could be stored but never shown.
pub const RESERVED_NAMES: &[&str] = &["validate", "test"];

/// The most steps one workflow may hold.
pub const MAX_STEPS: usize = 200;

/// A workflow definition, parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workflow {
    /// Its name (unique per tenant).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The first step's id.
    pub start: String,
    /// Variables the run starts with (a run's `input` members, a test's `vars`):
    /// templates may read `vars.<name>` for these; one not given is null.
    pub inputs: Vec<String>,
    /// The steps, in document order.
    pub steps: Vec<Step>,
    /// The run's budget.
    pub budget: Budget,
}

impl Workflow {
    /// Reads a definition from JSON text.
    ///
    /// # Errors
    /// Every problem found while reading: the document's shape, and each step that does
    /// not parse (with its id and the field). Graph and template checks are
    /// [`crate::validate`]'s.
    pub fn parse(text: &str) -> Result<Self, Vec<Problem>> {
        let document: Document = serde_json::from_str(text).map_err(|error| {
            vec![Problem::document(
                "",
                format!("not a workflow document: {error}"),
            )]
        })?;
        Self::from_document(document)
    }

    /// Reads a definition from a JSON value (an API body).
    ///
    /// # Errors
    /// As [`Workflow::parse`].
    pub fn from_value(value: serde_json::Value) -> Result<Self, Vec<Problem>> {
        let document: Document = serde_path_to_error::deserialize(value).map_err(|error| {
            vec![Problem::document(
                &error.path().to_string(),
                format!("not a workflow document: {}", error.inner()),
            )]
        })?;
        Self::from_document(document)
    }

    fn from_document(document: Document) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        if document.name.trim().is_empty() {
            problems.push(Problem::document("name", "is empty"));
        }

        if document.steps.is_empty() {
            problems.push(Problem::document(
                "steps",
                "a workflow needs at least one step",
            ));
        }
        if document.steps.len() > MAX_STEPS {
            problems.push(Problem::document(
                "steps",
                format!(
                    "{} steps, over the {MAX_STEPS} allowed",
                    document.steps.len()
                ),
            ));
        }
        let mut steps = Vec::with_capacity(document.steps.len());
        for (index, raw) in document.steps.into_iter().enumerate() {
            match Step::from_value(raw) {
                Ok(step) => steps.push(step),
                Err(problem) => problems.push(problem.at_index(index)),
            }
        }
        let start = document
            .start
            .or_else(|| steps.first().map(|step| step.id.clone()))
            .unwrap_or_default();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: document.name,
            description: document.description,
            start,
            inputs: document.inputs,
            steps,
            budget: document.budget,
        })
    }

    /// The step with `id`.
    #[must_use]
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }
}

/// The document as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    inputs: Vec<String>,
    steps: Vec<serde_json::Value>,
    #[serde(default)]
    budget: Budget,
}

/// What one run of a workflow may spend, over and above the tenant's limits (which cap
/// HTTP requests, writes and wall time as for a component).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Steps executed in all (default 100).
    pub max_steps: u32,
    /// Visits of any one step, unless the step sets its own `max_visits` (default 10:
    /// the loop limit).
    pub max_visits: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_steps: 100,
            max_visits: 10,
        }
    }
}

/// One step: an id, a block, and how often it may run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Its id: letters, digits and `_`, not starting with a digit (templates name it as
    /// `steps.<id>`).
    pub id: String,
    /// Visits allowed in one run, when set (a loop's declared limit).
    pub max_visits: Option<u32>,
    /// What it does.
    pub block: Block,
}

impl Step {
    fn from_value(raw: serde_json::Value) -> Result<Self, Problem> {
        let serde_json::Value::Object(mut map) = raw else {
            return Err(Problem::document("", "a step is a JSON object"));
        };
        let id = match map.remove("id") {
            Some(serde_json::Value::String(id)) => id,
            Some(_) => return Err(Problem::document("id", "is not a string")),
            None => return Err(Problem::document("id", "is missing")),
        };
        let max_visits = match map.remove("max_visits") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Problem::step(&id, "max_visits", "is not a whole number above 0")
                    })?,
            ),
        };
        let block: Block = serde_path_to_error::deserialize(serde_json::Value::Object(map))
            .map_err(|error| {
                let path = error.path().to_string();
                let field = if path == "." { String::new() } else { path };
                Problem::step(&id, &field, error.inner().to_string())
            })?;
        Ok(Self {
            id,
            max_visits,
            block,
        })
    }

    /// The steps this one may go to next, with the port's name.
    #[must_use]
    pub fn ports(&self) -> Vec<(&'static str, &str)> {
        fn add<'a>(
            ports: &mut Vec<(&'static str, &'a str)>,
            name: &'static str,
            target: &'a Option<String>,
        ) {
            if let Some(target) = target {
                ports.push((name, target.as_str()));
            }
        }
        let mut ports = Vec::new();
        match &self.block {
            Block::Http(block) => {
                add(&mut ports, "next", &block.next);
                add(&mut ports, "on_error", &block.on_error);
            }
            Block::SetField(block) => add(&mut ports, "next", &block.next),
            Block::Tag(block) | Block::Untag(block) => add(&mut ports, "next", &block.next),
            Block::SetVariable(block) => add(&mut ports, "next", &block.next),
            Block::SendEmail(block) => add(&mut ports, "next", &block.next),
            Block::Reply(block) => add(&mut ports, "next", &block.next),
            Block::Notify(block) => add(&mut ports, "next", &block.next),
            Block::Handoff(block) => add(&mut ports, "next", &block.next),
            Block::TriggerWorkflow(block) => add(&mut ports, "next", &block.next),
            Block::WaitForReply(block) => {
                add(&mut ports, "next", &block.next);
                add(&mut ports, "on_timeout", &block.on_timeout);
            }
            Block::Action(block) => {
                add(&mut ports, "next", &block.next);
                add(&mut ports, "on_error", &block.on_error);
                for target in block.branches.values() {
                    ports.push(("branches", target.as_str()));
                }
            }
            Block::Condition(block) => {
                add(&mut ports, "then", &block.then);
                add(&mut ports, "else", &block.otherwise);
            }
            Block::Split(block) => {
                for branch in &block.branches {
                    ports.push(("branches", branch.next.as_str()));
                }
            }
        }
        ports
    }
}

/// A block and its parameters; JSON `"type"` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// An HTTP request (the integration block and the custom action).
    Http(HttpBlock),
    /// Writes a contact field.
    SetField(SetFieldBlock),
    /// Adds a tag to the contact.
    Tag(TagBlock),
    /// Removes a tag from the contact.
    Untag(TagBlock),
    /// Sets a run variable (a counter for loops, a value for later steps).
    SetVariable(SetVariableBlock),
    /// Chooses a port by rules.
    Condition(ConditionBlock),
    /// Chooses a port by a weighted random draw (A/B tests); the draw is recorded.
    Split(SplitBlock),
    /// Sends an e-mail (after the run commits, like a component's).
    SendEmail(SendEmailBlock),
    /// Sends a message into the contact's conversation (after the run commits).
    Reply(ReplyBlock),
    /// Sends a message to a platform user, such as the chat's owner.
    Notify(NotifyBlock),
    /// Hands the conversation to a service (a department, a helpdesk, or back to the bot).
    Handoff(HandoffBlock),
    /// Runs one of the tenant's component actions in this run; its outcome's `branch`
    /// picks the port.
    Action(ActionBlock),
    /// Suspends the run until the contact's next message (which becomes a variable and
    /// the `message`) or a timeout; the run holds no memory meanwhile.
    WaitForReply(WaitForReplyBlock),
    /// Starts a workflow (or a component action) of the tenant as its own run once this
    /// run's effects commit; this run goes on at once.
    TriggerWorkflow(TriggerWorkflowBlock),
}

impl Block {
    /// The block's type name, as written.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::SetField(_) => "set_field",
            Self::Tag(_) => "tag",
            Self::Untag(_) => "untag",
            Self::SetVariable(_) => "set_variable",
            Self::Condition(_) => "condition",
            Self::Split(_) => "split",
            Self::SendEmail(_) => "send_email",
            Self::Reply(_) => "reply",
            Self::Notify(_) => "notify",
            Self::Handoff(_) => "handoff",
            Self::Action(_) => "action",
            Self::WaitForReply(_) => "wait_for_reply",
            Self::TriggerWorkflow(_) => "trigger_workflow",
        }
    }
}

/// An HTTP method the block may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl HttpMethod {
    /// The egress client's method.
    #[must_use]
    pub fn to_egress(self) -> fluxo_egress::Method {
        match self {
            Self::Get => fluxo_egress::Method::Get,
            Self::Post => fluxo_egress::Method::Post,
            Self::Put => fluxo_egress::Method::Put,
            Self::Patch => fluxo_egress::Method::Patch,
            Self::Delete => fluxo_egress::Method::Delete,
        }
    }
}

/// A key and a value template (headers, query, body pairs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// The key (for a JSON body, with brackets: `deal[name]`, `contacts[0][name]`).
    pub key: String,
    /// The value, a template.
    pub value: String,
}

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// A JSON document built from bracket-keyed pairs (each value a JSON string).
    Json(Vec<Pair>),
    /// `application/x-www-form-urlencoded` pairs.
    Form(Vec<Pair>),
    /// A raw body template; with a JSON content type, interpolated values are written as
    /// JSON values (strings quoted and escaped).
    Raw {
        /// The content type sent.
        content_type: String,
        /// The body template.
        text: String,
    },
}

/// Credentials for the request, bound to tenant secrets by name (never written in the
/// definition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <secret>` (RFC 6750 §2.1).
    Bearer {
        /// The secret holding the token.
        secret: String,
    },
    /// `Authorization: Basic base64(user:password)` (RFC 7617).
    Basic {
        /// The user name (a template).
        username: String,
        /// The secret holding the password.
        password_secret: String,
    },
    /// The secret in a header of the API's choosing.
    ApiKey {
        /// The header's name.
        header: String,
        /// The secret holding the key.
        secret: String,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): an access token requested from
    /// `token_url` through the run's egress policy, sent as `Authorization: Bearer`
    /// (RFC 6750), cached per tenant and client until shortly before it expires.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The authorization server's token endpoint (an absolute `https` or `http`
        /// URL, no template); the tenant's allowlist must admit it.
        token_url: String,
        /// The client's id.
        client_id: String,
        /// The secret holding the client's secret.
        client_secret: String,
        /// Scopes to ask for, space-separated (RFC 6749 §3.3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// How the client authenticates: `basic` (HTTP Basic, RFC 6749 §2.3.1's
        /// default) or `body` (`client_id` and `client_secret` in the form).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

/// How an OAuth 2.0 client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client's id and secret.
    #[default]
    Basic,
    /// The id and secret as form parameters.
    Body,
}

/// Where a value of the response goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Save {
    /// A path into the response body: `data.url`, `data[url]`, `{data[url]}`,
    /// `items[0].id`.
    pub path: String,
    /// A run variable to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
    /// A contact field to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The HTTP request block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBlock {
    /// The method.
    pub method: HttpMethod,
    /// The URL template; interpolated values are percent-encoded.
    pub url: String,
    /// Query parameters, appended to the URL (form-encoded).
    #[serde(default)]
    pub query: Vec<Pair>,
    /// Header templates.
    #[serde(default)]
    pub headers: Vec<Pair>,
    /// The body.
    #[serde(default)]
    pub body: Option<Body>,
    /// Credentials.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// A timeout for the exchange, in milliseconds (the tenant's limits still cap it).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Values of the response to keep.
    #[serde(default)]
    pub save: Vec<Save>,
    /// The step after a 2xx answer.
    #[serde(default)]
    pub next: Option<String>,
    /// The step after any other answer or a refused request; without it, the run fails.
    #[serde(default)]
    pub on_error: Option<String>,
}

/// Writes a contact field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFieldBlock {
    /// The field's name.
    pub field: String,
    /// The value, a template (written as text).
    pub value: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// Adds or removes a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBlock {
    /// The tag, a template.
    pub tag: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// Sets a run variable: to a template's value, or adds `increment` to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVariableBlock {
    /// The variable (templates read it as `vars.<name>`).
    pub name: String,
    /// The new value, a template.
    #[serde(default)]
    pub value: Option<String>,
    /// Added to the variable's number (0 when unset).
    #[serde(default)]
    pub increment: Option<i64>,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// How a condition's rules combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Every rule holds.
    #[default]
    All,
    /// At least one rule holds.
    Any,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Same text (or same number, when both sides are numbers).
    Equals,
    /// Not [`Operator::Equals`].
    NotEquals,
    /// The text holds `value`, or the list (tags) has it.
    Contains,
    /// The text starts with `value`.
    StartsWith,
    /// The text matches the regular expression `value` (Rust `regex` syntax).
    Matches,
    /// Absent, null, empty text or an empty list.
    IsEmpty,
    /// Not [`Operator::IsEmpty`].
    IsNotEmpty,
    /// The value is defined (a field the contact has, a variable that was set).
    Exists,
    /// Greater than, as numbers.
    Gt,
    /// Greater than or equal, as numbers.
    Gte,
    /// Less than, as numbers.
    Lt,
    /// Less than or equal, as numbers.
    Lte,
    /// Equals one of `values`.
    OneOf,
}

/// One rule: `left` compared with `value` (or `values`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What is tested: a variable path (`contact.fields.email`, `message.text`,
    /// `vars.count`, `contact.tags`, `steps.create.response.status`).
    pub left: String,
    /// The comparison.
    pub op: Operator,
    /// The other side, a template (not for `is_empty`, `is_not_empty`, `exists`,
    /// `one_of`).
    #[serde(default)]
    pub value: Option<String>,
    /// The candidates of `one_of`, templates.
    #[serde(default)]
    pub values: Vec<String>,
    /// Compare text without regard to case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// Chooses `then` or `else` by its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionBlock {
    /// How the rules combine.
    #[serde(default, rename = "match")]
    pub combine: Match,
    /// The rules.
    pub rules: Vec<Rule>,
    /// The step when they hold.
    #[serde(default)]
    pub then: Option<String>,
    /// The step when they do not.
    #[serde(default, rename = "else")]
    pub otherwise: Option<String>,
}

/// One branch of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// Its weight (a share of the sum of weights).
    pub weight: u32,
    /// The step it leads to.
    pub next: String,
}

/// A weighted random choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitBlock {
    /// The branches.
    pub branches: Vec<Branch>,
}

/// Sends an e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmailBlock {
    /// Recipients, templates.
    pub to: Vec<String>,
    /// Copy recipients, templates.
    #[serde(default)]
    pub cc: Vec<String>,
    /// The subject, a template.
    pub subject: String,
    /// The plain-text body, a template.
    pub text: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// Sends a message into the contact's conversation, through the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBlock {
    /// The message, a template.
    pub text: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// Sends a message to a platform user (not to the contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBlock {
    /// The recipient, a template: `owner` (the chat's owner, the default) or a platform
    /// user's id.
    #[serde(default = "owner")]
    pub to: String,
    /// The message, a template.
    pub text: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

fn owner() -> String {
    "owner".to_owned()
}

/// Runs a tenant's component action as a step of this run: the same contact (with the
/// run's writes so far), limits, deadline, secrets and quotas; its writes join the
/// run's journal when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBlock {
    /// The action's name; its active version runs.
    pub action: String,
    /// The action's input: a JSON object of these keys, each value a template.
    #[serde(default)]
    pub input: BTreeMap<String, String>,
    /// A variable that gets the action's output.
    #[serde(default)]
    pub save_as: Option<String>,
    /// The step to go to for each `branch` the action's outcome may name.
    #[serde(default)]
    pub branches: BTreeMap<String, String>,
    /// The next step when the outcome names no branch listed here.
    #[serde(default)]
    pub next: Option<String>,
    /// The step to go to when the action fails (not when a limit of the run is hit);
    /// without it, the action's failure ends the run.
    #[serde(default)]
    pub on_error: Option<String>,
}

/// Hands the conversation to a service of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffBlock {
    /// Where the conversation goes, a template: a department, a helpdesk, or the
    /// platform's name for its bot to hand it back.
    pub service: String,
    /// A note for whoever takes the conversation, a template (may be empty).
    #[serde(default)]
    pub text: String,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// Starts a workflow or component action of the tenant as its own run. The request is
/// an effect: it is queued in the transaction that commits this run's effects (at its
/// end, or at its next wait), exactly once, keyed `start_RUN-ID.N`; it commits nothing if
/// this run fails. The new run has its own budget, limits and retries, and is charged to
/// the `runs_started` quota (5 per run by default); runs started by runs started by … stop
/// at a depth of 8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerWorkflowBlock {
    /// The workflow or component action to start (its active version when this run
    /// commits).
    pub workflow: String,
    /// The contact the new run is about, a template; without it, this run's contact; a
    /// template that renders empty starts it about no contact.
    #[serde(default)]
    pub contact: Option<String>,
    /// The new run's input: a JSON object of these keys, each value a template.
    #[serde(default)]
    pub input: BTreeMap<String, String>,
    /// The next step.
    #[serde(default)]
    pub next: Option<String>,
}

/// The longest a run may wait for a reply: 30 days, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30 * 24 * 3600;

/// Suspends the run until the contact's next message or a timeout. What was journaled
/// before it commits first (a question sent just before reaches the contact before the
/// wait starts); the run's cursor, variables and counters are stored, and nothing of it
/// stays in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForReplyBlock {
    /// The variable the reply's text is saved to (`reply` by default); the reply also
    /// becomes `message` for the steps after.
    #[serde(default = "reply_variable")]
    pub save_as: String,
    /// How long to wait, in seconds: 1 to [`MAX_WAIT_SECONDS`], a day by default.
    #[serde(default = "one_day")]
    pub timeout_seconds: u64,
    /// The step after a reply.
    #[serde(default)]
    pub next: Option<String>,
    /// The step after a timeout (the variable is `null` then); without one, the run ends
    /// at a timeout.
    #[serde(default)]
    pub on_timeout: Option<String>,
}

fn reply_variable() -> String {
    "reply".to_owned()
}

const fn one_day() -> u64 {
    24 * 3600
}

/// Every template of a block, with the field it sits in and whether secrets may appear
/// there (only in an HTTP request's URL, query, headers, body and auth).
pub(crate) fn templates(block: &Block) -> Vec<(String, &str, Context)> {
    let mut out = Vec::new();
    match block {
        Block::Http(http) => {
            out.push(("url".to_owned(), http.url.as_str(), Context::Url));
            for (i, pair) in http.query.iter().enumerate() {
                out.push((
                    format!("query[{i}].value"),
                    pair.value.as_str(),
                    Context::Secret,
                ));
            }
            for (i, pair) in http.headers.iter().enumerate() {
                out.push((
                    format!("headers[{i}].value"),
                    pair.value.as_str(),
                    Context::Secret,
                ));
            }
            match &http.body {
                Some(Body::Json(pairs) | Body::Form(pairs)) => {
                    for (i, pair) in pairs.iter().enumerate() {
                        out.push((
                            format!("body[{i}].value"),
                            pair.value.as_str(),
                            Context::Secret,
                        ));
                    }
                }
                Some(Body::Raw { text, content_type }) => {
                    let context = if is_json(content_type) {
                        Context::Json
                    } else {
                        Context::Secret
                    };
                    out.push(("body.raw.text".to_owned(), text.as_str(), context));
                }
                None => {}
            }
            if let Some(Auth::Basic { username, .. }) = &http.auth {
                out.push((
                    "auth.basic.username".to_owned(),
                    username.as_str(),
                    Context::Secret,
                ));
            }
        }
        Block::SetField(set) => out.push(("value".to_owned(), set.value.as_str(), Context::Text)),
        Block::Tag(tag) | Block::Untag(tag) => {
            out.push(("tag".to_owned(), tag.tag.as_str(), Context::Text));
        }
        Block::SetVariable(set) => {
            if let Some(value) = &set.value {
                out.push(("value".to_owned(), value.as_str(), Context::Text));
            }
        }
        Block::Condition(condition) => {
            for (i, rule) in condition.rules.iter().enumerate() {
                if let Some(value) = &rule.value {
                    out.push((format!("rules[{i}].value"), value.as_str(), Context::Text));
                }
                for (j, value) in rule.values.iter().enumerate() {
                    out.push((
                        format!("rules[{i}].values[{j}]"),
                        value.as_str(),
                        Context::Text,
                    ));
                }
            }
        }
        Block::Split(_) | Block::WaitForReply(_) => {}
        Block::SendEmail(email) => {
            for (i, to) in email.to.iter().enumerate() {
                out.push((format!("to[{i}]"), to.as_str(), Context::Text));
            }
            for (i, cc) in email.cc.iter().enumerate() {
                out.push((format!("cc[{i}]"), cc.as_str(), Context::Text));
            }
            out.push(("subject".to_owned(), email.subject.as_str(), Context::Text));
            out.push(("text".to_owned(), email.text.as_str(), Context::Text));
        }
        Block::Reply(reply) => out.push(("text".to_owned(), reply.text.as_str(), Context::Text)),
        Block::Notify(notify) => {
            out.push(("to".to_owned(), notify.to.as_str(), Context::Text));
            out.push(("text".to_owned(), notify.text.as_str(), Context::Text));
        }
        Block::Handoff(handoff) => {
            out.push((
                "service".to_owned(),
                handoff.service.as_str(),
                Context::Text,
            ));
            out.push(("text".to_owned(), handoff.text.as_str(), Context::Text));
        }
        Block::Action(action) => {
            for (key, value) in &action.input {
                out.push((format!("input.{key}"), value.as_str(), Context::Text));
            }
        }
        Block::TriggerWorkflow(trigger) => {
            if let Some(contact) = &trigger.contact {
                out.push(("contact".to_owned(), contact.as_str(), Context::Text));
            }
            for (key, value) in &trigger.input {
                out.push((format!("input.{key}"), value.as_str(), Context::Text));
            }
        }
    }
    out
}

/// Where a template's output goes, which decides its escaping and whether it may read
/// secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// Plain text (fields, tags, e-mails, variables): no secrets.
    Text,
    /// A URL: interpolated values are percent-encoded; secrets allowed.
    Url,
    /// A header, query or body pair value: written as is (the body builder or the
    /// form encoder escapes it); secrets allowed.
    Secret,
    /// A raw JSON body: values written as JSON; secrets allowed.
    Json,
}

impl Context {
    /// Whether `secrets.*` may be read here.
    pub(crate) fn allows_secrets(self) -> bool {
        !matches!(self, Self::Text)
    }
}

/// Whether `content_type` is JSON (`application/json`, `application/*+json`).
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Variables a step writes (for the template check of `vars.*`).
pub(crate) fn writes_vars(block: &Block) -> Vec<&str> {
    match block {
        Block::SetVariable(set) => vec![set.name.as_str()],
        Block::Action(action) => action.save_as.as_deref().into_iter().collect(),
        Block::WaitForReply(wait) => vec![wait.save_as.as_str()],
        Block::Http(http) => http
            .save
            .iter()
            .filter_map(|save| save.var.as_deref())
            .collect(),
        _ => Vec::new(),
    }
}

/// Sample inputs a test supplies per step: HTTP answers instead of live requests.
pub type Fixtures = BTreeMap<String, crate::interpret::FixtureResponse>;

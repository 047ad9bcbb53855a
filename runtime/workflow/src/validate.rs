//! Save-time validation: every problem at once, each with its step and field.
//!
//! - ids are identifiers and unique; `start` and every port name an existing step;
//! - every step is reachable from `start`;
//! - every cycle has a declared loop limit (`max_visits` on one of its steps);
//! - every template parses and reads only what exists: `contact.id|fields|tags`,
//!   `message.text|channel`, `vars.<a variable some step sets>`, `steps.<an HTTP
//!   step>.response…`, and `secrets.*` only in an HTTP request;
//! - each block's own rules (a regular expression that compiles, weights that add up, a
//!   recipient, one target per saved value).

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{Auth, Block, Body, Operator, Workflow, templates, writes_vars};
use crate::path::{self, Segment};
use crate::problem::Problem;
use crate::template::{ROOTS, Templates};

/// The largest step budget and loop limit a definition may set.
pub(crate) const MAX_BUDGET: u32 = 1_000;

/// The longest step id or variable name.
pub(crate) const MAX_IDENT_BYTES: usize = 64;

/// Every problem with `workflow`; empty when it may be saved.
#[must_use]
pub fn validate(workflow: &Workflow, templates: &Templates) -> Vec<Problem> {
    let mut problems = Vec::new();
    if crate::definition::RESERVED_NAMES.contains(&workflow.name.as_str()) {
        problems.push(Problem::document(
            "name",
            format!(
                "`{name}` is reserved: /v1/workflows/{name} is the API's own route; choose another name",
                name = workflow.name
            ),
        ));
    }
    let mut ids = BTreeSet::new();
    for step in &workflow.steps {
        if let Err(why) = check_ident(&step.id) {
            problems.push(Problem::step(&step.id, "id", why));
        }
        if !ids.insert(step.id.as_str()) {
            problems.push(Problem::step(&step.id, "id", "is used by another step"));
        }
    }
    for (i, input) in workflow.inputs.iter().enumerate() {
        if let Err(why) = check_ident(input) {
            problems.push(Problem::document(&format!("inputs[{i}]"), why));
        }
    }
    for (field, value) in [
        ("budget.max_steps", workflow.budget.max_steps),
        ("budget.max_visits", workflow.budget.max_visits),
    ] {
        if !(1..=MAX_BUDGET).contains(&value) {
            problems.push(Problem::document(
                field,
                format!("{value} is not between 1 and {MAX_BUDGET}"),
            ));
        }
    }
    for step in &workflow.steps {
        if step.max_visits.is_some_and(|limit| limit > MAX_BUDGET) {
            problems.push(Problem::step(
                &step.id,
                "max_visits",
                format!("is over {MAX_BUDGET}"),
            ));
        }
    }
    if workflow.step(&workflow.start).is_none() {
        problems.push(Problem::document(
            "start",
            format!("names no step: `{}`", workflow.start),
        ));
    }
    for step in &workflow.steps {
        for (port, target) in step.ports() {
            if workflow.step(target).is_none() {
                problems.push(Problem::step(
                    &step.id,
                    port,
                    format!("leads to `{target}`, which is not a step"),
                ));
            }
        }
    }
    if workflow.step(&workflow.start).is_some() {
        let reached = reachable(workflow);
        for step in &workflow.steps {
            if !reached.contains(step.id.as_str()) {
                problems.push(Problem::step(
                    &step.id,
                    "",
                    format!("cannot be reached from `{}`", workflow.start),
                ));
            }
        }
    }
    problems.extend(unbounded_cycles(workflow));
    problems.extend(check_templates(workflow, templates));
    for step in &workflow.steps {
        check_block(&step.id, &step.block, &mut problems);
    }
    problems
}

/// An identifier: ASCII letters, digits and `_`, not starting with a digit, at most
/// [`MAX_IDENT_BYTES`].
fn check_ident(text: &str) -> Result<(), String> {
    let mut bytes = text.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "`{text}` is not an identifier (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if text.len() > MAX_IDENT_BYTES {
        return Err(format!("is {} bytes, over {MAX_IDENT_BYTES}", text.len()));
    }
    Ok(())
}

/// A templated URL's literal start must fix its scheme, host and port: it runs up to
/// the first template and holds `http://` or `https://`, a host, and then the start of
/// the path, query or fragment. A value can then only add to the path, query or
/// fragment (and is percent-encoded there), never name another host — not by adding to
/// the host (`.evil.example`), by userinfo (`user@`), or by a port.
fn check_url_prefix(url: &str) -> Result<(), String> {
    let literal_end = [url.find("{{"), url.find("{%")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(url.len());
    let literal = url.get(..literal_end).unwrap_or_default();
    let rest = literal
        .strip_prefix("https://")
        .or_else(|| literal.strip_prefix("http://"))
        .ok_or_else(|| "must start with `http://` or `https://`".to_owned())?;
    let authority_end = rest.find(['/', '?', '#']).ok_or_else(|| {
        "the host must be written out, followed by `/`, `?` or `#`, before any template \
         (a template may not choose or extend the host)"
            .to_owned()
    })?;
    let origin = literal
        .get(..literal.len() - rest.len() + authority_end)
        .unwrap_or_default();
    match url::Url::parse(origin) {
        Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            Err(credentials_in_url())
        }
        Ok(parsed) if parsed.host_str().is_some_and(|host| !host.is_empty()) => Ok(()),
        Ok(_) => Err(format!("`{origin}` has no host")),
        Err(error) => Err(format!("`{origin}` is not a URL: {error}")),
    }
}

fn credentials_in_url() -> String {
    "holds a user name or password: credentials come from secrets through `auth`, never the definition"
        .to_owned()
}

fn reachable(workflow: &Workflow) -> BTreeSet<&str> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![workflow.start.as_str()];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(step) = workflow.step(id) {
            stack.extend(step.ports().into_iter().map(|(_, target)| target));
        }
    }
    seen
}

/// Cycles (strongly connected components with an edge inside) none of whose steps
/// declares `max_visits` (Tarjan's algorithm, iterative).
/// The graph by step index: each step's targets.
fn edges(workflow: &Workflow) -> Vec<Vec<usize>> {
    let index_of: BTreeMap<&str, usize> = workflow
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| (step.id.as_str(), i))
        .collect();
    workflow
        .steps
        .iter()
        .map(|step| {
            step.ports()
                .into_iter()
                .filter_map(|(_, target)| index_of.get(target).copied())
                .collect()
        })
        .collect()
}

/// The loops: strongly connected components with an edge inside.
fn loops(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    strongly_connected(edges)
        .into_iter()
        .filter(|component| {
            component.len() > 1
                || component.first().is_some_and(|&only| {
                    edges
                        .get(only)
                        .is_some_and(|targets| targets.contains(&only))
                })
        })
        .collect()
}

/// How often each step may run in one run: its own `max_visits`; else, inside a loop,
/// the largest `max_visits` a step of that loop declares (a loop's limit covers all its
/// steps); else the budget's `max_visits`.
#[must_use]
pub fn visit_limits(workflow: &Workflow) -> BTreeMap<String, u32> {
    let mut limits: BTreeMap<String, u32> = workflow
        .steps
        .iter()
        .map(|step| {
            (
                step.id.clone(),
                step.max_visits.unwrap_or(workflow.budget.max_visits),
            )
        })
        .collect();
    for component in loops(&edges(workflow)) {
        let steps: Vec<_> = component
            .iter()
            .filter_map(|&i| workflow.steps.get(i))
            .collect();
        let Some(declared) = steps.iter().filter_map(|step| step.max_visits).max() else {
            continue;
        };
        for step in steps {
            if step.max_visits.is_none() {
                limits.insert(step.id.clone(), declared);
            }
        }
    }
    limits
}

fn unbounded_cycles(workflow: &Workflow) -> Vec<Problem> {
    let edges = edges(workflow);
    let mut problems = Vec::new();
    for component in loops(&edges) {
        let steps: Vec<_> = component
            .iter()
            .filter_map(|&i| workflow.steps.get(i))
            .collect();
        if steps.iter().any(|step| step.max_visits.is_some()) {
            continue;
        }
        let names: Vec<&str> = steps.iter().map(|step| step.id.as_str()).collect();
        if let Some(first) = names.first() {
            problems.push(Problem::step(
                first,
                "max_visits",
                format!(
                    "steps {} form a loop with no limit: set `max_visits` on one of them",
                    names.join(", ")
                ),
            ));
        }
    }
    problems
}

/// Tarjan's strongly connected components over `edges` (adjacency by index).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut out = Vec::new();
    for root in 0..n {
        if index.get(root) != Some(&usize::MAX) {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index.get(node) == Some(&usize::MAX) {
                set(&mut index, node, next);
                set(&mut low, node, next);
                next += 1;
                stack.push(node);
                set(&mut on_stack, node, true);
            }
            let targets = edges.get(node).map_or(&[][..], Vec::as_slice);
            if let Some(&target) = targets.get(*edge) {
                *edge += 1;
                if index.get(target) == Some(&usize::MAX) {
                    work.push((target, 0));
                } else if on_stack.get(target) == Some(&true) {
                    let low_node = get(&low, node).min(get(&index, target));
                    set(&mut low, node, low_node);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                let low_parent = get(&low, parent).min(get(&low, node));
                set(&mut low, parent, low_parent);
            }
            if get(&low, node) == get(&index, node) {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    set(&mut on_stack, member, false);
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

fn get(values: &[usize], i: usize) -> usize {
    values.get(i).copied().unwrap_or(usize::MAX)
}

fn set<T>(values: &mut [T], i: usize, value: T) {
    if let Some(slot) = values.get_mut(i) {
        *slot = value;
    }
}

fn check_templates(workflow: &Workflow, engine: &Templates) -> Vec<Problem> {
    let vars: BTreeSet<&str> = workflow
        .steps
        .iter()
        .flat_map(|step| writes_vars(&step.block))
        .chain(workflow.inputs.iter().map(String::as_str))
        .collect();
    let http_steps: BTreeSet<&str> = workflow
        .steps
        .iter()
        .filter(|step| matches!(step.block, Block::Http(_)))
        .map(|step| step.id.as_str())
        .collect();
    let known = Known {
        vars: &vars,
        http_steps: &http_steps,
    };
    let mut problems = Vec::new();
    for step in &workflow.steps {
        for (field, source, context) in templates(&step.block) {
            match engine.variables(source) {
                Err(why) => problems.push(Problem::step(&step.id, &field, why)),
                Ok(names) => {
                    for name in names {
                        if let Err(why) = known.check(&name, context.allows_secrets()) {
                            problems.push(Problem::step(&step.id, &field, why));
                        }
                    }
                }
            }
        }
        if let Block::Condition(condition) = &step.block {
            for (i, rule) in condition.rules.iter().enumerate() {
                let field = format!("rules[{i}].left");
                match path::parse(&rule.left) {
                    Err(why) => problems.push(Problem::step(&step.id, &field, why)),
                    Ok(segments) => {
                        let dotted = dotted(&segments);
                        if let Err(why) = known.check(&dotted, false) {
                            problems.push(Problem::step(&step.id, &field, why));
                        }
                    }
                }
            }
        }
    }
    problems
}

/// Names joined with dots (list indexes as numbers), for the root check.
fn dotted(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Key(key) => key.clone(),
            Segment::Index(index) => index.to_string(),
            Segment::Append => String::new(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

struct Known<'a> {
    vars: &'a BTreeSet<&'a str>,
    http_steps: &'a BTreeSet<&'a str>,
}

impl Known<'_> {
    fn check(&self, name: &str, secrets_allowed: bool) -> Result<(), String> {
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or_default();
        let second = parts.next();
        match (root, second) {
            ("contact", None | Some("id" | "fields" | "tags")) => Ok(()),
            ("contact", Some(other)) => Err(format!(
                "`{name}`: a contact has `id`, `fields` and `tags`, not `{other}`"
            )),
            ("message", None | Some("text" | "channel")) => Ok(()),
            ("message", Some(other)) => Err(format!(
                "`{name}`: a message has `text` and `channel`, not `{other}`"
            )),
            ("vars", None) => Ok(()),
            ("vars", Some(var)) if self.vars.contains(var) => Ok(()),
            ("vars", Some(var)) => Err(format!(
                "`{name}`: no step sets the variable `{var}` (set_variable, an HTTP step's save, an action's or a wait's save_as) and it is not one of the workflow's `inputs`"
            )),
            ("steps", None) => Ok(()),
            ("steps", Some(step)) if !self.http_steps.contains(step) => Err(format!(
                "`{name}`: `{step}` is not an HTTP step of this workflow"
            )),
            ("steps", Some(_)) => match parts.next() {
                None | Some("response") => Ok(()),
                Some(other) => Err(format!(
                    "`{name}`: a step's output is `response` (status, headers, body), not `{other}`"
                )),
            },
            ("secrets", _) if !secrets_allowed => Err(format!(
                "`{name}`: secrets may be used only in an HTTP request's URL, query, headers, body and auth"
            )),
            ("secrets", None) => Err("name the secret: `secrets.NAME`".to_owned()),
            ("secrets", Some(_)) => Ok(()),
            (other, _) => Err(format!(
                "`{name}`: unknown variable `{other}` (templates read {})",
                ROOTS.join(", ")
            )),
        }
    }
}

fn check_block(id: &str, block: &Block, problems: &mut Vec<Problem>) {
    let mut problem = |field: &str, why: String| problems.push(Problem::step(id, field, why));
    match block {
        Block::Http(http) => {
            if !http.url.contains("{{") && !http.url.contains("{%") {
                match url::Url::parse(&http.url) {
                    Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
                        problem("url", credentials_in_url());
                    }
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    Ok(parsed) => problem(
                        "url",
                        format!("scheme `{}` is not http or https", parsed.scheme()),
                    ),
                    Err(error) => problem("url", format!("is not a URL: {error}")),
                }
            } else if let Err(why) = check_url_prefix(&http.url) {
                problem("url", why);
            }
            for (i, pair) in http.headers.iter().enumerate() {
                if http::HeaderName::from_bytes(pair.key.as_bytes()).is_err() {
                    problem(
                        &format!("headers[{i}].key"),
                        format!("`{}` is not a header name", pair.key),
                    );
                }
            }
            if let Some(Body::Json(pairs)) = &http.body {
                // Keys alone decide the shape: every key that cannot be placed is listed.
                for (index, why) in path::key_problems(pairs.iter().map(|pair| pair.key.as_str())) {
                    problem(&format!("body.json[{index}].key"), why);
                }
            }
            match &http.auth {
                Some(Auth::Bearer { secret } | Auth::ApiKey { secret, .. })
                    if secret.is_empty() =>
                {
                    problem("auth", "names no secret".to_owned());
                }
                Some(Auth::Basic {
                    password_secret, ..
                }) if password_secret.is_empty() => {
                    problem("auth", "names no secret".to_owned());
                }
                Some(Auth::ApiKey { header, .. })
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() =>
                {
                    problem(
                        "auth.api_key.header",
                        format!("`{header}` is not a header name"),
                    );
                }
                Some(Auth::OAuth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    ..
                }) => {
                    // RFC 6749 §3.2: the token endpoint takes the client's secret, so
                    // only over TLS; plain HTTP only to this host (tests, a local server).
                    let loopback = |url: &url::Url| match url.host() {
                        Some(url::Host::Domain(name)) => name == "localhost",
                        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                        None => false,
                    };
                    match url::Url::parse(token_url) {
                        _ if token_url.len() > 2048 => {
                            problem("auth.oauth2.token_url", "is over 2 048 bytes".to_owned())
                        }
                        Ok(url) if url.scheme() == "https" => {}
                        Ok(url) if url.scheme() == "http" && loopback(&url) => {}
                        _ => problem(
                            "auth.oauth2.token_url",
                            format!(
                                "`{token_url}` is not an absolute https URL (RFC 6749 §3.2; plain http only to a loopback address)"
                            ),
                        ),
                    }
                    if client_id.trim().is_empty() || client_id.len() > 256 {
                        problem("auth.oauth2.client_id", "must be 1 to 256 bytes".to_owned());
                    }
                    if let Some(scope) = scope
                        && scope.len() > 1024
                    {
                        problem("auth.oauth2.scope", "is over 1 024 bytes".to_owned());
                    }
                    if client_secret.is_empty() {
                        problem("auth", "names no secret".to_owned());
                    }
                }
                _ => {}
            }
            for (i, save) in http.save.iter().enumerate() {
                let field = format!("save[{i}]");
                if let Err(why) = path::parse(&save.path) {
                    problem(&format!("{field}.path"), why);
                }
                match (&save.var, &save.field) {
                    (Some(var), None) => {
                        if let Err(why) = check_ident(var) {
                            problem(&format!("{field}.var"), why);
                        }
                    }
                    (None, Some(name)) if !name.is_empty() => {}
                    _ => problem(&field, "give exactly one of `var` and `field`".to_owned()),
                }
            }
        }
        Block::SetField(set) => {
            if set.field.is_empty() {
                problem("field", "is empty".to_owned());
            }
        }
        Block::Tag(tag) | Block::Untag(tag) => {
            if tag.tag.trim().is_empty() {
                problem("tag", "is empty".to_owned());
            }
        }
        Block::SetVariable(set) => {
            if let Err(why) = check_ident(&set.name) {
                problem("name", why);
            }
            if set.value.is_some() == set.increment.is_some() {
                problem(
                    "value",
                    "give exactly one of `value` and `increment`".to_owned(),
                );
            }
        }
        Block::Condition(condition) => {
            if condition.rules.is_empty() {
                problem("rules", "a condition needs at least one rule".to_owned());
            }
            for (i, rule) in condition.rules.iter().enumerate() {
                let field = format!("rules[{i}]");
                let needs_value = !matches!(
                    rule.op,
                    Operator::IsEmpty | Operator::IsNotEmpty | Operator::Exists | Operator::OneOf
                );
                if needs_value && rule.value.is_none() {
                    problem(
                        &format!("{field}.value"),
                        format!("`{:?}` needs a value", rule.op).to_lowercase(),
                    );
                }
                if rule.op == Operator::OneOf && rule.values.is_empty() {
                    problem(
                        &format!("{field}.values"),
                        "`one_of` needs at least one value".to_owned(),
                    );
                }
                if rule.op == Operator::Matches
                    && let Some(pattern) = &rule.value
                    && !pattern.contains("{{")
                    && !pattern.contains("{%")
                    && let Err(error) = regex::RegexBuilder::new(pattern)
                        .size_limit(crate::condition::REGEX_SIZE_LIMIT)
                        .build()
                {
                    problem(
                        &format!("{field}.value"),
                        format!("not a regular expression: {error}"),
                    );
                }
            }
        }
        Block::Split(split) => {
            if split.branches.is_empty() {
                problem("branches", "a split needs at least one branch".to_owned());
            }
            let total: u64 = split.branches.iter().map(|b| u64::from(b.weight)).sum();
            if total == 0 {
                problem("branches", "the weights add up to 0".to_owned());
            }
        }
        Block::SendEmail(email) => {
            if email.to.is_empty() {
                problem("to", "an e-mail needs at least one recipient".to_owned());
            }
            if email.subject.trim().is_empty() {
                problem("subject", "is empty".to_owned());
            }
        }
        Block::Reply(reply) => {
            if reply.text.trim().is_empty() {
                problem("text", "a reply needs a text".to_owned());
            }
            check_literal_text(&reply.text, &mut problem);
        }
        Block::Notify(notify) => {
            if notify.to.trim().is_empty() {
                problem("to", "a notification needs a recipient".to_owned());
            }
            if notify.text.trim().is_empty() {
                problem("text", "a notification needs a text".to_owned());
            }
            check_literal_target("to", &notify.to, &mut problem);
            check_literal_text(&notify.text, &mut problem);
        }
        Block::Handoff(handoff) => {
            if handoff.service.trim().is_empty() {
                problem(
                    "service",
                    "a handoff names the service it goes to".to_owned(),
                );
            }
            check_literal_target("service", &handoff.service, &mut problem);
            check_literal_text(&handoff.text, &mut problem);
        }
        Block::WaitForReply(wait) => {
            if let Err(why) = check_ident(&wait.save_as) {
                problem("save_as", why);
            }
            if !(1..=crate::definition::MAX_WAIT_SECONDS).contains(&wait.timeout_seconds) {
                problem(
                    "timeout_seconds",
                    format!(
                        "{} is not from 1 to {} (30 days)",
                        wait.timeout_seconds,
                        crate::definition::MAX_WAIT_SECONDS
                    ),
                );
            }
        }
        Block::Action(action) => {
            if fluxo_core::ActionName::parse(&action.action).is_err() {
                problem(
                    "action",
                    format!(
                        "`{}` is not an action name: {}",
                        action.action,
                        fluxo_core::ids::NAME_RULE
                    ),
                );
            }
            if let Some(var) = &action.save_as
                && let Err(why) = check_ident(var)
            {
                problem("save_as", why);
            }
            check_input_keys(&action.input, &mut problem);
        }
        Block::TriggerWorkflow(trigger) => {
            if fluxo_core::ActionName::parse(&trigger.workflow).is_err() {
                problem(
                    "workflow",
                    format!(
                        "`{}` is not a workflow name: {}",
                        trigger.workflow,
                        fluxo_core::ids::NAME_RULE
                    ),
                );
            }
            check_input_keys(&trigger.input, &mut problem);
        }
    }
}

fn check_input_keys(
    input: &std::collections::BTreeMap<String, String>,
    problem: &mut impl FnMut(&str, String),
) {
    for key in input.keys() {
        if key.is_empty() || key.len() > MAX_IDENT_BYTES {
            problem(
                "input",
                format!("key `{key}` must be 1 to {MAX_IDENT_BYTES} bytes"),
            );
        }
    }
}

/// A message text written without templates that could never be sent (longer than the
/// message capability allows) is refused now, not at every run.
fn check_literal_text(text: &str, problem: &mut impl FnMut(&str, String)) {
    let chars = text.chars().count();
    if !text.contains("{{") && chars > fluxo_sandbox::context::MAX_TEXT_CHARS {
        problem(
            "text",
            format!(
                "{chars} characters, more than the {} a message may have",
                fluxo_sandbox::context::MAX_TEXT_CHARS
            ),
        );
    }
}

/// A recipient or service written without templates: the rule the message capability
/// applies at run time.
fn check_literal_target(field: &str, value: &str, problem: &mut impl FnMut(&str, String)) {
    let max = fluxo_sandbox::context::MAX_TARGET_BYTES;
    if !value.contains("{{") && (value.len() > max || value.chars().any(char::is_control)) {
        problem(
            field,
            format!("must be at most {max} bytes without control characters"),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "tests fail loudly"
    )]

    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Workflow::parse(text) {
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
            Ok(workflow) => validate(&workflow, &Templates::new())
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    #[test]
    fn a_good_workflow_has_no_problem() {
        let text = r#"{"name": "ok", "steps": [
            {"id": "call", "type": "http", "method": "POST", "url": "https://crm.example/deals?x={{contact.fields.name}}",
             "headers": [{"key": "authorization", "value": "Bearer {{secrets.CRM}}"}],
             "body": {"json": [{"key": "deal[name]", "value": "{{contact.fields.name}}"}]},
             "save": [{"path": "{data[url]}", "var": "link"}], "next": "count"},
            {"id": "count", "type": "set_variable", "name": "tries", "increment": 1, "next": "check", "max_visits": 3},
            {"id": "check", "type": "condition", "rules": [{"left": "vars.tries", "op": "lt", "value": "3"}],
             "then": "count", "else": "done"},
            {"id": "done", "type": "set_field", "field": "link", "value": "{{vars.link}} {{steps.call.response.status}}"}
        ]}"#;
        assert_eq!(problems(text), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_listed_with_its_step_and_field() {
        let text = r#"{"name": "bad", "start": "a", "steps": [
            {"id": "a", "type": "http", "method": "POST", "url": "https://x.example/{{contact.nickname}}", "next": "nowhere"},
            {"id": "b", "type": "set_field", "field": "f", "value": "{{secrets.TOKEN}}"},
            {"id": "c", "type": "tag", "tag": "{{ vars.never }}", "next": "d"},
            {"id": "d", "type": "untag", "tag": "x", "next": "c"},
            {"id": "e", "type": "condition", "rules": [{"left": "message.text", "op": "matches", "value": "("}], "then": "e"},
            {"id": "f", "type": "set_field", "field": "f", "value": "{{ contact.fields.name "},
            {"id": "9g", "type": "split", "branches": [{"weight": 0, "next": "a"}]}
        ]}"#;
        let found = problems(text);
        let expect = [
            "step `a`, next: leads to `nowhere`",
            "step `a`, url: `contact.nickname`",
            "step `b`: cannot be reached from `a`",
            "step `b`, value: `secrets.TOKEN`: secrets may be used only",
            "step `c`, tag: `vars.never`: no step sets",
            "max_visits: steps ",
            "step `e`, rules[0].value: not a regular expression",
            "step `f`, value: syntax error",
            "step `9g`, id: `9g` is not an identifier",
            "step `9g`, branches: the weights add up to 0",
        ];
        for needle in expect {
            assert!(
                found.iter().any(|problem| problem.contains(needle)),
                "missing {needle:?} in {found:#?}"
            );
        }
        // c↔d and e→e are the two unbounded loops.
        assert_eq!(
            found.iter().filter(|p| p.contains("form a loop")).count(),
            2,
            "{found:#?}"
        );
    }

    #[test]
    fn every_clashing_body_key_and_a_reserved_name_are_listed() {
        let text = r#"{"name": "test", "steps": [
            {"id": "a", "type": "http", "method": "POST", "url": "https://x.example/",
             "body": {"json": [{"key": "deal", "value": "1"}, {"key": "deal[name]", "value": "2"},
                               {"key": "items[0]", "value": "3"}, {"key": "items[x]", "value": "4"},
                               {"key": "ok[name]", "value": "5"}]}}
        ]}"#;
        let found = problems(text);
        for needle in [
            "name: `test` is reserved",
            "step `a`, body.json[1].key: key `deal[name]` contradicts",
            "step `a`, body.json[3].key: key `items[x]` contradicts",
        ] {
            assert!(
                found.iter().any(|problem| problem.contains(needle)),
                "missing {needle:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn a_template_cannot_choose_or_extend_the_host() {
        for url in [
            "https://{{contact.fields.host}}/x",
            "https://api.example{{contact.fields.suffix}}",
            "https://{{contact.fields.user}}@api.example/x",
            "https://api.example:{{contact.fields.port}}/x",
            "ftp://api.example/{{contact.fields.x}}",
            "{{contact.fields.url}}",
            "https:///{{contact.fields.x}}",
            "https://user:pw@api.example/{{contact.fields.x}}",
            "https://user:pw@api.example/x",
        ] {
            let text = format!(
                r#"{{"name": "u", "steps": [{{"id": "a", "type": "http", "method": "GET", "url": "{url}"}}]}}"#
            );
            let found = problems(&text);
            assert!(
                found.iter().any(|p| p.starts_with("step `a`, url:")),
                "{url} passed: {found:?}"
            );
        }
        for url in [
            "https://api.example/{{contact.fields.x}}",
            "https://api.example:8443/v1?q={{contact.fields.x}}",
            "http://127.0.0.1:9/#{{contact.fields.x}}",
        ] {
            let text = format!(
                r#"{{"name": "u", "steps": [{{"id": "a", "type": "http", "method": "GET", "url": "{url}"}}]}}"#
            );
            assert_eq!(problems(&text), Vec::<String>::new(), "{url}");
        }
    }

    #[test]
    fn malformed_steps_are_all_reported_not_just_the_first() {
        let text = r#"{"name": "bad", "steps": [
            {"id": "a", "type": "http", "url": "https://x.example"},
            {"id": "b", "type": "teleport"},
            {"id": "c", "type": "trigger_workflow"},
            {"type": "tag", "tag": "x"},
            {"id": "e", "type": "tag", "tag": "x", "colour": "red"}
        ]}"#;
        let found = problems(text);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0].contains("step `a`") && found[0].contains("method"),
            "{}",
            found[0]
        );
        assert!(
            found[1].contains("step `b`") && found[1].contains("teleport"),
            "{}",
            found[1]
        );
        assert!(
            found[2].contains("step `c`") && found[2].contains("missing field `workflow`"),
            "{}",
            found[2]
        );
        assert!(found[3].contains("steps[3].id: is missing"), "{}", found[3]);
        assert!(found[4].contains("colour"), "{}", found[4]);
    }
}

//! Workflows run through a real [`RunContext`] against a loopback upstream: what reaches
//! the wire, what is journaled, what the trace shows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::sync::{Arc, Mutex};

use fluxo_core::{ActionName, Contact, Effect, ErrorKind, Limits, Message, TenantId};
use fluxo_egress::{AllowRule, Egress, HttpPolicy};
use fluxo_sandbox::platform::MemoryState;
use fluxo_sandbox::{Capabilities, RunContext, RunMeta, Secrets};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{HttpMode, Interpreter, Start, Templates, check};

type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// A loopback HTTP server: `handler` gets the raw request and gives status and JSON
/// body; every raw request is kept.
async fn upstream(handler: Handler) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 << 10];
                let mut read = 0;
                let text = loop {
                    let n = stream.read(&mut buffer[read..]).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read += n;
                    let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if read >= end + 4 + length {
                            break text;
                        }
                    }
                };
                log.lock().unwrap().push(text.clone());
                let (status, body) = handler(&text);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn context(port: u16, contact: Contact) -> RunContext {
    let policy = HttpPolicy {
        allow: vec![AllowRule {
            port: Some(port),
            ..AllowRule::host("127.0.0.1")
        }],
        allow_private_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
        ..HttpPolicy::default()
    };
    let egress = Egress::new(&policy, Arc::new(LoopbackOnly)).unwrap();
    let capabilities = Arc::new(Capabilities {
        egress: Arc::new(egress),
        state: Arc::new(MemoryState::new()),
    });
    let meta = RunMeta::new(
        TenantId::parse("acme").unwrap(),
        ActionName::parse("lead-sync").unwrap(),
    );
    let secrets = Secrets::new([("CRM_TOKEN".to_owned(), "crm-token-7f3a9".to_owned())].into());
    RunContext::new(meta, Limits::default(), capabilities)
        .with_contact(contact)
        .with_secrets(secrets)
}

/// Resolves nothing: every test URL names 127.0.0.1.
struct LoopbackOnly;

impl fluxo_egress::Resolve for LoopbackOnly {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> fluxo_egress::BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
        Box::pin(async move { Err(std::io::Error::other(format!("no DNS in tests: {host}"))) })
    }
}

fn ana() -> Contact {
    let mut contact = Contact::with_id("c1".parse().unwrap());
    contact.fields.insert("name".into(), "Ana".into());
    contact
        .fields
        .insert("email".into(), "ana@example.com".into());
    contact
}

fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn never() -> f64 {
    0.0
}

/// Runs `workflow` in `ctx` (splits draw 0).
async fn run_in(
    workflow: &crate::Workflow,
    ctx: &mut RunContext,
    start: Start,
    mode: &HttpMode,
) -> crate::WorkflowRun {
    Interpreter::new()
        .run(workflow, ctx, start, mode, &mut never)
        .await
}

/// Fixtures answering `step` with `status` and `body`.
fn fixture(step: &str, status: u16, body: Value) -> crate::Fixtures {
    [(
        step.to_owned(),
        crate::FixtureResponse {
            status,
            headers: Default::default(),
            body,
        },
    )]
    .into()
}

#[tokio::test]
async fn the_lead_sync_calls_the_crm_tags_sets_a_field_and_mails_an_admin() {
    let (port, seen) = upstream(Arc::new(|_| {
        (
            201,
            r#"{"data":{"id":"deal-9","url":"https://crm.example/d/9"}}"#.to_owned(),
        )
    }))
    .await;
    let text = format!(
        r#"{{"name": "lead-sync", "steps": [
        {{"id": "create_deal", "type": "http", "method": "POST",
          "url": "http://127.0.0.1:{port}/api/deals?source={{{{message.text}}}}",
          "auth": {{"bearer": {{"secret": "CRM_TOKEN"}}}},
          "body": {{"json": [{{"key": "deal[name]", "value": "{{{{contact.fields.name}}}}"}},
                            {{"key": "contacts[0][name]", "value": "{{{{contact.fields.name}}}}"}}]}},
          "save": [{{"path": "{{data[url]}}", "var": "deal_url"}}, {{"path": "data.id", "field": "crm_deal"}}],
          "next": "has_email"}},
        {{"id": "has_email", "type": "condition", "rules": [{{"left": "contact.fields.email", "op": "is_not_empty"}}],
          "then": "tag", "else": "tag"}},
        {{"id": "tag", "type": "tag", "tag": "onboarded", "next": "mail"}},
        {{"id": "mail", "type": "send_email", "to": ["admin@acme.example"],
          "subject": "New lead: {{{{contact.fields.name}}}}", "text": "Deal {{{{vars.deal_url}}}}"}}
    ]}}"#
    );
    let templates = Templates::new();
    let workflow = check(&text, &templates).unwrap();
    let mut ctx = context(port, ana());
    let start = Start {
        message: Some(Message {
            text: "ad & promo/1".into(),
            channel: None,
        }),
        ..Start::default()
    };
    let run = run_in(&workflow, &mut ctx, start, &HttpMode::Live).await;
    assert!(run.succeeded(), "{run:#?}");

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let raw = &requests[0];
    assert!(
        raw.starts_with("POST /api/deals?source=ad%20%26%20promo%2F1 HTTP/1.1"),
        "{raw}"
    );
    assert!(
        raw.to_ascii_lowercase()
            .contains("authorization: bearer crm-token-7f3a9")
    );
    assert_eq!(
        body_of(raw),
        r#"{"deal":{"name":"Ana"},"contacts":[{"name":"Ana"}]}"#
    );

    assert_eq!(run.vars["deal_url"], json!("https://crm.example/d/9"));
    let effects = ctx.journal().effects().to_vec();
    assert!(matches!(&effects[0], Effect::SetField { name, .. } if name == "crm_deal"));
    assert!(matches!(&effects[1], Effect::AddTag { tag, .. } if tag == "onboarded"));
    let Effect::SendEmail(email) = &effects[2] else {
        panic!("{effects:?}")
    };
    assert_eq!(email.subject, "New lead: Ana");
    assert_eq!(email.text, "Deal https://crm.example/d/9");
    assert_eq!(effects.len(), 3);

    let steps: Vec<&str> = run.trace.iter().map(|step| step.step.as_str()).collect();
    assert_eq!(steps, ["create_deal", "has_email", "tag", "mail"]);
    assert_eq!(run.trace[1].port.as_deref(), Some("then"));
    let shown = serde_json::to_string(&run.trace).unwrap();
    assert!(
        !shown.contains("crm-token-7f3a9"),
        "a secret in the trace: {shown}"
    );
    assert_eq!(run.trace[2].changes[0].what, "tags");
}

#[tokio::test]
async fn json_breaking_names_stay_one_string_and_a_missing_variable_fails_the_step() {
    let (port, seen) = upstream(Arc::new(|_| (200, "{}".to_owned()))).await;
    let text = format!(
        r#"{{"name": "edge", "steps": [
        {{"id": "call", "type": "http", "method": "POST", "url": "http://127.0.0.1:{port}/x",
          "body": {{"raw": {{"content_type": "application/json", "text": "{{\"name\": {{{{contact.fields.name}}}}}}"}}}},
          "next": "nickname"}},
        {{"id": "nickname", "type": "set_field", "field": "greeting", "value": "Hi {{{{contact.fields.nickname}}}}"}}
    ]}}"#
    );
    let workflow = check(&text, &Templates::new()).unwrap();
    let mut contact = ana();
    contact
        .fields
        .insert("name".into(), "Ana\", \"admin\": true, \"x\": \"\n".into());
    let mut ctx = context(port, contact);
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    let sent: Value = serde_json::from_str(body_of(&seen.lock().unwrap()[0])).unwrap();
    assert_eq!(sent, json!({"name": "Ana\", \"admin\": true, \"x\": \"\n"}));
    let error = run.error.expect("the missing field fails the run");
    assert_eq!(error.step.as_deref(), Some("nickname"));
    assert_eq!(error.error.kind, ErrorKind::ActionError);
    assert_eq!(
        error.error.message,
        "value: `contact.fields.nickname` is not set"
    );
    assert!(
        ctx.journal().is_empty(),
        "nothing journaled after the failure"
    );
}

#[tokio::test]
async fn a_refused_request_takes_on_error_and_fixtures_send_nothing() {
    let text = r#"{"name": "slip", "steps": [
        {"id": "fetch", "type": "http", "method": "GET", "url": "http://10.1.2.3/slip",
         "save": [{"path": "data[url]", "var": "link"}], "next": "ok", "on_error": "sorry"},
        {"id": "ok", "type": "set_field", "field": "slip", "value": "{{vars.link}}"},
        {"id": "sorry", "type": "tag", "tag": "slip-failed"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    let mut ctx = context(9, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    assert!(run.succeeded(), "{run:#?}");
    assert_eq!(run.trace[0].port.as_deref(), Some("on_error"));
    assert!(
        run.trace[0].outputs["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{:?}",
        run.trace[0].outputs
    );

    let fixtures = fixture(
        "fetch",
        200,
        json!({"data": {"url": "https://pay.example/slip/2"}}),
    );
    let mut ctx = context(9, ana());
    let run = run_in(
        &workflow,
        &mut ctx,
        Start::default(),
        &HttpMode::Fixtures(fixtures),
    )
    .await;
    assert!(run.succeeded(), "{run:#?}");
    assert_eq!(
        ctx.counters().http_requests,
        0,
        "a fixture is not a request"
    );
    assert!(matches!(
        &ctx.journal().effects()[0],
        Effect::SetField { value, .. } if value.as_text() == Some("https://pay.example/slip/2")
    ));
}

#[tokio::test]
async fn a_loop_stops_at_its_limit_and_a_split_follows_its_draw() {
    let text = r#"{"name": "loop", "steps": [
        {"id": "count", "type": "set_variable", "name": "n", "increment": 1, "next": "again", "max_visits": 3},
        {"id": "again", "type": "condition", "rules": [{"left": "vars.n", "op": "lt", "value": "99"}], "then": "count"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    let mut ctx = context(9, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    let error = run.error.unwrap();
    assert_eq!(error.error.kind, ErrorKind::QuotaExceeded);
    assert!(
        error.error.message.contains("loop limit of 3"),
        "{}",
        error.error.message
    );
    assert_eq!(run.vars["n"], json!(3));

    let text = r#"{"name": "ab", "steps": [
        {"id": "ab", "type": "split", "branches": [{"weight": 1, "next": "a"}, {"weight": 3, "next": "b"}]},
        {"id": "a", "type": "tag", "tag": "A"},
        {"id": "b", "type": "tag", "tag": "B"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    for (draw, tag) in [(0.1, "A"), (0.26, "B"), (0.99, "B")] {
        let mut ctx = context(9, ana());
        let mut fixed = move || draw;
        let run = Interpreter::new()
            .run(
                &workflow,
                &mut ctx,
                Start::default(),
                &HttpMode::Live,
                &mut fixed,
            )
            .await;
        assert!(run.succeeded());
        assert!(
            matches!(&ctx.journal().effects()[0], Effect::AddTag { tag: t, .. } if t == tag),
            "draw {draw}"
        );
        assert!(run.trace[0].outputs["draw"].is_number());
    }
}

#[tokio::test]
async fn a_secret_echoed_or_filtered_never_reaches_the_trace() {
    // The upstream echoes the request's headers back in its body.
    let (port, _) = upstream(Arc::new(|raw: &str| {
        let headers: Vec<&str> = raw.lines().take_while(|l| !l.is_empty()).collect();
        (200, json!({"echo": headers.join("\n")}).to_string())
    }))
    .await;
    let text = format!(
        r#"{{"name": "echo", "steps": [
        {{"id": "call", "type": "http", "method": "POST", "url": "http://127.0.0.1:{port}/e",
          "headers": [{{"key": "x-shout", "value": "{{{{secrets.CRM_TOKEN | upper}}}}"}}],
          "auth": {{"api_key": {{"header": "x-key", "secret": "CRM_TOKEN"}}}},
          "body": {{"json": [{{"key": "t", "value": "{{{{secrets.CRM_TOKEN}}}}"}}]}},
          "save": [{{"path": "echo", "field": "echo"}}]}}
    ]}}"#
    );
    // A filter on a secret is refused: its output could not be redacted.
    let problems = check(&text, &Templates::new()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.field == "headers[0].value" && p.message.contains("without filters")),
        "{problems:?}"
    );
    let text = text.replace("{{secrets.CRM_TOKEN | upper}}", "{{ secrets.CRM_TOKEN }}");
    let workflow = check(&text, &Templates::new()).unwrap();
    let mut ctx = context(port, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    assert!(run.succeeded(), "{run:#?}");
    let shown = serde_json::to_string(&run).unwrap();
    assert!(
        shown.contains("x-shout: [REDACTED]"),
        "the echo is redacted: {shown}"
    );
    assert!(!shown.contains("crm-token-7f3a9"), "{shown}");
    assert!(
        shown.contains("{{ secrets.CRM_TOKEN }}"),
        "shown as its template: {shown}"
    );
}

#[tokio::test]
async fn inputs_are_readable_loops_share_their_limit_and_a_missed_save_keeps_nothing() {
    let text = r#"{"name": "in", "inputs": ["plan"], "steps": [
        {"id": "is_vip", "type": "condition", "rules": [{"left": "vars.plan", "op": "equals", "value": "enterprise"}],
         "then": "count", "else": "normal"},
        {"id": "count", "type": "set_variable", "name": "n", "increment": 1, "next": "again", "max_visits": 15},
        {"id": "again", "type": "condition", "rules": [{"left": "vars.n", "op": "lt", "value": "12"}], "then": "count"},
        {"id": "normal", "type": "set_field", "field": "plan_seen", "value": "[{{vars.plan}}]"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    let vip = Start {
        vars: [("plan".to_owned(), json!("enterprise"))]
            .into_iter()
            .collect(),
        ..Start::default()
    };
    let mut ctx = context(9, ana());
    let run = run_in(&workflow, &mut ctx, vip, &HttpMode::Live).await;
    assert!(
        run.succeeded(),
        "`again` shares the loop's limit of 15: {run:#?}"
    );
    assert_eq!(run.vars["n"], json!(12));
    let mut ctx = context(9, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    assert!(run.succeeded(), "{run:#?}");
    assert!(
        matches!(
            &ctx.journal().effects()[0],
            Effect::SetField { value, .. } if value.as_text() == Some("[]")
        ),
        "a missing input is null and prints as nothing"
    );

    let text = r#"{"name": "save", "steps": [
        {"id": "call", "type": "http", "method": "GET", "url": "http://127.0.0.1:9/x",
         "save": [{"path": "data.id", "field": "id"}, {"path": "data.missing", "var": "m"}],
         "on_error": "failed"},
        {"id": "failed", "type": "tag", "tag": "save-failed"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    let fixtures = fixture("call", 200, json!({"data": {"id": 1}}));
    let mut ctx = context(9, ana());
    let run = run_in(
        &workflow,
        &mut ctx,
        Start::default(),
        &HttpMode::Fixtures(fixtures),
    )
    .await;
    assert!(run.succeeded(), "{run:#?}");
    let effects = ctx.journal().effects().to_vec();
    assert_eq!(
        effects.len(),
        1,
        "only the tag, not the first save: {effects:?}"
    );
    assert!(matches!(&effects[0], Effect::AddTag { tag } if tag == "save-failed"));
}

#[tokio::test]
async fn a_refused_request_is_the_definition_s_fault_and_a_5xx_the_upstream_s() {
    let (port, _) = upstream(Arc::new(|_| (503, "{}".to_owned()))).await;
    for (url, blame, retryable) in [
        (
            "http://10.9.9.9/x".to_owned(),
            fluxo_core::Blame::Guest,
            false,
        ),
        (
            format!("http://127.0.0.1:{port}/x"),
            fluxo_core::Blame::Upstream,
            true,
        ),
    ] {
        let text = format!(
            r#"{{"name": "b", "steps": [{{"id": "call", "type": "http", "method": "POST", "url": "{url}"}}]}}"#
        );
        let workflow = check(&text, &Templates::new()).unwrap();
        let mut ctx = context(port, ana());
        let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
        let error = run.error.unwrap().error;
        assert_eq!(error.blame, blame, "{url}: {error:?}");
        assert_eq!(error.retryable(), retryable, "{url}");
    }
}

#[tokio::test]
async fn replies_notifications_and_handoffs_are_journaled_for_the_platform() {
    let text = r#"{"name": "ask", "steps": [
        {"id": "slip", "type": "http", "method": "GET", "url": "https://billing.example/slips/{{contact.fields.name}}",
         "save": [{"path": "{data[url]}", "var": "link"}], "next": "answer"},
        {"id": "answer", "type": "reply", "text": "Your slip: {{vars.link}}", "next": "tell"},
        {"id": "tell", "type": "notify", "text": "{{contact.fields.name}} got a slip", "next": "away"},
        {"id": "away", "type": "handoff", "service": "billing"}
    ]}"#;
    let workflow = check(text, &Templates::new()).unwrap();
    let mode = HttpMode::Fixtures(fixture(
        "slip",
        200,
        json!({"data": {"url": "https://billing.example/s/7.pdf"}}),
    ));
    let mut ctx = context(1, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &mode).await;
    assert!(run.succeeded(), "{run:#?}");
    let messages: Vec<_> = ctx
        .journal()
        .effects()
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendMessage(message) => Some(message.clone()),
            _ => None,
        })
        .collect();
    let shown: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.kind.as_str(),
                m.text.as_str(),
                m.to.as_deref(),
                m.service.as_deref(),
                m.contact.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "reply",
                "Your slip: https://billing.example/s/7.pdf",
                None,
                None,
                "c1"
            ),
            ("notify", "Ana got a slip", Some("owner"), None, "c1"),
            ("handoff", "", None, Some("billing"), "c1"),
        ]
    );
    let ids: Vec<_> = messages.iter().map(|m| m.message_id.clone()).collect();
    assert!(ids[0].ends_with(".1") && ids[2].ends_with(".3"), "{ids:?}");
    assert_eq!(run.trace[1].outputs["message_id"], json!(ids[0]));
    assert_eq!(run.trace[2].inputs["to"], "owner");

    // A run about no contact has no conversation to answer into.
    let mut anonymous = ana();
    anonymous.id = None;
    let mut nobody = context(1, anonymous);
    let run = run_in(&workflow, &mut nobody, Start::default(), &mode).await;
    let error = run.error.expect("no contact, no reply");
    assert_eq!(error.step.as_deref(), Some("answer"));
    assert!(error.error.message.contains("no contact"), "{error:?}");
}

#[test]
fn message_blocks_are_checked_at_save_time() {
    let text = r#"{"name": "bad", "steps": [
        {"id": "a", "type": "reply", "text": " ", "next": "b"},
        {"id": "b", "type": "notify", "to": "", "text": "{{secrets.TOKEN}}", "next": "c"},
        {"id": "c", "type": "handoff", "service": "", "next": "d"},
        {"id": "d", "type": "handoff", "service": "bad\nname", "next": "e"},
        {"id": "e", "type": "reply", "text": "TEXT"}
    ]}"#
    .replace("TEXT", &"x".repeat(4_097));
    let problems: Vec<String> = check(&text, &Templates::new())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let joined = problems.join("\n");
    for expected in [
        "a reply needs a text",
        "step `b`, to: a notification needs a recipient",
        "step `b`, text: `secrets.TOKEN`: secrets may be used only in an HTTP request",
        "step `c`, service: a handoff names the service",
        "step `d`, service: must be at most 256 bytes without control characters",
        "step `e`, text: 4097 characters, more than the 4096",
    ] {
        assert!(joined.contains(expected), "{expected:?} in {joined}");
    }
}

/// The texts of the messages `ctx` journaled, with their kind.
fn sent(ctx: &RunContext) -> Vec<(String, String)> {
    ctx.journal()
        .effects()
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendMessage(message) => {
                Some((message.kind.as_str().to_owned(), message.text.clone()))
            }
            _ => None,
        })
        .collect()
}

/// One segment of a suspended run as the host runs it: a fresh context with the contact
/// and counters the last segment left, the checkpoint read back from its stored JSON.
async fn segment(
    workflow: &crate::Workflow,
    left: Option<(&crate::Checkpoint, &Contact, fluxo_core::Counters)>,
    answer: Option<&str>,
) -> (crate::WorkflowRun, RunContext) {
    let mut start = Start::default();
    let mut ctx = context(1, ana());
    if let Some((checkpoint, contact, counters)) = left {
        let stored = serde_json::to_string(checkpoint).unwrap();
        let checkpoint: crate::Checkpoint = serde_json::from_str(&stored).unwrap();
        ctx = context(1, contact.clone()).with_counters(counters);
        let resolution = answer.map_or(crate::Resolution::Timeout, |text| {
            crate::Resolution::Reply(Message {
                text: text.to_owned(),
                channel: None,
            })
        });
        start.resume = Some((checkpoint, resolution));
    }
    let run = run_in(workflow, &mut ctx, start, &HttpMode::Live).await;
    (run, ctx)
}

#[tokio::test]
async fn the_reply_validator_suspends_at_each_wait_and_asks_at_most_twice() {
    let text = include_str!("../../../guest-examples/workflows/reply-validator.json");
    let workflow = check(text, &Templates::new()).unwrap();

    // Segment 1: the question, then the run stops at the wait with a checkpoint.
    let (run, ctx) = segment(&workflow, None, None).await;
    assert!(run.is_waiting(), "{run:#?}");
    let waiting = run.waiting.clone().unwrap();
    assert_eq!(waiting.step, "answer");
    assert_eq!(waiting.timeout_seconds, 3600);
    assert_eq!(sent(&ctx).len(), 1);
    assert!(sent(&ctx)[0].1.starts_with("Hi Ana! Which department?"));
    assert_eq!(
        run.trace.last().unwrap().describe(),
        "step answer (wait_for_reply): waiting for the contact's reply"
    );

    // Three answers that are not a digit: asked again twice, then the owner is told.
    let mut left = (waiting, ctx.contact(), *ctx.counters());
    let mut messages = Vec::new();
    for (i, answer) in ["maybe", "the second one", "2!"].iter().enumerate() {
        let (run, ctx) = segment(&workflow, Some((&left.0, &left.1, left.2)), Some(answer)).await;
        assert!(run.succeeded(), "{run:#?}");
        messages.extend(sent(&ctx));
        if i < 2 {
            left = (run.waiting.clone().unwrap(), ctx.contact(), *ctx.counters());
        } else {
            assert!(run.waiting.is_none(), "the run ended: {run:#?}");
            // The message ids went on across the segments: no id is reused.
            assert!(
                ctx.journal().effects().iter().any(|effect| matches!(
                    effect, Effect::SendMessage(m) if m.message_id.ends_with(".4")
                )),
                "{:?}",
                ctx.journal().effects()
            );
        }
    }
    let kinds: Vec<_> = messages.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["reply", "reply", "notify"]);
    assert_eq!(
        messages[2].1,
        "Ana answered 3 times without choosing a department. Dialog: https://chat.example/dialogs/c1"
    );

    // A valid answer files the department; a timeout goes to `on_timeout`.
    let (first, ctx) = segment(&workflow, None, None).await;
    let left = (first.waiting.unwrap(), ctx.contact(), *ctx.counters());
    let (run, ctx) = segment(&workflow, Some((&left.0, &left.1, left.2)), Some(" 3 ")).await;
    assert!(run.succeeded() && run.waiting.is_none(), "{run:#?}");
    assert_eq!(
        ctx.contact().fields.get("department").map(|v| v.to_json()),
        Some(json!("3"))
    );
    assert_eq!(
        sent(&ctx)[0].1,
        "Thanks! Department 3 will answer you here."
    );
    let (run, ctx) = segment(&workflow, Some((&left.0, &left.1, left.2)), None).await;
    assert!(run.succeeded(), "{run:#?}");
    assert_eq!(run.trace[0].port.as_deref(), Some("on_timeout"));
    assert_eq!(sent(&ctx)[0].0, "notify");
    assert!(
        sent(&ctx)[0].1.contains("did not answer"),
        "{:?}",
        sent(&ctx)
    );
}

#[tokio::test]
async fn a_test_answers_waits_inline_and_stops_when_the_answers_run_out() {
    let text = include_str!("../../../guest-examples/workflows/reply-validator.json");
    let workflow = check(text, &Templates::new()).unwrap();
    let answers = |list: &[Option<&str>]| {
        crate::Waits::Answers(
            list.iter()
                .map(|answer| {
                    answer.map(|text| Message {
                        text: text.to_owned(),
                        channel: None,
                    })
                })
                .collect(),
        )
    };
    let mut ctx = context(1, ana());
    let start = Start {
        waits: answers(&[Some("x"), Some("1")]),
        ..Start::default()
    };
    let run = run_in(&workflow, &mut ctx, start, &HttpMode::Live).await;
    assert!(run.succeeded() && run.waiting.is_none(), "{run:#?}");
    assert_eq!(run.vars["choice"], json!("1"));
    assert_eq!(sent(&ctx).len(), 3, "question, ask again, thanks");

    // With no answer left, the test stops at the wait.
    let mut ctx = context(1, ana());
    let start = Start {
        waits: answers(&[Some("x")]),
        ..Start::default()
    };
    let run = run_in(&workflow, &mut ctx, start, &HttpMode::Live).await;
    assert!(run.is_waiting(), "{run:#?}");
    assert_eq!(run.waiting.unwrap().visits["answer"], 2);

    // A test needs no contact to stop at a wait; a real run about no contact cannot
    // wait: nobody could answer.
    let bare = r#"{"name": "w", "steps": [
        {"id": "answer", "type": "wait_for_reply", "next": "seen"},
        {"id": "seen", "type": "set_variable", "name": "seen", "value": "{{vars.reply}}"}
    ]}"#;
    let bare = check(bare, &Templates::new()).unwrap();
    let mut anonymous = ana();
    anonymous.id = None;
    let mut ctx = context(1, anonymous.clone());
    let start = Start {
        waits: answers(&[]),
        ..Start::default()
    };
    let run = run_in(&bare, &mut ctx, start, &HttpMode::Live).await;
    assert!(run.is_waiting(), "{run:#?}");
    let mut ctx = context(1, anonymous);
    let run = run_in(&bare, &mut ctx, Start::default(), &HttpMode::Live).await;
    let error = run.error.unwrap();
    assert_eq!(error.step.as_deref(), Some("answer"));
    assert!(error.error.message.contains("about a contact"), "{error:?}");
}

#[test]
fn a_wait_s_timeout_and_variable_are_checked_at_save_time() {
    let text = r#"{"name": "w", "steps": [
        {"id": "a", "type": "wait_for_reply", "save_as": "1bad", "timeout_seconds": 0, "next": "b"},
        {"id": "b", "type": "wait_for_reply", "timeout_seconds": 2592001}
    ]}"#;
    let problems: Vec<String> = check(text, &Templates::new())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("step `a`, save_as"), "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("step `a`, timeout_seconds: 0 is not from 1 to 2592000")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("step `b`, timeout_seconds: 2592001")),
        "{problems:#?}"
    );
}

/// OAuth 2.0 client credentials: the token is requested through the run's egress
/// (HTTP Basic client authentication, the scope in the form), sent as a bearer token,
/// cached for the next run of the tenant, and redacted wherever an upstream echoes it.
#[tokio::test]
async fn an_oauth2_token_is_fetched_through_the_egress_cached_and_redacted() {
    let (port, seen) = upstream(Arc::new(|raw: &str| {
        if raw.starts_with("POST /token") {
            // base64("crm-client:crm-token-7f3a9")
            if !raw.contains("Basic Y3JtLWNsaWVudDpjcm0tdG9rZW4tN2YzYTk=") {
                return (401, json!({"error": "invalid_client"}).to_string());
            }
            let token = json!({"access_token": "tok-abc123xyz", "token_type": "Bearer", "expires_in": 3600});
            return (200, token.to_string());
        }
        let authorization = raw
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or_default()
            .to_owned();
        (200, json!({"echo": authorization}).to_string())
    }))
    .await;
    let definition = |secret: &str| {
        json!({"name": "deals", "steps": [
            {"id": "call", "type": "http", "method": "POST",
             "url": format!("http://127.0.0.1:{port}/deals"),
             "auth": {"oauth2": {"token_url": format!("http://127.0.0.1:{port}/token"),
                                 "client_id": "crm-client", "client_secret": secret,
                                 "scope": "deals:write"}},
             "save": [{"path": "echo", "var": "echo"}]}
        ]})
        .to_string()
    };
    let workflow = check(&definition("CRM_TOKEN"), &Templates::new()).unwrap();
    let interpreter = Interpreter::new();
    for _ in 0..2 {
        let mut ctx = context(port, ana());
        let run = interpreter
            .run(
                &workflow,
                &mut ctx,
                Start::default(),
                &HttpMode::Live,
                &mut never,
            )
            .await;
        assert!(run.succeeded(), "{run:#?}");
        let shown = serde_json::to_string(&run).unwrap();
        assert!(!shown.contains("tok-abc123xyz"), "{shown}");
        assert!(shown.contains("Bearer [REDACTED]"), "{shown}");
        assert!(
            ctx.secrets().values().any(|value| value == "tok-abc123xyz"),
            "the run's records are redacted of the token too"
        );
    }
    let requests = seen.lock().unwrap().clone();
    let lines: Vec<&str> = requests
        .iter()
        .map(|raw| raw.lines().next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "POST /token HTTP/1.1",
            "POST /deals HTTP/1.1",
            "POST /deals HTTP/1.1"
        ],
        "the second run used the cached token"
    );
    assert_eq!(
        body_of(&requests[0]),
        "grant_type=client_credentials&scope=deals%3Awrite"
    );
    assert!(
        requests[1].contains("authorization: Bearer tok-abc123xyz"),
        "{}",
        requests[1]
    );

    // A client the server refuses fails the step with RFC 6749's error, not retryable.
    let refused = check(&definition("OTHER"), &Templates::new()).unwrap();
    let mut ctx = context(port, ana()).with_secrets(Secrets::new(
        [("OTHER".to_owned(), "wrong-secret-1".to_owned())].into(),
    ));
    let run = interpreter
        .run(
            &refused,
            &mut ctx,
            Start::default(),
            &HttpMode::Live,
            &mut never,
        )
        .await;
    let error = run.error.unwrap().error;
    assert!(error.message.contains("invalid_client"), "{error:?}");
    assert!(!error.retryable());
    assert_eq!(seen.lock().unwrap().len(), 4, "no API call without a token");
}

/// A checkpoint is stored in the clear: it names the secrets a run used, never holds
/// their values, not even one an upstream echoed into a saved answer.
#[tokio::test]
async fn a_checkpoint_names_the_secrets_used_and_holds_none() {
    let (port, _) = upstream(Arc::new(|raw: &str| {
        let headers: Vec<&str> = raw.lines().take_while(|l| !l.is_empty()).collect();
        (200, json!({"echo": headers.join("\n")}).to_string())
    }))
    .await;
    let text = json!({"name": "ask", "steps": [
        {"id": "call", "type": "http", "method": "GET",
         "url": format!("http://127.0.0.1:{port}/x"),
         "auth": {"bearer": {"secret": "CRM_TOKEN"}},
         "save": [{"path": "echo", "var": "echo"}], "next": "answer"},
        {"id": "answer", "type": "wait_for_reply"}
    ]})
    .to_string();
    let workflow = check(&text, &Templates::new()).unwrap();
    let mut ctx = context(port, ana());
    let run = run_in(&workflow, &mut ctx, Start::default(), &HttpMode::Live).await;
    let checkpoint = serde_json::to_string(&run.waiting.unwrap()).unwrap();
    assert!(checkpoint.contains("\"CRM_TOKEN\""), "{checkpoint}");
    assert!(checkpoint.contains("Bearer [REDACTED]"), "{checkpoint}");
    assert!(!checkpoint.contains("crm-token-7f3a9"), "{checkpoint}");
}

/// A token answer the crate cannot read still has its token redacted from the run's
/// records; a token endpoint's 503 is the upstream's trouble (retryable), whatever error
/// body it carries; plain `http` to anything but this host is refused at save time.
#[tokio::test]
async fn oauth2_failures_are_blamed_right_and_leak_no_token() {
    let (port, _) = upstream(Arc::new(|raw: &str| {
        if raw.starts_with("POST /token-denied") {
            return (401, "not json".to_owned());
        }
        if raw.starts_with("POST /token-odd") {
            let odd = json!({"access_token": "tok-odd-4242", "token_type": "Bearer", "expires_in": "3599"});
            return (200, odd.to_string());
        }
        (503, json!({"error": "temporarily_unavailable"}).to_string())
    }))
    .await;
    let definition = |path: &str| {
        json!({"name": "deals", "steps": [
            {"id": "call", "type": "http", "method": "GET",
             "url": format!("http://127.0.0.1:{port}/deals"),
             "auth": {"oauth2": {"token_url": format!("http://127.0.0.1:{port}/{path}"),
                                 "client_id": "crm-client", "client_secret": "CRM_TOKEN"}}}
        ]})
        .to_string()
    };
    let interpreter = Interpreter::new();
    // Each case: a run of the workflow whose token endpoint is at `path`, and its error.
    let fail = |path: &str| {
        let workflow = check(&definition(path), &Templates::new()).unwrap();
        let interpreter = &interpreter;
        async move {
            let mut ctx = context(port, ana());
            let run = interpreter
                .run(
                    &workflow,
                    &mut ctx,
                    Start::default(),
                    &HttpMode::Live,
                    &mut never,
                )
                .await;
            (run.error.unwrap().error, ctx)
        }
    };
    let (error, ctx) = fail("token-odd").await;
    assert!(error.message.contains("not a token response"), "{error:?}");
    assert!(
        ctx.secrets().values().any(|value| value == "tok-odd-4242"),
        "the token in the recorded answer is redacted"
    );
    let (error, _) = fail("token-busy").await;
    assert!(
        error.message.contains("temporarily_unavailable"),
        "{error:?}"
    );
    assert!(error.retryable(), "{error:?}");
    // A 4xx the crate cannot read is still the definition's fault (a wrong secret).
    let (error, _) = fail("token-denied").await;
    assert!(!error.retryable(), "{error:?}");

    let plain = definition("x").replace("http://127.0.0.1", "http://auth.example");
    let problems = check(&plain, &Templates::new()).unwrap_err();
    assert!(
        problems.iter().any(|p| p.field == "auth.oauth2.token_url"),
        "{problems:?}"
    );
}

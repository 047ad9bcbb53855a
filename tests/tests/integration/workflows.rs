//! Workflows through the API against loopback upstreams: the examples in
//! `guest-examples/workflows/` validate, run their blocks through the tenant's egress
//! policy and secrets, and apply nothing when tested.

use std::path::{Path, PathBuf};

use fluxo_tests::fluxo_bin;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::server::{api, config_for};
use crate::support::{Upstream, unix_now, verify_signed, webhooks_on_loopback};

pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples/workflows")
}

/// An example's definition with its upstream's base URL pointed at `base`.
pub(crate) fn example(file: &str, from: &str, base: &str) -> Value {
    let text = std::fs::read_to_string(examples().join(file)).unwrap();
    serde_json::from_str(&text.replace(from, base)).unwrap()
}

/// A fake CRM answering every request with a deal (`id`, `url`), an API allowed to reach
/// it, and tenant `acme` holding `CRM_TOKEN = secret`.
async fn crm_and_tenant(
    id: &str,
    url: &str,
    secret: &str,
) -> (Upstream, crate::server::Api, String) {
    let deal = json!({"data": {"id": id, "url": url}}).to_string();
    let crm = Upstream::start(move |_| (201, deal.clone())).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "CRM_TOKEN", secret).await;
    (crm, api, token)
}

fn effects_of(kind: &str, answer: &Value) -> Vec<Value> {
    answer["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|effect| effect["kind"] == json!(kind))
        .cloned()
        .collect()
}

/// A test answer's platform messages as (type, text).
fn texts(answer: &Value) -> Vec<(String, String)> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_example_validates_and_a_broken_one_lists_each_problem() {
    let fluxo = fluxo_bin().unwrap_or_else(|problem| panic!("{problem}"));
    let files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    let output = std::process::Command::new(&fluxo)
        .args(["workflow", "validate"])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches(": ok (").count(), files.len(), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"name": "broken", "steps": [
            {"id": "call", "type": "http", "method": "GET", "url": "https://x.example/{{contact.nickname}}", "next": "gone"},
            {"id": "mail", "type": "send_email", "to": [], "subject": "{{secrets.KEY}}", "text": "x"}
        ]}"#,
    )
    .unwrap();
    let output = std::process::Command::new(&fluxo)
        .args(["workflow", "validate"])
        .arg(&broken)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for needle in [
        "5 problem(s)",
        "step `call`, next: leads to `gone`",
        "step `call`, url: `contact.nickname`",
        "step `mail`: cannot be reached",
        "step `mail`, subject: `secrets.KEY`",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in {stdout}");
    }
    assert!(stdout.contains("recipient"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lead_sync_calls_the_crm_once_and_would_tag_set_and_mail() {
    let (crm, api, token) = crm_and_tenant(
        "deal-42",
        "https://crm.example/deals/42",
        "crm-secret-0f9e8d",
    )
    .await;

    let workflow = example(
        "lead-sync.json",
        "https://crm.example/api",
        &format!("{}/api", crm.url()),
    );
    let answer = api
        .test_workflow(
            &token,
            json!({
                "workflow": workflow,
                "contact": {"id": "c-1", "fields": {
                    "name": "Ana", "email": "ana@example.com", "phone": "+55 11 91234-5678"}},
                "message": {"text": "my phone is +55 11 91234-5678"},
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(body["succeeded"], json!(true), "{body:#}");

    let received = crm.received();
    assert_eq!(received.len(), 1, "the CRM is called once");
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].uri, "/api/v1/deals");
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer crm-secret-0f9e8d")
    );
    assert_eq!(
        String::from_utf8_lossy(&received[0].body),
        r#"{"deal":{"name":"Ana","source":"chat"},"contacts":[{"name":"Ana","email":"ana@example.com","phone":"+55 11 91234-5678"}]}"#
    );
    assert!(received[0].header("idempotency-key").is_some());

    let fields = effects_of("set_field", body);
    assert_eq!(fields.len(), 1, "{body:#}");
    assert_eq!(fields[0]["name"], json!("crm_deal_id"));
    assert_eq!(
        body["contact"]["after"]["fields"]["crm_deal_id"],
        json!("deal-42")
    );
    assert_eq!(body["contact"]["after"]["tags"], json!(["onboarded"]));
    assert_eq!(body["emails"].as_array().unwrap().len(), 1);
    assert_eq!(body["emails"][0]["subject"], json!("New lead: Ana"));
    assert!(
        body["emails"][0]["text"]
            .as_str()
            .unwrap()
            .contains("https://crm.example/deals/42"),
        "{body:#}"
    );
    let steps: Vec<&str> = body["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "has_contact_data",
            "create_deal",
            "tag_onboarded",
            "notify_admin"
        ]
    );
    assert!(
        !body.to_string().contains("crm-secret-0f9e8d"),
        "a secret reached the answer: {body:#}"
    );

    // A test applies nothing: the contact has no stored fields or tags afterwards.
    let contact = api.get("/v1/contacts/c-1", &token).await;
    assert_eq!(contact.status, StatusCode::NOT_FOUND, "{}", contact.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bank_slip_link_reaches_the_field_live_or_from_fixtures() {
    let billing = Upstream::start(|request| {
        if request.header("x-api-key") != Some("billing-key-77") {
            return (401, json!({"error": "no key"}).to_string());
        }
        (
            200,
            json!({"data": {"url": "https://pay.example/slip/2nd", "due_date": "2026-12-10"}})
                .to_string(),
        )
    })
    .await;
    let api = api(config_for(billing.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "BILLING_KEY", "billing-key-77")
        .await;
    let workflow = example("bank-slip.json", "https://billing.example", &billing.url());
    // A URL-breaking document number and a JSON-breaking name.
    let contact =
        json!({"id": "c-2", "fields": {"document": "123&x=1#frag", "name": "Bia \"B\" \\ Souza"}});
    let live = api
        .test_workflow(&token, json!({"workflow": workflow, "contact": contact}))
        .await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    assert_eq!(live.body["succeeded"], json!(true), "{:#}", live.body);
    let after = &live.body["contact"]["after"]["fields"];
    assert_eq!(
        after["second_copy_url"],
        json!("https://pay.example/slip/2nd")
    );
    assert_eq!(
        texts(&live.body),
        [(
            "reply".to_owned(),
            "Your slip, due 2026-12-10: https://pay.example/slip/2nd".to_owned()
        )]
    );
    let received = billing.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].uri,
        "/api/slips/second-copy?document=123%26x%3D1%23frag"
    );
    assert_eq!(
        received[0].json(),
        json!({"customer": {"document": "123&x=1#frag", "name": "Bia \"B\" \\ Souza"}})
    );

    // The same test answered from fixtures sends nothing.
    let fixtures = json!({"second_copy": {"status": 404, "body": {"error": "no open slip"}}});
    let offline = api
        .test_workflow(
            &token,
            json!({"workflow": workflow, "contact": contact, "fixtures": fixtures}),
        )
        .await;
    assert_eq!(offline.status, StatusCode::OK, "{}", offline.body);
    assert_eq!(billing.received().len(), 1, "a fixture is not a request");
    assert_eq!(
        texts(&offline.body),
        [
            (
                "reply".to_owned(),
                "We could not find an open slip for 123&x=1#frag. Someone from our team will answer you here.".to_owned()
            ),
            (
                "notify".to_owned(),
                "No open slip for Bia \"B\" \\ Souza (123&x=1#frag): billing answered 404.".to_owned()
            )
        ]
    );
    assert_eq!(offline.body["messages"][1]["to"], json!("owner"));
    assert_eq!(offline.body["trace"][0]["port"], json!("on_error"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_with_problems_is_refused_with_every_problem() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    let broken = json!({"name": "broken", "steps": [
        {"id": "a", "type": "tag", "tag": "x", "next": "b"},
        {"id": "b", "type": "untag", "tag": "{{vars.nope}}", "next": "a"},
        {"id": "c", "type": "trigger_workflow"}
    ]});
    let validation = api
        .json(
            Method::POST,
            "/v1/workflows/validate",
            Some(&token),
            broken.clone(),
        )
        .await;
    assert_eq!(validation.status, StatusCode::OK, "{}", validation.body);
    assert_eq!(validation.body["valid"], json!(false));
    let problems = validation.body["problems"].as_array().unwrap();
    assert_eq!(
        problems.len(),
        1,
        "the unparsable step is reported first, alone: {problems:#?}"
    );
    assert_eq!(problems[0]["step"], json!("c"));

    let fixed = json!({"name": "loop", "steps": [
        {"id": "a", "type": "tag", "tag": "x", "next": "b"},
        {"id": "b", "type": "untag", "tag": "{{vars.nope}}", "next": "a"}
    ]});
    let tested = api.test_workflow(&token, json!({"workflow": fixed})).await;
    assert_eq!(
        tested.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        tested.body
    );
    assert_eq!(tested.body["code"], json!("invalid_workflow"));
    let details = tested.body["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{details:#?}");
    let text = tested.body.to_string();
    assert!(text.contains("no step sets the variable `nope`"), "{text}");
    assert!(text.contains("form a loop with no limit"), "{text}");

    let unauthenticated = api
        .json(Method::POST, "/v1/workflows/validate", None, fixed)
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_workflow_runs_durably_applies_its_effects_once_and_stops_when_disabled() {
    let (crm, api, token) =
        crm_and_tenant("deal-7", "https://crm.example/deals/7", "crm-secret-51").await;

    // A definition with problems is refused with every one, and nothing is stored.
    let refused = api
        .call(
            Method::POST,
            "/v1/workflows/lead-sync/versions",
            Some(&token),
            bytes::Bytes::from(r#"{"name": "lead-sync", "steps": [{"id": "a", "type": "tag", "tag": "{{vars.x}}", "next": "b"}]}"#),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["details"].as_array().unwrap().len(),
        2,
        "{}",
        refused.body
    );
    assert_eq!(
        api.get("/v1/actions/lead-sync", &token).await.status,
        StatusCode::NOT_FOUND
    );

    let definition = example(
        "lead-sync.json",
        "https://crm.example/api",
        &format!("{}/api", crm.url()),
    );
    let uploaded = api
        .json(
            Method::POST,
            "/v1/workflows/lead-sync/versions",
            Some(&token),
            definition.clone(),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    assert_eq!(uploaded.body["version"]["version"], json!(1));
    assert_eq!(uploaded.body["version"]["kind"], json!("workflow"));
    assert_eq!(
        uploaded.body["version"]["imports"],
        json!([
            "fluxo:action/contact",
            "fluxo:action/email",
            "fluxo:action/http"
        ])
    );
    let shown = api.get("/v1/workflows/lead-sync", &token).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["definition"], definition);

    // Submitted like any action: accepted at once, run in the background, applied once.
    let event = json!({
        "action": "lead-sync",
        "contact": {"id": "c-9", "fields": {"name": "Rui", "email": "rui@example.com", "phone": "+351 912 345 678"}},
        "message": {"text": "here you go"},
    });
    let accepted = api.submit(&token, event.clone()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let run = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["state"], json!("succeeded"), "{run:#}");
    assert_eq!(run["report"]["applied"], json!(true), "{run:#}");
    assert_eq!(
        run["report"]["outcome"]["output"]["deal_url"],
        json!("https://crm.example/deals/7")
    );
    assert_eq!(crm.received().len(), 1);
    let logs = run["report"]["logs"].to_string();
    assert!(
        logs.contains("step create_deal (http): next → tag_onboarded, HTTP 201"),
        "{logs}"
    );
    assert!(!run.to_string().contains("crm-secret-51"), "{run:#}");
    let emails: Vec<&Value> = run["report"]["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|effect| effect["kind"] == json!("send_email"))
        .collect();
    assert_eq!(emails.len(), 1, "{run:#}");
    assert_eq!(emails[0]["subject"], json!("New lead: Rui"));
    let contact = api.get("/v1/contacts/c-9", &token).await;
    assert_eq!(contact.status, StatusCode::OK, "{}", contact.body);
    assert_eq!(contact.body["fields"]["crm_deal_id"], json!("deal-7"));
    assert_eq!(contact.body["tags"], json!(["onboarded"]));

    // The action's own test runs it through the tenant's slots and applies nothing.
    let tested = api
        .json(
            Method::POST,
            "/v1/actions/lead-sync/test",
            Some(&token),
            json!({"contact": {"id": "c-10", "fields": {"name": "Eva", "email": "eva@example.com", "phone": "1"}}}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(
        tested.body["report"]["status"],
        json!("succeeded"),
        "{}",
        tested.body
    );
    assert_eq!(tested.body["report"]["applied"], json!(false));
    assert_eq!(
        tested.body["contact"]["after"]["tags"],
        json!(["onboarded"])
    );
    assert_eq!(
        api.get("/v1/contacts/c-10", &token).await.status,
        StatusCode::NOT_FOUND
    );

    // Disabled: new runs are refused with the reason.
    assert_eq!(
        api.post("/v1/actions/lead-sync/disable", &token)
            .await
            .status,
        StatusCode::OK
    );
    let refused = api.submit(&token, event).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["code"], json!("action_disabled"));
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("lead-sync")
    );

    // One name, one kind: a component is not a version of a workflow, nor the reverse.
    let component = api
        .upload(
            &token,
            "lead-sync",
            crate::support::guest(fluxo_tests::guests::CRM_LEAD),
        )
        .await;
    assert_eq!(component.status, StatusCode::CONFLICT, "{}", component.body);
    assert_eq!(component.body["code"], json!("kind_mismatch"));
    assert_eq!(
        api.upload(
            &token,
            "crm-lead",
            crate::support::guest(fluxo_tests::guests::CRM_LEAD)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let mut renamed = definition.clone();
    renamed["name"] = json!("crm-lead");
    let misnamed = api
        .json(
            Method::POST,
            "/v1/workflows/other/versions",
            Some(&token),
            renamed.clone(),
        )
        .await;
    assert_eq!(
        misnamed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        misnamed.body
    );
    assert!(
        misnamed.body["message"]
            .as_str()
            .unwrap()
            .contains("must be the same")
    );
    let workflow_over_component = api
        .json(
            Method::POST,
            "/v1/workflows/crm-lead/versions",
            Some(&token),
            renamed,
        )
        .await;
    assert_eq!(
        workflow_over_component.status,
        StatusCode::CONFLICT,
        "{}",
        workflow_over_component.body
    );
    assert_eq!(
        api.get("/v1/workflows/crm-lead", &token).await.status,
        StatusCode::NOT_FOUND
    );

    // Deleted by typing its name: the definition goes too.
    let deleted = api
        .call(
            Method::DELETE,
            "/v1/actions/lead-sync?confirm=lead-sync",
            Some(&token),
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(
        api.get("/v1/workflows/lead-sync", &token).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Job 2 end to end: a stored workflow's reply carries `{data[url]}` of the billing
/// answer to the platform, as a signed `conversation.reply` webhook sent after the run
/// committed; the chat's owner hears of a miss through `conversation.notify`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_workflow_replies_to_the_contact_through_a_signed_webhook() {
    let billing = Upstream::start(|request| {
        if request.uri.contains("document=000") {
            return (404, json!({"error": "no open slip"}).to_string());
        }
        (
            200,
            json!({"data": {"url": "https://pay.example/slip/2nd?id=7&t=x", "due_date": "2026-12-10"}})
                .to_string(),
        )
    })
    .await;
    let platform = Upstream::start(|_| (204, String::new())).await;
    let retired = Upstream::start(|_| (410, String::new())).await;
    let mut config = config_for(billing.addr.port());
    webhooks_on_loopback(&mut config);
    let api = api(config).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "BILLING_KEY", "billing-key-77")
        .await;
    let (_, secret) = api
        .add_endpoint(&token, &format!("{}/fluxo", platform.url()))
        .await;
    // A second endpoint that is gone: disabled on its first 410, and the messages still
    // reach the one that accepts them.
    let (gone_id, _) = api.add_endpoint(&token, &retired.url()).await;

    let definition = example("bank-slip.json", "https://billing.example", &billing.url());
    let uploaded = api
        .json(
            Method::POST,
            "/v1/workflows/bank-slip-second-copy/versions",
            Some(&token),
            definition,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    assert!(
        uploaded.body["version"]["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("fluxo:workflow/conversation")),
        "{}",
        uploaded.body
    );

    let mut ids = Vec::new();
    for (contact, document) in [("c-3", "123"), ("c-4", "000")] {
        let accepted = api
            .submit(
                &token,
                json!({
                    "action": "bank-slip-second-copy",
                    "contact": {"id": contact, "fields": {"document": document, "name": "Ana"}},
                }),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
        let id = accepted.body["run_id"].as_str().unwrap().to_owned();
        let run = api.wait(&token, &id).await;
        assert_eq!(run["state"], json!("succeeded"), "{run:#}");
        ids.push(id);
    }

    let conversation = || -> Vec<(Value, crate::support::Received)> {
        platform
            .received()
            .into_iter()
            .map(|r| (serde_json::from_slice::<Value>(&r.body).unwrap(), r))
            .filter(|(body, _)| body["type"].as_str().unwrap().starts_with("conversation."))
            .collect()
    };
    for _ in 0..400 {
        if conversation().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut seen: Vec<(String, String, String)> = conversation()
        .iter()
        .map(|(body, _)| {
            (
                body["data"]["contact"].as_str().unwrap().to_owned(),
                body["type"].as_str().unwrap().to_owned(),
                body["data"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "c-3".to_owned(),
                "conversation.reply".to_owned(),
                "Your slip, due 2026-12-10: https://pay.example/slip/2nd?id=7&t=x".to_owned()
            ),
            (
                "c-4".to_owned(),
                "conversation.notify".to_owned(),
                "No open slip for Ana (000): billing answered 404.".to_owned()
            ),
            (
                "c-4".to_owned(),
                "conversation.reply".to_owned(),
                "We could not find an open slip for 000. Someone from our team will answer you here."
                    .to_owned()
            ),
        ]
    );
    assert!(
        api.endpoint_disabled(&token, &gone_id).await,
        "the endpoint that answered 410 is disabled"
    );
    for (body, received) in conversation() {
        assert_eq!(body["data"]["tenant"], "acme");
        assert!(ids.contains(&body["data"]["run_id"].as_str().unwrap().to_owned()));
        let message_id = body["data"]["message_id"].as_str().unwrap();
        assert_eq!(received.header("webhook-id"), Some(message_id));
        assert!(
            ids.iter()
                .any(|id| message_id.starts_with(&format!("msg_{id}."))),
            "{message_id} names its run"
        );
        verify_signed(&secret, &received, unix_now()).unwrap();
    }
}

/// Job 3: a custom action (a component) used as a workflow step. It runs inside the
/// workflow's run and sees the step before's write; its writes commit with the
/// workflow's; its output feeds the next step. Disabled, it stops the workflow with the
/// reason; a definition naming a missing action is refused at upload.
#[tokio::test(flavor = "multi_thread")]
async fn an_action_step_runs_a_component_inside_the_workflow_and_stops_when_disabled() {
    // Under `/echo` the CRM answers with the token it was sent as the deal's id: what a
    // careless upstream does, and what a test's answer must never show.
    let crm = Upstream::start(|request| {
        if request.uri.starts_with("/refuse") {
            return (400, json!({"error": "no such pipeline"}).to_string());
        }
        let id = match request.uri.strip_prefix("/echo") {
            Some(rest) => format!("deal-{}", rest.split("token=").nth(1).unwrap_or_default()),
            None => "deal-42".to_owned(),
        };
        (201, json!({ "_id": id }).to_string())
    })
    .await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "crm_token", "crm-secret-9").await;
    let uploaded = api
        .upload(
            &token,
            "crm-lead",
            crate::support::guest(fluxo_tests::guests::CRM_LEAD),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);

    let workflow_at = |action: &str, crm_url: &str| {
        json!({
            "name": "onboard",
            "steps": [
                {"id": "full_name", "type": "set_field", "field": "name",
                 "value": "{{contact.fields.name}} Souza", "next": "crm"},
                {"id": "crm", "type": "action", "action": action,
                 "input": {"crm_url": crm_url}, "save_as": "deal", "next": "done"},
                {"id": "done", "type": "tag", "tag": "deal-{{vars.deal.deal_id}}"}
            ]
        })
    };
    let workflow = |action: &str| workflow_at(action, &crm.url());
    // A missing action is listed with the definition's own problems (here a template
    // naming an unknown variable), by upload and by validation alike.
    let mut broken = workflow("no-such-action");
    broken["steps"][2]["tag"] = json!("{{vars.nope}}");
    let missing = api
        .json(
            Method::POST,
            "/v1/workflows/onboard/versions",
            Some(&token),
            broken.clone(),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.body
    );
    let listed = missing.body["details"].to_string();
    assert!(
        listed.contains("no action named `no-such-action`") && listed.contains("vars.nope"),
        "{}",
        missing.body
    );
    let validated = api
        .json(Method::POST, "/v1/workflows/validate", Some(&token), broken)
        .await;
    assert_eq!(validated.body["valid"], json!(false), "{}", validated.body);
    assert!(
        validated.body["problems"]
            .to_string()
            .contains("no action named `no-such-action`"),
        "{}",
        validated.body
    );
    let stored = api
        .json(
            Method::POST,
            "/v1/workflows/onboard/versions",
            Some(&token),
            workflow("crm-lead"),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);

    let event = json!({"action": "onboard", "contact": {"id": "c-5", "fields": {"name": "Ana"}}});
    let accepted = api.submit(&token, event.clone()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let run = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["state"], json!("succeeded"), "{run:#}");
    assert_eq!(
        run["report"]["outcome"]["output"]["deal"]["deal_id"],
        json!("deal-42")
    );
    assert!(
        run["report"]["usage"]["fuel"].as_u64().unwrap() > 0,
        "the component's fuel counts in the run's usage: {run:#}"
    );
    // The log shows the path in order: the step before, the component's own line, its
    // step.
    let lines: Vec<String> = run["report"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["message"].as_str().unwrap().to_owned())
        .collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {lines:#?}"))
    };
    assert!(
        at("step full_name") < at("deal deal-42 created")
            && at("deal deal-42 created") < at("step crm"),
        "{lines:#?}"
    );
    let sent = crm.received();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json()["deal"]["name"],
        json!("Ana Souza"),
        "the component sees the step before's write"
    );
    assert!(!run.to_string().contains("crm-secret-9"), "{run:#}");
    let contact = api.get("/v1/contacts/c-5", &token).await;
    assert_eq!(contact.body["fields"]["crm_deal_id"], json!("deal-42"));
    assert_eq!(contact.body["fields"]["name"], json!("Ana Souza"));
    assert_eq!(contact.body["tags"], json!(["crm-synced", "deal-deal-42"]));

    // Disabled: every workflow using it stops, with the reason.
    let disabled = api.post("/v1/actions/crm-lead/disable", &token).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    let accepted = api.submit(&token, event).await;
    let run = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["state"], json!("failed"), "{run:#}");
    let error = &run["report"]["error"];
    assert_eq!(error["kind"], json!("action_disabled"), "{run:#}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("action `crm-lead` is disabled"),
        "{run:#}"
    );
    assert_eq!(crm.received().len(), 1, "a disabled action sends nothing");

    // A test runs the component live and answers with the trace, the variables and the
    // effects: every tenant secret is redacted from them, though no template read it.
    let enabled = api.post("/v1/actions/crm-lead/enable", &token).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let echoing = workflow_at("crm-lead", &format!("{}/echo", crm.url()));
    let contact = json!({"id": "c-6", "fields": {"name": "Eva"}});
    let tested = api
        .test_workflow(&token, json!({"workflow": echoing, "contact": contact}))
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(tested.body["succeeded"], json!(true), "{:#}", tested.body);
    assert_eq!(crm.received().len(), 2, "the test called the CRM live");
    let shown = tested.body.to_string();
    assert!(
        !shown.contains("crm-secret-9"),
        "a secret in the answer: {shown}"
    );
    assert_eq!(
        tested.body["vars"]["deal"]["deal_id"],
        json!("deal-[REDACTED]")
    );

    // With fixtures nothing may leave the host, so an action step is refused, not run.
    let offline = api
        .test_workflow(
            &token,
            json!({"workflow": echoing, "contact": contact, "fixtures": {}}),
        )
        .await;
    assert_eq!(offline.status, StatusCode::OK, "{}", offline.body);
    assert_eq!(offline.body["succeeded"], json!(false));
    assert!(
        offline.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fixtures"),
        "{:#}",
        offline.body
    );
    assert_eq!(crm.received().len(), 2, "fixtures sent nothing");

    // The action's own failure (the CRM refused it) takes `on_error`; nothing it
    // would have written is applied.
    let guarded = json!({
        "name": "onboard-guarded",
        "steps": [
            {"id": "crm", "type": "action", "action": "crm-lead",
             "input": {"crm_url": format!("{}/refuse", crm.url())},
             "next": "done", "on_error": "note"},
            {"id": "done", "type": "tag", "tag": "synced"},
            {"id": "note", "type": "set_field", "field": "crm_status", "value": "failed"}
        ]
    });
    let caught = api
        .test_workflow(&token, json!({"workflow": guarded, "contact": contact}))
        .await;
    assert_eq!(caught.status, StatusCode::OK, "{}", caught.body);
    assert_eq!(caught.body["succeeded"], json!(true), "{:#}", caught.body);
    assert_eq!(caught.body["trace"][0]["port"], json!("on_error"));
    assert!(
        caught.body["trace"][0]["outputs"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("400"),
        "{:#}",
        caught.body
    );
    let after = &caught.body["contact"]["after"];
    assert_eq!(after["fields"]["crm_status"], json!("failed"));
    assert!(after["fields"].get("crm_deal_id").is_none(), "{after}");
    assert_eq!(after["tags"], json!([]));
}

/// The validator loop (job 4) in a real `fluxo serve`: the question reaches the platform
/// before the run waits; the process is killed while the run waits and started again;
/// the contact's answers resume it (asked again at most twice); the department is filed.
#[tokio::test(flavor = "multi_thread")]
async fn the_reply_validator_waits_across_a_restart_and_resumes_on_the_contact_s_answer() {
    use crate::served::Served;
    let platform = Upstream::start(|_| (204, String::new())).await;
    let endpoint = format!("{}/fluxo", platform.url());
    let conversation = move || -> Vec<(String, String)> {
        platform
            .received()
            .into_iter()
            .filter_map(|received| {
                let body: Value = serde_json::from_slice(&received.body).ok()?;
                let kind = body["type"].as_str()?.strip_prefix("conversation.")?;
                Some((kind.to_owned(), body["data"]["text"].as_str()?.to_owned()))
            })
            .collect()
    };
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("fluxo.toml");
        std::fs::write(
            &config,
            "[server]\nlease_ms = 1000\nwebhook_private_cidrs = [\"127.0.0.1/32\"]\n",
        )
        .unwrap();
        let server = Served::start(&data, &config);
        let token = server.tenant("acme");
        let (status, body) = server.call(
            "POST",
            "/v1/webhooks",
            &token,
            json!({ "url": endpoint }).to_string().as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
        let definition = std::fs::read(examples().join("reply-validator.json")).unwrap();
        let (status, body) = server.call(
            "POST",
            "/v1/workflows/reply-validator/versions",
            &token,
            &definition,
        );
        assert_eq!(status, 201, "{body}");
        let run = json!({
            "action": "reply-validator",
            "contact": {"id": "c-9", "fields": {"name": "Ana"}},
        });
        let (status, body) = server.call("POST", "/v1/runs", &token, run.to_string().as_bytes());
        assert_eq!(status, 202, "{body}");
        let id = body["run_id"].as_str().unwrap().to_owned();
        let state_of = |server: &Served| -> Value {
            let (status, body) = server.call("GET", &format!("/v1/runs/{id}"), &token, b"");
            assert_eq!(status, 200, "{body}");
            body
        };
        let wait_for = |server: &Served, state: &str, segments: u64| -> Value {
            for _ in 0..400 {
                let run = state_of(server);
                if run["state"] == state && run["segments"].as_u64() == Some(segments) {
                    return run;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            panic!(
                "run never {state} after {segments} segment(s): {:#}",
                state_of(server)
            );
        };
        let heard = |count: usize| {
            for _ in 0..400 {
                if conversation().len() >= count {
                    return conversation();
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            panic!("the platform heard {:?}", conversation());
        };
        let run = wait_for(&server, "waiting", 1);
        assert!(run["waiting_until_ms"].as_i64().unwrap() > unix_now() * 1000 + 3_000_000);
        assert_eq!(run["attempts"][0]["outcome"], "waiting", "{run:#}");
        assert_eq!(heard(1)[0].0, "reply");

        // Killed while the run waits: nothing of it is in memory, all of it is stored.
        server.kill();
        let server = Served::start(&data, &config);
        let answer = |text: &str| {
            let (status, body) = server.call(
                "POST",
                "/v1/contacts/c-9/messages",
                &token,
                json!({ "text": text }).to_string().as_bytes(),
            );
            assert_eq!(status, 202, "{body}");
            body["resumed"].as_array().unwrap().len()
        };
        assert_eq!(answer("what?"), 1);
        wait_for(&server, "waiting", 2);
        assert_eq!(
            heard(2)[1],
            (
                "reply".to_owned(),
                "Please answer with the digit only: 1, 2 or 3.".to_owned()
            )
        );
        assert_eq!(answer("2"), 1);
        let run = wait_for(&server, "succeeded", 2);
        let outcomes: Vec<&str> = run["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|attempt| attempt["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["waiting", "waiting", "succeeded"], "{run:#}");
        assert_eq!(heard(3)[2].1, "Thanks! Department 2 will answer you here.");
        let (status, contact) = server.call("GET", "/v1/contacts/c-9", &token, b"");
        assert_eq!(status, 200, "{contact}");
        assert_eq!(contact["fields"]["department"], "2", "{contact}");
        // Nobody waits any more: a later message resumes nothing.
        assert_eq!(answer("3"), 0);
        assert_eq!(conversation().len(), 3, "{:?}", conversation());
    })
    .await
    .unwrap();
}

/// `POST /v1/contacts/{id}/messages` refuses what no platform sends (a bad id, a text
/// over 64 KiB, a long or control-character channel) and resumes nothing when nobody
/// waits; a test's sample replies meet the same text limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_contact_s_message_is_checked_and_resumes_nothing_when_nobody_waits() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    let post = |path: &str, body: Value| {
        let (api, token, path) = (&api, token.clone(), path.to_owned());
        async move { api.json(Method::POST, &path, Some(&token), body).await }
    };
    let nobody = post("/v1/contacts/c-1/messages", json!({"text": "hi"})).await;
    assert_eq!(nobody.status, StatusCode::ACCEPTED, "{}", nobody.body);
    assert_eq!(nobody.body["resumed"], json!([]));
    let huge = post(
        "/v1/contacts/c-1/messages",
        json!({"text": "x".repeat(64 * 1024 + 1)}),
    )
    .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", huge.body);
    assert_eq!(huge.body["code"], "message_too_large");
    for channel in ["w".repeat(65), "what\u{7}sapp".to_owned()] {
        let bad = post(
            "/v1/contacts/c-1/messages",
            json!({"text": "hi", "channel": channel}),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert_eq!(bad.body["code"], "invalid_channel");
    }
    let unknown = post("/v1/contacts/c-1/messages", json!({"text": "hi", "x": 1})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    let wait = json!({"name": "w", "steps": [
        {"id": "answer", "type": "wait_for_reply", "next": "seen"},
        {"id": "seen", "type": "set_variable", "name": "seen", "value": "{{vars.reply}}"}
    ]});
    let tested = api
        .test_workflow(
            &token,
            json!({"workflow": wait, "contact": {"id": "c-1"}, "replies": ["x".repeat(64 * 1024 + 1)]}),
        )
        .await;
    assert_eq!(
        tested.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        tested.body
    );
    let tested = api
        .test_workflow(
            &token,
            json!({"workflow": wait, "contact": {"id": "c-1"},
                   "message": {"text": "start", "channel": "telegram"}, "replies": ["2"]}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(tested.body["vars"]["seen"], "2", "{:#}", tested.body);
    assert!(tested.body.get("waiting").is_none(), "{:#}", tested.body);
    let tested = api
        .test_workflow(&token, json!({"workflow": wait, "contact": {"id": "c-1"}}))
        .await;
    assert_eq!(tested.body["waiting"], "answer", "{:#}", tested.body);
    assert_eq!(tested.body["succeeded"], true, "{:#}", tested.body);
}

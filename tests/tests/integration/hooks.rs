//! Inbound hooks and runs that start runs, through the API against loopback servers:
//! job 5 (the helpdesk bridge) end to end, a hook's signature and deduplication, and
//! `trigger_workflow`'s once-per-commit, depth and disabled-target rules.

use std::time::Duration;

use bytes::Bytes;
use fluxo_orchestrator::signing;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::server::{Answer, Api, api, config_for};
use crate::support::{Upstream, guest, unix_now, webhooks_on_loopback};
use crate::workflows::example;

/// Posts `body` to `/v1/hooks/acme/{hook}` signed with `secret` (Standard Webhooks).
async fn call_hook(api: &Api, hook: &str, secret: &str, id: &str, body: &Value) -> Answer {
    let body = body.to_string();
    let timestamp = unix_now();
    let signature = signing::sign(&[secret.to_owned()], id, timestamp, body.as_bytes()).unwrap();
    api.call_with(
        Method::POST,
        &format!("/v1/hooks/acme/{hook}"),
        None,
        &[
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        Bytes::from(body),
    )
    .await
}

/// Polls run `id` until it is in `state` with `segments` committed segments.
async fn wait_until(api: &Api, token: &str, id: &str, state: &str, segments: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = api.get(&format!("/v1/runs/{id}"), token).await.body;
        if last["state"] == state && last["segments"].as_u64() == Some(segments) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {id} never {state} after {segments} segment(s): {last:#}");
}

/// The runs of `action`, oldest first, once there are `count` and all are final.
async fn finished_runs(api: &Api, token: &str, action: &str, count: usize) -> Vec<Value> {
    let mut runs = Vec::new();
    for _ in 0..400 {
        let listed = api
            .get(&format!("/v1/runs?action={action}&limit=100"), token)
            .await
            .body;
        runs = listed["runs"].as_array().cloned().unwrap_or_default();
        let done = runs.iter().all(|run| {
            matches!(
                run["state"].as_str(),
                Some("succeeded" | "failed" | "dead" | "cancelled")
            )
        });
        if runs.len() >= count && done {
            runs.reverse();
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{action} has {} run(s), not {count} finished: {runs:#?}",
        runs.len()
    );
}

/// What the platform endpoint heard: (type, contact, text, service) per message.
fn heard(platform: &Upstream) -> Vec<(String, String, String, String)> {
    platform
        .received()
        .into_iter()
        .filter_map(|received| {
            let body: Value = serde_json::from_slice(&received.body).ok()?;
            let kind = body["type"].as_str()?.strip_prefix("conversation.")?;
            let data = &body["data"];
            Some((
                kind.to_owned(),
                data["contact"].as_str()?.to_owned(),
                data["text"].as_str()?.to_owned(),
                data["service"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

async fn hear(platform: &Upstream, count: usize) -> Vec<(String, String, String, String)> {
    for _ in 0..400 {
        if heard(platform).len() >= count {
            return heard(platform);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the platform heard only {:#?}", heard(platform));
}

async fn contact(api: &Api, token: &str, id: &str) -> Value {
    let answer = api.get(&format!("/v1/contacts/{id}"), token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn say(api: &Api, token: &str, contact: &str, text: &str) -> usize {
    let answer = api
        .json(
            Method::POST,
            &format!("/v1/contacts/{contact}/messages"),
            Some(token),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["resumed"].as_array().unwrap().len()
}

async fn upload_workflow(api: &Api, token: &str, name: &str, definition: Value) {
    let uploaded = api
        .json(
            Method::POST,
            &format!("/v1/workflows/{name}/versions"),
            Some(token),
            definition,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
}

/// Job 5: the contact asks for a human; the bridge opens a ticket (the mapping in
/// state, the contact tagged), hands the conversation over and forwards what the contact
/// writes; the helpdesk's signed webhook brings the agent's reply back to the contact
/// and, on close, returns the contact to the bot.
#[tokio::test(flavor = "multi_thread")]
async fn the_helpdesk_bridge_hands_the_chat_over_forwards_both_ways_and_returns_it_on_close() {
    let helpdesk = Upstream::start(|request| {
        if request.uri == "/api/tickets" {
            (201, json!({"id": 4711}).to_string())
        } else {
            (201, json!({"ok": true}).to_string())
        }
    })
    .await;
    let platform = Upstream::start(|_| (204, String::new())).await;
    let mut config = config_for(helpdesk.addr.port());
    webhooks_on_loopback(&mut config);
    let api = api(config).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "HELPDESK_TOKEN", "desk-token-1")
        .await;
    api.add_endpoint(&token, &format!("{}/fluxo", platform.url()))
        .await;
    let uploaded = api
        .upload(
            &token,
            "helpdesk-bridge",
            guest(fluxo_tests::guests::HELPDESK_BRIDGE),
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    for name in ["helpdesk-to-contact", "helpdesk-events", "helpdesk-handoff"] {
        let definition = example(
            &format!("{name}.json"),
            "https://helpdesk.example",
            &helpdesk.url(),
        );
        upload_workflow(&api, &token, name, definition).await;
    }
    let hook = api
        .json(
            Method::PUT,
            "/v1/hooks/helpdesk",
            Some(&token),
            json!({"workflow": "helpdesk-events"}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    assert_eq!(hook.body["path"], "/v1/hooks/acme/helpdesk");
    let secret = hook.body["secret"].as_str().unwrap().to_owned();

    // The contact asks for a human: a ticket, the handoff, a word to the contact.
    let accepted = api
        .submit(
            &token,
            json!({
                "action": "helpdesk-handoff",
                "contact": {"id": "c-7", "fields": {"name": "Ana"}},
                "message": {"text": "I want to talk to a person"},
            }),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let handoff_run = accepted.body["run_id"].as_str().unwrap().to_owned();
    wait_until(&api, &token, &handoff_run, "waiting", 1).await;
    let created = helpdesk.received();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].uri, "/api/tickets");
    assert_eq!(
        created[0].header("authorization"),
        Some("Bearer desk-token-1")
    );
    assert_eq!(
        created[0].json()["ticket"]["requester"],
        json!({"name": "Ana", "external_id": "c-7"})
    );
    assert_eq!(
        created[0].json()["ticket"]["comment"]["body"],
        "I want to talk to a person"
    );
    let said = hear(&platform, 2).await;
    assert_eq!(
        said[..2],
        [
            (
                "handoff".into(),
                "c-7".into(),
                "Ticket 4711".into(),
                "helpdesk".into()
            ),
            (
                "reply".into(),
                "c-7".into(),
                "You are talking to our support team now (ticket 4711). Write here and an agent will answer."
                    .into(),
                String::new()
            ),
        ]
    );
    let ana = contact(&api, &token, "c-7").await;
    assert!(
        ana["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("human-attendance")),
        "{ana}"
    );
    assert_eq!(ana["fields"]["helpdesk_ticket"], "4711");

    // What the contact writes goes to the ticket.
    assert_eq!(
        say(&api, &token, "c-7", "My card was charged twice").await,
        1
    );
    wait_until(&api, &token, &handoff_run, "waiting", 2).await;
    let forwarded = helpdesk.received();
    assert_eq!(forwarded.len(), 2);
    assert_eq!(forwarded[1].uri, "/api/tickets/4711/comments");
    assert_eq!(
        forwarded[1].json(),
        json!({"comment": {"body": "My card was charged twice", "author": "requester"}})
    );

    // The agent's reply arrives by the helpdesk's signed webhook and reaches the contact.
    let reply = json!({"event": "agent_reply", "ticket": {"id": "4711"}, "text": "We refunded the second charge."});
    let started = call_hook(&api, "helpdesk", &secret, "evt_1", &reply).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let repeated = call_hook(&api, "helpdesk", &secret, "evt_1", &reply).await;
    assert_eq!(repeated.status, StatusCode::OK, "{}", repeated.body);
    assert_eq!(repeated.body["run_id"], started.body["run_id"]);
    assert_eq!(repeated.body["deduplicated"], true);
    let events = finished_runs(&api, &token, "helpdesk-events", 1).await;
    assert_eq!(events[0]["state"], "succeeded", "{:#}", events[0]);
    let relayed = finished_runs(&api, &token, "helpdesk-to-contact", 1).await;
    assert_eq!(relayed[0]["state"], "succeeded", "{:#}", relayed[0]);
    let said = hear(&platform, 3).await;
    assert_eq!(
        said[2],
        (
            "reply".into(),
            "c-7".into(),
            "We refunded the second charge.".into(),
            String::new()
        )
    );

    // The ticket closes: the mapping is forgotten and the contact is back with the bot.
    let closed = json!({"event": "ticket_closed", "ticket": {"id": "4711"}});
    let started = call_hook(&api, "helpdesk", &secret, "evt_2", &closed).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let relayed = finished_runs(&api, &token, "helpdesk-to-contact", 2).await;
    assert_eq!(relayed[1]["state"], "succeeded", "{:#}", relayed[1]);
    let said = hear(&platform, 5).await;
    assert_eq!(
        said[3..5],
        [
            (
                "handoff".into(),
                "c-7".into(),
                "Ticket 4711 closed".into(),
                "bot".into()
            ),
            (
                "reply".into(),
                "c-7".into(),
                "Our support team closed your ticket. You are back with the bot: how else can I help?"
                    .into(),
                String::new()
            ),
        ]
    );
    let ana = contact(&api, &token, "c-7").await;
    assert!(
        !ana["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("human-attendance")),
        "{ana}"
    );

    // The bridge's wait ends on the contact's next message, forwarding nothing.
    assert_eq!(say(&api, &token, "c-7", "thanks!").await, 1);
    wait_until(&api, &token, &handoff_run, "succeeded", 2).await;
    assert_eq!(
        helpdesk.received().len(),
        2,
        "nothing more reached the helpdesk"
    );
    assert_eq!(heard(&platform).len(), 5, "{:#?}", heard(&platform));
}

/// A hook answers only calls signed with its own secret, within the timestamp
/// tolerance, under its own tenant's name (an unknown tenant or hook answers as a bad
/// signature does: names cannot be probed); refuses what is not JSON, too large (not
/// read past 256 KiB), or names no contact where its path says; is changed without a
/// new secret and deleted for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_refuses_unsigned_stale_and_malformed_calls() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    upload_workflow(
        &api,
        &token,
        "note",
        json!({"name": "note", "inputs": ["payload"], "steps": [
            {"id": "tag", "type": "tag", "tag": "seen-{{vars.payload.n}}"}
        ]}),
    )
    .await;
    let refused = api
        .json(
            Method::PUT,
            "/v1/hooks/desk",
            Some(&token),
            json!({"workflow": "nothing-here"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    let bad_path = api
        .json(
            Method::PUT,
            "/v1/hooks/desk",
            Some(&token),
            json!({"workflow": "note", "contact_path": "a[["}),
        )
        .await;
    assert_eq!(
        bad_path.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_path.body
    );
    let created = api
        .json(
            Method::PUT,
            "/v1/hooks/desk",
            Some(&token),
            json!({"workflow": "note", "contact_path": "who.id"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let payload = json!({"who": {"id": "c-1"}, "n": 1});
    // Signed with another secret, unsigned, or stale: 401, and no run.
    let other = signing::new_secret().unwrap();
    let forged = call_hook(&api, "desk", &other, "e1", &payload).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);
    assert_eq!(forged.body["code"], "invalid_signature");
    let unsigned = api
        .call(
            Method::POST,
            "/v1/hooks/acme/desk",
            None,
            Bytes::from(payload.to_string()),
        )
        .await;
    assert_eq!(
        unsigned.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        unsigned.body
    );
    let stale_at = unix_now() - 600;
    let body = payload.to_string();
    let stale = api
        .call_with(
            Method::POST,
            "/v1/hooks/acme/desk",
            None,
            &[
                ("webhook-id", "e2".to_owned()),
                ("webhook-timestamp", stale_at.to_string()),
                (
                    "webhook-signature",
                    signing::sign(
                        std::slice::from_ref(&secret),
                        "e2",
                        stale_at,
                        body.as_bytes(),
                    )
                    .unwrap(),
                ),
            ],
            Bytes::from(body),
        )
        .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.body);
    // No such hook, or the hook under another tenant's name: 401, like a bad signature.
    let unknown = call_hook(&api, "nope", &secret, "e3", &payload).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{}", unknown.body);
    assert_eq!(unknown.body, forged.body);
    api.tenant("globex").await;
    let body = payload.to_string();
    let timestamp = unix_now();
    let signed = |id: &str, body: &str| {
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signing::sign(
                    std::slice::from_ref(&secret),
                    id,
                    timestamp,
                    body.as_bytes(),
                )
                .unwrap(),
            ),
        ]
    };
    let elsewhere = api
        .call_with(
            Method::POST,
            "/v1/hooks/globex/desk",
            None,
            &signed("e3b", &body),
            Bytes::from(body.clone()),
        )
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        elsewhere.body
    );
    // Signed but not JSON: 400; over 256 KiB: 413, a JSON error, nothing started.
    let not_json = api
        .call_with(
            Method::POST,
            "/v1/hooks/acme/desk",
            None,
            &signed("e3c", "{nope"),
            Bytes::from("{nope"),
        )
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_json.body
    );
    assert_eq!(not_json.body["code"], "invalid_json");
    let huge = json!({"who": {"id": "c-1"}, "pad": "x".repeat(300 << 10)}).to_string();
    let too_large = api
        .call_with(
            Method::POST,
            "/v1/hooks/acme/desk",
            None,
            &signed("e3d", &huge),
            Bytes::from(huge.clone()),
        )
        .await;
    assert_eq!(
        too_large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_large.body
    );
    assert_eq!(too_large.body["code"], "payload_too_large");
    // Signed but without the contact where the hook's path says: 422.
    let nobody = call_hook(&api, "desk", &secret, "e4", &json!({"n": 2})).await;
    assert_eq!(
        nobody.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        nobody.body
    );
    assert_eq!(nobody.body["code"], "no_contact");
    let runs = api.get("/v1/runs?action=note", &token).await;
    assert_eq!(runs.body["runs"], json!([]), "{}", runs.body);

    let started = call_hook(&api, "desk", &secret, "e5", &payload).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let run = api
        .wait(&token, started.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let tags = contact(&api, &token, "c-1").await["tags"].clone();
    assert_eq!(tags, json!(["seen-1"]));

    // A chat message cut inside an emoji (an unpaired surrogate escape) is read as the
    // API reads events: U+FFFD and a warning, not a 400 the sender would retry forever.
    let cut = r#"{"who": {"id": "c-1"}, "n": "oi \ud83d"}"#;
    let lenient = api
        .call_with(
            Method::POST,
            "/v1/hooks/acme/desk",
            None,
            &signed("e5b", cut),
            Bytes::from(cut),
        )
        .await;
    assert_eq!(lenient.status, StatusCode::ACCEPTED, "{}", lenient.body);
    let run = api
        .wait(&token, lenient.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(
        run["event"]["input"]["payload"]["n"], "oi \u{fffd}",
        "{run:#}"
    );
    assert!(
        run["event"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("surrogate"),
        "{run:#}"
    );

    // Changing the hook keeps its secret (none is shown); deleting it ends it.
    let changed = api
        .json(
            Method::PUT,
            "/v1/hooks/desk",
            Some(&token),
            json!({"workflow": "note"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert!(changed.body.get("secret").is_none(), "{}", changed.body);
    let listed = api.get("/v1/hooks", &token).await;
    assert_eq!(listed.body["hooks"][0]["name"], "desk", "{}", listed.body);
    assert!(listed.body.to_string().find("whsec_").is_none());
    let again = call_hook(&api, "desk", &secret, "e6", &json!({"n": 3})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let deleted = api
        .call(Method::DELETE, "/v1/hooks/desk", Some(&token), Bytes::new())
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let gone = call_hook(&api, "desk", &secret, "e7", &payload).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED, "{}", gone.body);
}

/// `trigger_workflow`: the started run is queued by the commit of the run that asked
/// (once, about the contact it names, with its input); a failed run starts nothing; a
/// disabled target stops the step with the reason; a workflow that starts itself stops
/// at the depth bound, and one that starts itself three times stops at the tree's cap;
/// a test shows the run it would start and starts none.
#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_starts_its_run_once_on_commit_and_a_self_starting_chain_stops() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    upload_workflow(
        &api,
        &token,
        "greet",
        json!({"name": "greet", "inputs": ["who"], "steps": [
            {"id": "mark", "type": "set_field", "field": "greeted_by", "value": "{{vars.who}}"}
        ]}),
    )
    .await;
    let kickoff = json!({"name": "kickoff", "steps": [
        {"id": "start", "type": "trigger_workflow", "workflow": "greet", "contact": "c-2",
         "input": {"who": "{{contact.fields.name}}"}, "next": "done"},
        {"id": "done", "type": "tag", "tag": "kicked"}
    ]});
    upload_workflow(&api, &token, "kickoff", kickoff.clone()).await;
    let accepted = api
        .submit(
            &token,
            json!({"action": "kickoff", "contact": {"id": "c-1", "fields": {"name": "Ana"}}}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let parent = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(parent["state"], "succeeded", "{parent:#}");
    let greeted = finished_runs(&api, &token, "greet", 1).await;
    assert_eq!(greeted.len(), 1, "{greeted:#?}");
    assert_eq!(greeted[0]["state"], "succeeded", "{:#}", greeted[0]);
    assert_eq!(
        contact(&api, &token, "c-2").await["fields"]["greeted_by"],
        "Ana"
    );

    // A run that fails after its trigger commits nothing: no run is started.
    upload_workflow(
        &api,
        &token,
        "broken",
        json!({"name": "broken", "steps": [
            {"id": "start", "type": "trigger_workflow", "workflow": "greet", "next": "call"},
            {"id": "call", "type": "http", "method": "GET", "url": "https://not-allowed.example/nowhere"}
        ]}),
    )
    .await;
    let accepted = api
        .submit(
            &token,
            json!({"action": "broken", "contact": {"id": "c-3"}}),
        )
        .await;
    let failed = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(finished_runs(&api, &token, "greet", 1).await.len(), 1);

    // A disabled target stops the step with the reason.
    let disabled = api.post("/v1/actions/greet/disable", &token).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    let accepted = api
        .submit(
            &token,
            json!({"action": "kickoff", "contact": {"id": "c-4", "fields": {"name": "Caio"}}}),
        )
        .await;
    let stopped = api
        .wait(&token, accepted.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(stopped["state"], "failed", "{stopped:#}");
    assert_eq!(stopped["error_kind"], "action_disabled", "{stopped:#}");
    assert!(
        stopped["report"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`greet` is disabled"),
        "{stopped:#}"
    );

    // A test shows the run it would start, and starts none.
    let enabled = api.post("/v1/actions/greet/enable", &token).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let tested = api
        .test_workflow(
            &token,
            json!({"workflow": kickoff, "contact": {"id": "c-5", "fields": {"name": "Bia"}}}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert_eq!(tested.body["runs"][0]["action"], "greet", "{}", tested.body);
    assert_eq!(tested.body["runs"][0]["contact"], "c-2");
    assert_eq!(tested.body["runs"][0]["input"], json!({"who": "Bia"}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(finished_runs(&api, &token, "greet", 1).await.len(), 1);

    // A workflow that starts itself: runs at depths 0 to 8, the last refused.
    upload_workflow(
        &api,
        &token,
        "chain",
        json!({"name": "chain", "steps": [
            {"id": "again", "type": "trigger_workflow", "workflow": "chain"}
        ]}),
    )
    .await;
    let accepted = api.submit(&token, json!({"action": "chain"})).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let chain = finished_runs(&api, &token, "chain", 9).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let chain_now = finished_runs(&api, &token, "chain", 9).await;
    assert_eq!(chain_now.len(), 9, "the chain stopped: {chain_now:#?}");
    let states: Vec<&str> = chain
        .iter()
        .map(|run| run["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[..8], ["succeeded"; 8], "{chain:#?}");
    assert_eq!(states[8], "failed", "{chain:#?}");
    assert!(
        chain[8]["report"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chain of runs"),
        "{:#}",
        chain[8]
    );

    // Three starts per run: the tree stops at its cap, not at 3^8 runs.
    upload_workflow(
        &api,
        &token,
        "fan",
        json!({"name": "fan", "steps": [
            {"id": "a", "type": "trigger_workflow", "workflow": "fan", "next": "b"},
            {"id": "b", "type": "trigger_workflow", "workflow": "fan", "next": "c"},
            {"id": "c", "type": "trigger_workflow", "workflow": "fan"}
        ]}),
    )
    .await;
    let accepted = api.submit(&token, json!({"action": "fan"})).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let cap = usize::try_from(fluxo_core::MAX_RUNS_PER_TREE).unwrap();
    // 1 + 3 + 9 + 27 = 40 runs fit; the 81 the fourth level asks would not.
    let fan = finished_runs(&api, &token, "fan", 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fan_now = finished_runs(&api, &token, "fan", 40).await;
    assert_eq!(fan_now.len(), fan.len(), "the tree stopped growing");
    assert!(fan_now.len() <= cap + 1, "{} runs", fan_now.len());
    let refused = fan_now
        .iter()
        .filter(|run| {
            run["report"]["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("run tree"))
        })
        .count();
    assert!(refused > 0, "{fan_now:#?}");
}

//! The durable scheduler through the API: idempotent submits, retries and dead runs,
//! cancellation, fairness between tenants, tests through the tenant's slots, graceful
//! shutdown, signed completion webhooks, and stored settings that fail closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fluxo_tests::guests;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::server::{Api, api, config_for};
use crate::support::{Upstream, guest, slow_server, unix_now, verify_signed, webhooks_on_loopback};

/// Submits `body` with an `Idempotency-Key`.
async fn submit_with_key(api: &Api, token: &str, body: &Value, key: &str) -> (StatusCode, Value) {
    let request = http::Request::builder()
        .method(Method::POST)
        .uri("/v1/runs")
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key)
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = api.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// A CRM whose answers follow `statuses` in order (then 200).
async fn scripted_crm(statuses: &'static [u16]) -> (Upstream, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let crm = Upstream::start(move |_| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        let status = statuses.get(call).copied().unwrap_or(200);
        (status, json!({ "_id": format!("deal-{call}") }).to_string())
    })
    .await;
    (crm, calls)
}

async fn crm_lead_with_fast_retries(api: &Api, token: &str, max_attempts: u32) {
    api.put_secret(token, "crm_token", "crm-secret-7f3a").await;
    let uploaded = api.upload(token, "crm-lead", guest(guests::CRM_LEAD)).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let policy = api
        .json(
            Method::PUT,
            "/v1/actions/crm-lead/retry",
            Some(token),
            json!({ "max_attempts": max_attempts, "initial_delay_ms": 20, "multiplier": 2.0, "max_delay_ms": 100 }),
        )
        .await;
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.body);
}

fn lead(crm: &Upstream) -> Value {
    json!({
        "action": "crm-lead",
        "contact": { "id": "c1", "fields": { "name": "Ana" } },
        "input": { "crm_url": crm.url() },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_returns_the_same_run() {
    let (crm, calls) = scripted_crm(&[]).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    crm_lead_with_fast_retries(&api, &token, 1).await;
    let (first_status, first) = submit_with_key(&api, &token, &lead(&crm), "order-7").await;
    let (second_status, second) = submit_with_key(&api, &token, &lead(&crm), "order-7").await;
    assert_eq!(
        (first_status, second_status),
        (StatusCode::ACCEPTED, StatusCode::OK)
    );
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(second["deduplicated"], true);
    api.wait(&token, first["run_id"].as_str().unwrap()).await;
    let runs = api.get("/v1/runs", &token).await;
    assert_eq!(runs.body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one run, one call");
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_failures_are_retried_until_the_run_succeeds() {
    let (crm, calls) = scripted_crm(&[503, 503]).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    crm_lead_with_fast_retries(&api, &token, 5).await;
    let run = api.submit(&token, lead(&crm)).await;
    let finished = api.wait(&token, run.body["run_id"].as_str().unwrap()).await;
    assert_eq!(finished["state"], "succeeded", "{finished:#}");
    assert_eq!(finished["attempt"], 3);
    let outcomes: Vec<&str> = finished["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["action_error", "action_error", "succeeded"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Effects were committed once, by the attempt that succeeded.
    let contact = api.get("/v1/contacts/c1", &token).await;
    assert_eq!(contact.body["fields"]["crm_deal_id"], "deal-2");
    // Every call after the first was a repeat of the same request: same key.
    let keys: Vec<String> = crm
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_owned())
        .collect();
    assert!(keys.iter().all(|k| k.ends_with(":1")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_is_not_retried_and_the_last_attempt_ends_dead() {
    let (crm, calls) = scripted_crm(&[400]).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    crm_lead_with_fast_retries(&api, &token, 2).await;
    let run = api.submit(&token, lead(&crm)).await;
    let failed = api.wait(&token, run.body["run_id"].as_str().unwrap()).await;
    assert_eq!(
        (failed["state"].clone(), failed["attempt"].clone()),
        (json!("failed"), json!(1))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 400 is not retried");

    let (always, _) = scripted_crm(&[503, 503, 503, 503, 503]).await;
    let api = crate::server::api(config_for(always.addr.port())).await;
    let token = api.tenant("acme").await;
    crm_lead_with_fast_retries(&api, &token, 2).await;
    let run = api.submit(&token, lead(&always)).await;
    let id = run.body["run_id"].as_str().unwrap().to_owned();
    let dead = api.wait(&token, &id).await;
    assert_eq!(dead["state"], "dead", "{dead:#}");
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(dead["report"]["error"]["kind"], "action_error");
    assert!(api.get("/v1/contacts/c1", &token).await.status == StatusCode::NOT_FOUND);
    let retried = api.post(&format!("/v1/runs/{id}/retry"), &token).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    let again = api.wait(&token, &id).await;
    assert_eq!(again["state"], "dead", "still failing upstream: dead again");
    let not_dead = api.post(&format!("/v1/runs/{id}/retry"), &token).await;
    assert_eq!(not_dead.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_queued_and_a_running_run_and_applies_nothing() {
    let mut config = config_for(9);
    config.limits.deadline_ms = 10_000;
    config.limits.fuel = u64::MAX / 2;
    config.server.workers = 1;
    config.server.per_tenant = 1;
    let api = api(config).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "spin", guest(guests::SPIN)).await;
    let running = api.submit(&token, json!({ "action": "spin" })).await;
    let queued = api.submit(&token, json!({ "action": "spin" })).await;
    let running = running.body["run_id"].as_str().unwrap().to_owned();
    let queued = queued.body["run_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if api.get(&format!("/v1/runs/{running}"), &token).await.body["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = api.post(&format!("/v1/runs/{queued}/cancel"), &token).await;
    assert_eq!(
        (cancelled.status, cancelled.body["state"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let started = std::time::Instant::now();
    let asked = api
        .post(&format!("/v1/runs/{running}/cancel"), &token)
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    let stopped = api.wait(&token, &running).await;
    assert_eq!(stopped["state"], "cancelled", "{stopped:#}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at once, not at its deadline"
    );
    assert_eq!(stopped["report"]["applied"], false);
    let never = api.get(&format!("/v1/runs/{queued}"), &token).await;
    assert_eq!(
        (never.body["state"].clone(), never.body["attempt"].clone()),
        (json!("cancelled"), json!(0))
    );
    let again = api.post(&format!("/v1/runs/{queued}/cancel"), &token).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_tenant_does_not_hold_the_others() {
    // The tenant-cap-head-of-line case: two workers, one run per tenant at once; tenant
    // a's runs each wait 1.5 s on an upstream.
    let slow = slow_server(Duration::from_millis(1_500), 200, "{}").await;
    let mut config = config_for(slow.port());
    config
        .http
        .tenant_allow
        .insert("bravo".into(), config.http.tenant_allow["acme"].clone());
    config.server.workers = 2;
    config.server.per_tenant = 1;
    let api = api(config).await;
    let acme = api.tenant("acme").await;
    let bravo = api.tenant("bravo").await;
    for token in [&acme, &bravo] {
        api.upload(token, "fetch", guest(guests::FETCH)).await;
    }
    let body = json!({ "action": "fetch", "input": { "url": format!("http://{slow}/") } });
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(
            api.submit(&acme, body.clone()).await.body["run_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let quick = api.submit(&bravo, body).await.body["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let quick = api.wait(&bravo, &quick).await;
    let second_of_acme = api.wait(&acme, &busy[1]).await;
    assert_eq!(quick["state"], "succeeded");
    assert!(
        quick["finished_ms"].as_i64() < second_of_acme["finished_ms"].as_i64(),
        "bravo's run waited behind acme's backlog: {quick:#} {second_of_acme:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_takes_one_of_the_tenants_slots() {
    let mut config = config_for(9);
    config.limits.deadline_ms = 1_000;
    config.limits.fuel = u64::MAX / 2;
    config.server.per_tenant = 1;
    let api = api(config).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "spin", guest(guests::SPIN)).await;
    api.upload(&token, "greeter", guest(guests::STD_IO)).await;
    let spinner = api.submit(&token, json!({ "action": "spin" })).await;
    let spinner = spinner.body["run_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if api.get(&format!("/v1/runs/{spinner}"), &token).await.body["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tested = api
        .json(
            Method::POST,
            "/v1/actions/greeter/test",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    let spun = api.wait(&token, &spinner).await;
    let test_id = tested.body["report"]["run_id"].as_str().unwrap();
    let test_run = api.get(&format!("/v1/runs/{test_id}"), &token).await;
    assert!(
        test_run.body["started_ms"].as_i64() >= spun["finished_ms"].as_i64(),
        "the test waited for the tenant's one slot"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_running_runs_finish() {
    let slow = slow_server(Duration::from_millis(800), 200, "{}").await;
    let api = api(config_for(slow.port())).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "fetch", guest(guests::FETCH)).await;
    let run = api
        .submit(
            &token,
            json!({ "action": "fetch", "input": { "url": format!("http://{slow}/") } }),
        )
        .await;
    let id = run.body["run_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if api.get(&format!("/v1/runs/{id}"), &token).await.body["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.server.shutdown().await;
    let finished = api.get(&format!("/v1/runs/{id}"), &token).await;
    assert_eq!(finished.body["state"], "succeeded", "{}", finished.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_gives_back_the_runs_that_do_not_finish_in_time() {
    let slow = slow_server(Duration::from_secs(4), 200, "{}").await;
    let mut config = config_for(slow.port());
    config.server.shutdown_grace_seconds = 0;
    let api = api(config).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "fetch", guest(guests::FETCH)).await;
    let run = api
        .submit(
            &token,
            json!({ "action": "fetch", "input": { "url": format!("http://{slow}/") } }),
        )
        .await;
    let id = run.body["run_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if api.get(&format!("/v1/runs/{id}"), &token).await.body["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.server.shutdown().await;
    let released = api.get(&format!("/v1/runs/{id}"), &token).await;
    assert_eq!(
        (
            released.body["state"].clone(),
            released.body["attempt"].clone()
        ),
        (json!("queued"), json!(0)),
        "{}",
        released.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_webhooks_are_signed_and_a_gone_endpoint_is_disabled() {
    let (crm, _) = scripted_crm(&[]).await;
    let hook = Upstream::start_with_headers(|_| (204, String::new(), vec![])).await;
    let gone = Upstream::start_with_headers(|_| (410, String::new(), vec![])).await;
    let mut config = config_for(crm.addr.port());
    webhooks_on_loopback(&mut config);
    let api = api(config).await;
    let token = api.tenant("acme").await;
    let (_, secret) = api
        .add_endpoint(&token, &format!("{}/hook", hook.url()))
        .await;
    assert!(secret.starts_with("whsec_"));
    let (gone_id, _) = api.add_endpoint(&token, &gone.url()).await;
    crm_lead_with_fast_retries(&api, &token, 1).await;
    let run = api.submit(&token, lead(&crm)).await;
    let id = run.body["run_id"].as_str().unwrap().to_owned();
    api.wait(&token, &id).await;
    for _ in 0..200 {
        if !hook.received().is_empty() && !gone.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivered = &hook.received()[0];
    let body: Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(body["type"], "run.succeeded");
    assert_eq!(body["data"]["run_id"], id.as_str());
    let now = unix_now();
    verify_signed(&secret, delivered, now).unwrap();
    // A replay an hour later is refused by the verifier.
    assert!(verify_signed(&secret, delivered, now + 3_600).is_err());
    assert!(
        api.endpoint_disabled(&token, &gone_id).await,
        "the endpoint that answered 410 was not disabled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_limit_override_that_does_not_decode_refuses_the_run() {
    let api = api(config_for(9)).await;
    let token = api.tenant("acme").await;
    api.upload(&token, "greeter", guest(guests::STD_IO)).await;
    {
        let connection = rusqlite::Connection::open(api.dir.path().join("fluxo.db")).unwrap();
        connection
            .execute(
                "UPDATE actions SET limits = '{\"fuel_units\": 1}' WHERE name = 'greeter'",
                [],
            )
            .unwrap();
    }
    let refused = api.submit(&token, json!({ "action": "greeter" })).await;
    assert_eq!(
        refused.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["code"], "corrupt_record");
    let runs = api.get("/v1/runs", &token).await;
    assert_eq!(runs.body["runs"], json!([]), "nothing was accepted");
}

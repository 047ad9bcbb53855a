//! Every published version of the `fluxo:action` world keeps running: components built
//! against 0.1.0 (kept as they were built, in `tests/fixtures/prebuilt/`) run unchanged
//! next to 0.2.0 ones, through the embedder's runtime and through the server.

use fluxo_sandbox::RunOptions;
use fluxo_tests::guests;
use http::StatusCode;
use serde_json::json;

use crate::examples::{crm_lead_against, second_copy_against};
use crate::server::{api, config_for};
use crate::support::{Host, Upstream, event, guest, loopback_config};

/// A component built against `fluxo:action@0.1.0` at commit `8049725`.
fn prebuilt(name: &str) -> String {
    format!(
        "{}/fixtures/prebuilt/{name}-0.1.0.wasm",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn a_0_1_crm_lead_still_creates_the_deal() {
    crm_lead_against(&prebuilt("crm-lead")).await;
}

#[tokio::test]
async fn a_0_1_second_copy_still_returns_the_slip() {
    second_copy_against(&prebuilt("second-copy")).await;
}

#[tokio::test]
async fn a_0_1_component_imports_the_0_1_world_and_uses_state_and_mail() {
    let host = Host::new(loopback_config(9));
    let action = host
        .runtime
        .load(&guest(&prebuilt("mail-and-state")))
        .unwrap();
    assert!(
        action
            .imports()
            .iter()
            .any(|i| i == "fluxo:action/state@0.1.0"),
        "{:?}",
        action.imports()
    );
    let visit = event("visits", json!({}), json!({}));
    let first = host.runtime.run(&action, &visit, RunOptions::new()).await;
    assert!(first.succeeded(), "{first:#?}");
    assert_eq!(first.outcome.as_ref().unwrap().output["seen"], 1);
    let second = host.runtime.run(&action, &visit, RunOptions::new()).await;
    assert_eq!(second.outcome.as_ref().unwrap().output["visits"], 2);
    assert_eq!(host.outbox.messages().len(), 2);
}

#[tokio::test]
async fn a_0_2_component_is_told_its_run_id_attempt_and_idempotency_key() {
    let host = Host::new(loopback_config(9));
    let action = host.runtime.load(&guest(guests::RUN_META)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event("meta", json!({}), json!({})),
            RunOptions::new(),
        )
        .await;
    assert!(report.succeeded(), "{report:#?}");
    let output = &report.outcome.as_ref().unwrap().output;
    assert_eq!(output["run_id"], report.run_id.to_string());
    assert_eq!(output["attempt"], 1);
    assert_eq!(output["idempotency_key"], report.run_id.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_both_versions_side_by_side_and_retries_keep_the_run_id() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "deal-9" }).to_string())).await;
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "crm_token", "crm-secret-7f3a").await;

    let old = api
        .upload(&token, "crm-lead", guest(&prebuilt("crm-lead")))
        .await;
    assert_eq!(old.status, StatusCode::CREATED, "{}", old.body);
    let meta = api.upload(&token, "meta", guest(guests::RUN_META)).await;
    assert_eq!(meta.status, StatusCode::CREATED, "{}", meta.body);
    let policy = api
        .json(
            http::Method::PUT,
            "/v1/actions/meta/retry",
            Some(&token),
            json!({ "max_attempts": 3, "initial_delay_ms": 10, "max_delay_ms": 20 }),
        )
        .await;
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.body);

    let lead = api
        .submit(
            &token,
            json!({
                "action": "crm-lead",
                "contact": { "id": "c1", "fields": { "name": "Ana" }, "tags": [] },
                "input": { "crm_url": crm.url() },
            }),
        )
        .await;
    assert_eq!(lead.status, StatusCode::ACCEPTED, "{}", lead.body);
    let retried = api
        .submit(
            &token,
            json!({ "action": "meta", "input": { "fail_first": true } }),
        )
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);

    let lead = api
        .wait(&token, lead.body["run_id"].as_str().unwrap())
        .await;
    assert_eq!(lead["state"], "succeeded", "{lead:#}");
    let run_id = retried.body["run_id"].as_str().unwrap();
    let finished = api.wait(&token, run_id).await;
    assert_eq!(finished["state"], "succeeded", "{finished:#}");
    let output = &finished["report"]["outcome"]["output"];
    assert_eq!(output["attempt"], 2, "{finished:#}");
    assert_eq!(output["run_id"], run_id);
    assert_eq!(output["idempotency_key"], run_id);
}

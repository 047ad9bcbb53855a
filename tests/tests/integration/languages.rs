//! Actions written in Python (componentize-py) and JavaScript (jco, QuickJS) run
//! unchanged, with the default configuration, as the Rust ones do: the same `crm-lead`
//! job in each language, against a real CRM on loopback.

use fluxo_sandbox::{ErrorKind, RunOptions};
use fluxo_tests::guests;
use http::StatusCode;
use serde_json::json;

use crate::server::{api, config_for};
use crate::support::{Host, Upstream, event, guest, loopback_config};

/// The three builds of `crm-lead`, by language.
const CRM_LEADS: [(&str, &str); 3] = [
    ("rust", guests::CRM_LEAD),
    ("python", guests::CRM_LEAD_PY),
    ("js", guests::CRM_LEAD_JS),
];

#[tokio::test]
async fn crm_lead_in_python_runs_as_the_rust_one_does() {
    crate::examples::crm_lead_against(guests::CRM_LEAD_PY).await;
}

#[tokio::test]
async fn crm_lead_in_javascript_runs_as_the_rust_one_does() {
    crate::examples::crm_lead_against(guests::CRM_LEAD_JS).await;
}

/// The CRM's answer to a deal for a contact named `name`.
fn crm_answer(name: &str) -> (u16, String) {
    match name {
        "busy" => (429, "{}".to_owned()),
        "down" => (503, "{}".to_owned()),
        "gone" => (404, "{}".to_owned()),
        "html" => (200, "<html>maintenance</html>".to_owned()),
        "numeric" => (200, json!({ "_id": 7 }).to_string()),
        _ => (200, json!({ "_id": "deal-7" }).to_string()),
    }
}

#[tokio::test]
async fn each_language_fails_where_the_rust_one_does_and_retries_where_it_does() {
    let crm = Upstream::start(|request| {
        crm_answer(request.json()["deal"]["name"].as_str().unwrap_or(""))
    })
    .await;
    let host = Host::new(loopback_config(crm.addr.port()));
    let denied_url = format!("http://127.0.0.1:{}", crm.addr.port().wrapping_add(1));
    // (case, contact fields, input, retryable, whether the CRM is called)
    let cases = [
        (
            "503",
            json!({ "name": "down" }),
            json!({ "crm_url": crm.url() }),
            true,
            true,
        ),
        (
            "429",
            json!({ "name": "busy" }),
            json!({ "crm_url": crm.url() }),
            true,
            true,
        ),
        (
            "404",
            json!({ "name": "gone" }),
            json!({ "crm_url": crm.url() }),
            false,
            true,
        ),
        (
            "not json",
            json!({ "name": "html" }),
            json!({ "crm_url": crm.url() }),
            false,
            true,
        ),
        (
            "numeric id",
            json!({ "name": "numeric" }),
            json!({ "crm_url": crm.url() }),
            false,
            true,
        ),
        (
            "egress denied",
            json!({ "name": "Ana" }),
            json!({ "crm_url": denied_url }),
            false,
            false,
        ),
        (
            "input not an object",
            json!({ "name": "Ana" }),
            json!([]),
            false,
            false,
        ),
        (
            "no name",
            json!({ "email": "ana@example.com" }),
            json!({ "crm_url": crm.url() }),
            false,
            false,
        ),
    ];
    let mut calls = 0;
    for (lang, component) in CRM_LEADS {
        let action = host.runtime.load(&guest(component)).unwrap();
        for (case, fields, input, retryable, called) in &cases {
            let report = host
                .runtime
                .run(
                    &action,
                    &event("crm-lead", fields.clone(), input.clone()),
                    RunOptions::new(),
                )
                .await;
            let error = report
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{lang}, {case}: succeeded: {report:#?}"));
            assert_eq!(
                error.kind,
                ErrorKind::ActionError,
                "{lang}, {case}: {report:#?}"
            );
            assert_eq!(error.retryable(), *retryable, "{lang}, {case}: {error:?}");
            assert!(!report.applied, "{lang}, {case}");
            calls += usize::from(*called);
            assert_eq!(crm.received().len(), calls, "{lang}, {case}: requests");
        }
    }
    assert!(host.contacts.get("acme", "c1").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_javascript_actions_upload_and_run_through_the_server_by_default() {
    let crm = Upstream::start(|request| {
        let name = request.json()["deal"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        (200, json!({ "_id": format!("deal-of-{name}") }).to_string())
    })
    .await;
    // The default configuration, but for the loopback CRM allowed for acme.
    let api = api(config_for(crm.addr.port())).await;
    let token = api.tenant("acme").await;
    api.put_secret(&token, "crm_token", "crm-token-4d2e").await;

    for (lang, component) in CRM_LEADS {
        let name = format!("crm-lead-{lang}");
        let uploaded = api.upload(&token, &name, guest(component)).await;
        assert_eq!(
            uploaded.status,
            StatusCode::CREATED,
            "{lang}: {}",
            uploaded.body
        );

        let contact = format!("contact-{lang}");
        let submitted = api
            .submit(
                &token,
                json!({
                    "action": name,
                    "contact": { "id": contact, "fields": { "name": lang }, "tags": [] },
                    "input": { "crm_url": crm.url() },
                }),
            )
            .await;
        assert_eq!(submitted.status, StatusCode::ACCEPTED, "{}", submitted.body);
        let run_id = submitted.body["run_id"].as_str().unwrap();
        let finished = api.wait(&token, run_id).await;
        assert_eq!(finished["state"], "succeeded", "{lang}: {finished:#}");

        let stored = api.get(&format!("/v1/contacts/{contact}"), &token).await;
        assert_eq!(
            stored.body["fields"]["crm_deal_id"],
            format!("deal-of-{lang}"),
            "{lang}: {}",
            stored.body
        );
        assert_eq!(stored.body["tags"], json!(["crm-synced"]), "{lang}");
    }
    assert_eq!(crm.received().len(), CRM_LEADS.len());
}

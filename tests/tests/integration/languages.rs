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

#[tokio::test]
async fn each_language_s_errors_arrive_as_the_action_s_typed_error() {
    let crm = Upstream::start(|_| (503, "{}".to_owned())).await;
    let host = Host::new(loopback_config(crm.addr.port()));
    for (lang, component) in CRM_LEADS {
        let action = host.runtime.load(&guest(component)).unwrap();

        // A raised/thrown action error, retryable: the CRM answered 503.
        let unavailable = event(
            "crm-lead",
            json!({ "name": "Ana" }),
            json!({ "crm_url": crm.url() }),
        );
        let report = host
            .runtime
            .run(&action, &unavailable, RunOptions::new())
            .await;
        let error = report.error.as_ref().expect(lang);
        assert_eq!(error.kind, ErrorKind::ActionError, "{lang}: {report:#?}");
        assert!(error.retryable(), "{lang}: {error:?}");
        assert_eq!(error.message, "crm answered 503", "{lang}");
        assert!(!report.applied, "{lang}");

        // A final one, before any request: the contact has no name.
        let nameless = event(
            "crm-lead",
            json!({ "email": "ana@example.com" }),
            json!({ "crm_url": crm.url() }),
        );
        let report = host
            .runtime
            .run(&action, &nameless, RunOptions::new())
            .await;
        let error = report.error.as_ref().expect(lang);
        assert_eq!(error.kind, ErrorKind::ActionError, "{lang}: {report:#?}");
        assert!(!error.retryable(), "{lang}: {error:?}");
        assert!(
            error.message.contains("no name"),
            "{lang}: {}",
            error.message
        );
        assert!(report.http.is_empty(), "{lang}");
    }
    assert!(host.contacts.get("acme", "c1").is_none());
    assert_eq!(crm.received().len(), CRM_LEADS.len(), "one request each");
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

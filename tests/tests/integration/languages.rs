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
        "slow" => (408, "{}".to_owned()),
        "early" => (425, "{}".to_owned()),
        "down" => (503, "{}".to_owned()),
        "gone" => (404, "{}".to_owned()),
        "html" => (200, "<html>maintenance</html>".to_owned()),
        "numeric" => (200, json!({ "_id": 7 }).to_string()),
        _ => (200, json!({ "_id": "deal-7" }).to_string()),
    }
}

/// One way `crm-lead` fails: the contact's fields, the input, whether the failure is
/// retryable, and whether the CRM received the request.
struct Failure {
    case: &'static str,
    fields: serde_json::Value,
    input: serde_json::Value,
    retryable: bool,
    reaches_crm: bool,
}

impl Failure {
    /// A contact named `name` sent to `url`.
    fn named(
        case: &'static str,
        name: &str,
        url: &str,
        retryable: bool,
        reaches_crm: bool,
    ) -> Self {
        Self {
            case,
            fields: json!({ "name": name }),
            input: json!({ "crm_url": url }),
            retryable,
            reaches_crm,
        }
    }
}

#[tokio::test]
async fn each_language_fails_where_the_rust_one_does_and_retries_where_it_does() {
    let crm = Upstream::start(|request| {
        crm_answer(request.json()["deal"]["name"].as_str().unwrap_or(""))
    })
    .await;
    // A server that accepts and never answers, and a port nothing listens on, both
    // allowed; an answer is awaited 300 ms.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let mut config = loopback_config(crm.addr.port());
    for port in [silent_port, closed_port] {
        config.http.allow.push(fluxo_sandbox::AllowRule {
            port: Some(port),
            ..fluxo_sandbox::AllowRule::host("127.0.0.1")
        });
    }
    config.http.first_byte_timeout_ms = 300;
    let host = Host::new(config);

    let crm_url = crm.url();
    let silent_url = format!("http://127.0.0.1:{silent_port}");
    let closed_url = format!("http://127.0.0.1:{closed_port}");
    let cases = [
        Failure::named("503", "down", &crm_url, true, true),
        Failure::named("429", "busy", &crm_url, true, true),
        Failure::named("408", "slow", &crm_url, true, true),
        Failure::named("425", "early", &crm_url, true, true),
        Failure::named("no answer in time", "Ana", &silent_url, true, false),
        Failure::named("connection refused", "Ana", &closed_url, true, false),
        Failure::named("404", "gone", &crm_url, false, true),
        Failure::named("not json", "html", &crm_url, false, true),
        Failure::named("numeric id", "numeric", &crm_url, false, true),
        Failure::named("egress denied", "Ana", "http://127.0.0.1:9", false, false),
        Failure {
            input: json!([]),
            ..Failure::named("input not an object", "Ana", &crm_url, false, false)
        },
        Failure {
            fields: json!({ "email": "ana@example.com" }),
            ..Failure::named("no name", "", &crm_url, false, false)
        },
    ];
    let mut calls = 0;
    for (lang, component) in CRM_LEADS {
        let action = host.runtime.load(&guest(component)).unwrap();
        for failure in &cases {
            let case = failure.case;
            let event = event("crm-lead", failure.fields.clone(), failure.input.clone());
            let report = host.runtime.run(&action, &event, RunOptions::new()).await;
            let error = report
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{lang}, {case}: succeeded: {report:#?}"));
            assert_eq!(
                error.kind,
                ErrorKind::ActionError,
                "{lang}, {case}: {report:#?}"
            );
            assert_eq!(
                error.retryable(),
                failure.retryable,
                "{lang}, {case}: {error:?}"
            );
            assert!(!report.applied, "{lang}, {case}");
            calls += usize::from(failure.reaches_crm);
            assert_eq!(crm.received().len(), calls, "{lang}, {case}: requests");
        }
    }
    assert!(host.contacts.get("acme", "c1").is_none());
    held.abort();
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

//! The example actions as components against real upstream servers.

use fluxo_sandbox::{Effect, ErrorKind, FieldValue, RunOptions};
use fluxo_tests::guests;
use serde_json::json;

use crate::support::{Host, Upstream, event, guest, loopback_config};

pub(crate) async fn crm_lead_against(component: &str) {
    let crm = Upstream::start(|request| {
        if request.method == "POST" && request.uri.starts_with("/api/v1/deals?token=") {
            (200, json!({ "_id": "deal-7" }).to_string())
        } else {
            (404, "{}".to_owned())
        }
    })
    .await;
    let host = Host::new(loopback_config(crm.addr.port()));
    let action = host.runtime.load(&guest(component)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event(
                "crm-lead",
                json!({ "name": "Ana Souza", "email": "ana@example.com" }),
                json!({ "crm_url": crm.url() }),
            ),
            RunOptions::new(),
        )
        .await;

    assert!(report.succeeded(), "{report:#?}");
    assert!(report.applied);
    assert_eq!(
        report.outcome.as_ref().unwrap().output,
        json!({ "deal_id": "deal-7" })
    );

    let received = crm.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].uri, "/api/v1/deals?token=crm-secret-7f3a");
    assert_eq!(
        received[0].json(),
        json!({
            "deal": { "name": "Ana Souza" },
            "contacts": [{ "name": "Ana Souza", "emails": [{ "email": "ana@example.com" }] }],
        })
    );

    let contact = host.contacts.get("acme", "c1").expect("effects applied");
    assert_eq!(
        contact.fields.get("crm_deal_id"),
        Some(&FieldValue::from("deal-7"))
    );
    assert_eq!(contact.tags, ["crm-synced"]);

    assert_eq!(report.http.len(), 1);
    assert_eq!(report.http[0].status, Some(200));
    assert!(
        report.http[0].url.contains("token=[REDACTED]"),
        "{}",
        report.http[0].url
    );
    assert!(report.usage.fuel > 0 && report.usage.peak_memory_bytes > 0);
}

#[tokio::test]
async fn crm_lead_creates_the_deal_and_tags_the_contact() {
    crm_lead_against(guests::CRM_LEAD).await;
}

#[tokio::test]
async fn crm_lead_built_from_a_core_module_runs_the_same() {
    crm_lead_against(guests::CRM_LEAD_CORE).await;
}

/// Runs `crm-lead` for contact Ana against `crm` under `config`.
async fn run_crm_lead(
    config: fluxo_sandbox::Config,
    crm: &Upstream,
) -> (Host, fluxo_sandbox::RunReport) {
    let host = Host::new(config);
    let action = host.runtime.load(&guest(guests::CRM_LEAD)).unwrap();
    let event = event(
        "crm-lead",
        json!({ "name": "Ana" }),
        json!({ "crm_url": crm.url() }),
    );
    let report = host.runtime.run(&action, &event, RunOptions::new()).await;
    (host, report)
}

#[tokio::test]
async fn crm_lead_fails_retryably_on_a_5xx_and_changes_nothing() {
    let crm = Upstream::start(|_| (503, "{}".to_owned())).await;
    let (host, report) = run_crm_lead(loopback_config(crm.addr.port()), &crm).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.kind, ErrorKind::ActionError);
    assert!(error.retryable());
    assert!(!report.applied);
    assert!(host.contacts.get("acme", "c1").is_none());
}

#[tokio::test]
async fn egress_is_denied_without_an_allow_rule() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "x" }).to_string())).await;
    let mut config = loopback_config(crm.addr.port());
    config.http.allow.clear();
    let (_host, report) = run_crm_lead(config, &crm).await;
    assert_eq!(report.error_kind(), Some(ErrorKind::ActionError));
    let refusal = report.http[0].error.as_deref().unwrap();
    assert!(
        refusal.starts_with("denied: no egress rule allows"),
        "{refusal}"
    );
    assert!(crm.received().is_empty());
}

#[tokio::test]
async fn loopback_is_refused_unless_the_operator_allows_it() {
    let crm = Upstream::start(|_| (200, json!({ "_id": "x" }).to_string())).await;
    let mut config = loopback_config(crm.addr.port());
    config.http.allow_private_cidrs.clear();
    let (_host, report) = run_crm_lead(config, &crm).await;
    let refusal = report.http[0].error.as_deref().unwrap();
    assert!(refusal.contains("loopback"), "{refusal}");
    assert!(crm.received().is_empty());
}

pub(crate) async fn second_copy_against(component: &str) {
    let billing = Upstream::start(|request| {
        if request.uri == "/slips?cpf=12345678900"
            && request.header("authorization") == Some("Bearer billing-secret-91c2")
        {
            (
                200,
                json!({ "data": { "url": "https://billing.example/s/42" } }).to_string(),
            )
        } else {
            (401, "{}".to_owned())
        }
    })
    .await;
    let host = Host::new(loopback_config(billing.addr.port()));
    let action = host.runtime.load(&guest(component)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event(
                "second-copy",
                json!({ "cpf": "12345678900" }),
                json!({ "billing_url": billing.url() }),
            ),
            RunOptions::new(),
        )
        .await;
    assert!(report.succeeded(), "{report:#?}");
    let outcome = report.outcome.as_ref().unwrap();
    assert_eq!(
        outcome.output["data"]["url"],
        "https://billing.example/s/42"
    );
    assert_eq!(
        outcome.replies,
        ["Here is the second copy of your bank slip: https://billing.example/s/42"]
    );
    assert_eq!(
        report.effects,
        [Effect::SetField {
            name: "last_slip_url".into(),
            value: FieldValue::from("https://billing.example/s/42")
        }]
    );
    assert_eq!(
        report.http[0].request_headers,
        [("authorization".to_owned(), "Bearer [REDACTED]".to_owned())]
    );
}

#[tokio::test]
async fn second_copy_returns_the_slip_url() {
    second_copy_against(guests::SECOND_COPY).await;
}

#[tokio::test]
async fn second_copy_built_from_a_core_module_runs_the_same() {
    second_copy_against(guests::SECOND_COPY_CORE).await;
}

#[tokio::test]
async fn second_copy_explains_a_missing_cpf() {
    let host = Host::new(loopback_config(9));
    let action = host.runtime.load(&guest(guests::SECOND_COPY)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event(
                "second-copy",
                json!({}),
                json!({ "billing_url": "http://127.0.0.1:9" }),
            ),
            RunOptions::new(),
        )
        .await;
    let error = report.error.unwrap();
    assert_eq!(error.kind, ErrorKind::ActionError);
    assert!(error.message.contains("no cpf"), "{}", error.message);
    assert!(!error.retryable());
    assert!(report.http.is_empty());
}

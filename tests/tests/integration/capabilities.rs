//! Host capabilities seen from real guests: WASI is empty, stdout is captured, secrets
//! never leak into a record, e-mail and state are journaled and applied on success.

use fluxo_sandbox::{Effect, ErrorKind, LogSource, RunOptions};
use fluxo_tests::guests;
use serde_json::json;

use crate::support::{Host, Upstream, event, guest, loopback_config};

#[tokio::test]
async fn std_guests_get_an_empty_wasi_and_their_output_is_logged() {
    let host = Host::new(loopback_config(9));
    let action = host.runtime.load(&guest(guests::STD_IO)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event("std-io", json!({}), json!({})),
            RunOptions::new(),
        )
        .await;
    assert!(report.succeeded(), "{report:#?}");
    let output = &report.outcome.as_ref().unwrap().output;
    assert_eq!(output["env_count"], 0);
    assert_eq!(output["args_count"], 0);
    assert_eq!(output["file_readable"], false);
    assert_eq!(output["clock_works"], true);
    let lines: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    assert!(
        lines.contains(&(LogSource::Stdout, "hello from stdout")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(LogSource::Stderr, "hello from stderr")),
        "{lines:?}"
    );
}

async fn leak(fail: bool) -> (Upstream, fluxo_sandbox::RunReport) {
    let upstream =
        Upstream::start(|request| (200, json!({ "echo": request.uri }).to_string())).await;
    let host = Host::new(loopback_config(upstream.addr.port()));
    let action = host.runtime.load(&guest(guests::SECRET_LEAKER)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event(
                "leaker",
                json!({}),
                json!({ "url": upstream.url(), "fail": fail }),
            ),
            RunOptions::new(),
        )
        .await;
    (upstream, report)
}

#[tokio::test]
async fn secrets_never_appear_in_the_report_of_a_success() {
    let (upstream, report) = leak(false).await;
    assert!(report.succeeded(), "{report:#?}");
    // The secret was really used ...
    assert_eq!(
        upstream.received()[0].header("x-api-key"),
        Some("api-secret-d00d")
    );
    // ... and no record shows it: logs, stdout, HTTP URL and headers, output, replies.
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("api-secret-d00d"), "{text}");
    assert!(text.contains("[REDACTED]"));
    assert_eq!(
        report.outcome.as_ref().unwrap().output["token"],
        "[REDACTED]"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_the_error_of_a_failure() {
    let (_upstream, report) = leak(true).await;
    let error = report.error.as_ref().unwrap();
    assert_eq!(error.kind, ErrorKind::ActionError);
    assert_eq!(error.message, "failed with token [REDACTED]");
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("api-secret-d00d")
    );
}

#[tokio::test]
async fn email_and_state_are_applied_only_on_success_and_read_back() {
    let host = Host::new(loopback_config(9));
    let action = host.runtime.load(&guest(guests::MAIL_AND_STATE)).unwrap();
    let visit = event("visits", json!({}), json!({}));
    let run = || host.runtime.run(&action, &visit, RunOptions::new());

    let first = run().await;
    assert!(first.succeeded(), "{first:#?}");
    let output = &first.outcome.as_ref().unwrap().output;
    assert_eq!(output["visits"], 1);
    assert_eq!(output["seen"], 1, "a run reads its own state write");
    let messages = host.outbox.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1.subject, "visit 1 of c1");
    assert_eq!(output["message_id"], messages[0].1.message_id.as_str());
    assert_eq!(host.contacts.get("acme", "c1").unwrap().tags, ["returning"]);

    // A dry run sees the state but applies nothing.
    let dry = host
        .runtime
        .execute(&action, &visit, &RunOptions::new())
        .await
        .into_report(false);
    assert!(dry.succeeded() && !dry.applied);
    assert_eq!(dry.outcome.as_ref().unwrap().output["visits"], 2);
    assert!(
        dry.effects
            .iter()
            .any(|e| matches!(e, Effect::SendEmail(_)))
    );
    assert_eq!(host.outbox.messages().len(), 1);

    let second = run().await;
    assert_eq!(second.outcome.as_ref().unwrap().output["visits"], 2);
    assert_eq!(host.outbox.messages().len(), 2);
}

#[tokio::test]
async fn email_header_injection_is_refused_at_the_host_call() {
    let host = Host::new(loopback_config(9));
    let action = host.runtime.load(&guest(guests::HEADER_INJECTOR)).unwrap();
    let report = host
        .runtime
        .run(
            &action,
            &event("inject", json!({}), json!({})),
            RunOptions::new(),
        )
        .await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.outcome.as_ref().unwrap().output["refused"], true);
    assert!(report.effects.is_empty());
    assert!(host.outbox.messages().is_empty());
}

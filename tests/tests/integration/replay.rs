//! Replay (`fluxo replay`'s engine): a run re-executed from its record gets the recorded
//! answers byte for byte and sends nothing; what the record kept cut is said.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fluxo_core::{BodyEncoding, RunReport};
use fluxo_sandbox::{Config, HttpReplay, RunOptions, Runtime};
use fluxo_tests::guests;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::support::{event, guest, loopback_config};

/// A loopback server answering every request with `body` (any bytes) and counting the
/// connections it accepted.
async fn bytes_server(body: Vec<u8>) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 8192];
                let _ = stream.read(&mut buffer).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    (port, accepted, task)
}

/// Runs the fetch guest against `url` under `config`, committing nothing; its output
/// shows the body's bytes in hex.
async fn fetch(config: Config, url: &str, options: &RunOptions) -> RunReport {
    let runtime = Runtime::builder().config(config).build().unwrap();
    let action = runtime.load(&guest(guests::FETCH)).unwrap();
    let input = json!({ "url": url, "hex": true });
    runtime
        .execute(&action, &event("fetch", json!({}), input), options)
        .await
        .into_report(false)
}

/// A body that is not UTF-8 and longer than the 16 KiB an exchange used to keep.
fn slip() -> Vec<u8> {
    let mut body = b"%PDF-1.7 second copy ".to_vec();
    body.extend((0..40_000_u32).map(|i| u8::try_from(i % 251).unwrap()));
    body.extend_from_slice(&[0xff, 0xfe, 0x00]);
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_run_gets_the_recorded_answers_byte_for_byte_and_sends_nothing() {
    let body = slip();
    let (port, accepted, server) = bytes_server(body.clone()).await;
    let url = format!("http://127.0.0.1:{port}/slips/7");
    let original = fetch(loopback_config(port), &url, &RunOptions::new()).await;
    assert!(original.succeeded(), "{original:#?}");
    let exchange = &original.http[0];
    assert_eq!(exchange.response_body_encoding, BodyEncoding::Base64);
    assert!(!exchange.response_body_truncated);
    assert_eq!(exchange.response_body_bytes(), Some(body.clone()));
    // As the API hands it out: JSON, then read back.
    let original: RunReport =
        serde_json::from_str(&serde_json::to_string(&original).unwrap()).unwrap();

    let replay = Arc::new(HttpReplay::new(original.http.clone()));
    let options = RunOptions::new()
        .run_id(original.run_id)
        .attempt(original.attempt)
        .replay(replay.clone());
    // The server still listens and the policy still allows it: only the replay keeps
    // the request from being sent.
    let replayed = fetch(loopback_config(port), &url, &options).await;

    assert!(replayed.succeeded(), "{replayed:#?}");
    // The guest saw every byte as the original did (it shows them in hex).
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(replayed.outcome.as_ref().unwrap().output["body_hex"], hex);
    assert_eq!(replayed.outcome, original.outcome);
    assert_eq!(replayed.effects, original.effects);
    assert_eq!(replayed.http[0].response_body_bytes(), Some(body));
    assert!(
        replay.divergences().is_empty(),
        "{:?}",
        replay.divergences()
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the replay sent a request"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_report_cannot_hold_is_recorded_cut_and_the_run_goes_on() {
    let (port, _, _server) = bytes_server(vec![b'x'; 20_000]).await;
    let mut config = loopback_config(port);
    config.limits.max_report_bytes = 4_096;
    let runtime = Runtime::builder().config(config).build().unwrap();
    let action = runtime.load(&guest(guests::FETCH)).unwrap();
    let input = json!({ "url": format!("http://127.0.0.1:{port}/"), "quiet": true });
    let report = runtime
        .execute(
            &action,
            &event("fetch", json!({}), input),
            &RunOptions::new(),
        )
        .await
        .into_report(false);
    // The guest got the whole body; the record kept what the report budget holds.
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.outcome.as_ref().unwrap().output["length"], 20_000);
    let exchange = &report.http[0];
    assert!(exchange.response_body_truncated);
    assert!(exchange.size() < 4_096, "{}", exchange.size());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_past_the_recording_budget_is_recorded_cut_and_the_replay_says_so() {
    let (port, _, _server) = bytes_server(b"0123456789abcdefghij".to_vec()).await;
    let url = format!("http://127.0.0.1:{port}/");
    let mut config = loopback_config(port);
    config.limits.max_recorded_body_bytes = 8;
    let original = fetch(config, &url, &RunOptions::new()).await;
    // The guest got the whole body; the record kept the budget's worth.
    assert!(original.succeeded(), "{original:#?}");
    assert_eq!(
        original.outcome.as_ref().unwrap().output["body"],
        "0123456789abcdefghij"
    );
    assert_eq!(original.http[0].response_body, "01234567");
    assert!(original.http[0].response_body_truncated);

    let replay = Arc::new(HttpReplay::new(original.http.clone()));
    let replayed = fetch(
        Config::default(),
        &url,
        &RunOptions::new()
            .run_id(original.run_id)
            .replay(replay.clone()),
    )
    .await;
    assert_eq!(
        replayed.outcome.as_ref().unwrap().output["body"],
        "01234567"
    );
    let divergences = replay.divergences();
    assert_eq!(divergences.len(), 1, "{divergences:?}");
    assert!(
        divergences[0].contains("recorded cut at 8 bytes of 20"),
        "{divergences:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_record_does_not_hold_is_answered_as_a_lost_network() {
    let (port, _, server) = bytes_server(b"ok".to_vec()).await;
    let original = fetch(
        loopback_config(port),
        &format!("http://127.0.0.1:{port}/a"),
        &RunOptions::new(),
    )
    .await;
    server.abort();
    let replay = Arc::new(HttpReplay::new(original.http.clone()));
    let replayed = fetch(
        Config::default(),
        &format!("http://127.0.0.1:{port}/b"),
        &RunOptions::new().replay(replay.clone()),
    )
    .await;
    let error = replayed.outcome.as_ref().unwrap().output["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("differs from the original"), "{error}");
    let divergences = replay.divergences();
    assert!(
        divergences[0].contains("/b; the original's was GET http://127.0.0.1"),
        "{divergences:?}"
    );
}

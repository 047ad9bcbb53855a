//! E-mail across a real SMTP conversation on 127.0.0.1: delivered once, retried on 4xx
//! and on a dropped connection, failed on 5xx with the reply recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fluxo_orchestrator::adapters::StoreState;
use fluxo_orchestrator::dispatch::smtp::{SmtpConfig, SmtpTransport};
use fluxo_orchestrator::dispatch::{Backoff, DispatchOptions, Dispatcher, PassStats};
use fluxo_orchestrator::metrics::Metrics;
use fluxo_sandbox::{RunReport, Runtime};
use fluxo_store::{OutboxPayload, OutboxRecord, OutboxStatus, Store};
use fluxo_store_sqlite::{SqliteOptions, SqliteStore};
use fluxo_tests::guests;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{event, guest, run_into};

/// What the sink does when a message's DATA arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Accept,
    TempFail,
    PermFail,
    DropMidData,
}

/// A minimal SMTP server: follows a script for successive messages (then accepts), and
/// keeps the messages it accepted.
pub(crate) struct SmtpSink {
    pub(crate) addr: SocketAddr,
    accepted: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SmtpSink {
    pub(crate) async fn start(script: &[Step]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (kept, kept_raw) = (accepted.clone(), raw.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(
                    stream,
                    script.clone(),
                    kept.clone(),
                    kept_raw.clone(),
                ));
            }
        });
        Self {
            addr,
            accepted,
            raw,
        }
    }

    /// The accepted messages, lines joined with `\n`.
    pub(crate) fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    /// The accepted messages' DATA exactly as it crossed the wire (up to the final
    /// `.`).
    pub(crate) fn raw(&self) -> Vec<Vec<u8>> {
        self.raw.lock().unwrap().clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    script: Arc<Mutex<VecDeque<Step>>>,
    accepted: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            "DATA" => {
                let step = script.lock().unwrap().pop_front().unwrap_or(Step::Accept);
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut message = String::new();
                let mut bytes = Vec::new();
                loop {
                    // Raw lines, split at LF only: what a lenient relay would see.
                    let mut data = Vec::new();
                    match reader.read_until(b'\n', &mut data).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if step == Step::DropMidData && message.len() > 20 {
                        return; // hang up in the middle of the message
                    }
                    if data == b".\r\n" || data == b".\n" {
                        break;
                    }
                    bytes.extend_from_slice(&data);
                    let text = String::from_utf8_lossy(&data);
                    message.push_str(text.trim_end_matches(['\r', '\n']));
                    message.push('\n');
                }
                match step {
                    Step::Accept | Step::DropMidData => {
                        accepted.lock().unwrap().push(message);
                        raw.lock().unwrap().push(bytes);
                        b"250 queued\r\n"
                    }
                    Step::TempFail => b"451 4.3.0 try again later\r\n",
                    Step::PermFail => b"550 5.1.1 no such mailbox\r\n",
                }
            }
            _ => b"502 unknown\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

struct Rig {
    runtime: Runtime,
    store: Arc<dyn Store>,
    delivery: Dispatcher,
    _dir: tempfile::TempDir,
}

fn rig(sink: &SmtpSink) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("fluxo.db"), SqliteOptions::default()).unwrap(),
    );
    let runtime = Runtime::builder()
        .state_reader(Arc::new(StoreState(store.clone())))
        .build()
        .unwrap();
    let transport = SmtpTransport::new(&SmtpConfig {
        url: format!("smtp://{}", sink.addr),
        from: "Fluxo <no-reply@platform.test>".into(),
        username: None,
        password: None,
        timeout_ms: 2_000,
    })
    .unwrap();
    let fast = Backoff {
        schedule: vec![
            Duration::from_millis(20),
            Duration::from_millis(40),
            Duration::from_millis(100),
        ],
    };
    let options = DispatchOptions {
        email_backoff: fast,
        ..DispatchOptions::default()
    };
    Rig {
        delivery: Dispatcher::new(
            store.clone(),
            Some(transport),
            None,
            options,
            Arc::new(Metrics::default()),
        ),
        runtime,
        store,
        _dir: dir,
    }
}

async fn send_one(rig: &Rig) -> (RunReport, String) {
    let action = rig.runtime.load(&guest(guests::MAIL_AND_STATE)).unwrap();
    let report = run_into(
        &rig.store,
        &rig.runtime,
        &action,
        &event("visits", json!({}), json!({})),
    )
    .await;
    assert!(report.succeeded(), "{report:#?}");
    let id = report.outcome.as_ref().unwrap().output["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (report, id)
}

/// The outbox row of the e-mail with Message-ID `id`.
async fn find(store: &Arc<dyn Store>, id: &str) -> OutboxRecord {
    store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|row| matches!(&row.payload, OutboxPayload::Email(email) if email.message_id == id))
        .unwrap_or_else(|| panic!("no outbox row for {id}"))
}

/// Passes until nothing is due, waiting out backoffs; returns the summed stats.
async fn deliver_all(delivery: &Dispatcher) -> PassStats {
    let mut total = PassStats::default();
    for _ in 0..40 {
        let stats = delivery.pass().await.unwrap();
        total.sent += stats.sent;
        total.retried += stats.retried;
        total.failed += stats.failed;
        total.released += stats.released;
        if stats.retried == 0 && stats.sent + stats.failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    total
}

fn with_id(messages: &[String], id: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.contains(&format!("Message-ID: {id}")))
        .count()
}

#[tokio::test]
async fn a_committed_email_is_delivered_once() {
    let sink = SmtpSink::start(&[]).await;
    let rig = rig(&sink);
    let (_, id) = send_one(&rig).await;
    assert_eq!(
        deliver_all(&rig.delivery).await,
        PassStats {
            sent: 1,
            retried: 0,
            failed: 0,
            released: 0
        }
    );
    assert_eq!(
        rig.delivery.pass().await.unwrap(),
        PassStats::default(),
        "nothing left to send"
    );
    let accepted = sink.accepted();
    assert_eq!(with_id(&accepted, &id), 1, "{accepted:?}");
    assert!(
        accepted[0].contains("Subject: visit 1 of c1"),
        "{}",
        accepted[0]
    );
    assert_eq!(find(&rig.store, &id).await.status, OutboxStatus::Sent);
}

#[tokio::test]
async fn a_temporary_failure_is_retried_into_exactly_one_message() {
    let sink = SmtpSink::start(&[Step::TempFail]).await;
    let rig = rig(&sink);
    let (_, id) = send_one(&rig).await;
    let stats = deliver_all(&rig.delivery).await;
    assert_eq!((stats.retried, stats.sent), (1, 1));
    assert_eq!(with_id(&sink.accepted(), &id), 1);
    let message = find(&rig.store, &id).await;
    assert_eq!((message.status, message.attempts), (OutboxStatus::Sent, 2));
}

#[tokio::test]
async fn a_permanent_failure_is_recorded_with_the_reply() {
    let sink = SmtpSink::start(&[Step::PermFail]).await;
    let rig = rig(&sink);
    let (_, id) = send_one(&rig).await;
    assert_eq!(deliver_all(&rig.delivery).await.failed, 1);
    let message = find(&rig.store, &id).await;
    assert_eq!(message.status, OutboxStatus::Failed);
    let reply = message.last_error.unwrap();
    assert!(
        reply.contains("550") || reply.contains("no such mailbox"),
        "{reply}"
    );
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_mid_data_is_retried_into_one_message() {
    let sink = SmtpSink::start(&[Step::DropMidData]).await;
    let rig = rig(&sink);
    let (_, id) = send_one(&rig).await;
    let stats = deliver_all(&rig.delivery).await;
    assert_eq!((stats.retried, stats.sent), (1, 1), "{stats:?}");
    assert_eq!(with_id(&sink.accepted(), &id), 1);
}

#[tokio::test]
async fn a_failed_run_commits_no_email() {
    let sink = SmtpSink::start(&[]).await;
    let rig = rig(&sink);
    let action = rig.runtime.load(&guest(guests::PANIC_AFTER_WRITE)).unwrap();
    let report = run_into(
        &rig.store,
        &rig.runtime,
        &action,
        &event("panic", json!({}), json!({})),
    )
    .await;
    assert!(!report.succeeded());
    assert!(rig.store.outbox().await.unwrap().is_empty());
    assert_eq!(rig.delivery.pass().await.unwrap(), PassStats::default());
}

/// Checks DATA as it crossed the wire: every line ends in CRLF and holds no other CR or
/// LF, no line passes RFC 5322's 998 bytes, header lines fold at 78 where they can, and
/// no line is a lone dot (the end of DATA) or starts with one unstuffed.
fn assert_wire_safe(raw: &[u8]) {
    assert!(raw.ends_with(b"\r\n"), "DATA ends with CRLF");
    let mut in_head = true;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let shown = String::from_utf8_lossy(line);
        let body = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("a bare LF ends {shown:?}"));
        assert!(!body.contains(&b'\r'), "a bare CR in {shown:?}");
        assert!(body.len() <= 998, "a line of {} bytes", body.len());
        assert_ne!(body, b".", "a lone dot would end DATA");
        if body.is_empty() {
            in_head = false;
        } else if in_head && !body.starts_with(b" ") {
            assert!(
                body.len() <= 78 || !body.contains(&b' '),
                "header line {shown:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_hostile_email_crosses_the_wire_as_one_well_formed_message() {
    let sink = SmtpSink::start(&[]).await;
    let rig = rig(&sink);
    let action = rig.runtime.load(&guest(guests::SMUGGLER)).unwrap();
    let report = run_into(
        &rig.store,
        &rig.runtime,
        &action,
        &event("smuggle", json!({}), json!({})),
    )
    .await;
    assert!(report.succeeded(), "{report:#?}");
    let stats = deliver_all(&rig.delivery).await;
    assert_eq!(stats.sent, 1, "{stats:?}");
    let raw = sink.raw();
    assert_eq!(raw.len(), 1, "one message, nothing smuggled after it");
    assert_wire_safe(&raw[0]);
    let text = String::from_utf8_lossy(&raw[0]);
    assert!(text.contains("=?utf-8?"), "the subject is encoded words");
    assert_eq!(
        text.matches("@a-rather-long-domain-name.example").count(),
        20
    );
}

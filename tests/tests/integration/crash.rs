//! Crashes: `fluxo serve` killed with SIGKILL while runs are in flight loses no accepted
//! run and applies none twice; a node paused past its lease (SIGSTOP) commits nothing
//! when it wakes, because another node took the run over under a newer fencing token.
//!
//! `FLUXO_CRASH_ROUNDS` sets the kill-and-restart rounds (CI: 5; `scripts/crash-rounds`
//! runs 20).

use std::path::Path;
use std::time::{Duration, Instant};

use fluxo_tests::guests;
use serde_json::{Value, json};

use crate::email::SmtpSink;
use crate::served::Served;
use crate::support::{guest, slow_server};

/// How long the probe's upstream takes to answer: long enough that a kill finds runs
/// in flight.
const UPSTREAM_DELAY: Duration = Duration::from_millis(700);

/// A configuration file `name` letting tenant `acme` reach the upstream, with four
/// workers, a one-second lease and `extra` lines of `[server]`.
fn config(dir: &Path, name: &str, upstream_port: u16, extra: &str) -> std::path::PathBuf {
    config_with(dir, name, upstream_port, "", extra)
}

/// As [`config`], with `sections` (TOML tables) before `[server]`.
pub(crate) fn config_with(
    dir: &Path,
    name: &str,
    upstream_port: u16,
    sections: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "{sections}\n[http]\nallow_private_cidrs = [\"127.0.0.1/32\"]\n[[http.tenant_allow.acme]]\nhost = \"127.0.0.1\"\nport = {upstream_port}\n[server]\nworkers = 4\nlease_ms = 1000\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Uploads the probe with a policy that tolerates many crashes (the rounds kill the
/// same runs more than the default three times).
pub(crate) fn upload_probe(server: &Served, token: &str) {
    let (status, body) = server.call(
        "POST",
        "/v1/actions/probe/versions",
        token,
        &guest(guests::CRASH_PROBE),
    );
    assert_eq!(status, 201, "{body}");
    let policy =
        json!({ "max_attempts": 3, "initial_delay_ms": 50, "max_crash_redeliveries": 100 });
    let (status, body) = server.call(
        "PUT",
        "/v1/actions/probe/retry",
        token,
        policy.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
}

pub(crate) fn submit(server: &Served, token: &str, contact: &str, url: &str) -> String {
    let run = json!({
        "action": "probe",
        "contact": { "id": contact },
        "input": { "url": url },
    });
    let (status, body) = server.call("POST", "/v1/runs", token, run.to_string().as_bytes());
    assert_eq!(status, 202, "{body}");
    body["run_id"].as_str().unwrap().to_owned()
}

pub(crate) fn count(server: &Served, token: &str, state: &str) -> usize {
    let (_, body) = server.call(
        "GET",
        &format!("/v1/runs?state={state}&limit=500"),
        token,
        b"",
    );
    body["runs"].as_array().map_or(0, Vec::len)
}

/// Waits until every run is final; their records.
pub(crate) fn wait_final(
    server: &Served,
    token: &str,
    ids: &[String],
    patience: Duration,
) -> Vec<Value> {
    let until = Instant::now() + patience;
    let mut records = Vec::new();
    for id in ids {
        loop {
            let (status, run) = server.call("GET", &format!("/v1/runs/{id}"), token, b"");
            assert_eq!(status, 200, "{run}");
            if matches!(
                run["state"].as_str(),
                Some("succeeded" | "failed" | "dead" | "cancelled")
            ) {
                records.push(run);
                break;
            }
            assert!(
                Instant::now() < until,
                "run {id} did not finish: {run:#}\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    records
}

/// Every run succeeded once: its committed attempt saw no earlier commit (`visits` 1),
/// its contact is tagged, and the outbox holds exactly one e-mail per run.
fn assert_applied_once(server: &Served, token: &str, records: &[Value]) {
    for run in records {
        assert_eq!(run["state"], "succeeded", "{run:#}");
        assert_eq!(run["report"]["outcome"]["output"]["visits"], 1, "{run:#}");
        let contact = run["event"]["contact"]["id"].as_str().unwrap();
        let (status, shown) = server.call("GET", &format!("/v1/contacts/{contact}"), token, b"");
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["tags"], json!(["probed"]));
    }
    let db = rusqlite::Connection::open_with_flags(
        server.data.join("fluxo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let emails: i64 = db
        .query_row(
            "SELECT count(*) FROM outbox WHERE kind = 'email'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        usize::try_from(emails).unwrap(),
        records.len(),
        "one e-mail per run"
    );
    let mut visits = db
        .prepare("SELECT contact, CAST(value AS TEXT) FROM state WHERE key = 'visits'")
        .unwrap();
    let rows: Vec<(String, String)> = visits
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), records.len());
    for (contact, value) in rows {
        assert_eq!(value, "1", "contact {contact} was counted twice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_mid_run_loses_no_accepted_run() {
    let upstream = slow_server(UPSTREAM_DELAY, 200, "{}").await;
    let sink = SmtpSink::start(&[]).await;
    let rounds: u32 = std::env::var("FLUXO_CRASH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(5);
    let records = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let email = format!(
            "[email]\nurl = \"smtp://{}\"\nfrom = \"probe@fluxo.test\"\n",
            sink.addr
        );
        // A kill mid-send leaves the e-mail claimed until its outbox lease runs out: the
        // shortest lease allowed (20 s), so the restarted process resends it well within
        // wait_sent's minute (with the default 120 s lease this raced the minute).
        let config = config_with(
            dir.path(),
            "fluxo",
            upstream.port(),
            &email,
            "outbox_lease_ms = 20000",
        );
        let url = format!("http://{upstream}");

        let server = Served::start(&data, &config);
        let token = server.tenant("acme");
        upload_probe(&server, &token);
        // Enough work that every round's kill finds runs in flight.
        let runs = (12 * usize::try_from(rounds).unwrap()).max(100);
        let ids: Vec<String> = (0..runs)
            .map(|n| submit(&server, &token, &format!("p{n}"), &url))
            .collect();

        let mut server = server;
        let mut killed_mid_run = 0;
        for round in 0..rounds {
            // Kill at a different point of a run each round.
            let until = Instant::now() + Duration::from_secs(10);
            while count(&server, &token, "running") == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(u64::from(round) * 370 % 900));
            killed_mid_run += count(&server, &token, "running");
            server.kill();
            server = Served::start(&data, &config);
        }
        assert!(killed_mid_run > 0, "no kill found a run in flight");

        let records = wait_final(&server, &token, &ids, Duration::from_secs(180));
        assert_applied_once(&server, &token, &records);
        let redelivered = records
            .iter()
            .filter(|run| run["report"]["outcome"]["output"]["attempt"].as_u64() > Some(1))
            .count();
        assert!(
            redelivered > 0,
            "some runs were finished by a later process"
        );
        wait_sent(&server, records.len());
        (records, sink)
    })
    .await
    .unwrap();
    let (records, sink) = records;
    // Every committed e-mail reached the relay under the Message-ID its run gave it.
    // Delivery is at least once: a kill between the relay's 250 and marking the row
    // sent resends the same message, never a different one.
    let ids: Vec<String> = sink
        .accepted()
        .iter()
        .filter_map(|message| {
            message
                .lines()
                .find_map(|line| line.strip_prefix("Message-ID: "))
                .map(str::to_owned)
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), records.len(), "one Message-ID per run");
    assert!(ids.len() >= records.len());
}

/// Waits until the outbox has sent `expected` e-mails.
fn wait_sent(server: &Served, expected: usize) {
    let db = rusqlite::Connection::open_with_flags(
        server.data.join("fluxo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let sent: i64 = db
            .query_row(
                "SELECT count(*) FROM outbox WHERE kind = 'email' AND status = 'sent'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        if usize::try_from(sent).unwrap() == expected {
            return;
        }
        assert!(Instant::now() < until, "{sent} of {expected} e-mails sent");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_paused_past_its_lease_commits_nothing_when_it_wakes() {
    let upstream = slow_server(Duration::from_millis(1500), 200, "{}").await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let url = format!("http://{upstream}");
        let first = Served::start(
            &data,
            &config(dir.path(), "a", upstream.port(), "node = \"a\"\n"),
        );
        let token = first.tenant("acme");
        upload_probe(&first, &token);
        let id = submit(&first, &token, "p0", &url);
        let until = Instant::now() + Duration::from_secs(10);
        while count(&first, &token, "running") == 0 {
            assert!(Instant::now() < until, "the run never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Node a holds the lease and waits on the upstream; freeze it past the lease.
        first.signal("STOP");
        let second = Served::start(
            &data,
            &config(dir.path(), "b", upstream.port(), "node = \"b\"\n"),
        );
        let records = wait_final(
            &second,
            &token,
            std::slice::from_ref(&id),
            Duration::from_secs(30),
        );
        assert_eq!(
            records[0]["report"]["outcome"]["output"]["attempt"], 2,
            "{:#}",
            records[0]
        );
        // Node a wakes with the upstream's answer and a stale fencing token.
        first.signal("CONT");
        std::thread::sleep(Duration::from_millis(2500));
        let (_, run) = second.call("GET", &format!("/v1/runs/{id}"), &token, b"");
        assert_eq!(run["state"], "succeeded");
        assert_eq!(run["attempt"], 2, "{run:#}");
        assert_applied_once(&second, &token, &records);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_run_finish_and_exits_cleanly() {
    let upstream = slow_server(UPSTREAM_DELAY, 200, "{}").await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = config(dir.path(), "fluxo", upstream.port(), "");
        let server = Served::start(&data, &config);
        let token = server.tenant("acme");
        upload_probe(&server, &token);
        let id = submit(&server, &token, "p0", &format!("http://{upstream}"));
        let until = Instant::now() + Duration::from_secs(10);
        while count(&server, &token, "running") == 0 {
            assert!(Instant::now() < until, "the run never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        server.signal("TERM");
        assert_eq!(server.wait(), Some(0), "a clean exit");
        let server = Served::start(&data, &config);
        let (_, run) = server.call("GET", &format!("/v1/runs/{id}"), &token, b"");
        assert_eq!(
            run["state"], "succeeded",
            "finished before the exit: {run:#}"
        );
        assert_eq!(run["attempt"], 1, "not redelivered: {run:#}");
    })
    .await
    .unwrap();
}

/// Resident memory `fluxo serve` may reach while four guests flood their logs: the
/// engine, the pool's touched pages and four bounded reports fit well under it; an
/// unbounded log (1.2 GB of empty lines, seen before records had a cost) does not.
const FLOOD_RSS_BOUND: u64 = 512 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn guests_flooding_their_logs_through_serve_keep_the_server_bounded() {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("fluxo.toml");
        std::fs::write(&config, "[limits]\ndeadline_ms = 3000\n").unwrap();
        let server = Served::start(&data, &config);
        let token = server.tenant("acme");
        let (status, body) = server.call(
            "POST",
            "/v1/actions/flood/versions",
            &token,
            &guest(guests::LOG_FLOOD),
        );
        assert_eq!(status, 201, "{body}");
        let ids: Vec<String> = (0..4)
            .map(|_| {
                let (status, body) =
                    server.call("POST", "/v1/runs", &token, br#"{"action":"flood"}"#);
                assert_eq!(status, 202, "{body}");
                body["run_id"].as_str().unwrap().to_owned()
            })
            .collect();
        let mut peak = 0;
        let until = Instant::now() + Duration::from_secs(60);
        let records = loop {
            peak = peak.max(server.rss_bytes());
            let records: Vec<Value> = ids
                .iter()
                .map(|id| server.call("GET", &format!("/v1/runs/{id}"), &token, b"").1)
                .collect();
            if records
                .iter()
                .all(|run| !matches!(run["state"].as_str(), Some("queued" | "running")))
            {
                break records;
            }
            assert!(Instant::now() < until, "the floods never ended");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            peak < FLOOD_RSS_BOUND,
            "fluxo serve reached {} MiB",
            peak >> 20
        );
        for run in &records {
            let kind = run["report"]["error"]["kind"].as_str().unwrap_or_default();
            assert!(
                matches!(kind, "report_too_large" | "deadline_exceeded"),
                "a typed end: {run:#}"
            );
            assert!(run["report"]["logs_truncated"].as_bool().unwrap_or(false));
            assert!(
                run.to_string().len() < 2 << 20,
                "the stored record is bounded"
            );
        }
        assert_eq!(server.call("GET", "/healthz", "", b"").0, 200);
    })
    .await
    .unwrap();
}

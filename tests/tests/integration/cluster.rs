//! Several `fluxo serve` nodes on one PostgreSQL database (the server named by
//! `FLUXO_TEST_POSTGRES_URL`; `scripts/with-postgres` starts one): an action uploaded on
//! one node runs on another; a node killed mid-run loses nothing and applies nothing
//! twice; a tenant's concurrency cap holds over the whole cluster.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::crash::{config_with, count, submit, upload_probe, wait_final};
use crate::email::SmtpSink;
use crate::served::Served;
use crate::support::{guest, slow_server};
use fluxo_tests::guests;

const ADMIN: &str = "fxa_cluster-admin-token-for-tests";

/// The secrets key every node of a test cluster shares (base64 of 32 bytes).
const SECRETS_KEY: &str = "Zmx1eG8tY2x1c3Rlci10ZXN0LWtleS0zMi1ieXRlcyE=";

/// Counts in the shared database.
async fn query_count(url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `nodes` nodes on one fresh database, each with its own data directory (its artifact
/// cache), one configuration.
fn cluster(
    dir: &std::path::Path,
    url: &str,
    upstream_port: u16,
    sections: &str,
    extra: &str,
    nodes: usize,
) -> (Vec<Served>, std::path::PathBuf) {
    let config = config_with(dir, "cluster", upstream_port, sections, extra);
    let served = (0..nodes)
        .map(|n| {
            Served::start_with(
                &dir.join(format!("node{n}")),
                &config,
                &[
                    ("FLUXO_STORE_URL", url),
                    ("FLUXO_ADMIN_TOKEN", ADMIN),
                    ("FLUXO_SECRETS_KEY", SECRETS_KEY),
                ],
            )
        })
        .collect();
    (served, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_one_database_and_a_killed_node_loses_nothing() {
    let url = fluxo_store_postgres::testing::fresh_database().await;
    let upstream = slow_server(Duration::from_millis(100), 200, "{}").await;
    let sink = SmtpSink::start(&[]).await;
    let database = url.clone();
    // The surviving nodes come back out of the blocking part: they must keep sending
    // while the e-mails are counted below.
    let (records, sink, _nodes, _dir) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let email = format!(
            "[email]\nurl = \"smtp://{}\"\nfrom = \"probe@fluxo.test\"\n",
            sink.addr
        );
        // A killed node's claimed e-mails go out from another node after 20 s.
        let (mut nodes, config) = cluster(
            dir.path(),
            &url,
            upstream.port(),
            &email,
            "outbox_lease_ms = 20000\n",
            3,
        );
        let token = nodes[0].tenant("acme");
        // Uploaded on node 1, run by whichever node claims: every node compiles from the
        // shared component bytes.
        upload_probe(&nodes[0], &token);
        let target = format!("http://{upstream}");
        let runs = 300;
        let ids: Vec<String> = (0..runs)
            .map(|n| submit(&nodes[n % 3], &token, &format!("p{n}"), &target))
            .collect();
        // Kill node 2 while it holds runs.
        let victim = std::fs::read_to_string(dir.path().join("node1/node-id")).unwrap();
        let victim = victim.trim();
        let holds_runs = |server: &Served| {
            let (_, body) = server.call("GET", "/v1/runs?state=running&limit=500", &token, b"");
            body["runs"]
                .as_array()
                .is_some_and(|runs| runs.iter().any(|run| run["node"] == victim))
        };
        let until = Instant::now() + Duration::from_secs(20);
        while !holds_runs(&nodes[0]) {
            assert!(Instant::now() < until, "node 2 never held a run");
            std::thread::sleep(Duration::from_millis(10));
        }
        nodes.remove(1).kill();
        // What was node 3 is now `nodes[1]`.
        let records = wait_final(&nodes[1], &token, &ids, Duration::from_secs(120));
        let _ = config;
        (records, sink, nodes, dir)
    })
    .await
    .unwrap();
    let nodes_seen: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|run| run["node"].as_str())
        .collect();
    assert!(
        nodes_seen.len() >= 2,
        "the runs were spread: {nodes_seen:?}"
    );
    for run in &records {
        assert_eq!(run["state"], "succeeded", "{run:#}");
        assert_eq!(run["report"]["outcome"]["output"]["visits"], 1, "{run:#}");
    }
    let emails = query_count(
        &database,
        "SELECT count(*) FROM outbox WHERE kind = 'email'",
    )
    .await;
    assert_eq!(
        usize::try_from(emails).unwrap(),
        records.len(),
        "one e-mail per run"
    );
    let twice = query_count(
        &database,
        "SELECT count(*) FROM state WHERE key = 'visits' AND value <> '1'::bytea",
    )
    .await;
    assert_eq!(twice, 0, "no contact was counted twice");
    // Every e-mail reaches the relay under its run's Message-ID (at least once).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = query_count(
            &database,
            "SELECT count(*) FROM outbox WHERE kind = 'email' AND status = 'sent'",
        )
        .await;
        if usize::try_from(sent).unwrap() == records.len() {
            break;
        }
        assert!(Instant::now() < until, "{sent} of {} sent", records.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let distinct: std::collections::BTreeSet<String> = sink
        .accepted()
        .iter()
        .filter_map(|message| {
            message
                .lines()
                .find_map(|line| line.strip_prefix("Message-ID: "))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(distinct.len(), records.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_s_cap_holds_over_the_whole_cluster() {
    let url = fluxo_store_postgres::testing::fresh_database().await;
    let upstream = slow_server(Duration::from_millis(400), 200, "{}").await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _) = cluster(dir.path(), &url, upstream.port(), "", "per_tenant = 2\n", 3);
        let token = nodes[0].tenant("acme");
        upload_probe(&nodes[0], &token);
        let target = format!("http://{upstream}");
        let ids: Vec<String> = (0..18)
            .map(|n| submit(&nodes[n % 3], &token, &format!("c{n}"), &target))
            .collect();
        let mut most = 0;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let running = count(&nodes[0], &token, "running");
            most = most.max(running);
            let (_, last) = nodes[0].call("GET", &format!("/v1/runs/{}", ids[17]), &token, b"");
            let done = |run: &Value| {
                !matches!(
                    run["state"].as_str(),
                    Some("queued" | "running" | "retrying")
                )
            };
            if done(&last) && count(&nodes[0], &token, "queued") == 0 && running == 0 {
                break;
            }
            assert!(Instant::now() < until, "the runs never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            most <= 2,
            "{most} runs of one tenant ran at once over 3 nodes"
        );
        assert_eq!(most, 2, "the cap was reached");
        let records = wait_final(&nodes[1], &token, &ids, Duration::from_secs(30));
        assert!(records.iter().all(|run| run["state"] == "succeeded"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_set_through_one_node_is_used_by_another() {
    let url = fluxo_store_postgres::testing::fresh_database().await;
    let upstream = slow_server(Duration::from_millis(1), 200, "{}").await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _) = cluster(dir.path(), &url, upstream.port(), "", "", 2);
        let token = nodes[0].tenant("acme");
        let (status, body) = nodes[0].call(
            "PUT",
            "/v1/secrets/api_token",
            &token,
            br#"{"value":"shared-secret-5e1f"}"#,
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = nodes[0].call(
            "POST",
            "/v1/actions/leaker/versions",
            &token,
            &guest(guests::SECRET_LEAKER),
        );
        assert_eq!(status, 201, "{body}");
        // Node 2 opens what node 1 sealed: the run gets the value (and the record
        // masks it).
        let event = serde_json::json!({
            "contact": { "id": "c1" },
            "input": { "url": format!("http://{upstream}"), "fail": false },
        });
        let (status, body) = nodes[1].call(
            "POST",
            "/v1/actions/leaker/test",
            &token,
            event.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["report"]["status"], "succeeded", "{body:#}");
        assert!(!body.to_string().contains("shared-secret-5e1f"), "{body:#}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_a_shared_store_without_the_shared_key_refuses_to_start() {
    let url = fluxo_store_postgres::testing::fresh_database().await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with(dir.path(), "nokey", 1, "", "");
        let output = std::process::Command::new(
            fluxo_tests::fluxo_bin().unwrap_or_else(|problem| panic!("{problem}")),
        )
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("node"))
        .arg("--config")
        .arg(&config)
        .env("FLUXO_STORE_URL", &url)
        .env_remove("FLUXO_SECRETS_KEY")
        .env_remove("FLUXO_ADMIN_TOKEN")
        .output()
        .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("FLUXO_SECRETS_KEY"), "{stderr}");
        assert!(
            !dir.path().join("node/secrets.key").exists(),
            "no key of its own was made up"
        );
    })
    .await
    .unwrap();
}

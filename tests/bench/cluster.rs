//! Several release `fluxo serve` nodes on one PostgreSQL database (the shared store's
//! figures): accepted and end-to-end runs per second through the API for 1, 2 and 3
//! nodes, and how long the runs a `kill -9`ed node held take to finish on another.
//!
//! The database URLs come from the caller (the `cluster` bench binary makes a fresh
//! database per measurement on the server `scripts/with-postgres` starts).
#![allow(
    clippy::indexing_slicing,
    reason = "a benchmark: node lists are built right here and JSON answers index into Null"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::api::{Server, run_body};
use super::stats;

/// The admin token of the benchmark's nodes.
const ADMIN: &str = "fxa_cluster-bench-admin-token";

/// The secrets key every node shares (base64 of 32 bytes).
const SECRETS_KEY: &str = "Zmx1eG8tY2x1c3Rlci1iZW5jaC1rZXktMzItYnl0ZXM=";

/// One row: `nodes` nodes, `clients` clients spread over them.
#[derive(Debug, Clone)]
pub struct NodesRow {
    /// Nodes on the database.
    pub nodes: usize,
    /// Concurrent clients (client `i` talks to node `i % nodes`).
    pub clients: usize,
    /// 202 answers per second over the window.
    pub accepted_per_second: f64,
    /// Latency of the accepts.
    pub latency: stats::Latency,
    /// 429 answers.
    pub rejected: u64,
    /// Runs accepted in the window, per second from its start until the last succeeded
    /// on whichever node ran it.
    pub end_to_end_per_second: f64,
}

/// The `kill -9` measurement.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The lease the nodes ran with.
    pub lease: Duration,
    /// Runs the killed node held (running) when it died.
    pub held: usize,
    /// From the kill until every run was final.
    pub recovered_in: Duration,
}

fn start_nodes(
    fluxo_bin: &Path,
    url: &str,
    nodes: usize,
    config: &str,
) -> anyhow::Result<Vec<Server>> {
    (0..nodes)
        .map(|_| {
            Server::start_with(
                fluxo_bin,
                &[
                    ("FLUXO_STORE_URL", url),
                    ("FLUXO_SECRETS_KEY", SECRETS_KEY),
                    ("FLUXO_ADMIN_TOKEN", ADMIN),
                ],
                Some(config),
            )
        })
        .collect()
}

/// Accepted and end-to-end runs per second with `nodes` nodes on the database at `url`
/// (fresh, one per call).
///
/// # Errors
/// When a node cannot start or answers unexpectedly.
pub async fn nodes_row(
    fluxo_bin: &Path,
    url: &str,
    triage: &[u8],
    nodes: usize,
    clients: usize,
    window: Duration,
) -> anyhow::Result<NodesRow> {
    let servers: Arc<Vec<Server>> = Arc::new(start_nodes(
        fluxo_bin,
        url,
        nodes,
        "[server]\nbacklog_per_tenant = 10_000_000\n",
    )?);
    let token = Arc::new(servers[0].tenant("bench", triage).await?);
    let input: serde_json::Value = serde_json::from_str(&fluxo_triage::sample_event())?;
    let body = run_body(&input);
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (servers, token, body) = (servers.clone(), token.clone(), body.clone());
        let (accepted, rejected) = (accepted.clone(), rejected.clone());
        tasks.push(tokio::spawn(async move {
            let server = &servers[client % servers.len()];
            let mut latencies = Vec::new();
            while started.elapsed() < window {
                let sent = Instant::now();
                let (status, answer) = server
                    .call("POST", "/v1/runs", &token, body.clone())
                    .await?;
                match status {
                    202 => {
                        latencies.push(sent.elapsed());
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    other => anyhow::bail!("POST /v1/runs answered {other}: {answer}"),
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let accepted = accepted.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = 0;
        for server in servers.iter() {
            done += server.succeeded().await?;
        }
        if done >= accepted {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "only {done} of {accepted} runs succeeded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = started.elapsed();
    #[allow(clippy::cast_precision_loss, reason = "rates")]
    Ok(NodesRow {
        nodes,
        clients,
        accepted_per_second: accepted as f64 / elapsed.as_secs_f64(),
        latency: stats::latency(&latencies),
        rejected: rejected.load(Ordering::Relaxed),
        end_to_end_per_second: accepted as f64 / drained.as_secs_f64(),
    })
}

/// A loopback HTTP server answering every request with `200 {}` after `delay`.
async fn slow_upstream(delay: Duration) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                tokio::time::sleep(delay).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    Ok(port)
}

/// Runs in `state` (up to 500), with the node holding each.
async fn runs_in(server: &Server, token: &str, state: &str) -> anyhow::Result<Vec<Option<String>>> {
    let (status, answer) = server
        .call(
            "GET",
            &format!("/v1/runs?state={state}&limit=500"),
            token,
            Bytes::new(),
        )
        .await?;
    anyhow::ensure!(status == 200, "listing runs: {status} {answer}");
    Ok(answer["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|run| run["node"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Two nodes with a `lease_ms` lease run `runs` runs of `probe` (each waits 300 ms on a
/// loopback upstream); the second node is killed while it holds some; the time until
/// every run is final.
///
/// # Errors
/// When a node cannot start, the killed node never held a run, or the runs never end.
pub async fn recovery(
    fluxo_bin: &Path,
    url: &str,
    probe: &[u8],
    lease_ms: u64,
    runs: usize,
) -> anyhow::Result<Recovery> {
    let port = slow_upstream(Duration::from_millis(300)).await?;
    let config = format!(
        "[http]\nallow_private_cidrs = [\"127.0.0.1/32\"]\n[[http.tenant_allow.bench]]\nhost = \"127.0.0.1\"\nport = {port}\n[server]\nlease_ms = {lease_ms}\n"
    );
    let mut servers = start_nodes(fluxo_bin, url, 2, &config)?;
    let admin = ADMIN.to_owned();
    let (status, answer) = servers[0]
        .call(
            "POST",
            "/v1/tenants",
            &admin,
            Bytes::from(r#"{"id":"bench"}"#),
        )
        .await?;
    anyhow::ensure!(status == 201, "tenant: {status} {answer}");
    let (status, answer) = servers[0]
        .call("POST", "/v1/tenants/bench/tokens", &admin, Bytes::new())
        .await?;
    anyhow::ensure!(status == 201, "token: {status} {answer}");
    let token = answer["token"].as_str().unwrap_or_default().to_owned();
    let (status, answer) = servers[0]
        .call(
            "POST",
            "/v1/actions/probe/versions",
            &token,
            Bytes::copy_from_slice(probe),
        )
        .await?;
    anyhow::ensure!(status == 201, "upload: {status} {answer}");
    for n in 0..runs {
        let body = serde_json::json!({
            "action": "probe",
            "contact": { "id": format!("c{n}") },
            "input": { "url": format!("http://127.0.0.1:{port}") },
        });
        let (status, answer) = servers[n % 2]
            .call("POST", "/v1/runs", &token, Bytes::from(body.to_string()))
            .await?;
        anyhow::ensure!(status == 202, "submit: {status} {answer}");
    }
    let victim = servers[1].node_id()?;
    let until = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let held = runs_in(&servers[0], &token, "running")
            .await?
            .iter()
            .filter(|node| node.as_deref() == Some(victim.as_str()))
            .count();
        if held > 0 {
            break held;
        }
        anyhow::ensure!(Instant::now() < until, "the second node never held a run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    servers[1].kill();
    let killed = Instant::now();
    let until = killed + Duration::from_secs(300);
    loop {
        let open = runs_in(&servers[0], &token, "running").await?.len()
            + runs_in(&servers[0], &token, "queued").await?.len()
            + runs_in(&servers[0], &token, "retrying").await?.len();
        if open == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < until, "{open} runs never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Recovery {
        lease: Duration::from_millis(lease_ms),
        held,
        recovered_in: killed.elapsed(),
    })
}

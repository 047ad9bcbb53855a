//! Durable runs through the API: a release `fluxo serve` process on a fresh data
//! directory (SQLite, `synchronous=FULL`), the triage action uploaded, and clients on
//! keep-alive connections posting `POST /v1/runs`.
//!
//! - **Accepted/s** at 1, 16 and 64 clients: 202s per second of the window, with the
//!   latency of each accept (the answer comes after the run's row is on disk).
//! - **End to end/s**: the runs accepted in a window divided by the time from the
//!   window's start until the last of them succeeded (read from `/metrics`).
//! - **Noisy neighbour**: nine quiet tenants submit one run a second each, first alone,
//!   then while a tenth floods; their queue wait (`started_ms - created_ms` of the run
//!   records) at p95 in both phases, and the flood's own rate.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::stats;

/// One accept measurement.
#[derive(Debug, Clone)]
pub struct AcceptRow {
    /// Concurrent clients.
    pub clients: usize,
    /// 202 answers per second.
    pub accepted_per_second: f64,
    /// 429 answers (a full backlog).
    pub rejected: u64,
    /// Latency of the accepts.
    pub latency: stats::Latency,
    /// Runs accepted in the window, executed and committed, per second from the
    /// window's start until the last succeeded.
    pub end_to_end_per_second: f64,
}

/// The noisy-neighbour measurement.
#[derive(Debug, Clone)]
pub struct Neighbours {
    /// Quiet tenants' queue wait alone, p50 and p95.
    pub quiet_alone: (Duration, Duration),
    /// Quiet tenants' queue wait during the flood, p50 and p95.
    pub quiet_flooded: (Duration, Duration),
    /// Runs the flooding tenant submitted.
    pub flood_runs: usize,
    /// The flooding tenant's runs finished per second while the quiet ones ran.
    pub flood_per_second: f64,
}

/// Everything the section measured.
#[derive(Debug, Clone, Default)]
pub struct ApiFigures {
    /// One row per client count.
    pub accept: Vec<AcceptRow>,
    /// Noisy neighbour, when it ran.
    pub neighbours: Option<Neighbours>,
}

/// A `fluxo serve` process; killed when dropped.
pub struct Server {
    child: Child,
    url: String,
    admin: String,
    client: Client<HttpConnector, Full<Bytes>>,
    dir: tempfile::TempDir,
    /// How it was started: the binary, the environment, the configuration file.
    command: (
        std::path::PathBuf,
        Vec<(String, String)>,
        Option<std::path::PathBuf>,
    ),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(fluxo_bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(fluxo_bin, &[], None)
    }

    /// Starts `fluxo serve` on a fresh data directory with extra environment variables
    /// (`FLUXO_STORE_URL`, `FLUXO_SECRETS_KEY`, `FLUXO_ADMIN_TOKEN`) and configuration
    /// text.
    ///
    /// # Errors
    /// When it cannot be started or never says where it listens.
    pub fn start_with(
        fluxo_bin: &Path,
        env: &[(&str, &str)],
        config: Option<&str>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = match config {
            Some(config) => {
                let path = dir.path().join("fluxo.toml");
                std::fs::write(&path, config)?;
                Some(path)
            }
            None => None,
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let (child, url) = spawn(fluxo_bin, &dir.path().join("data"), &env, config.as_deref())?;
        let admin = match env.iter().find(|(name, _)| name == "FLUXO_ADMIN_TOKEN") {
            Some((_, token)) => token.clone(),
            None => std::fs::read_to_string(dir.path().join("data/admin-token"))?
                .trim()
                .to_owned(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build_http();
        Ok(Self {
            child,
            url,
            admin,
            client,
            dir,
            command: (fluxo_bin.to_owned(), env, config),
        })
    }

    /// Starts the process again on the same data directory (after [`Server::kill`]).
    ///
    /// # Errors
    /// When it cannot be started or never says where it listens.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (bin, env, config) = &self.command;
        let (child, url) = spawn(bin, &self.dir.path().join("data"), env, config.as_deref())?;
        self.child = child;
        self.url = url;
        Ok(())
    }

    /// The admin token.
    #[must_use]
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .context("no VmRSS")
    }
}

/// Starts `fluxo serve` on `data`; the child and where it listens.
fn spawn(
    fluxo_bin: &Path,
    data: &Path,
    env: &[(String, String)],
    config: Option<&Path>,
) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(fluxo_bin);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("FLUXO_ADMIN_TOKEN")
        .env_remove("FLUXO_STORE_URL")
        .env_remove("FLUXO_SECRETS_KEY")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().context("starting fluxo serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .context("fluxo serve stopped before listening")??;
        if let Some(word) = line
            .split_whitespace()
            .find(|word| line.contains("listening on") && word.starts_with("http://"))
        {
            break word.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, url))
}

impl Server {
    /// The node's name (kept in its data directory).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn node_id(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.path().join("data/node-id"))?
                .trim()
                .to_owned(),
        )
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One API call; the status and the JSON answer.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    /// Creates tenant `id`, its token, and uploads `triage` as its action `triage`.
    ///
    /// # Errors
    /// When an answer is unexpected.
    pub async fn tenant(&self, id: &str, triage: &[u8]) -> anyhow::Result<String> {
        let token = self.bare_tenant(id).await?;
        let (status, answer) = self
            .call(
                "POST",
                "/v1/actions/triage/versions",
                &token,
                Bytes::copy_from_slice(triage),
            )
            .await?;
        anyhow::ensure!(status == 201, "uploading triage: {status} {answer}");
        Ok(token)
    }

    /// Creates tenant `id` and returns a token for it.
    ///
    /// # Errors
    /// When an answer is unexpected.
    pub async fn bare_tenant(&self, id: &str) -> anyhow::Result<String> {
        let admin = self.admin.clone();
        let body = Bytes::from(serde_json::json!({ "id": id }).to_string());
        let (status, answer) = self.call("POST", "/v1/tenants", &admin, body).await?;
        anyhow::ensure!(status == 201, "creating tenant {id}: {status} {answer}");
        let (status, answer) = self
            .call(
                "POST",
                &format!("/v1/tenants/{id}/tokens"),
                &admin,
                Bytes::new(),
            )
            .await?;
        anyhow::ensure!(status == 201, "token for {id}: {status} {answer}");
        Ok(answer
            .get("token")
            .and_then(serde_json::Value::as_str)
            .context("no token")?
            .to_owned())
    }

    /// Succeeded runs this node committed so far
    /// (`fluxo_runs_total{mode="run",state="succeeded"}`).
    ///
    /// # Errors
    /// When `/metrics` does not answer.
    pub async fn succeeded(&self) -> anyhow::Result<u64> {
        let request =
            hyper::Request::get(format!("{}/metrics", self.url)).body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let text = response.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&text);
        Ok(text
            .lines()
            .filter(|line| {
                line.starts_with("fluxo_runs_total{")
                    && line.contains("mode=\"run\"")
                    && line.contains("state=\"succeeded\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|count| {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a counter"
                )]
                let count = count as u64;
                count
            })
            .sum())
    }

    /// Waits until `count` runs succeeded in all.
    async fn drain(&self, count: u64, patience: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + patience;
        loop {
            let done = self.succeeded().await?;
            if done >= count {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "only {done} of {count} runs succeeded within {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The body of `POST /v1/runs` for the triage action.
#[must_use]
pub fn run_body(input: &serde_json::Value) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "action": "triage",
            "contact": { "id": "contact-48213" },
            "input": input,
        })
        .to_string(),
    )
}

/// Runs the section.
///
/// # Errors
/// When the server cannot be started or answers unexpectedly.
pub async fn measure(
    fluxo_bin: &Path,
    triage: &[u8],
    clients: &[usize],
    window: Duration,
    flood: usize,
) -> anyhow::Result<ApiFigures> {
    let server = Arc::new(Server::start(fluxo_bin)?);
    let token = Arc::new(server.tenant("bench", triage).await?);
    let input: serde_json::Value = serde_json::from_str(&fluxo_triage::sample_event())?;
    let body = run_body(&input);
    let mut figures = ApiFigures::default();
    let mut accepted_so_far = 0;
    for &count in clients {
        let accepted = Arc::new(AtomicU64::new(0));
        let rejected = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..count {
            let (server, token, body) = (server.clone(), token.clone(), body.clone());
            let (accepted, rejected) = (accepted.clone(), rejected.clone());
            tasks.push(tokio::spawn(async move {
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
        accepted_so_far += accepted;
        server
            .drain(accepted_so_far, Duration::from_secs(600))
            .await?;
        let drained = started.elapsed();
        #[allow(clippy::cast_precision_loss, reason = "rates")]
        figures.accept.push(AcceptRow {
            clients: count,
            accepted_per_second: accepted as f64 / elapsed.as_secs_f64(),
            rejected: rejected.load(Ordering::Relaxed),
            latency: stats::latency(&latencies),
            end_to_end_per_second: accepted as f64 / drained.as_secs_f64(),
        });
    }
    if flood > 0 {
        figures.neighbours = Some(neighbours(&server, triage, &body, flood).await?);
    }
    Ok(figures)
}

/// Quiet tenants' queue waits, alone and next to a flood of `flood` runs.
async fn neighbours(
    server: &Arc<Server>,
    triage: &[u8],
    body: &Bytes,
    flood: usize,
) -> anyhow::Result<Neighbours> {
    let mut quiet = Vec::new();
    for n in 0..9 {
        quiet.push(server.tenant(&format!("quiet{n}"), triage).await?);
    }
    let flooder = Arc::new(server.tenant("flood", triage).await?);
    let seconds = 5;
    let alone = quiet_waits(server, &quiet, body, seconds).await?;

    let before = server.succeeded().await?;
    let submitted = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for _ in 0..16 {
        let (server, token, body, submitted) = (
            server.clone(),
            flooder.clone(),
            body.clone(),
            submitted.clone(),
        );
        floods.push(tokio::spawn(async move {
            while submitted.fetch_add(1, Ordering::Relaxed) < flood as u64 {
                let (status, answer) = server
                    .call("POST", "/v1/runs", &token, body.clone())
                    .await?;
                anyhow::ensure!(status == 202, "flood submit: {status} {answer}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let started = Instant::now();
    let flooded = quiet_waits(server, &quiet, body, seconds).await?;
    let quiet_done = started.elapsed();
    for task in floods {
        task.await??;
    }
    let flood_done = server.succeeded().await?.saturating_sub(before);
    let quiet_runs = u64::try_from(quiet.len() * seconds).unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "a rate")]
    let flood_per_second = flood_done.saturating_sub(quiet_runs) as f64 / quiet_done.as_secs_f64();
    let total = before + u64::try_from(flood).unwrap_or(0) + quiet_runs;
    server.drain(total, Duration::from_secs(600)).await?;
    Ok(Neighbours {
        quiet_alone: alone,
        quiet_flooded: flooded,
        flood_runs: flood,
        flood_per_second,
    })
}

/// Each quiet tenant submits one run a second for `seconds`; their queue waits' p50
/// and p95.
async fn quiet_waits(
    server: &Arc<Server>,
    quiet: &[String],
    body: &Bytes,
    seconds: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut ids = Vec::new();
    for _ in 0..seconds {
        let tick = Instant::now();
        for token in quiet {
            let (status, answer) = server.call("POST", "/v1/runs", token, body.clone()).await?;
            anyhow::ensure!(status == 202, "quiet submit: {status} {answer}");
            ids.push((
                token.clone(),
                answer
                    .get("run_id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    let mut waits = Vec::new();
    for (token, id) in ids {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, run) = server
                .call("GET", &format!("/v1/runs/{id}"), &token, Bytes::new())
                .await?;
            if let (Some(created), Some(started)) = (
                run.get("created_ms").and_then(serde_json::Value::as_i64),
                run.get("started_ms").and_then(serde_json::Value::as_i64),
            ) {
                waits.push(Duration::from_millis(
                    u64::try_from(started - created).unwrap_or(0),
                ));
                break;
            }
            anyhow::ensure!(Instant::now() < until, "quiet run {id} never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    waits.sort_unstable();
    Ok((
        stats::percentile(&waits, 50.0),
        stats::percentile(&waits, 95.0),
    ))
}

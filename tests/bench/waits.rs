//! Workflows' figures (`scripts/bench-workflows`), against issue 11's goals:
//!
//! - **Block overhead**: a 10-block workflow of `set_field`, `condition`, `tag`,
//!   `set_variable` and `untag` blocks with no I/O, run in-process through the
//!   interpreter on a current-thread runtime (so wall time is this thread's CPU time),
//!   per block; and the same loop timing one run of the triage component (`R`), in the
//!   same process, for the ratio. Goal: ≤ 50 µs a block.
//! - **Waiting runs**: a release `fluxo serve` on a fresh SQLite data directory; the
//!   server's resident memory fresh (after 10 runs waited and were answered, one at a
//!   time: a wait, its answer and the resume have run; a timer's firing has not), idle
//!   after `N` runs that do not wait were submitted and ended (the baseline: the same
//!   API and store churn), and with `N / 2` then `N` runs of a workflow whose first
//!   step waits for the contact's reply all waiting. Goal: within 10 % of idle. The
//!   half-way figure gives what one more waiting run holds (the second half's growth
//!   over its count), which separates a cost per waiting run from a one-off growth
//!   (caches and arenas filling up). It is an estimate: memory the allocator freed
//!   earlier may be reused by either half.
//! - **Resume**: one at a time, `POST /v1/contacts/{id}/messages` for 500 of them; from
//!   just before the request to the run's `finished_ms` (same clock). Goal: p99 ≤ 100 ms.
//! - **Timers**: the server is killed, the waits all fall due while it is down, and it is
//!   started again: the time from its listening until no run waits (every timer fired,
//!   its run queued) and until every run ended. Goal: all fire within 1 s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use fluxo_core::{ActionName, Contact, ContactId, Limits, TenantId};
use fluxo_egress::{Egress, HttpPolicy};
use fluxo_sandbox::platform::MemoryState;
use fluxo_sandbox::{Capabilities, Config, RunContext, RunMeta};
use fluxo_workflow::{HttpMode, Interpreter, Start, Templates};

use super::api::Server;
use super::contenders::Contender as _;
use super::contenders::fluxo::Fluxo;
use super::stats;

/// The 10-block workflow of the overhead row.
const TEN_BLOCKS: &str = r#"{"name": "ten", "steps": [
    {"id": "s1", "type": "set_field", "field": "stage", "value": "lead", "next": "c1"},
    {"id": "c1", "type": "condition", "rules": [{"left": "contact.fields.stage", "op": "equals", "value": "lead"}], "then": "t1", "else": "t1"},
    {"id": "t1", "type": "tag", "tag": "onboarded", "next": "v1"},
    {"id": "v1", "type": "set_variable", "name": "n", "increment": 1, "next": "s2"},
    {"id": "s2", "type": "set_field", "field": "source", "value": "{{contact.fields.name}} via chat", "next": "c2"},
    {"id": "c2", "type": "condition", "rules": [{"left": "vars.n", "op": "gte", "value": "1"}], "then": "t2", "else": "t2"},
    {"id": "t2", "type": "tag", "tag": "vip", "next": "v2"},
    {"id": "v2", "type": "set_variable", "name": "n", "increment": 1, "next": "u1"},
    {"id": "u1", "type": "untag", "tag": "vip", "next": "s3"},
    {"id": "s3", "type": "set_field", "field": "count", "value": "{{vars.n}}"}
]}"#;

/// A workflow of one step that does not wait (the baseline's churn).
const NO_WAIT: &str = r#"{"name": "nowait", "steps": [
    {"id": "file", "type": "set_variable", "name": "seen", "value": "yes"}
]}"#;

/// A workflow whose first step waits for the reply (`timeout_seconds` given).
fn waiter(timeout_seconds: u64) -> String {
    serde_json::json!({"name": "waiter", "steps": [
        {"id": "answer", "type": "wait_for_reply", "save_as": "choice",
         "timeout_seconds": timeout_seconds, "next": "file", "on_timeout": "file"},
        {"id": "file", "type": "set_variable", "name": "seen", "value": "{{vars.choice}}"}
    ]})
    .to_string()
}

/// The section's figures.
#[derive(Debug, Clone)]
pub struct WaitFigures {
    /// Host time per built-in block, 10-block workflow, microseconds (median of rounds).
    pub block_us: f64,
    /// One triage component run in the same loop, microseconds (median of rounds).
    pub component_us: f64,
    /// Runs waiting at once.
    pub waiting: usize,
    /// Server RSS idle, bytes, fresh.
    pub rss_fresh: u64,
    /// Server RSS idle, bytes, after `waiting` runs that did not wait were submitted and
    /// ended (the same API and store churn): the baseline.
    pub rss_idle: u64,
    /// Server RSS with half of `waiting` runs waiting, bytes.
    pub rss_half: u64,
    /// Server RSS with `waiting` runs waiting, bytes.
    pub rss_waiting: u64,
    /// Resume latency (message posted → run finished).
    pub resume: stats::Latency,
    /// Timers due at once when the server started again.
    pub timers: usize,
    /// From listening until no run waited (every timer fired).
    pub fired_in: Duration,
    /// From listening until every run ended.
    pub ended_in: Duration,
}

/// Microseconds per block of the 10-block workflow and per triage run, medians of 7 rounds.
/// Call it outside any tokio runtime: it runs its own current-thread one.
///
/// # Errors
/// When the workflow or the component does not run.
pub fn overhead(triage: &[u8]) -> anyhow::Result<(f64, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let workflow = fluxo_workflow::check(TEN_BLOCKS, &Templates::new())
        .map_err(|problems| anyhow::anyhow!("{problems:?}"))?;
    let interpreter = Interpreter::new();
    let egress = Egress::new(&HttpPolicy::default(), Arc::new(NoDns))?;
    let capabilities = Arc::new(Capabilities {
        egress: Arc::new(egress),
        state: Arc::new(MemoryState::new()),
    });
    let meta = RunMeta::new(TenantId::parse("acme")?, ActionName::parse("ten")?);
    let mut contact = Contact::with_id(ContactId::parse("c-1")?);
    contact.fields.insert("name".into(), "Ana".into());
    let component = Fluxo::new(
        "R",
        Fluxo::variants()[0].1,
        16,
        Config::default(),
        triage,
        &fluxo_triage::sample_event(),
    )?;
    const RUNS: u32 = 2_000;
    let mut blocks = Vec::new();
    let mut components = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        for _ in 0..RUNS {
            let mut ctx = RunContext::new(meta.clone(), Limits::default(), capabilities.clone())
                .with_contact(contact.clone());
            let run = runtime.block_on(interpreter.run(
                &workflow,
                &mut ctx,
                Start::default(),
                &HttpMode::Live,
                &mut || 0.5,
            ));
            anyhow::ensure!(run.succeeded() && run.trace.len() == 10, "{run:?}");
        }
        blocks.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS * 10));
        let started = Instant::now();
        for _ in 0..RUNS {
            runtime.block_on(component.run())?;
        }
        components.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS));
    }
    Ok((
        stats::spread(&blocks).median,
        stats::spread(&components).median,
    ))
}

/// Resolves nothing: the overhead workflow makes no request.
struct NoDns;

impl fluxo_egress::Resolve for NoDns {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> fluxo_egress::BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
        Box::pin(async move { Err(std::io::Error::other(format!("no DNS here: {host}"))) })
    }
}

/// The served rows (memory, resume, timers) with `count` runs waiting; the overhead
/// figures are left at zero for [`overhead`] to fill.
///
/// # Errors
/// When the server cannot start or answers unexpectedly.
pub async fn served(fluxo_bin: &Path, count: usize) -> anyhow::Result<WaitFigures> {
    // Long enough to submit every run and measure the resumes before any times out; the
    // timers row waits it out with the server down.
    let timeout = 60 + u64::try_from(count / 100).unwrap_or(0);
    let config = "[server]\nbacklog_per_tenant = 1000000\n";
    let mut server = Server::start_with(fluxo_bin, &[], Some(config))?;
    let token = server.bare_tenant("acme").await?;
    let (status, answer) = server
        .call(
            "POST",
            "/v1/workflows/waiter/versions",
            &token,
            Bytes::from(waiter(timeout)),
        )
        .await?;
    anyhow::ensure!(status == 201, "uploading the workflow: {status} {answer}");
    let (status, answer) = server
        .call(
            "POST",
            "/v1/workflows/nowait/versions",
            &token,
            Bytes::from_static(NO_WAIT.as_bytes()),
        )
        .await?;
    anyhow::ensure!(status == 201, "uploading the workflow: {status} {answer}");

    // Fresh, after ten runs waited and were answered one at a time (a wait, its timer's
    // arming, the answer and the resume have run once).
    for n in 0..10 {
        let contact = format!("warm-{n}");
        let warm = submit(&server, &token, "waiter", &contact).await?;
        until_state(&server, &token, &warm, "waiting").await?;
        reply(&server, &token, &contact).await?;
        until_state(&server, &token, &warm, "succeeded").await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_fresh = server.rss_bytes()?;
    // The baseline: as many runs that do not wait, through the same API and store.
    submit_settled(&server, &token, "nowait", "c", 0..count).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = server.rss_bytes()?;

    // Half the waiting runs, then all: the difference over the second half's count is
    // what one more waiting run costs in memory.
    let half = count / 2;
    let mut ids = submit_settled(&server, &token, "waiter", "c", 0..half).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_half = server.rss_bytes()?;
    ids.extend(submit_settled(&server, &token, "waiter", "c", half..count).await?);
    // Every wait started by now: each falls due `timeout` after it started.
    let all_waiting_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_waiting = server.rss_bytes()?;
    eprintln!(
        "bench-workflows: {count} waiting, RSS {} (fresh) / {} (idle) → {} ({half} waiting) → {} MiB",
        rss_fresh >> 20,
        rss_idle >> 20,
        rss_half >> 20,
        rss_waiting >> 20
    );

    // Resume, one at a time.
    let sample = count.min(500);
    let mut resumes = Vec::with_capacity(sample);
    for (n, id) in ids.iter().enumerate().take(sample) {
        let before = unix_ms();
        reply(&server, &token, &format!("c-{n}")).await?;
        let run = until_state(&server, &token, id, "succeeded").await?;
        let finished = run
            .get("finished_ms")
            .and_then(serde_json::Value::as_i64)
            .context("no finished_ms")?;
        resumes.push(Duration::from_millis(
            u64::try_from(finished - before).unwrap_or(0),
        ));
    }
    let resume = stats::latency(&resumes);

    // Timers: every remaining wait falls due while the server is down.
    server.kill();
    let due = all_waiting_at + Duration::from_secs(timeout) + Duration::from_secs(2);
    tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
    let restarted = Instant::now();
    server.restart()?;
    let listening = restarted.elapsed();
    until_none(&server, &token, &["waiting"], Duration::from_secs(120)).await?;
    let fired_in = restarted.elapsed().saturating_sub(listening);
    until_none(
        &server,
        &token,
        &["waiting", "queued", "running"],
        Duration::from_secs(600),
    )
    .await?;
    let ended_in = restarted.elapsed().saturating_sub(listening);
    Ok(WaitFigures {
        block_us: 0.0,
        component_us: 0.0,
        waiting: count,
        rss_fresh,
        rss_idle,
        rss_half,
        rss_waiting,
        resume,
        timers: count - sample,
        fired_in,
        ended_in,
    })
}

fn unix_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

async fn submit(
    server: &Server,
    token: &str,
    action: &str,
    contact: &str,
) -> anyhow::Result<String> {
    let body = serde_json::json!({"action": action, "contact": {"id": contact}});
    let (status, answer) = server
        .call("POST", "/v1/runs", token, Bytes::from(body.to_string()))
        .await?;
    anyhow::ensure!(status == 202, "submitting: {status} {answer}");
    Ok(answer
        .get("run_id")
        .and_then(serde_json::Value::as_str)
        .context("no run id")?
        .to_owned())
}

/// Submits runs for contacts `{prefix}-{n}` for each `n` of `range`, in order, then
/// waits until none is queued or running (each ended or waits); their ids in order.
async fn submit_settled(
    server: &Server,
    token: &str,
    action: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(range.len());
    for n in range {
        ids.push(submit(server, token, action, &format!("{prefix}-{n}")).await?);
    }
    until_none(
        server,
        token,
        &["queued", "running"],
        Duration::from_secs(600),
    )
    .await?;
    Ok(ids)
}

async fn reply(server: &Server, token: &str, contact: &str) -> anyhow::Result<()> {
    let (status, answer) = server
        .call(
            "POST",
            &format!("/v1/contacts/{contact}/messages"),
            token,
            Bytes::from_static(br#"{"text": "2"}"#),
        )
        .await?;
    anyhow::ensure!(status == 202, "replying: {status} {answer}");
    Ok(())
}

async fn until_state(
    server: &Server,
    token: &str,
    id: &str,
    state: &str,
) -> anyhow::Result<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, run) = server
            .call("GET", &format!("/v1/runs/{id}"), token, Bytes::new())
            .await?;
        anyhow::ensure!(status == 200, "reading run {id}: {status} {run}");
        if run.get("state").and_then(serde_json::Value::as_str) == Some(state) {
            return Ok(run);
        }
        anyhow::ensure!(Instant::now() < until, "run {id} never {state}: {run}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until no run is in any of `states`.
async fn until_none(
    server: &Server,
    token: &str,
    states: &[&str],
    patience: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + patience;
    loop {
        let mut any = false;
        for state in states {
            let (status, answer) = server
                .call(
                    "GET",
                    &format!("/v1/runs?state={state}&limit=1"),
                    token,
                    Bytes::new(),
                )
                .await?;
            anyhow::ensure!(status == 200, "listing runs: {status} {answer}");
            any |= answer
                .get("runs")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|runs| !runs.is_empty());
        }
        if !any {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "runs still {states:?} after {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The section as markdown.
#[must_use]
pub fn markdown(figures: &WaitFigures, machine: &str) -> String {
    let mib = |bytes: u64| {
        #[allow(clippy::cast_precision_loss, reason = "a display figure")]
        let mib = bytes as f64 / f64::from(1u32 << 20);
        mib
    };
    #[allow(clippy::cast_precision_loss, reason = "display figures")]
    let growth = (figures.rss_waiting as f64 / figures.rss_idle.max(1) as f64 - 1.0) * 100.0;
    // Bytes one more waiting run holds: the second half's growth over its count; and
    // what `waiting` runs would add at that rate, against idle (the cost that grows with
    // the count, apart from the one-off growth of caches and arenas).
    #[allow(clippy::cast_precision_loss, reason = "display figures")]
    let per_run = (figures.rss_waiting as f64 - figures.rss_half as f64)
        / (figures.waiting - figures.waiting / 2).max(1) as f64;
    #[allow(clippy::cast_precision_loss, reason = "a display figure")]
    let slope = per_run * figures.waiting as f64 / figures.rss_idle.max(1) as f64 * 100.0;
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    format!(
        "## Workflows (scripts/bench-workflows)\n\n{machine}\n\n\
| row | figure | goal | |\n|---|---|---|---|\n\
| built-in block, host time (10-block workflow, no I/O) | {:.2} µs | ≤ 50 µs | {} |\n\
| one triage component run (`R`), same loop | {:.1} µs | (for the ratio) | 10 blocks = {:.2}× one run |\n\
| RSS fresh; idle after as many runs that did not wait; {} runs waiting | {:.1}; {:.1} → {:.1} MiB ({growth:+.1} %) | within 10 % of idle | {} |\n\
| RSS with half of them waiting → all: what one more waiting run holds | {:.1} → {:.1} MiB: {per_run:.0} bytes a run, {slope:+.1} % of idle for all of them | (no goal: splits the row above into a cost per run and a one-off growth) | |\n\
| resume (message posted → run finished), {} one at a time | p50 {} ms, p99 {} ms | p99 ≤ 100 ms | {} |\n\
| {} timers due at once (server restarted after they fell due) | all fired in {} ms; all runs ended in {} ms | all fire within 1 s | {} |\n",
        figures.block_us,
        verdict(figures.block_us <= 50.0),
        figures.component_us,
        figures.block_us * 10.0 / figures.component_us.max(f64::MIN_POSITIVE),
        figures.waiting,
        mib(figures.rss_fresh),
        mib(figures.rss_idle),
        mib(figures.rss_waiting),
        verdict(growth <= 10.0),
        mib(figures.rss_half),
        mib(figures.rss_waiting),
        figures.resume.samples,
        figures.resume.p50.as_millis(),
        figures.resume.p99.as_millis(),
        verdict(figures.resume.p99 <= Duration::from_millis(100)),
        figures.timers,
        figures.fired_in.as_millis(),
        figures.ended_in.as_millis(),
        verdict(figures.fired_in <= Duration::from_secs(1)),
    )
}

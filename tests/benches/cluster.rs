//! The shared store's benchmark (`scripts/bench-cluster`, under a throwaway PostgreSQL
//! server from `scripts/with-postgres`): figures printed as markdown and written to
//! `target/bench/cluster.md`.
//!
//! - **Claim latency under a backlog**: 100 000 runs queued over 1 000 tenants, then
//!   claims of one run each (deficit round robin, per-tenant cap) with each claimed run
//!   committed, timed at the store port: p50 and p99.
//! - **Enqueue at the store port**: 64 concurrent `enqueue` calls (one transaction with
//!   `synchronous_commit = on` each).
//! - **Through the API**: 1, 2 and 3 release `fluxo serve` nodes on one database, 64
//!   clients spread over them: accepted/s, accept p99, end to end/s.
//! - **Recovery**: two nodes, one killed with SIGKILL while it holds runs: the time until
//!   every run is final (the dead node's runs resume when their lease expires).
//!
//! `--quick` shrinks the backlog to 10 000 runs and the windows to 3 s.

use std::sync::Arc;

use anyhow::Context as _;
use std::time::{Duration, Instant};

use fluxo_core::{
    ActionName, Contact, ContactId, Event, Limits, RetryPolicy, RunError, RunId, RunReport,
    TenantId,
};
use fluxo_store::{
    ClaimRequest, Commit, Cost, Decision, NewRun, Priority, RunMode, RunTarget, Store,
};
use fluxo_store_postgres::{PostgresOptions, PostgresStore};
use fluxo_tests::bench::{cluster, report, stats};

fn main() -> std::process::ExitCode {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-cluster: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(quick)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-cluster: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_of(tenant: &TenantId) -> anyhow::Result<NewRun> {
    let action = ActionName::parse("act")?;
    let mut event = Event::new(tenant.clone(), action.clone());
    event.contact = Contact::with_id(ContactId::parse("c1")?);
    Ok(NewRun {
        id: RunId::new(),
        tenant: tenant.clone(),
        target: RunTarget::Action {
            name: action,
            version: 1,
        },
        event,
        limits: Limits::default(),
        retry: RetryPolicy::default(),
        mode: RunMode::Run,
        priority: Priority::Background,
        idempotency_key: None,
    })
}

/// Fills a store with `runs` runs over `tenants` tenants (16 at once); the enqueue rate.
async fn fill(store: &Arc<dyn Store>, tenants: usize, runs: usize) -> anyhow::Result<f64> {
    let ids: Vec<TenantId> = (0..tenants)
        .map(|n| TenantId::parse(format!("t{n}")))
        .collect::<Result<_, _>>()?;
    for tenant in &ids {
        store.create_tenant(tenant).await?;
    }
    let ids = Arc::new(ids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let writers = 16;
    for writer in 0..writers {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = writer;
            while n < runs {
                let tenant = ids.get(n % ids.len()).context("no tenants")?;
                store.enqueue(run_of(tenant)?).await?;
                n += writers;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    #[allow(clippy::cast_precision_loss, reason = "a rate")]
    Ok(runs as f64 / started.elapsed().as_secs_f64())
}

/// Claims one run at a time (each committed as succeeded) `claims` times; the claim
/// latencies.
async fn claims(store: &Arc<dyn Store>, claims: usize) -> anyhow::Result<stats::Latency> {
    let request = ClaimRequest {
        node: "bench".to_owned(),
        max: 1,
        lease_ms: 30_000,
        per_tenant: 4,
    };
    let mut latencies = Vec::with_capacity(claims);
    for _ in 0..claims {
        let started = Instant::now();
        let claimed = store.claim(&request).await?;
        latencies.push(started.elapsed());
        for run in claimed {
            let mut report = RunReport::not_started(
                run.lease.run,
                run.lease.attempt,
                RunError::new(fluxo_core::ErrorKind::Trap, "placeholder"),
            );
            report.status = fluxo_core::RunStatus::Succeeded;
            report.error = None;
            store
                .commit(Commit {
                    lease: run.lease,
                    node: "bench".to_owned(),
                    tenant: run.tenant.clone(),
                    contact: run.event.contact.id.clone(),
                    effects: Vec::new(),
                    report,
                    decision: Decision::Succeeded,
                    cost: Cost {
                        fuel: 1_000,
                        wall_ms: 1,
                    },
                    spawned: Vec::new(),
                    contact_owner: fluxo_store::ContactOwner::Embedded,
                })
                .await?;
        }
    }
    Ok(stats::latency(&latencies))
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

async fn run(quick: bool) -> anyhow::Result<()> {
    let fluxo_bin = fluxo_tests::fluxo_bin_in("release").map_err(anyhow::Error::msg)?;
    let triage = std::fs::read(fluxo_tests::guests::BENCH_TRIAGE)?;
    let probe = std::fs::read(fluxo_tests::guests::CRASH_PROBE)?;
    let (backlog, window) = if quick {
        (10_000, Duration::from_secs(3))
    } else {
        (100_000, Duration::from_secs(10))
    };
    let mut out = String::new();
    out.push_str(&format!(
        "## Shared store (PostgreSQL)\n\n{}\n\n",
        report::machine()
    ));

    let url = fluxo_store_postgres::testing::fresh_database().await;
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::open(
            &url,
            PostgresOptions {
                pool_size: 16,
                backlog_per_tenant: 10_000_000,
                ..PostgresOptions::default()
            },
        )
        .await?,
    );
    eprintln!("bench-cluster: queueing {backlog} runs over 1 000 tenants");
    let enqueue_rate = fill(&store, 1_000, backlog).await?;
    eprintln!("bench-cluster: claiming");
    let claim = claims(&store, 2_000).await?;
    out.push_str(&format!(
        "| store port | figure |\n|---|---|\n| enqueue, 16 at once (one transaction each) | {enqueue_rate:.0} runs/s |\n| claim with {backlog} runs queued over 1 000 tenants, p50 | {} |\n| same, p99 ({} claims, each run committed) | {} |\n\n",
        ms(claim.p50),
        claim.samples,
        ms(claim.p99),
    ));
    drop(store);

    out.push_str("| nodes | clients | accepted/s | accept p99 | 429s | end to end/s |\n|---|---|---|---|---|---|\n");
    for nodes in 1..=3 {
        eprintln!("bench-cluster: {nodes} node(s) through the API");
        let url = fluxo_store_postgres::testing::fresh_database().await;
        let row = cluster::nodes_row(&fluxo_bin, &url, &triage, nodes, 64, window).await?;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {:.0} |\n",
            row.nodes,
            row.clients,
            row.accepted_per_second,
            ms(row.latency.p99),
            row.rejected,
            row.end_to_end_per_second
        ));
    }
    eprintln!("bench-cluster: recovery after kill -9");
    let url = fluxo_store_postgres::testing::fresh_database().await;
    let recovery = cluster::recovery(&fluxo_bin, &url, &probe, 2_000, 40).await?;
    out.push_str(&format!(
        "\n| recovery | figure |\n|---|---|\n| a node killed holding {} runs (lease {:.0} s): every run final after | {:.2} s |\n",
        recovery.held,
        recovery.lease.as_secs_f64(),
        recovery.recovered_in.as_secs_f64()
    ));
    println!("{out}");
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/cluster.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &out)?;
    eprintln!("bench-cluster: written to {}", path.display());
    Ok(())
}

//! The benchmark harness: the same action under every way a chat platform could run
//! tenant code, measured in one run, interleaved, and reported as ratios (these
//! machines are noisy; a ratio measured in one run is what holds). `BENCHMARKS.md` at
//! the repository root explains each row; `scripts/bench` runs it.
//!
//! The library holds it so that the benchmark binary (`benches/contenders.rs`) and the
//! smoke test (every contender once, same output) share one set of contenders.

pub mod api;
pub mod cluster;
pub mod cold;
pub mod contenders;
pub mod measure;
pub mod parked;
pub mod report;
pub mod server;
pub mod stats;
pub mod waits;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fluxo_sandbox::{AllowRule, Config, Metering};

use self::contenders::extism::Extism;
use self::contenders::floor::Floor;
use self::contenders::fluxo::Fluxo;
use self::contenders::native::Native;
use self::contenders::native_http::NativeHttp;
use self::contenders::process::Process;
use self::contenders::quickjs::QuickJs;
use self::contenders::{Contender, Observed};
use self::measure::{Entrant, Rounds};
use self::report::{Heavy, Http, LatencyRow, Report, ThroughputRow};
use self::server::LoopbackServer;

/// Instance slots of the W0 and R pools in the latency and throughput sections: above
/// the largest in-flight level measured.
const SLOTS: u32 = 512;

/// Where the contenders' programs and modules are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `fluxo-loopback-server`, the HTTP server of the egress sections.
    pub server_bin: PathBuf,
    /// `fluxo-triage-process`, the process-per-action contender.
    pub process_bin: PathBuf,
    /// `fluxo-extism-runner`, built in `tests/extism-baseline`.
    pub extism_runner: PathBuf,
    /// The Extism plug-in (core module).
    pub extism_plugin: PathBuf,
    /// The `fluxo` binary, which compiles uploads.
    pub fluxo_bin: PathBuf,
}

/// The guest components, read from `build.rs`'s output.
#[derive(Debug, Clone)]
pub struct Guests {
    /// The triage action.
    pub triage: Vec<u8>,
    /// The triage action built without WASI (unknown-unknown, componentized).
    pub triage_core: Vec<u8>,
    /// The CPU-heavy scan action.
    pub scan: Vec<u8>,
    /// The `fetch` guest (one HTTP request).
    pub fetch: Vec<u8>,
    /// The ~1 MB component.
    pub large: Vec<u8>,
}

impl Guests {
    /// Reads the components `build.rs` built.
    ///
    /// # Errors
    /// When a file is missing.
    pub fn load() -> anyhow::Result<Self> {
        use crate::guests::{BENCH_LARGE, BENCH_SCAN, BENCH_TRIAGE, BENCH_TRIAGE_CORE, FETCH};
        let read = |path: &str| std::fs::read(path).with_context(|| format!("reading {path}"));
        Ok(Self {
            triage: read(BENCH_TRIAGE)?,
            triage_core: read(BENCH_TRIAGE_CORE)?,
            scan: read(BENCH_SCAN)?,
            fetch: read(FETCH)?,
            large: read(BENCH_LARGE)?,
        })
    }
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Interleaved rounds per section.
    pub rounds: usize,
    /// Length of one latency batch.
    pub window: Duration,
    /// Length of one throughput measurement.
    pub throughput_window: Duration,
    /// Runs per latency batch at least.
    pub min_runs: usize,
    /// In-flight levels for throughput.
    pub in_flight: Vec<usize>,
    /// Parked-run counts for the memory section.
    pub parked: Vec<usize>,
    /// Repetitions of the cold paths.
    pub cold_repetitions: usize,
    /// Client counts for durable runs through the API.
    pub api_clients: Vec<usize>,
    /// Length of one API measurement.
    pub api_window: Duration,
    /// Runs of the flooding tenant in the noisy-neighbour measurement.
    pub flood: usize,
    /// Only these latency rows, and no other section (for profiling one contender).
    pub only: Option<Vec<String>>,
}

impl Plan {
    /// About a minute on two cores.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            name: "quick",
            rounds: 3,
            window: Duration::from_millis(150),
            throughput_window: Duration::from_millis(150),
            min_runs: 5,
            in_flight: vec![1, 16, 64, 256],
            parked: vec![1_000, 10_000],
            cold_repetitions: 2,
            api_clients: vec![1, 16, 64],
            api_window: Duration::from_secs(2),
            flood: 10_000,
            only: None,
        }
    }

    /// Several minutes on two cores (under fifteen).
    #[must_use]
    pub fn full() -> Self {
        Self {
            name: "full",
            rounds: 7,
            window: Duration::from_millis(800),
            throughput_window: Duration::from_millis(800),
            min_runs: 20,
            in_flight: vec![1, 16, 64, 256],
            parked: vec![1_000, 10_000],
            cold_repetitions: 5,
            api_clients: vec![1, 16, 64],
            api_window: Duration::from_secs(5),
            flood: 10_000,
            only: None,
        }
    }
}

/// The triage contenders, isolating ones first, then the reuse rows.
///
/// # Errors
/// When a contender cannot be set up.
pub fn triage_entrants(paths: &Paths, guests: &Guests) -> anyhow::Result<Vec<Entrant>> {
    let event = fluxo_triage::sample_event();
    let local = |contender: Arc<dyn Contender>| Entrant::Local(contender);
    let mut entrants = vec![
        local(Arc::new(Native::new(event.clone()))),
        local(Arc::new(Floor::new("W0", &guests.triage, &event, SLOTS)?)),
    ];
    for (label, metering) in Fluxo::variants() {
        entrants.push(local(Arc::new(Fluxo::new(
            label,
            metering,
            SLOTS,
            Config::default(),
            &guests.triage,
            &event,
        )?)));
    }
    entrants.push(local(Arc::new(Floor::new(
        "W0-core",
        &guests.triage_core,
        &event,
        SLOTS,
    )?)));
    entrants.push(local(Arc::new(Fluxo::new(
        "R-core",
        Metering::default(),
        SLOTS,
        Config::default(),
        &guests.triage_core,
        &event,
    )?)));
    let extism = Arc::new(Extism::new(
        &paths.extism_runner,
        &paths.extism_plugin,
        &event,
    )?);
    entrants.extend([
        local(Arc::new(QuickJs::fresh(event.clone()))),
        Entrant::Extism {
            runner: extism.clone(),
            label: "X",
            warm: false,
        },
        local(Arc::new(Process::new(
            paths.process_bin.clone(),
            event.clone(),
        ))),
        local(Arc::new(QuickJs::warm(event))),
        Entrant::Extism {
            runner: extism,
            label: "X-warm",
            warm: true,
        },
    ]);
    Ok(entrants)
}

/// Runs every triage contender once and returns what each observed, with what the
/// native logic expects; the `fetch` pair (R-fetch and H0) is checked against each
/// other by the caller.
///
/// # Errors
/// When a contender fails to run.
pub async fn smoke(paths: &Paths, guests: &Guests) -> anyhow::Result<Vec<(String, Observed)>> {
    let mut observed = Vec::new();
    for entrant in triage_entrants(paths, guests)? {
        let seen = match &entrant {
            Entrant::Local(contender) => contender.observe().await,
            Entrant::Extism { runner, .. } => runner.observe().await,
        }
        .with_context(|| format!("{} failed", entrant.label()))?;
        observed.push((entrant.label().to_owned(), seen));
    }
    Ok(observed)
}

/// A configuration allowing plain HTTP to 127.0.0.1:`port` only.
///
/// # Errors
/// Never in practice (the CIDR is a literal).
pub fn loopback_config(port: u16) -> anyhow::Result<Config> {
    let mut config = Config::default();
    config.http.allow.push(AllowRule {
        scheme: Some("http".to_owned()),
        port: Some(port),
        ..AllowRule::host("127.0.0.1")
    });
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.1/32".parse()?);
    Ok(config)
}

/// The `http-request` pair: a Fluxo run of the `fetch` guest, and the same GET natively.
///
/// # Errors
/// When either cannot be set up.
pub fn http_entrants(server: &LoopbackServer, guests: &Guests) -> anyhow::Result<[Entrant; 2]> {
    let input = serde_json::json!({ "url": server.fast_url() }).to_string();
    Ok([
        Entrant::Local(Arc::new(NativeHttp::new(&server.fast_url())?)),
        Entrant::Local(Arc::new(Fluxo::new(
            "R-fetch",
            Metering::default(),
            SLOTS,
            loopback_config(server.port())?,
            &guests.fetch,
            &input,
        )?)),
    ])
}

/// Runs every section of `plan` and returns the report.
///
/// # Errors
/// When a contender fails; a section that cannot run on this machine is reported as
/// such instead.
pub async fn run(paths: &Paths, guests: &Guests, plan: &Plan) -> anyhow::Result<Report> {
    let mut report = Report::new(plan);
    progress("latency at concurrency 1");
    let mut entrants = triage_entrants(paths, guests)?;
    if let Some(only) = &plan.only {
        entrants.retain(|entrant| only.iter().any(|label| label == entrant.label()));
        anyhow::ensure!(!entrants.is_empty(), "--only matched no contender");
    }
    let rounds = Rounds::run(&entrants, plan.rounds, plan.window, plan.min_runs).await?;
    let index = |label: &str| entrants.iter().position(|e| e.label() == label);
    let (w0, r) = (index("W0"), index("R"));
    for (i, entrant) in entrants.iter().enumerate() {
        report.latency.push(LatencyRow {
            label: entrant.label().to_owned(),
            isolation: entrant.isolation(),
            latency: stats::latency(rounds.samples.get(i).map_or(&[], Vec::as_slice)),
            over_w0: stats::spread(&w0.map(|w0| rounds.ratios(i, w0)).unwrap_or_default()),
            over_r: stats::spread(&r.map(|r| rounds.ratios(i, r)).unwrap_or_default()),
        });
    }
    if plan.only.is_some() {
        return Ok(report);
    }
    let hints: Vec<Option<Duration>> = rounds
        .round_p50
        .iter()
        .map(|p50| p50.last().copied())
        .collect();

    progress("throughput");
    let throughput_set: Vec<usize> = ["N0", "W0", "R", "Q", "X", "P"]
        .iter()
        .filter_map(|label| index(label))
        .collect();
    let mut per_round = vec![vec![Vec::new(); plan.in_flight.len()]; entrants.len()];
    for round in 0..plan.rounds {
        for (level_index, &in_flight) in plan.in_flight.iter().enumerate() {
            for offset in 0..throughput_set.len() {
                let Some(&i) = throughput_set.get((offset + round) % throughput_set.len()) else {
                    continue;
                };
                let (Some(entrant), Some(hint)) = (entrants.get(i), hints.get(i)) else {
                    continue;
                };
                let rate = entrant
                    .throughput(in_flight, plan.throughput_window, *hint)
                    .await?;
                if let Some(cell) = per_round.get_mut(i).and_then(|r| r.get_mut(level_index)) {
                    cell.push(rate);
                }
            }
        }
    }
    for &i in &throughput_set {
        let Some(entrant) = entrants.get(i) else {
            continue;
        };
        let rates = per_round.get(i).cloned().unwrap_or_default();
        let w0_rates = w0
            .and_then(|w0| per_round.get(w0))
            .cloned()
            .unwrap_or_default();
        let over_w0 = rates
            .iter()
            .zip(&w0_rates)
            .map(|(mine, floor)| {
                let ratios: Vec<f64> = mine.iter().zip(floor).map(|(a, b)| a / b).collect();
                stats::spread(&ratios)
            })
            .collect();
        report.throughput.push(ThroughputRow {
            label: entrant.label().to_owned(),
            per_second: rates.iter().map(|r| stats::spread(r).median).collect(),
            over_w0,
        });
    }
    drop(entrants);

    progress("fuel and epoch overhead on the CPU-heavy guest");
    let scan_event = fluxo_triage::scan_event();
    let mut heavy_entrants = Vec::new();
    for (label, metering) in Fluxo::variants() {
        heavy_entrants.push(Entrant::Local(Arc::new(Fluxo::new(
            label,
            metering,
            8,
            Config::default(),
            &guests.scan,
            &scan_event,
        )?)));
    }
    let heavy = Rounds::run(&heavy_entrants, plan.rounds, plan.window, plan.min_runs).await?;
    let none = heavy_entrants.iter().position(|e| e.label() == "R-none");
    for (i, entrant) in heavy_entrants.iter().enumerate() {
        report.heavy.push(Heavy {
            label: entrant.label().to_owned(),
            latency: stats::latency(heavy.samples.get(i).map_or(&[], Vec::as_slice)),
            over_none: stats::spread(&none.map(|n| heavy.ratios(i, n)).unwrap_or_default()),
        });
    }
    drop(heavy_entrants);

    progress("http-request against a native hyper call");
    let mut server = LoopbackServer::start(&paths.server_bin).await?;
    let pair = http_entrants(&server, guests)?;
    let http = Rounds::run(&pair, plan.rounds, plan.window, plan.min_runs).await?;
    report.http = Some(Http {
        native: stats::latency(http.samples.first().map_or(&[], Vec::as_slice)),
        fluxo: stats::latency(http.samples.get(1).map_or(&[], Vec::as_slice)),
        ratio: stats::spread(&http.ratios(1, 0)),
    });
    drop(pair);

    let _ = rlimit::increase_nofile_limit(u64::MAX);
    for &in_flight in &plan.parked {
        progress(&format!(
            "memory with {in_flight} runs parked in http-request"
        ));
        report.parked.push((
            in_flight,
            parked::measure(&mut server, &guests.fetch, in_flight)
                .await
                .map_err(|error| format!("{error:#}")),
        ));
        // The server keeps answering `/park` at once after a release: start a new one.
        server = LoopbackServer::start(&paths.server_bin).await?;
    }
    drop(server);

    progress("upload → first run and restart → first run");
    report.large_component_bytes = guests.large.len();
    report.cold = Some(
        cold::measure(
            &guests.large,
            &fluxo_triage::sample_event(),
            &paths.fluxo_bin,
            plan.cold_repetitions,
        )
        .await?,
    );

    progress("durable runs through the API, and a noisy neighbour");
    report.api = Some(
        api::measure(
            &paths.fluxo_bin,
            &guests.triage,
            &plan.api_clients,
            plan.api_window,
            plan.flood,
        )
        .await
        .map_err(|error| format!("{error:#}")),
    );
    Ok(report)
}

fn progress(section: &str) {
    eprintln!("bench: {section}…");
}

//! The report: every section as a markdown table, the targets met or missed, and the
//! machine it ran on.

use std::fmt::Write as _;
use std::time::Duration;

use super::Plan;
use super::cold::Cold;
use super::parked::Parked;
use super::stats::{self, Latency, Spread, micros, ratio};

/// One row of the latency table.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// Contender label.
    pub label: String,
    /// What isolates its runs.
    pub isolation: &'static str,
    /// Over all samples.
    pub latency: Latency,
    /// p50 ÷ W0's p50, per round.
    pub over_w0: Spread,
    /// p50 ÷ R's p50, per round: how many times faster R is.
    pub over_r: Spread,
}

/// One row of the throughput table.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// Contender label.
    pub label: String,
    /// Median actions per second at each in-flight level.
    pub per_second: Vec<f64>,
    /// Rate ÷ W0's rate at each level, per round.
    pub over_w0: Vec<Spread>,
}

/// One row of the CPU-heavy table.
#[derive(Debug, Clone)]
pub struct Heavy {
    /// `R`, `R-epoch`, `R-fuel` or `R-none`.
    pub label: String,
    /// Over all samples.
    pub latency: Latency,
    /// p50 ÷ R-none's p50, per round.
    pub over_none: Spread,
}

/// The `http-request` comparison.
#[derive(Debug, Clone, Copy)]
pub struct Http {
    /// One native hyper GET.
    pub native: Latency,
    /// A whole Fluxo run of the `fetch` guest making the same GET.
    pub fluxo: Latency,
    /// Fluxo p50 ÷ native p50, per round.
    pub ratio: Spread,
}

/// Everything one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan's name and shape.
    pub plan: Plan,
    /// Latency at concurrency 1.
    pub latency: Vec<LatencyRow>,
    /// Throughput by in-flight level.
    pub throughput: Vec<ThroughputRow>,
    /// Interruption overhead on the CPU-heavy guest.
    pub heavy: Vec<Heavy>,
    /// `http-request` against native hyper.
    pub http: Option<Http>,
    /// Parked-run memory by count, or why it could not be measured.
    pub parked: Vec<(usize, Result<Parked, String>)>,
    /// Size of the cold-path component.
    pub large_component_bytes: usize,
    /// Cold paths.
    pub cold: Option<Cold>,
    /// Durable runs through the API, or why they could not be measured.
    pub api: Option<Result<super::api::ApiFigures, String>>,
}

impl Report {
    /// An empty report for `plan`.
    #[must_use]
    pub fn new(plan: &Plan) -> Self {
        Self {
            plan: plan.clone(),
            latency: Vec::new(),
            throughput: Vec::new(),
            heavy: Vec::new(),
            http: None,
            parked: Vec::new(),
            large_component_bytes: 0,
            api: None,
            cold: None,
        }
    }

    fn latency_of(&self, label: &str) -> Option<&LatencyRow> {
        self.latency.iter().find(|row| row.label == label)
    }

    /// The targets, each with its measured value and whether it is met.
    #[must_use]
    pub fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut targets = Vec::new();
        let r_over = |label: &str| self.latency_of(label).map(|row| row.over_r.median);
        let mut check = |name: &str,
                         value: Option<f64>,
                         shown: &dyn Fn(f64) -> String,
                         ok: &dyn Fn(f64) -> bool| {
            let value = value.filter(|v| v.is_finite());
            targets.push((
                name.to_owned(),
                value.map_or_else(|| "not measured".to_owned(), shown),
                value.map(ok),
            ));
        };
        check(
            "R p50 ≤ 1.3× W0",
            self.latency_of("R").map(|row| row.over_w0.median),
            &|v| ratio(v),
            &|v| v <= 1.3,
        );
        check(
            "R ≥ 15× faster than Q",
            r_over("Q"),
            &|v| ratio(v),
            &|v| v >= 15.0,
        );
        check(
            "R ≥ 20× faster than X",
            r_over("X"),
            &|v| ratio(v),
            &|v| v >= 20.0,
        );
        check(
            "R ≥ 150× faster than P",
            r_over("P"),
            &|v| ratio(v),
            &|v| v >= 150.0,
        );
        let at_64 = self.plan.in_flight.iter().position(|&n| n == 64);
        check(
            "R throughput at 64 in flight ≥ 0.8× W0",
            self.throughput
                .iter()
                .find(|row| row.label == "R")
                .and_then(|row| at_64.and_then(|i| row.over_w0.get(i)))
                .map(|spread| spread.median),
            &|v| ratio(v),
            &|v| v >= 0.8,
        );
        if let Some(Ok(api)) = &self.api {
            let row = |clients: usize| api.accept.iter().find(|row| row.clients == clients);
            for clients in [1, 16, 64] {
                check(
                    &format!("≥ 10 000 runs/s accepted through the API ({clients} clients)"),
                    row(clients).map(|row| row.accepted_per_second),
                    &|v| format!("{v:.0}/s"),
                    &|v| v >= 10_000.0,
                );
            }
            check(
                "≥ 5 000 runs/s end to end (best client count)",
                api.accept
                    .iter()
                    .map(|row| row.end_to_end_per_second)
                    .reduce(f64::max),
                &|v| format!("{v:.0}/s"),
                &|v| v >= 5_000.0,
            );
            check(
                "p99 accept latency ≤ 10 ms (worst client count)",
                api.accept
                    .iter()
                    .map(|row| row.latency.p99.as_secs_f64() * 1e3)
                    .reduce(f64::max),
                &|v| format!("{v:.2} ms"),
                &|v| v <= 10.0,
            );
            if let Some(n) = &api.neighbours {
                let alone = n.quiet_alone.1.as_secs_f64();
                check(
                    "quiet tenants' p95 queue wait during a flood ≤ 2× alone",
                    (alone > 0.0).then(|| n.quiet_flooded.1.as_secs_f64() / alone),
                    &|v| ratio(v),
                    &|v| v <= 2.0,
                );
            }
        }
        for (in_flight, parked) in &self.parked {
            check(
                &format!("≤ 16 KiB per parked action ({in_flight} in flight, RSS)"),
                parked.as_ref().ok().map(|p| p.rss_per_run),
                &|v| format!("{:.1} KiB", v / 1024.0),
                &|v| v <= 16.0 * 1024.0,
            );
        }
        check(
            "epoch-only overhead ≤ 10 % on the CPU-heavy guest",
            self.heavy
                .iter()
                .find(|row| row.label == "R-epoch")
                .map(|row| row.over_none.median - 1.0),
            &|v| format!("{:+.1} %", v * 100.0),
            &|v| v <= 0.10,
        );
        targets
    }

    /// The whole report as markdown.
    #[must_use]
    pub fn markdown(&self, machine: &str) -> String {
        let mut out = String::new();
        let plan = &self.plan;
        let _ = writeln!(
            out,
            "Mode `{}`: {} interleaved rounds, {} ms batches. {machine}\n",
            plan.name,
            plan.rounds,
            plan.window.as_millis()
        );
        self.latency_table(&mut out);
        self.throughput_table(&mut out);
        self.heavy_table(&mut out);
        self.http_table(&mut out);
        self.parked_table(&mut out);
        self.cold_table(&mut out);
        self.api_table(&mut out);
        let _ = writeln!(out, "### Targets\n\n| target | measured | |\n|---|---|---|");
        for (name, value, met) in self.targets() {
            let verdict = match met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "–",
            };
            let _ = writeln!(out, "| {name} | {value} | {verdict} |");
        }
        out
    }

    fn latency_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Fresh-sandbox latency, one at a time\n\n\
             Ratios are medians of per-round ratios, with the range over rounds.\n\n\
             | row | isolation | p50 µs | p99 µs | p50 ÷ W0 | ÷ R (R is faster by) | runs |\n\
             |---|---|---:|---:|---:|---:|---:|"
        );
        for row in &self.latency {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.label,
                row.isolation,
                micros(row.latency.p50),
                micros(row.latency.p99),
                row.over_w0,
                row.over_r,
                row.latency.samples
            );
        }
        out.push('\n');
    }

    fn throughput_table(&self, out: &mut String) {
        let levels = &self.plan.in_flight;
        let _ = write!(
            out,
            "### Throughput on two tokio workers (actions/s)\n\n\
             X runs in its own process on two threads; sync contenders cannot overlap \
             more than two runs, whatever the level.\n\n| row |"
        );
        for level in levels {
            let _ = write!(out, " {level} in flight |");
        }
        for level in levels {
            let _ = write!(out, " ÷ W0 at {level} |");
        }
        out.push_str("\n|---|");
        for _ in 0..levels.len() * 2 {
            out.push_str("---:|");
        }
        out.push('\n');
        for row in &self.throughput {
            let _ = write!(out, "| {} |", row.label);
            for rate in &row.per_second {
                let _ = write!(out, " {rate:.0} |");
            }
            for spread in &row.over_w0 {
                let _ = write!(out, " {spread} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }

    fn heavy_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Interruption overhead on the CPU-heavy guest (64 KiB scan + JSON rewrite)\n\n\
             | row | p50 µs | p99 µs | p50 ÷ R-none |\n|---|---:|---:|---:|"
        );
        for row in &self.heavy {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.label,
                micros(row.latency.p50),
                micros(row.latency.p99),
                row.over_none
            );
        }
        out.push('\n');
    }

    fn http_table(&self, out: &mut String) {
        let Some(http) = &self.http else {
            return;
        };
        let extra = http.fluxo.p50.saturating_sub(http.native.p50);
        let _ = writeln!(
            out,
            "### `http-request` against a native hyper GET (loopback, keep-alive)\n\n\
             | row | p50 µs | p99 µs |\n|---|---:|---:|\n\
             | H0: native hyper GET | {} | {} |\n\
             | R-fetch: whole Fluxo run making the same GET | {} | {} |\n\n\
             R-fetch ÷ H0: {}; a whole sandboxed run with the request costs {} µs more \
             than the request alone.\n",
            micros(http.native.p50),
            micros(http.native.p99),
            micros(http.fluxo.p50),
            micros(http.fluxo.p99),
            http.ratio,
            micros(extra)
        );
    }

    fn parked_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Memory per action parked inside `http-request`\n\n\
             | in flight | RSS / run | private (anon) / run | mappings / run | mappings total | time to park |\n\
             |---:|---:|---:|---:|---:|---:|"
        );
        for (in_flight, parked) in &self.parked {
            match parked {
                Ok(p) => {
                    let _ = writeln!(
                        out,
                        "| {in_flight} | {:.1} KiB | {:.1} KiB | {:.2} | {} | {} ms |",
                        p.rss_per_run / 1024.0,
                        p.anon_per_run / 1024.0,
                        p.maps_per_run,
                        p.maps_total,
                        p.park_time.as_millis()
                    );
                }
                Err(error) => {
                    let _ = writeln!(out, "| {in_flight} | not measured: {error} | | | | |");
                }
            }
        }
        out.push('\n');
        for (in_flight, parked) in &self.parked {
            let Ok(parked) = parked else { continue };
            let _ = writeln!(
                out,
                "Where the resident memory of {in_flight} parked runs went:\n\n\
                 | part of the address space | reserved per run | resident per run |\n\
                 |---|---:|---:|"
            );
            for region in &parked.breakdown {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} KiB |",
                    region.name,
                    bytes(region.span_per_run),
                    region.rss_per_run / 1024.0
                );
            }
            out.push('\n');
        }
    }

    fn api_table(&self, out: &mut String) {
        let figures = match &self.api {
            None => return,
            Some(Err(why)) => {
                let _ = writeln!(
                    out,
                    "### Durable runs through the API\n\nNot measured: {why}\n"
                );
                return;
            }
            Some(Ok(figures)) => figures,
        };
        let ceiling = self.r_throughput_at(64);
        let _ = writeln!(
            out,
            "### Durable runs through the API\n\n\
             A release `fluxo serve` on SQLite (`synchronous=FULL`, group commit), the triage \
             action, clients on keep-alive connections. End to end: the window's accepted runs \
             ÷ the time until the last succeeded. Ceiling: R in process at 64 in flight, \
             without durability ({}).\n\n\
             | clients | accepted/s | accept p50 ms | accept p99 ms | 429s | end to end/s | e2e ÷ ceiling |\n\
             |---:|---:|---:|---:|---:|---:|---:|",
            ceiling.map_or_else(|| "not measured".to_owned(), |c| format!("{c:.0}/s"))
        );
        for row in &figures.accept {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {} |",
                row.clients,
                row.accepted_per_second,
                row.latency.p50.as_secs_f64() * 1e3,
                row.latency.p99.as_secs_f64() * 1e3,
                row.rejected,
                row.end_to_end_per_second,
                ceiling.map_or_else(|| "–".to_owned(), |c| ratio(row.end_to_end_per_second / c)),
            );
        }
        if let Some(n) = &figures.neighbours {
            let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
            let _ = writeln!(
                out,
                "\nNoisy neighbour: nine quiet tenants submit a run a second each, alone and while \
                 a tenth floods {} runs. Queue wait (claimed − accepted) of the quiet runs: alone \
                 p50 {} ms, p95 {} ms; during the flood p50 {} ms, p95 {} ms. The flood ran at \
                 {:.0} runs/s meanwhile.\n",
                n.flood_runs,
                ms(n.quiet_alone.0),
                ms(n.quiet_alone.1),
                ms(n.quiet_flooded.0),
                ms(n.quiet_flooded.1),
                n.flood_per_second
            );
        }
    }

    /// R's median throughput at `in_flight`, runs per second.
    fn r_throughput_at(&self, in_flight: usize) -> Option<f64> {
        let at = self.plan.in_flight.iter().position(|&n| n == in_flight)?;
        self.throughput
            .iter()
            .find(|row| row.label == "R")
            .and_then(|row| row.per_second.get(at).copied())
    }

    fn cold_table(&self, out: &mut String) {
        let Some(cold) = &self.cold else {
            return;
        };
        let summary = |samples: &[Duration]| {
            let latency = stats::latency(samples);
            let max = samples.iter().max().copied().unwrap_or_default();
            format!(
                "{} ms (max {} ms, {} runs)",
                latency.p50.as_millis(),
                max.as_millis(),
                latency.samples
            )
        };
        let _ = writeln!(
            out,
            "### Cold paths for a {} KiB component\n\n\
             | path | p50 |\n|---|---:|\n\
             | upload → first run (validate, compile in a child process, store, load, run) | {} |\n\
             | restart → first run (open store, build runtime and registry, load artifact, run) | {} |\n",
            self.large_component_bytes / 1024,
            summary(&cold.upload_first_run),
            summary(&cold.restart_first_run)
        );
    }
}

/// A size with a binary unit.
fn bytes(value: f64) -> String {
    if value <= 0.0 {
        "–".to_owned()
    } else if value >= f64::from(1 << 30) {
        format!("{:.1} GiB", value / f64::from(1 << 30))
    } else if value >= f64::from(1 << 20) {
        format!("{:.1} MiB", value / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", value / 1024.0)
    }
}

/// A line describing this machine: CPU model, cores, kernel.
#[must_use]
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {model}, {cores} cores available, Linux {}.",
        kernel.trim()
    )
}

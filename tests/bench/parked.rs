//! Memory per in-flight action: N runs of the `fetch` guest parked inside
//! `http-request` on the slow loopback server, measured as this process's resident
//! memory and mappings before and while they wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxo_sandbox::{Metering, RunStatus};

use super::contenders::fluxo::Fluxo;
use super::server::LoopbackServer;

/// How long the parked runs may take to start and to finish.
const PATIENCE: Duration = Duration::from_secs(180);

/// What `in_flight` parked runs cost.
#[derive(Debug, Clone)]
pub struct Parked {
    /// Runs parked at once.
    pub in_flight: usize,
    /// Resident memory added, per run (bytes).
    pub rss_per_run: f64,
    /// Anonymous (private) resident memory added, per run (bytes).
    pub anon_per_run: f64,
    /// Mappings added, per run.
    pub maps_per_run: f64,
    /// Mappings of the whole process while they wait.
    pub maps_total: u64,
    /// Time from the first spawn until all were parked.
    pub park_time: Duration,
    /// Where the resident memory went: each large reserved region (wasmtime's pools)
    /// and the rest, with bytes added per run, largest first.
    pub breakdown: Vec<Region>,
}

/// Resident memory added in one part of the address space.
#[derive(Debug, Clone)]
pub struct Region {
    /// What it is: `reserved region of N GiB` (a wasmtime pool) or `everything else`.
    pub name: String,
    /// Bytes reserved per parked run's slot (span ÷ runs), to tell the pools apart.
    pub span_per_run: f64,
    /// Resident bytes added per run.
    pub rss_per_run: f64,
}

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    start: u64,
    end: u64,
    rss: u64,
    anonymous: bool,
}

fn smaps() -> anyhow::Result<Vec<Mapping>> {
    let text = std::fs::read_to_string("/proc/self/smaps")?;
    let mut mappings = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            // The sixth column is the path; an anonymous mapping has none.
            let anonymous = words.nth(4).is_none();
            mappings.push(Mapping {
                start,
                end,
                rss: 0,
                anonymous,
            });
        } else if let Some(kib) = line.strip_prefix("Rss:")
            && let Some(last) = mappings.last_mut()
        {
            last.rss = kib
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
        }
    }
    Ok(mappings)
}

/// Contiguous anonymous ranges of at least 1 GiB: wasmtime's pool reservations.
fn reserved_regions(mappings: &[Mapping]) -> Vec<(u64, u64)> {
    let mut regions: Vec<(u64, u64)> = Vec::new();
    for mapping in mappings.iter().filter(|m| m.anonymous) {
        match regions.last_mut() {
            Some((_, end)) if *end == mapping.start => *end = mapping.end,
            _ => regions.push((mapping.start, mapping.end)),
        }
    }
    regions.retain(|(start, end)| end - start >= 1 << 30);
    regions
}

/// Resident bytes by region (in `regions` order, then everything else).
fn resident_by_region(mappings: &[Mapping], regions: &[(u64, u64)]) -> Vec<u64> {
    let mut totals = vec![0; regions.len() + 1];
    for mapping in mappings {
        let index = regions
            .iter()
            .position(|(start, end)| mapping.start >= *start && mapping.end <= *end)
            .unwrap_or(regions.len());
        if let Some(total) = totals.get_mut(index) {
            *total += mapping.rss;
        }
    }
    totals
}

fn breakdown(before: &[Mapping], during: &[Mapping], in_flight: usize) -> Vec<Region> {
    let regions = reserved_regions(before);
    let before = resident_by_region(before, &regions);
    let during = resident_by_region(during, &regions);
    let runs = in_flight as f64;
    let mut breakdown: Vec<Region> = during
        .iter()
        .zip(&before)
        .enumerate()
        .map(|(index, (after, before))| {
            let span = regions.get(index).map_or(0, |(start, end)| end - start);
            Region {
                name: if span == 0 {
                    "everything else (heap, sockets' buffers, thread stacks)".to_owned()
                } else {
                    format!(
                        "reserved region of {:.1} GiB",
                        span as f64 / f64::from(1 << 30)
                    )
                },
                span_per_run: span as f64 / runs,
                rss_per_run: after.saturating_sub(*before) as f64 / runs,
            }
        })
        .collect();
    breakdown.sort_by(|a, b| b.rss_per_run.total_cmp(&a.rss_per_run));
    breakdown
}

/// A snapshot of this process's memory (Linux `/proc/self`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `RssAnon`, bytes.
    pub anon: u64,
    /// Lines of `/proc/self/maps`.
    pub maps: u64,
}

impl Memory {
    /// Reads the snapshot now.
    ///
    /// # Errors
    /// When `/proc/self` cannot be read (not Linux).
    pub fn now() -> anyhow::Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        let maps = std::fs::read_to_string("/proc/self/maps")?.lines().count();
        Ok(Self {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
            maps: u64::try_from(maps).unwrap_or(u64::MAX),
        })
    }
}

/// Parks `in_flight` runs of `fetch` (the fetch guest's bytes) on `server` and measures.
///
/// # Errors
/// When the runtime cannot be built for that many runs, or runs fail.
pub async fn measure(
    server: &mut LoopbackServer,
    fetch: &[u8],
    in_flight: usize,
) -> anyhow::Result<Parked> {
    let mut config = super::loopback_config(server.port())?;
    let patience = u64::try_from(PATIENCE.as_millis()).unwrap_or(u64::MAX);
    config.limits.deadline_ms = patience;
    config.limits.host_call_timeout_ms = patience;
    config.http.first_byte_timeout_ms = patience;
    config.http.total_timeout_ms = patience;
    let slots = u32::try_from(in_flight + 8)?;
    let input = |url: String| serde_json::json!({ "url": url }).to_string();
    let warm = Fluxo::new(
        "R",
        Metering::default(),
        slots,
        config,
        fetch,
        &input(server.fast_url()),
    )?;
    // Fault in the code, the pool's first slots and the HTTP client before measuring.
    for _ in 0..3 {
        warm.report().await?;
    }
    let parking = Arc::new(warm.with_input(&input(server.park_url()))?);
    let before = Memory::now()?;
    let maps_before = smaps()?;
    let started = Instant::now();
    let runs: Vec<_> = (0..in_flight)
        .map(|_| {
            let parking = parking.clone();
            tokio::spawn(async move { parking.report().await.map(|report| report.status) })
        })
        .collect();
    let parked = server.wait_parked(in_flight, PATIENCE).await;
    let park_time = started.elapsed();
    let during = Memory::now()?;
    let maps_during = smaps()?;
    server.release().await?;
    let mut failed = 0;
    let mut first_error = None;
    for run in runs {
        match run.await? {
            Ok(RunStatus::Succeeded) => {}
            Ok(RunStatus::Failed) => failed += 1,
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    parked?;
    if let Some(error) = first_error {
        anyhow::bail!("{failed} of {in_flight} parked runs failed; the first: {error:#}");
    }
    let per_run = |after: u64, before: u64| after.saturating_sub(before) as f64 / in_flight as f64;
    Ok(Parked {
        in_flight,
        rss_per_run: per_run(during.rss, before.rss),
        anon_per_run: per_run(during.anon, before.anon),
        maps_per_run: per_run(during.maps, before.maps),
        maps_total: during.maps,
        park_time,
        breakdown: breakdown(&maps_before, &maps_during, in_flight),
    })
}

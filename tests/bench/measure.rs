//! Timing loops: back-to-back latency batches and fixed-window throughput, each on the
//! benchmark's tokio workers; the Extism contender times itself in its own process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::contenders::Contender;
use super::contenders::extism::Extism;
use super::stats;

/// Something that can be timed: a contender in this process, or Extism in its own.
#[derive(Clone)]
pub enum Entrant {
    /// Timed here.
    Local(Arc<dyn Contender>),
    /// Timed by the Extism runner; `warm` reuses one plug-in.
    Extism {
        /// The runner.
        runner: Arc<Extism>,
        /// Row label.
        label: &'static str,
        /// Reuse one plug-in (no isolation).
        warm: bool,
    },
}

impl Entrant {
    /// The row label.
    #[must_use]
    pub fn label(&self) -> &str {
        match self {
            Self::Local(contender) => contender.label(),
            Self::Extism { label, .. } => label,
        }
    }

    /// What isolates one run from the next.
    #[must_use]
    pub fn isolation(&self) -> &'static str {
        match self {
            Self::Local(contender) => contender.isolation(),
            Self::Extism { warm: true, .. } => "none between runs (one plug-in)",
            Self::Extism { warm: false, .. } => "wasm instance (Extism, wasmtime 43)",
        }
    }

    /// Per-run latencies of runs made back to back for about `window` (at least
    /// `min_runs`); `hint` is a previous p50, used to size the Extism batch.
    ///
    /// # Errors
    /// When a run fails.
    pub async fn latencies(
        &self,
        window: Duration,
        min_runs: usize,
        hint: Option<Duration>,
    ) -> anyhow::Result<Vec<Duration>> {
        match self {
            Self::Local(contender) => {
                let contender = contender.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let end = Instant::now() + window;
                    while samples.len() < min_runs || Instant::now() < end {
                        let started = Instant::now();
                        contender.run().await?;
                        samples.push(started.elapsed());
                    }
                    Ok(samples)
                })
                .await?
            }
            Self::Extism { runner, warm, .. } => {
                runner
                    .latencies(*warm, batch_size(window, min_runs, hint))
                    .await
            }
        }
    }

    /// Actions per second with `in_flight` runs at a time for about `window`; `hint` is
    /// a p50 latency, used to size the Extism batch (which runs on two threads).
    ///
    /// # Errors
    /// When a run fails.
    pub async fn throughput(
        &self,
        in_flight: usize,
        window: Duration,
        hint: Option<Duration>,
    ) -> anyhow::Result<f64> {
        match self {
            Self::Local(contender) => throughput(contender, in_flight, window).await,
            Self::Extism { runner, .. } => {
                runner
                    .throughput(batch_size(window, 20, hint).saturating_mul(2))
                    .await
            }
        }
    }
}

/// Runs that fill `window` at `hint` each, at least `min_runs`, at most 100 000.
fn batch_size(window: Duration, min_runs: usize, hint: Option<Duration>) -> usize {
    let Some(hint) = hint.filter(|hint| !hint.is_zero()) else {
        return min_runs;
    };
    let runs = window.as_nanos() / hint.as_nanos().max(1);
    usize::try_from(runs)
        .unwrap_or(usize::MAX)
        .clamp(min_runs, 100_000)
}

async fn throughput(
    contender: &Arc<dyn Contender>,
    in_flight: usize,
    window: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let end = started + window;
    let loops: Vec<_> = (0..in_flight)
        .map(|_| {
            let contender = contender.clone();
            tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < end {
                    contender.run().await?;
                    done += 1;
                }
                Ok::<_, anyhow::Error>(done)
            })
        })
        .collect();
    let mut done = 0;
    for task in loops {
        done += task.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Latency rounds over `entrants`, interleaved (the order rotates every round).
#[derive(Debug)]
pub struct Rounds {
    /// Every sample, by entrant.
    pub samples: Vec<Vec<Duration>>,
    /// Each round's p50, by entrant.
    pub round_p50: Vec<Vec<Duration>>,
}

impl Rounds {
    /// Runs `rounds` rounds of one `window` batch per entrant.
    ///
    /// # Errors
    /// When a run fails.
    pub async fn run(
        entrants: &[Entrant],
        rounds: usize,
        window: Duration,
        min_runs: usize,
    ) -> anyhow::Result<Self> {
        let mut samples = vec![Vec::new(); entrants.len()];
        let mut round_p50 = vec![Vec::new(); entrants.len()];
        let mut hints: Vec<Option<Duration>> = vec![None; entrants.len()];
        for round in 0..rounds {
            for offset in 0..entrants.len() {
                let index = (offset + round) % entrants.len();
                let Some(entrant) = entrants.get(index) else {
                    continue;
                };
                let hint = hints.get(index).copied().flatten();
                let batch = entrant.latencies(window, min_runs, hint).await?;
                let p50 = stats::latency(&batch).p50;
                if let Some(slot) = hints.get_mut(index) {
                    *slot = Some(p50);
                }
                if let Some(rows) = round_p50.get_mut(index) {
                    rows.push(p50);
                }
                if let Some(all) = samples.get_mut(index) {
                    all.extend(batch);
                }
            }
        }
        Ok(Self { samples, round_p50 })
    }

    /// Per-round ratios `numerator p50 / denominator p50`.
    #[must_use]
    pub fn ratios(&self, numerator: usize, denominator: usize) -> Vec<f64> {
        let (Some(top), Some(bottom)) = (
            self.round_p50.get(numerator),
            self.round_p50.get(denominator),
        ) else {
            return Vec::new();
        };
        top.iter()
            .zip(bottom)
            .map(|(top, bottom)| top.as_secs_f64() / bottom.as_secs_f64())
            .collect()
    }
}

impl std::fmt::Debug for Entrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Entrant").field(&self.label()).finish()
    }
}

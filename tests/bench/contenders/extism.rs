//! **X**: Extism 1.30 (on wasmtime 43), a fresh plug-in per action instantiated from a
//! compiled plug-in, host functions for `set_field` and `add_tag`. **X-warm** calls one
//! plug-in again and again (no isolation between runs).
//!
//! Extism cannot share this binary with wasmtime 48, so it runs in its own process
//! (`tests/extism-baseline`), which times its runs itself and reports the samples.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::Observed;

/// The Extism runner process and what it runs.
#[derive(Debug)]
pub struct Extism {
    runner: PathBuf,
    plugin: PathBuf,
    event_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Extism {
    /// Runs `plugin` (a core module) with `runner` (`fluxo-extism-runner`) on `event`.
    ///
    /// # Errors
    /// When the event cannot be written to a temporary file.
    pub fn new(runner: &Path, plugin: &Path, event: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let event_file = dir.path().join("event.json");
        std::fs::write(&event_file, event)?;
        Ok(Self {
            runner: runner.to_owned(),
            plugin: plugin.to_owned(),
            event_file,
            _dir: dir,
        })
    }

    async fn invoke(&self, mode: &str, count: usize) -> anyhow::Result<serde_json::Value> {
        let output = tokio::process::Command::new(&self.runner)
            .arg(&self.plugin)
            .arg(&self.event_file)
            .arg(mode)
            .arg(count.to_string())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("starting {}", self.runner.display()))?;
        if !output.status.success() {
            anyhow::bail!(
                "{} {mode} failed ({}): {}",
                self.runner.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Per-run latencies of `count` runs: fresh plug-ins, or one warm plug-in.
    ///
    /// # Errors
    /// When the runner fails.
    pub async fn latencies(&self, warm: bool, count: usize) -> anyhow::Result<Vec<Duration>> {
        let report = self
            .invoke(if warm { "warm" } else { "fresh" }, count)
            .await?;
        let samples: Vec<u64> =
            serde_json::from_value(report.get("samples_ns").cloned().context("no samples_ns")?)?;
        Ok(samples.into_iter().map(Duration::from_nanos).collect())
    }

    /// Actions per second for `count` fresh runs on two threads.
    ///
    /// # Errors
    /// When the runner fails.
    pub async fn throughput(&self, count: usize) -> anyhow::Result<f64> {
        let report = self.invoke("throughput", count).await?;
        let elapsed = report
            .get("elapsed_ns")
            .and_then(serde_json::Value::as_u64)
            .context("no elapsed_ns")?;
        Ok(count as f64 / Duration::from_nanos(elapsed.max(1)).as_secs_f64())
    }

    /// One run's output and effects.
    ///
    /// # Errors
    /// When the runner fails or reports something unreadable.
    pub async fn observe(&self) -> anyhow::Result<Observed> {
        Observed::from_report(&self.invoke("once", 1).await?)
    }
}

//! **P**: a process per action — spawn a native binary, the event on its stdin, its
//! output and effects as JSON on its stdout.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use super::{BoxFuture, Contender, Observed};

/// The process-per-action contender.
#[derive(Debug)]
pub struct Process {
    program: PathBuf,
    event: String,
}

impl Process {
    /// Runs `program` (the `fluxo-triage-process` binary) once per action.
    #[must_use]
    pub fn new(program: PathBuf, event: String) -> Self {
        Self { program, event }
    }

    async fn once(&self) -> anyhow::Result<serde_json::Value> {
        let mut child = tokio::process::Command::new(&self.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(self.event.as_bytes()).await?;
        drop(stdin);
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            anyhow::bail!("{} exited with {}", self.program.display(), output.status);
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

impl Contender for Process {
    fn label(&self) -> &str {
        "P"
    }

    fn isolation(&self) -> &'static str {
        "OS process (no limits set)"
    }

    fn run(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            black_box(self.once().await?);
            Ok(())
        })
    }

    fn observe(&self) -> BoxFuture<'_, anyhow::Result<Observed>> {
        Box::pin(async move {
            let report = self.once().await?;
            let output = report
                .get("output")
                .and_then(serde_json::Value::as_str)
                .context("no output")?;
            Ok(Observed {
                output: serde_json::from_str(output)?,
                effects: serde_json::from_value(
                    report.get("effects").cloned().unwrap_or_default(),
                )?,
            })
        })
    }
}

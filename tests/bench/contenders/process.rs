//! **P**: a process per action — spawn a native binary, the event on its stdin, its
//! output and effects as JSON on its stdout.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use super::{BoxFuture, Contender, Observed, Raw};

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

    async fn call(&self) -> anyhow::Result<Raw> {
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
        // The host reads the effects from the child's report, as a platform would.
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let observed = Observed::from_report(&report)?;
        Ok((observed.output.to_string(), observed.effects))
    }
}

impl Contender for Process {
    fn label(&self) -> &str {
        "P"
    }

    fn isolation(&self) -> &'static str {
        "OS process (no limits set)"
    }

    fn once(&self) -> BoxFuture<'_, anyhow::Result<Raw>> {
        Box::pin(self.call())
    }
}

//! Compiling components out of process, bounded in time and memory, into precompiled
//! artifacts only this host writes.
//!
//! A tenant's bytes are never deserialized: they are compiled (by Cranelift, in a child
//! `fluxo compile-artifact` process under `ulimit -v` and a timeout, so a compile bomb
//! costs a killed child, not the server), and the artifact the child wrote is what the
//! host loads. The child reads the component on stdin and writes the artifact to a path
//! of the parent's choosing; its stderr is read while it runs (a chatty child cannot
//! block on a full pipe) and kept short.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fluxo_sandbox::Metering;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The subcommand of the `fluxo` binary that compiles one component: the registry and
/// the CLI share this constant, so the argv shape has one owner.
pub const COMPILE_ARTIFACT_COMMAND: &str = "compile-artifact";

/// Bounds on one compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time before the compiler is killed.
    pub timeout: Duration,
    /// Address space the compiler may map, in bytes.
    pub max_memory_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_memory_bytes: 2 << 30,
        }
    }
}

/// How components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// In a child process: `program compile-artifact --metering M - OUT` (the `fluxo`
    /// binary), the component on its stdin.
    Subprocess {
        /// The program to run.
        program: PathBuf,
        /// Its bounds.
        limits: CompileLimits,
    },
    /// In this process, on the blocking pool, unbounded (for embedders that trust their
    /// uploads).
    InProcess,
}

/// Why a compilation produced no artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The compiler ran past its time limit and was killed.
    #[error("compilation took longer than {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// The compiler refused the component or ran out of memory; one short line.
    #[error("compilation failed: {0}")]
    Failed(String),
}

/// Stderr kept from a failed child, in bytes.
const STDERR_BYTES: u64 = 4096;

impl Compiler {
    /// Compiles `component` into the artifact file `output`.
    pub(crate) async fn compile(
        &self,
        metering: Metering,
        component: Vec<u8>,
        output: &Path,
    ) -> Result<(), CompileError> {
        match self {
            Self::InProcess => {
                let output = output.to_owned();
                tokio::task::spawn_blocking(move || {
                    let artifact = fluxo_sandbox::load::precompile(metering, &component)
                        .map_err(|error| CompileError::Failed(error.to_string()))?;
                    std::fs::write(&output, artifact)
                        .map_err(|error| CompileError::Failed(format!("writing: {error}")))
                })
                .await
                .map_err(|error| CompileError::Failed(error.to_string()))?
            }
            Self::Subprocess { program, limits } => {
                subprocess(program, *limits, metering, &component, output).await
            }
        }
    }
}

async fn subprocess(
    program: &Path,
    limits: CompileLimits,
    metering: Metering,
    component: &[u8],
    output: &Path,
) -> Result<(), CompileError> {
    let kib = (limits.max_memory_bytes / 1024).max(1).to_string();
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"ulimit -v "$1" && exec "$2" "$3" --metering "$4" - "$5""#)
        .arg("fluxo-compile")
        .arg(kib)
        .arg(program)
        .arg(COMPILE_ARTIFACT_COMMAND)
        .arg(metering.as_flag())
        .arg(output)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| CompileError::Failed(format!("starting the compiler: {error}")))?;
    let mut stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let feed = async {
        if let Some(stdin) = &mut stdin {
            // A child that dies early closes its stdin: that is its exit status's story.
            let _ = stdin.write_all(component).await;
            let _ = stdin.shutdown().await;
        }
        drop(stdin.take());
    };
    let drain = async {
        let mut message = String::new();
        if let Some(stderr) = stderr {
            let mut limited = stderr.take(STDERR_BYTES);
            let _ = limited.read_to_string(&mut message).await;
            // Keep reading (and dropping) what is past the cap, so the child never blocks.
            let mut rest = limited.into_inner();
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
        }
        message
    };
    let run = async {
        let ((), message) = tokio::join!(feed, drain);
        let status = child.wait().await;
        (status, message)
    };
    let Ok((status, message)) = tokio::time::timeout(limits.timeout, run).await else {
        return Err(CompileError::Timeout(limits.timeout));
    };
    let status = status.map_err(|error| CompileError::Failed(error.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let first = message
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("note:"))
        .unwrap_or("")
        .trim_start_matches("fluxo: ");
    Err(CompileError::Failed(
        if first.is_empty() || looks_internal(first) {
            format!(
                "the compiler stopped ({status}); the component may need more than the {}-byte compile memory limit",
                limits.max_memory_bytes
            )
        } else {
            let mut cut = first.len().min(300);
            while !first.is_char_boundary(cut) {
                cut -= 1;
            }
            first.get(..cut).unwrap_or(first).to_owned()
        },
    ))
}

/// Whether a line is the compiler's internals (an allocator failure, a panic).
fn looks_internal(line: &str) -> bool {
    [
        "memory allocation of",
        "panicked at",
        "thread '",
        "stack backtrace",
        "RUST_BACKTRACE",
    ]
    .iter()
    .any(|marker| line.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_are_not_shown() {
        assert!(looks_internal("memory allocation of 1048576 bytes failed"));
        assert!(looks_internal("thread 'main' panicked at src/lib.rs:1:1"));
        assert!(!looks_internal(
            "invalid component: unexpected end of section"
        ));
    }
}

//! Compiling components out of process, bounded in time and memory, into precompiled
//! artifacts only this host writes; and loading those artifacts.
//!
//! A tenant's bytes are never deserialized: they are compiled (by Cranelift, in a child
//! `fluxo compile-artifact` process under `ulimit -v` and a timeout, so a compile bomb
//! costs a killed child, not the server), and the artifact the child wrote is what the
//! host loads. Artifacts are keyed by content hash and engine fingerprint.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::Error;
use crate::engine::{self, Metering};

/// Bounds on one compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time before the compiler is killed.
    pub timeout: Duration,
    /// Address space the compiler may map.
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
    /// In a child process: `program compile-artifact IN OUT` (the `fluxo` binary).
    Subprocess {
        /// The program to run.
        program: PathBuf,
        /// Its bounds.
        limits: CompileLimits,
    },
    /// In this process, unbounded (for embedders that trust their uploads).
    InProcess,
}

/// Why a compilation produced no artifact.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The compiler ran past its time limit and was killed.
    #[error("compilation took longer than {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// The compiler refused the component or ran out of memory.
    #[error("compilation failed: {0}")]
    Failed(String),
}

impl Compiler {
    /// Compiles the component file `input` into the artifact file `output`.
    pub(crate) async fn compile(
        &self,
        engine: &Engine,
        metering: Metering,
        input: &Path,
        output: &Path,
    ) -> Result<(), CompileError> {
        match self {
            Self::InProcess => {
                let bytes =
                    std::fs::read(input).map_err(|e| CompileError::Failed(e.to_string()))?;
                let engine = engine.clone();
                let artifact =
                    tokio::task::spawn_blocking(move || engine.precompile_component(&bytes))
                        .await
                        .map_err(|e| CompileError::Failed(e.to_string()))?
                        .map_err(|e| CompileError::Failed(format!("{e:#}")))?;
                std::fs::write(output, artifact).map_err(|e| CompileError::Failed(e.to_string()))
            }
            Self::Subprocess { program, limits } => {
                let kib = (limits.max_memory_bytes / 1024).max(1).to_string();
                let mut child = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(
                        r#"ulimit -v "$1" && exec "$2" compile-artifact --metering "$5" "$3" "$4""#,
                    )
                    .arg("fluxo-compile")
                    .arg(kib)
                    .arg(program)
                    .arg(input)
                    .arg(output)
                    .arg(metering.as_flag())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| CompileError::Failed(format!("starting the compiler: {e}")))?;
                let stderr = child.stderr.take();
                let status = match tokio::time::timeout(limits.timeout, child.wait()).await {
                    Ok(status) => status.map_err(|e| CompileError::Failed(e.to_string()))?,
                    Err(_) => {
                        let _ = child.kill().await;
                        return Err(CompileError::Timeout(limits.timeout));
                    }
                };
                if status.success() {
                    return Ok(());
                }
                let mut message = String::new();
                if let Some(mut stderr) = stderr {
                    use tokio::io::AsyncReadExt as _;
                    let _ = (&mut stderr).take(4096).read_to_string(&mut message).await;
                }
                let message = message.trim();
                Err(CompileError::Failed(if message.is_empty() {
                    format!(
                        "the compiler exited with {status} (memory limit {} bytes?)",
                        limits.max_memory_bytes
                    )
                } else {
                    message.to_owned()
                }))
            }
        }
    }
}

/// The child side of [`Compiler::Subprocess`]: compiles `input` into `output` with an
/// engine configured like the host's (`metering` is the host's).
///
/// # Errors
/// When the component cannot be read, compiled or written.
pub fn compile_artifact(input: &Path, output: &Path, metering: Metering) -> Result<(), Error> {
    let bytes = std::fs::read(input)
        .map_err(|e| Error::InvalidComponent(format!("reading {}: {e}", input.display())))?;
    let engine = engine::build_compiler(metering)?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|error| Error::InvalidComponent(format!("{error:#}")))?;
    std::fs::write(output, artifact)
        .map_err(|e| Error::InvalidComponent(format!("writing {}: {e}", output.display())))
}

/// What an artifact must match to load into `engine`: the engine's compatibility hash
/// and the wasmtime version.
pub(crate) fn fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    "wasmtime-48.0.8".hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Loads a precompiled artifact.
///
/// Only ever called with bytes read from the artifact directory, which only
/// [`Compiler::compile`] writes (tenants' uploads go to the component directory under
/// their content hash and are never passed here).
#[allow(
    unsafe_code,
    reason = "the one reviewed deserialization of host-written artifacts"
)]
pub(crate) fn deserialize(engine: &Engine, artifact: &[u8]) -> Result<Component, Error> {
    // SAFETY: `Component::deserialize` requires bytes produced by `precompile_component`
    // of a compatible engine and not tampered with. These bytes come from this host's own
    // compiler (in-process or the child `fluxo compile-artifact`, configured by
    // `engine::build_compiler` with the same settings) and were written into the
    // host-owned artifact directory under a name keyed by the engine fingerprint; tenant
    // input never reaches this function. Wasmtime additionally checks the header and the
    // engine compatibility before using the code.
    unsafe { Component::deserialize(engine, artifact) }.map_err(|error| {
        Error::InvalidComponent(format!("loading the compiled artifact: {error:#}"))
    })
}

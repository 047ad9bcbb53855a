//! Finds a WebAssembly toolchain and builds Rust action crates into Fluxo components.
//!
//! Two toolchains are supported, in this order (see `scripts/setup-toolchain`):
//! 1. **rustup targets** `wasm32-wasip2` and `wasm32-unknown-unknown` — the standard path;
//! 2. **Debian's Rust** (`rustc-web`, `rust-web-src`, `lld-19`, `wasi-libc`) with
//!    `-Zbuild-std` — the fallback when rustup cannot add targets.
//!
//! A `wasm32-wasip2` build is a component already; a `wasm32-unknown-unknown` build is a
//! core module that [`componentize`] turns into a component with `wit-component`.
//!
//! Python and JavaScript actions are built by their own pinned toolchains: [`lang`].
//!
//! The nested cargo runs with the outer cargo's environment scrubbed: a build script or
//! `cargo clippy` exports variables (`CARGO_ENCODED_RUSTFLAGS`, `RUSTC_WORKSPACE_WRAPPER`,
//! `TARGET`, …) that would otherwise leak into the guest build and break it.

pub mod lang;

pub use lang::{Lang, LanguageTools};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where `scripts/setup-toolchain` is named in errors.
pub const SETUP_HINT: &str = "install a WebAssembly toolchain with `scripts/setup-toolchain` (rustup targets, or Debian's rustc-web fallback)";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust";
const DEBIAN_LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

/// A failure to find a toolchain or to build a guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolchainError {
    /// Neither rustup's wasm targets nor Debian's fallback is installed.
    #[error("no WebAssembly toolchain found: {SETUP_HINT}")]
    NotInstalled,
    /// A command could not be started.
    #[error("could not run {command}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The guest build failed; cargo's diagnostics were printed above.
    #[error("cargo build of {manifest} for {target} failed ({status})")]
    BuildFailed {
        /// The manifest built.
        manifest: PathBuf,
        /// The target triple.
        target: &'static str,
        /// cargo's exit status.
        status: String,
    },
    /// A built artifact could not be read or written.
    #[error("could not access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A language's toolchain (componentize-py, jco) is not installed.
    #[error(
        "the {lang} toolchain is not installed (no {path}): {}",
        lang::LANG_SETUP_HINT
    )]
    LanguageNotInstalled {
        /// The language (`python`, `js`).
        lang: &'static str,
        /// Where its tool was looked for.
        path: PathBuf,
    },
    /// A language's toolchain failed (refused the action, or could not write bindings);
    /// its diagnostics were printed above.
    #[error("the {lang} toolchain failed on {input} ({status})")]
    LanguageBuildFailed {
        /// The language (`python`, `js`).
        lang: &'static str,
        /// The action's source (a Python directory or a JavaScript file).
        input: PathBuf,
        /// The tool's exit status.
        status: String,
    },
    /// A core module could not be turned into a component.
    #[error("could not turn {path} into a component: {reason}")]
    Componentize {
        /// The core module.
        path: PathBuf,
        /// What wit-component said.
        reason: String,
    },
}

/// A WebAssembly compilation target for guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `wasm32-wasip2`: `std` imports WASI 0.2; the output is a component.
    Wasip2,
    /// `wasm32-unknown-unknown`: a core module, componentized after the build.
    Unknown,
}

impl Target {
    /// The rustc target triple.
    #[must_use]
    pub fn triple(self) -> &'static str {
        match self {
            Self::Wasip2 => "wasm32-wasip2",
            Self::Unknown => "wasm32-unknown-unknown",
        }
    }
}

/// What one build covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The crate the manifest names.
    Crate,
    /// Every crate of the manifest's workspace.
    Workspace,
}

/// Which toolchain builds the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's wasm targets with the default toolchain.
    Rustup,
    /// Debian's rustc with std sources, `-Zbuild-std`.
    Debian,
}

impl Toolchain {
    /// Finds the toolchain to use: rustup's targets first, Debian's fallback second.
    ///
    /// # Errors
    /// [`ToolchainError::NotInstalled`] when neither is present.
    pub fn detect() -> Result<Self, ToolchainError> {
        if rustup_has_targets() {
            return Ok(Self::Rustup);
        }
        Self::debian()
    }

    /// Debian's fallback, if it is installed (for choosing it over rustup on purpose).
    ///
    /// # Errors
    /// [`ToolchainError::NotInstalled`] when it is not.
    pub fn debian() -> Result<Self, ToolchainError> {
        if Path::new(DEBIAN_RUSTC).exists()
            && Path::new(DEBIAN_RUST_SRC).exists()
            && Path::new(DEBIAN_LLVM_BIN).join("wasm-ld").exists()
        {
            Ok(Self::Debian)
        } else {
            Err(ToolchainError::NotInstalled)
        }
    }

    /// A short name for progress lines.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rustup => "rustup wasm targets",
            Self::Debian => "Debian rustc-web with -Zbuild-std",
        }
    }

    /// Builds the crate at `manifest` (with `scope` [`Scope::Workspace`], every crate of
    /// its workspace) for `target`, into `target_dir` or cargo's default target directory;
    /// returns one component per `cdylib`.
    ///
    /// cargo's progress and diagnostics go to this process's stderr.
    ///
    /// # Errors
    /// When cargo fails or an artifact cannot be componentized.
    pub fn build(
        self,
        manifest: &Path,
        scope: Scope,
        target: Target,
        target_dir: Option<&Path>,
    ) -> Result<Vec<Component>, ToolchainError> {
        self.cargo_build(manifest, scope, target, target_dir)?
            .into_iter()
            .map(|(name, path)| {
                let bytes = read(&path)?;
                let bytes = match target {
                    Target::Wasip2 => bytes,
                    Target::Unknown => componentize(&path, &bytes)?,
                };
                Ok(Component {
                    name,
                    target,
                    bytes,
                })
            })
            .collect()
    }

    /// Builds the crate at `manifest` (or its whole workspace) for
    /// `wasm32-unknown-unknown` and returns the core modules as built, not
    /// componentized: for hosts of other plug-in systems (the Extism benchmark).
    ///
    /// # Errors
    /// When cargo fails or an artifact cannot be read.
    pub fn build_core_modules(
        self,
        manifest: &Path,
        scope: Scope,
        target_dir: Option<&Path>,
    ) -> Result<Vec<CoreModule>, ToolchainError> {
        self.cargo_build(manifest, scope, Target::Unknown, target_dir)?
            .into_iter()
            .map(|(name, path)| {
                Ok(CoreModule {
                    bytes: read(&path)?,
                    name,
                })
            })
            .collect()
    }

    /// Runs `cargo build --release` for the `cdylib`s and returns each artifact's crate
    /// name and `.wasm` path.
    fn cargo_build(
        self,
        manifest: &Path,
        scope: Scope,
        target: Target,
        target_dir: Option<&Path>,
    ) -> Result<Vec<(String, PathBuf)>, ToolchainError> {
        let mut command = self.cargo_command(target);
        command.arg("build").arg("--release");
        if scope == Scope::Workspace {
            command.arg("--workspace");
        }
        if let Some(target_dir) = target_dir {
            command.arg("--target-dir").arg(target_dir);
        }
        command
            .arg("--lib")
            .arg("--message-format=json-render-diagnostics")
            .arg("--target")
            .arg(target.triple())
            .arg("--manifest-path")
            .arg(manifest)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().map_err(|source| ToolchainError::Spawn {
            command: "cargo".to_owned(),
            source,
        })?;
        let mut artifacts = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                artifacts.extend(wasm_artifact(&line));
            }
        }
        let status = child.wait().map_err(|source| ToolchainError::Spawn {
            command: "cargo".to_owned(),
            source,
        })?;
        if !status.success() {
            return Err(ToolchainError::BuildFailed {
                manifest: manifest.to_owned(),
                target: target.triple(),
                status: status.to_string(),
            });
        }
        Ok(artifacts)
    }

    fn cargo_command(self, target: Target) -> Command {
        let mut command = Command::new("cargo");
        scrub_cargo_env(&mut command);
        if self == Self::Debian {
            command
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1")
                .arg("-Zbuild-std=std,panic_abort");
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![PathBuf::from(DEBIAN_LLVM_BIN)];
            paths.extend(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(paths) {
                command.env("PATH", joined);
            }
            match target {
                Target::Unknown => {
                    command.env(
                        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
                        Path::new(DEBIAN_LLVM_BIN).join("wasm-ld"),
                    );
                }
                Target::Wasip2 => {
                    command.env(
                        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
                        format!("-L{DEBIAN_WASI_LIBC} -Clink-self-contained=no"),
                    );
                }
            }
        }
        command
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ToolchainError> {
    std::fs::read(path).map_err(|source| ToolchainError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A core module built from one crate for `wasm32-unknown-unknown`.
#[derive(Debug, Clone)]
pub struct CoreModule {
    /// The crate's library name (`triage_plugin`).
    pub name: String,
    /// The module's bytes.
    pub bytes: Vec<u8>,
}

/// A component built from one crate.
#[derive(Debug, Clone)]
pub struct Component {
    /// The crate's library name (`crm_lead`).
    pub name: String,
    /// The target it was built for.
    pub target: Target,
    /// The component's bytes.
    pub bytes: Vec<u8>,
}

/// Turns a core module built against the `fluxo:action` world (its bindings embed the
/// component type) into a component.
///
/// # Errors
/// When the module has no component type or does not fit it.
pub fn componentize(path: &Path, module: &[u8]) -> Result<Vec<u8>, ToolchainError> {
    let fail = |error: &dyn std::fmt::Display| ToolchainError::Componentize {
        path: path.to_owned(),
        reason: format!("{error:#}"),
    };
    wit_component::ComponentEncoder::default()
        .module(module)
        .map_err(|error| fail(&error))?
        .validate(true)
        .encode()
        .map_err(|error| fail(&error))
}

/// The `(name, path)` of a `.wasm` file named in one line of cargo's JSON messages.
fn wasm_artifact(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let name = message
        .get("target")?
        .get("name")?
        .as_str()?
        .replace('-', "_");
    message
        .get("filenames")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .find(|file| Path::new(file).extension().is_some_and(|ext| ext == "wasm"))
        .map(|file| (name, PathBuf::from(file)))
}

fn rustup_has_targets() -> bool {
    let mut command = Command::new("rustup");
    scrub_cargo_env(&mut command);
    let Ok(output) = command.args(["target", "list", "--installed"]).output() else {
        return false;
    };
    let installed = String::from_utf8_lossy(&output.stdout);
    output.status.success()
        && [Target::Wasip2, Target::Unknown]
            .iter()
            .all(|target| installed.lines().any(|line| line.trim() == target.triple()))
}

/// Removes what an outer cargo (a build script, `cargo clippy`) exports, so the nested
/// guest build starts from the user's own environment.
fn scrub_cargo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_internal = key.starts_with("CARGO_") && key != "CARGO_HOME";
        let outer = matches!(
            key,
            "RUSTC"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTDOC"
                | "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "TARGET"
                | "HOST"
                | "OUT_DIR"
                | "PROFILE"
                | "OPT_LEVEL"
                | "DEBUG"
                | "NUM_JOBS"
                | "RUSTUP_TOOLCHAIN"
                | "RUSTC_BOOTSTRAP"
                | "CARGO"
        ) || key.starts_with("RUSTC_");
        if cargo_internal || outer {
            command.env_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_wasm_files_from_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"crm-lead"},"filenames":["/t/wasm32-wasip2/release/crm_lead.wasm","/t/x.rlib"]}"#;
        assert_eq!(
            wasm_artifact(line),
            Some((
                "crm_lead".to_owned(),
                PathBuf::from("/t/wasm32-wasip2/release/crm_lead.wasm")
            ))
        );
        assert_eq!(wasm_artifact(r#"{"reason":"build-finished"}"#), None);
        assert_eq!(wasm_artifact("not json"), None);
    }
}

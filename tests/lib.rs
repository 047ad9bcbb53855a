//! Support for the integration tests and the benchmarks: the guest components built by
//! `build.rs`, where the `fluxo` binary and the Extism runner are, and the benchmark
//! harness ([`mod@bench`]).

pub mod bench;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Paths of the guest components, one constant per guest (`CRM_LEAD`, `SPIN`, …);
/// examples also come componentized from `wasm32-unknown-unknown` (`CRM_LEAD_CORE`).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The `fluxo` binary of this build, or why it cannot be used.
///
/// `cargo test` does not build another package's binary, so `scripts/test` runs
/// `cargo build` first; a binary older than the runtime's sources is refused rather
/// than tested.
///
/// # Errors
/// When the binary is missing or stale.
pub fn fluxo_bin() -> Result<PathBuf, String> {
    fluxo_bin_in("debug")
}

/// The `fluxo` binary of cargo profile directory `profile` (`debug`, `release`), or why
/// it cannot be used (`FLUXO_BIN` overrides).
///
/// # Errors
/// When the binary is missing or stale.
pub fn fluxo_bin_in(profile: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("FLUXO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = root();
    let flag = if profile == "debug" { "" } else { " --release" };
    fresh_binary(
        &target_dir().join(profile).join("fluxo"),
        &[root.join("runtime"), root.join("toolchain/src")],
        &format!("cargo build{flag} -p fluxo --bin fluxo"),
    )
}

/// The Extism benchmark runner (`tests/extism-baseline`, its own workspace), or why it
/// cannot be used.
///
/// # Errors
/// When it is missing or older than its sources.
pub fn extism_runner() -> Result<PathBuf, String> {
    let root = root();
    fresh_binary(
        &target_dir()
            .join("extism-baseline/release")
            .join("fluxo-extism-runner"),
        &[root.join("tests/extism-baseline/runner")],
        "scripts/build-extism-runner",
    )
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `bin` if it exists and is newer than everything under `sources`.
fn fresh_binary(bin: &Path, sources: &[PathBuf], build: &str) -> Result<PathBuf, String> {
    let built =
        modified(bin).ok_or_else(|| format!("{} is missing: run `{build}`", bin.display()))?;
    let newest_source = sources
        .iter()
        .map(|dir| newest(dir))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if newest_source > built {
        return Err(format!(
            "{} is older than its sources: run `{build}`",
            bin.display()
        ));
    }
    Ok(bin.to_owned())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

fn newest(dir: &Path) -> SystemTime {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return SystemTime::UNIX_EPOCH;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest(&path)
            } else {
                modified(&path).unwrap_or(SystemTime::UNIX_EPOCH)
            }
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

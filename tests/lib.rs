//! Support for the integration tests: the guest components built by `build.rs`, and
//! where the `fluxo` binary is.

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
    if let Some(path) = std::env::var_os("FLUXO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("debug").join("fluxo");
    let built = modified(&bin)
        .ok_or_else(|| format!("{} is missing: run `cargo build` first", bin.display()))?;
    let newest_source = newest(&root.join("runtime/src")).max(newest(&root.join("toolchain/src")));
    if newest_source > built {
        return Err(format!(
            "{} is older than the runtime's sources: run `cargo build` first",
            bin.display()
        ));
    }
    Ok(bin)
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

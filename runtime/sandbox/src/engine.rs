//! The one wasmtime [`Engine`] of a sandbox and the thread that ticks its epoch.
//!
//! The engine meters fuel, interrupts on epochs, and allocates instances from a pool
//! sized for [`EngineOptions::max_concurrent_runs`] and shaped by [`PoolShape`]. The
//! ticker is an OS thread, not a tokio task, so it keeps ticking whatever the async
//! runtime is doing; each tick past a run's epoch deadline makes the guest yield to the
//! async runtime (see `execute`), so spinning guests never hold a worker thread.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};

pub use fluxo_component::PoolShape;

use crate::SandboxError;

type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// The largest linear memory any run may have; per-run limits are checked against it.
pub const MAX_MEMORY_BYTES: u64 = 256 << 20;

/// How often the epoch advances; deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a freed linear memory reset in place rather than given back, where the
/// kernel can say which pages a run dirtied (see `pool`).
const KEEP_RESIDENT_SCANNED: usize = 1 << 20;
/// The same without that help: the lowest bytes are reset with `memset` every time.
const KEEP_RESIDENT_BLIND: usize = 64 << 10;

/// Engine-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Runs that may hold an instance at once; the pool is sized for it. Each slot
    /// reserves address space (not memory) for [`MAX_MEMORY_BYTES`] plus guards.
    pub max_concurrent_runs: u32,
    /// How runaway guests are stopped (default: fuel and epochs).
    pub metering: Metering,
    /// What one component may hold.
    pub shape: PoolShape,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 128,
            metering: Metering::default(),
            shape: PoolShape::default(),
        }
    }
}

/// The mechanisms that stop a guest which computes too long. Both are compiled into the
/// guest's code, so components compiled under one setting do not load under another.
///
/// The default, both, is what the product runs. Turning one off trades a guarantee for
/// speed: without fuel a run's budget is wall-clock only ([`Limits::fuel`] is ignored and
/// usage reports no fuel); without epochs only fuel stops a spinning guest (the
/// deadline still ends runs that wait in host calls). With neither, a guest that never
/// calls the host holds its worker forever: that setting exists to measure the cost of
/// the other two, not to run tenants' code.
///
/// [`Limits::fuel`]: crate::Limits::fuel
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    /// Count fuel and stop at the run's budget.
    pub fuel: bool,
    /// Check the epoch and stop at the run's deadline.
    pub epoch: bool,
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            fuel: true,
            epoch: true,
        }
    }
}

impl Metering {
    /// The flag `fluxo compile-artifact` takes for this setting (`fuel,epoch`, `fuel`,
    /// `epoch` or `none`).
    #[must_use]
    pub fn as_flag(self) -> &'static str {
        match (self.fuel, self.epoch) {
            (true, true) => "fuel,epoch",
            (true, false) => "fuel",
            (false, true) => "epoch",
            (false, false) => "none",
        }
    }

    /// Parses [`Metering::as_flag`]'s form.
    ///
    /// # Errors
    /// [`SandboxError::Config`] for anything else.
    pub fn from_flag(flag: &str) -> Result<Self> {
        let (fuel, epoch) = match flag {
            "fuel,epoch" | "epoch,fuel" => (true, true),
            "fuel" => (true, false),
            "epoch" => (false, true),
            "none" => (false, false),
            other => {
                return Err(SandboxError::Config(format!(
                    "metering {other:?}: expected fuel,epoch, fuel, epoch or none"
                )));
            }
        };
        Ok(Self { fuel, epoch })
    }
}

/// Builds the engine: async, the chosen metering, pooled instances, no backtrace
/// symbolication.
pub(crate) fn build(options: EngineOptions) -> Result<Engine> {
    let mut config = base_config(options.metering);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(options)));
    Engine::new(&config).map_err(|error| SandboxError::Engine(format!("{error:#}")))
}

/// An engine that only compiles: the same code generation settings as [`build`], but
/// no instance pool (it reserves no address space, so it runs under a tight `ulimit -v`).
pub(crate) fn build_compiler(metering: Metering) -> Result<Engine> {
    Engine::new(&base_config(metering)).map_err(|error| SandboxError::Engine(format!("{error:#}")))
}

fn base_config(metering: Metering) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .consume_fuel(metering.fuel)
        .epoch_interruption(metering.epoch)
        // Component-model async is not used: without it calls are 2-4x cheaper.
        .concurrency_support(false)
        // Do not inherit RUST_BACKTRACE: symbolicating the first trap costs ~140 ms.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable);
    config
}

impl EngineOptions {
    /// The instance pool Fluxo's engine uses (public so that the benchmark floor, bare
    /// wasmtime, runs on the same pool and measures only what Fluxo adds).
    #[must_use]
    pub fn pooling_config(&self) -> PoolingAllocationConfig {
        pool(*self)
    }
}

fn pool(options: EngineOptions) -> PoolingAllocationConfig {
    let slots = options.max_concurrent_runs.max(1);
    let shape = options.shape;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(shape.core_instances_per_component))
        .total_memories(slots.saturating_mul(shape.memories_per_component))
        .total_tables(slots.saturating_mul(shape.tables_per_component))
        .total_stacks(slots)
        .max_core_instances_per_component(shape.core_instances_per_component)
        .max_memories_per_component(shape.memories_per_component)
        .max_tables_per_component(shape.tables_per_component)
        .max_memory_size(usize::try_from(MAX_MEMORY_BYTES).unwrap_or(usize::MAX))
        // Reset a freed slot by rewriting only the pages the run dirtied (found with
        // Linux's PAGEMAP_SCAN, 6.7+), up to 1 MiB of them, instead of `madvise`: the
        // next run takes no page faults and no TLB shootdown (a fresh instance of the
        // benchmark action went from 25 to 12 µs). Dirty pages past that are given
        // back with `madvise`. Without PAGEMAP_SCAN wasmtime would `memset` the whole
        // window on every run, so older kernels keep a small one.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(if pagemap_scan_likely() {
            KEEP_RESIDENT_SCANNED
        } else {
            KEEP_RESIDENT_BLIND
        })
        .table_keep_resident(16 << 10);
    pool
}

/// Whether the kernel has `PAGEMAP_SCAN` (Linux 6.7 or later; wasmtime probes the
/// ioctl itself and falls back when it is missing, this only sizes the window).
fn pagemap_scan_likely() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_at_least(&release, (6, 7))
}

/// Whether a kernel release string (`6.18.44-…`) is at least `major.minor`.
fn kernel_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(have_major), Some(have_minor)) => (have_major, have_minor) >= (major, minor),
        _ => false,
    }
}

/// Advances an engine's epoch every [`EPOCH_TICK`] on its own thread until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: Engine) -> Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fluxo-epoch".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|error| {
                SandboxError::Engine(format!("could not start the epoch thread: {error}"))
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v657", (6, 7)));
        assert!(kernel_at_least("6.7.0", (6, 7)));
        assert!(kernel_at_least("7.0", (6, 7)));
        assert!(!kernel_at_least("6.1.0-26-amd64", (6, 7)));
        assert!(!kernel_at_least("5.15.0", (6, 7)));
        assert!(!kernel_at_least("", (6, 7)));
    }

    #[test]
    fn metering_flags_round_trip() {
        for (fuel, epoch) in [(true, true), (true, false), (false, true), (false, false)] {
            let metering = Metering { fuel, epoch };
            assert_eq!(Metering::from_flag(metering.as_flag()).unwrap(), metering);
        }
        assert!(Metering::from_flag("fast").is_err());
    }

    #[test]
    fn the_ticker_advances_and_stops() {
        let engine = build(EngineOptions {
            max_concurrent_runs: 2,
            ..EngineOptions::default()
        })
        .unwrap();
        let ticker = EpochTicker::start(engine).unwrap();
        drop(ticker);
    }
}

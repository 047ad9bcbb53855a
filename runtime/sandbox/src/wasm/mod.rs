//! The wasm side of a run: the `Store` data ([`WasmState`]: the run's [`RunContext`],
//! WASI's context and resource table, the limiter) and the WIT glue — thin adapters
//! that convert the generated types and call the context's capabilities.
//!
//! A limit hit in a capability becomes a trap carrying the [`fluxo_core::LimitHit`],
//! recovered by `execute`; capability errors go back to the guest as WIT values.

mod glue;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::context::{LogBuffer, RunContext, StdSource, StdStream};
use crate::limiter::RunLimiter;

/// The data of one run's `Store`.
pub(crate) struct WasmState {
    pub(crate) ctx: RunContext,
    /// Built on the guest's first WASI call: many guests never make one.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(crate) limiter: RunLimiter,
}

impl WasmState {
    pub(crate) fn new(ctx: RunContext) -> Self {
        let limits = ctx.limits();
        let limiter = RunLimiter::new(limits.max_memory_bytes, limits.max_table_elements);
        Self {
            ctx,
            wasi: None,
            table: ResourceTable::new(),
            limiter,
        }
    }
}

/// WASI for guests: no arguments, environment or preopened directories; sockets deny
/// every TCP and UDP socket and name lookup (`access-denied`: a guest's network is
/// `fluxo:action/http` and its egress policy); stdout and stderr go to the run log.
fn empty_wasi(log: &std::sync::Arc<std::sync::Mutex<LogBuffer>>) -> WasiCtx {
    wasmtime_wasi::WasiCtxBuilder::new()
        .stdout(WasiStd(StdStream::new(StdSource::Stdout, log.clone())))
        .stderr(WasiStd(StdStream::new(StdSource::Stderr, log.clone())))
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

impl WasiView for WasmState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = match &mut self.wasi {
            Some(wasi) => wasi,
            slot @ None => slot.insert(empty_wasi(&self.ctx.log_buffer())),
        };
        WasiCtxView {
            ctx: wasi,
            table: &mut self.table,
        }
    }
}

/// A guest's stdout or stderr as WASI wants it.
#[derive(Debug, Clone)]
struct WasiStd(StdStream);

impl IsTerminal for WasiStd {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for WasiStd {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.0.clone())
    }
}

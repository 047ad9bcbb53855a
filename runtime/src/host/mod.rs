//! Host implementations of the `fluxo:action` interfaces, one module per interface.
//!
//! Each module holds the interface's policy, its backend trait (what the platform plugs
//! in) with a real default, and the host functions. Every host function checks its
//! quota and its policy before doing anything; writes go to the run's journal.

pub mod contact;
pub mod email;
pub mod http;
pub mod log;
pub mod secrets;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Limits;
use crate::event::Contact;
use crate::executor::limits::{LimitHit, Quota, RunLimiter};
use crate::journal::Journal;

/// A boxed future, for backend traits that must be object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of a platform backend (contact store, mailer, state store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// What every run of a runtime shares: the egress client, the stores, the secrets.
pub(crate) struct Services {
    pub(crate) egress: http::Egress,
    pub(crate) state: Arc<dyn state::StateStore>,
    pub(crate) secrets: Arc<dyn secrets::SecretSource>,
}

/// Calls made so far, by quota kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) http_requests: u64,
    pub(crate) http_bytes: u64,
    pub(crate) emails: u64,
    pub(crate) field_writes: u64,
    pub(crate) tag_changes: u64,
    pub(crate) state_writes: u64,
}

/// The data of one run's `Store`: what the host functions see.
pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) tenant: String,
    pub(crate) contact: Contact,
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) limits: Limits,
    pub(crate) deadline: Instant,
    pub(crate) journal: Journal,
    pub(crate) counters: Counters,
    pub(crate) http_log: Vec<http::HttpExchange>,
    pub(crate) log: Arc<Mutex<log::LogBuffer>>,
    pub(crate) limiter: RunLimiter,
    pub(crate) services: Arc<Services>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl RunState {
    pub(crate) fn new(
        run_id: String,
        tenant: String,
        contact: Contact,
        secrets: BTreeMap<String, String>,
        limits: Limits,
        services: Arc<Services>,
    ) -> Self {
        let log = Arc::new(Mutex::new(log::LogBuffer::new(limits.max_log_bytes)));
        // WASI for `std` guests: no arguments, environment, preopened directories or
        // sockets; stdout and stderr go to the run log.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(log::StdStream::stdout(log.clone()))
            .stderr(log::StdStream::stderr(log.clone()))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let deadline = Instant::now() + Duration::from_millis(limits.deadline_ms);
        let limiter = RunLimiter::new(limits.max_memory_bytes, limits.max_table_elements);
        Self {
            run_id,
            tenant,
            contact,
            secrets,
            limits,
            deadline,
            journal: Journal::default(),
            counters: Counters::default(),
            http_log: Vec::new(),
            log,
            limiter,
            services,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Counts one call of `quota`'s kind, or ends the run when the quota is used up.
    pub(crate) fn charge(&mut self, quota: Quota) -> wasmtime::Result<()> {
        let quotas = &self.limits.quotas;
        let (used, limit) = match quota {
            Quota::HttpRequests => (
                &mut self.counters.http_requests,
                u64::from(quotas.http_requests),
            ),
            Quota::Emails => (&mut self.counters.emails, u64::from(quotas.emails)),
            Quota::FieldWrites => (
                &mut self.counters.field_writes,
                u64::from(quotas.field_writes),
            ),
            Quota::TagChanges => (
                &mut self.counters.tag_changes,
                u64::from(quotas.tag_changes),
            ),
            Quota::StateWrites => (
                &mut self.counters.state_writes,
                u64::from(quotas.state_writes),
            ),
        };
        if *used >= limit {
            return Err(wasmtime::Error::new(LimitHit::Quota { quota, limit }));
        }
        *used += 1;
        Ok(())
    }

    /// Time left before the run's deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The timeout for one host call: the configured one, cut to the time left.
    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.host_call_timeout_ms).min(self.remaining())
    }
}

/// Runs a host-side future under a host-call timeout (wasm interruption does not cover
/// time spent in the host); a timeout ends the run.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    call: &'static str,
    future: impl Future<Output = T>,
) -> wasmtime::Result<T> {
    tokio::time::timeout(timeout, future).await.map_err(|_| {
        wasmtime::Error::new(LimitHit::HostCallTimeout {
            call,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    })
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::bindings::fluxo::action::types::Host for RunState {}

/// Checks a name (field, tag, state key, secret): not empty, at most `max` bytes, no
/// control characters.
pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > max {
        return Err(format!("{what} is {} bytes, over {max}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} holds control characters"));
    }
    Ok(())
}

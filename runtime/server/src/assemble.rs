//! Builds a whole server from a data directory: the embedded store, the sandbox with the
//! store's state and secrets, the registry, the scheduler and its workers, the outbox
//! dispatcher, upkeep — and stops them in order.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fluxo_egress::{Egress, SystemResolver};
use fluxo_orchestrator::adapters::{StoreSecrets, StoreState};
use fluxo_orchestrator::dispatch::smtp::SmtpTransport;
use fluxo_orchestrator::dispatch::webhook::WebhookSender;
use fluxo_orchestrator::dispatch::{DispatchOptions, Dispatcher, PlatformWebhooks};
use fluxo_orchestrator::metrics::Metrics;
use fluxo_orchestrator::registry::Compiler;
use fluxo_orchestrator::{
    Registry, RegistryOptions, Scheduler, SchedulerOptions, Vault, maintenance,
};
use fluxo_sandbox::{Capabilities, EngineOptions, Sandbox};
use fluxo_store::Store;
use fluxo_store_postgres::{PostgresOptions, PostgresStore};
use fluxo_store_sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::config::Config;

/// What a server needs to start.
#[derive(Clone)]
pub struct ServerOptions {
    /// Limits, egress policy, e-mail, server settings.
    pub config: Config,
    /// How uploads are compiled.
    pub compiler: Compiler,
    /// The admin's bearer token.
    pub admin_token: String,
    /// Resolves egress names (default: the system's resolver).
    pub resolver: Option<Arc<dyn fluxo_egress::Resolve>>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("config", &self.config)
            .field("compiler", &self.compiler)
            .field("admin_token", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct BuildError {
    /// What failed (`store`, `registry`, …).
    pub what: &'static str,
    /// Why.
    pub reason: String,
}

fn failed(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> BuildError {
    move |reason| BuildError {
        what,
        reason: reason.to_string(),
    }
}

/// A running server: its API state and what stops it.
#[derive(Debug)]
pub struct Server {
    /// The API's state (give it to [`crate::app`] or [`crate::serve`]).
    pub state: AppState,
    stop: CancellationToken,
    grace: Duration,
}

impl Server {
    /// How long running runs (and open requests) get at shutdown.
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Stops the server's background work: workers finish their runs for up to the grace
    /// period, the rest give their leases back; delivery and upkeep stop.
    pub async fn shutdown(&self) {
        self.state.scheduler.shutdown(self.grace).await;
        self.stop.cancel();
    }
}

/// The node name kept in the data directory (made on first start).
fn node_name(data_dir: &Path) -> Result<String, BuildError> {
    let path = data_dir.join("node-id");
    if let Ok(name) = std::fs::read_to_string(&path)
        && !name.trim().is_empty()
    {
        return Ok(name.trim().to_owned());
    }
    let name = format!("node-{}", &fluxo_core::RunId::new().to_string()[24..]);
    std::fs::write(&path, &name).map_err(|e| failed("node id")(&e))?;
    Ok(name)
}

/// Opens the store `config` names — PostgreSQL at `[store] url`, else SQLite at
/// `data_dir/fluxo.db` — migrating its schema to this version (PostgreSQL: under an
/// advisory lock, so nodes starting together migrate once).
///
/// # Errors
/// When the store cannot be reached or opened, a migration fails, or `[store] url` is
/// not a `postgres://` URL.
pub async fn open_store(data_dir: &Path, config: &Config) -> Result<Arc<dyn Store>, BuildError> {
    let settings = &config.server;
    let store: Arc<dyn Store> = match config.store.url.as_deref() {
        None => Arc::new(
            SqliteStore::open(
                &data_dir.join("fluxo.db"),
                SqliteOptions {
                    tenant_state_bytes: settings.tenant_state_bytes,
                    backlog_per_tenant: settings.backlog_per_tenant,
                    page_cache_kib: config.store.page_cache_kib,
                    ..SqliteOptions::default()
                },
            )
            .map_err(|e| failed("store")(&e))?,
        ),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(
                PostgresStore::open(
                    url,
                    PostgresOptions {
                        pool_size: config.store.pool_size,
                        tenant_state_bytes: settings.tenant_state_bytes,
                        backlog_per_tenant: settings.backlog_per_tenant,
                        ..PostgresOptions::default()
                    },
                )
                .await
                .map_err(|e| failed("store")(&e))?,
            )
        }
        Some(_) => {
            return Err(failed("store")(&"store.url must be a postgres:// URL"));
        }
    };
    Ok(store)
}

/// The vault sealing secrets at rest. The key lives beside the database, never in it:
/// `FLUXO_SECRETS_KEY`, else `data_dir/secrets.key` — made on first start for the
/// embedded store; on a shared store every node must already hold the same key.
///
/// # Errors
/// When the key is missing (shared store) or unusable.
pub fn open_vault(data_dir: &Path, config: &Config) -> Result<Vault, BuildError> {
    let vault = if config.store.url.is_some() {
        Vault::open_shared(data_dir)
    } else {
        Vault::open(data_dir)
    };
    vault.map_err(|e| failed("secrets key")(&e))
}

/// Opens `data_dir` (created 0700) and starts a server's background work on the current
/// tokio runtime.
///
/// # Errors
/// When the store, the sandbox or the registry cannot start.
pub async fn build(data_dir: &Path, options: ServerOptions) -> Result<Server, BuildError> {
    let config = options.config;
    config.check().map_err(|e| failed("configuration")(&e))?;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| failed("data directory")(&e))?;
    }
    let settings = &config.server;
    let node = match &settings.node {
        Some(node) => node.clone(),
        None => node_name(data_dir)?,
    };
    let store = open_store(data_dir, &config).await?;
    let vault = Arc::new(open_vault(data_dir, &config)?);
    match vault.seal_stored(store.as_ref()).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(
            count,
            "sealed secrets stored in plain text by an earlier version"
        ),
        Err(error) => return Err(failed("sealing stored secrets")(&error)),
    }
    let resolver: Arc<dyn fluxo_egress::Resolve> = match options.resolver {
        Some(resolver) => resolver,
        None => Arc::new(SystemResolver::new().map_err(|e| failed("dns")(&e))?),
    };
    let sandbox = Arc::new(
        Sandbox::new(EngineOptions {
            max_concurrent_runs: u32::try_from(settings.workers)
                .unwrap_or(u32::MAX)
                .saturating_mul(2)
                .max(16),
            shape: config.engine,
            ..EngineOptions::default()
        })
        .map_err(|e| failed("sandbox")(&e))?,
    );
    let egress = Egress::new(&config.http, resolver.clone()).map_err(|e| failed("egress")(&e))?;
    let capabilities = Arc::new(Capabilities {
        egress: Arc::new(egress),
        state: Arc::new(StoreState(store.clone())),
    });
    let registry = Arc::new(
        Registry::open(
            sandbox,
            store.clone(),
            data_dir,
            options.compiler,
            RegistryOptions {
                max_component_bytes: settings.max_component_bytes,
                tenant_max_component_bytes: settings.tenant_component_caps(),
                max_compiles: settings.max_compiles,
                ..RegistryOptions::default()
            },
        )
        .await
        .map_err(|e| failed("registry")(&e))?,
    );
    let metrics = Arc::new(Metrics::default());
    let scheduler = Scheduler::new(
        store.clone(),
        registry.clone(),
        capabilities,
        Arc::new(StoreSecrets {
            store: store.clone(),
            vault: vault.clone(),
        }),
        config.limits.clone(),
        SchedulerOptions {
            node: node.clone(),
            workers: settings.workers,
            per_tenant: settings.per_tenant,
            lease: Duration::from_millis(settings.lease_ms),
            contact_owners: settings.contact_ownership(),
            ..SchedulerOptions::default()
        },
        metrics.clone(),
    );
    scheduler.start();
    let stop = CancellationToken::new();
    let email = match &config.email {
        Some(smtp) => Some(SmtpTransport::new(smtp).map_err(|e| failed("email")(&e))?),
        None => None,
    };
    let webhooks = Arc::new(
        WebhookSender::new(
            &config.http,
            settings.webhook_private_cidrs.clone(),
            resolver,
            store.clone(),
            vault.clone(),
        )
        .map_err(|e| failed("webhooks")(&e))?,
    );
    let platform = Arc::new(PlatformWebhooks::new(webhooks.clone(), store.clone()));
    Dispatcher::new(
        store.clone(),
        email,
        Some(webhooks),
        DispatchOptions {
            node,
            lease: Duration::from_millis(settings.outbox_lease_ms),
            ..DispatchOptions::default()
        },
        metrics.clone(),
    )
    .with_conversation(platform.clone())
    .with_contact_sync(platform)
    .spawn(stop.clone());
    maintenance::spawn(
        store,
        metrics.clone(),
        settings.retention(),
        Duration::from_secs(60),
        stop.clone(),
    );
    Ok(Server {
        state: AppState::new(registry, scheduler, metrics, &options.admin_token, vault),
        stop,
        grace: Duration::from_secs(settings.shutdown_grace_seconds),
    })
}

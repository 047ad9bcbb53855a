//! Assembles a whole server from a data directory: store, runtime with durable backends,
//! registry, scheduler, delivery loop.

use std::path::Path;
use std::sync::Arc;

use super::AppState;
use crate::delivery::{Delivery, DeliveryPolicy, SmtpTransport};
use crate::metrics::Metrics;
use crate::registry::{Compiler, Registry};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::SqliteStore;
use crate::store::catalog::SqliteCatalog;
use crate::store::contacts::SqliteContacts;
use crate::store::outbox::SqliteOutbox;
use crate::store::runs::SqliteRuns;
use crate::store::state::{DEFAULT_TENANT_STATE_BYTES, SqliteState};
use crate::{Config, Runtime};

/// What a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Limits, egress policy, e-mail.
    pub config: Config,
    /// How uploads are compiled.
    pub compiler: Compiler,
    /// Worker and queue sizes.
    pub scheduler: SchedulerConfig,
    /// The admin's bearer token.
    pub admin_token: String,
}

/// Opens `data_dir` and builds the server's state; spawns the e-mail delivery loop when
/// `[email]` is configured. Must run inside a tokio runtime.
///
/// # Errors
/// When the store, the runtime or the registry cannot start.
pub fn build(data_dir: &Path, options: ServerOptions) -> Result<AppState, crate::Error> {
    let fail = |what: &str, error: &dyn std::fmt::Display| {
        crate::Error::Config(format!("{what}: {error}"))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| fail("data directory", &e))?;
    let store = SqliteStore::open(&data_dir.join("fluxo.db")).map_err(|e| fail("store", &e))?;
    let catalog = Arc::new(SqliteCatalog::new(store.clone()));
    let outbox = SqliteOutbox::new(store.clone());
    if let Some(smtp) = &options.config.email {
        let transport = SmtpTransport::new(smtp)?;
        Delivery::new(
            outbox.clone(),
            Arc::new(transport),
            DeliveryPolicy::default(),
        )
        .spawn();
    }
    let runtime = Arc::new(
        Runtime::builder()
            .max_component_bytes(options.config.server.max_component_bytes)
            .config(options.config)
            .state(Arc::new(SqliteState::new(
                store.clone(),
                DEFAULT_TENANT_STATE_BYTES,
            )))
            .mailer(Arc::new(outbox))
            .contacts(Arc::new(SqliteContacts::new(store.clone())))
            .secrets(catalog.clone())
            .build()?,
    );
    let registry = Arc::new(
        Registry::open(runtime.clone(), catalog, data_dir, options.compiler)
            .map_err(|e| fail("registry", &e))?,
    );
    let store_for_contacts = store.clone();
    let runs = Arc::new(SqliteRuns::new(store));
    let metrics = Arc::new(Metrics::default());
    let scheduler = Arc::new(Scheduler::start(
        runtime.clone(),
        registry.clone(),
        runs.clone(),
        metrics.clone(),
        options.scheduler,
    ));
    Ok(AppState::new(
        runtime,
        registry,
        scheduler,
        runs,
        SqliteContacts::new(store_for_contacts),
        metrics,
        &options.admin_token,
    ))
}

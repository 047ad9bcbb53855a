//! Fluxo's REST API (`/v1`, JSON, bearer tokens) as an axum router that tests drive
//! without a socket, [`serve`] that binds it with graceful shutdown, and [`assemble`],
//! which builds a whole server from a data directory.

pub mod assemble;
pub mod auth;
pub mod config;
pub mod error;
mod handlers;
mod json;
mod params;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use fluxo_orchestrator::metrics::Metrics;
use fluxo_orchestrator::{Registry, Scheduler};
use fluxo_store::Store;
use tower_http::catch_panic::CatchPanicLayer;

pub use self::assemble::{Server, ServerOptions, build};
pub use self::config::{Config, ConfigError, ServerSettings};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tokens: Arc<auth::TokenCache>,
    pub(crate) admin_token_hash: String,
    pub(crate) vault: Arc<fluxo_orchestrator::Vault>,
    pub(crate) workflows: Arc<fluxo_workflow::Interpreter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The first step of a shutdown: this node claims no more runs (requests are still
    /// answered while they drain).
    pub fn stop_claiming(&self) {
        self.scheduler.stop_claiming();
    }

    /// The shared state of a server; `admin_token` is the admin's bearer token, `vault`
    /// seals the secrets it stores.
    #[must_use]
    pub fn new(
        registry: Arc<Registry>,
        scheduler: Arc<Scheduler>,
        metrics: Arc<Metrics>,
        admin_token: &str,
        vault: Arc<fluxo_orchestrator::Vault>,
    ) -> Self {
        let workflows = Arc::new(fluxo_workflow::Interpreter::new().with_actions(Arc::new(
            fluxo_orchestrator::workflow_run::RegistryActions::new(registry.clone()),
        )));
        Self {
            store: registry.store().clone(),
            registry,
            scheduler,
            metrics,
            tokens: Arc::new(auth::TokenCache::default()),
            admin_token_hash: auth::hash_token(admin_token),
            vault,
            workflows,
        }
    }
}

/// The largest request body of every route but component uploads (whose cap is
/// `[server] max_component_bytes`), in bytes: 10 MiB and 64 KiB, what every route took
/// before the component cap grew to 32 MiB for Python actions.
pub const MAX_JSON_BODY_BYTES: usize = (10 << 20) + (64 << 10);

/// The API as a service: routes, body limits, panics turned into 500s.
pub fn app(state: AppState) -> Router {
    routes::router()
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(CatchPanicLayer::custom(error::panicked))
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting and
/// finishes the requests in flight.
///
/// # Errors
/// When serving fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

//! The REST API (`/v1`, JSON, bearer tokens) as an axum router that tests drive without
//! a socket, and [`serve`] that binds it.

pub mod auth;
pub mod error;
mod handlers;
pub mod host;
mod json;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;

use crate::Runtime;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::store::contacts::SqliteContacts;
use crate::store::port::{CatalogStore, RunStore};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) catalog: Arc<dyn CatalogStore>,
    pub(crate) runs: Arc<dyn RunStore>,
    pub(crate) contacts: SqliteContacts,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admin_token_hash: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The shared state of a server; `admin_token` is the admin's bearer token.
    #[must_use]
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        scheduler: Arc<Scheduler>,
        runs: Arc<dyn RunStore>,
        contacts: SqliteContacts,
        metrics: Arc<Metrics>,
        admin_token: &str,
    ) -> Self {
        Self {
            catalog: registry.catalog().clone(),
            runtime,
            registry,
            scheduler,
            runs,
            contacts,
            metrics,
            admin_token_hash: auth::hash_token(admin_token),
        }
    }
}

/// The API as a service: routes, body limit, panics turned into 500s.
pub fn app(state: AppState) -> Router {
    let body_limit = state.runtime.max_component_bytes().saturating_add(64 << 10);
    routes::router()
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::new())
}

/// Serves the API on `listener` until the future is dropped.
///
/// # Errors
/// When serving fails.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

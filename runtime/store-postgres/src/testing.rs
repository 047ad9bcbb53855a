//! For tests: a fresh database on the PostgreSQL server named by
//! `FLUXO_TEST_POSTGRES_URL` (`scripts/with-postgres` starts a throwaway one from the
//! Debian package and sets it; `scripts/test` runs every test under it).
//!
//! Test support only (feature `testing`): a missing or unreachable server fails the
//! test loudly rather than skipping it.
#![allow(
    clippy::panic,
    reason = "test support: a missing server must fail the test"
)]

/// The environment variable naming the test server.
pub const URL_ENV: &str = "FLUXO_TEST_POSTGRES_URL";

/// The test server's URL.
///
/// # Panics
/// When `FLUXO_TEST_POSTGRES_URL` is not set: these tests need a real server, and a
/// missing one must fail them, not skip them.
#[must_use]
pub fn server_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{URL_ENV} is not set: run the tests under scripts/with-postgres (scripts/test does)"
        )
    })
}

/// Creates an empty database on the test server and returns its URL.
///
/// # Panics
/// When the server cannot be reached or the database created.
pub async fn fresh_database() -> String {
    let server = server_url();
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {server}: {error}"));
    let task = tokio::spawn(connection);
    let name = format!(
        "fluxo_test_{}",
        fluxo_core::RunId::new().to_string().replace('-', "")
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
    drop(client);
    let _ = task.await;
    // `postgres://user@host:port/db?query` with the database replaced.
    let (base, query) = server.split_once('?').unwrap_or((&server, ""));
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    if query.is_empty() {
        format!("{root}/{name}")
    } else {
        format!("{root}/{name}?{query}")
    }
}

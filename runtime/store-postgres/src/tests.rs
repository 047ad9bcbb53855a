//! The store conformance suite against a real PostgreSQL server, one fresh database per
//! property.

use std::sync::Arc;

use crate::testing::fresh_database;
use crate::{PostgresOptions, PostgresStore};

async fn store() -> Arc<dyn fluxo_store::Store> {
    let url = fresh_database().await;
    Arc::new(
        PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap(),
    )
}

fluxo_store::conformance_tests!(store().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_cap() {
    let url = fresh_database().await;
    let store: Arc<dyn fluxo_store::Store> = Arc::new(
        PostgresStore::open(
            &url,
            PostgresOptions {
                backlog_per_tenant: 2,
                ..PostgresOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    fluxo_store::conformance::backlog_cap(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_nodes_start_together_and_a_newer_schema_is_refused() {
    let url = fresh_database().await;
    let opened = futures_join(&url).await;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let store = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    store.schema_ready().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let applied: i64 = client
        .query_one("SELECT count(*) FROM fluxo_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, i64::try_from(crate::MIGRATIONS.len()).unwrap());
    client
        .execute(
            "INSERT INTO fluxo_migrations (version, name, applied_ms) VALUES (99, 'future', 0)",
            &[],
        )
        .await
        .unwrap();
    let refused = PostgresStore::open(&url, PostgresOptions::default()).await;
    assert!(refused.unwrap_err().to_string().contains("newer"));
}

/// Three nodes opening one database at once.
async fn futures_join(url: &str) -> Vec<Result<PostgresStore, fluxo_store::StoreError>> {
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { PostgresStore::open(&url, PostgresOptions::default()).await })
        })
        .collect();
    let mut opened = Vec::new();
    for task in tasks {
        opened.push(task.await.unwrap());
    }
    opened
}

/// Work queued through one node's store wakes another node's registered hint (through
/// `LISTEN/NOTIFY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queued_on_one_node_wakes_another() {
    use fluxo_store::{Catalog as _, RunQueue as _};
    let url = fresh_database().await;
    let listener = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    let sender = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    let woken = Arc::new(tokio::sync::Notify::new());
    let wake = woken.clone();
    listener.on_work(Arc::new(move || wake.notify_one()));
    let tenant = fluxo_core::TenantId::parse("acme").unwrap();
    sender.create_tenant(&tenant).await.unwrap();
    // The listener's LISTEN is issued in the background: retry until it is in place.
    let mut heard = false;
    for _ in 0..20 {
        sender
            .enqueue(fluxo_store::conformance::new_run("acme"))
            .await
            .unwrap();
        if tokio::time::timeout(std::time::Duration::from_millis(500), woken.notified())
            .await
            .is_ok()
        {
            heard = true;
            break;
        }
    }
    assert!(heard, "no hint reached the other node");
}

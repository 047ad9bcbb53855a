//! The conformance suite on SQLite, the migration path from the old layout, and the
//! crash test of the ledger (a process killed mid-commit applies nothing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::sync::Arc;

use fluxo_store::Store;

use super::*;

/// A fresh store in a directory kept alive for the test's duration (leaked: the
/// process's temporary files go with it).
fn fresh(options: SqliteOptions) -> Arc<dyn Store> {
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(SqliteStore::open(&dir.join("fluxo.db"), options).unwrap())
}

mod conformance {
    use super::*;

    fluxo_store::conformance_tests!(fresh(SqliteOptions::default()));

    #[tokio::test]
    async fn backlog_cap() {
        let store = fresh(SqliteOptions {
            backlog_per_tenant: 2,
            ..SqliteOptions::default()
        });
        fluxo_store::conformance::backlog_cap(store).await;
    }
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxo.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let connection = Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the database is private");
}

#[test]
fn a_store_of_the_old_layout_migrates_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxo.db");
    {
        let connection = Connection::open(&path).unwrap();
        for (_, migration) in MIGRATIONS.iter().take(4) {
            connection.execute_batch(migration).unwrap();
        }
        connection
            .execute_batch(
                "PRAGMA user_version = 4;
                 INSERT INTO tenants VALUES ('acme', 1);
                 INSERT INTO state VALUES ('acme', '', 'shared', x'31', NULL);
                 INSERT INTO state VALUES ('acme', 'c1', 'visits', x'3233', NULL);
                 INSERT INTO contacts VALUES ('acme', 'c1', '{\"id\":\"c1\",\"fields\":{},\"tags\":[\"vip\"]}', 1);
                 INSERT INTO contacts VALUES ('acme', '', '{\"id\":\"\",\"fields\":{},\"tags\":[]}', 1);
                 INSERT INTO outbox (tenant, message_id, payload, status, next_attempt_ms, created_ms, updated_ms)
                   VALUES ('acme', '<run-1.1@fluxo>', '{\"message_id\":\"<run-1.1@fluxo>\",\"to\":[\"a@b.test\"],\"cc\":[],\"subject\":\"s\",\"text\":\"t\",\"html\":null,\"reply_to\":null}', 'queued', 0, 0, 0);
                 INSERT INTO runs VALUES ('run-1', 'acme', 'act', 1, 'queued', '{}', NULL, NULL, 1, NULL, NULL);",
            )
            .unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let c1 = ContactId::parse("c1").unwrap();
        let tenant_key = StateKey::of(&acme, None, StateScope::Tenant, "shared").unwrap();
        let contact_key = StateKey::of(&acme, Some(&c1), StateScope::Contact, "visits").unwrap();
        assert_eq!(store.state(&tenant_key).await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.state(&contact_key).await.unwrap(), Some(b"23".to_vec()));
        assert_eq!(store.state_usage(&tenant_key).await.unwrap().bytes, 6 + 1 + 6 + 2);
        assert_eq!(store.contact(&acme, &c1).await.unwrap().unwrap().tags, ["vip"]);
        let outbox = store.outbox().await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert!(matches!(&outbox[0].payload, fluxo_store::OutboxPayload::Email(email) if email.message_id == "<run-1.1@fluxo>"));
        let kept: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM legacy_runs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kept, 1, "old run records are kept, as they were");
    });
}

#[test]
fn a_workflow_marked_in_its_imports_migrates_to_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxo.db");
    {
        let connection = Connection::open(&path).unwrap();
        for (_, migration) in MIGRATIONS.iter().take(6) {
            connection.execute_batch(migration).unwrap();
        }
        connection
            .execute_batch(
                "PRAGMA user_version = 6;
                 INSERT INTO tenants VALUES ('acme', 1);
                 INSERT INTO actions (tenant, name, description, enabled, active_version, created_ms)
                   VALUES ('acme', 'flow', '', 1, 1, 1), ('acme', 'comp', '', 1, 1, 1);
                 INSERT INTO versions VALUES
                   ('acme', 'flow', 1, 'h1', 10, '[\"fluxo:workflow\",\"fluxo:action/http\"]', 1),
                   ('acme', 'comp', 1, 'h2', 10, '[\"fluxo:action/http\"]', 1);
                 INSERT INTO outbox (tenant, dedup_key, kind, payload, status, next_attempt_ms, created_ms, updated_ms)
                   VALUES ('acme', 'k', 'email', '{}', 'queued', 0, 0, 0);",
            )
            .unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let flow = store
            .version(&acme, &"flow".parse().unwrap(), 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(flow.kind, fluxo_store::VersionKind::Workflow);
        assert_eq!(flow.imports, ["fluxo:action/http"], "the marker left");
        let comp = store
            .version(&acme, &"comp".parse().unwrap(), 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(comp.kind, fluxo_store::VersionKind::Component);
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the rebuilt outbox keeps its rows");
    });
}

use fluxo_core::{ContactId, StateKey, StateScope, TenantId};
use fluxo_store::{Catalog as _, Contacts as _, Outbox as _, RunQueue as _, StateStore as _};

/// Run as a child process by the next test: commits a run's effects with the failpoint
/// set, which aborts the process after the contact changes and before the run's row.
#[test]
fn child_commits_into_the_failpoint() {
    let Some(path) = std::env::var_os("FLUXO_FAILPOINT_DB") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(
                std::path::Path::new(&path),
                SqliteOptions {
                    failpoint: Some(Failpoint::AbortAfterContacts),
                    ..SqliteOptions::default()
                },
            )
            .unwrap(),
        );
        let claimed = store
            .claim(&fluxo_store::ClaimRequest {
                node: "child".into(),
                max: 1,
                lease_ms: 60_000,
                per_tenant: 10,
            })
            .await
            .unwrap()
            .remove(0);
        let commit = fluxo_store::Commit {
            lease: claimed.lease,
            node: "child".into(),
            tenant: claimed.tenant.clone(),
            contact: claimed.event.contact.id.clone(),
            effects: vec![fluxo_core::Effect::AddTag { tag: "vip".into() }],
            report: fluxo_core::RunReport::not_started(
                claimed.lease.run,
                1,
                fluxo_core::RunError::new(fluxo_core::ErrorKind::Trap, "x"),
            ),
            decision: fluxo_store::Decision::Succeeded,
            cost: fluxo_store::Cost::default(),
            spawned: Vec::new(),
            contact_owner: fluxo_store::ContactOwner::Embedded,
        };
        let _ = store.commit(commit).await;
        unreachable!("the failpoint aborts the process");
    });
}

/// A crash between applying the contact changes and writing the run's row (the process
/// aborts there) leaves neither: SQLite rolls the open transaction back.
#[test]
fn a_crash_mid_commit_leaves_neither_contacts_nor_the_run_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxo.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let new = fluxo_store::conformance::new_run("acme");
        store.create_tenant(&new.tenant).await.unwrap();
        store.enqueue(new).await.unwrap().id
    });
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::child_commits_into_the_failpoint",
            "--test-threads=1",
        ])
        .env("FLUXO_FAILPOINT_DB", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborted at the failpoint");
    runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let c1 = ContactId::parse("c1").unwrap();
        assert!(
            store.contact(&acme, &c1).await.unwrap().is_none(),
            "no contact change"
        );
        let record = store.run(&acme, run).await.unwrap().unwrap();
        assert_eq!(
            record.state,
            fluxo_store::RunPhase::Running,
            "the claim committed; the commit did not"
        );
        assert!(record.report.is_none());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_numbers_are_never_reused_after_pruning_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxo.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let tenant = fluxo_core::TenantId::parse("acme").unwrap();
    let contact = fluxo_core::ContactId::parse("c1").unwrap();
    store.create_tenant(&tenant).await.unwrap();
    let said = |text: &str| fluxo_core::Message {
        text: text.to_owned(),
        channel: None,
    };
    for text in ["a", "b"] {
        store
            .deliver_reply(&tenant, &contact, &said(text))
            .await
            .unwrap();
    }
    // Pruning emptied the inbox; a run still remembers it was given message 2.
    let raw = Connection::open(&path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    raw.execute("DELETE FROM inbox", []).unwrap();
    store
        .deliver_reply(&tenant, &contact, &said("c"))
        .await
        .unwrap();
    let seq: i64 = raw
        .query_row("SELECT seq FROM inbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(seq, 3, "a number once given is never given again");
}

/// Every connection has `page_cache_kib` as its `cache_size`; a reader is read-only and
/// waits for a busy writer rather than failing at once.
#[tokio::test]
async fn every_connection_caps_its_page_cache_and_readers_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("fluxo.db"),
        SqliteOptions {
            page_cache_kib: 300,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let written: i64 = store
        .write(|connection| {
            connection
                .pragma_query_value(None, "cache_size", |row| row.get(0))
                .map_err(sql)
        })
        .await
        .unwrap();
    assert_eq!(written, -300);
    // Two reads held at once are two pool connections: both must carry the pragmas the
    // pool's post-create hook sets (a hook that set only the first would fail here).
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};
    let arrived = Arc::new(AtomicUsize::new(0));
    let probe = |arrived: Arc<AtomicUsize>| {
        store.read(move |connection| {
            arrived.fetch_add(1, SeqCst);
            let until = Instant::now() + Duration::from_secs(10);
            while arrived.load(SeqCst) < 2 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            let together = arrived.load(SeqCst) >= 2;
            let cache: i64 = connection
                .pragma_query_value(None, "cache_size", |row| row.get(0))
                .map_err(sql)?;
            let query_only: bool = connection
                .pragma_query_value(None, "query_only", |row| row.get(0))
                .map_err(sql)?;
            let busy: i64 = connection
                .pragma_query_value(None, "busy_timeout", |row| row.get(0))
                .map_err(sql)?;
            Ok((together, cache, query_only, busy))
        })
    };
    let (first, second) = tokio::join!(probe(arrived.clone()), probe(arrived));
    for reader in [first.unwrap(), second.unwrap()] {
        assert_eq!(reader, (true, -300, true, 5_000));
    }
}

/// Listing one state walks `runs_by_state` (state, tenant, seq) in both orders, not the
/// tenant's whole history (a `?3 IS NULL OR state = ?3` test had every row read).
#[tokio::test]
async fn a_listing_by_state_walks_the_state_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("fluxo.db"), SqliteOptions::default()).unwrap();
    for after_cursor in [false, true] {
        let plan: Vec<String> = store
            .read(move |connection| {
                let mut statement = connection
                    .prepare(&format!(
                        "EXPLAIN QUERY PLAN {}",
                        crate::queue::list_statement(true, after_cursor)
                    ))
                    .map_err(sql)?;
                let cursor = after_cursor.then_some(1_i64);
                let rows = statement
                    .query_map(
                        rusqlite::params!["acme", None::<String>, "queued", 10_i64, cursor],
                        |row| row.get(3),
                    )
                    .map_err(sql)?;
                rows.collect::<Result<_, _>>().map_err(sql)
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("runs_by_state")),
            "after a cursor: {after_cursor}; plan {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "the index gives the order, no sort: {plan:?}"
        );
    }
}

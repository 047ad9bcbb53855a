//! Uploads and artifacts: a refused upload leaves nothing on disk or in the store;
//! identical uploads at once share one compile and all succeed; a damaged artifact is
//! recompiled, never deserialized; deleting an action frees its files and its loaded
//! code.

use std::path::Path;
use std::sync::Arc;

use fluxo_orchestrator::registry::{CompileLimits, Compiler};
use fluxo_orchestrator::{Registry, RegistryError, RegistryOptions};
use fluxo_sandbox::{EngineOptions, Sandbox};
use fluxo_store::Store;
use fluxo_store_sqlite::{SqliteOptions, SqliteStore};
use fluxo_tests::{fluxo_bin, guests};

use crate::support::guest;

/// A registry over `dir` as the server builds it (the compiler is the real child
/// process).
async fn registry(dir: &Path, compile_timeout_ms: u64) -> (Arc<Registry>, Arc<dyn Store>) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("fluxo.db"), SqliteOptions::default()).unwrap());
    let sandbox = Arc::new(Sandbox::new(EngineOptions::default()).unwrap());
    let registry = Registry::open(
        sandbox,
        store.clone(),
        dir,
        Compiler::Subprocess {
            program: fluxo_bin().unwrap(),
            limits: CompileLimits {
                timeout: std::time::Duration::from_millis(compile_timeout_ms),
                ..CompileLimits::default()
            },
        },
        RegistryOptions::default(),
    )
    .await
    .unwrap();
    store.create_tenant(&"acme".parse().unwrap()).await.unwrap();
    (Arc::new(registry), store)
}

/// Files under `dir/artifacts`.
fn artifact_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("artifacts"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Component blobs in the store.
fn blobs(dir: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("fluxo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT count(*) FROM components", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_uploads_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _store) = registry(dir.path(), 1_500).await;
    let tenant = "acme".parse().unwrap();
    let bomb = crate::server::compile_bomb();
    let no_run = wat::parse_str("(component)").unwrap();
    let huge_memory =
        wat::parse_str("(component (core module (memory 70000)) (core instance (instantiate 0)))")
            .unwrap();
    let nested = wat::parse_str(
        "(component (component (core module (memory 1)) (core instance (instantiate 0))))",
    )
    .unwrap();
    let mut trailing = guest(guests::SECOND_COPY);
    trailing.extend_from_slice(b"garbage after the component");
    for (what, bytes) in [
        ("a compile bomb", bomb),
        ("a component without run", no_run),
        ("a memory over the limit", huge_memory),
        ("a nested component", nested),
        ("garbage after a component", trailing),
        ("not wasm", b"\0asm but not really".to_vec()),
    ] {
        let refused = registry.upload(&tenant, "x", None, bytes).await;
        assert!(refused.is_err(), "{what} was accepted");
        let error = refused.unwrap_err().to_string();
        assert!(
            error.len() < 400 && !error.contains("panicked") && !error.contains("backtrace"),
            "{what}: a short reason, not the compiler's internals: {error}"
        );
        assert_eq!(
            artifact_files(dir.path()),
            Vec::<String>::new(),
            "{what} left files"
        );
        assert_eq!(blobs(dir.path()), 0, "{what} left a blob");
    }
    assert!(registry.artifact_files().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_uploads_at_once_share_one_compile_and_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _store) = registry(dir.path(), 60_000).await;
    let bytes = guest(guests::SECOND_COPY);
    let uploads: Vec<_> = (0..3)
        .map(|n| {
            let (registry, bytes) = (registry.clone(), bytes.clone());
            tokio::spawn(async move {
                registry
                    .upload(&"acme".parse().unwrap(), &format!("copy-{n}"), None, bytes)
                    .await
            })
        })
        .collect();
    for upload in uploads {
        upload.await.unwrap().unwrap();
    }
    let files = artifact_files(dir.path());
    assert_eq!(files.len(), 2, "one artifact and its checksum: {files:?}");
    assert!(files.iter().any(|name| name.ends_with(".sha256")));
    assert_eq!(blobs(dir.path()), 1);
}

/// Damages the one artifact in `dir` with `damage`.
fn damage_artifact(dir: &Path, damage: impl Fn(&mut Vec<u8>)) {
    let name = artifact_files(dir)
        .into_iter()
        .find(|name| !name.ends_with(".sha256"))
        .unwrap();
    let path = dir.join("artifacts").join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_artifact_is_recompiled_never_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = "acme".parse().unwrap();
    let name = "second-copy".parse().unwrap();
    {
        let (registry, _) = registry(dir.path(), 60_000).await;
        registry
            .upload(&tenant, "second-copy", None, guest(guests::SECOND_COPY))
            .await
            .unwrap();
    }
    let good = {
        let artifact = artifact_files(dir.path())
            .into_iter()
            .find(|name| !name.ends_with(".sha256"))
            .unwrap();
        std::fs::read(dir.path().join("artifacts").join(artifact)).unwrap()
    };
    let truncate = |bytes: &mut Vec<u8>| bytes.truncate(bytes.len() / 2);
    let flip = |bytes: &mut Vec<u8>| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
    };
    for damage in [&truncate as &dyn Fn(&mut Vec<u8>), &flip] {
        damage_artifact(dir.path(), damage);
        // A restarted host (nothing loaded in memory) finds the damage by the checksum
        // and compiles again from the stored component.
        let (registry, _) = registry(dir.path(), 60_000).await;
        registry.resolve(&tenant, &name, None).await.unwrap();
        let artifact = artifact_files(dir.path())
            .into_iter()
            .find(|name| !name.ends_with(".sha256"))
            .unwrap();
        let now = std::fs::read(dir.path().join("artifacts").join(artifact)).unwrap();
        assert_eq!(now.len(), good.len(), "recompiled whole");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_action_frees_its_files_blob_and_loaded_code() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = registry(dir.path(), 60_000).await;
    let tenant = "acme".parse().unwrap();
    registry
        .upload(&tenant, "second-copy", None, guest(guests::SECOND_COPY))
        .await
        .unwrap();
    registry
        .resolve(&tenant, &"second-copy".parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(registry.loaded_count(), 1);
    assert!(matches!(
        registry.delete(&tenant, "second-copy", "second").await,
        Err(RegistryError::ConfirmationMismatch { .. })
    ));
    registry
        .delete(&tenant, "second-copy", "second-copy")
        .await
        .unwrap();
    assert_eq!(registry.loaded_count(), 0);
    assert!(artifact_files(dir.path()).is_empty());
    assert_eq!(blobs(dir.path()), 0);
}

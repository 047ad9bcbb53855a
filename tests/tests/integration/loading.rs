//! Loading: what is refused, and why.

use fluxo_sandbox::{LoadError as Error, RunOptions, Runtime};
use fluxo_tests::guests;

use serde_json::json;

use crate::support::{event, guest};

fn runtime() -> Runtime {
    Runtime::builder().build().unwrap()
}

#[test]
fn an_import_outside_the_world_is_refused_by_name() {
    let component = wat::parse_str(
        r#"(component
            (import "evil:net/raw@1.0.0" (instance (export "open" (func))))
            (import "fluxo:action/log@0.1.0" (instance))
        )"#,
    )
    .unwrap();
    match runtime().load(&component) {
        Err(Error::ForbiddenImport { import, others }) => {
            assert_eq!(import, "evil:net/raw@1.0.0");
            assert!(others.is_empty());
        }
        other => panic!("expected a forbidden import, got {other:?}"),
    }
}

#[tokio::test]
async fn a_std_guest_reaching_for_sockets_loads_and_every_connection_is_denied() {
    let runtime = runtime();
    let action = runtime.load(&guest(guests::NET_SNEAKER)).unwrap();
    assert!(
        action
            .imports()
            .iter()
            .any(|import| import.starts_with("wasi:sockets/tcp")),
        "{:?}",
        action.imports()
    );
    let report = runtime
        .run(
            &action,
            &event("net-sneaker", json!({}), json!({})),
            RunOptions::new(),
        )
        .await;
    assert_eq!(
        report.error, None,
        "a denied socket is an error the guest sees"
    );
    assert_eq!(
        report.outcome.unwrap().output["connected"],
        false,
        "no TCP connection leaves the sandbox"
    );
}

#[test]
fn a_core_module_is_refused_with_a_hint() {
    let module = wat::parse_str("(module)").unwrap();
    let error = runtime().load(&module).unwrap_err();
    assert!(
        matches!(&error, Error::Invalid(reason) if reason.contains("core wasm module")),
        "{error}"
    );
}

#[test]
fn garbage_is_refused() {
    let error = runtime().load(b"\0asm but not really").unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    let error = runtime().load(b"").unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    let mut truncated = guest(guests::SECOND_COPY);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(runtime().load(&truncated), Err(Error::Invalid(_))));
}

#[test]
fn a_component_without_run_is_refused() {
    let component = wat::parse_str("(component)").unwrap();
    let error = runtime().load(&component).unwrap_err();
    assert!(
        matches!(&error, Error::Invalid(reason) if reason.contains("run")),
        "{error}"
    );
}

#[test]
fn an_oversized_component_is_refused_before_compiling() {
    let runtime = Runtime::builder()
        .max_component_bytes(64 << 10)
        .build()
        .unwrap();
    let error = runtime.load(&guest(guests::CRM_LEAD)).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit, .. } if limit == 64 << 10),
        "{error}"
    );
}

#[test]
fn imports_list_what_the_action_may_do() {
    let action = runtime().load(&guest(guests::CRM_LEAD)).unwrap();
    assert!(
        action
            .imports()
            .iter()
            .any(|i| i == "fluxo:action/http@0.2.0"),
        "{:?}",
        action.imports()
    );
    assert!(
        action
            .imports()
            .iter()
            .all(|i| i.starts_with("fluxo:action/") || i.starts_with("wasi:"))
    );
}

#[tokio::test]
async fn uploads_compile_for_the_host_s_metering() {
    use std::sync::Arc;

    use fluxo_orchestrator::registry::{CompileLimits, Compiler};
    use fluxo_orchestrator::{Registry, RegistryOptions};
    use fluxo_sandbox::{EngineOptions, Metering, RunStatus};
    use fluxo_store::Store;
    use fluxo_store_sqlite::{SqliteOptions, SqliteStore};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("fluxo.db"), SqliteOptions::default()).unwrap(),
    );
    let acme = "acme".parse().unwrap();
    store.create_tenant(&acme).await.unwrap();
    // Epoch-only code: an artifact compiled with the default (fuel too) would not load.
    let runtime = Arc::new(
        Runtime::builder()
            .engine_options(EngineOptions {
                max_concurrent_runs: 4,
                metering: Metering {
                    fuel: false,
                    epoch: true,
                },
                ..EngineOptions::default()
            })
            .build()
            .unwrap(),
    );
    let registry = Registry::open(
        runtime.sandbox().clone(),
        store,
        dir.path(),
        Compiler::Subprocess {
            program: fluxo_tests::fluxo_bin().unwrap_or_else(|problem| panic!("{problem}")),
            limits: CompileLimits::default(),
        },
        RegistryOptions::default(),
    )
    .await
    .unwrap();
    registry
        .upload(&acme, "triage", None, guest(guests::BENCH_TRIAGE))
        .await
        .unwrap();
    let (_, _, action) = registry
        .resolve(&acme, &"triage".parse().unwrap(), None)
        .await
        .unwrap();
    let input: serde_json::Value = serde_json::from_str(&fluxo_triage::sample_event()).unwrap();
    let report = runtime
        .execute(
            &action,
            &event("triage", json!({}), input),
            &RunOptions::new(),
        )
        .await
        .into_report(false);
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert_eq!(report.usage.fuel, 0);
}

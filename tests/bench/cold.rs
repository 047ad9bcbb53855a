//! Cold paths for a ~1 MB component: upload → first run (validate, compile in the
//! `fluxo compile-artifact` child, store, load, run) and restart → first run (open the
//! store, build the runtime and registry as the server does, load the stored artifact,
//! run).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxo_orchestrator::registry::{CompileLimits, Compiler};
use fluxo_orchestrator::{Registry, RegistryOptions};
use fluxo_sandbox::{RunStatus, Runtime};
use fluxo_store::Store;
use fluxo_store_sqlite::{SqliteOptions, SqliteStore};

use super::contenders::fluxo::Fluxo;

/// Timings of the cold paths.
#[derive(Debug, Clone, Default)]
pub struct Cold {
    /// Upload → first run, one per repetition.
    pub upload_first_run: Vec<Duration>,
    /// Restart → first run, one per repetition.
    pub restart_first_run: Vec<Duration>,
}

/// One host "process": store, runtime and registry over `data_dir`.
struct Host {
    runtime: Arc<Runtime>,
    store: Arc<dyn Store>,
    registry: Registry,
}

impl Host {
    async fn open(data_dir: &Path, fluxo_bin: &Path) -> anyhow::Result<Self> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            &data_dir.join("fluxo.db"),
            SqliteOptions::default(),
        )?);
        let runtime = Arc::new(Runtime::builder().build()?);
        let registry = Registry::open(
            runtime.sandbox().clone(),
            store.clone(),
            data_dir,
            Compiler::Subprocess {
                program: fluxo_bin.to_owned(),
                limits: CompileLimits::default(),
            },
            RegistryOptions::default(),
        )
        .await?;
        Ok(Self {
            runtime,
            store,
            registry,
        })
    }

    async fn first_run(&self, input: &str) -> anyhow::Result<()> {
        let (_, _, action) = self
            .registry
            .resolve(&"bench".parse()?, &"triage".parse()?, None)
            .await?;
        let run = Fluxo::on("R", self.runtime.clone(), action, input)?;
        let report = run.report().await?;
        anyhow::ensure!(
            report.status == RunStatus::Succeeded,
            "the first run failed"
        );
        Ok(())
    }
}

/// Measures both paths `repetitions` times, each in a fresh data directory.
///
/// # Errors
/// When an upload, a restart or a run fails.
pub async fn measure(
    component: &[u8],
    input: &str,
    fluxo_bin: &Path,
    repetitions: usize,
) -> anyhow::Result<Cold> {
    let mut cold = Cold::default();
    for _ in 0..repetitions {
        let dir = tempfile::tempdir()?;
        let host = Host::open(dir.path(), fluxo_bin).await?;
        host.store.create_tenant(&"bench".parse()?).await?;
        let started = Instant::now();
        host.registry
            .upload(&"bench".parse()?, "triage", None, component.to_vec())
            .await?;
        host.first_run(input).await?;
        cold.upload_first_run.push(started.elapsed());
        drop(host);

        let started = Instant::now();
        let host = Host::open(dir.path(), fluxo_bin).await?;
        host.first_run(input).await?;
        cold.restart_first_run.push(started.elapsed());
    }
    Ok(cold)
}

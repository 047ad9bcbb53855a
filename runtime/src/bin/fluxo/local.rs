//! The local commands: `build` (a crate into a component) and `run` (a component once).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fluxo_runtime::delivery::{Delivery, DeliveryPolicy, SmtpConfig, SmtpTransport};
use fluxo_runtime::store::SqliteStore;
use fluxo_runtime::store::outbox::{OutboxStatus, SqliteOutbox};
use fluxo_runtime::store::state::{DEFAULT_TENANT_STATE_BYTES, SqliteState};
use fluxo_runtime::{Config, Event, RunReport, Runtime};
use fluxo_toolchain::{Scope, Target, Toolchain};

use crate::{GuestTarget, ToolchainChoice, UsageError};

pub(crate) fn usage(error: anyhow::Error) -> UsageError {
    UsageError(error)
}

pub(crate) fn build(
    path: &Path,
    out: Option<PathBuf>,
    target: GuestTarget,
    target_dir: Option<&Path>,
    choice: ToolchainChoice,
) -> Result<ExitCode, UsageError> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_owned()
    };
    if !manifest.is_file() {
        return Err(usage(anyhow::anyhow!(
            "{} is not a crate (no Cargo.toml)",
            path.display()
        )));
    }
    let toolchain = match choice {
        ToolchainChoice::Auto => Toolchain::detect(),
        ToolchainChoice::Rustup => Ok(Toolchain::Rustup),
        ToolchainChoice::Debian => Toolchain::debian(),
    }
    .map_err(|error| usage(error.into()))?;
    let target = match target {
        GuestTarget::Wasip2 => Target::Wasip2,
        GuestTarget::Unknown => Target::Unknown,
    };
    eprintln!(
        "fluxo: building {} for {} with {}",
        manifest.display(),
        target.triple(),
        toolchain.name()
    );
    let components = match toolchain.build(&manifest, Scope::Crate, target, target_dir) {
        Ok(components) => components,
        Err(error) => {
            eprintln!("fluxo: {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let [component] = components.as_slice() else {
        return Err(usage(anyhow::anyhow!(
            "{} built {} components; build one crate at a time",
            manifest.display(),
            components.len()
        )));
    };
    eprintln!(
        "fluxo: checking {} against the fluxo:action world",
        component.name
    );
    let runtime = Runtime::builder()
        .build()
        .map_err(|error| usage(error.into()))?;
    let checked = match runtime.load(&component.bytes) {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("fluxo: the component is not runnable: {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.wasm", component.name)));
    std::fs::write(&out, &component.bytes)
        .with_context(|| format!("writing {}", out.display()))
        .map_err(usage)?;
    eprintln!(
        "fluxo: wrote {} ({} KiB); imports: {}",
        out.display(),
        component.bytes.len().div_ceil(1024),
        checked.imports().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(
    component: &Path,
    event: &Path,
    config: Option<&Path>,
    dry_run: bool,
    data_dir: Option<&Path>,
) -> Result<ExitCode, UsageError> {
    let config = match config {
        Some(path) => Config::from_file(path).map_err(|error| usage(error.into()))?,
        None => Config::default(),
    };
    let event_text = std::fs::read_to_string(event)
        .with_context(|| format!("reading the event {}", event.display()))
        .map_err(usage)?;
    let event: Event = serde_json::from_str(&event_text)
        .with_context(|| format!("the event {} is not a valid event", event.display()))
        .map_err(usage)?;
    let bytes = std::fs::read(component)
        .with_context(|| format!("reading the component {}", component.display()))
        .map_err(usage)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(usage)?;
    let store = match data_dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .and_then(|()| SqliteStore::open(&dir.join("fluxo.db")).map_err(Into::into)),
        None => SqliteStore::open_in_memory().map_err(Into::into),
    }
    .map_err(usage)?;
    let outbox = SqliteOutbox::new(store.clone());
    let smtp = config.email.clone();
    let report = tokio.block_on(async {
        let runtime = Runtime::builder()
            .config(config)
            .state(Arc::new(SqliteState::new(
                store,
                DEFAULT_TENANT_STATE_BYTES,
            )))
            .mailer(Arc::new(outbox.clone()))
            .build()
            .map_err(|error| usage(error.into()))?;
        let report = match runtime.load(&bytes) {
            Ok(action) if dry_run => runtime.dry_run(&action, &event).await,
            Ok(action) => runtime.run(&action, &event).await,
            Err(error) => RunReport::invalid_component(&error),
        };
        deliver(&outbox, smtp.as_ref()).await?;
        Ok::<_, UsageError>(report)
    })?;
    let json = serde_json::to_string_pretty(&report)
        .context("serializing the report")
        .map_err(usage)?;
    println!("{json}");
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sends what the outbox holds through `smtp`, once per message (failures stay queued
/// in the data directory with their error); without `smtp`, says what was kept.
async fn deliver(outbox: &SqliteOutbox, smtp: Option<&SmtpConfig>) -> Result<(), UsageError> {
    let pending = |messages: &[fluxo_runtime::store::outbox::OutboxMessage]| {
        messages
            .iter()
            .filter(|m| m.status == OutboxStatus::Queued)
            .count()
    };
    let messages = outbox
        .messages()
        .await
        .map_err(|error| usage(error.into()))?;
    if pending(&messages) == 0 {
        return Ok(());
    }
    let Some(smtp) = smtp else {
        eprintln!(
            "fluxo: {} e-mail(s) kept in the outbox: configure [email] to send them",
            pending(&messages)
        );
        return Ok(());
    };
    let transport = SmtpTransport::new(smtp).map_err(|error| usage(error.into()))?;
    let delivery = Delivery::new(
        outbox.clone(),
        Arc::new(transport),
        DeliveryPolicy::default(),
    );
    let stats = delivery.pass().await.map_err(|error| usage(error.into()))?;
    eprintln!(
        "fluxo: e-mail: {} sent, {} queued for retry, {} failed",
        stats.sent, stats.retried, stats.failed
    );
    Ok(())
}

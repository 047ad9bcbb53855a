//! `fluxo`: build actions into components and run them once with the real host.
//!
//! Exit codes: 0 success, 1 the run (or the build) failed, 2 usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;

use fluxo_runtime::delivery::{Delivery, DeliveryPolicy, SmtpConfig, SmtpTransport};
use fluxo_runtime::store::SqliteStore;
use fluxo_runtime::store::outbox::{OutboxStatus, SqliteOutbox};
use fluxo_runtime::store::state::{DEFAULT_TENANT_STATE_BYTES, SqliteState};
use fluxo_runtime::{Config, Event, RunReport, Runtime};
use fluxo_toolchain::{Scope, Target, Toolchain};

#[derive(Debug, Parser)]
#[command(
    name = "fluxo",
    version,
    about = "WebAssembly-sandboxed actions for chat platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a Rust action crate into a component.
    Build {
        /// The crate's directory or its Cargo.toml.
        path: PathBuf,
        /// Where to write the component (default: `./CRATE.wasm`).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// The guest target.
        #[arg(long, value_enum, default_value_t = GuestTarget::Wasip2)]
        target: GuestTarget,
        /// cargo's target directory (default: the crate's own `target/`).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Run a component once for an event and print the run report as JSON.
    Run {
        /// The component file.
        component: PathBuf,
        /// The event, a JSON file.
        #[arg(long)]
        event: PathBuf,
        /// Limits, HTTP allowlist and secrets, a TOML file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Apply nothing, whatever the outcome.
        #[arg(long)]
        dry_run: bool,
        /// Keep state and the e-mail outbox in DIR/fluxo.db (default: in memory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GuestTarget {
    /// wasm32-wasip2: a component straight from rustc (std imports WASI 0.2).
    Wasip2,
    /// wasm32-unknown-unknown, componentized afterwards.
    Unknown,
}

/// A failure that is the user's input, not the run: exit code 2.
#[derive(Debug)]
struct UsageError(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            path,
            out,
            target,
            target_dir,
        } => build(&path, out, target, target_dir),
        Command::Run {
            component,
            event,
            config,
            dry_run,
            data_dir,
        } => run(
            &component,
            &event,
            config.as_deref(),
            dry_run,
            data_dir.as_deref(),
        ),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fluxo: {:#}", error.0);
            ExitCode::from(2)
        }
    }
}

fn usage(error: anyhow::Error) -> UsageError {
    UsageError(error)
}

fn build(
    path: &Path,
    out: Option<PathBuf>,
    target: GuestTarget,
    target_dir: Option<PathBuf>,
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
    let toolchain = Toolchain::detect().map_err(|error| usage(error.into()))?;
    let target = match target {
        GuestTarget::Wasip2 => Target::Wasip2,
        GuestTarget::Unknown => Target::Unknown,
    };
    let crate_dir = manifest.parent().unwrap_or(Path::new("."));
    let target_dir = target_dir.unwrap_or_else(|| crate_dir.join("target"));
    eprintln!(
        "fluxo: building {} for {} with {}",
        manifest.display(),
        target.triple(),
        toolchain.name()
    );
    let components = match toolchain.build(&manifest, Scope::Crate, target, &target_dir) {
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

fn run(
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

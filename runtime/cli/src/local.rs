//! The local commands: `build` (an action in Rust, Python or JavaScript into a
//! component), `run` (a component once) and
//! `workflow validate` (definitions, no server).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fluxo_core::{Blame, ErrorKind, Event, RunError, RunReport};
use fluxo_orchestrator::adapters::StoreState;
use fluxo_orchestrator::dispatch::smtp::{SmtpConfig, SmtpTransport};
use fluxo_orchestrator::dispatch::{DispatchOptions, Dispatcher};
use fluxo_orchestrator::metrics::Metrics;
use fluxo_sandbox::{EngineOptions, Metering, RunOptions, Runtime};
use fluxo_store::{OutboxPayload, OutboxStatus, Store};
use fluxo_store_sqlite::{SqliteOptions, SqliteStore};
use fluxo_toolchain::{Lang, LanguageTools, Scope, Target, Toolchain};

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
    check_and_write(&component.name, &component.bytes, out)
}

/// What `fluxo build --lang python|js` builds: the source, and the output's default name.
enum Source {
    /// A Python app: its directory and module.
    Python { dir: PathBuf, module: String },
    /// A JavaScript module file.
    Js { file: PathBuf },
}

impl Source {
    /// Reads `path` for `lang`: Python takes the app's directory (with `MODULE.py`) or the
    /// module's file; JavaScript the module's file or a directory holding `action.js`.
    fn find(path: &Path, lang: Lang, module: Option<&str>) -> Result<(Self, String), UsageError> {
        if !path.exists() {
            return Err(usage(anyhow::anyhow!("{} does not exist", path.display())));
        }
        match lang {
            Lang::Python => {
                let (dir, module) = if path.is_file() {
                    if module.is_some() {
                        return Err(usage(anyhow::anyhow!(
                            "--module names the module in an app's directory; {} is a file",
                            path.display()
                        )));
                    }
                    if path.extension().is_none_or(|ext| ext != "py") {
                        return Err(usage(anyhow::anyhow!(
                            "{} is not a Python module: give the app's directory or its .py file",
                            path.display()
                        )));
                    }
                    let stem = path
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    // `app.py` alone has the empty path as its parent: the current directory.
                    let parent = path
                        .parent()
                        .filter(|parent| !parent.as_os_str().is_empty());
                    (parent.unwrap_or(Path::new(".")).to_owned(), stem)
                } else {
                    (path.to_owned(), module.unwrap_or("app").to_owned())
                };
                if !dir.join(format!("{module}.py")).is_file() {
                    return Err(usage(anyhow::anyhow!(
                        "{} holds no {module}.py (name the module with --module)",
                        dir.display()
                    )));
                }
                let name = dir_name(&dir);
                Ok((Self::Python { dir, module }, name))
            }
            Lang::JavaScript => {
                let file = if path.is_dir() {
                    path.join("action.js")
                } else {
                    path.to_owned()
                };
                if !file.is_file() {
                    return Err(usage(anyhow::anyhow!(
                        "{} holds no action.js: give the module's file",
                        path.display()
                    )));
                }
                let name = if path.is_dir() {
                    dir_name(path)
                } else {
                    file.file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                };
                Ok((Self::Js { file }, name))
            }
        }
    }
}

/// `fluxo build --lang python|js`: the pinned toolchain builds the action against `wit`
/// (default: the world this binary serves), then the component is checked and written.
/// Every input is checked before anything is built; the scratch directory is removed
/// whatever happens.
pub(crate) fn build_foreign(
    path: &Path,
    lang: Lang,
    out: Option<PathBuf>,
    module: Option<&str>,
    wit: Option<&Path>,
    tools: Option<&Path>,
) -> Result<ExitCode, UsageError> {
    let (source, name) = Source::find(path, lang, module)?;
    if let Some(wit) = wit
        && !wit.is_dir()
    {
        return Err(usage(anyhow::anyhow!(
            "--wit {} is not a directory of WIT files",
            wit.display()
        )));
    }
    let tools = language_tools(tools)?;
    let scratch = tempfile::Builder::new()
        .prefix("fluxo-build-")
        .tempdir()
        .context("creating a scratch directory")
        .map_err(usage)?;
    let wit = match wit {
        Some(dir) => dir.to_owned(),
        None => fluxo_toolchain::lang::write_world(&scratch.path().join("wit"))
            .map_err(|error| usage(error.into()))?,
    };
    let world = fluxo_toolchain::lang::WORLD;
    let built = match &source {
        Source::Python { dir, module } => {
            eprintln!(
                "fluxo: building the Python app {} (module {module}) with componentize-py",
                dir.display()
            );
            tools.build_python(dir, module, &wit, world, scratch.path())
        }
        Source::Js { file } => {
            eprintln!(
                "fluxo: building the JavaScript module {} with jco (QuickJS)",
                file.display()
            );
            tools.build_js(file, &wit, world, scratch.path())
        }
    };
    match built {
        Ok(bytes) => check_and_write(&name, &bytes, out),
        Err(
            error @ (fluxo_toolchain::ToolchainError::LanguageBuildFailed { .. }
            | fluxo_toolchain::ToolchainError::Componentize { .. }),
        ) => {
            eprintln!("fluxo: {error}");
            Ok(ExitCode::from(1))
        }
        // A missing tool, a file that cannot be read or written: the setup, not the action.
        Err(error) => Err(usage(error.into())),
    }
}

/// The last component of `path` (after resolving `.`), for naming the output.
fn dir_name(path: &Path) -> String {
    std::path::absolute(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "action".to_owned())
}

/// The Python and JavaScript toolchains in `tools` (`--tools` / `FLUXO_TOOLS_DIR`), else
/// in the nearest `.tools` above the current directory, else in the `.tools` of the
/// checkout this binary was built from (a project outside the checkout).
pub(crate) fn language_tools(tools: Option<&Path>) -> Result<LanguageTools, UsageError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools");
    let dir = match tools {
        Some(dir) => dir.to_owned(),
        None => nearest_tools()
            .or_else(|| built_from.is_dir().then_some(built_from))
            .ok_or_else(|| {
                usage(anyhow::anyhow!(
                    "no .tools directory above {}: {} (or name one with --tools / FLUXO_TOOLS_DIR)",
                    std::env::current_dir().unwrap_or_default().display(),
                    fluxo_toolchain::lang::LANG_SETUP_HINT
                ))
            })?,
    };
    Ok(LanguageTools::in_dir(dir))
}

/// The nearest `.tools` directory in the current directory or above it.
fn nearest_tools() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| dir.join(".tools"))
        .find(|dir| dir.is_dir())
}

/// Loads `bytes` as the server would (world, imports, size and pool shape), then writes
/// them to `out` (default `./NAME.wasm`) and prints the size, the compile time and the
/// imports; exit code 1 when the component is not runnable.
fn check_and_write(name: &str, bytes: &[u8], out: Option<PathBuf>) -> Result<ExitCode, UsageError> {
    eprintln!("fluxo: checking {name} against the fluxo:action world");
    let runtime = Runtime::builder()
        .build()
        .map_err(|error| usage(error.into()))?;
    let started = std::time::Instant::now();
    let checked = match runtime.load(bytes) {
        Ok(checked) => checked,
        Err(error) => {
            eprintln!("fluxo: the component is not runnable: {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let compiled = started.elapsed();
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.wasm")));
    std::fs::write(&out, bytes)
        .with_context(|| format!("writing {}", out.display()))
        .map_err(usage)?;
    eprintln!(
        "fluxo: wrote {} ({} KiB, compiled in {} ms); imports: {}",
        out.display(),
        bytes.len().div_ceil(1024),
        compiled.as_millis(),
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
    let config = crate::load_config(config)?;
    let event_bytes = std::fs::read(event)
        .with_context(|| format!("reading the event {}", event.display()))
        .map_err(usage)?;
    let read = fluxo_core::json::from_slice_lenient::<Event>(&event_bytes).map_err(|error| {
        usage(anyhow::anyhow!(
            "the event {} is not a valid event: {error}",
            event.display()
        ))
    })?;
    let mut event = read.value;
    event.warnings.extend(read.warnings);
    let bytes = std::fs::read(component)
        .with_context(|| format!("reading the component {}", component.display()))
        .map_err(usage)?;
    let tokio = crate::multi_thread_runtime()?;
    let smtp = config.email.clone();
    let contacts = config.server.contact_ownership().of(&event.tenant);
    let report = tokio.block_on(async {
        let store: Option<Arc<dyn Store>> = match data_dir {
            Some(dir) => {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("creating {}", dir.display()))
                    .map_err(usage)?;
                let options = SqliteOptions {
                    tenant_state_bytes: config.server.tenant_state_bytes,
                    ..SqliteOptions::default()
                };
                Some(Arc::new(
                    SqliteStore::open(&dir.join("fluxo.db"), options)
                        .map_err(|error| usage(error.into()))?,
                ))
            }
            None => None,
        };
        let mut builder = Runtime::builder()
            .config(config.sandbox())
            .max_component_bytes(config.server.max_component_bytes_for(&event.tenant))
            .engine_options(EngineOptions {
                max_concurrent_runs: 4,
                metering: Metering::default(),
                shape: config.engine,
            });
        if let Some(store) = &store {
            builder = builder.state_reader(Arc::new(StoreState(store.clone())));
        }
        let runtime = builder.build().map_err(|error| usage(error.into()))?;
        let action = match runtime.load(&bytes) {
            Ok(action) => action,
            Err(error) => {
                let error = RunError::new(ErrorKind::InvalidComponent, error.to_string());
                return Ok(RunReport::not_started(fluxo_core::RunId::new(), 1, error));
            }
        };
        let options = RunOptions::new();
        let mut execution = runtime.execute(&action, &event, &options).await;
        if dry_run || !execution.succeeded() {
            return Ok::<_, UsageError>(execution.into_report(false));
        }
        let emails = execution
            .journal
            .effects()
            .iter()
            .filter(|effect| matches!(effect, fluxo_core::Effect::SendEmail(_)))
            .count();
        let applied = match &store {
            Some(store) => store
                .apply_effects(
                    &event.tenant,
                    event.contact.id.as_ref(),
                    // Platform-owned: the update waits in the data directory's outbox
                    // for a `fluxo serve` on it, like platform messages.
                    contacts,
                    execution.meta.run_id,
                    execution.journal.effects(),
                )
                .await
                .map_err(|error| {
                    RunError::new(
                        ErrorKind::ApplyFailed,
                        format!("applying the effects failed: {error}"),
                    )
                    .blamed_on(if error.is_transient() {
                        Blame::Platform
                    } else {
                        Blame::Guest
                    })
                })
                .and_then(|refusal| refusal.map_or(Ok(()), Err)),
            None => {
                runtime
                    .apply(
                        &event.tenant,
                        event.contact.id.as_ref(),
                        execution.journal.effects(),
                    )
                    .await
            }
        };
        let report = match applied {
            Ok(()) => execution.into_report(true),
            Err(error) => {
                execution.end = Err(error);
                execution.into_report(false)
            }
        };
        match &store {
            Some(store) => deliver(store, smtp.as_ref()).await?,
            None if emails > 0 && report.applied => eprintln!(
                "fluxo: {emails} e-mail(s) not sent: without --data-dir they are kept in memory \
                 only (run with --data-dir DIR to keep them in an outbox and send them)"
            ),
            None => {}
        }
        Ok(report)
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

/// Sends what the data directory's outbox holds through `smtp`, once per message (each
/// row claimed first, so another process on the same directory never sends it too;
/// failures stay queued with their error); without `smtp`, says what was kept.
async fn deliver(store: &Arc<dyn Store>, smtp: Option<&SmtpConfig>) -> Result<(), UsageError> {
    let rows = store.outbox().await.map_err(|error| usage(error.into()))?;
    let queued_of = |wanted: fn(&OutboxPayload) -> bool| {
        rows.iter()
            .filter(|row| row.status == OutboxStatus::Queued && wanted(&row.payload))
            .count()
    };
    let updates = queued_of(|payload| matches!(payload, OutboxPayload::ContactUpdate(_)));
    if updates > 0 {
        eprintln!(
            "fluxo: {updates} contact update(s) kept in the outbox: the tenant's contacts are the platform's; a `fluxo serve` on this data directory delivers them"
        );
    }
    let queued = queued_of(|payload| matches!(payload, OutboxPayload::Email(_)));
    if queued == 0 {
        return Ok(());
    }
    let Some(smtp) = smtp else {
        eprintln!("fluxo: {queued} e-mail(s) kept in the outbox: configure [email] to send them");
        return Ok(());
    };
    let transport = SmtpTransport::new(smtp).map_err(|error| usage(error.into()))?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        Some(transport),
        None,
        DispatchOptions {
            node: format!("fluxo-run-{}", std::process::id()),
            ..DispatchOptions::default()
        },
        Arc::new(Metrics::default()),
    );
    let stats = dispatcher
        .pass()
        .await
        .map_err(|error| usage(error.into()))?;
    eprintln!(
        "fluxo: e-mail: {} sent, {} queued for retry, {} failed",
        stats.sent, stats.retried, stats.failed
    );
    Ok(())
}

/// The child side of the registry's out-of-process compiler: compiles `input` (`-`:
/// stdin) into `output` with an engine configured like the host's (`metering` is the
/// host's).
pub(crate) fn compile_artifact(
    metering: &str,
    input: &Path,
    output: &Path,
) -> Result<ExitCode, UsageError> {
    let metering = Metering::from_flag(metering).map_err(|error| usage(error.into()))?;
    let bytes = if input == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading the component from stdin")
            .map_err(usage)?;
        bytes
    } else {
        std::fs::read(input)
            .with_context(|| format!("reading {}", input.display()))
            .map_err(usage)?
    };
    let artifact =
        fluxo_sandbox::load::precompile(metering, &bytes).map_err(|error| usage(error.into()))?;
    std::fs::write(output, artifact)
        .with_context(|| format!("writing {}", output.display()))
        .map_err(usage)?;
    Ok(ExitCode::SUCCESS)
}

/// `fluxo workflow validate FILE...`: every problem of every file; exit 1 when any has
/// one.
pub(crate) fn validate_workflows(files: &[PathBuf]) -> Result<ExitCode, UsageError> {
    let templates = fluxo_workflow::Templates::new();
    let mut failed = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))
            .map_err(usage)?;
        match fluxo_workflow::check(&text, &templates) {
            Ok(workflow) => println!(
                "{}: ok ({} step{}, starts at `{}`)",
                file.display(),
                workflow.steps.len(),
                if workflow.steps.len() == 1 { "" } else { "s" },
                workflow.start
            ),
            Err(problems) => {
                failed = true;
                println!("{}: {} problem(s)", file.display(), problems.len());
                for problem in problems {
                    println!("  {problem}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

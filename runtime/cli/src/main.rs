//! `fluxo`: the Fluxo server, and the commands that build, run and manage actions.
//!
//! Exit codes: 0 success, 1 the run (or the build, or the request) failed, 2 usage or
//! configuration error. Environment variables are read here only.

mod client;
mod local;
mod replay;
mod scaffold;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use fluxo_orchestrator::registry::{COMPILE_ARTIFACT_COMMAND, CompileLimits, Compiler};
use fluxo_server::{Config, ServerOptions};

use crate::client::Client;
use crate::local::usage;

#[derive(Debug, Parser)]
#[command(
    name = "fluxo",
    version,
    about = "WebAssembly-sandboxed actions for chat platforms"
)]
struct Cli {
    /// The server the management commands talk to.
    #[arg(
        long,
        global = true,
        env = "FLUXO_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The bearer token for the management commands (a tenant's, or the admin's).
    #[arg(long, global = true, env = "FLUXO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Fluxo server on its embedded store (or the shared one named by
    /// `FLUXO_STORE_URL`). The admin token is `FLUXO_ADMIN_TOKEN`, else
    /// `DATA_DIR/admin-token` (made on first start); secrets are sealed with
    /// `FLUXO_SECRETS_KEY`, else `DATA_DIR/secrets.key`.
    Serve {
        /// Where to listen.
        #[arg(long, env = "FLUXO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the store, components and compiled artifacts live.
        #[arg(long, env = "FLUXO_DATA_DIR", default_value = "fluxo-data")]
        data_dir: PathBuf,
        /// Limits, egress policy, e-mail and server settings (TOML).
        #[arg(long, env = "FLUXO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Migrate the configured store's schema to this version and exit (`fluxo serve`
    /// also migrates at start; on PostgreSQL an advisory lock makes concurrent starts
    /// migrate once).
    Migrate {
        /// The data directory (the SQLite store's home).
        #[arg(long, env = "FLUXO_DATA_DIR", default_value = "fluxo-data")]
        data_dir: PathBuf,
        /// The configuration naming the store (`[store] url`, or `FLUXO_STORE_URL`).
        #[arg(long, env = "FLUXO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Build an action into a component and check it against the world: a Rust crate
    /// (cargo), a Python app (componentize-py) or a JavaScript module (jco, QuickJS)
    Build {
        /// Rust: the crate's directory or its Cargo.toml. Python: the app's directory
        /// (holding `MODULE.py`). JavaScript: the module file, or a directory holding
        /// `action.js`.
        path: PathBuf,
        /// The action's language.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Where to write the component (default: `./NAME.wasm`: the crate's name, the
        /// app directory's or the module's).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Python: the module defining the `WitWorld` class, when PATH is the app's
        /// directory (default: `app`).
        #[arg(long)]
        module: Option<String>,
        /// Python and JavaScript: a directory of WIT files to build against (default: the
        /// `fluxo:action` world this fluxo serves).
        #[arg(long)]
        wit: Option<PathBuf>,
        /// Python and JavaScript: the tool directory `scripts/setup-toolchain` filled
        /// (default: the nearest `.tools` above the current directory, else the one of the
        /// checkout this fluxo was built from).
        #[arg(long, env = "FLUXO_TOOLS_DIR")]
        tools: Option<PathBuf>,
        /// Rust: the guest target (default: `wasip2`).
        #[arg(long, value_enum)]
        target: Option<GuestTarget>,
        /// Rust: cargo's target directory (default: cargo's own choice for the crate).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Rust: which toolchain (default `auto`: rustup's targets if installed, else
        /// Debian's).
        #[arg(long, value_enum)]
        toolchain: Option<ToolchainChoice>,
    },
    /// Create an action project: the action, a native test against a mock host, and a
    /// README with the commands to test, build and upload it
    New {
        /// The action's name (1–64 of `a-z 0-9 - _`, starting with a letter).
        name: String,
        /// The project's language.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Where to create it (default: `./NAME`); it must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust: the fluxo-sdk crate to depend on (default: a copy of the SDK this fluxo
        /// was built with, installed into the project's `.fluxo/sdk`).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Python: the tool directory `scripts/setup-toolchain` filled (for the bindings
        /// the tests import; default: the nearest `.tools` above the current directory,
        /// else the one of the checkout this fluxo was built from).
        #[arg(long, env = "FLUXO_TOOLS_DIR")]
        tools: Option<PathBuf>,
    },
    /// Run a component once for an event and print the run report as JSON.
    Run {
        /// The component file.
        component: PathBuf,
        /// The event, a JSON file.
        #[arg(long)]
        event: PathBuf,
        /// Limits, HTTP allowlist, secrets and e-mail (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Apply nothing, whatever the outcome.
        #[arg(long)]
        dry_run: bool,
        /// Keep state and the e-mail outbox in DIR/fluxo.db (default: in memory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Manage tenants (admin token).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tokens (admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Upload a component as a new version of an action.
    Upload {
        /// The action's name.
        name: String,
        /// The component file.
        file: PathBuf,
        /// What the action does.
        #[arg(long)]
        description: Option<String>,
    },
    /// List and manage actions.
    #[command(subcommand)]
    Actions(ActionsCommand),
    /// Test an action against a sample event: nothing is applied.
    Test {
        /// The action.
        name: String,
        /// The sample event: a JSON file (`contact`, `message`, `input`).
        #[arg(long)]
        event: PathBuf,
        /// A version other than the active one.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Submit and inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print a run's log lines (what its guest logged and wrote to stdout and stderr,
    /// and the host's notes, a workflow's steps among them): the latest attempt's; with
    /// `--follow`, each attempt's as it ends (a run keeps only its latest report).
    Logs {
        /// The run id.
        id: String,
        /// Keep printing until the run is final (a retried run's later attempts too).
        #[arg(long)]
        follow: bool,
    },
    /// Re-run a production run on this machine from its record: the version it ran, its
    /// event, run id and attempt, every HTTP request answered from the record (nothing
    /// sent, nothing applied); shows its status, error, outcome and effects beside the
    /// original's. Exit code 0 when the replay reproduces the original, 1 when it
    /// differs.
    Replay {
        /// The run id.
        id: String,
        /// Limits and secrets (TOML, `[secrets.TENANT]`): secrets not given here are
        /// stand-ins, since their values never leave the server.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage the tenant's secrets (values are never shown).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Validate, test, upload and run workflows (no-code actions).
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Compile a component into a precompiled artifact (used by the server).
    #[command(hide = true, name = COMPILE_ARTIFACT_COMMAND)]
    CompileArtifact {
        /// The host's metering: `fuel,epoch`, `fuel`, `epoch` or `none`.
        #[arg(long, default_value = "fuel,epoch")]
        metering: String,
        /// The component (`-`: standard input).
        input: PathBuf,
        /// The artifact to write.
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WorkflowCommand {
    /// Check definition files here, without a server: every problem with its step and
    /// field; exit 1 when any file has one.
    Validate {
        /// The JSON definitions.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Store a definition on the server as a new, active version of the action NAME
    /// (then enable, disable, activate, delete it with `fluxo actions`).
    Upload {
        /// The workflow's (action's) name.
        name: String,
        /// The JSON definition.
        file: PathBuf,
        /// What it does (default: the definition's `description`).
        #[arg(long)]
        description: Option<String>,
    },
    /// Run a stored workflow in the background (as `fluxo runs submit`).
    Run {
        /// The workflow's (action's) name.
        name: String,
        /// The event: a JSON file (`contact`, `message`, `input` — the starting variables).
        #[arg(long)]
        event: PathBuf,
        /// Wait for the run to finish, or to wait for its contact's reply (its whole report
        /// with `--json`).
        #[arg(long)]
        wait: bool,
    },
    /// Test a definition on the server with a sample contact and message: each step's
    /// inputs, decision, HTTP exchange and effects; nothing is applied. Exits 1 when the
    /// workflow fails.
    Test {
        /// The JSON definition.
        file: PathBuf,
        /// The sample (JSON: `contact`, `message`, `vars`, `fixtures`, `replies`).
        #[arg(long)]
        sample: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for a tenant (shown once).
    Create {
        /// The tenant.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum ActionsCommand {
    /// List actions.
    List,
    /// Show an action, its permissions and versions.
    Show {
        /// The action.
        name: String,
    },
    /// Accept new runs.
    Enable {
        /// The action.
        name: String,
    },
    /// Refuse new runs.
    Disable {
        /// The action.
        name: String,
    },
    /// Make a version active (rollback or roll forward).
    Activate {
        /// The action.
        name: String,
        /// The version.
        version: u32,
    },
    /// Delete an action: repeat its name to confirm.
    Delete {
        /// The action.
        name: String,
        /// The action's name again.
        #[arg(long)]
        confirm: String,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Submit a run.
    Submit {
        /// The action.
        name: String,
        /// The event: a JSON file (`contact`, `message`, `input`).
        #[arg(long)]
        event: PathBuf,
        /// Wait for the run to finish, or to wait for its contact's reply, and show its
        /// report.
        #[arg(long)]
        wait: bool,
        /// Submitting again with the same key returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show a run.
    Show {
        /// The run id.
        id: String,
    },
    /// List runs.
    List {
        /// Only this action's runs.
        #[arg(long)]
        action: Option<String>,
        /// Only runs in this state.
        #[arg(long)]
        state: Option<String>,
        /// Keep showing runs as they finish.
        #[arg(long)]
        watch: bool,
    },
    /// Show runs as they finish, until interrupted.
    Watch {
        /// Only this action's runs.
        #[arg(long)]
        action: Option<String>,
    },
    /// Cancel a queued, running or waiting run.
    Cancel {
        /// The run id.
        id: String,
    },
    /// Queue a dead run again.
    Retry {
        /// The run id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Set a secret.
    Set {
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
    /// List secret names.
    List,
    /// Re-seal every stored secret under a new key (works on the store directly: the
    /// data directory's, or the shared one named by `[store] url`/`FLUXO_STORE_URL`).
    /// With `FLUXO_SECRETS_KEY` set, the new key comes from `FLUXO_SECRETS_KEY_NEXT`.
    RotateKey {
        /// The data directory of `fluxo serve`.
        #[arg(long, env = "FLUXO_DATA_DIR", default_value = "fluxo-data")]
        data_dir: PathBuf,
        /// The configuration naming the store.
        #[arg(long, env = "FLUXO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Delete a secret.
    Delete {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ToolchainChoice {
    /// rustup's targets when installed, else Debian's fallback.
    Auto,
    /// rustup's `wasm32-wasip2` and `wasm32-unknown-unknown` targets.
    Rustup,
    /// Debian's rustc-web with `-Zbuild-std`.
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with cargo and the `fluxo-sdk` crate.
    Rust,
    /// Python 3, with componentize-py.
    Python,
    /// JavaScript (an ES module), with jco's QuickJS backend.
    Js,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GuestTarget {
    /// wasm32-wasip2: a component straight from rustc (std imports WASI 0.2).
    Wasip2,
    /// wasm32-unknown-unknown, componentized afterwards.
    Unknown,
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `info` for the server's crates,
/// `warn` for the rest).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,fluxo=info,fluxo_server=info,fluxo_orchestrator=info,fluxo_store_sqlite=info",
        )
    });
    // Colours only for a terminal: a log redirected to a file stays plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The multi-threaded tokio runtime of the commands that run components or serve.
///
/// # Errors
/// A usage error when the runtime cannot start (threads or the I/O driver refused).
pub(crate) fn multi_thread_runtime() -> Result<tokio::runtime::Runtime, UsageError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(usage)
}

/// A failure that is the user's input, not the run: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Build {
            path,
            lang: Lang::Rust,
            out,
            module,
            wit,
            target,
            target_dir,
            toolchain,
            ..
        } => {
            if module.is_some() || wit.is_some() {
                Err(UsageError(anyhow::anyhow!(
                    "--module and --wit are for --lang python and js: a Rust crate names its world through fluxo-sdk"
                )))
            } else {
                local::build(
                    &path,
                    out,
                    target.unwrap_or(GuestTarget::Wasip2),
                    target_dir.as_deref(),
                    toolchain.unwrap_or(ToolchainChoice::Auto),
                )
            }
        }
        Command::Build {
            path,
            lang,
            out,
            module,
            wit,
            tools,
            target,
            target_dir,
            toolchain,
        } => {
            let lang = if lang == Lang::Python {
                fluxo_toolchain::Lang::Python
            } else {
                fluxo_toolchain::Lang::JavaScript
            };
            if target.is_some() || target_dir.is_some() || toolchain.is_some() {
                Err(UsageError(anyhow::anyhow!(
                    "--target, --target-dir and --toolchain are for Rust crates, not --lang {}",
                    lang.as_str()
                )))
            } else {
                local::build_foreign(
                    &path,
                    lang,
                    out,
                    module.as_deref(),
                    wit.as_deref(),
                    tools.as_deref(),
                )
            }
        }
        Command::New {
            name,
            lang,
            dir,
            sdk,
            tools,
        } => scaffold::new_project(&name, lang, dir, sdk, tools.as_deref()),
        Command::Run {
            component,
            event,
            config,
            dry_run,
            data_dir,
        } => local::run(
            &component,
            &event,
            config.as_deref(),
            dry_run,
            data_dir.as_deref(),
        ),
        Command::Serve {
            listen,
            data_dir,
            config,
        } => serve(listen, &data_dir, config.as_deref()),
        Command::CompileArtifact {
            metering,
            input,
            output,
        } => local::compile_artifact(&metering, &input, &output),
        Command::Secrets(SecretsCommand::RotateKey { data_dir, config }) => {
            rotate_key(&data_dir, config.as_deref())
        }
        Command::Migrate { data_dir, config } => migrate(&data_dir, config.as_deref()),
        Command::Workflow(WorkflowCommand::Validate { files }) => local::validate_workflows(&files),
        Command::Replay { id, config } => Client::new(&cli.server, cli.token, cli.json)
            .map_err(usage)
            .and_then(|client| replay::replay(&client, &id, config.as_deref(), cli.json)),
        command => manage(&cli.server, cli.token, cli.json, command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fluxo: {:#}", error.0);
            ExitCode::from(2)
        }
    }
}

pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, UsageError> {
    match path {
        Some(path) => Config::from_file(path).map_err(|error| usage(error.into())),
        None => Ok(Config::default()),
    }
}

/// The admin token: `FLUXO_ADMIN_TOKEN`, else `DATA_DIR/admin-token`, else a new one
/// written there (mode 0600).
fn admin_token(data_dir: &Path) -> Result<(String, String), UsageError> {
    if let Ok(token) = std::env::var("FLUXO_ADMIN_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), "FLUXO_ADMIN_TOKEN".to_owned()));
    }
    let path = data_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path)
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), path.display().to_string()));
    }
    let token =
        fluxo_server::auth::new_token("fxa").map_err(|e| usage(anyhow::anyhow!("{e:?}")))?;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))
            .map_err(usage)?;
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(usage)?;
    writeln!(file, "{token}")
        .with_context(|| format!("writing {}", path.display()))
        .map_err(usage)?;
    Ok((token, path.display().to_string()))
}

/// The configuration file with `FLUXO_STORE_URL` applied over its `[store] url`.
fn store_config(path: Option<&Path>) -> Result<Config, UsageError> {
    let mut config = load_config(path)?;
    if let Ok(url) = std::env::var("FLUXO_STORE_URL")
        && !url.trim().is_empty()
    {
        config.store.url = Some(url.trim().to_owned());
    }
    Ok(config)
}

fn current_thread() -> Result<tokio::runtime::Runtime, UsageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(usage)
}

/// `fluxo migrate`: the configured store migrated to this version.
fn migrate(data_dir: &Path, config: Option<&Path>) -> Result<ExitCode, UsageError> {
    let config = store_config(config)?;
    if config.store.url.is_none() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))
            .map_err(usage)?;
    }
    current_thread()?.block_on(async {
        let store = fluxo_server::assemble::open_store(data_dir, &config)
            .await
            .map_err(|error| usage(error.into()))?;
        store
            .ready()
            .await
            .context("checking the migrated store")
            .map_err(usage)?;
        let which = if config.store.url.is_some() {
            "the PostgreSQL store".to_owned()
        } else {
            data_dir.join("fluxo.db").display().to_string()
        };
        eprintln!("{which}: schema current");
        Ok(ExitCode::SUCCESS)
    })
}

/// `fluxo secrets rotate-key`: every stored secret re-sealed under a new key.
fn rotate_key(data_dir: &Path, config: Option<&Path>) -> Result<ExitCode, UsageError> {
    let config = store_config(config)?;
    if config.store.url.is_none() && !data_dir.join("fluxo.db").exists() {
        return Err(usage(anyhow::anyhow!(
            "{} holds no Fluxo store (no fluxo.db)",
            data_dir.display()
        )));
    }
    current_thread()?.block_on(async {
        let store = fluxo_server::assemble::open_store(data_dir, &config)
            .await
            .map_err(|error| usage(error.into()))?;
        let vault = fluxo_server::assemble::open_vault(data_dir, &config)
            .map_err(|error| usage(error.into()))?;
        vault
            .seal_stored(store.as_ref())
            .await
            .context("sealing secrets stored in plain text")
            .map_err(usage)?;
        let (count, id) = vault
            .rotate(store.as_ref())
            .await
            .context("rotating the secrets key")
            .map_err(usage)?;
        eprintln!("re-sealed {count} secrets under key {id}");
        if std::env::var_os(fluxo_orchestrator::vault::KEY_ENV).is_some() {
            eprintln!(
                "now set {} to the value of {} for every process",
                fluxo_orchestrator::vault::KEY_ENV,
                fluxo_orchestrator::vault::NEXT_KEY_ENV
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn serve(
    listen: SocketAddr,
    data_dir: &Path,
    config: Option<&Path>,
) -> Result<ExitCode, UsageError> {
    // FLUXO_STORE_URL names the shared store (PostgreSQL) over the file's `[store] url`.
    let config = store_config(config)?;
    let (token, token_source) = admin_token(data_dir)?;
    let program = std::env::current_exe()
        .context("locating the fluxo binary")
        .map_err(usage)?;
    let settings = config.server.clone();
    let options = ServerOptions {
        compiler: Compiler::Subprocess {
            program,
            limits: CompileLimits {
                timeout: Duration::from_millis(settings.compile_timeout_ms),
                max_memory_bytes: settings.compile_max_memory_bytes,
            },
        },
        admin_token: token,
        config,
        resolver: None,
    };
    let tokio = multi_thread_runtime()?;
    tokio.block_on(async {
        let server = fluxo_server::build(data_dir, options)
            .await
            .map_err(|error| usage(error.into()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))
            .map_err(usage)?;
        let address = listener.local_addr().map_or(listen, |a| a);
        eprintln!(
            "fluxo: listening on http://{address} (data in {}; admin token in {token_source})",
            data_dir.display()
        );
        // On the signal: claim nothing more at once, drain open requests (a pending Test
        // is one) for at most the grace period, then let running runs finish.
        let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = {
            let (state, stopping) = (server.state.clone(), stopping.clone());
            async move {
                shutdown_signal().await;
                state.stop_claiming();
                stopping.notify_waiters();
            }
        };
        let drained = fluxo_server::serve(listener, server.state.clone(), signal);
        let grace = server.grace();
        let notified = stopping.notified();
        tokio::select! {
            result = drained => result.context("serving").map_err(usage)?,
            () = async { notified.await; tokio::time::sleep(grace).await } => {
                tracing::warn!("requests still open after the grace period were dropped");
            }
        }
        tracing::info!("shutting down: finishing runs in flight");
        server.shutdown().await;
        eprintln!("fluxo: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn manage(
    server: &str,
    token: Option<String>,
    json: bool,
    command: Command,
) -> Result<ExitCode, UsageError> {
    let client = Client::new(server, token, json).map_err(usage)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(usage)?;
    tokio.block_on(async move {
        match command {
            Command::Tenant(TenantCommand::Create { id }) => {
                client
                    .send("POST", "/v1/tenants", Some(serde_json::json!({ "id": id })))
                    .await
            }
            Command::Token(TokenCommand::Create { tenant }) => {
                client
                    .send("POST", &format!("/v1/tenants/{tenant}/tokens"), None)
                    .await
            }
            Command::Upload {
                name,
                file,
                description,
            } => client.upload(&name, &file, description.as_deref()).await,
            Command::Actions(ActionsCommand::List) => client.send("GET", "/v1/actions", None).await,
            Command::Actions(ActionsCommand::Show { name }) => {
                client
                    .send("GET", &format!("/v1/actions/{name}"), None)
                    .await
            }
            Command::Actions(ActionsCommand::Enable { name }) => {
                client
                    .send("POST", &format!("/v1/actions/{name}/enable"), None)
                    .await
            }
            Command::Actions(ActionsCommand::Disable { name }) => {
                client
                    .send("POST", &format!("/v1/actions/{name}/disable"), None)
                    .await
            }
            Command::Actions(ActionsCommand::Activate { name, version }) => {
                let body = serde_json::json!({ "version": version });
                client
                    .send("POST", &format!("/v1/actions/{name}/activate"), Some(body))
                    .await
            }
            Command::Actions(ActionsCommand::Delete { name, confirm }) => {
                client
                    .send(
                        "DELETE",
                        &format!("/v1/actions/{name}?confirm={confirm}"),
                        None,
                    )
                    .await
            }
            Command::Test {
                name,
                event,
                version,
            } => {
                let mut body = client::read_json(&event).map_err(usage)?;
                if let (Some(version), Some(object)) = (version, body.as_object_mut()) {
                    object.insert("version".into(), version.into());
                }
                client
                    .send("POST", &format!("/v1/actions/{name}/test"), Some(body))
                    .await
            }
            Command::Runs(RunsCommand::Submit {
                name,
                event,
                wait,
                idempotency_key,
            }) => {
                client
                    .submit(&name, &event, wait, idempotency_key.as_deref())
                    .await
            }
            Command::Runs(RunsCommand::Watch { action })
            | Command::Runs(RunsCommand::List {
                action,
                watch: true,
                ..
            }) => client.watch(action.as_deref()).await,
            Command::Runs(RunsCommand::Cancel { id }) => {
                client
                    .send("POST", &format!("/v1/runs/{id}/cancel"), None)
                    .await
            }
            Command::Runs(RunsCommand::Retry { id }) => {
                client
                    .send("POST", &format!("/v1/runs/{id}/retry"), None)
                    .await
            }
            Command::Logs { id, follow } => client.logs(&id, follow).await,
            Command::Runs(RunsCommand::Show { id }) => {
                client.send("GET", &format!("/v1/runs/{id}"), None).await
            }
            Command::Runs(RunsCommand::List { action, state, .. }) => {
                let mut query = Vec::new();
                if let Some(action) = action {
                    query.push(format!("action={action}"));
                }
                if let Some(state) = state {
                    query.push(format!("state={state}"));
                }
                client
                    .send("GET", &format!("/v1/runs?{}", query.join("&")), None)
                    .await
            }
            Command::Secrets(SecretsCommand::Set { name, value }) => {
                let body = serde_json::json!({ "value": value });
                client
                    .send("PUT", &format!("/v1/secrets/{name}"), Some(body))
                    .await
            }
            Command::Secrets(SecretsCommand::List) => client.send("GET", "/v1/secrets", None).await,
            Command::Secrets(SecretsCommand::Delete { name }) => {
                client
                    .send("DELETE", &format!("/v1/secrets/{name}"), None)
                    .await
            }
            Command::Workflow(WorkflowCommand::Upload {
                name,
                file,
                description,
            }) => {
                let definition = client::read_json(&file).map_err(usage)?;
                let mut path = format!("/v1/workflows/{name}/versions");
                if let Some(description) = description {
                    path.push_str("?description=");
                    path.push_str(&client::url_encode(&description));
                }
                client.send("POST", &path, Some(definition)).await
            }
            Command::Workflow(WorkflowCommand::Run { name, event, wait }) => {
                client.submit(&name, &event, wait, None).await
            }
            Command::Workflow(WorkflowCommand::Test { file, sample }) => {
                let workflow = client::read_json(&file).map_err(usage)?;
                let mut body = match sample {
                    Some(sample) => client::read_json(&sample).map_err(usage)?,
                    None => serde_json::json!({}),
                };
                let Some(object) = body.as_object_mut() else {
                    return Err(usage(anyhow::anyhow!("the sample is not a JSON object")));
                };
                object.insert("workflow".into(), workflow);
                client.test_workflow(body).await
            }
            Command::Serve { .. }
            | Command::Workflow(WorkflowCommand::Validate { .. })
            | Command::Migrate { .. }
            | Command::Secrets(SecretsCommand::RotateKey { .. })
            | Command::Build { .. }
            | Command::New { .. }
            | Command::Run { .. }
            | Command::Replay { .. }
            | Command::CompileArtifact { .. } => Ok(ExitCode::from(2)),
        }
    })
}

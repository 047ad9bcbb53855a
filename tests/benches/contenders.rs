//! The benchmark binary: every contender in one run, interleaved, printed as markdown
//! tables of absolute figures and ratios, and written to a file.
//!
//! `scripts/bench [--quick | --full] [--out FILE]` builds what it needs and runs this
//! (`cargo bench -p fluxo-tests --bench contenders -- …`). Quick is the default.
//! `--only W0,R [--seconds S]` times just those latency rows for S seconds, for a
//! profiler to watch (`perf record -g -- target/release/deps/contenders-… --only R`).

use std::path::PathBuf;
use std::process::ExitCode;

use fluxo_tests::bench::{self, Guests, Paths, Plan, report};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|i| args.get(i + 1))
    };
    let mut plan = if args.iter().any(|arg| arg == "--full") {
        Plan::full()
    } else {
        Plan::quick()
    };
    // `--only W0,R --seconds 20`: those latency rows alone, one long round (to profile).
    if let Some(only) = value("--only") {
        plan.only = Some(only.split(',').map(str::to_owned).collect());
        plan.rounds = 1;
        plan.window = std::time::Duration::from_secs(
            value("--seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(10),
        );
    }
    let out = value("--out").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bench")
                .join(format!("contenders-{}.md", plan.name))
        },
        PathBuf::from,
    );
    let paths = Paths {
        server_bin: PathBuf::from(env!("CARGO_BIN_EXE_fluxo-loopback-server")),
        process_bin: PathBuf::from(env!("CARGO_BIN_EXE_fluxo-triage-process")),
        extism_runner: fluxo_tests::extism_runner().map_err(anyhow::Error::msg)?,
        extism_plugin: PathBuf::from(fluxo_tests::guests::TRIAGE_PLUGIN),
        fluxo_bin: fluxo_tests::fluxo_bin_in(profile_dir()).map_err(anyhow::Error::msg)?,
    };
    let guests = Guests::load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let report = runtime.block_on(bench::run(&paths, &guests, &plan))?;
    let markdown = report.markdown(&report::machine());
    println!("{markdown}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &markdown)?;
    eprintln!(
        "bench: done in {:.0} s; written to {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `release` for `cargo bench` (the bench profile inherits release), `debug` otherwise.
fn profile_dir() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

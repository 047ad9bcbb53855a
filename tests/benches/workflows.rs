//! Workflows' benchmark (`scripts/bench-workflows`): built-in block overhead, waiting
//! runs' memory, resume latency and timers, against issue 11's goals; printed as
//! markdown and written to `target/bench/workflows.md`. `--quick` waits 2 000 runs
//! instead of 10 000.

use std::path::PathBuf;

use fluxo_tests::bench::{Guests, report, waits};

fn main() -> std::process::ExitCode {
    let quick = std::env::args().any(|arg| arg == "--quick");
    match run(quick) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-workflows: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(quick: bool) -> anyhow::Result<()> {
    let guests = Guests::load()?;
    let fluxo_bin = fluxo_tests::fluxo_bin_in(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
    .map_err(anyhow::Error::msg)?;
    let (block_us, component_us) = waits::overhead(&guests.triage)?;
    eprintln!("bench-workflows: {block_us:.2} µs a block, {component_us:.1} µs a component run");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let count = if quick { 2_000 } else { 10_000 };
    let figures = waits::WaitFigures {
        block_us,
        component_us,
        ..runtime.block_on(waits::served(&fluxo_bin, count))?
    };
    let markdown = waits::markdown(&figures, &report::machine());
    println!("{markdown}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/workflows.md");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, markdown)?;
    Ok(())
}

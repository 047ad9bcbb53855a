//! The Extism contender of Fluxo's benchmarks, as a process of its own (Extism's
//! wasmtime 43 cannot share a binary with Fluxo's wasmtime 48).
//!
//! `fluxo-extism-runner PLUGIN EVENT MODE COUNT` compiles the plug-in once, then:
//! - `once`: one fresh plug-in runs the action; prints its output and effects;
//! - `fresh`: COUNT runs, each in a fresh plug-in instantiated from the compiled one;
//! - `warm`: COUNT calls of one plug-in kept alive (no isolation between runs);
//! - `throughput`: COUNT fresh runs spread over two threads (the bench's two workers).
//!
//! It prints one JSON object: `samples_ns` (per-run latency) or `elapsed_ns`, and for
//! `once`, `output` and `effects`. Compilation happens before any timing.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use extism::{CompiledPlugin, Manifest, PTR, Plugin, PluginBuilder, UserData, Wasm, host_fn};

/// Linear memory cap for each plug-in, as for Fluxo's runs: 16 MiB in 64 KiB pages.
const MAX_PAGES: u32 = 256;

thread_local! {
    /// Effects of the run on this thread: host functions run on the caller's thread.
    static EFFECTS: RefCell<Vec<serde_json::Value>> = const { RefCell::new(Vec::new()) };
}

host_fn!(set_field(name: String, value: String) {
    EFFECTS.with(|effects| effects.borrow_mut().push(serde_json::json!(["set_field", name, value])));
    Ok(())
});

host_fn!(add_tag(tag: String) {
    EFFECTS.with(|effects| effects.borrow_mut().push(serde_json::json!(["add_tag", tag])));
    Ok(())
});

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("fluxo-extism-runner: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<serde_json::Value, extism::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [plugin, event, mode, count] = args.as_slice() else {
        return Err(extism::Error::msg(
            "usage: fluxo-extism-runner PLUGIN EVENT once|fresh|warm|throughput COUNT",
        ));
    };
    let count: usize = count.parse()?;
    let event = std::fs::read_to_string(event)?;
    let module = std::fs::read(plugin)?;
    let manifest = Manifest::new([Wasm::data(module)]).with_memory_max(MAX_PAGES);
    let compiled = CompiledPlugin::new(
        PluginBuilder::new(manifest)
            .with_wasi(false)
            .with_cache_disabled()
            .with_function("set_field", [PTR, PTR], [], UserData::new(()), set_field)
            .with_function("add_tag", [PTR], [], UserData::new(()), add_tag),
    )?;
    match mode.as_str() {
        "once" => {
            let output = fresh_run(&compiled, &event)?;
            let effects = EFFECTS.with(|effects| effects.take());
            Ok(serde_json::json!({ "output": output, "effects": effects }))
        }
        "fresh" => {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                fresh_run(&compiled, &event)?;
                samples.push(elapsed_ns(started));
                EFFECTS.with(|effects| effects.borrow_mut().clear());
            }
            Ok(serde_json::json!({ "samples_ns": samples }))
        }
        "warm" => {
            let mut plugin = Plugin::new_from_compiled(&compiled)?;
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                let _: String = plugin.call("run", event.as_str())?;
                samples.push(elapsed_ns(started));
                EFFECTS.with(|effects| effects.borrow_mut().clear());
            }
            Ok(serde_json::json!({ "samples_ns": samples }))
        }
        "throughput" => {
            let next = AtomicUsize::new(0);
            let started = Instant::now();
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| -> Result<(), extism::Error> {
                            while next.fetch_add(1, Ordering::Relaxed) < count {
                                fresh_run(&compiled, &event)?;
                                EFFECTS.with(|effects| effects.borrow_mut().clear());
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for worker in workers {
                    worker
                        .join()
                        .map_err(|_| extism::Error::msg("a worker panicked"))??;
                }
                Ok::<(), extism::Error>(())
            })?;
            Ok(serde_json::json!({ "elapsed_ns": elapsed_ns(started), "count": count }))
        }
        other => Err(extism::Error::msg(format!("unknown mode {other:?}"))),
    }
}

/// One run in a fresh plug-in instantiated from the compiled one.
fn fresh_run(compiled: &CompiledPlugin, event: &str) -> Result<String, extism::Error> {
    let mut plugin = Plugin::new_from_compiled(compiled)?;
    plugin.call::<&str, String>("run", event)
}

fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

//! The benchmark's contenders, once each: they must all do the same work (same output,
//! same effects), or the ratios in `BENCHMARKS.md` compare different things.

use std::path::PathBuf;

use fluxo_tests::bench::contenders::Observed;
use fluxo_tests::bench::server::LoopbackServer;
use fluxo_tests::bench::{self, Guests, Paths};
use fluxo_tests::{extism_runner, fluxo_bin, guests};

fn paths() -> Paths {
    Paths {
        server_bin: PathBuf::from(env!("CARGO_BIN_EXE_fluxo-loopback-server")),
        process_bin: PathBuf::from(env!("CARGO_BIN_EXE_fluxo-triage-process")),
        extism_runner: extism_runner().unwrap_or_else(|problem| panic!("{problem}")),
        extism_plugin: PathBuf::from(guests::TRIAGE_PLUGIN),
        fluxo_bin: fluxo_bin().unwrap_or_else(|problem| panic!("{problem}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contender_produces_the_same_output_and_effects() {
    let guests = Guests::load().unwrap();
    let expected = Observed::expected(&fluxo_triage::sample_event()).unwrap();
    assert_eq!(expected.output["priority"], "high");
    let observed = bench::smoke(&paths(), &guests).await.unwrap();
    let labels: Vec<&str> = observed.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "N0", "W0", "R", "R-epoch", "R-fuel", "R-none", "W0-core", "R-core", "Q", "X", "P",
            "Q-warm", "X-warm"
        ]
    );
    for (label, seen) in &observed {
        assert_eq!(seen, &expected, "{label} differs from the native logic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_pair_fetches_the_same_response() {
    let guests = Guests::load().unwrap();
    let server = LoopbackServer::start(&paths().server_bin).await.unwrap();
    let [native, fluxo] = bench::http_entrants(&server, &guests).unwrap();
    let observe = |entrant: &bench::measure::Entrant| match entrant {
        bench::measure::Entrant::Local(contender) => contender.clone(),
        bench::measure::Entrant::Extism { .. } => panic!("not a local contender"),
    };
    let native = observe(&native).observe().await.unwrap();
    let fluxo = observe(&fluxo).observe().await.unwrap();
    assert_eq!(
        native.output,
        serde_json::json!({"status": 200, "body": "ok"})
    );
    assert_eq!(fluxo.output, native.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_runs_are_counted_and_all_finish() {
    let guests = Guests::load().unwrap();
    let mut server = LoopbackServer::start(&paths().server_bin).await.unwrap();
    let parked = bench::parked::measure(&mut server, &guests.fetch, 20)
        .await
        .unwrap();
    assert_eq!(parked.in_flight, 20);
    assert!(parked.maps_total > 0);
}

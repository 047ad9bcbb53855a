//! The loopback HTTP server of the egress benchmarks: `GET /fast` is answered at once,
//! `GET /park` is held until a line arrives on stdin (see `fluxo_tests::bench::server`).

fn main() -> std::process::ExitCode {
    fluxo_tests::bench::server::child_main()
}

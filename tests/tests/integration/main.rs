//! Integration tests: real guest components, hostile guests, real HTTP servers on
//! 127.0.0.1, and the `fluxo` binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    reason = "tests fail loudly; test helpers are pub within the test binary"
)]

mod bench_smoke;
mod capabilities;
mod cli;
mod cluster;
mod contacts;
mod crash;
mod durable;
mod egress;
mod email;
mod examples;
mod hooks;
mod languages;
mod limits;
mod loading;
mod replay;
mod secrets;
mod served;
mod server;
mod support;
mod uploads;
mod versions;
mod workflows;

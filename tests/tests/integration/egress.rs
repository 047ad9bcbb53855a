//! Egress on real sockets: internal addresses in every notation, a rebinding resolver,
//! redirect chains, and servers that hang, trickle or never stop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxo_egress::{BoxFuture, Resolve};
use fluxo_sandbox::{AllowRule, Config, RunOptions, RunReport, Runtime};
use fluxo_tests::guests;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Upstream, event, guest, loopback_config};

/// A tenant allowed to reach any host on any port: only the blocked ranges protect.
fn open_config() -> Config {
    let mut config = Config::default();
    config.http.tenant_allow.insert(
        "acme".into(),
        vec![AllowRule {
            any_port: true,
            ..AllowRule::host("*")
        }],
    );
    config
}

async fn fetch(runtime: &Runtime, input: Value) -> RunReport {
    let action = runtime.load(&guest(guests::FETCH)).unwrap();
    let report = runtime
        .run(
            &action,
            &event("fetch", json!({}), input),
            RunOptions::new(),
        )
        .await;
    assert!(report.succeeded(), "{report:#?}");
    report
}

fn error_of(report: &RunReport) -> &str {
    report.outcome.as_ref().unwrap().output["error"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn internal_addresses_are_refused_in_every_notation() {
    let upstream = Upstream::start(|_| (200, "{}".into())).await;
    let p = upstream.addr.port();
    let runtime = Runtime::builder().config(open_config()).build().unwrap();
    let urls = [
        format!("http://127.0.0.1:{p}/"),
        format!("http://127.0.0.2:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://127.0.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0x7f.0x0.0x0.0x1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://017700000001:{p}/"),
        format!("http://127.000.000.001:{p}/"),
        format!("http://0:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://localhost:{p}/"),
        format!("http://LOCALHOST:{p}/"),
        format!("http://localhost.:{p}/"),
        format!("http://127.0.0.1.:{p}/"),
        format!("http://127%2E0%2E0%2E1:{p}/"),
        format!("http://\u{2460}\u{2461}\u{2466}.0.0.1:{p}/"),
        format!("http://127\u{3002}0\u{3002}0\u{3002}1:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[0:0:0:0:0:0:0:1]:{p}/"),
        format!("http://[::]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://[::127.0.0.1]:{p}/"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/"),
        format!("http://[2002:7f00:1::]:{p}/"),
        format!("http://allowed.example@127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}#@allowed.example/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://198.18.0.1/".to_owned(),
        "http://224.0.0.1/".to_owned(),
        "http://255.255.255.255/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://[ff02::1]/".to_owned(),
        format!("https://127.0.0.1:{p}/"),
        format!("ftp://127.0.0.1:{p}/"),
        "file:///etc/passwd".to_owned(),
    ];
    assert!(urls.len() >= 40);
    for url in &urls {
        let report = fetch(&runtime, json!({ "url": url })).await;
        let error = error_of(&report);
        assert!(
            error.starts_with("http request denied"),
            "{url} was not denied: {error:?} {:?}",
            report.outcome
        );
        let recorded = report.http[0].error.as_deref().unwrap_or("");
        assert!(
            recorded.starts_with("denied: "),
            "{url}: the report must say why: {recorded:?}"
        );
    }
    assert!(
        upstream.received().is_empty(),
        "an internal address was reached"
    );
}

/// Answers every name with fixed addresses, in order.
struct FixedResolver(Vec<IpAddr>);

impl Resolve for FixedResolver {
    fn resolve<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        let addresses = self.0.clone();
        Box::pin(async move { Ok(addresses) })
    }
}

#[tokio::test]
async fn a_rebinding_resolver_never_reaches_a_blocked_address() {
    // 127.0.0.2 stands for a public address: the operator allows exactly it. 127.0.0.1
    // on the same port is the internal service the resolver tries to smuggle in.
    let public =
        Upstream::start_on("127.0.0.2:0".parse().unwrap(), |_| (200, "public".into())).await;
    let port = public.addr.port();
    let internal = Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], port)), |_| {
        (200, "internal".into())
    })
    .await;
    let mut config = open_config();
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.2/32".parse().unwrap());
    for answer in [
        vec!["127.0.0.1", "127.0.0.2"],
        vec!["127.0.0.2", "127.0.0.1"],
    ] {
        let resolver = FixedResolver(answer.iter().map(|a| a.parse().unwrap()).collect());
        let runtime = Runtime::builder()
            .config(config.clone())
            .resolver(Arc::new(resolver))
            .build()
            .unwrap();
        for _ in 0..3 {
            let report = fetch(
                &runtime,
                json!({ "url": format!("http://rebind.test:{port}/") }),
            )
            .await;
            assert_eq!(
                report.outcome.as_ref().unwrap().output["body"],
                "public",
                "{report:#?}"
            );
        }
    }
    let only_internal = FixedResolver(vec!["127.0.0.1".parse().unwrap()]);
    let runtime = Runtime::builder()
        .config(config)
        .resolver(Arc::new(only_internal))
        .build()
        .unwrap();
    let report = fetch(
        &runtime,
        json!({ "url": format!("http://rebind.test:{port}/") }),
    )
    .await;
    assert!(error_of(&report).contains("loopback"), "{report:#?}");
    assert!(
        internal.received().is_empty(),
        "the internal service was reached"
    );
    assert_eq!(public.received().len(), 6);
}

#[tokio::test]
async fn redirects_are_rechecked_at_every_hop() {
    let internal = Upstream::start(|_| (200, "internal".into())).await;
    let internal_url = internal.url();
    let hub = Upstream::start_with_headers(move |request| {
        let path = request.uri.as_str();
        let to = |location: String| (302, String::new(), vec![("location".to_owned(), location)]);
        if path == "/to-internal" {
            to(internal_url.clone())
        } else if path == "/to-metadata" {
            to("http://169.254.169.254/latest/meta-data/".to_owned())
        } else if path == "/to-localhost" {
            to(internal_url.replace("127.0.0.1", "localhost"))
        } else if path == "/loop" {
            to("/loop".to_owned())
        } else if let Some(n) = path.strip_prefix("/hop/") {
            let n: u32 = n.parse().unwrap();
            if n == 0 {
                (200, "arrived".into(), vec![])
            } else {
                to(format!("/hop/{}", n - 1))
            }
        } else {
            (404, String::new(), vec![])
        }
    })
    .await;
    // Only the hub's own port is allowed; its loopback address is allowed explicitly.
    let mut config = Config::default();
    config.http.allow.push(AllowRule {
        port: Some(hub.addr.port()),
        ..AllowRule::host("127.0.0.1")
    });
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.1/32".parse().unwrap());
    let runtime = Runtime::builder().config(config).build().unwrap();
    let url = |path: &str| json!({ "url": format!("{}{path}", hub.url()) });

    for path in ["/to-internal", "/to-metadata", "/to-localhost"] {
        let report = fetch(&runtime, url(path)).await;
        assert!(
            error_of(&report).starts_with("http request denied"),
            "{path}: {report:#?}"
        );
        assert_eq!(report.http[0].redirects.len(), 1);
    }
    assert!(internal.received().is_empty());

    let report = fetch(&runtime, url("/hop/5")).await;
    assert_eq!(report.outcome.as_ref().unwrap().output["body"], "arrived");
    assert_eq!(report.http[0].redirects.len(), 5);

    let before = hub.received().len();
    let report = fetch(&runtime, url("/hop/10")).await;
    assert!(
        error_of(&report).contains("more than 5 redirects"),
        "{report:#?}"
    );
    let report = fetch(&runtime, url("/loop")).await;
    assert!(
        error_of(&report).contains("more than 5 redirects"),
        "{report:#?}"
    );
    assert_eq!(
        hub.received().len() - before,
        12,
        "6 requests per chain, then it stops"
    );
}

#[tokio::test]
async fn redirects_rewrite_methods_and_drop_credentials_across_origins() {
    let other = Upstream::start_on("127.0.0.2:0".parse().unwrap(), |_| (200, "other".into())).await;
    let other_origin = format!("http://127.0.0.2:{}", other.addr.port());
    let hub = Upstream::start_with_headers(move |request| match request.uri.as_str() {
        "/see-other" => (
            303,
            String::new(),
            vec![("location".into(), "/landing".into())],
        ),
        "/temporary" => (
            307,
            String::new(),
            vec![("location".into(), "/landing".into())],
        ),
        "/elsewhere" => (
            307,
            String::new(),
            vec![("location".into(), format!("{other_origin}/landing"))],
        ),
        _ => (200, "landed".into(), vec![]),
    })
    .await;
    let mut config = open_config();
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.1/32".parse().unwrap());
    config
        .http
        .allow_private_cidrs
        .push("127.0.0.2/32".parse().unwrap());
    let runtime = Runtime::builder().config(config).build().unwrap();
    let post = |path: &str| {
        json!({
            "url": format!("{}{path}", hub.url()),
            "method": "POST",
            "headers": [["authorization", "Bearer t"], ["content-type", "text/plain"]],
            "body": "payload",
        })
    };

    fetch(&runtime, post("/see-other")).await;
    fetch(&runtime, post("/temporary")).await;
    fetch(&runtime, post("/elsewhere")).await;
    let hub_seen = hub.received();
    let landing: Vec<_> = hub_seen.iter().filter(|r| r.uri == "/landing").collect();
    assert_eq!(
        (landing[0].method.as_str(), landing[0].body.len()),
        ("GET", 0),
        "303 becomes a GET"
    );
    assert_eq!(
        (landing[1].method.as_str(), landing[1].body.as_slice()),
        ("POST", b"payload".as_slice()),
        "307 keeps it"
    );
    assert_eq!(
        landing[1].header("authorization"),
        Some("Bearer t"),
        "same origin keeps credentials"
    );
    let crossed = &other.received()[0];
    assert_eq!(crossed.method, "POST");
    assert_eq!(
        crossed.header("authorization"),
        None,
        "credentials never cross origins"
    );
}

/// A raw TCP server on 127.0.0.1 that runs `behave` on each connection.
async fn raw_server<F, Fut>(behave: F) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>)
where
    F: Fn(tokio::net::TcpStream, Arc<std::sync::atomic::AtomicU64>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(behave(stream, counter.clone()));
        }
    });
    (addr, written)
}

async fn drain_request(stream: &mut tokio::net::TcpStream) {
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await;
}

fn hostile_runtime(port: u16) -> Runtime {
    let mut config = loopback_config(port);
    config.http.first_byte_timeout_ms = 500;
    config.http.total_timeout_ms = 1_500;
    config.http.max_response_body_bytes = 64 << 10;
    config.limits.deadline_ms = 10_000;
    Runtime::builder().config(config).build().unwrap()
}

const MARGIN: Duration = Duration::from_millis(1_500);

/// Fetches from `addr` through a host with a 500 ms first-byte timeout and checks the
/// exchange was cut off at that timeout (plus a margin for a loaded machine).
async fn assert_cut_off_at_first_byte(addr: SocketAddr, label: &str) {
    let started = Instant::now();
    let report = fetch(
        &hostile_runtime(addr.port()),
        json!({ "url": format!("http://{addr}/") }),
    )
    .await;
    assert_eq!(error_of(&report), "http request timed out");
    let took = Duration::from_millis(report.http[0].duration_ms);
    eprintln!("{label}: aborted after {took:?} (first-byte timeout 500 ms)");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(500) + MARGIN,
        "{took:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500) + MARGIN,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_first_byte() {
    let (addr, _) = raw_server(|mut stream, _| async move {
        drain_request(&mut stream).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    assert_cut_off_at_first_byte(addr, "never-answering server").await;
}

#[tokio::test]
async fn a_slowloris_server_is_cut_off() {
    let (addr, _) = raw_server(|mut stream, _| async move {
        drain_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await;
        for _ in 0..600 {
            if stream.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_cut_off_at_first_byte(addr, "slowloris server").await;
}

async fn endless_body(content_length: Option<u64>) -> (RunReport, Duration) {
    let (addr, _) = raw_server(move |mut stream, written| async move {
        drain_request(&mut stream).await;
        let head = match content_length {
            Some(length) => format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n"),
            None => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
        };
        let _ = stream.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 8192];
        loop {
            let framed = if content_length.is_some() {
                chunk.clone()
            } else {
                [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat()
            };
            if stream.write_all(&framed).await.is_err() {
                return;
            }
            written.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await;
    let started = Instant::now();
    let report = fetch(
        &hostile_runtime(addr.port()),
        json!({ "url": format!("http://{addr}/") }),
    )
    .await;
    (report, started.elapsed())
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let (report, elapsed) = endless_body(None).await;
    assert_eq!(error_of(&report), "http response too large");
    let read = report.http[0].response_bytes;
    eprintln!("endless chunked body: read {read} bytes for a 65536-byte cap, in {elapsed:?}");
    assert!(
        read > 64 << 10 && read <= (64 << 10) + (64 << 10),
        "read {read} bytes"
    );
    assert!(elapsed < MARGIN, "{elapsed:?}");
}

#[tokio::test]
async fn a_false_content_length_is_not_trusted() {
    // Claims 1 GiB: the cap still stops it at 64 KiB plus one buffer.
    let (report, _) = endless_body(Some(1 << 30)).await;
    assert_eq!(error_of(&report), "http response too large");
    let read = report.http[0].response_bytes;
    eprintln!("Content-Length 1 GiB, endless body: read {read} bytes for a 65536-byte cap");
    assert!(read <= (64 << 10) + (64 << 10));
    // Claims less than it sends: only the claimed bytes are read.
    let (addr, _) = raw_server(|mut stream, _| async move {
        drain_request(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and a lot more")
            .await;
    })
    .await;
    let report = fetch(
        &hostile_runtime(addr.port()),
        json!({ "url": format!("http://{addr}/") }),
    )
    .await;
    assert_eq!(report.outcome.as_ref().unwrap().output["body"], "hello");
}

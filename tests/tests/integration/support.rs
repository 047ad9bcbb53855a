//! Shared helpers: guest bytes, a recording upstream server, runtimes wired to
//! inspectable backends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fluxo_sandbox::{Config, Contact, Event, MemoryContacts, MemoryMailer, MemoryState, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The bytes of a guest component built by `build.rs`.
pub fn guest(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Status, body and extra headers of a reply.
pub type Reply = (u16, String, Vec<(String, String)>);

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// A real HTTP server on a loopback address answering with a handler and recording
/// requests.
pub struct Upstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// On 127.0.0.1, answering JSON bodies.
    pub async fn start(
        handler: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// On `addr` (any 127.x address), answering JSON bodies.
    pub async fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        Self::serve(addr, move |request| {
            let (status, body) = handler(request);
            (status, body, Vec::new())
        })
        .await
    }

    /// On 127.0.0.1, with extra response headers.
    pub async fn start_with_headers(
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::serve("127.0.0.1:0".parse().unwrap(), handler).await
    }

    async fn serve(
        addr: SocketAddr,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let handler = handler.clone();
                            let log = log.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().to_vec())
                                    .unwrap_or_default();
                                let received = Received {
                                    method: parts.method.to_string(),
                                    uri: parts.uri.to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.to_str().unwrap_or("").to_owned())
                                        })
                                        .collect(),
                                    body,
                                };
                                let (status, body, headers) = handler(&received);
                                log.lock().unwrap().push(received);
                                let mut response = hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json");
                                for (name, value) in headers {
                                    response = response.header(name, value);
                                }
                                Ok::<_, Infallible>(
                                    response.body(Full::new(Bytes::from(body))).unwrap(),
                                )
                            }
                        });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration that allows plain HTTP to 127.0.0.1:`port` — and nothing else — with
/// the tenant `acme`'s secrets.
pub fn loopback_config(port: u16) -> Config {
    let mut config = fluxo_tests::bench::loopback_config(port).unwrap();
    let secrets = config.secrets.entry("acme".to_owned()).or_default();
    secrets.insert("crm_token".to_owned(), "crm-secret-7f3a".to_owned());
    secrets.insert("billing_token".to_owned(), "billing-secret-91c2".to_owned());
    secrets.insert("api_token".to_owned(), "api-secret-d00d".to_owned());
    config
}

/// A runtime with inspectable in-memory backends.
pub struct Host {
    pub runtime: Runtime,
    pub contacts: Arc<MemoryContacts>,
    pub outbox: Arc<MemoryMailer>,
    pub state: Arc<MemoryState>,
}

impl Host {
    pub fn new(config: Config) -> Self {
        let contacts = Arc::new(MemoryContacts::new());
        let outbox = Arc::new(MemoryMailer::new());
        let state = Arc::new(MemoryState::new());
        let runtime = Runtime::builder()
            .config(config)
            .contacts(contacts.clone())
            .mailer(outbox.clone())
            .state(state.clone())
            .build()
            .unwrap();
        Self {
            runtime,
            contacts,
            outbox,
            state,
        }
    }
}

/// An event for tenant `acme` about contact `c1` with `fields` and `input`.
pub fn event(action: &str, fields: serde_json::Value, input: serde_json::Value) -> Event {
    let mut event = Event::new("acme".parse().unwrap(), action.parse().unwrap());
    event.contact = Contact {
        id: Some("c1".parse().unwrap()),
        fields: serde_json::from_value(fields).unwrap(),
        tags: Vec::new(),
    };
    event.input = input.into();
    event
}

/// Runs `action` as a host that commits through `store` does (`fluxo run --data-dir`):
/// executes, then applies a success's effects in one store transaction.
pub async fn run_into(
    store: &Arc<dyn fluxo_store::Store>,
    runtime: &Runtime,
    action: &fluxo_sandbox::ActionComponent,
    event: &Event,
) -> fluxo_sandbox::RunReport {
    let mut execution = runtime
        .execute(action, event, &fluxo_sandbox::RunOptions::new())
        .await;
    if !execution.succeeded() {
        return execution.into_report(false);
    }
    let refusal = store
        .apply_effects(
            &event.tenant,
            event.contact.id.as_ref(),
            fluxo_store::ContactOwner::Embedded,
            execution.meta.run_id,
            execution.journal.effects(),
        )
        .await
        .unwrap();
    match refusal {
        None => execution.into_report(true),
        Some(error) => {
            execution.end = Err(error);
            execution.into_report(false)
        }
    }
}

/// A loopback HTTP server that answers every request after `delay` with `status` and
/// `body` (a slow upstream, without blocking the test's runtime).
pub async fn slow_server(
    delay: std::time::Duration,
    status: u16,
    body: &'static str,
) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let _ = stream.read(&mut buffer).await;
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Opens loopback to webhooks: the receivers tests start listen there (guests' private
/// ranges do not open it for webhooks).
pub fn webhooks_on_loopback(config: &mut fluxo_server::Config) {
    config
        .server
        .webhook_private_cidrs
        .push("127.0.0.1/32".parse().unwrap());
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Verifies `received`'s Standard Webhooks signature with `secret` as of `now`.
///
/// # Errors
/// The verifier's refusal.
pub fn verify_signed(
    secret: &str,
    received: &Received,
    now: i64,
) -> Result<(), fluxo_orchestrator::signing::VerifyError> {
    fluxo_orchestrator::signing::verify(
        secret,
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        received.header("webhook-signature"),
        &received.body,
        now,
        fluxo_orchestrator::signing::DEFAULT_TOLERANCE_SECONDS,
    )
}

//! `fluxo:action/http`: outbound requests under the egress policy, recorded per run.
//!
//! The client never follows redirects (a 3xx goes back to the guest as it is), connects
//! only to addresses the policy checked (the resolver filters them, IP literals are
//! checked before), caps request and response bodies while streaming, and bounds every
//! exchange by the shortest of the guest's timeout, the policy's and the run's deadline.

pub mod policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use self::policy::{Denied, EgressPolicy};
use super::{BoxFuture, RunState};
use crate::bindings::fluxo::action::http::{Host, HttpError, HttpRequest, HttpResponse, Method};
use crate::config::HttpPolicy;
use crate::executor::limits::Quota;
use crate::{Error, Result};

/// Headers the host owns: a guest may not set them.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "expect",
];

/// One HTTP exchange of a run, as recorded in its report (secrets redacted there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpExchange {
    /// The method.
    pub method: String,
    /// The URL asked for.
    pub url: String,
    /// The status, when a response came.
    pub status: Option<u16>,
    /// The request headers the guest set.
    pub request_headers: Vec<(String, String)>,
    /// The response headers.
    pub response_headers: Vec<(String, String)>,
    /// Request body size.
    pub request_bytes: u64,
    /// Response body bytes read.
    pub response_bytes: u64,
    /// Time from start to the end of the body.
    pub duration_ms: u64,
    /// Why there was no response (`denied: …`, `timeout`, …).
    pub error: Option<String>,
}

type Connector = HttpsConnector<HttpConnector<CheckedResolver>>;

/// The shared outbound client and its policy.
pub(crate) struct Egress {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<EgressPolicy>,
    config: HttpPolicy,
}

impl Egress {
    pub(crate) fn new(config: &HttpPolicy) -> Result<Self> {
        let policy = Arc::new(EgressPolicy::new(config));
        let mut http = HttpConnector::new_with_resolver(CheckedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|error| Error::Config(format!("tls: {error}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            client,
            policy,
            config: config.clone(),
        })
    }

    /// Sends `request` with at most `budget` body bytes left in the run and `time_left`
    /// before its deadline; fills in `record`.
    async fn send(
        &self,
        request: HttpRequest,
        budget: u64,
        time_left: Duration,
        record: &mut HttpExchange,
    ) -> Result<HttpResponse, HttpError> {
        let url = url::Url::parse(&request.url)
            .map_err(|error| HttpError::Invalid(format!("bad URL: {error}")))?;
        self.policy
            .check_url(&url)
            .map_err(|Denied(reason)| HttpError::Denied(reason))?;
        let body = request.body.unwrap_or_default();
        record.request_bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
        if record.request_bytes > self.config.max_request_body_bytes {
            return Err(HttpError::Invalid(format!(
                "request body of {} bytes is over the {}-byte cap",
                record.request_bytes, self.config.max_request_body_bytes
            )));
        }
        if record.request_bytes > budget {
            return Err(HttpError::LimitExceeded);
        }
        let mut builder = http::Request::builder()
            .method(method(request.method))
            .uri(url.as_str());
        if request.headers.len()
            > usize::try_from(self.config.max_request_headers).unwrap_or(usize::MAX)
        {
            return Err(HttpError::Invalid(format!(
                "more than {} request headers",
                self.config.max_request_headers
            )));
        }
        for (name, value) in &request.headers {
            let (name, value) = check_header(name, value)?;
            builder = builder.header(name, value);
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| HttpError::Invalid(error.to_string()))?;

        let asked = request
            .timeout_ms
            .map_or(Duration::MAX, |ms| Duration::from_millis(u64::from(ms)));
        let timeout = asked
            .min(Duration::from_millis(self.config.total_timeout_ms))
            .min(time_left);
        let cap = self
            .config
            .max_response_body_bytes
            .min(budget - record.request_bytes);
        let over_budget = cap < self.config.max_response_body_bytes;
        match tokio::time::timeout(timeout, self.exchange(outgoing, cap, record)).await {
            Ok(Err(HttpError::TooLarge)) if over_budget => Err(HttpError::LimitExceeded),
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout),
        }
    }

    async fn exchange(
        &self,
        outgoing: http::Request<Full<Bytes>>,
        cap: u64,
        record: &mut HttpExchange,
    ) -> Result<HttpResponse, HttpError> {
        let response = self
            .client
            .request(outgoing)
            .await
            .map_err(|error| connect_error(&error))?;
        let status = response.status().as_u16();
        record.status = Some(status);
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        record.response_headers.clone_from(&headers);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| HttpError::Connect(format!("reading the body: {error}")))?;
            if let Some(data) = frame.data_ref() {
                record.response_bytes += u64::try_from(data.len()).unwrap_or(u64::MAX);
                if record.response_bytes > cap {
                    return Err(HttpError::TooLarge);
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body: bytes,
        })
    }
}

fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
        Method::Head => http::Method::HEAD,
    }
}

fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HttpError> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HttpError::Invalid(format!("bad header name {name:?}")))?;
    let lower = header.as_str();
    if HOST_OWNED_HEADERS.contains(&lower) || lower.starts_with("proxy-") {
        return Err(HttpError::Invalid(format!(
            "header {lower} is set by the host"
        )));
    }
    // `from_str` refuses CR, LF, NUL and other control characters.
    let value = HeaderValue::from_str(value)
        .map_err(|_| HttpError::Invalid(format!("bad value for header {lower}")))?;
    Ok((header, value))
}

/// Maps a client error to the guest's error, recovering a policy denial from the resolver.
fn connect_error(error: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(denied) = current.downcast_ref::<Denied>() {
            return HttpError::Denied(denied.0.clone());
        }
        if let Some(denied) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Denied>())
        {
            return HttpError::Denied(denied.0.clone());
        }
        source = current.source();
    }
    let mut text = error.to_string();
    if let Some(cause) = std::error::Error::source(error) {
        text = format!("{text}: {cause}");
    }
    HttpError::Connect(text)
}

/// Resolves a name and returns only the addresses the policy allows, so the connection
/// is pinned to checked addresses; fails with [`Denied`] when none is left.
#[derive(Clone)]
struct CheckedResolver {
    policy: Arc<EgressPolicy>,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_denial = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(denied) => {
                        first_denial.get_or_insert(denied);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let Denied(reason) = first_denial
                    .unwrap_or_else(|| Denied("the name resolved to no address".to_owned()));
                return Err(std::io::Error::other(Denied(format!("{host}: {reason}"))));
            }
            Ok(allowed.into_iter())
        })
    }
}

impl Host for RunState {
    async fn request(
        &mut self,
        request: HttpRequest,
    ) -> wasmtime::Result<Result<HttpResponse, HttpError>> {
        self.charge(Quota::HttpRequests)?;
        let started = Instant::now();
        let mut record = HttpExchange {
            method: method(request.method).to_string(),
            url: request.url.clone(),
            status: None,
            request_headers: request.headers.clone(),
            response_headers: Vec::new(),
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            error: None,
        };
        let budget = self
            .limits
            .quotas
            .http_bytes
            .saturating_sub(self.counters.http_bytes);
        let services = self.services.clone();
        let result = services
            .egress
            .send(request, budget, self.remaining(), &mut record)
            .await;
        record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record.error = result.as_ref().err().map(describe);
        self.counters.http_bytes = self
            .counters
            .http_bytes
            .saturating_add(record.request_bytes)
            .saturating_add(record.response_bytes);
        self.http_log.push(record);
        Ok(result)
    }
}

fn describe(error: &HttpError) -> String {
    match error {
        HttpError::Denied(reason) => format!("denied: {reason}"),
        HttpError::Timeout => "timeout".to_owned(),
        HttpError::TooLarge => "too-large".to_owned(),
        HttpError::Invalid(reason) => format!("invalid: {reason}"),
        HttpError::Connect(reason) => format!("connect: {reason}"),
        HttpError::LimitExceeded => "limit-exceeded".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_owned_and_malformed_headers_are_refused() {
        assert!(check_header("x-api-key", "abc").is_ok());
        for (name, value) in [
            ("Host", "evil"),
            ("content-length", "1"),
            ("Transfer-Encoding", "chunked"),
            ("proxy-authorization", "x"),
            ("x-a", "b\r\nx-injected: 1"),
            ("x-a", "b\0"),
            ("bad name", "v"),
            ("x-a\r\n", "v"),
        ] {
            assert!(check_header(name, value).is_err(), "{name:?}: {value:?}");
        }
    }
}

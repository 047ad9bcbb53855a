//! `fluxo:action/http`: outbound requests under the egress policy, recorded per run.
//!
//! Every hop is checked: the URL against the tenant's allowlist (and an IP-literal host
//! against the blocked ranges) before it is sent, and a name's addresses after it is
//! resolved, the connection being pinned to the addresses that passed. Redirects are
//! followed here, not by the client: at most `max_redirects`, each hop re-checked,
//! credentials dropped across origins, methods rewritten per RFC 9110. Request headers
//! and bodies are capped; the response body is capped while it streams; the exchange is
//! bounded by connect, first-byte and total timeouts, the last cut to the run's deadline.

pub mod policy;
pub mod resolve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use url::Url;

use self::policy::{Denied, EgressPolicy};
use self::resolve::{CheckedResolver, Resolve};
use super::RunState;
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

/// How much of a response body an exchange record keeps.
pub const RECORDED_BODY_BYTES: usize = 16 << 10;

/// Headers dropped when a redirect leaves the origin they were meant for.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// One HTTP exchange of a run, as recorded in its report (secrets redacted there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpExchange {
    /// The method.
    pub method: String,
    /// The URL asked for.
    pub url: String,
    /// The URLs redirected to, in order.
    pub redirects: Vec<String>,
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
    /// The start of the response body as text (at most [`RECORDED_BODY_BYTES`]; secrets
    /// redacted in reports).
    pub response_body: String,
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

/// One request as it goes out (changed by redirects).
struct Outgoing {
    method: http::Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Egress {
    pub(crate) fn new(config: &HttpPolicy, resolver: Arc<dyn Resolve>) -> Result<Self> {
        let policy = Arc::new(EgressPolicy::new(config));
        let mut http = HttpConnector::new_with_resolver(CheckedResolver {
            policy: policy.clone(),
            resolver,
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
            .http1_max_buf_size(
                usize::try_from(config.max_response_header_bytes)
                    .unwrap_or(usize::MAX)
                    .max(8192),
            )
            .build(https);
        Ok(Self {
            client,
            policy,
            config: config.clone(),
        })
    }

    /// Sends `request` for `tenant` with at most `budget` body bytes left in the run and
    /// `time_left` before its deadline, following redirects; fills in `record`.
    async fn send(
        &self,
        tenant: &str,
        request: HttpRequest,
        budget: u64,
        time_left: Duration,
        record: &mut HttpExchange,
    ) -> Result<HttpResponse, HttpError> {
        let mut outgoing = self.prepare(
            request.method,
            &request.url,
            &request.headers,
            request.body,
            budget,
            record,
        )?;
        let asked = request
            .timeout_ms
            .map_or(Duration::MAX, |ms| Duration::from_millis(u64::from(ms)));
        let total = asked
            .min(Duration::from_millis(self.config.total_timeout_ms))
            .min(time_left);
        let deadline = Instant::now() + total;
        let cap = self
            .config
            .max_response_body_bytes
            .min(budget.saturating_sub(record.request_bytes));
        let over_budget = cap < self.config.max_response_body_bytes;
        let mut hops = 0;
        loop {
            self.policy
                .check_url(tenant, &outgoing.url)
                .map_err(|Denied(reason)| HttpError::Denied(reason))?;
            let first_byte = Duration::from_millis(self.config.first_byte_timeout_ms)
                .min(deadline.saturating_duration_since(Instant::now()));
            let response =
                tokio::time::timeout(first_byte, self.client.request(outgoing.to_request()?))
                    .await
                    .map_err(|_| HttpError::Timeout)?
                    .map_err(|error| connect_error(&error))?;
            let status = response.status();
            record.status = Some(status.as_u16());
            record.response_headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let location = response.headers().get(http::header::LOCATION).cloned();
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if hops >= self.config.max_redirects {
                    return Err(HttpError::Denied(format!(
                        "more than {} redirects",
                        self.config.max_redirects
                    )));
                }
                hops += 1;
                outgoing = outgoing.redirect(status, &location)?;
                record.redirects.push(outgoing.url.to_string());
                continue;
            }
            let headers = record.response_headers.clone();
            let body = response.into_body();
            let remaining = deadline.saturating_duration_since(Instant::now());
            return match tokio::time::timeout(remaining, read_body(body, cap, record)).await {
                Err(_) => Err(HttpError::Timeout),
                Ok(Err(HttpError::TooLarge)) if over_budget => Err(HttpError::LimitExceeded),
                Ok(Err(error)) => Err(error),
                Ok(Ok(body)) => {
                    let kept = body
                        .get(..RECORDED_BODY_BYTES.min(body.len()))
                        .unwrap_or_default();
                    record.response_body = String::from_utf8_lossy(kept).into_owned();
                    Ok(HttpResponse {
                        status: status.as_u16(),
                        headers,
                        body,
                    })
                }
            };
        }
    }

    /// Checks the guest's request and turns it into an [`Outgoing`].
    fn prepare(
        &self,
        method_in: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        budget: u64,
        record: &mut HttpExchange,
    ) -> Result<Outgoing, HttpError> {
        let url =
            Url::parse(url).map_err(|error| HttpError::Invalid(format!("bad URL: {error}")))?;
        let body = body.unwrap_or_default();
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
        if headers.len() > usize::try_from(self.config.max_request_headers).unwrap_or(usize::MAX) {
            return Err(HttpError::Invalid(format!(
                "more than {} request headers",
                self.config.max_request_headers
            )));
        }
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if u64::try_from(header_bytes).unwrap_or(u64::MAX) > self.config.max_request_header_bytes {
            return Err(HttpError::Invalid(format!(
                "request headers of {header_bytes} bytes are over the {}-byte cap",
                self.config.max_request_header_bytes
            )));
        }
        let headers = headers
            .iter()
            .map(|(name, value)| check_header(name, value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Outgoing {
            method: method(method_in),
            url,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl Outgoing {
    fn to_request(&self) -> Result<http::Request<Full<Bytes>>, HttpError> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|error| HttpError::Invalid(error.to_string()))
    }

    /// The request to send after a redirect to `location` (RFC 9110 §15.4): 303, and 301
    /// or 302 after a POST, become a GET without a body; credentials are dropped when the
    /// origin changes.
    fn redirect(
        mut self,
        status: http::StatusCode,
        location: &HeaderValue,
    ) -> Result<Self, HttpError> {
        let location = location
            .to_str()
            .map_err(|_| HttpError::Invalid("redirect location is not text".to_owned()))?;
        let next = self.url.join(location).map_err(|error| {
            HttpError::Invalid(format!("bad redirect location {location:?}: {error}"))
        })?;
        let to_get = status == http::StatusCode::SEE_OTHER && self.method != http::Method::HEAD
            || matches!(status.as_u16(), 301 | 302) && self.method == http::Method::POST;
        if to_get {
            self.method = http::Method::GET;
            self.body = Bytes::new();
            self.headers
                .retain(|(name, _)| name != http::header::CONTENT_TYPE);
        }
        if next.origin() != self.url.origin() {
            self.headers
                .retain(|(name, _)| !CREDENTIAL_HEADERS.contains(&name.as_str()));
        }
        self.url = next;
        Ok(self)
    }
}

/// Reads a body, failing with `too-large` as soon as it passes `cap` (whatever
/// `Content-Length` claimed).
async fn read_body(
    mut body: hyper::body::Incoming,
    cap: u64,
    record: &mut HttpExchange,
) -> Result<Vec<u8>, HttpError> {
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
    Ok(bytes)
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
            redirects: Vec::new(),
            status: None,
            request_headers: request.headers.clone(),
            response_headers: Vec::new(),
            request_bytes: 0,
            response_bytes: 0,
            response_body: String::new(),
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
            .send(&self.tenant, request, budget, self.remaining(), &mut record)
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

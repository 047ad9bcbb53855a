//! Fluxo's egress: the only way a run's HTTP leaves the host.
//!
//! Every hop is checked: the URL against the tenant's allowlist (and an IP-literal host
//! against the blocked ranges) before it is sent, and a name's addresses after it is
//! resolved, the connection being pinned to the addresses that passed ([`resolve`]).
//! Redirects are followed here, not by the client: at most `max_redirects`, each hop
//! re-checked, methods rewritten per RFC 9110 §15.4, and on a hop to another origin
//! every header the guest set is dropped except [`CROSS_ORIGIN_SAFE_HEADERS`]. Request
//! headers and bodies are capped; the response body is capped while it streams; the
//! exchange is bounded by connect, first-byte and total timeouts, the last cut to the
//! run's deadline.
//!
//! The client speaks its own types ([`EgressRequest`], [`EgressResponse`],
//! [`EgressError`]); guests' WIT types and no-code blocks convert to them.

pub mod config;
pub mod policy;
pub mod resolve;
pub mod special;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxo_core::HttpExchange;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

pub use self::config::{AllowRule, HttpPolicy, InvalidPolicy};
use self::policy::{Denied, EgressPolicy};
use self::resolve::CheckedResolver;
pub use self::resolve::{Resolve, SystemResolver};

/// A boxed future, for traits that must be object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// The only headers a guest set that follow a redirect to another origin (plus
/// `content-type` when the body is kept): everything else — `authorization`, cookies,
/// `x-api-key` and any custom credential — was meant for the first origin only.
pub const CROSS_ORIGIN_SAFE_HEADERS: &[&str] = &["accept", "accept-language", "user-agent"];

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
}

impl Method {
    /// The method as `http` knows it.
    #[must_use]
    pub fn as_http(self) -> http::Method {
        match self {
            Self::Get => http::Method::GET,
            Self::Post => http::Method::POST,
            Self::Put => http::Method::PUT,
            Self::Patch => http::Method::PATCH,
            Self::Delete => http::Method::DELETE,
            Self::Head => http::Method::HEAD,
        }
    }

    /// Whether the method is safe to repeat (RFC 9110 §9.2.1: GET and HEAD).
    #[must_use]
    pub fn is_safe(self) -> bool {
        matches!(self, Self::Get | Self::Head)
    }

    /// Parses `GET`, `post`, … (case-insensitive).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "HEAD" => Self::Head,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_http().as_str())
    }
}

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRequest {
    /// The method.
    pub method: Method,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// A timeout for the whole exchange; capped by the policy and the time left.
    pub timeout: Option<Duration>,
}

impl EgressRequest {
    /// A request with no headers or body.
    #[must_use]
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Whether the request sets header `name` (case-insensitive).
    #[must_use]
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(have, _)| have.eq_ignore_ascii_case(name))
    }
}

/// A response received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body, at most the policy's response cap.
    pub body: Vec<u8>,
}

impl EgressResponse {
    /// The first value of header `name` (lowercase).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(have, _)| have == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a request did not produce a response. Values for the guest, never traps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The egress policy refused the request; the reason names the rule.
    #[error("denied: {0}")]
    Denied(String),
    /// The exchange did not finish in time.
    #[error("timeout")]
    Timeout,
    /// The response body exceeded the cap.
    #[error("too-large")]
    TooLarge,
    /// The request itself is malformed (bad URL, bad header).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The connection could not be made or broke.
    #[error("connect: {0}")]
    Connect(String),
    /// The run's budget of HTTP bytes is used up.
    #[error("limit-exceeded")]
    LimitExceeded,
}

impl EgressError {
    /// The error a record's `error` text names (its `Display` form, as recorded), for a
    /// replay to answer the guest what it was answered; `None` for other text.
    #[must_use]
    pub fn from_record(text: &str) -> Option<Self> {
        let (kind, detail) = text.split_once(": ").unwrap_or((text, ""));
        match kind {
            "denied" => Some(Self::Denied(detail.to_owned())),
            "timeout" if detail.is_empty() => Some(Self::Timeout),
            "too-large" if detail.is_empty() => Some(Self::TooLarge),
            "invalid" => Some(Self::Invalid(detail.to_owned())),
            "connect" => Some(Self::Connect(detail.to_owned())),
            "limit-exceeded" if detail.is_empty() => Some(Self::LimitExceeded),
            _ => None,
        }
    }
}

/// Why the egress client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressSetupError {
    /// The TLS roots or provider could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// The system's resolver configuration could not be read.
    #[error("dns: {0}")]
    Dns(String),
    /// The policy is inconsistent.
    #[error(transparent)]
    Policy(#[from] InvalidPolicy),
}

type Connector = HttpsConnector<HttpConnector<CheckedResolver>>;

/// The shared outbound client and its policy.
pub struct Egress {
    client: Client<Connector, Full<Bytes>>,
    policy: Arc<EgressPolicy>,
    config: HttpPolicy,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One request as it goes out (changed by redirects).
struct Outgoing {
    method: http::Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// What a call may still use: body bytes, time, and bytes of response body to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Request plus response body bytes left in the run's budget.
    pub bytes: u64,
    /// Time left before the run's deadline.
    pub time: Duration,
    /// Bytes of the response body the exchange record may keep (the rest of the run's
    /// recording budget); a longer body is recorded cut and marked truncated.
    pub record_bytes: u64,
}

impl Egress {
    /// A client for `config`, resolving names with `resolver` (every address is still
    /// checked against the policy).
    ///
    /// # Errors
    /// [`EgressSetupError`] when the policy is inconsistent or TLS cannot be set up.
    pub fn new(config: &HttpPolicy, resolver: Arc<dyn Resolve>) -> Result<Self, EgressSetupError> {
        config.check()?;
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
            .map_err(|error| EgressSetupError::Tls(error.to_string()))?
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

    /// The policy this client enforces.
    #[must_use]
    pub fn config(&self) -> &HttpPolicy {
        &self.config
    }

    /// Sends `request` for `tenant` within `allowance`, following redirects; fills in
    /// `record` (its `method`, `url` and `request_headers` are the caller's to set).
    ///
    /// # Errors
    /// [`EgressError`]: a policy refusal, a timeout, a cap, a malformed request, a
    /// connection failure, or the run's byte budget.
    pub async fn send(
        &self,
        tenant: &str,
        request: EgressRequest,
        allowance: Allowance,
        record: &mut HttpExchange,
    ) -> Result<EgressResponse, EgressError> {
        let mut outgoing = self.prepare(&request, allowance.bytes, record)?;
        let total = request
            .timeout
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(self.config.total_timeout_ms))
            .min(allowance.time);
        let deadline = Instant::now() + total;
        let cap = self
            .config
            .max_response_body_bytes
            .min(allowance.bytes.saturating_sub(record.request_bytes));
        let over_budget = cap < self.config.max_response_body_bytes;
        let mut hops = 0;
        loop {
            self.policy
                .check_url(tenant, &outgoing.url)
                .map_err(|Denied(reason)| EgressError::Denied(reason))?;
            let first_byte = Duration::from_millis(self.config.first_byte_timeout_ms)
                .min(deadline.saturating_duration_since(Instant::now()));
            let response =
                tokio::time::timeout(first_byte, self.client.request(outgoing.to_request()?))
                    .await
                    .map_err(|_| EgressError::Timeout)?
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
                    return Err(EgressError::Denied(format!(
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
                Err(_) => Err(EgressError::Timeout),
                Ok(Err(EgressError::TooLarge)) if over_budget => Err(EgressError::LimitExceeded),
                Ok(Err(error)) => Err(error),
                Ok(Ok(body)) => {
                    record.record_response_body(
                        &body,
                        usize::try_from(allowance.record_bytes).unwrap_or(usize::MAX),
                    );
                    Ok(EgressResponse {
                        status: status.as_u16(),
                        headers,
                        body,
                    })
                }
            };
        }
    }

    /// Checks the request and turns it into an [`Outgoing`].
    fn prepare(
        &self,
        request: &EgressRequest,
        budget: u64,
        record: &mut HttpExchange,
    ) -> Result<Outgoing, EgressError> {
        let url = Url::parse(&request.url)
            .map_err(|error| EgressError::Invalid(format!("bad URL: {error}")))?;
        let body = request.body.clone().unwrap_or_default();
        record.request_bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
        if record.request_bytes > self.config.max_request_body_bytes {
            return Err(EgressError::Invalid(format!(
                "request body of {} bytes is over the {}-byte cap",
                record.request_bytes, self.config.max_request_body_bytes
            )));
        }
        if record.request_bytes > budget {
            return Err(EgressError::LimitExceeded);
        }
        let headers = &request.headers;
        if headers.len() > usize::try_from(self.config.max_request_headers).unwrap_or(usize::MAX) {
            return Err(EgressError::Invalid(format!(
                "more than {} request headers",
                self.config.max_request_headers
            )));
        }
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if u64::try_from(header_bytes).unwrap_or(u64::MAX) > self.config.max_request_header_bytes {
            return Err(EgressError::Invalid(format!(
                "request headers of {header_bytes} bytes are over the {}-byte cap",
                self.config.max_request_header_bytes
            )));
        }
        let headers = headers
            .iter()
            .map(|(name, value)| check_header(name, value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Outgoing {
            method: request.method.as_http(),
            url,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl Outgoing {
    fn to_request(&self) -> Result<http::Request<Full<Bytes>>, EgressError> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|error| EgressError::Invalid(error.to_string()))
    }

    /// The request to send after a redirect to `location` (RFC 9110 §15.4): 303, and 301
    /// or 302 after a POST, become a GET without a body; on a hop to another origin only
    /// [`CROSS_ORIGIN_SAFE_HEADERS`] (and `content-type` with a kept body) follow.
    fn redirect(
        mut self,
        status: http::StatusCode,
        location: &HeaderValue,
    ) -> Result<Self, EgressError> {
        let location = location
            .to_str()
            .map_err(|_| EgressError::Invalid("redirect location is not text".to_owned()))?;
        let next = self.url.join(location).map_err(|error| {
            EgressError::Invalid(format!("bad redirect location {location:?}: {error}"))
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
            let keeps_body = !self.body.is_empty();
            self.headers.retain(|(name, _)| {
                CROSS_ORIGIN_SAFE_HEADERS.contains(&name.as_str())
                    || keeps_body && name == http::header::CONTENT_TYPE
            });
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
) -> Result<Vec<u8>, EgressError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|error| EgressError::Connect(format!("reading the body: {error}")))?;
        if let Some(data) = frame.data_ref() {
            record.response_bytes += u64::try_from(data.len()).unwrap_or(u64::MAX);
            if record.response_bytes > cap {
                return Err(EgressError::TooLarge);
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}

/// Checks one header a guest set: a valid name the host does not own, a value without
/// control characters.
///
/// # Errors
/// [`EgressError::Invalid`] naming the header.
pub fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), EgressError> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| EgressError::Invalid(format!("bad header name {name:?}")))?;
    let lower = header.as_str();
    if HOST_OWNED_HEADERS.contains(&lower) || lower.starts_with("proxy-") {
        return Err(EgressError::Invalid(format!(
            "header {lower} is set by the host"
        )));
    }
    // `from_str` refuses CR, LF, NUL and other control characters.
    let value = HeaderValue::from_str(value)
        .map_err(|_| EgressError::Invalid(format!("bad value for header {lower}")))?;
    Ok((header, value))
}

/// Maps a client error to the guest's error, recovering a policy denial from the resolver.
fn connect_error(error: &hyper_util::client::legacy::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(denied) = current.downcast_ref::<Denied>() {
            return EgressError::Denied(denied.0.clone());
        }
        if let Some(denied) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Denied>())
        {
            return EgressError::Denied(denied.0.clone());
        }
        source = current.source();
    }
    let mut text = error.to_string();
    if let Some(cause) = std::error::Error::source(error) {
        text = format!("{text}: {cause}");
    }
    EgressError::Connect(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_error_reads_back_as_the_error_it_was() {
        for error in [
            EgressError::Denied("127.0.0.1 is in a blocked range (loopback)".into()),
            EgressError::Timeout,
            EgressError::TooLarge,
            EgressError::Invalid("bad URL: relative URL without a base".into()),
            EgressError::Connect("connection refused: a: b".into()),
            EgressError::LimitExceeded,
        ] {
            assert_eq!(EgressError::from_record(&error.to_string()), Some(error));
        }
        for text in ["", "timeout: later", "refused: x", "[REDACTED]"] {
            assert_eq!(EgressError::from_record(text), None, "{text:?}");
        }
    }

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

    #[test]
    fn a_cross_origin_redirect_keeps_only_safe_headers() {
        let headers = [
            ("authorization", "Bearer t"),
            ("x-api-key", "k"),
            ("cookie", "s=1"),
            ("x-custom-token", "t"),
            ("accept", "application/json"),
            ("user-agent", "fluxo-test"),
            ("content-type", "application/json"),
        ]
        .iter()
        .map(|(n, v)| check_header(n, v).unwrap())
        .collect();
        let outgoing = Outgoing {
            method: http::Method::PUT,
            url: Url::parse("https://a.example/x").unwrap(),
            headers,
            body: Bytes::from_static(b"{}"),
        };
        let same = |o: &Outgoing| {
            o.headers
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        };
        let location = HeaderValue::from_static("https://b.example/y");
        let moved = outgoing
            .redirect(http::StatusCode::TEMPORARY_REDIRECT, &location)
            .unwrap();
        assert_eq!(same(&moved), ["accept", "user-agent", "content-type"]);
        let location = HeaderValue::from_static("/z");
        let again = moved
            .redirect(http::StatusCode::SEE_OTHER, &location)
            .unwrap();
        assert_eq!(again.method, http::Method::GET);
        assert_eq!(
            same(&again),
            ["accept", "user-agent"],
            "303 drops the body and its type"
        );
    }
}

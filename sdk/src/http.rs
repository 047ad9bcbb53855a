//! Outbound HTTP (WIT `fluxo:action/http`).
//!
//! Requests are made by the host under the tenant's egress policy: a URL the policy does
//! not allow fails with [`HttpError::Denied`]. Requests happen live, even when the run
//! fails later.
//!
//! ```no_run
//! use fluxo_sdk::prelude::*;
//!
//! # fn demo() -> fluxo_sdk::Result<()> {
//! let response = http::post("https://crm.example/api/deals")
//!     .bearer("token")
//!     .json(&json!({ "deal": { "name": "Ana" } }))
//!     .send()?
//!     .error_for_status()?;
//! let body: serde_json::Value = response.json()?;
//! # let _ = body;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result, backend};

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The method's name, upper case.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request being built. Finish it with [`Request::send`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The timeout asked for, in milliseconds.
    pub timeout_ms: Option<u32>,
    build_error: Option<Error>,
}

/// Starts a request with any method.
pub fn request(method: Method, url: impl Into<String>) -> Request {
    Request {
        method,
        url: url.into(),
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
        build_error: None,
    }
}

/// Starts a GET request.
pub fn get(url: impl Into<String>) -> Request {
    request(Method::Get, url)
}

/// Starts a POST request.
pub fn post(url: impl Into<String>) -> Request {
    request(Method::Post, url)
}

/// Starts a PUT request.
pub fn put(url: impl Into<String>) -> Request {
    request(Method::Put, url)
}

/// Starts a PATCH request.
pub fn patch(url: impl Into<String>) -> Request {
    request(Method::Patch, url)
}

/// Starts a DELETE request.
pub fn delete(url: impl Into<String>) -> Request {
    request(Method::Delete, url)
}

/// Starts a HEAD request.
pub fn head(url: impl Into<String>) -> Request {
    request(Method::Head, url)
}

impl Request {
    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    #[must_use]
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    #[must_use]
    pub fn json(mut self, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.header("content-type", "application/json")
            }
            Err(error) => {
                self.build_error = Some(error.into());
                self
            }
        }
    }

    /// Sets a raw body.
    #[must_use]
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Asks for a timeout; the host caps it at its own limit.
    #[must_use]
    pub fn timeout_ms(mut self, millis: u32) -> Self {
        self.timeout_ms = Some(millis);
        self
    }

    /// Sends the request and waits for the response.
    ///
    /// # Errors
    /// Any [`HttpError`], or the error met while building the body.
    pub fn send(self) -> Result<Response> {
        if let Some(error) = self.build_error {
            return Err(error);
        }
        backend::with(|host| host.http_request(&self)).map_err(Error::from)
    }
}

/// A response received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// This response when it is 2xx; otherwise an error that is retryable for 5xx, 408
    /// Request Timeout (RFC 9110 §15.5.9), 425 Too Early (RFC 8470 §5.2) and 429 Too Many
    /// Requests (RFC 6585 §4), and final for the other codes: the same request would be
    /// refused again.
    ///
    /// # Errors
    /// When the status is not 2xx.
    pub fn error_for_status(self) -> Result<Self> {
        if self.is_success() {
            return Ok(self);
        }
        let message = format!("upstream answered {}", self.status);
        if self.status >= 500 || matches!(self.status, 408 | 425 | 429) {
            Err(Error::retryable(message))
        } else {
            Err(Error::new(message))
        }
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    /// When the body is not UTF-8.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|error| Error::new(format!("body: {error}")))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    /// When the body is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(Error::from)
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The egress policy refused the request.
    Denied(String),
    /// The exchange did not finish in time.
    Timeout,
    /// The response body exceeded the host's cap.
    TooLarge,
    /// The request is malformed.
    Invalid(String),
    /// The connection failed.
    Connect(String),
    /// The run's budget of HTTP bytes is used up.
    LimitExceeded,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(reason) => write!(f, "http request denied: {reason}"),
            Self::Timeout => f.write_str("http request timed out"),
            Self::TooLarge => f.write_str("http response too large"),
            Self::Invalid(reason) => write!(f, "invalid http request: {reason}"),
            Self::Connect(reason) => write!(f, "http connection failed: {reason}"),
            Self::LimitExceeded => f.write_str("http byte budget of the run used up"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Timeout | HttpError::Connect(_) => Error::retryable(error.to_string()),
            _ => Error::new(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<Response> {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
        .error_for_status()
    }

    #[test]
    fn only_answers_a_retry_may_change_are_retryable() {
        assert!(answer(204).is_ok());
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(answer(status).unwrap_err().is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!answer(status).unwrap_err().is_retryable(), "{status}");
        }
    }
}

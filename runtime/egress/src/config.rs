//! The egress policy's settings: allow rules, reopened ranges, timeouts and caps.
//! Deny-all by default.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Outbound HTTP policy. Deny-all by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPolicy {
    /// Rules that allow a destination for every tenant; a request no rule allows is
    /// denied.
    pub allow: Vec<AllowRule>,
    /// Further rules per tenant (`[[http.tenant_allow.acme]]`).
    pub tenant_allow: BTreeMap<String, Vec<AllowRule>>,
    /// Ranges normally blocked (loopback, private, link-local, …) that the operator
    /// allows anyway, e.g. `127.0.0.1/32` for tests. Empty by default.
    pub allow_private_cidrs: Vec<IpNet>,
    /// Time to establish a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time from sending a request to its response headers, in milliseconds (a server
    /// that never answers, or trickles its headers, hits this).
    pub first_byte_timeout_ms: u64,
    /// Time for a whole exchange, redirects included, unless the guest asks for less,
    /// in milliseconds.
    pub total_timeout_ms: u64,
    /// Redirects followed (each hop is checked like the first request).
    pub max_redirects: u32,
    /// Largest request body sent, in bytes.
    pub max_request_body_bytes: u64,
    /// Largest response body read, in bytes; past it the request fails with `too-large`.
    pub max_response_body_bytes: u64,
    /// Most request headers a guest may set.
    pub max_request_headers: u32,
    /// Most bytes of request header names and values.
    pub max_request_header_bytes: u64,
    /// Most bytes of response headers read.
    pub max_response_header_bytes: u64,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            allow_private_cidrs: Vec::new(),
            tenant_allow: BTreeMap::new(),
            connect_timeout_ms: 3_000,
            first_byte_timeout_ms: 5_000,
            total_timeout_ms: 10_000,
            max_redirects: 5,
            max_request_body_bytes: 1 << 20,
            max_response_body_bytes: 4 << 20,
            max_request_headers: 32,
            max_request_header_bytes: 16 << 10,
            max_response_header_bytes: 64 << 10,
        }
    }
}

/// One allowed destination: `host` is exact (`api.example.com`), a subdomain pattern
/// (`*.example.com`, which does not match `example.com` itself) or `*` (any host; the
/// blocked address ranges still apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `http` or `https`; both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host or `*.`-pattern, lowercase.
    pub host: String,
    /// The port; the scheme's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Any port instead of `port`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_port: bool,
}

impl AllowRule {
    /// A rule for `host` on the scheme's default port, any scheme.
    pub fn host(host: impl Into<String>) -> Self {
        Self {
            scheme: None,
            host: host.into(),
            port: None,
            any_port: false,
        }
    }

    /// Checks the rule's form.
    ///
    /// # Errors
    /// [`InvalidPolicy`] for a scheme other than http/https or a host that is not a
    /// lowercase name or `*.` pattern.
    pub fn check(&self) -> Result<(), InvalidPolicy> {
        if let Some(scheme) = &self.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(InvalidPolicy(format!(
                "http.allow: scheme {scheme:?} is not http or https"
            )));
        }
        if self.host == "*" {
            return Ok(());
        }
        let host = self.host.strip_prefix("*.").unwrap_or(&self.host);
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !valid {
            return Err(InvalidPolicy(format!(
                "http.allow: host {:?} must be a lowercase name or `*.` pattern",
                self.host
            )));
        }
        Ok(())
    }
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress policy: {0}")]
pub struct InvalidPolicy(pub String);

impl HttpPolicy {
    /// Checks every rule and that the timeouts are usable.
    ///
    /// # Errors
    /// [`InvalidPolicy`] naming the first bad value.
    pub fn check(&self) -> Result<(), InvalidPolicy> {
        for (name, value) in [
            ("http.connect_timeout_ms", self.connect_timeout_ms),
            ("http.first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("http.total_timeout_ms", self.total_timeout_ms),
        ] {
            if value == 0 {
                return Err(InvalidPolicy(format!("{name} must be greater than zero")));
            }
            if value > fluxo_core::limits::MAX_DEADLINE_MS {
                return Err(InvalidPolicy(format!("{name} {value} ms is over a day")));
            }
        }
        for rule in self
            .allow
            .iter()
            .chain(self.tenant_allow.values().flatten())
        {
            rule.check()?;
        }
        Ok(())
    }
}

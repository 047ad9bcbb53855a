//! Configuration: limits, egress policy and secrets, with safe defaults.
//!
//! Every run has fuel, a deadline and a memory cap; outbound HTTP is denied until a rule
//! allows it. Files are TOML with unknown keys refused and units in the names.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use crate::{Error, Result};

/// Per-run limits. Defaults are the values a tenant gets unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) a run may burn.
    pub fuel: u64,
    /// Wall-clock time a run may take, host calls included.
    pub deadline_ms: u64,
    /// Linear memory a run may grow to.
    pub max_memory_bytes: u64,
    /// Elements a table may grow to.
    pub max_table_elements: u32,
    /// Bytes of output JSON and replies a run may return.
    pub max_output_bytes: u64,
    /// Bytes of log lines (and stdout/stderr) kept; the rest is dropped and marked.
    pub max_log_bytes: u64,
    /// How long one host call (other than HTTP, which has its own timeouts) may take.
    pub host_call_timeout_ms: u64,
    /// Per-kind host-call quotas; exceeding one ends the run.
    pub quotas: Quotas,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            deadline_ms: 5_000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 20_000,
            max_output_bytes: 256 << 10,
            max_log_bytes: 64 << 10,
            host_call_timeout_ms: 2_000,
            quotas: Quotas::default(),
        }
    }
}

/// Per-action limit overrides: each may only lower the host's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Fuel, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Deadline, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Memory, at most the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
}

impl Limits {
    /// These limits tightened by `overrides`.
    ///
    /// # Errors
    /// When an override is zero or above the host's limit (it may only tighten).
    pub fn with_overrides(&self, overrides: &LimitOverrides) -> Result<Self> {
        let checks = [
            ("fuel", self.fuel, overrides.fuel),
            ("deadline_ms", self.deadline_ms, overrides.deadline_ms),
            (
                "max_memory_bytes",
                self.max_memory_bytes,
                overrides.max_memory_bytes,
            ),
        ];
        for (name, host, wanted) in checks {
            match wanted {
                Some(0) => return Err(Error::Config(format!("{name} must be greater than zero"))),
                Some(value) if value > host => {
                    return Err(Error::Config(format!(
                        "{name} {value} is above the host's limit of {host}"
                    )));
                }
                _ => {}
            }
        }
        Ok(self.tightened_by(overrides))
    }
}

impl Limits {
    /// These limits with each override applied where it is tighter (what runs use:
    /// should the host's limits be lowered after an override was set, the host's win).
    #[must_use]
    pub fn tightened_by(&self, overrides: &LimitOverrides) -> Self {
        let tighter = |host: u64, wanted: Option<u64>| {
            wanted.filter(|v| *v > 0).map_or(host, |v| v.min(host))
        };
        Self {
            fuel: tighter(self.fuel, overrides.fuel),
            deadline_ms: tighter(self.deadline_ms, overrides.deadline_ms),
            max_memory_bytes: tighter(self.max_memory_bytes, overrides.max_memory_bytes),
            ..self.clone()
        }
    }
}

/// How many host calls of each kind a run may make.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// HTTP requests.
    pub http_requests: u32,
    /// Request plus response body bytes over all HTTP requests of the run.
    pub http_bytes: u64,
    /// E-mails queued.
    pub emails: u32,
    /// Field writes.
    pub field_writes: u32,
    /// Tag additions and removals.
    pub tag_changes: u32,
    /// State writes and deletes.
    pub state_writes: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            http_requests: 20,
            http_bytes: 16 << 20,
            emails: 5,
            field_writes: 100,
            tag_changes: 50,
            state_writes: 50,
        }
    }
}

/// Outbound HTTP policy. Deny-all by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// Time to establish a connection.
    pub connect_timeout_ms: u64,
    /// Time from sending a request to its response headers (a server that never
    /// answers, or trickles its headers, hits this).
    pub first_byte_timeout_ms: u64,
    /// Time for a whole exchange, redirects included, unless the guest asks for less.
    pub total_timeout_ms: u64,
    /// Redirects followed (each hop is checked like the first request).
    pub max_redirects: u32,
    /// Largest request body sent.
    pub max_request_body_bytes: u64,
    /// Largest response body read; past it the request fails with `too-large`.
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `http` or `https`; both when absent.
    #[serde(default)]
    pub scheme: Option<String>,
    /// The host or `*.`-pattern, lowercase.
    pub host: String,
    /// The port; the scheme's default when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// Any port instead of `port`.
    #[serde(default)]
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
}

/// The whole configuration of a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Limits for every run.
    pub limits: Limits,
    /// Outbound HTTP policy.
    pub http: HttpPolicy,
    /// Secrets by tenant, then by name.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Where committed e-mails go; without it they stay in the outbox.
    pub email: Option<crate::delivery::SmtpConfig>,
    /// The server's registry and scheduler.
    pub server: ServerSettings,
}

/// Settings of `fluxo serve`: uploads and the run queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The largest component accepted.
    pub max_component_bytes: usize,
    /// Time one upload's compilation may take before it is killed.
    pub compile_timeout_ms: u64,
    /// Address space the compiler may map.
    pub compile_max_memory_bytes: u64,
    /// Runs executing at once.
    pub workers: usize,
    /// Runs of one tenant executing at once.
    pub per_tenant: usize,
    /// Accepted runs waiting for a worker; past it, submits get 429.
    pub queue_capacity: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_component_bytes: crate::registry::DEFAULT_MAX_COMPONENT_BYTES,
            compile_timeout_ms: 60_000,
            compile_max_memory_bytes: 2 << 30,
            workers: 8,
            per_tenant: 4,
            queue_capacity: 1024,
        }
    }
}

impl Config {
    /// Parses TOML text and checks it.
    ///
    /// # Errors
    /// [`Error::Config`] on a syntax error, an unknown key or an inconsistent value.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self =
            toml::from_str(text).map_err(|error| Error::Config(error.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Reads and checks a TOML file.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] when it cannot be read; as [`Config::from_toml`] otherwise.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Self::from_toml(&text)
    }

    /// Checks that every limit is usable.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad value.
    pub fn check(&self) -> Result<()> {
        let limits = &self.limits;
        let positive = [
            ("limits.fuel", limits.fuel),
            ("limits.deadline_ms", limits.deadline_ms),
            ("limits.max_memory_bytes", limits.max_memory_bytes),
            ("limits.max_output_bytes", limits.max_output_bytes),
            ("limits.host_call_timeout_ms", limits.host_call_timeout_ms),
            ("http.connect_timeout_ms", self.http.connect_timeout_ms),
            (
                "http.first_byte_timeout_ms",
                self.http.first_byte_timeout_ms,
            ),
            ("http.total_timeout_ms", self.http.total_timeout_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(Error::Config(format!("{name} must be greater than zero")));
        }
        if limits.max_memory_bytes > crate::engine::MAX_MEMORY_BYTES {
            return Err(Error::Config(format!(
                "limits.max_memory_bytes is {} but the engine's ceiling is {}",
                limits.max_memory_bytes,
                crate::engine::MAX_MEMORY_BYTES
            )));
        }
        for rule in self
            .http
            .allow
            .iter()
            .chain(self.http.tenant_allow.values().flatten())
        {
            rule.check()?;
        }
        Ok(())
    }
}

impl AllowRule {
    fn check(&self) -> Result<()> {
        if let Some(scheme) = &self.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(Error::Config(format!(
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
            return Err(Error::Config(format!(
                "http.allow: host {:?} must be a lowercase name or `*.` pattern",
                self.host
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let config = Config::default();
        assert!(config.http.allow.is_empty());
        assert!(config.http.allow_private_cidrs.is_empty());
        assert!(config.limits.fuel > 0 && config.limits.deadline_ms > 0);
        config.check().unwrap();
    }

    #[test]
    fn overrides_only_tighten() {
        let limits = Limits::default();
        let tighter = limits
            .with_overrides(&LimitOverrides {
                fuel: Some(10),
                deadline_ms: None,
                max_memory_bytes: Some(1 << 20),
            })
            .unwrap();
        assert_eq!(
            (tighter.fuel, tighter.deadline_ms, tighter.max_memory_bytes),
            (10, limits.deadline_ms, 1 << 20)
        );
        assert!(
            limits
                .with_overrides(&LimitOverrides {
                    fuel: Some(limits.fuel + 1),
                    ..LimitOverrides::default()
                })
                .is_err()
        );
        assert!(
            limits
                .with_overrides(&LimitOverrides {
                    deadline_ms: Some(0),
                    ..LimitOverrides::default()
                })
                .is_err()
        );
        let clamped = limits.tightened_by(&LimitOverrides {
            fuel: Some(u64::MAX),
            deadline_ms: Some(7),
            max_memory_bytes: Some(0),
        });
        assert_eq!(
            (clamped.fuel, clamped.deadline_ms, clamped.max_memory_bytes),
            (limits.fuel, 7, limits.max_memory_bytes)
        );
    }

    #[test]
    fn parses_a_file_and_refuses_unknown_keys() {
        let config = Config::from_toml(
            r#"
            [limits]
            fuel = 5000
            deadline_ms = 200
            [limits.quotas]
            field_writes = 3
            [http]
            allow_private_cidrs = ["127.0.0.1/32"]
            [[http.allow]]
            host = "*.example.com"
            port = 8443
            [[http.tenant_allow.acme]]
            host = "*"
            any_port = true
            [secrets.acme]
            crm_token = "t"
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.fuel, 5000);
        assert_eq!(config.limits.quotas.field_writes, 3);
        assert_eq!(config.limits.quotas.emails, Quotas::default().emails);
        assert_eq!(config.http.allow.len(), 1);
        assert!(config.http.tenant_allow["acme"][0].any_port);
        assert!(Config::from_toml("[limits]\nfuel_units = 1").is_err());
        assert!(Config::from_toml("[limits]\nfuel = 0").is_err());
        assert!(Config::from_toml("[[http.allow]]\nhost = \"Evil Host\"").is_err());
    }
}

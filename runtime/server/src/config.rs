//! The configuration file of `fluxo serve` and `fluxo run` (TOML, unknown keys refused,
//! units in the names): each layer's section, assembled here.

use std::collections::BTreeMap;
use std::path::Path;

use fluxo_core::Limits;
use fluxo_egress::HttpPolicy;
use fluxo_orchestrator::dispatch::smtp::SmtpConfig;
use fluxo_sandbox::PoolShape;
use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Limits for every run.
    pub limits: Limits,
    /// Outbound HTTP policy.
    pub http: HttpPolicy,
    /// Secrets by tenant, then by name (`fluxo run`; the server takes them from its API).
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Where committed e-mails go; without it they wait in the outbox.
    pub email: Option<SmtpConfig>,
    /// The server's registry, scheduler and store.
    pub server: ServerSettings,
    /// What one run may hold in the instance pool.
    pub engine: PoolShape,
    /// Where the shared state lives: the embedded SQLite store by default, PostgreSQL
    /// for several nodes.
    pub store: StoreSettings,
}

/// The `[store]` section.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgres://user:password@host:port/database` for PostgreSQL (also
    /// `FLUXO_STORE_URL`); absent: SQLite in the data directory.
    pub url: Option<String>,
    /// Connections to PostgreSQL this node keeps.
    pub pool_size: usize,
    /// SQLite only: KiB of page cache set on each of its connections, at least 1; with
    /// 192 KiB each for schema and statements it makes the store's share of SQLite's
    /// process-wide soft heap limit (see
    /// `fluxo_store_sqlite::SqliteOptions::page_cache_kib`).
    pub page_cache_kib: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            page_cache_kib: fluxo_store_sqlite::SqliteOptions::default().page_cache_kib,
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        let url = self.url.as_deref().map(|url| match url.split_once('@') {
            Some((credentials, rest)) => match credentials.rsplit_once(':') {
                Some((user, _)) if user.contains("//") => format!("{user}:[REDACTED]@{rest}"),
                _ => url.to_owned(),
            },
            None => url.to_owned(),
        });
        f.debug_struct("StoreSettings")
            .field("url", &url)
            .field("pool_size", &self.pool_size)
            .field("page_cache_kib", &self.page_cache_kib)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: BTreeMap<&String, Vec<&String>> = self
            .secrets
            .iter()
            .map(|(tenant, secrets)| (tenant, secrets.keys().collect()))
            .collect();
        f.debug_struct("Config")
            .field("limits", &self.limits)
            .field("http", &self.http)
            .field("secrets (names)", &secrets)
            .field("email", &self.email)
            .field("server", &self.server)
            .field("engine", &self.engine)
            .field("store", &self.store)
            .finish()
    }
}

/// Settings of `fluxo serve`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The largest component accepted, in bytes (default 32 MiB: a Python action is about
    /// 18.5 MB, docs/languages.md).
    pub max_component_bytes: usize,
    /// Tenants with a component cap of their own, in bytes (smaller or larger than
    /// `max_component_bytes`): `[server.tenant_max_component_bytes]`, `acme = 4_194_304`.
    pub tenant_max_component_bytes: std::collections::BTreeMap<String, usize>,
    /// Time one upload's compilation may take before it is killed, in milliseconds.
    pub compile_timeout_ms: u64,
    /// Address space the compiler may map, in bytes.
    pub compile_max_memory_bytes: u64,
    /// Compiles at once (one per tenant at most).
    pub max_compiles: usize,
    /// Runs executing at once on this node.
    pub workers: usize,
    /// Runs of one tenant executing at once, over every node.
    pub per_tenant: u32,
    /// Runs of one tenant waiting to run; past it, that tenant's submits get 429.
    #[serde(alias = "queue_capacity")]
    pub backlog_per_tenant: u64,
    /// How long a worker's lease on a run lasts unless renewed, in milliseconds.
    pub lease_ms: u64,
    /// How long a node's claim on an outbox row (an e-mail, a webhook) lasts, in
    /// milliseconds: a node that dies mid-send has its rows sent by another node after
    /// this. At least 20 s (a webhook's 15 s timeout) and above `email.timeout_ms`.
    pub outbox_lease_ms: u64,
    /// Days finished runs and delivered outbox rows are kept.
    pub retention_days: u64,
    /// Tenants with a retention of their own, in days (shorter or longer than
    /// `retention_days`): `[server.tenant_retention_days]`, `acme = 7`.
    pub tenant_retention_days: std::collections::BTreeMap<String, u64>,
    /// Bytes of state one tenant may hold.
    pub tenant_state_bytes: u64,
    /// Who keeps tenants' contacts: `"embedded"` (Fluxo's contact store, changed in each
    /// run's commit) or `"platform"` (the store is left alone; each commit that changes
    /// a contact queues one signed `contact.updated` event for the tenant's endpoints).
    pub contacts: fluxo_store::ContactOwner,
    /// Tenants whose contacts someone else keeps: `[server.tenant_contacts]`,
    /// `acme = "platform"`.
    pub tenant_contacts: std::collections::BTreeMap<String, fluxo_store::ContactOwner>,
    /// This node's name (default: `node-` and a name kept in the data directory).
    pub node: Option<String>,
    /// Seconds running runs get to finish at shutdown before their leases are given
    /// back.
    pub shutdown_grace_seconds: u64,
    /// Blocked address ranges completion webhooks may reach anyway (a receiver on this
    /// machine in tests and demos). Separate from `http.allow_private_cidrs`: a webhook
    /// URL is anything a tenant types, with no allow rule naming its host.
    pub webhook_private_cidrs: Vec<ipnet::IpNet>,
}

impl ServerSettings {
    /// Who keeps each tenant's contacts: `contacts`, and each tenant's own from
    /// `tenant_contacts` (ids that do not parse are left out; `check` refuses them first).
    #[must_use]
    pub fn contact_ownership(&self) -> fluxo_store::ContactOwnership {
        fluxo_store::ContactOwnership {
            default: self.contacts,
            tenants: per_tenant(&self.tenant_contacts, |owner| *owner),
        }
    }

    /// The largest component `tenant` may upload or run, in bytes: its own from
    /// `tenant_max_component_bytes`, else `max_component_bytes`.
    #[must_use]
    pub fn max_component_bytes_for(&self, tenant: &fluxo_core::TenantId) -> usize {
        self.tenant_max_component_bytes
            .get(tenant.as_str())
            .copied()
            .unwrap_or(self.max_component_bytes)
    }

    /// Each tenant's own component cap from `tenant_max_component_bytes` (ids that do
    /// not parse are left out; `check` refuses them first).
    #[must_use]
    pub fn tenant_component_caps(&self) -> std::collections::HashMap<fluxo_core::TenantId, usize> {
        per_tenant(&self.tenant_max_component_bytes, |cap| *cap)
    }

    /// The retention the maintenance task applies: `retention_days`, and each tenant's
    /// own from `tenant_retention_days` (ids that do not parse are left out; `check`
    /// refuses them first).
    #[must_use]
    pub fn retention(&self) -> fluxo_orchestrator::maintenance::Retention {
        let days = |days: u64| std::time::Duration::from_secs(days.saturating_mul(86_400));
        fluxo_orchestrator::maintenance::Retention {
            default: days(self.retention_days),
            tenants: per_tenant(&self.tenant_retention_days, |keep| days(*keep)),
        }
    }
}

/// A `[server.tenant_…]` table keyed by tenant id, each value mapped by `value` (ids that
/// do not parse are left out; `Config::check` refuses them first).
fn per_tenant<T, U, C>(table: &std::collections::BTreeMap<String, T>, value: impl Fn(&T) -> U) -> C
where
    C: FromIterator<(fluxo_core::TenantId, U)>,
{
    table
        .iter()
        .filter_map(|(tenant, v)| {
            Some((fluxo_core::TenantId::parse(tenant.as_str()).ok()?, value(v)))
        })
        .collect()
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_component_bytes: fluxo_sandbox::DEFAULT_MAX_COMPONENT_BYTES,
            tenant_max_component_bytes: std::collections::BTreeMap::new(),
            compile_timeout_ms: 60_000,
            compile_max_memory_bytes: 2 << 30,
            max_compiles: 2,
            workers: 8,
            per_tenant: 4,
            backlog_per_tenant: 50_000,
            lease_ms: 30_000,
            outbox_lease_ms: 120_000,
            retention_days: 30,
            tenant_retention_days: std::collections::BTreeMap::new(),
            tenant_state_bytes: 1 << 20,
            contacts: fluxo_store::ContactOwner::Embedded,
            tenant_contacts: std::collections::BTreeMap::new(),
            node: None,
            shutdown_grace_seconds: 10,
            webhook_private_cidrs: Vec::new(),
        }
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error, an unknown key, or a value out of bounds.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text and checks it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] on a syntax error, an unknown key or a bad value.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|error| ConfigError::Invalid(error.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Reads and checks a TOML file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when it cannot be read; as [`Config::from_toml`] otherwise.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The sandbox's part.
    #[must_use]
    pub fn sandbox(&self) -> fluxo_sandbox::Config {
        fluxo_sandbox::Config {
            limits: self.limits.clone(),
            http: self.http.clone(),
            secrets: self.secrets.clone(),
        }
    }

    /// Checks every section.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.sandbox()
            .check()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        let server = &self.server;
        for (name, value) in [
            (
                "server.workers",
                u64::try_from(server.workers).unwrap_or(u64::MAX),
            ),
            ("server.per_tenant", u64::from(server.per_tenant)),
            ("server.backlog_per_tenant", server.backlog_per_tenant),
            ("server.lease_ms", server.lease_ms),
            ("server.compile_timeout_ms", server.compile_timeout_ms),
            (
                "server.max_compiles",
                u64::try_from(server.max_compiles).unwrap_or(u64::MAX),
            ),
            ("store.page_cache_kib", u64::from(self.store.page_cache_kib)),
            (
                "server.max_component_bytes",
                u64::try_from(server.max_component_bytes).unwrap_or(u64::MAX),
            ),
            (
                "server.tenant_max_component_bytes",
                server
                    .tenant_max_component_bytes
                    .values()
                    .map(|cap| u64::try_from(*cap).unwrap_or(u64::MAX))
                    .min()
                    .unwrap_or(1),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be greater than zero"
                )));
            }
        }
        if server.lease_ms < 1_000 || server.lease_ms > fluxo_core::limits::MAX_DEADLINE_MS {
            return Err(ConfigError::Invalid(
                "server.lease_ms must be between 1000 and 86400000".to_owned(),
            ));
        }
        let email_timeout = self.email.as_ref().map_or(0, |email| email.timeout_ms);
        if server.outbox_lease_ms < 20_000.max(email_timeout.saturating_add(1))
            || server.outbox_lease_ms > fluxo_core::limits::MAX_DEADLINE_MS
        {
            return Err(ConfigError::Invalid(format!(
                "server.outbox_lease_ms must be at least 20000, above email.timeout_ms \
                 ({email_timeout}), and at most 86400000"
            )));
        }
        for (key, mut tenants) in [
            (
                "tenant_retention_days",
                Box::new(server.tenant_retention_days.keys()) as Box<dyn Iterator<Item = _>>,
            ),
            ("tenant_contacts", Box::new(server.tenant_contacts.keys())),
            (
                "tenant_max_component_bytes",
                Box::new(server.tenant_max_component_bytes.keys()),
            ),
        ] {
            if let Some(bad) =
                tenants.find(|tenant| fluxo_core::TenantId::parse(tenant.as_str()).is_err())
            {
                return Err(ConfigError::Invalid(format!(
                    "server.{key}: {bad:?} is not a tenant id ({})",
                    fluxo_core::ids::NAME_RULE
                )));
            }
        }
        if server.compile_timeout_ms > fluxo_core::limits::MAX_DEADLINE_MS {
            return Err(ConfigError::Invalid(
                "server.compile_timeout_ms is over a day".to_owned(),
            ));
        }
        for (name, value) in [
            (
                "engine.core_instances_per_component",
                self.engine.core_instances_per_component,
            ),
            (
                "engine.memories_per_component",
                self.engine.memories_per_component,
            ),
            (
                "engine.tables_per_component",
                self.engine.tables_per_component,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be greater than zero"
                )));
            }
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
    fn a_tenant_may_have_a_component_cap_of_its_own() {
        let config: Config = toml::from_str(
            "[server]\nmax_component_bytes = 1_000\n[server.tenant_max_component_bytes]\nacme = 50\n",
        )
        .unwrap();
        config.check().unwrap();
        let acme = fluxo_core::TenantId::parse("acme").unwrap();
        let other = fluxo_core::TenantId::parse("globex").unwrap();
        assert_eq!(config.server.max_component_bytes_for(&acme), 50);
        assert_eq!(config.server.max_component_bytes_for(&other), 1_000);
        assert_eq!(config.server.tenant_component_caps().get(&acme), Some(&50));
        assert_eq!(
            Config::default().server.max_component_bytes,
            32 << 20,
            "an 18.5 MB Python action fits the default"
        );

        for (text, says) in [
            (
                "[server.tenant_max_component_bytes]\n\"Not A Tenant\" = 50\n",
                "is not a tenant id",
            ),
            (
                "[server.tenant_max_component_bytes]\nacme = 0\n",
                "greater than zero",
            ),
            ("[server]\nmax_component_bytes = 0\n", "greater than zero"),
        ] {
            let config: Config = toml::from_str(text).unwrap();
            let error = config.check().unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_tenant_may_keep_its_runs_for_a_time_of_its_own() {
        let config: Config = toml::from_str(
            "[server]\nretention_days = 30\n[server.tenant_retention_days]\nacme = 7\n",
        )
        .unwrap();
        config.check().unwrap();
        let retention = config.server.retention();
        assert_eq!(retention.default.as_secs(), 30 * 86_400);
        assert_eq!(retention.tenants.len(), 1);
        let scopes = retention.scopes(100 * 86_400_000);
        assert_eq!(scopes.len(), 2, "acme's pass, then everyone else's");
        assert_eq!(scopes[0].before_ms, 93 * 86_400_000);
        assert_eq!(scopes[1].before_ms, 70 * 86_400_000);
        assert_eq!(
            scopes[1].except,
            [fluxo_core::TenantId::parse("acme").unwrap()]
        );

        let bad: Config =
            toml::from_str("[server.tenant_retention_days]\n\"Not A Tenant\" = 7\n").unwrap();
        assert!(bad.check().is_err());
    }

    #[test]
    fn a_tenant_s_contacts_may_be_kept_by_the_platform() {
        let config: Config =
            toml::from_str("[server.tenant_contacts]\nacme = \"platform\"\n").unwrap();
        config.check().unwrap();
        let owners = config.server.contact_ownership();
        let tenant = |id: &str| fluxo_core::TenantId::parse(id).unwrap();
        assert_eq!(
            owners.of(&tenant("acme")),
            fluxo_store::ContactOwner::Platform
        );
        assert_eq!(
            owners.of(&tenant("other")),
            fluxo_store::ContactOwner::Embedded
        );

        let everyone: Config = toml::from_str(
            "[server]\ncontacts = \"platform\"\n[server.tenant_contacts]\nacme = \"embedded\"\n",
        )
        .unwrap();
        let owners = everyone.server.contact_ownership();
        assert_eq!(
            owners.of(&tenant("acme")),
            fluxo_store::ContactOwner::Embedded
        );
        assert_eq!(
            owners.of(&tenant("other")),
            fluxo_store::ContactOwner::Platform
        );

        let bad: Config =
            toml::from_str("[server.tenant_contacts]\n\"Not A Tenant\" = \"platform\"\n").unwrap();
        assert!(bad.check().is_err());
        assert!(
            toml::from_str::<Config>("[server]\ncontacts = \"crm\"\n").is_err(),
            "an owner that is not one is refused"
        );
    }

    #[test]
    fn parses_a_file_and_refuses_unknown_keys_and_overflows() {
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
            [server]
            queue_capacity = 10
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.fuel, 5000);
        assert_eq!(config.limits.quotas.field_writes, 3);
        assert_eq!(config.server.backlog_per_tenant, 10);
        assert!(config.http.tenant_allow["acme"][0].any_port);
        assert!(Config::from_toml("[limits]\nfuel_units = 1").is_err());
        assert!(Config::from_toml("[limits]\nfuel = 0").is_err());
        assert!(Config::from_toml("[limits]\ndeadline_ms = 18446744073709551615").is_err());
        assert!(Config::from_toml("[[http.allow]]\nhost = \"Evil Host\"").is_err());
        assert!(Config::from_toml("[server]\nlease_ms = 0").is_err());
        let no_cache = Config::from_toml("[store]\npage_cache_kib = 0").unwrap_err();
        assert!(
            no_cache.to_string().contains("store.page_cache_kib"),
            "{no_cache}"
        );
        assert_eq!(
            Config::from_toml("[store]\npage_cache_kib = 64")
                .unwrap()
                .store
                .page_cache_kib,
            64
        );
        assert!(Config::from_toml("[server]\noutbox_lease_ms = 19999").is_err());
        assert!(
            Config::from_toml(
                "[server]\noutbox_lease_ms = 30000\n[email]\nurl = \"smtp://127.0.0.1:25\"\nfrom = \"a@b.test\"\ntimeout_ms = 30000"
            )
            .is_err(),
            "a claim shorter than one send would let two nodes send the same row"
        );
    }

    #[test]
    fn debug_shows_secret_names_only() {
        let config = Config::from_toml("[secrets.acme]\ncrm_token = \"s3cret-value-xyz\"").unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("crm_token") && !shown.contains("s3cret-value-xyz"),
            "{shown}"
        );
    }
}

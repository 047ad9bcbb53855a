//! Egress policy: which URLs a tenant may reach and which addresses are never dialled.
//!
//! A request passes when (1) its scheme is `http`/`https` and it carries no credentials,
//! (2) an allow rule matches its scheme, host and port, and (3) every address it will
//! connect to is outside the blocked ranges, unless the operator allowed that range.
//! IP-literal hosts are checked here; names are checked after resolution by the client's
//! resolver, which returns only the checked addresses (the connection is pinned to them).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use url::{Host, Url};

use crate::config::{AllowRule, HttpPolicy};

/// Why the policy refused a request; becomes `denied(reason)` for the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Vec<AllowRule>,
    tenant_allow: BTreeMap<String, Vec<AllowRule>>,
    allow_private: Vec<IpNet>,
}

impl EgressPolicy {
    /// The policy of `config`.
    #[must_use]
    pub fn new(config: &HttpPolicy) -> Self {
        Self {
            allow: config.allow.clone(),
            tenant_allow: config.tenant_allow.clone(),
            allow_private: config.allow_private_cidrs.clone(),
        }
    }

    /// Checks the URL's form and `tenant`'s allowlist, and an IP-literal host's range.
    ///
    /// # Errors
    /// [`Denied`] with the reason.
    pub fn check_url(&self, tenant: &str, url: &Url) -> Result<(), Denied> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(Denied(format!("scheme {scheme:?} is not http or https")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Denied("credentials in the URL are not allowed".to_owned()));
        }
        let host = url
            .host()
            .ok_or_else(|| Denied("the URL has no host".to_owned()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Denied("the URL has no port".to_owned()))?;
        let host_text = match &host {
            Host::Domain(name) => name.trim_end_matches('.').to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let mut rules = self
            .allow
            .iter()
            .chain(self.tenant_allow.get(tenant).into_iter().flatten());
        if !rules.any(|rule| rule_matches(rule, scheme, &host_text, port)) {
            return Err(Denied(format!(
                "no egress rule allows {scheme}://{host_text}:{port}"
            )));
        }
        match host {
            Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip)),
            Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip)),
            Host::Domain(_) => Ok(()),
        }
    }

    /// Checks one address the request would connect to.
    ///
    /// # Errors
    /// [`Denied`] naming the range.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        let Some(range) = blocked_range(ip) else {
            return Ok(());
        };
        let embedded = crate::special::embedded_v4(ip).map(IpAddr::V4);
        let allowed = self
            .allow_private
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)));
        if allowed {
            Ok(())
        } else {
            Err(Denied(format!(
                "address {ip} is in a blocked range ({range})"
            )))
        }
    }
}

fn rule_matches(rule: &AllowRule, scheme: &str, host: &str, port: u16) -> bool {
    let scheme_ok = rule.scheme.as_deref().is_none_or(|s| s == scheme);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port_ok = rule.any_port || rule.port.unwrap_or(default_port) == port;
    let host_ok = match rule.host.strip_prefix("*.") {
        _ if rule.host == "*" => true,
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        None => rule.host == host,
    };
    scheme_ok && port_ok && host_ok
}

/// Why `ip` is never dialled — the special-purpose range it falls in, named as the IANA
/// registries name it (`"loopback 127.0.0.0/8"`) — or `None` for ordinary unicast. The
/// table and its sources are in [`crate::special`].
#[must_use]
pub fn blocked_range(ip: IpAddr) -> Option<String> {
    crate::special::blocked(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], private: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&HttpPolicy {
            allow: hosts.iter().map(|host| AllowRule::host(*host)).collect(),
            allow_private_cidrs: private.iter().map(|n| n.parse().unwrap()).collect(),
            ..HttpPolicy::default()
        })
    }

    fn check(policy: &EgressPolicy, url: &str) -> Result<(), Denied> {
        policy.check_url("acme", &Url::parse(url).map_err(|e| Denied(e.to_string()))?)
    }

    #[test]
    fn everything_is_denied_by_default() {
        assert!(check(&EgressPolicy::default(), "https://example.com/").is_err());
    }

    #[test]
    fn rules_match_scheme_host_and_port() {
        let p = policy(&["api.example.com", "*.crm.test"], &[]);
        assert!(check(&p, "https://api.example.com/x").is_ok());
        assert!(check(&p, "https://API.example.com./x").is_ok());
        assert!(check(&p, "https://api.example.com:8443/x").is_err());
        assert!(check(&p, "https://evil.com/api.example.com").is_err());
        assert!(check(&p, "https://api.example.com.evil.com/").is_err());
        assert!(check(&p, "https://eu.crm.test/").is_ok());
        assert!(check(&p, "https://crm.test/").is_err());
        assert!(check(&p, "https://xcrm.test/").is_err());
        assert!(check(&p, "ftp://api.example.com/").is_err());
        assert!(check(&p, "https://user:pw@api.example.com/").is_err());
    }

    #[test]
    fn ip_literals_in_every_notation_are_checked() {
        let p = policy(&["127.0.0.1", "169.254.169.254", "10.0.0.1", "::1"], &[]);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]/",
            "http://allowed.com@127.0.0.1/",
        ] {
            assert!(check(&p, url).is_err(), "{url} must be denied");
        }
    }

    #[test]
    fn blocked_ranges_cover_v4_and_v6_forms() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(blocked_range(ip).is_some(), "{ip} must be blocked");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(blocked_range(ip).is_none(), "{ip} must be allowed");
        }
    }

    #[test]
    fn tenant_rules_apply_to_their_tenant_only() {
        let mut config = HttpPolicy::default();
        config.tenant_allow.insert(
            "acme".into(),
            vec![AllowRule {
                any_port: true,
                ..AllowRule::host("*")
            }],
        );
        let p = EgressPolicy::new(&config);
        let url = Url::parse("https://anything.example:8443/").unwrap();
        assert!(p.check_url("acme", &url).is_ok());
        assert!(p.check_url("other", &url).is_err());
        // A wildcard host does not open the blocked ranges.
        assert!(
            p.check_url("acme", &Url::parse("http://10.0.0.1/").unwrap())
                .is_err()
        );
    }

    #[test]
    fn operators_may_allow_a_private_range() {
        let p = policy(&["127.0.0.1"], &["127.0.0.1/32"]);
        assert!(check(&p, "http://127.0.0.1:80/").is_ok());
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(p.check_ip("::ffff:127.0.0.1".parse().unwrap()).is_ok());
    }
}

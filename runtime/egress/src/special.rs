//! The blocked address ranges, as data: the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries (RFC 6890 and its updates), entry by entry with the registry's
//! "globally reachable" column, plus the few ranges that are not in those registries but
//! are not ordinary unicast either (multicast, deprecated site-local, the IPv4-compatible
//! block).
//!
//! Registries as published by IANA: `iana-ipv4-special-registry` updated 2024-12-05 and
//! `iana-ipv6-special-registry` updated 2025-04-08
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>).
//!
//! An address is judged by the **most specific** entry containing it: `192.0.0.9` (PCP
//! anycast, globally reachable) is open although `192.0.0.0/24` is not. Translation and
//! embedding prefixes (`::ffff:0:0/96`, `64:ff9b::/96`, `2002::/16`, the IPv4-compatible
//! `::/96`) are judged by the IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use ipnet::IpNet;

/// What an entry means for egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Not globally reachable (or "N/A" in the registry): never dialled.
    Blocked,
    /// Globally reachable: an ordinary destination.
    Global,
    /// Carries an IPv4 address, which decides.
    EmbedsIpv4,
}

/// One entry: the prefix, its name, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The prefix, as written in the registry.
    pub prefix: &'static str,
    /// The registry's name for it (lower-cased), with a hint where useful.
    pub name: &'static str,
    /// Blocked, global, or judged by its embedded IPv4 address.
    pub reach: Reach,
}

const fn entry(prefix: &'static str, name: &'static str, reach: Reach) -> Entry {
    Entry {
        prefix,
        name,
        reach,
    }
}

use Reach::{Blocked, EmbedsIpv4, Global};

/// The IPv4 entries.
pub const IPV4: &[Entry] = &[
    entry("0.0.0.0/8", "\"this network\"", Blocked),
    entry("0.0.0.0/32", "\"this host on this network\"", Blocked),
    entry("10.0.0.0/8", "private-use", Blocked),
    entry("100.64.0.0/10", "shared address space (CGNAT)", Blocked),
    entry("127.0.0.0/8", "loopback", Blocked),
    entry("169.254.0.0/16", "link-local (cloud metadata)", Blocked),
    entry("172.16.0.0/12", "private-use", Blocked),
    entry("192.0.0.0/24", "IETF protocol assignments", Blocked),
    entry("192.0.0.0/29", "IPv4 service continuity prefix", Blocked),
    entry("192.0.0.8/32", "IPv4 dummy address", Blocked),
    entry("192.0.0.9/32", "port control protocol anycast", Global),
    entry(
        "192.0.0.10/32",
        "traversal using relays around NAT anycast",
        Global,
    ),
    entry("192.0.0.170/32", "NAT64/DNS64 discovery", Blocked),
    entry("192.0.0.171/32", "NAT64/DNS64 discovery", Blocked),
    entry("192.0.2.0/24", "documentation (TEST-NET-1)", Blocked),
    entry("192.31.196.0/24", "AS112-v4", Global),
    entry("192.52.193.0/24", "AMT", Global),
    entry("192.88.99.0/24", "deprecated (6to4 relay anycast)", Blocked),
    entry("192.168.0.0/16", "private-use", Blocked),
    entry("192.175.48.0/24", "direct delegation AS112 service", Global),
    entry("198.18.0.0/15", "benchmarking", Blocked),
    entry("198.51.100.0/24", "documentation (TEST-NET-2)", Blocked),
    entry("203.0.113.0/24", "documentation (TEST-NET-3)", Blocked),
    entry("240.0.0.0/4", "reserved", Blocked),
    entry("255.255.255.255/32", "limited broadcast", Blocked),
    // Not in the special-purpose registry: the multicast registry's whole block.
    entry("224.0.0.0/4", "multicast", Blocked),
];

/// The IPv6 entries.
pub const IPV6: &[Entry] = &[
    entry("::1/128", "loopback", Blocked),
    entry("::/128", "unspecified", Blocked),
    entry("::ffff:0:0/96", "IPv4-mapped", EmbedsIpv4),
    entry("64:ff9b::/96", "IPv4-IPv6 translation", EmbedsIpv4),
    entry("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", Blocked),
    entry("100::/64", "discard-only", Blocked),
    entry("100:0:0:1::/64", "dummy IPv6 prefix", Blocked),
    entry("2001::/23", "IETF protocol assignments", Blocked),
    entry("2001::/32", "TEREDO", Blocked),
    entry("2001:1::1/128", "port control protocol anycast", Global),
    entry(
        "2001:1::2/128",
        "traversal using relays around NAT anycast",
        Global,
    ),
    entry(
        "2001:1::3/128",
        "DNS-SD service registration protocol anycast",
        Global,
    ),
    entry("2001:2::/48", "benchmarking", Blocked),
    entry("2001:3::/32", "AMT", Global),
    entry("2001:4:112::/48", "AS112-v6", Global),
    entry("2001:10::/28", "deprecated (previously ORCHID)", Blocked),
    entry("2001:20::/28", "ORCHIDv2", Global),
    entry(
        "2001:30::/28",
        "drone remote ID protocol entity tags",
        Global,
    ),
    entry("2001:db8::/32", "documentation", Blocked),
    entry("2002::/16", "6to4", EmbedsIpv4),
    entry(
        "2620:4f:8000::/48",
        "direct delegation AS112 service",
        Global,
    ),
    entry("3fff::/20", "documentation", Blocked),
    entry("5f00::/16", "segment routing (SRv6) SIDs", Blocked),
    entry("fc00::/7", "unique-local", Blocked),
    entry("fe80::/10", "link-local", Blocked),
    // Not in the special-purpose registry, not ordinary unicast either.
    entry("::/96", "IPv4-compatible (deprecated)", EmbedsIpv4),
    entry("::/8", "reserved by IETF", Blocked),
    entry("fec0::/10", "site-local (deprecated)", Blocked),
    entry("ff00::/8", "multicast", Blocked),
];

/// The entries parsed, most specific first.
static TABLE: LazyLock<Vec<(IpNet, Entry)>> = LazyLock::new(|| {
    let mut table: Vec<(IpNet, Entry)> = IPV4
        .iter()
        .chain(IPV6)
        .filter_map(|entry| entry.prefix.parse().ok().map(|net| (net, *entry)))
        .collect();
    table.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    table
});

/// The most specific entry containing `ip`.
#[must_use]
pub fn entry_of(ip: IpAddr) -> Option<(IpNet, Entry)> {
    TABLE.iter().find(|(net, _)| net.contains(&ip)).copied()
}

/// Why `ip` must not be dialled (`"loopback 127.0.0.0/8"`), or `None`.
#[must_use]
pub fn blocked(ip: IpAddr) -> Option<String> {
    let (net, entry) = entry_of(ip)?;
    match entry.reach {
        Reach::Global => None,
        Reach::Blocked => Some(format!("{} {net}", entry.name)),
        Reach::EmbedsIpv4 => {
            let Some(inner) = embedded_v4(ip) else {
                return Some(format!("{} {net}", entry.name));
            };
            blocked(IpAddr::V4(inner))
                .map(|why| format!("{} {net} carrying {inner}: {why}", entry.name))
        }
    }
}

/// The IPv4 address an IPv6 address of a translation or embedding prefix carries:
/// mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`
/// (RFC 6052), 6to4 `2002:aabb:ccdd::` (RFC 3056).
#[must_use]
pub fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let from = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first and last address of a prefix.
    fn ends(net: IpNet) -> [IpAddr; 2] {
        [net.network(), net.broadcast()]
    }

    #[test]
    fn every_entry_parses() {
        for entry in IPV4.iter().chain(IPV6) {
            assert!(
                entry.prefix.parse::<IpNet>().is_ok(),
                "{} does not parse",
                entry.prefix
            );
        }
        assert_eq!(TABLE.len(), IPV4.len() + IPV6.len());
    }

    #[test]
    fn every_entry_of_the_registries_is_judged_as_the_registry_says() {
        for entry in IPV4.iter().chain(IPV6) {
            let net: IpNet = entry.prefix.parse().unwrap();
            for ip in ends(net) {
                // The most specific entry decides (a /32 inside a /24).
                let (_, decides) = entry_of(ip).unwrap();
                let verdict = blocked(ip);
                match decides.reach {
                    Reach::Blocked => assert!(
                        verdict
                            .as_deref()
                            .is_some_and(|why| why.starts_with(decides.name)),
                        "{ip} ({}) must be blocked: {verdict:?}",
                        decides.prefix
                    ),
                    Reach::Global => {
                        assert_eq!(verdict, None, "{ip} ({}) is global", decides.prefix);
                    }
                    Reach::EmbedsIpv4 => {
                        let inner = embedded_v4(ip).unwrap();
                        assert_eq!(
                            verdict.is_some(),
                            blocked(IpAddr::V4(inner)).is_some(),
                            "{ip} is judged by {inner}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn embedding_prefixes_are_judged_by_the_address_they_carry() {
        for (ip, blocked_expected) in [
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::808:808", false),
            ("2002:7f00:1::", true),
            ("2002:808:808::", false),
            ("::127.0.0.1", true),
            ("::8.8.8.8", false),
            ("64:ff9b:1::808:808", true),
            ("2001:0:4136:e378::1", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                blocked(ip).is_some(),
                blocked_expected,
                "{ip}: {:?}",
                blocked(ip)
            );
        }
    }

    #[test]
    fn ordinary_unicast_is_open() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }
}

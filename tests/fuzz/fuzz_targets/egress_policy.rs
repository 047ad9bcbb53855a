//! The egress policy on any URL text and any resolved address: it never panics; an
//! address it lets through is in no blocked range; and an IPv4 address that is blocked
//! stays blocked in every IPv6 form that embeds it (mapped, NAT64, 6to4), so no
//! notation reopens it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fluxo_egress::policy::{EgressPolicy, blocked_range};
use fluxo_egress::{AllowRule, HttpPolicy};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    url: String,
    v6: [u8; 16],
    v4: [u8; 4],
}

fuzz_target!(|input: Input| {
    // Every host and port allowed by rule: only the blocked ranges decide.
    let config = HttpPolicy {
        allow: vec![AllowRule {
            scheme: None,
            host: "*".to_owned(),
            port: None,
            any_port: true,
        }],
        ..HttpPolicy::default()
    };
    let policy = EgressPolicy::new(&config);
    if let Ok(url) = url::Url::parse(&input.url) {
        if policy.check_url("acme", &url).is_ok() {
            match url.host() {
                Some(url::Host::Ipv4(ip)) => {
                    assert!(blocked_range(IpAddr::V4(ip)).is_none(), "{url}")
                }
                Some(url::Host::Ipv6(ip)) => {
                    assert!(blocked_range(IpAddr::V6(ip)).is_none(), "{url}")
                }
                _ => {}
            }
        }
    }
    for ip in [
        IpAddr::V6(Ipv6Addr::from(input.v6)),
        IpAddr::V4(Ipv4Addr::from(input.v4)),
    ] {
        assert_eq!(
            policy.check_ip(ip).is_ok(),
            blocked_range(ip).is_none(),
            "{ip}"
        );
    }
    let v4 = Ipv4Addr::from(input.v4);
    if blocked_range(IpAddr::V4(v4)).is_some() {
        let [a, b, c, d] = input.v4;
        let embeddings = [
            v4.to_ipv6_mapped(),
            Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            ),
            Ipv6Addr::new(
                0x2002,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
                0,
                0,
                0,
                0,
                1,
            ),
        ];
        for ip in embeddings {
            assert!(
                policy.check_ip(IpAddr::V6(ip)).is_err(),
                "{v4} reopened as {ip}"
            );
        }
    }
});

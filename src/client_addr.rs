//! The client's address, for the per-address send limit: the TCP peer, or, when the peer is
//! a trusted proxy, the address the proxies forwarded for (`Forwarded` or `X-Forwarded-For`).
//! Only entries appended by trusted proxies are believed: a client can write anything into
//! these headers, but only to the left of what the proxies add.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use poem::http::HeaderMap;

/// The address a request came from, as the surfaces hand it to the application service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("`{s}` is not an address or a block like 10.0.0.0/8"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose forwarding headers are believed; empty: none (the peer is the client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address: walking the forwarded chain from the peer leftwards, the first
    /// address that is not a trusted proxy. An entry that is no address (`unknown`, an
    /// obfuscated name) ends the walk at the proxy that wrote it.
    pub fn client_of(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        for hop in forwarded_chain(headers).iter().rev() {
            let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// The forwarded-for chain, oldest first: from `Forwarded` when present (RFC 7239), else
/// from `X-Forwarded-For`; `None` for an entry that is no address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|e| e.trim().to_owned())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_address(v.trim().trim_matches('"')))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .map(|e| node_address(e))
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Why, the peer, the headers, the client.
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    /// Given a peer, the trusted proxies and the headers, then this is the client.
    #[test]
    fn client_address_table() {
        let trusted = TrustedProxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]);
        let cases: &[Case] = &[
            (
                "no proxy: the peer",
                "192.0.2.7",
                &[("x-forwarded-for", "198.51.100.1")],
                "192.0.2.7",
            ),
            (
                "behind a trusted proxy",
                "10.0.0.2",
                &[("x-forwarded-for", "198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "a forged entry left of the real one is ignored",
                "10.0.0.2",
                &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "two trusted proxies",
                "10.0.0.2",
                &[("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.0.0.3")],
                "198.51.100.1",
            ),
            (
                "several header lines are one list",
                "10.0.0.2",
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-for", "198.51.100.1"),
                ],
                "198.51.100.1",
            ),
            (
                "a trusted proxy without the header",
                "10.0.0.2",
                &[],
                "10.0.0.2",
            ),
            (
                "Forwarded wins over X-Forwarded-For",
                "10.0.0.2",
                &[
                    (
                        "forwarded",
                        "for=203.0.113.9, for=\"198.51.100.2:4711\";proto=https",
                    ),
                    ("x-forwarded-for", "198.51.100.1"),
                ],
                "198.51.100.2",
            ),
            (
                "Forwarded with IPv6",
                "2001:db8::1",
                &[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")],
                "2001:db8:cafe::17",
            ),
            (
                "an unknown entry ends the walk at the proxy that wrote it",
                "10.0.0.2",
                &[("x-forwarded-for", "198.51.100.1, unknown, 10.0.0.3")],
                "10.0.0.3",
            ),
            ("an IPv4-mapped peer", "::ffff:192.0.2.7", &[], "192.0.2.7"),
        ];
        for (why, peer, h, want) in cases {
            assert_eq!(
                trusted.client_of(Some(ip(peer)), &headers(h)),
                Some(ip(want)),
                "{why}"
            );
        }
        assert_eq!(
            TrustedProxies::default().client_of(None, &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains(ip("192.0.2.200")));
        assert!(!net.contains(ip("192.0.3.1")));
        assert!(net.contains(ip("::ffff:192.0.2.1")));
        let all: IpNet = "::/0".parse().unwrap();
        assert!(all.contains(ip("2001:db8::5")));
        assert!(!all.contains(ip("192.0.2.1")));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }
}

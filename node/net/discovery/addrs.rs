//! The advertised address list: which multiaddrs are valid, unspecified ones expanded to the
//! interfaces' addresses, and the list spread over TXT strings within their limits.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{MAX_ADDR_BYTES, MAX_ADDR_CHUNKS, MAX_ADDR_LEN, MAX_ADDRS, MAX_TXT_STRING};

/// A plausible multiaddr: `/`-separated non-empty printable ASCII parts, no commas.
fn valid_multiaddr(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= MAX_ADDR_LEN
        && s.starts_with('/')
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        && s[1..].split('/').all(|part| !part.is_empty())
}

/// Valid addresses, deduplicated in order, at most [`MAX_ADDRS`].
fn clean_addrs(addrs: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in addrs {
        if !valid_multiaddr(&a) {
            tracing::warn!(addr = %a, "mdns: not advertising a malformed or over-long address");
            continue;
        }
        if out.len() < MAX_ADDRS && seen.insert(a.clone()) {
            out.push(a);
        }
    }
    out
}

/// The addresses to advertise: valid ones, unspecified IPs replaced by our addresses on the
/// selected interfaces.
pub(super) fn advertised_addrs(addrs: Vec<String>, interfaces: &[String]) -> Vec<String> {
    let addrs = clean_addrs(addrs);
    if !addrs.iter().any(|a| has_unspecified_ip(a)) {
        return addrs;
    }
    let local = local_ips(interfaces);
    let out = expand_unspecified(&addrs, &local);
    if out.len() < addrs.len() {
        tracing::warn!(
            ?addrs,
            ?local,
            "mdns: some unspecified addresses could not be expanded"
        );
    }
    out
}

fn has_unspecified_ip(addr: &str) -> bool {
    addr.strip_prefix("/ip4/")
        .or_else(|| addr.strip_prefix("/ip6/"))
        .and_then(|rest| rest.split('/').next())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_unspecified())
}

/// Our addresses on the named interfaces (every non-loopback one when none are named), sorted.
fn local_ips(interfaces: &[String]) -> Vec<IpAddr> {
    let all = match if_addrs::get_if_addrs() {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!("mdns: cannot list interface addresses: {e}");
            return Vec::new();
        }
    };
    let mut ips: Vec<IpAddr> = all
        .into_iter()
        .filter(|i| {
            if interfaces.is_empty() {
                !i.is_loopback()
            } else {
                interfaces.contains(&i.name)
            }
        })
        .map(|i| i.ip())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The first TCP or UDP port in the addresses.
pub(super) fn first_port(addrs: &[String]) -> Option<u16> {
    addrs.iter().find_map(|a| {
        let parts: Vec<&str> = a.split('/').collect();
        parts
            .windows(2)
            .find(|w| w[0] == "tcp" || w[0] == "udp")
            .and_then(|w| w[1].parse().ok())
    })
}

/// The TXT entries for `addrs`: `addrs=a,b,…` if it fits, else `addr0`, `addr1`, … shares.
pub(super) fn encode_addrs(addrs: &[String]) -> Vec<(String, String)> {
    let joined = addrs.join(",");
    if "addrs=".len() + joined.len() <= MAX_TXT_STRING {
        return vec![("addrs".to_string(), joined)];
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut budget = MAX_ADDR_BYTES;
    let mut current = String::new();
    for a in addrs {
        if a.len() + 1 > budget {
            tracing::warn!(addr = %a, "mdns: TXT record full, address not advertised");
            continue;
        }
        let key_len = format!("addr{}=", out.len()).len();
        let extra = if current.is_empty() { 0 } else { 1 } + a.len();
        if !current.is_empty() && key_len + current.len() + extra > MAX_TXT_STRING {
            if out.len() + 1 >= MAX_ADDR_CHUNKS {
                tracing::warn!(addr = %a, "mdns: TXT record full, address not advertised");
                continue;
            }
            out.push((format!("addr{}", out.len()), std::mem::take(&mut current)));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(a);
        budget -= a.len() + 1;
    }
    if !current.is_empty() {
        out.push((format!("addr{}", out.len()), current));
    }
    out
}

/// Reads `addrs` and `addr0`, `addr1`, … (up to the first missing), keeping valid ones.
pub(super) fn decode_addrs<'a>(txt: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
    let mut values: Vec<&str> = txt("addrs").into_iter().collect();
    for i in 0..MAX_ADDR_CHUNKS {
        match txt(&format!("addr{i}")) {
            Some(v) => values.push(v),
            None => break,
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in values.into_iter().flat_map(|v| v.split(',')) {
        if out.len() >= MAX_ADDRS {
            break;
        }
        if valid_multiaddr(a) && seen.insert(a) {
            out.push(a.to_string());
        }
    }
    out
}

/// Replaces `/ip4/0.0.0.0/…` and `/ip6/::/…` by one address per host address of that family
/// (IPv6 link-local left out); other addresses pass unchanged. Deduplicated, in order.
pub(super) fn expand_unspecified(addrs: &[String], host_addrs: &[IpAddr]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |a: String| {
        if out.len() < MAX_ADDRS && seen.insert(a.clone()) {
            out.push(a);
        }
    };
    for a in addrs {
        let (proto, rest) = match a.strip_prefix("/ip4/").or_else(|| a.strip_prefix("/ip6/")) {
            Some(rest) => (&a[1..4], rest),
            None => {
                push(a.clone());
                continue;
            }
        };
        let (ip, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let unspecified = ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !unspecified {
            push(a.clone());
            continue;
        }
        for host in host_addrs {
            let fits = match (proto, host) {
                ("ip4", IpAddr::V4(v4)) => !v4.is_unspecified(),
                ("ip6", IpAddr::V6(v6)) => {
                    !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
                }
                _ => false,
            };
            if fits {
                let sep = if tail.is_empty() { "" } else { "/" };
                push(format!("/{proto}/{host}{sep}{tail}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(entries: &[(String, String)]) -> Vec<String> {
        decode_addrs(|k| {
            entries
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn short_address_lists_use_one_key() {
        let addrs = vec![
            "/ip4/127.0.0.1/tcp/4001".to_string(),
            "/ip6/::1/tcp/4001".to_string(),
        ];
        let enc = encode_addrs(&addrs);
        assert_eq!(enc.len(), 1);
        assert_eq!(enc[0].0, "addrs");
        assert_eq!(decode(&enc), addrs);
    }

    #[test]
    fn long_address_lists_are_split_within_txt_limits() {
        let addrs: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    "/ip4/10.0.0.{i}/tcp/4001/p2p/12D3KooWabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                )
            })
            .collect();
        let enc = encode_addrs(&addrs);
        assert!(enc.len() > 1);
        for (i, (k, v)) in enc.iter().enumerate() {
            assert_eq!(k, &format!("addr{i}"));
            assert!(k.len() + 1 + v.len() <= MAX_TXT_STRING);
        }
        let total: usize = enc.iter().map(|(_, v)| v.len()).sum();
        assert!(total <= MAX_ADDR_BYTES);
        let dec = decode(&enc);
        assert!(dec.len() >= 10);
        assert_eq!(dec[..], addrs[..dec.len()]);
    }

    #[test]
    fn malformed_addresses_are_ignored() {
        let enc = vec![(
            "addrs".to_string(),
            "/ip4/1.2.3.4/tcp/1,garbage,,//x,/ip4/1.2.3.4/tcp/1, /a,/ip6/::1/udp/9/quic-v1".into(),
        )];
        assert_eq!(
            decode(&enc),
            vec!["/ip4/1.2.3.4/tcp/1", "/ip6/::1/udp/9/quic-v1"]
        );
        assert!(decode(&[]).is_empty());
    }

    #[test]
    fn unspecified_addresses_take_the_host_addresses() {
        let hosts: Vec<IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "192.168.1.5".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "fd00::5".parse().unwrap(),
        ];
        let addrs = vec![
            "/ip4/0.0.0.0/tcp/4001".to_string(),
            "/ip6/::/udp/4001/quic-v1".to_string(),
            "/ip4/10.1.1.1/tcp/5".to_string(),
            "/dns4/till.local/tcp/5".to_string(),
        ];
        assert_eq!(
            expand_unspecified(&addrs, &hosts),
            vec![
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/192.168.1.5/tcp/4001",
                "/ip6/fd00::5/udp/4001/quic-v1",
                "/ip4/10.1.1.1/tcp/5",
                "/dns4/till.local/tcp/5",
            ]
        );
    }
}

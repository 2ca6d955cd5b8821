//! Where a webhook may be delivered: the SSRF rules, applied to a subscription's URL when it is
//! created or changed **and** to the address each attempt actually connects to (a name that
//! resolved to a public address at create time may resolve to `127.0.0.1` later: DNS
//! rebinding).
//!
//! A target is an `https` URL (`http` only with `[webhooks] allow_http`) without credentials
//! in it, whose host resolves to addresses none of which is private, loopback, link-local,
//! unspecified, broadcast, CGNAT, multicast or otherwise reserved ([`forbidden`]), unless
//! `[webhooks] allow_private_targets` is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use residency_config::node::webhooks::WebhooksConfig;
use url::{Host, Url};

/// Why a target is refused (client-safe text: it names no address the customer did not give).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Not a usable URL.
    #[error("{0}")]
    Shape(&'static str),
    /// The host did not resolve.
    #[error("the host does not resolve")]
    Unresolved,
    /// The host resolves to an address deliveries may not reach.
    #[error("the host resolves to a private, loopback, link-local or otherwise reserved address")]
    Forbidden,
}

/// Whether deliveries may never reach `ip` (when private targets are not allowed): RFC 1918
/// and unique-local (fc00::/7), loopback, link-local (169.254/16 including the cloud metadata
/// address, fe80::/10), unspecified and "this network" (0/8), broadcast and reserved (240/4),
/// CGNAT (100.64/10), multicast, the IETF protocol block (192.0.0/24), benchmarking
/// (198.18/15), documentation ranges, and the IPv4 inside IPv4-mapped, IPv4-compatible and
/// NAT64 (64:ff9b::/96) IPv6 addresses.
#[must_use]
pub(crate) fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4 address.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return forbidden_v4(embedded);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
}

/// A checked target URL: its scheme, host (without brackets) and port.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL as given.
    pub(crate) url: Url,
    /// `https`.
    pub(crate) tls: bool,
    /// The host name or address literal, as the TLS server name and `Host` header.
    pub(crate) host: String,
    /// The port.
    pub(crate) port: u16,
}

/// The shape rules: a URL, `https` (or `http` when allowed), a host, no user or password.
///
/// # Errors
/// [`Refused::Shape`].
pub(crate) fn parse(raw: &str, cfg: &WebhooksConfig) -> Result<Target, Refused> {
    if raw.len() > 2048 {
        return Err(Refused::Shape("must be at most 2048 characters"));
    }
    let url = Url::parse(raw).map_err(|_| Refused::Shape("must be an absolute https url"))?;
    let tls = match url.scheme() {
        "https" => true,
        "http" if cfg.allow_http => false,
        "http" => return Err(Refused::Shape("must be https")),
        _ => return Err(Refused::Shape("must be an absolute https url")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Shape("must not carry a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(Refused::Shape("must not have a fragment"));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Refused::Shape("must name a host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or(Refused::Shape("must name a port"))?;
    Ok(Target {
        url,
        tls,
        host,
        port,
    })
}

/// Resolves the target and keeps the addresses deliveries may reach. At create time the
/// caller requires every address to be allowed ([`check`]); at delivery time the attempt
/// connects only to what this returns.
///
/// # Errors
/// [`Refused::Unresolved`], or [`Refused::Forbidden`] when no address is allowed.
pub(crate) async fn resolve(t: &Target, cfg: &WebhooksConfig) -> Result<Vec<SocketAddr>, Refused> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|_| Refused::Unresolved)?
        .collect();
    if all.is_empty() {
        return Err(Refused::Unresolved);
    }
    let allowed: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| cfg.allow_private_targets || !forbidden(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(Refused::Forbidden);
    }
    Ok(allowed)
}

/// The create/update check: the shape, and every address the host resolves to allowed.
///
/// # Errors
/// Any [`Refused`].
pub(crate) async fn check(raw: &str, cfg: &WebhooksConfig) -> Result<Target, Refused> {
    let t = parse(raw, cfg)?;
    let all: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|_| Refused::Unresolved)?
        .collect();
    if all.is_empty() {
        return Err(Refused::Unresolved);
    }
    if !cfg.allow_private_targets && all.iter().any(|a| forbidden(a.ip())) {
        return Err(Refused::Forbidden);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(ip: &str) {
        assert!(forbidden(ip.parse().unwrap()), "{ip} must be forbidden");
    }
    fn yes(ip: &str) {
        assert!(!forbidden(ip.parse().unwrap()), "{ip} must be allowed");
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            no(ip);
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            yes(ip);
        }
    }

    #[test]
    fn shapes() {
        let cfg = WebhooksConfig::default();
        assert!(parse("https://example.com/hook", &cfg).is_ok());
        assert_eq!(
            parse("http://example.com/hook", &cfg).unwrap_err(),
            Refused::Shape("must be https")
        );
        assert!(parse("ftp://example.com", &cfg).is_err());
        assert!(parse("https://user:pw@example.com", &cfg).is_err());
        assert!(parse("/relative", &cfg).is_err());
        let t = parse("https://[::1]:8443/x", &cfg).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        let http = WebhooksConfig {
            allow_http: true,
            ..WebhooksConfig::default()
        };
        assert!(!parse("http://example.com", &http).unwrap().tls);
    }
}

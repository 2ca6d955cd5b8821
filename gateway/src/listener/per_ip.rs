//! Open connections per client IP address on one listener, so that one address cannot take
//! all of `max_connections`. Counted at accept and at close only, never per request.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// The open connections of each client address, at most `max` each.
#[derive(Debug)]
pub(crate) struct PerIp {
    max: usize,
    open: DashMap<IpAddr, usize>,
}

impl PerIp {
    /// At most `max` connections per address.
    #[must_use]
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: DashMap::new(),
        })
    }

    /// Counts a connection from `ip` (an IPv4-mapped IPv6 address counts as the IPv4 one),
    /// or `None` if the address has `max` already.
    #[must_use]
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.entry(ip).or_insert(0);
        if *open >= self.max {
            return None;
        }
        *open += 1;
        Some(IpSlot {
            per_ip: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&ip.to_canonical()).map_or(0, |n| *n)
    }

    /// Addresses with a connection open.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn addresses(&self) -> usize {
        self.open.len()
    }
}

/// One admitted connection; dropping it counts the connection as closed.
#[derive(Debug)]
pub(crate) struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.per_ip.open.entry(self.ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_max_and_a_closed_one_frees_its_place() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let first = per_ip.admit(a).unwrap();
        let _second = per_ip.admit(a).unwrap();
        assert!(per_ip.admit(a).is_none());
        assert_eq!(per_ip.open(a), 2);
        let _other = per_ip.admit(b).unwrap();
        drop(first);
        assert_eq!(per_ip.open(a), 1);
        assert!(per_ip.admit(a).is_some());
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let per_ip = PerIp::new(1);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let slot = per_ip.admit(mapped).unwrap();
        assert!(per_ip.admit(v4).is_none());
        assert_eq!(per_ip.open(v4), 1);
        drop(slot);
        assert!(per_ip.admit(v4).is_some());
    }

    #[test]
    fn closed_addresses_leave_no_entry() {
        let per_ip = PerIp::new(3);
        let slots: Vec<_> = (1..=50u8)
            .map(|i| per_ip.admit(IpAddr::from([198, 51, 100, i])).unwrap())
            .collect();
        assert_eq!(per_ip.addresses(), 50);
        drop(slots);
        assert_eq!(per_ip.addresses(), 0);
    }
}

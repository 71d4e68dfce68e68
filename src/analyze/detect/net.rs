//! Addresses for the peer and network rules: CIDR blocks, the host of a peer URL, and one
//! spelling per client address (an IPv4 client seen through an IPv6 socket is the same
//! client).

use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address and how many leading bits of it are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let mut left = u32::from(bits);
    for (x, y) in a.iter().zip(b) {
        if left == 0 {
            return true;
        }
        let take = left.min(8);
        // take is 1..=8, so the shift stays within u8 after widening.
        let mask = (0xffu16 << (8 - take)) as u8;
        if x & mask != y & mask {
            return false;
        }
        left -= take;
    }
    true
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a network (e.g. 10.0.0.0/8)"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }
}

/// One spelling per address: IPv4-mapped IPv6 addresses become IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The IP address in `http://10.0.0.1:2380`, `10.0.0.1:2380`, `[fd00::1]:2380` or
/// `10.0.0.1`; None for host names (they cannot be resolved offline).
pub fn parse_host(s: &str) -> Option<IpAddr> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    if let Ok(ip) = host_port.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(v6) = host_port.strip_prefix('[') {
        let inner = v6.split(']').next()?;
        return inner.parse::<IpAddr>().ok().map(canonical);
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    host.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(odd.contains("192.168.1.200".parse().unwrap()));
        assert!(!odd.contains("192.168.1.100".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn hosts_of_urls() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_host("http://10.0.0.1:2380"), Some(ip("10.0.0.1")));
        assert_eq!(parse_host("https://[fd00::1]:2380/x"), Some(ip("fd00::1")));
        assert_eq!(parse_host("10.0.0.2"), Some(ip("10.0.0.2")));
        assert_eq!(parse_host("10.0.0.2:2380"), Some(ip("10.0.0.2")));
        assert_eq!(parse_host("http://etcd-0.local:2380"), None);
    }
}

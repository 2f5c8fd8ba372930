//! The network filter shared by every network fault: L4 protocol, remote port range and remote
//! CIDRs (IPv4 and IPv6), written into a [`SlotConfig`] in the kernel's representation.

use std::str::FromStr;

use chaos_common::{
    Cidr, FAMILY_V4, FAMILY_V6, MAX_CIDRS, PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SlotConfig,
};
use ipnet::IpNet;

use super::SpecError;

/// Which L4 protocol a fault affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

impl FromStr for Protocol {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "any" => Ok(Protocol::Any),
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            _ => Err(SpecError::new(
                "filter.protocol",
                s,
                "one of tcp, udp, icmp, any",
            )),
        }
    }
}

/// Which events a network fault applies to. The default matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetFilter {
    pub protocol: Protocol,
    /// Remote port range, inclusive; `None` = every port.
    pub ports: Option<(u16, u16)>,
    /// Remote networks; `None` = every address. `Some(vec![])` is an error, never "nothing".
    pub cidrs: Option<Vec<IpNet>>,
}

impl NetFilter {
    /// Whether the filter looks at addresses or ports (which `socket()` does not have).
    pub fn has_address_filter(&self) -> bool {
        self.ports.is_some() || self.cidrs.is_some()
    }

    /// Validates the filter and writes it into `cfg`.
    pub fn apply(&self, cfg: &mut SlotConfig) -> Result<(), SpecError> {
        cfg.protocol = match self.protocol {
            Protocol::Any => PROTO_ANY,
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Icmp => PROTO_ICMP,
        };
        let (lo, hi) = self.ports.unwrap_or((0, u16::MAX));
        if lo > hi {
            return Err(SpecError::new(
                "filter.ports",
                format!("{lo}-{hi}"),
                "a range LOW-HIGH with LOW <= HIGH, or a single port",
            ));
        }
        if self.ports.is_some() && self.protocol == Protocol::Icmp {
            return Err(SpecError::new(
                "filter.ports",
                format!("{lo}-{hi}"),
                "no port filter with protocol icmp (ICMP has no ports)",
            ));
        }
        (cfg.port_lo, cfg.port_hi) = (lo, hi);
        if let Some(cidrs) = &self.cidrs {
            if cidrs.is_empty() || cidrs.len() > MAX_CIDRS {
                return Err(SpecError::new(
                    "filter.cidrs",
                    format!("a list of {}", cidrs.len()),
                    format!("1 to {MAX_CIDRS} networks (omit the field to match every address)"),
                ));
            }
            for (slot, net) in cfg.cidrs.iter_mut().zip(cidrs) {
                *slot = kernel_cidr(net);
            }
            cfg.cidr_count = cidrs.len() as u32;
        }
        Ok(())
    }
}

/// Parses `80`, `8000-8100`.
pub fn parse_ports(s: &str) -> Result<(u16, u16), SpecError> {
    let bad = || SpecError::new("filter.ports", s, "a port 1-65535 or a range LOW-HIGH");
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    Ok((lo, hi))
}

/// Parses a CIDR (`10.0.0.0/8`, `fd00::/8`) or a plain address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, SpecError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| SpecError::new("filter.cidrs", s, "an IPv4 or IPv6 network like 10.0.0.0/8"))
}

/// A network in the kernel's representation: network-order bytes read as native u32 words.
fn kernel_cidr(net: &IpNet) -> Cidr {
    let words = |b: &[u8]| {
        let mut w = [0u32; 4];
        for (i, c) in b.chunks(4).enumerate() {
            w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    };
    let (family, net_w, mask_w) = match net {
        IpNet::V4(n) => (
            FAMILY_V4,
            words(&n.network().octets()),
            words(&n.netmask().octets()),
        ),
        IpNet::V6(n) => (
            FAMILY_V6,
            words(&n.network().octets()),
            words(&n.netmask().octets()),
        ),
    };
    Cidr {
        family,
        _pad: 0,
        net: net_w,
        mask: mask_w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr4(s: &str) -> [u32; 4] {
        let o = s.parse::<std::net::Ipv4Addr>().unwrap().octets();
        [u32::from_ne_bytes(o), 0, 0, 0]
    }

    #[test]
    fn cidrs_match_like_the_kernel_will() {
        let mut cfg = SlotConfig::default();
        let f = NetFilter {
            cidrs: Some(vec![
                parse_cidr("10.1.0.0/16").unwrap(),
                parse_cidr("fd00::/8").unwrap(),
            ]),
            ..NetFilter::default()
        };
        f.apply(&mut cfg).unwrap();
        assert!(cfg.addr_matches(FAMILY_V4, &addr4("10.1.200.3")));
        assert!(!cfg.addr_matches(FAMILY_V4, &addr4("10.2.0.1")));
        let v6 = "fd12::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut w = [0u32; 4];
        for i in 0..4 {
            w[i] = u32::from_ne_bytes(v6[i * 4..i * 4 + 4].try_into().unwrap());
        }
        assert!(cfg.addr_matches(FAMILY_V6, &w));
        assert!(!cfg.addr_matches(FAMILY_V4, &[w[0], 0, 0, 0]));
        let host = parse_cidr("127.0.0.1").unwrap();
        assert_eq!(host.prefix_len(), 32);
    }

    #[test]
    fn empty_or_oversized_cidr_lists_and_bad_ranges_are_refused() {
        let mut cfg = SlotConfig::default();
        let e = NetFilter {
            cidrs: Some(vec![]),
            ..NetFilter::default()
        }
        .apply(&mut cfg);
        assert_eq!(e.unwrap_err().field, "filter.cidrs");
        let nine = vec![parse_cidr("10.0.0.0/8").unwrap(); 9];
        let e = NetFilter {
            cidrs: Some(nine),
            ..NetFilter::default()
        }
        .apply(&mut cfg);
        assert_eq!(e.unwrap_err().field, "filter.cidrs");
        let e = NetFilter {
            ports: Some((90, 80)),
            ..NetFilter::default()
        }
        .apply(&mut cfg);
        assert_eq!(e.unwrap_err().value, "90-80");
        assert_eq!(parse_ports("8000-8100"), Ok((8000, 8100)));
        assert_eq!(parse_ports("53"), Ok((53, 53)));
        assert_eq!(parse_ports("x").unwrap_err().field, "filter.ports");
        assert_eq!(parse_cidr("10.0.0.0/33").unwrap_err().field, "filter.cidrs");
        assert_eq!(
            "sctp".parse::<Protocol>().unwrap_err().field,
            "filter.protocol"
        );
    }

    #[test]
    fn default_filter_matches_everything() {
        let mut cfg = SlotConfig::default();
        NetFilter::default().apply(&mut cfg).unwrap();
        assert_eq!(
            (cfg.protocol, cfg.port_lo, cfg.port_hi, cfg.cidr_count),
            (PROTO_ANY, 0, 65535, 0)
        );
        assert!(cfg.port_matches(0) && cfg.port_matches(65535));
        assert!(cfg.protocol_matches(132));
    }
}

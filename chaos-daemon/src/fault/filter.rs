//! The network filter of every network fault (L4 protocol, remote port range, remote CIDRs)
//! written into a [`SlotConfig`] in the kernel's representation.

use chaos_api::experiment::{NetFilter, Protocol};
use chaos_common::{
    Cidr, FAMILY_V4, FAMILY_V6, PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP, SlotConfig,
};
use ipnet::IpNet;

/// Writes a validated filter (at most `MAX_CIDRS` networks) into `cfg`.
pub fn apply(filter: &NetFilter, cfg: &mut SlotConfig) {
    cfg.protocol = match filter.protocol {
        Protocol::Any => PROTO_ANY,
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
        Protocol::Icmp => PROTO_ICMP,
    };
    (cfg.port_lo, cfg.port_hi) = filter.ports.map_or((0, u16::MAX), |p| (p.low, p.high));
    let mut count = 0;
    for (slot, net) in cfg.cidrs.iter_mut().zip(&filter.cidrs) {
        *slot = kernel_cidr(net);
        count += 1;
    }
    cfg.cidr_count = count;
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
    use chaos_api::experiment::PortRange;

    use super::*;

    fn addr4(s: &str) -> [u32; 4] {
        let o = s.parse::<std::net::Ipv4Addr>().unwrap().octets();
        [u32::from_ne_bytes(o), 0, 0, 0]
    }

    #[test]
    fn cidrs_match_like_the_kernel_will() {
        let mut cfg = SlotConfig::default();
        let f = NetFilter {
            cidrs: vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ..NetFilter::default()
        };
        apply(&f, &mut cfg);
        assert_eq!(cfg.cidr_count, 2);
        assert!(cfg.addr_matches(FAMILY_V4, &addr4("10.1.200.3")));
        assert!(!cfg.addr_matches(FAMILY_V4, &addr4("10.2.0.1")));
        let v6 = "fd12::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut w = [0u32; 4];
        for i in 0..4 {
            w[i] = u32::from_ne_bytes(v6[i * 4..i * 4 + 4].try_into().unwrap());
        }
        assert!(cfg.addr_matches(FAMILY_V6, &w));
        assert!(!cfg.addr_matches(FAMILY_V4, &[w[0], 0, 0, 0]));
    }

    #[test]
    fn ports_and_protocol() {
        let mut cfg = SlotConfig::default();
        apply(
            &NetFilter {
                protocol: Protocol::Udp,
                ports: Some(PortRange { low: 53, high: 54 }),
                cidrs: Vec::new(),
            },
            &mut cfg,
        );
        assert_eq!(
            (cfg.protocol, cfg.port_lo, cfg.port_hi),
            (PROTO_UDP, 53, 54)
        );
        assert!(cfg.port_matches(54) && !cfg.port_matches(55));
    }

    #[test]
    fn default_filter_matches_everything() {
        let mut cfg = SlotConfig::default();
        apply(&NetFilter::default(), &mut cfg);
        assert_eq!(
            (cfg.protocol, cfg.port_lo, cfg.port_hi, cfg.cidr_count),
            (PROTO_ANY, 0, 65535, 0)
        );
        assert!(cfg.port_matches(0) && cfg.port_matches(65535));
        assert!(cfg.protocol_matches(132));
    }
}

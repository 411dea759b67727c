//! Deriving [`Facts`] as istio-iptables does: IPv6 from the interface addresses, DNS servers from
//! `/etc/resolv.conf`, and checking that owner groups resolve.

use std::net::IpAddr;

use mesh_core::capture::CaptureConfig;

use crate::rules::{self, Facts};

/// Errors deriving facts.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A group in ISTIO_OUTBOUND_OWNER_GROUPS(_EXCLUDE) that the image does not know.
    #[error(
        "unknown group {group:?} in {variable}: it is not in the image's /etc/group; \
         use its numeric GID instead, or add the group to the image"
    )]
    UnknownGroup {
        /// The group as given.
        group: String,
        /// The environment variable that named it.
        variable: &'static str,
    },
    /// The interface addresses could not be listed.
    #[error("cannot list the interface addresses: {0}")]
    Interfaces(nix::Error),
}

/// Whether IPv6 capture is on, from the addresses of the namespace (Istio's `getLocalIP`): the
/// first global (not loopback, not link-local) address decides; with `dual_stack`, any global
/// IPv6 address turns it on.
pub fn ipv6_enabled(addrs: &[IpAddr], dual_stack: bool) -> bool {
    let global = addrs.iter().map(IpAddr::to_canonical).filter(|a| match a {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_multicast(),
    });
    let mut global = global;
    if dual_stack { global.any(|a| a.is_ipv6()) } else { global.next().is_some_and(|a| a.is_ipv6()) }
}

/// The `nameserver` addresses of a resolv.conf, split into IPv4 and IPv6.
pub fn parse_resolv_conf(text: &str) -> (Vec<String>, Vec<String>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // Kept as written (as Istio does), without an IPv6 zone.
        let Some(word) = words.next().map(|w| w.split('%').next().unwrap_or(w)) else { continue };
        match word.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => v4.push(word.to_owned()),
            Ok(IpAddr::V6(_)) => v6.push(word.to_owned()),
            Err(_) => {}
        }
    }
    (v4, v6)
}

/// The addresses of every interface of the current network namespace, in kernel order.
pub fn interface_addresses() -> Result<Vec<IpAddr>, FactsError> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(FactsError::Interfaces)? {
        let Some(addr) = ifa.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            out.push(IpAddr::V4(sin.ip()));
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            out.push(IpAddr::V6(sin6.ip()));
        }
    }
    Ok(out)
}

/// Derives the facts of this namespace for `cfg` (reads `/etc/resolv.conf` only when DNS capture
/// is on, as Istio does).
pub fn derive(cfg: &CaptureConfig) -> Result<Facts, FactsError> {
    let ipv6 = ipv6_enabled(&interface_addresses()?, cfg.dual_stack);
    let (dns_servers_v4, dns_servers_v6) = if cfg.redirect_dns {
        parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
    } else {
        (vec![], vec![])
    };
    Ok(Facts { ipv6, dns_servers_v4, dns_servers_v6 })
}

/// Checks that every non-numeric owner group exists in the image's group database.
pub fn check_owner_groups(cfg: &CaptureConfig) -> Result<(), FactsError> {
    let variable = match &cfg.outbound_owner_groups {
        Some(g) if !(g.len() == 1 && g[0] == "*") => "ISTIO_OUTBOUND_OWNER_GROUPS",
        _ => "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE",
    };
    for group in rules::owner_groups(cfg) {
        if group.parse::<u32>().is_ok() {
            continue;
        }
        match nix::unistd::Group::from_name(&group) {
            Ok(Some(_)) => {}
            _ => return Err(FactsError::UnknownGroup { group, variable }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("test address")).collect()
    }

    #[test]
    fn ipv6_follows_the_first_global_address() {
        assert!(!ipv6_enabled(&ips(&["127.0.0.1", "::1", "10.0.0.2", "fd00::2"]), false));
        assert!(ipv6_enabled(&ips(&["127.0.0.1", "::1", "fe80::1", "fd00::2"]), false));
        assert!(ipv6_enabled(&ips(&["10.0.0.2", "fd00::2"]), true));
        assert!(!ipv6_enabled(&ips(&["10.0.0.2", "fe80::1"]), true));
        assert!(!ipv6_enabled(&ips(&["127.0.0.1", "::1"]), true));
    }

    #[test]
    fn resolv_conf_servers_split_by_family() {
        let (v4, v6) = parse_resolv_conf(
            "# comment\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\nnameserver ::127.0.0.53\nnameserver fe80::1%eth0\noptions ndots:5\nnameserver bogus\n",
        );
        assert_eq!(v4, vec!["10.96.0.10"]);
        assert_eq!(v6, vec!["fd00::a", "::127.0.0.53", "fe80::1"]);
    }

    #[test]
    fn unknown_group_names_the_variable() {
        let cfg = CaptureConfig::from_args_and_env(&[] as &[&str], |k| {
            (k == "ISTIO_OUTBOUND_OWNER_GROUPS").then(|| "root,no-such-group-xyz,202".to_owned())
        })
        .expect("parses");
        let err = check_owner_groups(&cfg).expect_err("unknown group");
        let msg = err.to_string();
        assert!(msg.contains("\"no-such-group-xyz\"") && msg.contains("ISTIO_OUTBOUND_OWNER_GROUPS"), "{msg}");
    }
}

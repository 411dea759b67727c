//! Outbound capture in `ISTIO_OUTPUT`: owner groups, the excluded destinations and the included ranges.

use mesh_core::capture::CaptureConfig;

use super::builder::{Builder, Ranges};
use super::{Chain, Family, Table};

/// How owner groups filter outbound capture (Istio's `InterceptFilter`).
enum GroupFilter {
    /// Capture only these groups' traffic.
    Only(Vec<String>),
    /// Capture everyone's traffic except these groups'.
    Except(Vec<String>),
}

fn group_filter(cfg: &CaptureConfig) -> GroupFilter {
    match &cfg.outbound_owner_groups {
        Some(include) if !(include.len() == 1 && include[0] == "*") => GroupFilter::Only(include.clone()),
        _ => GroupFilter::Except(cfg.outbound_owner_groups_exclude.clone().unwrap_or_default()),
    }
}

/// The owner groups named in the configuration (include or exclude), for resolution checks.
pub fn owner_groups(cfg: &CaptureConfig) -> Vec<String> {
    match group_filter(cfg) {
        GroupFilter::Only(g) | GroupFilter::Except(g) => g,
    }
}

/// The owner-group filter: capture only the listed groups, or everyone but the excluded ones.
pub(super) fn owner_group_filter(b: &mut Builder, cfg: &CaptureConfig) {
    use Chain::*;
    use Table::*;
    match group_filter(cfg) {
        GroupFilter::Only(groups) => {
            let ipt: Vec<String> = groups.iter().map(|g| format!("-m owner ! --gid-owner {g}")).collect();
            let nft: Vec<String> = groups.iter().map(|g| format!("skgid != {g}")).collect();
            let ipt = if ipt.is_empty() { "-j RETURN".to_owned() } else { format!("{} -j RETURN", ipt.join(" ")) };
            let nft =
                if nft.is_empty() { "counter return".to_owned() } else { format!("{} counter return", nft.join(" ")) };
            b.append(Nat, IstioOutput, &ipt, &nft);
        }
        GroupFilter::Except(groups) => {
            for g in groups {
                b.append(
                    Nat,
                    IstioOutput,
                    &format!("-m owner --gid-owner {g} -j RETURN"),
                    &format!("skgid {g} counter return"),
                );
            }
        }
    }
}

/// Destinations never captured: localhost (Envoy-aware apps, container-to-container traffic),
/// then the excluded CIDRs, which must come before the includes.
pub(super) fn outbound_excludes(b: &mut Builder, lo4: &str, lo6: &str, exclude: &Ranges) {
    use Chain::*;
    use Table::*;
    // Envoy-aware apps and container-to-container traffic use localhost: never captured.
    b.versioned(lo4, lo6, Nat, IstioOutput, |lo, ip| {
        (format!("-d {lo} -j RETURN"), format!("{ip} daddr {lo} counter return"))
    });
    for c in &exclude.v4 {
        b.append_v(Family::V4, Nat, IstioOutput, &format!("-d {c} -j RETURN"), &format!("ip daddr {c} counter return"));
    }
    for c in &exclude.v6 {
        b.append_v(
            Family::V6,
            Nat,
            IstioOutput,
            &format!("-d {c} -j RETURN"),
            &format!("ip6 daddr {c} counter return"),
        );
    }
}

pub(super) fn outbound_include(b: &mut Builder, include: &Ranges, family: Family, kube_virt: &[String]) {
    use Chain::*;
    use Table::*;
    let (cidrs, ip) = match family {
        Family::V4 => (&include.v4, "ip"),
        Family::V6 => (&include.v6, "ip6"),
    };
    if include.wildcard {
        b.append_v(family, Nat, IstioOutput, "-j ISTIO_REDIRECT", "counter jump istio-redirect");
        for i in kube_virt {
            b.insert_v(
                family,
                Nat,
                Prerouting,
                1,
                &format!("-i {i} -j ISTIO_REDIRECT"),
                &format!("iifname {i} counter jump istio-redirect"),
            );
        }
    } else {
        for c in cidrs {
            for i in kube_virt {
                b.insert_v(
                    family,
                    Nat,
                    Prerouting,
                    1,
                    &format!("-i {i} -d {c} -j ISTIO_REDIRECT"),
                    &format!("iifname {i} {ip} daddr {c} counter jump istio-redirect"),
                );
            }
            b.append_v(
                family,
                Nat,
                IstioOutput,
                &format!("-d {c} -j ISTIO_REDIRECT"),
                &format!("{ip} daddr {c} counter jump istio-redirect"),
            );
        }
    }
}

/// The first `ISTIO_OUTPUT` returns: the excluded outbound ports, and Envoy's inbound passthrough
/// connections to the app (from 127.0.0.6 / ::6).
pub(super) fn returns(b: &mut Builder, excluded_ports: &[u16], pass4: &str, pass6: &str) {
    use Chain::*;
    use Table::*;
    for p in excluded_ports {
        b.append(Nat, IstioOutput, &format!("-p tcp --dport {p} -j RETURN"), &format!("tcp dport {p} counter return"));
    }
    b.versioned(pass4, pass6, Nat, IstioOutput, |src, ip| {
        (format!("-o lo -s {src} -j RETURN"), format!("oifname lo {ip} saddr {src} counter return"))
    });
}

/// The proxy's UIDs and GIDs.
pub(super) struct Owners<'a> {
    pub(super) uids: &'a [String],
    pub(super) gids: &'a [String],
}

/// Per proxy UID and GID: its calls to local non-loopback addresses go back to the inbound listener,
/// other users' loopback traffic is left alone (unless an include range holds a loopback address),
/// and its own traffic is never captured.
pub(super) fn proxy_owners(
    b: &mut Builder,
    owners: &Owners,
    lo4: &str,
    lo6: &str,
    tunnel: u16,
    redirect_dns: bool,
    include_loopback: bool,
) {
    use Chain::*;
    use Table::*;
    for (ids, kind) in [(owners.uids, "uid"), (owners.gids, "gid")] {
        for id in ids {
            // The proxy calling a local address other than loopback (e.g. its own pod IP) goes back to
            // the inbound listener: app -> Envoy (client) -> Envoy (server) -> app.
            b.versioned(lo4, lo6, Nat, IstioOutput, |lo, ip| {
                let (ipt_ports, nft_ports) = if redirect_dns && kind == "uid" {
                    (format!("-m multiport ! --dports 53,{tunnel}"), format!("{{ 53, {tunnel} }}"))
                } else {
                    (format!("! --dport {tunnel}"), tunnel.to_string())
                };
                (
                    format!("-o lo ! -d {lo} -p tcp {ipt_ports} -m owner --{kind}-owner {id} -j ISTIO_IN_REDIRECT"),
                    format!(
                        "oifname lo meta l4proto tcp {ip} daddr != {lo} tcp dport != {nft_ports} sk{kind} {id} counter jump istio-in-redirect"
                    ),
                )
            });
            // Other users' traffic on lo is not captured (except DNS when DNS capture is on),
            // unless an include range holds a loopback address: then that traffic is captured.
            if include_loopback {
                // Nothing: loopback traffic to the included range goes on to the capture rules.
            } else if redirect_dns {
                b.append(
                    Nat,
                    IstioOutput,
                    &format!("-o lo -p tcp ! --dport 53 -m owner ! --{kind}-owner {id} -j RETURN"),
                    &format!("oifname lo meta l4proto tcp tcp dport != 53 sk{kind} != {id} counter return"),
                );
            } else {
                b.append(
                    Nat,
                    IstioOutput,
                    &format!("-o lo -m owner ! --{kind}-owner {id} -j RETURN"),
                    &format!("oifname lo sk{kind} != {id} counter return"),
                );
            }
            // The proxy's own traffic is never captured.
            b.append(
                Nat,
                IstioOutput,
                &format!("-m owner --{kind}-owner {id} -j RETURN"),
                &format!("sk{kind} {id} counter return"),
            );
        }
    }
}

/// The outbound ports captured whatever the destination (`-q`).
pub(super) fn included_ports(b: &mut Builder, ports: &[u16]) {
    use Chain::*;
    use Table::*;
    for p in ports {
        b.append(
            Nat,
            IstioOutput,
            &format!("-p tcp --dport {p} -j ISTIO_REDIRECT"),
            &format!("tcp dport {p} counter jump istio-redirect"),
        );
    }
}

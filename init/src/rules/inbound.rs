//! Inbound capture: the interface short-circuits and the `ISTIO_INBOUND` chain (REDIRECT or TPROXY).

use mesh_core::capture::{CaptureConfig, PortList};

use super::builder::{Builder, ports_of};
use super::{Chain, Table};

/// Excluded interfaces bypass everything; traffic arriving on virtual (kube-virt) interfaces is
/// not inbound traffic (Istio's `shortCircuitExcludeInterfaces`, `shortCircuitKubeInternalInterface`).
pub(super) fn short_circuit_interfaces(
    b: &mut Builder,
    tproxy: bool,
    excluded_ifaces: &[String],
    kube_virt: &[String],
) {
    use Chain::*;
    use Table::*;
    for i in excluded_ifaces {
        b.append(Nat, Prerouting, &format!("-i {i} -j RETURN"), &format!("iifname {i} counter return"));
        b.append(Nat, Output, &format!("-o {i} -j RETURN"), &format!("oifname {i} counter return"));
    }
    if tproxy {
        for i in excluded_ifaces {
            b.append(Mangle, Prerouting, &format!("-i {i} -j RETURN"), &format!("iifname {i} counter return"));
            b.append(Mangle, Output, &format!("-o {i} -j RETURN"), &format!("oifname {i} counter return"));
        }
    }
    // Traffic arriving on virtual (kube-virt) interfaces is not inbound traffic.
    for i in kube_virt {
        b.insert(Nat, Prerouting, 1, &format!("-i {i} -j RETURN"), &format!("iifname {i} counter return"));
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn inbound(
    b: &mut Builder,
    cfg: &CaptureConfig,
    in_exclude: &Option<PortList>,
    tproxy: bool,
    mark: &str,
    in_port: u16,
    lo4: &str,
    lo6: &str,
) {
    use Chain::*;
    use Table::*;
    let include = match &cfg.inbound_ports_include {
        None => return,
        Some(PortList::List(l)) if l.is_empty() => return,
        Some(l) => l,
    };
    let table = if tproxy {
        b.append(Mangle, Divert, &format!("-j MARK --set-mark {mark}"), &format!("counter meta mark set {mark}"));
        b.append(Mangle, Divert, "-j ACCEPT", "counter accept");
        b.versioned(lo4, lo6, Mangle, Tproxy, |lo, ip| {
            (
                format!("! -d {lo} -p tcp -j TPROXY --tproxy-mark {mark}/0xffffffff --on-port {in_port}"),
                format!(
                    "meta l4proto tcp {ip} daddr != {lo} tproxy {ip} to :{in_port} meta mark set {mark} counter accept"
                ),
            )
        });
        Mangle
    } else {
        Nat
    };
    b.append(table, Prerouting, "-p tcp -j ISTIO_INBOUND", "meta l4proto tcp counter jump istio-inbound");
    match include {
        PortList::All => {
            for p in ports_of(in_exclude) {
                b.append(
                    table,
                    Inbound,
                    &format!("-p tcp --dport {p} -j RETURN"),
                    &format!("meta l4proto tcp tcp dport {p} counter return"),
                );
            }
            if tproxy {
                b.append(
                    Mangle,
                    Inbound,
                    "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT",
                    "meta l4proto tcp ct state related,established counter jump istio-divert",
                );
                b.append(Mangle, Inbound, "-p tcp -j ISTIO_TPROXY", "meta l4proto tcp counter jump istio-tproxy");
            } else {
                b.append(
                    Nat,
                    Inbound,
                    "-p tcp -j ISTIO_IN_REDIRECT",
                    "meta l4proto tcp counter jump istio-in-redirect",
                );
            }
        }
        PortList::List(ports) => {
            for p in ports {
                if tproxy {
                    b.append(
                        Mangle,
                        Inbound,
                        &format!("-p tcp --dport {p} -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT"),
                        &format!(
                            "meta l4proto tcp ct state related,established tcp dport {p} counter jump istio-divert"
                        ),
                    );
                    b.append(
                        Mangle,
                        Inbound,
                        &format!("-p tcp --dport {p} -j ISTIO_TPROXY"),
                        &format!("meta l4proto tcp tcp dport {p} counter jump istio-tproxy"),
                    );
                } else {
                    b.append(
                        Nat,
                        Inbound,
                        &format!("-p tcp --dport {p} -j ISTIO_IN_REDIRECT"),
                        &format!("meta l4proto tcp tcp dport {p} counter jump istio-in-redirect"),
                    );
                }
            }
        }
    }
}

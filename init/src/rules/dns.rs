//! DNS capture: the redirect to the agent and the conntrack zones that keep its queries apart.

use mesh_core::capture::CaptureConfig;
use mesh_core::ports;

use super::builder::Builder;
use super::{Chain, Facts, Family, Table};

/// Whether DNS capture is effectively on: `--redirect-dns` needs `--capture-all-dns` or known servers.
pub fn dns_capture_on(cfg: &CaptureConfig, facts: &Facts) -> bool {
    cfg.redirect_dns && (cfg.capture_all_dns || !facts.dns_servers_v4.is_empty() || !facts.dns_servers_v6.is_empty())
}

/// Sends the app's DNS queries to the agent (Istio's `SetupDNSRedir`): the jump from
/// `ISTIO_OUTPUT` only for a family with servers (or with capture-all), then TCP rules for every
/// IPv4 and every IPv6 server, then UDP rules likewise.
pub(super) fn dns_redirect(b: &mut Builder, cfg: &CaptureConfig, facts: &Facts) {
    use Chain::*;
    use Table::*;
    let dns_port = ports::DNS_PROXY;
    let (v4, v6) = (!facts.dns_servers_v4.is_empty(), !facts.dns_servers_v6.is_empty());
    let jump = ("-j ISTIO_OUTPUT_DNS", "counter jump istio-output-dns");
    if cfg.capture_all_dns || (v4 && v6) {
        b.append(Nat, IstioOutput, jump.0, jump.1);
    } else if v4 {
        b.append_v(Family::V4, Nat, IstioOutput, jump.0, jump.1);
    } else if v6 {
        b.append_v(Family::V6, Nat, IstioOutput, jump.0, jump.1);
    }
    if cfg.capture_all_dns {
        b.append(
            Nat,
            OutputDns,
            &format!("-p tcp --dport 53 -j REDIRECT --to-ports {dns_port}"),
            &format!("tcp dport 53 counter redirect to :{dns_port}"),
        );
        b.append(
            Nat,
            OutputDns,
            &format!("-p udp --dport 53 -j REDIRECT --to-port {dns_port}"),
            &format!("udp dport 53 counter redirect to :{dns_port}"),
        );
        return;
    }
    for (proto, to) in [("tcp", "--to-ports"), ("udp", "--to-port")] {
        for (family, servers, len, ip) in
            [(Family::V4, &facts.dns_servers_v4, 32, "ip"), (Family::V6, &facts.dns_servers_v6, 128, "ip6")]
        {
            for s in servers {
                b.append_v(
                    family,
                    Nat,
                    OutputDns,
                    &format!("-p {proto} --dport 53 -d {s}/{len} -j REDIRECT {to} {dns_port}"),
                    &format!("{ip} daddr {s}/{len} {proto} dport 53 counter redirect to :{dns_port}"),
                );
            }
        }
    }
}

/// Splits DNS traffic into conntrack zones so the agent's upstream queries and the app's queries
/// to the agent do not collide (Istio's `addDNSConntrackZones`).
pub(super) fn dns_zones(b: &mut Builder, cfg: &CaptureConfig, facts: &Facts, uids: &[String], gids: &[String]) {
    use Chain::*;
    use Table::*;
    let dns_port = ports::DNS_PROXY;
    b.append(Raw, Output, "-j ISTIO_OUTPUT_DNS", "counter jump istio-output-dns");
    for (ids, kind) in [(uids, "uid"), (gids, "gid")] {
        for id in ids {
            b.append(
                Raw,
                OutputDns,
                &format!("-p udp --dport 53 -m owner --{kind}-owner {id} -j CT --zone 1"),
                &format!("udp dport 53 meta sk{kind} {id} counter ct zone set 1"),
            );
            b.append(
                Raw,
                OutputDns,
                &format!("-p udp --sport {dns_port} -m owner --{kind}-owner {id} -j CT --zone 2"),
                &format!("udp sport {dns_port} meta sk{kind} {id} counter ct zone set 2"),
            );
        }
    }
    b.append(Raw, Prerouting, "-j ISTIO_INBOUND", "counter jump istio-inbound");
    if cfg.capture_all_dns {
        b.append(Raw, OutputDns, "-p udp --dport 53 -j CT --zone 2", "udp dport 53 counter ct zone set 2");
        b.append(Raw, Inbound, "-p udp --sport 53 -j CT --zone 1", "udp sport 53 counter ct zone set 1");
    } else {
        for (family, servers, len, ip) in
            [(Family::V4, &facts.dns_servers_v4, 32, "ip"), (Family::V6, &facts.dns_servers_v6, 128, "ip6")]
        {
            for s in servers {
                b.append_v(
                    family,
                    Raw,
                    OutputDns,
                    &format!("-p udp --dport 53 -d {s}/{len} -j CT --zone 2"),
                    &format!("udp dport 53 {ip} daddr {s}/{len} counter ct zone set 2"),
                );
                b.append_v(
                    family,
                    Raw,
                    Inbound,
                    &format!("-p udp --sport 53 -s {s}/{len} -j CT --zone 1"),
                    &format!("udp sport 53 {ip} saddr {s}/{len} counter ct zone set 1"),
                );
            }
        }
    }
}

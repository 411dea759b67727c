//! The capture rules: a pure function from [`CaptureConfig`] and the pod's [`Facts`] to an ordered
//! list of [`Rule`]s, each carrying its iptables and its nftables form. The renderers in
//! [`iptables`] and [`nft`] turn the list into `iptables-restore` input and an `nft -f` transaction.
//!
//! The order and shape of the rules follow istio-iptables (`tools/istio-iptables/pkg/capture`) and
//! istio-nftables, so the output is byte-for-byte what Istio's `istio-init` would apply.
//!
//! [`build`] resolves the settings and calls the steps in istio-iptables' order; each step lives in
//! the module named after it: `inbound` (interface short-circuits, `ISTIO_INBOUND`), `outbound`
//! (`ISTIO_OUTPUT`: proxy owners, owner groups, excluded and included destinations), `dns`, `tproxy`;
//! `builder` appends rules in both forms, `model` is the rule and chain vocabulary.

use mesh_core::capture::{CaptureConfig, InterceptionMode};
use mesh_core::ports;

mod builder;
mod dns;
mod inbound;
pub mod iptables;
mod model;
pub mod nft;
mod outbound;
mod tproxy;

pub use dns::dns_capture_on;
pub use model::{Chain, Facts, Family, Position, Rule, RuleSet, RulesError, Table};
pub use outbound::owner_groups;

use builder::{Builder, port_list, ports_of, split_ranges};
use outbound::Owners;

/// The mark Envoy's TPROXY traffic from the proxy to the app gets (Istio's `outboundMark`).
const OUTBOUND_MARK: &str = "1338";

/// Renders the capture rules of `cfg` for a pod with `facts`, in istio-iptables' order.
pub fn build(cfg: &CaptureConfig, facts: &Facts) -> Result<RuleSet, RulesError> {
    let exclude = split_ranges(cfg.outbound_ip_ranges_exclude.as_ref());
    if exclude.wildcard {
        return Err(RulesError::Invalid {
            setting: "-x/--istio-service-exclude-cidr (ISTIO_SERVICE_EXCLUDE_CIDR)",
            value: "*".into(),
            reason: "excluding every address disables capture; use -i \"\" instead",
        });
    }
    let include = split_ranges(cfg.outbound_ip_ranges_include.as_ref());
    let out_exclude = port_list(
        cfg.outbound_ports_exclude.as_ref(),
        "-o/--istio-local-outbound-ports-exclude (ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE)",
        false,
    )?;
    let out_include =
        port_list(cfg.outbound_ports_include.as_ref(), "-q/--istio-outbound-ports (ISTIO_OUTBOUND_PORTS)", false)?;
    let in_exclude = port_list(
        cfg.inbound_ports_exclude.as_ref(),
        "-d/--istio-local-exclude-ports (ISTIO_LOCAL_EXCLUDE_PORTS)",
        false,
    )?;

    let redirect_dns = dns_capture_on(cfg, facts);
    let tproxy = cfg.effective_interception_mode() == InterceptionMode::Tproxy;
    let proxy_port = cfg.effective_proxy_port();
    let in_port = cfg.effective_inbound_capture_port();
    let tunnel = cfg.effective_inbound_tunnel_port();
    let uids: Vec<String> = cfg.effective_proxy_uids().iter().map(ToString::to_string).collect();
    let gids: Vec<String> = cfg.effective_proxy_gids().iter().map(ToString::to_string).collect();
    let mark = cfg.effective_tproxy_mark().to_string();
    let lo4 = cfg.effective_loopback_cidr().to_string();
    let lo6 = "::1/128";
    let pass4 = format!("{}/32", ports::INBOUND_PASSTHROUGH_V4);
    let pass6 = format!("{}/128", ports::INBOUND_PASSTHROUGH_V6);
    let kube_virt = cfg.kube_virt_interfaces.clone().unwrap_or_default();
    let excluded_ifaces = cfg.exclude_interfaces.clone().unwrap_or_default();

    let include_loopback = include.has_loopback();

    let mut b = Builder { rules: Vec::new() };
    use Chain::*;
    use Table::*;

    inbound::short_circuit_interfaces(&mut b, tproxy, &excluded_ifaces, &kube_virt);
    targets(&mut b, cfg.drop_invalid, tunnel, proxy_port, in_port);

    inbound::inbound(&mut b, cfg, &in_exclude, tproxy, &mark, in_port, &lo4, lo6);

    b.append(Nat, Output, "-j ISTIO_OUTPUT", "counter jump istio-output");
    outbound::returns(&mut b, &ports_of(&out_exclude), &pass4, &pass6);
    outbound::proxy_owners(
        &mut b,
        &Owners { uids: &uids, gids: &gids },
        &lo4,
        lo6,
        tunnel,
        redirect_dns,
        include_loopback,
    );
    outbound::owner_group_filter(&mut b, cfg);
    if redirect_dns {
        dns::dns_redirect(&mut b, cfg, facts);
    }
    outbound::outbound_excludes(&mut b, &lo4, lo6, &exclude);
    outbound::included_ports(&mut b, &ports_of(&out_include));
    outbound::outbound_include(&mut b, &include, Family::V4, &kube_virt);
    outbound::outbound_include(&mut b, &include, Family::V6, &kube_virt);

    if redirect_dns {
        dns::dns_zones(&mut b, cfg, facts, &uids, &gids);
    }
    if tproxy {
        tproxy::tproxy_marks(&mut b, &mark, &uids, &gids, &lo4, lo6, &pass4, &pass6);
    }

    let ipv6 = facts.ipv6;
    let mut rules = b.rules;
    if !ipv6 {
        rules.retain(|r| r.family != Some(Family::V6));
    }
    Ok(RuleSet { rules, ipv6 })
}

/// The chains other rules jump to: `ISTIO_DROP` (with `--drop-invalid`), the tunnel port's return
/// from `ISTIO_INBOUND`, and the redirects to Envoy's outbound and inbound ports.
fn targets(b: &mut Builder, drop_invalid: bool, tunnel: u16, proxy_port: u16, in_port: u16) {
    use Chain::*;
    use Table::*;
    if drop_invalid {
        b.append(
            Mangle,
            Prerouting,
            "-m conntrack --ctstate INVALID -j ISTIO_DROP",
            "meta l4proto tcp ct state invalid counter jump istio-drop",
        );
        b.append(Mangle, Drop, "-j DROP", "counter drop");
    }
    b.append(
        Nat,
        Inbound,
        &format!("-p tcp --dport {tunnel} -j RETURN"),
        &format!("meta l4proto tcp tcp dport {tunnel} counter return"),
    );
    b.append(
        Nat,
        Redirect,
        &format!("-p tcp -j REDIRECT --to-ports {proxy_port}"),
        &format!("meta l4proto tcp counter redirect to :{proxy_port}"),
    );
    b.append(
        Nat,
        InRedirect,
        &format!("-p tcp -j REDIRECT --to-ports {in_port}"),
        &format!("meta l4proto tcp counter redirect to :{in_port}"),
    );
}

#[cfg(test)]
mod tests;

//! The capture rules: a pure function from [`CaptureConfig`] and the pod's [`Facts`] to an ordered
//! list of [`Rule`]s, each carrying its iptables and its nftables form. The renderers in
//! [`iptables`] and [`nft`] turn the list into `iptables-restore` input and an `nft -f` transaction.
//!
//! The order and shape of the rules follow istio-iptables (`tools/istio-iptables/pkg/capture`) and
//! istio-nftables, so the output is byte-for-byte what Istio's `istio-init` would apply.

use mesh_core::capture::{CaptureConfig, Cidr, CidrList, InterceptionMode, PortList};
use mesh_core::ports;

pub mod iptables;
mod model;
pub mod nft;

pub use model::{Chain, Facts, Family, Position, Rule, RuleSet, RulesError, Table};

/// The mark Envoy's TPROXY traffic from the proxy to the app gets (Istio's `outboundMark`).
const OUTBOUND_MARK: &str = "1338";

/// Builds rules in order; `ipt` arguments are space-separated tokens.
struct Builder {
    rules: Vec<Rule>,
}

impl Builder {
    fn push(&mut self, family: Option<Family>, table: Table, chain: Chain, position: Position, ipt: &str, nft: &str) {
        self.rules.push(Rule {
            table,
            chain,
            family,
            position,
            iptables: ipt.split_whitespace().map(str::to_owned).collect(),
            nft: nft.to_owned(),
        });
    }

    fn append(&mut self, table: Table, chain: Chain, ipt: &str, nft: &str) {
        self.push(None, table, chain, Position::Append, ipt, nft);
    }

    fn append_v(&mut self, family: Family, table: Table, chain: Chain, ipt: &str, nft: &str) {
        self.push(Some(family), table, chain, Position::Append, ipt, nft);
    }

    fn insert(&mut self, table: Table, chain: Chain, pos: u32, ipt: &str, nft: &str) {
        self.push(None, table, chain, Position::Insert(pos), ipt, nft);
    }

    fn insert_v(&mut self, family: Family, table: Table, chain: Chain, pos: u32, ipt: &str, nft: &str) {
        self.push(Some(family), table, chain, Position::Insert(pos), ipt, nft);
    }

    /// A rule written once per family; `f` gets the family's loopback-ish value and nft address keyword.
    fn versioned(
        &mut self,
        v4: &str,
        v6: &str,
        table: Table,
        chain: Chain,
        f: impl Fn(&str, &str) -> (String, String),
    ) {
        let (ipt, nft) = f(v4, "ip");
        self.append_v(Family::V4, table, chain, &ipt, &nft);
        let (ipt, nft) = f(v6, "ip6");
        self.append_v(Family::V6, table, chain, &ipt, &nft);
    }
}

/// CIDRs of one list, split by family (`*` is a wildcard for both).
struct Ranges {
    wildcard: bool,
    v4: Vec<Cidr>,
    v6: Vec<Cidr>,
}

impl Ranges {
    /// Whether a range's address is a loopback one (127.0.0.0/8, ::1), Istio's `HasLoopBackIP`.
    fn has_loopback(&self) -> bool {
        self.v4.iter().chain(&self.v6).any(|c| c.addr.is_loopback())
    }
}

fn split_ranges(list: Option<&CidrList>) -> Ranges {
    match list {
        Some(CidrList::All) => Ranges { wildcard: true, v4: vec![], v6: vec![] },
        Some(CidrList::List(l)) => Ranges {
            wildcard: false,
            v4: l.iter().filter(|c| c.addr.is_ipv4()).copied().collect(),
            v6: l.iter().filter(|c| c.addr.is_ipv6()).copied().collect(),
        },
        None => Ranges { wildcard: false, v4: vec![], v6: vec![] },
    }
}

fn port_list(
    list: Option<&PortList>,
    setting: &'static str,
    allow_wildcard: bool,
) -> Result<Option<PortList>, RulesError> {
    match list {
        Some(PortList::All) if !allow_wildcard => {
            Err(RulesError::Invalid { setting, value: "*".into(), reason: "\"*\" is not allowed here; list the ports" })
        }
        Some(l) => Ok(Some(l.clone())),
        None => Ok(None),
    }
}

fn ports_of(list: &Option<PortList>) -> Vec<u16> {
    match list {
        Some(PortList::List(l)) => l.clone(),
        _ => vec![],
    }
}

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

/// Whether DNS capture is effectively on: `--redirect-dns` needs `--capture-all-dns` or known servers.
pub fn dns_capture_on(cfg: &CaptureConfig, facts: &Facts) -> bool {
    cfg.redirect_dns && (cfg.capture_all_dns || !facts.dns_servers_v4.is_empty() || !facts.dns_servers_v6.is_empty())
}

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

    short_circuit_interfaces(&mut b, tproxy, &excluded_ifaces, &kube_virt);
    if cfg.drop_invalid {
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

    inbound(&mut b, cfg, &in_exclude, tproxy, &mark, in_port, &lo4, lo6);

    b.append(Nat, Output, "-j ISTIO_OUTPUT", "counter jump istio-output");
    for p in ports_of(&out_exclude) {
        b.append(Nat, IstioOutput, &format!("-p tcp --dport {p} -j RETURN"), &format!("tcp dport {p} counter return"));
    }
    // Envoy's inbound passthrough connections to the app come from 127.0.0.6 / ::6.
    b.versioned(&pass4, &pass6, Nat, IstioOutput, |src, ip| {
        (format!("-o lo -s {src} -j RETURN"), format!("oifname lo {ip} saddr {src} counter return"))
    });
    for (ids, kind) in [(&uids, "uid"), (&gids, "gid")] {
        for id in ids {
            // The proxy calling a local address other than loopback (e.g. its own pod IP) goes back to
            // the inbound listener: app -> Envoy (client) -> Envoy (server) -> app.
            b.versioned(&lo4, lo6, Nat, IstioOutput, |lo, ip| {
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
    owner_group_filter(&mut b, cfg);
    if redirect_dns {
        dns_redirect(&mut b, cfg, facts);
    }
    outbound_excludes(&mut b, &lo4, lo6, &exclude);
    for p in ports_of(&out_include) {
        b.append(
            Nat,
            IstioOutput,
            &format!("-p tcp --dport {p} -j ISTIO_REDIRECT"),
            &format!("tcp dport {p} counter jump istio-redirect"),
        );
    }
    outbound_include(&mut b, &include, Family::V4, &kube_virt);
    outbound_include(&mut b, &include, Family::V6, &kube_virt);

    if redirect_dns {
        dns_zones(&mut b, cfg, facts, &uids, &gids);
    }
    if tproxy {
        tproxy_marks(&mut b, &mark, &uids, &gids, &lo4, lo6, &pass4, &pass6);
    }

    let ipv6 = facts.ipv6;
    let mut rules = b.rules;
    if !ipv6 {
        rules.retain(|r| r.family != Some(Family::V6));
    }
    Ok(RuleSet { rules, ipv6 })
}

/// Excluded interfaces bypass everything; traffic arriving on virtual (kube-virt) interfaces is
/// not inbound traffic (Istio's `shortCircuitExcludeInterfaces`, `shortCircuitKubeInternalInterface`).
fn short_circuit_interfaces(b: &mut Builder, tproxy: bool, excluded_ifaces: &[String], kube_virt: &[String]) {
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

/// The owner-group filter: capture only the listed groups, or everyone but the excluded ones.
fn owner_group_filter(b: &mut Builder, cfg: &CaptureConfig) {
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
fn outbound_excludes(b: &mut Builder, lo4: &str, lo6: &str, exclude: &Ranges) {
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

#[allow(clippy::too_many_arguments)]
fn inbound(
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

fn outbound_include(b: &mut Builder, include: &Ranges, family: Family, kube_virt: &[String]) {
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

/// Sends the app's DNS queries to the agent (Istio's `SetupDNSRedir`): the jump from
/// `ISTIO_OUTPUT` only for a family with servers (or with capture-all), then TCP rules for every
/// IPv4 and every IPv6 server, then UDP rules likewise.
fn dns_redirect(b: &mut Builder, cfg: &CaptureConfig, facts: &Facts) {
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
fn dns_zones(b: &mut Builder, cfg: &CaptureConfig, facts: &Facts, uids: &[String], gids: &[String]) {
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

/// TPROXY's connection marks: keep Envoy's marked connections on the local route table, and do
/// not re-capture Envoy's own connections to the app.
#[allow(clippy::too_many_arguments)]
fn tproxy_marks(
    b: &mut Builder,
    mark: &str,
    uids: &[String],
    gids: &[String],
    lo4: &str,
    lo6: &str,
    pass4: &str,
    pass6: &str,
) {
    use Chain::*;
    use Table::*;
    b.append(
        Mangle,
        Prerouting,
        &format!("-p tcp -m mark --mark {mark} -j CONNMARK --save-mark"),
        &format!("meta l4proto tcp mark {mark} counter ct mark set mark"),
    );
    b.append(
        Mangle,
        Output,
        &format!("-p tcp -o lo -m mark --mark {mark} -j RETURN"),
        &format!("oifname lo meta l4proto tcp mark {mark} counter return"),
    );
    for (ids, kind) in [(uids, "uid"), (gids, "gid")] {
        for id in ids {
            b.versioned(lo4, lo6, Mangle, Output, |lo, ip| {
                (
                    format!("! -d {lo} -p tcp -o lo -m owner --{kind}-owner {id} -j MARK --set-mark {OUTBOUND_MARK}"),
                    format!(
                        "oifname lo meta l4proto tcp {ip} daddr != {lo} sk{kind} {id} counter meta mark set {OUTBOUND_MARK}"
                    ),
                )
            });
        }
    }
    b.append(
        Mangle,
        Output,
        &format!("-p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark"),
        &format!("meta l4proto tcp ct mark {mark} counter meta mark set ct mark"),
    );
    b.insert(
        Mangle,
        Inbound,
        1,
        &format!("-p tcp -m mark --mark {mark} -j RETURN"),
        &format!("meta l4proto tcp mark {mark} counter return"),
    );
    b.insert_v(
        Family::V4,
        Mangle,
        Inbound,
        2,
        &format!("-p tcp -s {pass4} -i lo -j RETURN"),
        &format!("iifname lo meta l4proto tcp ip saddr {pass4} counter return"),
    );
    b.insert_v(
        Family::V6,
        Mangle,
        Inbound,
        2,
        &format!("-p tcp -s {pass6} -i lo -j RETURN"),
        &format!("iifname lo meta l4proto tcp ip6 saddr {pass6} counter return"),
    );
    b.insert(
        Mangle,
        Inbound,
        3,
        &format!("-p tcp -i lo -m mark ! --mark {OUTBOUND_MARK} -j RETURN"),
        &format!("iifname lo meta l4proto tcp mark != {OUTBOUND_MARK} counter return"),
    );
}

#[cfg(test)]
mod tests;

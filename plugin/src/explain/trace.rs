//! Traces one request through the config the way Envoy handles it: capture, listener (original
//! destination), filter chain, route configuration, virtual host, route, action, endpoints.

use std::net::IpAddr;

use mesh_core::CaptureConfig;
use mesh_core::capture::OutboundVerdict;

use super::matcher::{
    DomainMatch, host_for_matching, pick_weighted, route_matches, select_virtual_host, strip_host_port,
    why_not_virtual_host,
};
use super::provenance::{ClusterKey, ObjectRef};
use super::report::{Candidate, ClusterView, Outcome, Shadowed, Step, Trace};
use super::request::Request;
use super::views::{
    action_clusters, cluster_view, config_ref, describe_chain_match, route_config_of, shadowing, tcp_clusters,
    vhost_service,
};
use crate::config_dump::listener::FilterConfig;
use crate::config_dump::{ConfigDump, FilterChain, Index, Listener, Terminal};

/// How `--to`'s host became a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The fully qualified host, when the host names a Service or ServiceEntry host.
    pub fqdn: Option<String>,
    /// The destination IP, when known.
    pub ip: Option<IpAddr>,
    /// How it was found, in words.
    pub how: String,
}

/// Resolves the host offline, from the dump: cluster names give the FQDN; listener addresses and
/// chain IP ranges that lead to that host give its VIP.
pub fn resolve_offline(dump: &ConfigDump, index: &Index<'_>, req: &Request) -> Resolution {
    if let Some(ip) = req.ip {
        return Resolution { fqdn: None, ip: Some(ip), how: format!("{ip} is an IP address") };
    }
    let host = req.host.to_ascii_lowercase();
    let namespace =
        dump.node.as_ref().and_then(|n| n.metadata.get("NAMESPACE")).and_then(|v| v.as_str()).map(str::to_string);
    let mut candidates = vec![host.clone()];
    match host.matches('.').count() {
        0 => {
            if let Some(ns) = &namespace {
                candidates.push(format!("{host}.{ns}.svc."));
            }
        }
        1 => candidates.push(format!("{host}.svc.")),
        _ if host.ends_with(".svc") => candidates.push(format!("{host}.")),
        _ => {}
    }
    let hosts_of = |n: &str| ClusterKey::parse(n).filter(|k| k.direction == "outbound").map(|k| (k.host, k.port));
    let mut fqdn = None;
    for cand in &candidates {
        let found = index
            .clusters
            .keys()
            .filter_map(|n| hosts_of(n))
            .find(|(h, _)| if cand.ends_with('.') { h.starts_with(cand.as_str()) } else { h == cand });
        if let Some((h, _)) = found {
            fqdn = Some(h);
            break;
        }
    }
    let Some(fqdn) = fqdn else {
        return Resolution {
            fqdn: None,
            ip: None,
            how: format!("{host:?} is not an IP and no outbound cluster is for that host; matching by port only"),
        };
    };
    // The VIP: a listener `VIP_port` or a chain with a /32 range whose TCP proxy goes to the host.
    let leads_to_host = |c: &FilterChain| match c.terminal() {
        Some(Terminal::Tcp(t)) => t
            .cluster
            .as_deref()
            .and_then(hosts_of)
            .is_some_and(|(h, p)| h == fqdn && u32::from(p) == u32::from(req.port)),
        _ => false,
    };
    for l in dump.listeners.iter().filter_map(|r| r.config.as_ref()) {
        let Some((addr, port)) = l.socket_address() else { continue };
        if port != u32::from(req.port) || l.use_original_dst == Some(true) {
            continue;
        }
        if let Ok(ip) = addr.parse::<IpAddr>()
            && !ip.is_unspecified()
            && l.filter_chains.iter().any(leads_to_host)
        {
            return Resolution {
                fqdn: Some(fqdn.clone()),
                ip: Some(ip),
                how: format!("{} has listener {}", fqdn, l.name),
            };
        }
        for c in l.filter_chains.iter().filter(|c| leads_to_host(c)) {
            if let Some(r) = c
                .filter_chain_match
                .as_ref()
                .and_then(|m| m.prefix_ranges.iter().find(|r| r.prefix_len == Some(32) || r.prefix_len == Some(128)))
                && let Ok(ip) = r.address_prefix.parse()
            {
                return Resolution {
                    fqdn: Some(fqdn.clone()),
                    ip: Some(ip),
                    how: format!("{} is {} in listener {}", fqdn, ip, l.name),
                };
            }
        }
    }
    // HTTP services: the virtual host for the host lists the VIP among its domains.
    for rc in index.route_configs.values() {
        for vh in &rc.virtual_hosts {
            if vh.domains.iter().any(|d| d.eq_ignore_ascii_case(&fqdn)) {
                let vip = vh.domains.iter().find_map(|d| {
                    d.parse::<IpAddr>()
                        .ok()
                        .or_else(|| d.strip_suffix(&format!(":{}", req.port)).and_then(|x| x.parse().ok()))
                });
                if let Some(ip) = vip {
                    return Resolution {
                        fqdn: Some(fqdn.clone()),
                        ip: Some(ip),
                        how: format!("{fqdn} is {ip} (a domain of virtual host {})", vh.name),
                    };
                }
            }
        }
    }
    Resolution {
        how: format!(
            "{host:?} is {fqdn}; its VIP is not in the dump (HTTP services share the 0.0.0.0_{} listener)",
            req.port
        ),
        fqdn: Some(fqdn),
        ip: None,
    }
}

/// Traces `req` through the dump. `capture` is the pod's capture configuration, when known.
pub fn trace(
    dump: &ConfigDump,
    index: &Index<'_>,
    capture: Option<&CaptureConfig>,
    req: &Request,
    resolution: Resolution,
) -> Trace {
    let mut t = Tracer { index, req, steps: Vec::new(), shadowed: Vec::new() };
    let outcome = t.run(dump, capture, resolution);
    Trace { request: req.clone(), steps: t.steps, outcome, shadowed_routes: t.shadowed }
}

struct Tracer<'a, 'r> {
    index: &'r Index<'a>,
    req: &'r Request,
    steps: Vec<Step>,
    shadowed: Vec<Shadowed>,
}

fn outcome(kind: &str, status: Option<u32>, summary: String) -> Outcome {
    Outcome { kind: kind.to_string(), cluster: None, clusters: Vec::new(), status, summary }
}

fn step(stage: &str, chosen: impl Into<String>, why: impl Into<String>) -> Step {
    Step { stage: stage.to_string(), chosen: chosen.into(), why: why.into(), rejected: Vec::new(), objects: Vec::new() }
}

impl<'a> Tracer<'a, '_> {
    fn run(&mut self, dump: &'a ConfigDump, capture: Option<&CaptureConfig>, res: Resolution) -> Outcome {
        let req = self.req;
        let mut s =
            step("resolve", res.ip.map(|i| i.to_string()).unwrap_or_else(|| "IP unknown".into()), res.how.clone());
        if let Some(f) = &res.fqdn {
            s.chosen = format!("{f} ({})", s.chosen);
            s.objects.extend(super::provenance::service_of_host(f));
        }
        self.steps.push(s);
        let ip = res.ip;

        // 1. Capture.
        let virtual_outbound =
            dump.listeners.iter().filter_map(|r| r.config.as_ref()).find(|l| l.use_original_dst == Some(true));
        match capture {
            Some(cfg) => {
                let verdict = match ip {
                    Some(ip) => cfg.captures_outbound(1000, 1000, ip, req.port),
                    None => cfg.captures_outbound(1000, 1000, IpAddr::from([240, 0, 0, 1]), req.port),
                };
                let port = cfg.effective_proxy_port();
                let (captured, why) = match verdict {
                    OutboundVerdict::Captured => (true, format!("iptables redirects it to {port}")),
                    OutboundVerdict::BypassExcludedPort(p) => {
                        (false, format!("port {p} is excluded from capture (-o)"))
                    }
                    OutboundVerdict::BypassExcludedCidr(c) => (false, format!("{c} is excluded from capture (-x)")),
                    OutboundVerdict::BypassNotIncluded if ip.is_none() => (
                        true,
                        format!(
                            "captured only if the Service IP is in the included ranges; assuming it is (redirect to {port})"
                        ),
                    ),
                    OutboundVerdict::BypassNotIncluded => {
                        (false, "the destination is in no included range (-i)".to_string())
                    }
                    other => (false, format!("{other:?}")),
                };
                self.steps.push(step(
                    "capture",
                    if captured { format!("captured → {port}") } else { "not captured".into() },
                    why.clone(),
                ));
                if !captured {
                    return outcome("not_captured", None, format!("the connection bypasses the sidecar: {why}"));
                }
            }
            None => self.steps.push(step(
                "capture",
                "assumed captured",
                "no pod given; Istio's default captures all outbound TCP to 15001",
            )),
        }

        // 2. Listener.
        let Some((listener, listener_step)) = self.select_listener(dump, virtual_outbound, ip) else {
            return outcome(
                "no_listener",
                None,
                format!("no listener takes port {}; the connection is refused", req.port),
            );
        };
        self.steps.push(listener_step);

        // 3. Filter chain.
        let chain = match self.select_chain(listener, ip) {
            Some(c) => c,
            None => {
                return outcome(
                    "no_filter_chain",
                    None,
                    format!("no filter chain of {} matches; Envoy closes the connection", listener.name),
                );
            }
        };
        match chain.terminal() {
            Some(Terminal::Http(hcm)) => self.http(hcm),
            Some(Terminal::Tcp(tcp)) => {
                let clusters = tcp_clusters(self.index, tcp.cluster.as_deref(), tcp.weighted_clusters.as_ref());
                self.finish_clusters(clusters, None, "tcp proxy")
            }
            None => outcome(
                "other",
                None,
                format!(
                    "the chain ends in {} (neither HTTP nor TCP proxy)",
                    chain.filters.last().map(|f| f.name.as_str()).unwrap_or("no filter")
                ),
            ),
        }
    }

    fn select_listener(
        &mut self,
        dump: &'a ConfigDump,
        virtual_outbound: Option<&'a Listener>,
        ip: Option<IpAddr>,
    ) -> Option<(&'a Listener, Step)> {
        let port = u32::from(self.req.port);
        let all: Vec<&Listener> = dump
            .listeners
            .iter()
            .filter(|r| {
                matches!(r.state, crate::config_dump::ResourceState::Static | crate::config_dump::ResourceState::Active)
            })
            .filter_map(|r| r.config.as_ref())
            .collect();
        let on_port: Vec<&Listener> = all
            .iter()
            .copied()
            .filter(|l| l.use_original_dst != Some(true) && l.socket_address().is_some_and(|(_, p)| p == port))
            .collect();
        let mut rejected = Vec::new();
        let ip_text = ip.map(|i| i.to_string());
        let exact =
            on_port.iter().copied().find(|l| l.socket_address().is_some_and(|(a, _)| Some(a.to_string()) == ip_text));
        let wildcard =
            on_port.iter().copied().find(|l| l.socket_address().is_some_and(|(a, _)| a == "0.0.0.0" || a == "::"));
        let chosen_name = exact.or(wildcard).map(|l| l.name.as_str());
        for l in &on_port {
            if Some(l.name.as_str()) == chosen_name {
                continue;
            }
            let (a, _) = l.socket_address().unwrap_or(("?", 0));
            let reason = match &ip_text {
                Some(i) if exact.is_some() && (a == "0.0.0.0" || a == "::") => {
                    format!("the exact listener for {i}:{port} wins over the wildcard")
                }
                Some(i) => format!("address {a} is not {i}"),
                None => format!("address {a}: the destination IP is unknown"),
            };
            rejected.push(Candidate { name: l.name.clone(), reason });
        }
        let via = match virtual_outbound {
            Some(vo) => format!("{} hands the connection to the listener of its original destination: ", vo.name),
            None => String::new(),
        };
        let chosen = if let Some(l) = exact {
            Some((l, format!("{via}exact address {}:{port}", ip_text.clone().unwrap_or_default())))
        } else if let Some(l) = wildcard {
            Some((
                l,
                format!(
                    "{via}no listener for {}:{port}, so the wildcard 0.0.0.0:{port}",
                    ip_text.clone().unwrap_or_else(|| "the destination IP".into())
                ),
            ))
        } else {
            virtual_outbound
                .map(|vo| (vo, format!("no listener for port {port}; {} handles it with its own chains", vo.name)))
        };
        chosen.map(|(l, why)| {
            let mut s = step("listener", l.name.clone(), why);
            s.rejected = rejected;
            (l, s)
        })
    }

    fn select_chain(&mut self, listener: &'a Listener, ip: Option<IpAddr>) -> Option<&'a FilterChain> {
        let req = self.req;
        let tls = req.sni.is_some();
        let transport = if tls { "tls" } else { "raw_buffer" };
        let sni = if tls && listener.has_listener_filter("tls_inspector") {
            req.sni.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let alpn: Vec<&str> =
            if !tls && listener.has_listener_filter("http_inspector") { vec!["http/1.1"] } else { Vec::new() };
        let mut cands: Vec<(usize, &FilterChain)> = listener.filter_chains.iter().enumerate().collect();
        let mut rejected: Vec<Candidate> = Vec::new();
        let label =
            |i: usize, c: &FilterChain| if c.name.is_empty() { format!("#{i}") } else { format!("#{i} {}", c.name) };
        let mut narrow = |cands: &mut Vec<(usize, &'a FilterChain)>,
                          keep: &dyn Fn(&FilterChain) -> Result<(), String>| {
            let mut kept = Vec::new();
            for (i, c) in cands.drain(..) {
                match keep(c) {
                    Ok(()) => kept.push((i, c)),
                    Err(reason) => rejected.push(Candidate { name: label(i, c), reason }),
                }
            }
            *cands = kept;
        };
        let m = |c: &FilterChain| c.filter_chain_match.clone().unwrap_or_default();
        // Destination port: chains for this port win; without any, chains without a port.
        let port = u32::from(req.port);
        let any_port = cands.iter().any(|(_, c)| m(c).destination_port == Some(port));
        narrow(&mut cands, &|c| match m(c).destination_port {
            Some(p) if p == port => Ok(()),
            Some(p) => Err(format!("destination_port {p} ≠ {port}")),
            None if any_port => Err(format!("has no destination_port, and chains for port {port} exist")),
            None => Ok(()),
        });
        // Destination IP: the longest matching prefix; chains without ranges count as /0.
        let best = |c: &FilterChain| -> Option<u32> {
            let r = &m(c).prefix_ranges;
            if r.is_empty() {
                return Some(0);
            }
            let ip = ip?;
            r.iter().filter(|r| r.contains(ip) == Some(true)).map(|r| r.prefix_len.unwrap_or(0)).max()
        };
        let longest = cands.iter().filter_map(|(_, c)| best(c)).max();
        narrow(&mut cands, &|c| match (best(c), longest) {
            (Some(b), Some(l)) if b == l => Ok(()),
            (Some(b), Some(l)) => Err(format!("destination range /{b} is shorter than a matching /{l}")),
            _ => Err(match ip {
                Some(ip) => {
                    format!("prefix_ranges {} do not contain {ip}", describe_chain_match(c.filter_chain_match.as_ref()))
                }
                None => "needs a destination IP range; the destination IP is unknown".to_string(),
            }),
        });
        // Server name: exact, then the longest wildcard, then chains without names.
        let sni_rank = |c: &FilterChain| -> Option<usize> {
            let names = &m(c).server_names;
            if names.is_empty() {
                return Some(0);
            }
            names
                .iter()
                .filter_map(|n| {
                    if *n == sni && !sni.is_empty() {
                        Some(usize::MAX)
                    } else if let Some(suffix) = n.strip_prefix('*') {
                        (sni.len() > suffix.len() && sni.ends_with(suffix) && suffix.starts_with('.'))
                            .then_some(suffix.len())
                    } else {
                        None
                    }
                })
                .max()
        };
        let best_sni = cands.iter().filter_map(|(_, c)| sni_rank(c)).max();
        narrow(&mut cands, &|c| match (sni_rank(c), best_sni) {
            (Some(r), Some(b)) if r == b => Ok(()),
            (Some(_), Some(_)) => Err("a more specific server name matched".to_string()),
            _ if sni.is_empty() => {
                Err(format!("needs server name {} and the connection has none", m(c).server_names.join(",")))
            }
            _ => Err(format!("server names {} do not include {sni}", m(c).server_names.join(","))),
        });
        // Transport protocol: exact, else chains without one.
        let any_transport = cands.iter().any(|(_, c)| m(c).transport_protocol == transport);
        narrow(&mut cands, &|c| {
            let tp = m(c).transport_protocol;
            if tp == transport || tp.is_empty() && !any_transport {
                Ok(())
            } else if tp.is_empty() {
                Err(format!("has no transport_protocol, and chains for {transport} exist"))
            } else {
                Err(format!("transport_protocol {tp} ≠ {transport}"))
            }
        });
        // Application protocols: the first of the connection's ALPN values any chain has, else none.
        let chosen_alpn = alpn
            .iter()
            .find(|a| cands.iter().any(|(_, c)| m(c).application_protocols.iter().any(|x| x == *a)))
            .copied();
        narrow(&mut cands, &|c| {
            let aps = m(c).application_protocols;
            match chosen_alpn {
                Some(a) if aps.iter().any(|x| x == a) => Ok(()),
                None if aps.is_empty() => Ok(()),
                Some(a) if aps.is_empty() => Err(format!("has no application_protocols, and chains for {a} exist")),
                _ => Err(format!(
                    "application_protocols {} do not include {}",
                    aps.join(","),
                    if alpn.is_empty() { "(none: plaintext without ALPN)".to_string() } else { alpn.join(",") }
                )),
            }
        });
        // Source criteria: the client is the pod itself (EXTERNAL to the destination); source ranges
        // are not known, so chains with them are set aside.
        narrow(&mut cands, &|c| {
            let mm = m(c);
            if mm.source_type == "SAME_IP_OR_LOOPBACK" {
                Err("source_type SAME_IP_OR_LOOPBACK: the pod's own connections to another address are EXTERNAL".into())
            } else if !mm.source_prefix_ranges.is_empty()
                || !mm.direct_source_prefix_ranges.is_empty()
                || !mm.source_ports.is_empty()
            {
                Err("has source criteria, which depend on the client address".into())
            } else {
                Ok(())
            }
        });
        let conn = format!(
            "connection: port {}, ip {}, transport {transport}{}{}",
            req.port,
            ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into()),
            if sni.is_empty() { String::new() } else { format!(", sni {sni}") },
            if alpn.is_empty() { String::new() } else { format!(", alpn {}", alpn.join(",")) },
        );
        let (chosen, why) = match cands.first() {
            Some((i, c)) => {
                let extra = if cands.len() > 1 {
                    format!("; {} chains tie, Envoy would have rejected this listener", cands.len())
                } else {
                    String::new()
                };
                (
                    Some(*c),
                    format!("{} matches: {}{extra}", label(*i, c), describe_chain_match(c.filter_chain_match.as_ref())),
                )
            }
            None => match &listener.default_filter_chain {
                Some(d) => (Some(d), "no chain matches, so the default_filter_chain".to_string()),
                None => (None, "no chain matches and there is no default_filter_chain".to_string()),
            },
        };
        rejected.sort_by_key(|c| {
            c.name.trim_start_matches('#').split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX)
        });
        let chosen_label = match (cands.first(), chosen) {
            (Some((i, c)), _) => label(*i, c),
            (None, Some(_)) => "default_filter_chain".to_string(),
            (None, None) => "none".to_string(),
        };
        let mut s = step("filter_chain", chosen_label, format!("{why} ({conn})"));
        s.rejected = rejected;
        s.objects.extend(chosen.and_then(|c| config_ref(c.metadata.as_ref())));
        self.steps.push(s);
        chosen
    }

    fn http(&mut self, hcm: &'a FilterConfig) -> Outcome {
        let req = self.req;
        let index = self.index;
        let (rc_name, rc) = route_config_of(index, hcm);
        let Some(rc) = rc else {
            self.steps.push(step("route_config", rc_name.clone(), "not in the dump: RDS has not delivered it"));
            return outcome(
                "no_route_config",
                Some(404),
                format!("route configuration {rc_name} is missing; Envoy answers 404"),
            );
        };
        self.steps.push(step(
            "route_config",
            rc_name.clone(),
            if hcm.rds.is_some() {
                "from RDS, named by the HTTP connection manager"
            } else {
                "inline in the HTTP connection manager"
            },
        ));

        // Virtual host.
        let strip = rc.ignore_port_in_host_matching
            || hcm.strip_any_host_port
            || hcm.strip_matching_host_port
                && strip_host_port(&req.authority) != req.authority
                && req.authority.ends_with(&format!(":{}", req.port));
        let host = host_for_matching(&req.authority, strip);
        let Some((vi, vh, how, domain)) = select_virtual_host(&rc.virtual_hosts, &host) else {
            let mut s = step(
                "virtual_host",
                "none",
                format!("no domain of {} virtual hosts matches {host:?}", rc.virtual_hosts.len()),
            );
            s.rejected = rc
                .virtual_hosts
                .iter()
                .take(50)
                .map(|v| Candidate { name: v.name.clone(), reason: why_not_virtual_host(v, &host, None) })
                .collect();
            self.steps.push(s);
            return outcome(
                "no_virtual_host",
                Some(404),
                format!("no virtual host for {host:?}; Envoy answers 404 (NR)"),
            );
        };
        let how_text = match how {
            DomainMatch::Exact => "exact domain",
            DomainMatch::Suffix => "longest suffix wildcard",
            DomainMatch::Prefix => "longest prefix wildcard",
            DomainMatch::Any => "the catch-all",
        };
        let mut s = step(
            "virtual_host",
            vh.name.clone(),
            format!("{how_text} {domain:?} matches host {host:?}{}", if strip { " (port ignored)" } else { "" }),
        );
        let mut others = 0usize;
        for (i, v) in rc.virtual_hosts.iter().enumerate() {
            if i == vi {
                continue;
            }
            let reason = why_not_virtual_host(v, &host, Some(how));
            if reason.starts_with("no domain matches") {
                others += 1;
            } else {
                s.rejected.push(Candidate { name: v.name.clone(), reason });
            }
        }
        if others > 0 {
            s.rejected.push(Candidate {
                name: format!("{others} other virtual hosts"),
                reason: format!("no domain matches {host:?}"),
            });
        }
        s.objects.extend(vhost_service(vh));
        self.steps.push(s);

        // Routes, in order.
        let shadow = shadowing(&vh.routes);
        for (i, by) in shadow.iter().enumerate() {
            if let Some(j) = by {
                self.shadowed
                    .push(Shadowed { route: route_label(i, &vh.routes[i]), by: route_label(*j, &vh.routes[*j]) });
            }
        }
        let mut rejected = Vec::new();
        let mut chosen = None;
        for (i, r) in vh.routes.iter().enumerate() {
            match route_matches(&r.matcher, req) {
                Ok(()) => {
                    chosen = Some((i, r));
                    break;
                }
                Err(reason) => rejected.push(Candidate { name: route_label(i, r), reason }),
            }
        }
        let Some((ri, route)) = chosen else {
            let mut s = step("route", "none", format!("none of the {} routes matches", vh.routes.len()));
            s.rejected = rejected;
            self.steps.push(s);
            return outcome("no_route", Some(404), "no route matches; Envoy answers 404 (NR)".to_string());
        };
        let mut s = step(
            "route",
            route_label(ri, route),
            format!("first route that matches: {}", super::matcher::describe_match(&route.matcher)),
        );
        s.rejected = rejected;
        s.objects.extend(config_ref(route.metadata.as_ref()));
        self.steps.push(s);

        // Action.
        if let Some(a) = &route.route {
            if let Some(h) = &a.cluster_header {
                let name = req.header(&h.to_ascii_lowercase());
                self.steps.push(step("action", format!("cluster from header {h}"), format!("header value {name:?}")));
                return match name {
                    Some(n) => self.finish_clusters(vec![cluster_view(index, &n, None, None)], None, "cluster_header"),
                    None => {
                        outcome("cluster_header", Some(503), format!("header {h} is missing; Envoy answers 503 (NC)"))
                    }
                };
            }
            let clusters = action_clusters(index, a);
            let picked = a.weighted_clusters.as_ref().and_then(|w| {
                let weights: Vec<u32> = w.clusters.iter().map(|c| c.weight.unwrap_or(0)).collect();
                let nonzero: Vec<usize> = weights.iter().enumerate().filter(|(_, w)| **w > 0).map(|(i, _)| i).collect();
                if let [only] = nonzero.as_slice() {
                    return Some((*only, "the only cluster with a non-zero weight".to_string()));
                }
                let header = w.header_name.as_deref()?;
                let value: u64 = req.header(&header.to_ascii_lowercase())?.trim().parse().ok()?;
                let (i, total) = pick_weighted(&weights, w.total_weight, value)?;
                Some((i, format!("header {header}: {value} % {total} = {} falls in its range", value % total)))
            });
            return self.finish_clusters(clusters, picked, "route");
        }
        if let Some(red) = &route.redirect {
            let code = match red.response_code.as_deref().unwrap_or("MOVED_PERMANENTLY") {
                "FOUND" => 302,
                "SEE_OTHER" => 303,
                "TEMPORARY_REDIRECT" => 307,
                "PERMANENT_REDIRECT" => 308,
                _ => 301,
            };
            let a = super::views::action(index, route);
            let to = match &a {
                super::report::Action::Redirect { to, .. } => to.clone(),
                _ => String::new(),
            };
            self.steps.push(step("action", format!("redirect {code}"), format!("to {to}")));
            return outcome("redirect", Some(code), format!("Envoy answers {code}, redirecting to {to}"));
        }
        if let Some(d) = &route.direct_response {
            let status = d.status.unwrap_or(0);
            self.steps.push(step("action", format!("direct response {status}"), "Envoy answers itself"));
            return outcome("direct_response", Some(status), format!("Envoy answers {status} itself"));
        }
        outcome("no_action", Some(404), "the route has no action".to_string())
    }

    fn finish_clusters(&mut self, clusters: Vec<ClusterView>, picked: Option<(usize, String)>, via: &str) -> Outcome {
        let mut s;
        let determined: Option<usize> = if clusters.len() == 1 { Some(0) } else { picked.as_ref().map(|p| p.0) };
        if clusters.len() == 1 {
            s = step("action", clusters[0].name.clone(), format!("the {via} forwards to one cluster"));
        } else {
            let shares = clusters
                .iter()
                .map(|c| format!("{} {}%", c.name, c.share_percent.unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(", ");
            s = match &picked {
                Some((i, why)) => {
                    step("action", clusters[*i].name.clone(), format!("weighted clusters ({shares}); picked: {why}"))
                }
                None => step("action", "weighted clusters", format!("Envoy picks at random by weight: {shares}")),
            };
        }
        for c in &clusters {
            s.objects.extend(c.service.clone());
            s.objects.extend(c.destination_rule.clone());
        }
        self.steps.push(s);
        // Endpoints.
        let target = determined.map(|i| &clusters[i]);
        match target {
            Some(c) if c.found == Some(false) => {
                self.steps.push(step(
                    "endpoints",
                    "none",
                    format!("cluster {} is not in the dump; Envoy answers 503 (NC)", c.name),
                ));
                return Outcome {
                    kind: "cluster".into(),
                    cluster: Some(c.name.clone()),
                    clusters,
                    status: Some(503),
                    summary: "the cluster is unknown to Envoy: 503".into(),
                };
            }
            Some(c) => {
                let healthy = c.endpoints.iter().filter(|e| e.health == "HEALTHY" || e.health == "UNKNOWN").count();
                let list = c.endpoints.iter().map(|e| e.address.clone()).collect::<Vec<_>>().join(", ");
                let why = if !c.endpoints_known {
                    "endpoints are not in the dump (take it with ?include_eds)".to_string()
                } else if c.endpoints.is_empty() {
                    "the cluster has no endpoints; Envoy answers 503 (UH)".to_string()
                } else {
                    format!(
                        "{healthy} of {} healthy, load-balanced with {}",
                        c.endpoints.len(),
                        index_lb(self.index, &c.name)
                    )
                };
                self.steps.push(step("endpoints", if list.is_empty() { "none".to_string() } else { list }, why));
            }
            None => {}
        }
        let summary = match target {
            Some(c) => format!(
                "forwarded to {}{}",
                c.name,
                c.service.as_ref().map(|s| format!(" ({})", s.display())).unwrap_or_default()
            ),
            None => format!("forwarded to one of {} weighted clusters", clusters.len()),
        };
        Outcome {
            kind: if clusters.len() > 1 { "weighted_clusters".into() } else { "cluster".into() },
            cluster: target.map(|c| c.name.clone()),
            clusters,
            status: None,
            summary,
        }
    }
}

fn index_lb(index: &Index<'_>, cluster: &str) -> String {
    index.clusters.get(cluster).and_then(|c| c.lb_policy.clone()).unwrap_or_else(|| "ROUND_ROBIN".to_string())
}

fn route_label(i: usize, r: &crate::config_dump::Route) -> String {
    if r.name.is_empty() { format!("#{i}") } else { format!("#{i} {}", r.name) }
}

/// Objects named by the steps of a trace (for the API server lookups).
pub fn trace_objects(t: &Trace) -> Vec<ObjectRef> {
    t.steps.iter().flat_map(|s| s.objects.iter().cloned()).collect()
}

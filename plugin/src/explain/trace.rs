//! Traces one request through the config the way Envoy handles it: capture, listener (original
//! destination, `listener`), filter chain (`chain`), route configuration, virtual host, route and
//! action (`http`), endpoints.

use std::net::IpAddr;

use mesh_core::CaptureConfig;
use mesh_core::capture::OutboundVerdict;

use super::provenance::{ClusterKey, ObjectRef};
use super::report::{ClusterView, Outcome, Shadowed, Step, Trace};
use super::request::Request;
use super::views::tcp_clusters;
use crate::config_dump::{ConfigDump, FilterChain, Index, Terminal};

mod chain;
pub mod gateway;
mod http;
mod inbound;
mod listener;

pub use super::report::{GatewayPort, GatewayService};
pub use inbound::{Peer, instance_ip};

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

/// Traces `req` as a request arriving at the pod from `peer` on `req.port`; `ip` is the pod's IP,
/// when known.
pub fn trace_inbound(
    dump: &ConfigDump,
    index: &Index<'_>,
    capture: Option<&CaptureConfig>,
    req: &Request,
    peer: Peer,
    ip: Option<IpAddr>,
) -> Trace {
    let mut t = Tracer { index, req, steps: Vec::new(), shadowed: Vec::new() };
    let outcome = t.run_inbound(dump, capture, peer, ip);
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
        if let Err(o) = self.capture(capture, ip) {
            return o;
        }
        let virtual_outbound =
            dump.listeners.iter().filter_map(|r| r.config.as_ref()).find(|l| l.use_original_dst == Some(true));

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
        let conn = chain::Connection::outbound(listener, req.port, ip, req.sni.as_deref());
        let chain = match self.select_chain(listener, &conn) {
            Some(c) => c,
            None => {
                return outcome(
                    "no_filter_chain",
                    None,
                    format!("no filter chain of {} matches; Envoy closes the connection", listener.name),
                );
            }
        };
        self.terminal(chain)
    }

    /// The chain's last network filter: the HTTP connection manager's routing, or the TCP proxy's
    /// clusters.
    fn terminal(&mut self, chain: &'a FilterChain) -> Outcome {
        match chain.terminal() {
            Some(Terminal::Http(hcm)) => self.http(hcm),
            Some(Terminal::Tcp(tcp)) => {
                let clusters = tcp_clusters(self.index, tcp.cluster.as_deref(), tcp.weighted_clusters.as_ref());
                self.finish_clusters(clusters, None, "tcp proxy")
            }
            None => unknown_terminal(chain),
        }
    }

    /// The capture step: does iptables send the connection to the sidecar at all?
    fn capture(&mut self, capture: Option<&CaptureConfig>, ip: Option<IpAddr>) -> Result<(), Outcome> {
        let req = self.req;
        let Some(cfg) = capture else {
            self.steps.push(step(
                "capture",
                "assumed captured",
                "no pod given; Istio's default captures all outbound TCP to 15001",
            ));
            return Ok(());
        };
        let verdict = match ip {
            Some(ip) => cfg.captures_outbound(1000, 1000, ip, req.port),
            None => cfg.captures_outbound(1000, 1000, IpAddr::from([240, 0, 0, 1]), req.port),
        };
        let port = cfg.effective_proxy_port();
        let (captured, why) = match verdict {
            OutboundVerdict::Captured => (true, format!("iptables redirects it to {port}")),
            OutboundVerdict::BypassExcludedPort(p) => (false, format!("port {p} is excluded from capture (-o)")),
            OutboundVerdict::BypassExcludedCidr(c) => (false, format!("{c} is excluded from capture (-x)")),
            OutboundVerdict::BypassNotIncluded if ip.is_none() => (
                true,
                format!(
                    "captured only if the Service IP is in the included ranges; assuming it is (redirect to {port})"
                ),
            ),
            OutboundVerdict::BypassNotIncluded => (false, "the destination is in no included range (-i)".to_string()),
            other => (false, format!("{other:?}")),
        };
        self.steps.push(step(
            "capture",
            if captured { format!("captured → {port}") } else { "not captured".into() },
            why.clone(),
        ));
        if captured {
            Ok(())
        } else {
            Err(outcome("not_captured", None, format!("the connection bypasses the sidecar: {why}")))
        }
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
            Some(c) if c.discovery_type.as_deref() == Some("ORIGINAL_DST") => self.steps.push(step(
                "endpoints",
                "original destination",
                "an ORIGINAL_DST cluster: Envoy connects to the address the client dialled",
            )),
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

/// The outcome of a chain that ends in neither an HTTP connection manager nor a TCP proxy.
fn unknown_terminal(chain: &FilterChain) -> Outcome {
    outcome(
        "other",
        None,
        format!(
            "the chain ends in {} (neither HTTP nor TCP proxy)",
            chain.filters.last().map(|f| f.name.as_str()).unwrap_or("no filter")
        ),
    )
}

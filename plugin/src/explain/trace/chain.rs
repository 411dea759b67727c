//! The filter chain step: Envoy's filter chain match, criterion by criterion (destination port,
//! destination IP, server name, transport protocol, application protocols, source), each one
//! narrowing the candidates and naming why the others fall out.

use std::net::IpAddr;

use super::super::report::Candidate;
use super::super::views::{config_ref, describe_chain_match};
use super::{Tracer, step};
use crate::config_dump::listener::FilterChainMatch;
use crate::config_dump::{FilterChain, Listener};

/// What the connection offers to the filter chain match.
pub(super) struct Connection {
    /// The destination port.
    pub port: u32,
    /// The destination IP, when known.
    pub ip: Option<IpAddr>,
    /// `tls` or `raw_buffer`.
    pub transport: &'static str,
    /// The server name, as the TLS inspector reads it (empty without TLS or without the inspector).
    pub sni: String,
    /// The ALPN values the connection offers (detected by the HTTP inspector or sent in TLS).
    pub alpn: Vec<String>,
}

impl Connection {
    /// The connection of an outbound request: TLS when `--sni` is given, `http/1.1` detected by the
    /// HTTP inspector on plaintext.
    pub fn outbound(listener: &Listener, port: u16, ip: Option<IpAddr>, sni: Option<&str>) -> Self {
        let tls = sni.is_some();
        let sni = if tls && listener.has_listener_filter("tls_inspector") {
            sni.unwrap_or_default().to_string()
        } else {
            String::new()
        };
        let alpn = if !tls && listener.has_listener_filter("http_inspector") {
            vec!["http/1.1".to_string()]
        } else {
            Vec::new()
        };
        Connection { port: u32::from(port), ip, transport: if tls { "tls" } else { "raw_buffer" }, sni, alpn }
    }

    fn describe(&self) -> String {
        format!(
            "connection: port {}, ip {}, transport {}{}{}",
            self.port,
            self.ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into()),
            self.transport,
            if self.sni.is_empty() { String::new() } else { format!(", sni {}", self.sni) },
            if self.alpn.is_empty() { String::new() } else { format!(", alpn {}", self.alpn.join(",")) },
        )
    }
}

fn label(i: usize, c: &FilterChain) -> String {
    if c.name.is_empty() { format!("#{i}") } else { format!("#{i} {}", c.name) }
}

fn m(c: &FilterChain) -> FilterChainMatch {
    c.filter_chain_match.clone().unwrap_or_default()
}

/// The chains still in the running, and the ones each criterion set aside.
struct Narrowing<'a> {
    cands: Vec<(usize, &'a FilterChain)>,
    rejected: Vec<Candidate>,
}

impl<'a> Narrowing<'a> {
    fn keep(&mut self, keep: impl Fn(&FilterChain) -> Result<(), String>) {
        let mut kept = Vec::new();
        for (i, c) in self.cands.drain(..) {
            match keep(c) {
                Ok(()) => kept.push((i, c)),
                Err(reason) => self.rejected.push(Candidate { name: label(i, c), reason }),
            }
        }
        self.cands = kept;
    }

    fn any(&self, f: impl Fn(&FilterChain) -> bool) -> bool {
        self.cands.iter().any(|(_, c)| f(c))
    }

    /// Destination port: chains for this port win; without any, chains without a port.
    fn by_destination_port(&mut self, port: u32) {
        let any_port = self.any(|c| m(c).destination_port == Some(port));
        self.keep(|c| match m(c).destination_port {
            Some(p) if p == port => Ok(()),
            Some(p) => Err(format!("destination_port {p} ≠ {port}")),
            None if any_port => Err(format!("has no destination_port, and chains for port {port} exist")),
            None => Ok(()),
        });
    }

    /// Destination IP: the longest matching prefix; chains without ranges count as /0.
    fn by_destination_ip(&mut self, ip: Option<IpAddr>) {
        let best = |c: &FilterChain| -> Option<u32> {
            let r = &m(c).prefix_ranges;
            if r.is_empty() {
                return Some(0);
            }
            let ip = ip?;
            r.iter().filter(|r| r.contains(ip) == Some(true)).map(|r| r.prefix_len.unwrap_or(0)).max()
        };
        let longest = self.cands.iter().filter_map(|(_, c)| best(c)).max();
        self.keep(|c| match (best(c), longest) {
            (Some(b), Some(l)) if b == l => Ok(()),
            (Some(b), Some(l)) => Err(format!("destination range /{b} is shorter than a matching /{l}")),
            _ => Err(match ip {
                Some(ip) => {
                    format!("prefix_ranges {} do not contain {ip}", describe_chain_match(c.filter_chain_match.as_ref()))
                }
                None => "needs a destination IP range; the destination IP is unknown".to_string(),
            }),
        });
    }

    /// Server name: exact, then the longest wildcard, then chains without names.
    fn by_server_name(&mut self, sni: &str) {
        let sni_rank = |c: &FilterChain| -> Option<usize> {
            let names = &m(c).server_names;
            if names.is_empty() {
                return Some(0);
            }
            names
                .iter()
                .filter_map(|n| {
                    if n == sni && !sni.is_empty() {
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
        let best_sni = self.cands.iter().filter_map(|(_, c)| sni_rank(c)).max();
        self.keep(|c| match (sni_rank(c), best_sni) {
            (Some(r), Some(b)) if r == b => Ok(()),
            (Some(_), Some(_)) => Err("a more specific server name matched".to_string()),
            _ if sni.is_empty() => {
                Err(format!("needs server name {} and the connection has none", m(c).server_names.join(",")))
            }
            _ => Err(format!("server names {} do not include {sni}", m(c).server_names.join(","))),
        });
    }

    /// Transport protocol: exact, else chains without one.
    fn by_transport(&mut self, transport: &str) {
        let any_transport = self.any(|c| m(c).transport_protocol == transport);
        self.keep(|c| {
            let tp = m(c).transport_protocol;
            if tp == transport || tp.is_empty() && !any_transport {
                Ok(())
            } else if tp.is_empty() {
                Err(format!("has no transport_protocol, and chains for {transport} exist"))
            } else {
                Err(format!("transport_protocol {tp} ≠ {transport}"))
            }
        });
    }

    /// Application protocols: the first of the connection's ALPN values any chain has, else none.
    fn by_application_protocols(&mut self, alpn: &[String]) {
        let chosen_alpn =
            alpn.iter().find(|a| self.any(|c| m(c).application_protocols.iter().any(|x| x == *a))).map(String::as_str);
        self.keep(|c| {
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
    }

    /// Source criteria: the client is the pod itself (EXTERNAL to the destination); source ranges
    /// are not known, so chains with them are set aside.
    fn by_source(&mut self) {
        self.keep(|c| {
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
    }
}

impl<'a> Tracer<'a, '_> {
    /// Picks the filter chain of `listener` for `conn` and records the `filter_chain` step.
    pub(super) fn select_chain(&mut self, listener: &'a Listener, conn: &Connection) -> Option<&'a FilterChain> {
        let mut n = Narrowing { cands: listener.filter_chains.iter().enumerate().collect(), rejected: Vec::new() };
        n.by_destination_port(conn.port);
        n.by_destination_ip(conn.ip);
        n.by_server_name(&conn.sni);
        n.by_transport(conn.transport);
        n.by_application_protocols(&conn.alpn);
        n.by_source();
        let Narrowing { cands, mut rejected } = n;
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
        let mut s = step("filter_chain", chosen_label, format!("{why} ({})", conn.describe()));
        s.rejected = rejected;
        s.objects.extend(chosen.and_then(|c| config_ref(c.metadata.as_ref())));
        self.steps.push(s);
        chosen
    }
}

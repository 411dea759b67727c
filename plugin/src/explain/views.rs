//! Builds report views (chains, routes, clusters, endpoints) from the config dump.

use super::matcher::{describe_match, shadows};
use super::provenance::{ClusterKey, ObjectRef, Workload, service_of_host};
use super::report::{Action, ChainView, ClusterView, Destination, EndpointView, HttpView, RouteView, VirtualHostView};
use crate::config_dump::listener::{FilterChainMatch, TcpWeightedClusters};
use crate::config_dump::route::{RouteAction, VirtualHost};
use crate::config_dump::{FilterChain, Index, Metadata, Route, RouteConfiguration, Terminal};

/// The Istio object named by a resource's `filter_metadata.istio.config`.
pub fn config_ref(metadata: Option<&Metadata>) -> Option<ObjectRef> {
    metadata.and_then(Metadata::istio_config).and_then(ObjectRef::from_istio_config)
}

/// A filter chain's match criteria in words.
pub fn describe_chain_match(m: Option<&FilterChainMatch>) -> String {
    let Some(m) = m else { return "ALL".to_string() };
    let mut parts = Vec::new();
    if let Some(p) = m.destination_port {
        parts.push(format!("port {p}"));
    }
    if !m.prefix_ranges.is_empty() {
        parts.push(format!("ip {}", m.prefix_ranges.iter().map(|r| r.display()).collect::<Vec<_>>().join(",")));
    }
    if !m.server_names.is_empty() {
        parts.push(format!("sni {}", m.server_names.join(",")));
    }
    if !m.transport_protocol.is_empty() {
        parts.push(format!("transport {}", m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        parts.push(format!("alpn {}", m.application_protocols.join(",")));
    }
    if !m.source_prefix_ranges.is_empty() || !m.direct_source_prefix_ranges.is_empty() {
        parts.push("source ranges".to_string());
    }
    if !m.source_type.is_empty() && m.source_type != "ANY" {
        parts.push(format!("source {}", m.source_type));
    }
    if parts.is_empty() { "ALL".to_string() } else { parts.join("; ") }
}

/// A cluster with its provenance and endpoints.
pub fn cluster_view(index: &Index<'_>, name: &str, weight: Option<u32>, total: Option<u64>) -> ClusterView {
    let cluster = index.clusters.get(name).copied();
    let key = ClusterKey::parse(name);
    let assignment = cluster.and_then(|c| index.endpoints_of(c));
    let mut endpoints = Vec::new();
    if let Some(a) = assignment {
        for loc in &a.endpoints {
            let locality = loc.locality.as_ref().map(|l| l.display()).unwrap_or_default();
            for e in &loc.lb_endpoints {
                let address = e
                    .endpoint
                    .as_ref()
                    .and_then(|e| e.address.as_ref())
                    .map(|a| a.display())
                    .unwrap_or_else(|| "?".to_string());
                let md = e.metadata.as_ref();
                endpoints.push(EndpointView {
                    address,
                    health: e.health_status.clone().unwrap_or_else(|| "HEALTHY".to_string()),
                    locality: locality.clone(),
                    weight: e.load_balancing_weight,
                    priority: loc.priority.unwrap_or(0),
                    tls_mode: md.and_then(Metadata::tls_mode).map(str::to_string),
                    workload: md.and_then(Metadata::istio_workload).and_then(Workload::parse),
                });
            }
        }
    }
    let md = cluster.and_then(|c| c.metadata.as_ref());
    ClusterView {
        name: name.to_string(),
        weight,
        share_percent: match (weight, total) {
            (Some(w), Some(t)) if t > 0 => Some((f64::from(w) * 10000.0 / t as f64).round() / 100.0),
            _ => None,
        },
        found: if index.clusters.is_empty() { None } else { Some(cluster.is_some()) },
        discovery_type: cluster.and_then(|c| c.discovery_type.clone()),
        service: key.as_ref().and_then(ClusterKey::service),
        subset: md
            .and_then(Metadata::istio_subset)
            .map(str::to_string)
            .or_else(|| key.as_ref().and_then(|k| k.subset.clone())),
        destination_rule: config_ref(md),
        endpoints_known: assignment.is_some(),
        endpoints,
    }
}

/// The clusters of a route action, with weights and shares.
pub fn action_clusters(index: &Index<'_>, a: &RouteAction) -> Vec<ClusterView> {
    if let Some(c) = &a.cluster {
        return vec![cluster_view(index, c, None, None)];
    }
    if let Some(w) = &a.weighted_clusters {
        let sum: u64 = w.clusters.iter().map(|c| u64::from(c.weight.unwrap_or(0))).sum();
        let total = w.total_weight.map(u64::from).filter(|t| *t > 0).unwrap_or(sum);
        return w
            .clusters
            .iter()
            .map(|c| cluster_view(index, &c.name, Some(c.weight.unwrap_or(0)), Some(total)))
            .collect();
    }
    Vec::new()
}

/// A route's action.
pub fn action(index: &Index<'_>, r: &Route) -> Action {
    if let Some(a) = &r.route {
        if let Some(h) = &a.cluster_header {
            return Action::ClusterHeader { header: h.clone() };
        }
        return Action::Forward { clusters: action_clusters(index, a) };
    }
    if let Some(red) = &r.redirect {
        let mut to = String::new();
        if red.https_redirect {
            to.push_str("https://");
        } else if let Some(s) = &red.scheme_redirect {
            to.push_str(&format!("{s}://"));
        }
        to.push_str(red.host_redirect.as_deref().unwrap_or("(same host)"));
        if let Some(p) = red.port_redirect {
            to.push_str(&format!(":{p}"));
        }
        if let Some(p) = &red.path_redirect {
            to.push_str(p);
        } else if let Some(p) = &red.prefix_rewrite {
            to.push_str(&format!(" (prefix rewritten to {p})"));
        }
        return Action::Redirect { to, code: red.response_code.clone().unwrap_or_else(|| "MOVED_PERMANENTLY".into()) };
    }
    if let Some(d) = &r.direct_response {
        return Action::DirectResponse {
            status: d.status.unwrap_or(0),
            body: d.body.as_ref().and_then(|b| b.inline_string.clone()),
        };
    }
    Action::None
}

/// The Service a virtual host is for, from its domains.
pub fn vhost_service(vh: &VirtualHost) -> Option<ObjectRef> {
    vh.domains.iter().find_map(|d| service_of_host(d)).or_else(|| service_of_host(&vh.name))
}

/// For each route, the index of the first earlier route that shadows it.
pub fn shadowing(routes: &[Route]) -> Vec<Option<usize>> {
    routes.iter().enumerate().map(|(i, r)| (0..i).find(|&j| shadows(&routes[j].matcher, &r.matcher))).collect()
}

/// A virtual host with all its routes.
pub fn vhost_view(index: &Index<'_>, vh: &VirtualHost) -> VirtualHostView {
    let shadow = shadowing(&vh.routes);
    VirtualHostView {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        service: vhost_service(vh),
        routes: vh
            .routes
            .iter()
            .zip(shadow)
            .map(|(r, shadowed_by)| RouteView {
                name: r.name.clone(),
                criteria: describe_match(&r.matcher),
                action: action(index, r),
                config: config_ref(r.metadata.as_ref()),
                shadowed_by,
            })
            .collect(),
    }
}

/// The route configuration an HTTP connection manager uses: RDS by name, or inline.
pub fn route_config_of<'a>(
    index: &Index<'a>,
    hcm: &'a crate::config_dump::listener::FilterConfig,
) -> (String, Option<&'a RouteConfiguration>) {
    if let Some(rds) = &hcm.rds {
        (rds.route_config_name.clone(), index.route_configs.get(rds.route_config_name.as_str()).copied())
    } else if let Some(rc) = &hcm.route_config {
        (if rc.name.is_empty() { "inline".to_string() } else { format!("{} (inline)", rc.name) }, Some(rc))
    } else {
        ("(none)".to_string(), None)
    }
}

/// The clusters of a TCP proxy.
pub fn tcp_clusters(
    index: &Index<'_>,
    cluster: Option<&str>,
    weighted: Option<&TcpWeightedClusters>,
) -> Vec<ClusterView> {
    if let Some(c) = cluster {
        return vec![cluster_view(index, c, None, None)];
    }
    if let Some(w) = weighted {
        let total: u64 = w.clusters.iter().map(|c| u64::from(c.weight.unwrap_or(0))).sum();
        return w
            .clusters
            .iter()
            .map(|c| cluster_view(index, &c.name, Some(c.weight.unwrap_or(0)), Some(total)))
            .collect();
    }
    Vec::new()
}

/// A filter chain and everything behind it.
pub fn chain_view(index: &Index<'_>, name: &str, chain: &FilterChain) -> ChainView {
    let destination = match chain.terminal() {
        Some(Terminal::Http(hcm)) => {
            let (rc_name, rc) = route_config_of(index, hcm);
            Destination::Http(HttpView {
                route_config: rc_name,
                found: rc.is_some(),
                virtual_hosts: rc
                    .map(|rc| rc.virtual_hosts.iter().map(|vh| vhost_view(index, vh)).collect())
                    .unwrap_or_default(),
            })
        }
        Some(Terminal::Tcp(tcp)) => {
            Destination::Tcp { clusters: tcp_clusters(index, tcp.cluster.as_deref(), tcp.weighted_clusters.as_ref()) }
        }
        None => Destination::Other { filters: chain.filters.iter().map(|f| f.name.clone()).collect() },
    };
    ChainView {
        name: if chain.name.is_empty() { name.to_string() } else { chain.name.clone() },
        criteria: describe_chain_match(chain.filter_chain_match.as_ref()),
        destination,
        config: config_ref(chain.metadata.as_ref()),
    }
}

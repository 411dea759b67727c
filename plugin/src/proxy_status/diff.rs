//! The semantic diff behind `proxy-status POD`: istiod's config for the proxy
//! (`istio.io/debug/config_dump`, protobuf, decoded with envoy-types) against Envoy's own
//! `/config_dump` (JSON, read into the typed [`crate::config_dump`] model). Both sides are
//! reduced to the same per-resource fields (cluster type, LB policy, EDS name, Istio metadata;
//! listener address, flags and filter chains; route virtual hosts, domains and routes), then
//! compared by name: added, removed, changed (with the fields). Versions and timestamps are ignored.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::admin::v3::{ClustersConfigDump, ConfigDump, ListenersConfigDump, RoutesConfigDump};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, TrafficDirection, address, socket_address};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action, route_match};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, Duration, value};
use prost::{Message, Name};
use serde::Serialize;

use crate::config_dump as model;

/// Per resource name, its compared fields.
pub type Summaries = BTreeMap<String, BTreeMap<String, String>>;

/// One side's clusters, listeners and routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Side {
    /// Clusters.
    pub clusters: Summaries,
    /// Listeners.
    pub listeners: Summaries,
    /// Route configurations.
    pub routes: Summaries,
}

/// A field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field, e.g. `lb_policy` or `vhost[x].routes`.
    pub field: String,
    /// istiod's value (empty: not set).
    pub istiod: String,
    /// Envoy's value (empty: not set).
    pub envoy: String,
}

/// The diff of one kind of resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindDiff {
    /// Names istiod has and Envoy lacks.
    pub missing_in_envoy: Vec<String>,
    /// Names Envoy has and istiod does not.
    pub extra_in_envoy: Vec<String>,
    /// Names on both sides whose fields differ.
    pub changed: BTreeMap<String, Vec<FieldChange>>,
    /// How many resources match.
    pub matching: usize,
}

impl KindDiff {
    /// Whether both sides agree.
    pub fn is_empty(&self) -> bool {
        self.missing_in_envoy.is_empty() && self.extra_in_envoy.is_empty() && self.changed.is_empty()
    }
}

/// The whole diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Clusters.
    pub clusters: KindDiff,
    /// Listeners.
    pub listeners: KindDiff,
    /// Routes.
    pub routes: KindDiff,
}

impl Diff {
    /// Whether istiod and Envoy agree on everything.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && self.listeners.is_empty() && self.routes.is_empty()
    }
}

/// Errors reading istiod's dump.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A protobuf payload did not decode.
    #[error("istiod's config dump: cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's error.
        source: prost::DecodeError,
    },
}

fn decode<M: Message + Default>(any: &Any, what: &str) -> Result<M, DiffError> {
    M::decode(any.value.as_slice()).map_err(|source| DiffError::Decode { what: what.to_string(), source })
}

fn duration(d: Option<&Duration>) -> String {
    d.map(|d| seconds_text(d.seconds as f64 + f64::from(d.nanos) / 1e9)).unwrap_or_default()
}

fn seconds_text(s: f64) -> String {
    format!("{s}s")
}

fn socket(a: Option<&Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => {
            let port = match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => p.to_string(),
                Some(socket_address::PortSpecifier::NamedPort(ref n)) => n.clone(),
                None => "0".to_string(),
            };
            format!("{}:{port}", s.address)
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn istio_metadata(m: Option<&Metadata>, out: &mut BTreeMap<String, String>) {
    let Some(istio) = m.and_then(|m| m.filter_metadata.get("istio")) else { return };
    for key in ["config", "subset"] {
        if let Some(value::Kind::StringValue(s)) = istio.fields.get(key).and_then(|v| v.kind.as_ref()) {
            out.insert(format!("istio.{key}"), s.clone());
        }
    }
}

fn cluster_fields(c: &Cluster) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let kind = match c.cluster_discovery_type {
        Some(cluster::ClusterDiscoveryType::Type(t)) => {
            cluster::DiscoveryType::try_from(t).map(|t| t.as_str_name().to_string()).unwrap_or_else(|_| t.to_string())
        }
        Some(cluster::ClusterDiscoveryType::ClusterType(ref ct)) => ct.name.clone(),
        None => "STATIC".to_string(),
    };
    f.insert("type".to_string(), kind);
    f.insert(
        "lb_policy".to_string(),
        cluster::LbPolicy::try_from(c.lb_policy).map(|p| p.as_str_name().to_string()).unwrap_or_default(),
    );
    f.insert("connect_timeout".to_string(), duration(c.connect_timeout.as_ref()));
    if let Some(eds) = &c.eds_cluster_config {
        f.insert("eds_service_name".to_string(), eds.service_name.clone());
    }
    if let Some(la) = &c.load_assignment {
        let mut eps: Vec<String> = la
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .filter_map(|e| match &e.host_identifier {
                Some(envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                    Some(socket(ep.address.as_ref()))
                }
                _ => None,
            })
            .collect();
        eps.sort();
        f.insert("endpoints".to_string(), eps.join(","));
    }
    istio_metadata(c.metadata.as_ref(), &mut f);
    f
}

fn filter_text(name: &str, typed: Option<&Any>) -> String {
    let Some(any) = typed else { return name.to_string() };
    if any.type_url == HttpConnectionManager::type_url() {
        if let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) {
            return match hcm.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(r)) => format!("{name}(rds={})", r.route_config_name),
                Some(http_connection_manager::RouteSpecifier::RouteConfig(r)) => format!("{name}(route={})", r.name),
                _ => name.to_string(),
            };
        }
    } else if any.type_url == TcpProxy::type_url()
        && let Ok(tcp) = TcpProxy::decode(any.value.as_slice())
    {
        return match tcp.cluster_specifier {
            Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => format!("{name}(cluster={c})"),
            _ => name.to_string(),
        };
    }
    name.to_string()
}

fn listener_fields(l: &Listener) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("address".to_string(), socket(l.address.as_ref()));
    f.insert("use_original_dst".to_string(), l.use_original_dst.is_some_and(|b| b.value).to_string());
    f.insert("bind_to_port".to_string(), l.bind_to_port.is_none_or(|b| b.value).to_string());
    f.insert(
        "traffic_direction".to_string(),
        TrafficDirection::try_from(l.traffic_direction).map(|t| t.as_str_name().to_string()).unwrap_or_default(),
    );
    for (i, chain) in l.filter_chains.iter().enumerate() {
        let port = chain.filter_chain_match.as_ref().and_then(|m| m.destination_port).map(|p| p.value);
        let filters: Vec<String> = chain
            .filters
            .iter()
            .map(|flt| match &flt.config_type {
                Some(filter::ConfigType::TypedConfig(any)) => filter_text(&flt.name, Some(any)),
                _ => filter_text(&flt.name, None),
            })
            .collect();
        let (key, value) = chain_entry(i, &chain.name, port, &filters);
        f.insert(key, value);
    }
    f
}

fn route_fields(r: &RouteConfiguration) -> BTreeMap<String, String> {
    route_config_fields(r.virtual_hosts.iter().map(|vh| {
        let routes = vh
            .routes
            .iter()
            .map(|rt| {
                let m = match rt.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
                    Some(route_match::PathSpecifier::Prefix(p)) => format!("prefix={p}"),
                    Some(route_match::PathSpecifier::Path(p)) => format!("path={p}"),
                    Some(route_match::PathSpecifier::SafeRegex(r)) => format!("regex={}", r.regex),
                    Some(other) => format!("{other:?}"),
                    None => String::new(),
                };
                let action = match &rt.action {
                    Some(route::Action::Route(ra)) => match &ra.cluster_specifier {
                        Some(route_action::ClusterSpecifier::Cluster(c)) => format!("cluster={c}"),
                        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                            weighted_text(w.clusters.iter().map(|c| (c.name.as_str(), c.weight.map_or(0, |w| w.value))))
                        }
                        _ => "route".to_string(),
                    },
                    Some(route::Action::Redirect(_)) => "redirect".to_string(),
                    Some(route::Action::DirectResponse(d)) => format!("direct_response={}", d.status),
                    _ => String::new(),
                };
                let mut md = BTreeMap::new();
                istio_metadata(rt.metadata.as_ref(), &mut md);
                route_line(&rt.name, &m, &action, md.get("istio.config").map(String::as_str))
            })
            .collect();
        (vh.name.as_str(), vh.domains.as_slice(), routes)
    }))
}

// What both sides write, whatever they read from: one text per field.

/// A filter chain's field: `filter_chain[<name or index>]` → `port=<p> <filters>`.
fn chain_entry(index: usize, name: &str, port: Option<u32>, filters: &[String]) -> (String, String) {
    let key = if name.is_empty() { format!("filter_chain[{index}]") } else { format!("filter_chain[{name}]") };
    let port = port.map(|p| format!("port={p} ")).unwrap_or_default();
    (key, format!("{port}{}", filters.join(",")))
}

/// `weighted=a:60+b:40`.
fn weighted_text<'a>(clusters: impl Iterator<Item = (&'a str, u32)>) -> String {
    let parts: Vec<String> = clusters.map(|(name, weight)| format!("{name}:{weight}")).collect();
    format!("weighted={}", parts.join("+"))
}

/// The fields of a route configuration: its virtual hosts, and each one's domains and route lines.
fn route_config_fields<'v>(
    vhosts: impl Iterator<Item = (&'v str, &'v [String], Vec<String>)>,
) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let mut names = Vec::new();
    for (name, domains, routes) in vhosts {
        names.push(name);
        f.insert(format!("vhost[{name}].domains"), domains.join(","));
        f.insert(format!("vhost[{name}].routes"), routes.join("; "));
    }
    f.insert("virtual_hosts".to_string(), names.join(","));
    f
}

/// One route: `<name> <match> -> <action>[ config=<istio.config>]`.
fn route_line(name: &str, matcher: &str, action: &str, config: Option<&str>) -> String {
    let config = config.map(|c| format!(" config={c}")).unwrap_or_default();
    format!("{name} {matcher} -> {action}{config}")
}

/// istiod's side, from the `envoy.admin.v3.ConfigDump` protobuf of `istio.io/debug/config_dump`.
pub fn istiod_side(dump: &[u8]) -> Result<Side, DiffError> {
    let dump = ConfigDump::decode(dump).map_err(|source| DiffError::Decode { what: "ConfigDump".into(), source })?;
    let mut side = Side::default();
    for any in &dump.configs {
        if any.type_url == ClustersConfigDump::type_url() {
            let c: ClustersConfigDump = decode(any, "ClustersConfigDump")?;
            for dc in &c.dynamic_active_clusters {
                if let Some(a) = &dc.cluster {
                    let cl: Cluster = decode(a, "Cluster")?;
                    side.clusters.insert(cl.name.clone(), cluster_fields(&cl));
                }
            }
        } else if any.type_url == ListenersConfigDump::type_url() {
            let l: ListenersConfigDump = decode(any, "ListenersConfigDump")?;
            for dl in &l.dynamic_listeners {
                if let Some(a) = dl.active_state.as_ref().and_then(|s| s.listener.as_ref()) {
                    let li: Listener = decode(a, "Listener")?;
                    side.listeners.insert(li.name.clone(), listener_fields(&li));
                }
            }
        } else if any.type_url == RoutesConfigDump::type_url() {
            let r: RoutesConfigDump = decode(any, "RoutesConfigDump")?;
            for dr in &r.dynamic_route_configs {
                if let Some(a) = &dr.route_config {
                    let rc: RouteConfiguration = decode(a, "RouteConfiguration")?;
                    side.routes.insert(rc.name.clone(), route_fields(&rc));
                }
            }
        }
    }
    Ok(side)
}

/// Envoy's side, from its `/config_dump` read into the [`model`] (the same reader `explain` uses):
/// dynamic active clusters and listeners, dynamic routes.
pub fn envoy_side(dump: &model::ConfigDump) -> Side {
    let active = |state: model::ResourceState| state == model::ResourceState::Active;
    let mut side = Side::default();
    for r in dump.clusters.iter().filter(|r| active(r.state)) {
        if let Some(c) = &r.config {
            side.clusters.insert(c.name.clone(), model_cluster_fields(c));
        }
    }
    for r in dump.listeners.iter().filter(|r| active(r.state)) {
        if let Some(l) = &r.config {
            side.listeners.insert(l.name.clone(), model_listener_fields(l));
        }
    }
    for r in dump.route_configs.iter().filter(|r| active(r.state)) {
        if let Some(rc) = &r.config {
            side.routes.insert(rc.name.clone(), model_route_fields(rc));
        }
    }
    side
}

fn model_duration(text: Option<&str>) -> String {
    text.and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse::<f64>().ok()).map(seconds_text).unwrap_or_default()
}

fn model_socket(a: Option<&model::Address>) -> String {
    match a {
        None => String::new(),
        Some(model::Address { socket_address: Some(sa), .. }) => {
            format!("{}:{}", sa.address, sa.port_value.unwrap_or(0))
        }
        Some(model::Address { pipe: Some(p), .. }) => format!("unix:{}", p.path),
        Some(_) => String::new(),
    }
}

fn model_istio_metadata(m: Option<&model::Metadata>, out: &mut BTreeMap<String, String>) {
    let Some(m) = m else { return };
    for key in ["config", "subset"] {
        if let Some(s) = m.string("istio", key) {
            out.insert(format!("istio.{key}"), s.to_string());
        }
    }
}

fn model_cluster_fields(c: &model::Cluster) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let kind = c
        .discovery_type
        .clone()
        .or_else(|| c.cluster_type.as_ref().map(|t| t.name.clone()))
        .unwrap_or_else(|| "STATIC".to_string());
    f.insert("type".to_string(), kind);
    f.insert("lb_policy".to_string(), c.lb_policy.clone().unwrap_or_else(|| "ROUND_ROBIN".to_string()));
    f.insert("connect_timeout".to_string(), model_duration(c.connect_timeout.as_deref()));
    if let Some(eds) = &c.eds_cluster_config {
        f.insert("eds_service_name".to_string(), eds.service_name.clone());
    }
    if let Some(la) = &c.load_assignment {
        let mut eps: Vec<String> = la
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| model_socket(e.endpoint.as_ref().and_then(|ep| ep.address.as_ref())))
            .collect();
        eps.sort();
        f.insert("endpoints".to_string(), eps.join(","));
    }
    model_istio_metadata(c.metadata.as_ref(), &mut f);
    f
}

fn model_filter_text(flt: &model::NetworkFilter) -> String {
    let name = flt.name.as_str();
    let Some(tc) = &flt.typed_config else { return name.to_string() };
    if let Some(r) = &tc.rds {
        return format!("{name}(rds={})", r.route_config_name);
    }
    if let Some(r) = &tc.route_config {
        return format!("{name}(route={})", r.name);
    }
    if tc.type_url.ends_with("TcpProxy")
        && let Some(c) = &tc.cluster
    {
        return format!("{name}(cluster={c})");
    }
    name.to_string()
}

fn model_listener_fields(l: &model::Listener) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("address".to_string(), model_socket(l.address.as_ref()));
    f.insert("use_original_dst".to_string(), l.use_original_dst.unwrap_or(false).to_string());
    f.insert("bind_to_port".to_string(), l.bind_to_port.unwrap_or(true).to_string());
    f.insert("traffic_direction".to_string(), l.traffic_direction.clone().unwrap_or_else(|| "UNSPECIFIED".into()));
    for (i, chain) in l.filter_chains.iter().enumerate() {
        let port = chain.filter_chain_match.as_ref().and_then(|m| m.destination_port);
        let filters: Vec<String> = chain.filters.iter().map(model_filter_text).collect();
        let (key, value) = chain_entry(i, &chain.name, port, &filters);
        f.insert(key, value);
    }
    f
}

fn model_route_fields(r: &model::RouteConfiguration) -> BTreeMap<String, String> {
    route_config_fields(r.virtual_hosts.iter().map(|vh| {
        let routes = vh
            .routes
            .iter()
            .map(|rt| {
                let m = &rt.matcher;
                let m = if let Some(p) = &m.prefix {
                    format!("prefix={p}")
                } else if let Some(p) = &m.path {
                    format!("path={p}")
                } else if let Some(p) = &m.safe_regex {
                    format!("regex={}", p.regex)
                } else {
                    String::new()
                };
                let action = match (&rt.route, &rt.redirect, &rt.direct_response) {
                    (Some(ra), _, _) => match (&ra.cluster, &ra.weighted_clusters) {
                        (Some(c), _) => format!("cluster={c}"),
                        (None, Some(w)) => {
                            weighted_text(w.clusters.iter().map(|c| (c.name.as_str(), c.weight.unwrap_or(0))))
                        }
                        (None, None) => "route".to_string(),
                    },
                    (None, Some(_), _) => "redirect".to_string(),
                    (None, None, Some(d)) => format!("direct_response={}", d.status.unwrap_or(0)),
                    (None, None, None) => String::new(),
                };
                route_line(&rt.name, &m, &action, rt.metadata.as_ref().and_then(|md| md.istio_config()))
            })
            .collect();
        (vh.name.as_str(), vh.domains.as_slice(), routes)
    }))
}

fn diff_kind(istiod: &Summaries, envoy: &Summaries) -> KindDiff {
    let mut d = KindDiff::default();
    for (name, fields) in istiod {
        match envoy.get(name) {
            None => d.missing_in_envoy.push(name.clone()),
            Some(theirs) => {
                let mut changes = Vec::new();
                let keys: std::collections::BTreeSet<&String> = fields.keys().chain(theirs.keys()).collect();
                for k in keys {
                    let a = fields.get(k).cloned().unwrap_or_default();
                    let b = theirs.get(k).cloned().unwrap_or_default();
                    if a != b {
                        changes.push(FieldChange { field: k.clone(), istiod: a, envoy: b });
                    }
                }
                if changes.is_empty() {
                    d.matching += 1;
                } else {
                    d.changed.insert(name.clone(), changes);
                }
            }
        }
    }
    d.extra_in_envoy = envoy.keys().filter(|n| !istiod.contains_key(*n)).cloned().collect();
    d
}

/// Compares the two sides.
pub fn diff(istiod: &Side, envoy: &Side) -> Diff {
    Diff {
        clusters: diff_kind(&istiod.clusters, &envoy.clusters),
        listeners: diff_kind(&istiod.listeners, &envoy.listeners),
        routes: diff_kind(&istiod.routes, &envoy.routes),
    }
}

/// Renders the diff as text: one section per kind, `-` istiod only, `+` Envoy only, `~` changed.
pub fn render(d: &Diff) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (title, k) in [("Clusters", &d.clusters), ("Listeners", &d.listeners), ("Routes", &d.routes)] {
        if k.is_empty() {
            let _ = writeln!(out, "{title} Match ({})", k.matching);
            continue;
        }
        let _ = writeln!(
            out,
            "{title} Don't Match: {} missing in Envoy, {} only in Envoy, {} changed, {} match",
            k.missing_in_envoy.len(),
            k.extra_in_envoy.len(),
            k.changed.len(),
            k.matching
        );
        for n in &k.missing_in_envoy {
            let _ = writeln!(out, "  - {n}    (istiod has it, Envoy does not)");
        }
        for n in &k.extra_in_envoy {
            let _ = writeln!(out, "  + {n}    (Envoy has it, istiod does not)");
        }
        for (n, changes) in &k.changed {
            let _ = writeln!(out, "  ~ {n}");
            for c in changes {
                let _ = writeln!(out, "      {}: istiod={:?} envoy={:?}", c.field, c.istiod, c.envoy);
            }
        }
    }
    out
}

//! Listeners and their filter chains: the parts of `envoy.config.listener.v3.Listener` that decide
//! where a connection goes.

use serde::{Deserialize, Serialize};

use super::Metadata;
use super::cidr::CidrRange;
use super::number::{one_or_many, opt_u32, vec_u32};
use super::rbac::{HttpFilter, Rbac};
use super::route::RouteConfiguration;

/// An Envoy listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Listener {
    /// The listener's name, e.g. `0.0.0.0_9080`, `10.0.0.1_3306`, `virtualOutbound`.
    pub name: String,
    /// The address it listens on (or, with `bind_to_port: false`, the original destination it takes).
    pub address: Option<Address>,
    /// Its filter chains, in configuration order.
    pub filter_chains: Vec<FilterChain>,
    /// The chain used when no chain's match selects the connection.
    pub default_filter_chain: Option<FilterChain>,
    /// Whether connections are handed to the listener of their original destination (virtualOutbound).
    pub use_original_dst: Option<bool>,
    /// Whether the listener binds its address; Istio's per-port listeners do not.
    pub bind_to_port: Option<bool>,
    /// Listener filters, e.g. `envoy.filters.listener.tls_inspector`, `envoy.filters.listener.http_inspector`.
    pub listener_filters: Vec<NamedExtension>,
    /// `INBOUND` or `OUTBOUND`, when set.
    pub traffic_direction: Option<String>,
}

impl Listener {
    /// The `(address, port)` the listener listens on, when it is a socket address.
    pub fn socket_address(&self) -> Option<(&str, u32)> {
        let sa = self.address.as_ref()?.socket_address.as_ref()?;
        Some((sa.address.as_str(), sa.port_value?))
    }

    /// Whether a listener filter whose name contains `fragment` is configured (e.g. `tls_inspector`).
    pub fn has_listener_filter(&self, fragment: &str) -> bool {
        self.listener_filters.iter().any(|f| f.name.contains(fragment))
    }
}

/// A listener or endpoint address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Address {
    /// An IP socket address.
    pub socket_address: Option<SocketAddress>,
    /// A Unix domain socket.
    pub pipe: Option<Pipe>,
}

impl Address {
    /// `ip:port` (IPv6 in brackets), or the pipe path, or `?`.
    pub fn display(&self) -> String {
        match (&self.socket_address, &self.pipe) {
            (Some(sa), _) => match sa.port_value {
                Some(p) if sa.address.contains(':') => format!("[{}]:{p}", sa.address),
                Some(p) => format!("{}:{p}", sa.address),
                None => sa.address.clone(),
            },
            (None, Some(pipe)) => format!("unix:{}", pipe.path),
            (None, None) => "?".to_string(),
        }
    }
}

/// An IP address and port.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SocketAddress {
    /// The IP address (or hostname for logical DNS clusters).
    pub address: String,
    /// The port.
    #[serde(deserialize_with = "opt_u32")]
    pub port_value: Option<u32>,
}

/// A Unix domain socket address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Pipe {
    /// The socket path.
    pub path: String,
}

/// An extension referred to by name only (listener filters, HTTP filters, transport sockets).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NamedExtension {
    /// The extension's name.
    pub name: String,
}

/// One filter chain of a listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterChain {
    /// The chain's name, e.g. `virtualOutbound-catchall-tcp`, `0.0.0.0_9080`.
    pub name: String,
    /// Which connections select this chain; absent matches everything.
    pub filter_chain_match: Option<FilterChainMatch>,
    /// The network filters, in order; the last one terminates (HTTP connection manager or TCP proxy).
    pub filters: Vec<NetworkFilter>,
    /// TLS termination, when configured (`envoy.transport_sockets.tls`).
    pub transport_socket: Option<NamedExtension>,
    /// Metadata, e.g. `filter_metadata.istio.config` for chains built from Istio objects.
    pub metadata: Option<Metadata>,
}

impl FilterChain {
    /// The terminal filter's routing: an HTTP connection manager or a TCP proxy.
    pub fn terminal(&self) -> Option<Terminal<'_>> {
        self.filters.iter().rev().find_map(NetworkFilter::terminal)
    }
}

/// The criteria of `filter_chain_match`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterChainMatch {
    /// The (original) destination port.
    #[serde(deserialize_with = "opt_u32")]
    pub destination_port: Option<u32>,
    /// Destination IP ranges.
    pub prefix_ranges: Vec<CidrRange>,
    /// SNI server names (exact or `*.suffix`).
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: String,
    /// ALPN values, e.g. `http/1.1`, `h2c`, `istio-peer-exchange`.
    pub application_protocols: Vec<String>,
    /// Direct source IP ranges.
    pub direct_source_prefix_ranges: Vec<CidrRange>,
    /// `ANY`, `SAME_IP_OR_LOOPBACK` or `EXTERNAL`.
    pub source_type: String,
    /// Source IP ranges.
    pub source_prefix_ranges: Vec<CidrRange>,
    /// Source ports.
    #[serde(deserialize_with = "vec_u32")]
    pub source_ports: Vec<u32>,
}

/// A network filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkFilter {
    /// The filter's name, e.g. `envoy.filters.network.http_connection_manager`.
    pub name: String,
    /// Its configuration; only the fields routing depends on are kept (Istio 1.5's `config` is read too).
    #[serde(alias = "config", alias = "hidden_envoy_deprecated_config")]
    pub typed_config: Option<FilterConfig>,
}

/// What a chain's terminal filter routes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Terminal<'a> {
    /// An HTTP connection manager.
    Http(&'a FilterConfig),
    /// A TCP proxy.
    Tcp(&'a FilterConfig),
}

impl NetworkFilter {
    /// This filter as a terminal filter, if it is one.
    pub fn terminal(&self) -> Option<Terminal<'_>> {
        let cfg = self.typed_config.as_ref()?;
        let is = |names: &[&str], type_suffix: &str| {
            names.contains(&self.name.as_str()) || cfg.type_url.ends_with(type_suffix)
        };
        if is(
            &["envoy.filters.network.http_connection_manager", "envoy.http_connection_manager"],
            ".HttpConnectionManager",
        ) {
            Some(Terminal::Http(cfg))
        } else if is(&["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"], ".TcpProxy") {
            Some(Terminal::Tcp(cfg))
        } else {
            None
        }
    }
}

/// The routing-relevant fields of a network filter's configuration (HTTP connection manager or TCP proxy).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterConfig {
    /// The configuration's `@type`.
    #[serde(rename = "@type")]
    pub type_url: String,
    /// The stats prefix.
    pub stat_prefix: String,
    /// HTTP: the route configuration fetched by RDS.
    pub rds: Option<Rds>,
    /// HTTP: an inline route configuration.
    pub route_config: Option<RouteConfiguration>,
    /// HTTP: strip any port from the Host header before routing.
    pub strip_any_host_port: bool,
    /// HTTP: strip the port from the Host header when it equals the listener's port.
    pub strip_matching_host_port: bool,
    /// HTTP: the HTTP filters, in order (the RBAC filter's policies are kept).
    #[serde(deserialize_with = "one_or_many")]
    pub http_filters: Vec<HttpFilter>,
    /// TCP: the upstream cluster.
    pub cluster: Option<String>,
    /// TCP: weighted upstream clusters.
    pub weighted_clusters: Option<TcpWeightedClusters>,
    /// Network RBAC (`envoy.filters.network.rbac`): the enforced rules (ignored when another
    /// filter's `rules` has another shape).
    #[serde(deserialize_with = "super::rbac::lenient")]
    pub rules: Option<Rbac>,
    /// Network RBAC: the shadow (dry-run) rules.
    #[serde(deserialize_with = "super::rbac::lenient")]
    pub shadow_rules: Option<Rbac>,
}

impl NetworkFilter {
    /// Whether this is a network RBAC filter (by name or `@type`).
    pub fn is_rbac(&self) -> bool {
        self.name == "envoy.filters.network.rbac"
            || self.typed_config.as_ref().is_some_and(|c| c.type_url.ends_with(".filters.network.rbac.v3.RBAC"))
    }
}

/// The RDS reference of an HTTP connection manager.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Rds {
    /// The route configuration's name, e.g. `9080` or `reviews.default.svc.cluster.local:9080`.
    pub route_config_name: String,
}

/// A TCP proxy's weighted clusters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TcpWeightedClusters {
    /// The clusters and their weights.
    pub clusters: Vec<TcpClusterWeight>,
}

/// One of a TCP proxy's weighted clusters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TcpClusterWeight {
    /// The cluster.
    pub name: String,
    /// Its weight.
    #[serde(deserialize_with = "opt_u32")]
    pub weight: Option<u32>,
}

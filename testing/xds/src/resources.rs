//! Builds Istio-shaped Envoy resources (listeners, routes, clusters, endpoints) from a [`Scenario`]
//! for one proxy, the way istiod names and links them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, Locality, Metadata, SocketAddress, TrafficDirection, address,
    config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, ListValue, Struct, UInt32Value, Value, value};
use prost::{Message, Name};

use super::scenario::{Protocol, Scenario, Service, config_link};

/// The resources istiod would send one proxy, by type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// CDS.
    pub clusters: Vec<Cluster>,
    /// LDS.
    pub listeners: Vec<Listener>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
    /// EDS.
    pub endpoints: Vec<ClusterLoadAssignment>,
}

/// The proxy the resources are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's IP.
    pub ip: Ipv4Addr,
}

/// Packs a message into an `Any`.
pub fn to_any<M: Message + Name>(msg: &M) -> Any {
    Any { type_url: M::type_url(), value: msg.encode_to_vec() }
}

fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    })
}

fn socket(ip: &str, port: u16) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    })
}

fn string_value(s: &str) -> Value {
    Value { kind: Some(value::Kind::StringValue(s.to_string())) }
}

fn struct_value(fields: Vec<(&str, Value)>) -> Value {
    Value { kind: Some(value::Kind::StructValue(to_struct(fields))) }
}

fn to_struct(fields: Vec<(&str, Value)>) -> Struct {
    Struct { fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

fn metadata(filters: Vec<(&str, Struct)>) -> Option<Metadata> {
    Some(Metadata {
        filter_metadata: filters.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    })
}

fn seconds(s: i64) -> Option<Duration> {
    Some(Duration { seconds: s, nanos: 0 })
}

/// `outbound|<port>|<subset>|<host>` / `inbound|<port>||`.
pub fn cluster_name(direction: &str, port: u16, subset: &str, host: &str) -> String {
    format!("{direction}|{port}|{subset}|{host}")
}

fn typed_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(config)),
    }
}

fn router_filter() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&Router::default()))),
        ..Default::default()
    }
}

fn hcm_rds(stat_prefix: &str, route_name: &str) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: ads(),
            route_config_name: route_name.to_string(),
        })),
        http_filters: vec![router_filter()],
        ..Default::default()
    };
    typed_filter("envoy.filters.network.http_connection_manager", to_any(&hcm))
}

fn hcm_inline(stat_prefix: &str, route: RouteConfiguration) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(route)),
        http_filters: vec![router_filter()],
        ..Default::default()
    };
    typed_filter("envoy.filters.network.http_connection_manager", to_any(&hcm))
}

fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    let tcp = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    typed_filter("envoy.filters.network.tcp_proxy", to_any(&tcp))
}

fn route_to(name: &str, prefix: &str, cluster: &str, config: Option<String>) -> Route {
    Route {
        name: name.to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            timeout: seconds(0),
            ..Default::default()
        })),
        metadata: config.and_then(|c| metadata(vec![("istio", to_struct(vec![("config", string_value(&c))]))])),
        ..Default::default()
    }
}

fn services_metadata(svc: &Service, dr: Option<String>, subset: &str) -> Option<Metadata> {
    let mut fields = vec![(
        "services",
        Value {
            kind: Some(value::Kind::ListValue(ListValue {
                values: vec![struct_value(vec![
                    ("host", string_value(&svc.host())),
                    ("name", string_value(&svc.name)),
                    ("namespace", string_value(&svc.namespace)),
                ])],
            })),
        },
    )];
    if let Some(dr) = dr {
        fields.push(("config", string_value(&dr)));
    }
    if !subset.is_empty() {
        fields.push(("subset", string_value(subset)));
    }
    metadata(vec![("istio", to_struct(fields))])
}

fn eds_cluster(name: &str, metadata: Option<Metadata>) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(cluster::EdsClusterConfig { eds_config: ads(), service_name: name.to_string() }),
        connect_timeout: seconds(10),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        metadata,
        ..Default::default()
    }
}

fn original_dst_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::OriginalDst as i32)),
        connect_timeout: seconds(10),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        ..Default::default()
    }
}

fn static_cluster(name: &str, endpoints: Vec<(String, u16)>, metadata: Option<Metadata>) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Static as i32)),
        connect_timeout: seconds(10),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: if endpoints.is_empty() {
                Vec::new()
            } else {
                vec![LocalityLbEndpoints {
                    lb_endpoints: endpoints.iter().map(|(ip, port)| lb_endpoint(ip, *port, None, None)).collect(),
                    ..Default::default()
                }]
            },
            ..Default::default()
        }),
        metadata,
        ..Default::default()
    }
}

fn lb_endpoint(ip: &str, port: u16, metadata: Option<Metadata>, weight: Option<u32>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
            envoy_types::pb::envoy::config::endpoint::v3::Endpoint { address: socket(ip, port), ..Default::default() },
        )),
        metadata,
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn locality(text: &str) -> Locality {
    let mut parts = text.splitn(3, '/');
    Locality {
        region: parts.next().unwrap_or_default().to_string(),
        zone: parts.next().unwrap_or_default().to_string(),
        sub_zone: parts.next().unwrap_or_default().to_string(),
    }
}

impl Scenario {
    /// The resources for `proxy`: outbound listeners/routes/clusters for every service, inbound ones
    /// for the services the proxy's pod backs.
    pub fn resources_for(&self, proxy: &ProxyIdentity) -> Resources {
        let mut out = Resources::default();
        let dr_of = |host: &str| self.destination_rules.iter().find(|d| d.host == host);
        let vs_of = |host: &str| self.virtual_services.iter().find(|v| v.host == host);

        // Outbound clusters and endpoints.
        for svc in &self.services {
            let host = svc.host();
            let dr = dr_of(&host);
            let dr_link = dr.map(|d| config_link(&d.namespace, "destination-rule", &d.name));
            for port in &svc.ports {
                let mut subsets: Vec<(String, BTreeMap<String, String>)> = vec![(String::new(), BTreeMap::new())];
                if let Some(dr) = dr {
                    subsets.extend(dr.subsets.iter().map(|s| (s.name.clone(), s.labels.clone())));
                }
                for (subset, selector) in subsets {
                    let name = cluster_name("outbound", port.port, &subset, &host);
                    out.clusters.push(eds_cluster(&name, services_metadata(svc, dr_link.clone(), &subset)));
                    let mut by_locality: BTreeMap<&str, Vec<LbEndpoint>> = BTreeMap::new();
                    for ep in svc.endpoints.iter().filter(|e| selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                    {
                        let workload = format!(
                            "{};{};{};{};Kubernetes",
                            ep.pod,
                            svc.namespace,
                            ep.labels.get("app").map(String::as_str).unwrap_or(&svc.name),
                            ep.labels.get("version").map(String::as_str).unwrap_or("latest")
                        );
                        let md = metadata(vec![
                            ("envoy.transport_socket_match", to_struct(vec![("tlsMode", string_value(&ep.tls_mode))])),
                            ("istio", to_struct(vec![("workload", string_value(&workload))])),
                        ]);
                        by_locality.entry(&ep.locality).or_default().push(lb_endpoint(
                            &ep.ip.to_string(),
                            port.port,
                            md,
                            Some(ep.weight),
                        ));
                    }
                    out.endpoints.push(ClusterLoadAssignment {
                        cluster_name: name,
                        endpoints: by_locality
                            .into_iter()
                            .map(|(loc, eps)| {
                                let total = eps.iter().filter_map(|e| e.load_balancing_weight.map(|w| w.value)).sum();
                                LocalityLbEndpoints {
                                    locality: Some(locality(loc)),
                                    lb_endpoints: eps,
                                    load_balancing_weight: Some(UInt32Value { value: total }),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    });
                }
            }
        }

        // Outbound listeners and routes: HTTP ports share `0.0.0.0_<port>` and route `<port>`;
        // TCP ports get `<vip>_<port>`.
        let mut http_ports: BTreeMap<u16, Vec<VirtualHost>> = BTreeMap::new();
        for svc in &self.services {
            let host = svc.host();
            for port in &svc.ports {
                match port.protocol {
                    Protocol::Http => {
                        let route = match vs_of(&host) {
                            Some(vs) => {
                                let cluster = cluster_name("outbound", port.port, &vs.subset, &host);
                                let link = config_link(&vs.namespace, "virtual-service", &vs.name);
                                route_to(&vs.route_name, &vs.prefix, &cluster, Some(link))
                            }
                            None => {
                                let cluster = cluster_name("outbound", port.port, "", &host);
                                route_to("default", "/", &cluster, None)
                            }
                        };
                        let short = format!("{}.{}", svc.name, svc.namespace);
                        let p = port.port;
                        http_ports.entry(port.port).or_default().push(VirtualHost {
                            name: format!("{host}:{p}"),
                            domains: vec![
                                host.clone(),
                                format!("{host}:{p}"),
                                short.clone(),
                                format!("{short}:{p}"),
                                svc.vip.to_string(),
                                format!("{}:{p}", svc.vip),
                            ],
                            routes: vec![route],
                            ..Default::default()
                        });
                    }
                    Protocol::Tcp => {
                        let name = format!("{}_{}", svc.vip, port.port);
                        let cluster = cluster_name("outbound", port.port, "", &host);
                        out.listeners.push(Listener {
                            name: name.clone(),
                            address: socket(&svc.vip.to_string(), port.port),
                            bind_to_port: Some(BoolValue { value: false }),
                            traffic_direction: TrafficDirection::Outbound as i32,
                            filter_chains: vec![FilterChain {
                                filters: vec![tcp_proxy(&format!("outbound|{}||{host}", port.port), &cluster)],
                                ..Default::default()
                            }],
                            metadata: None,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        for (port, mut vhosts) in http_ports {
            let name = format!("0.0.0.0_{port}");
            out.listeners.push(Listener {
                name: name.clone(),
                address: socket("0.0.0.0", port),
                bind_to_port: Some(BoolValue { value: false }),
                traffic_direction: TrafficDirection::Outbound as i32,
                filter_chains: vec![FilterChain {
                    filters: vec![hcm_rds(&format!("outbound_0.0.0.0_{port}"), &port.to_string())],
                    ..Default::default()
                }],
                ..Default::default()
            });
            vhosts.push(VirtualHost {
                name: "allow_any".into(),
                domains: vec!["*".into()],
                routes: vec![route_to("allow_any", "/", "PassthroughCluster", None)],
                ..Default::default()
            });
            out.routes.push(RouteConfiguration {
                name: port.to_string(),
                virtual_hosts: vhosts,
                validate_clusters: Some(BoolValue { value: false }),
                ..Default::default()
            });
        }

        // virtualOutbound: hands connections to the per-port listeners, else passthrough.
        out.listeners.push(Listener {
            name: "virtualOutbound".into(),
            address: socket("0.0.0.0", mesh_core::ports::OUTBOUND_CAPTURE),
            use_original_dst: Some(BoolValue { value: true }),
            bind_to_port: Some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Outbound as i32,
            filter_chains: vec![FilterChain {
                name: "virtualOutbound-catchall-tcp".into(),
                filters: vec![tcp_proxy("PassthroughCluster", "PassthroughCluster")],
                ..Default::default()
            }],
            ..Default::default()
        });

        // Inbound: the ports of the services this pod backs.
        let mut inbound_chains = Vec::new();
        for svc in &self.services {
            if !svc.endpoints.iter().any(|e| e.pod == proxy.pod && svc.namespace == proxy.namespace) {
                continue;
            }
            for port in &svc.ports {
                let cluster = cluster_name("inbound", port.port, "", "");
                if !out.clusters.iter().any(|c| c.name == cluster) {
                    out.clusters.push(static_cluster(
                        &cluster,
                        vec![("127.0.0.1".to_string(), port.port)],
                        services_metadata(svc, None, ""),
                    ));
                }
                let filter = match port.protocol {
                    Protocol::Http => hcm_inline(
                        &format!("inbound_0.0.0.0_{}", port.port),
                        RouteConfiguration {
                            name: cluster.clone(),
                            virtual_hosts: vec![VirtualHost {
                                name: format!("inbound|http|{}", port.port),
                                domains: vec!["*".into()],
                                routes: vec![route_to("default", "/", &cluster, None)],
                                ..Default::default()
                            }],
                            validate_clusters: Some(BoolValue { value: false }),
                            ..Default::default()
                        },
                    ),
                    Protocol::Tcp => tcp_proxy(&cluster, &cluster),
                };
                inbound_chains.push(FilterChain {
                    name: format!("0.0.0.0_{}", port.port),
                    filter_chain_match: Some(FilterChainMatch {
                        destination_port: Some(UInt32Value { value: u32::from(port.port) }),
                        ..Default::default()
                    }),
                    filters: vec![filter],
                    ..Default::default()
                });
            }
        }
        inbound_chains.push(FilterChain {
            name: "virtualInbound-blackhole".into(),
            filter_chain_match: Some(FilterChainMatch {
                destination_port: Some(UInt32Value { value: u32::from(mesh_core::ports::INBOUND_CAPTURE) }),
                ..Default::default()
            }),
            filters: vec![tcp_proxy("BlackHoleCluster", "BlackHoleCluster")],
            ..Default::default()
        });
        inbound_chains.push(FilterChain {
            name: "virtualInbound".into(),
            filters: vec![tcp_proxy("InboundPassthroughCluster", "InboundPassthroughCluster")],
            ..Default::default()
        });
        out.listeners.push(Listener {
            name: "virtualInbound".into(),
            address: socket("0.0.0.0", mesh_core::ports::INBOUND_CAPTURE),
            bind_to_port: Some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Inbound as i32,
            listener_filters: vec![ListenerFilter {
                name: "envoy.filters.listener.original_dst".into(),
                config_type: Some(
                    envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType::TypedConfig(to_any(
                        &OriginalDst::default(),
                    )),
                ),
                ..Default::default()
            }],
            filter_chains: inbound_chains,
            ..Default::default()
        });

        out.clusters.push(original_dst_cluster("PassthroughCluster"));
        out.clusters.push(original_dst_cluster("InboundPassthroughCluster"));
        out.clusters.push(static_cluster("BlackHoleCluster", Vec::new(), None));
        out
    }
}

//! The mesh a test describes: services with their endpoints, virtual services and destination rules.
//! The discovery server turns a scenario into Istio-shaped Envoy resources for each proxy.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The cluster DNS suffix Istio appends to `<service>.<namespace>`.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// Everything the discovery server knows about the mesh.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// Kubernetes Services and their endpoints.
    pub services: Vec<Service>,
    /// `networking.istio.io/v1` VirtualServices.
    pub virtual_services: Vec<VirtualService>,
    /// `networking.istio.io/v1` DestinationRules.
    pub destination_rules: Vec<DestinationRule>,
}

/// A Service: a VIP, ports, and the endpoints behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The Service's name.
    pub name: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The cluster IP.
    pub vip: Ipv4Addr,
    /// The service ports.
    pub ports: Vec<ServicePort>,
    /// The ready endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// The fully qualified host name, `<name>.<namespace>.svc.cluster.local`.
    pub fn host(&self) -> String {
        format!("{}.{}.{DOMAIN_SUFFIX}", self.name, self.namespace)
    }
}

/// The application protocol of a service port (Istio: from the port name or `appProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP: an HTTP connection manager with RDS.
    Http,
    /// Opaque TCP: a TCP proxy to the cluster.
    Tcp,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    /// The port number (also the target port).
    pub port: u16,
    /// The port name, e.g. `http-bar`.
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
}

/// One endpoint of a Service (a pod IP).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// The pod's name.
    pub pod: String,
    /// The pod's labels (subsets select on them).
    pub labels: BTreeMap<String, String>,
    /// `region/zone/subzone`, e.g. `us-east1/us-east1-b/`.
    pub locality: String,
    /// The load balancing weight.
    pub weight: u32,
    /// The `tlsMode` metadata: `istio` for pods with a sidecar, `disabled` otherwise.
    pub tls_mode: String,
}

/// A VirtualService routing one host (optionally one port) to a destination subset.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    /// The VirtualService's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The host it applies to (fully qualified).
    pub host: String,
    /// The HTTP route's name (Envoy's route `name`).
    pub route_name: String,
    /// The path prefix it matches.
    pub prefix: String,
    /// The destination subset (empty: the whole service).
    pub subset: String,
}

/// A DestinationRule with named subsets.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    /// The DestinationRule's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The host it applies to (fully qualified).
    pub host: String,
    /// Subsets: name and label selector.
    pub subsets: Vec<Subset>,
}

/// A named subset of a service's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// The subset's name, e.g. `v1`.
    pub name: String,
    /// The labels an endpoint must have.
    pub labels: BTreeMap<String, String>,
}

/// The path Istio writes into `filter_metadata.istio.config` for a networking object.
pub fn config_link(namespace: &str, kebab_kind: &str, name: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{namespace}/{kebab_kind}/{name}")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

impl Scenario {
    /// The classic walkthrough: pod `foo` in `foo-namespace` (serving `foo-service:8080`) calls
    /// `bar-service.bar-namespace:50002`, whose three endpoints 11.0.0.1-3 are subset `v1`, routed by
    /// VirtualService `bar-vs` and DestinationRule `bar-dr`.
    pub fn classic() -> Scenario {
        let bar_host = format!("bar-service.bar-namespace.{DOMAIN_SUFFIX}");
        let bar_endpoints = (1..=3)
            .map(|i| Endpoint {
                ip: Ipv4Addr::new(11, 0, 0, i),
                pod: format!("bar-{i}"),
                labels: labels(&[("app", "bar"), ("version", "v1")]),
                locality: "us-east1/us-east1-b/".to_string(),
                weight: 1,
                tls_mode: "istio".to_string(),
            })
            .collect();
        Scenario {
            services: vec![
                Service {
                    name: "bar-service".into(),
                    namespace: "bar-namespace".into(),
                    vip: Ipv4Addr::new(10, 96, 0, 2),
                    ports: vec![ServicePort { port: 50002, name: "http-bar".into(), protocol: Protocol::Http }],
                    endpoints: bar_endpoints,
                },
                Service {
                    name: "foo-service".into(),
                    namespace: "foo-namespace".into(),
                    vip: Ipv4Addr::new(10, 96, 0, 3),
                    ports: vec![
                        ServicePort { port: 8080, name: "http-foo".into(), protocol: Protocol::Http },
                        ServicePort { port: 9000, name: "tcp-foo".into(), protocol: Protocol::Tcp },
                    ],
                    endpoints: vec![Endpoint {
                        ip: Ipv4Addr::new(10, 1, 0, 5),
                        pod: "foo".into(),
                        labels: labels(&[("app", "foo")]),
                        locality: "us-east1/us-east1-b/".to_string(),
                        weight: 1,
                        tls_mode: "istio".to_string(),
                    }],
                },
            ],
            virtual_services: vec![VirtualService {
                name: "bar-vs".into(),
                namespace: "bar-namespace".into(),
                host: bar_host.clone(),
                route_name: "bar-route".into(),
                prefix: "/".into(),
                subset: "v1".into(),
            }],
            destination_rules: vec![DestinationRule {
                name: "bar-dr".into(),
                namespace: "bar-namespace".into(),
                host: bar_host,
                subsets: vec![Subset { name: "v1".into(), labels: labels(&[("version", "v1")]) }],
            }],
        }
    }
}

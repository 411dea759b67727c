//! Clusters and their endpoints (`envoy.config.cluster.v3.Cluster`,
//! `envoy.config.endpoint.v3.ClusterLoadAssignment`).

use serde::{Deserialize, Serialize};

use super::Metadata;
use super::listener::{Address, NamedExtension};
use super::number::opt_u32;

/// An upstream cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Cluster {
    /// The name, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`, `PassthroughCluster`.
    pub name: String,
    /// Discovery type: `EDS`, `STATIC`, `STRICT_DNS`, `LOGICAL_DNS`, `ORIGINAL_DST`.
    #[serde(rename = "type")]
    pub discovery_type: Option<String>,
    /// A custom cluster type (`cluster_type.name`, e.g. `envoy.clusters.aggregate`), when `type` is unset.
    pub cluster_type: Option<NamedExtension>,
    /// The connect timeout, as a protobuf duration string (`10s`).
    pub connect_timeout: Option<String>,
    /// EDS settings: the service name the endpoints are published under.
    pub eds_cluster_config: Option<EdsClusterConfig>,
    /// Inline endpoints (STATIC and DNS clusters).
    pub load_assignment: Option<ClusterLoadAssignment>,
    /// The load-balancing policy.
    pub lb_policy: Option<String>,
    /// Upstream TLS, when configured.
    pub transport_socket: Option<NamedExtension>,
    /// Transport socket choices by endpoint metadata (Istio: mTLS for `tlsMode: istio`).
    pub transport_socket_matches: Vec<NamedExtension>,
    /// Metadata; Istio puts the DestinationRule in `filter_metadata.istio.config` and the subset in `.subset`.
    pub metadata: Option<Metadata>,
}

impl Cluster {
    /// The name its endpoints are published under in EDS.
    pub fn eds_name(&self) -> &str {
        match &self.eds_cluster_config {
            Some(eds) if !eds.service_name.is_empty() => &eds.service_name,
            _ => &self.name,
        }
    }
}

/// EDS settings of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EdsClusterConfig {
    /// The EDS service name (defaults to the cluster's name).
    pub service_name: String,
}

/// The endpoints of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterLoadAssignment {
    /// The cluster (or EDS service) name.
    pub cluster_name: String,
    /// Endpoints grouped by locality.
    pub endpoints: Vec<LocalityLbEndpoints>,
}

/// Endpoints of one locality.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LocalityLbEndpoints {
    /// The locality.
    pub locality: Option<Locality>,
    /// The endpoints.
    pub lb_endpoints: Vec<LbEndpoint>,
    /// The locality's weight.
    #[serde(deserialize_with = "opt_u32")]
    pub load_balancing_weight: Option<u32>,
    /// The priority (0 is highest).
    #[serde(deserialize_with = "opt_u32")]
    pub priority: Option<u32>,
}

/// A locality.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    pub sub_zone: String,
}

impl Locality {
    /// `region/zone/sub_zone`, or empty when all are empty.
    pub fn display(&self) -> String {
        if self.region.is_empty() && self.zone.is_empty() && self.sub_zone.is_empty() {
            String::new()
        } else {
            format!("{}/{}/{}", self.region, self.zone, self.sub_zone)
        }
    }
}

/// One endpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LbEndpoint {
    /// Its address.
    pub endpoint: Option<Endpoint>,
    /// `HEALTHY`, `UNHEALTHY`, `DRAINING`, ... (absent means unknown, treated as healthy).
    pub health_status: Option<String>,
    /// Metadata: `filter_metadata.istio.workload` and `envoy.transport_socket_match.tlsMode`.
    pub metadata: Option<Metadata>,
    /// The endpoint's weight.
    #[serde(deserialize_with = "opt_u32")]
    pub load_balancing_weight: Option<u32>,
}

/// An endpoint's address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Endpoint {
    /// The address.
    pub address: Option<Address>,
}

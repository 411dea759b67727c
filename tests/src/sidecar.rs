//! Starts real Envoy sidecars the way an injected pod runs them: an Istio-like bootstrap (node id
//! `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, ISTIO_VERSION/CLUSTER_ID metadata) with ADS
//! pointing at the test discovery server. The admin API listens on a loopback port chosen per
//! sidecar; map it as the pod's port 15000 in the test API server's port-forward.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use crate::envoy::Envoy;
use crate::xds::ISTIOD_VERSION;

/// Who the sidecar is: the pod it belongs to and what it tells istiod about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarSpec {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's IP (only reported in the node id; nothing binds to it).
    pub ip: Ipv4Addr,
    /// `CLUSTER_ID` metadata.
    pub cluster_id: String,
    /// `ISTIO_VERSION` metadata.
    pub istio_version: String,
    /// The pod's labels (`LABELS` metadata; `app` also names the Envoy cluster).
    pub labels: BTreeMap<String, String>,
}

impl SidecarSpec {
    /// A sidecar for `pod` in `namespace` at `ip`, in cluster `Kubernetes`, Istio [`ISTIOD_VERSION`].
    pub fn new(pod: &str, namespace: &str, ip: Ipv4Addr) -> SidecarSpec {
        SidecarSpec {
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            ip,
            cluster_id: "Kubernetes".to_string(),
            istio_version: ISTIOD_VERSION.to_string(),
            labels: [("app".to_string(), pod.to_string())].into(),
        }
    }

    /// istiod's proxy ID, `<pod>.<namespace>`.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.pod, self.namespace)
    }

    /// The Envoy node id.
    pub fn node_id(&self) -> String {
        format!("sidecar~{}~{}.{}~{}.svc.cluster.local", self.ip, self.pod, self.namespace, self.namespace)
    }

    /// The bootstrap: node identity and metadata, ADS over plaintext gRPC to `xds`.
    pub fn bootstrap(&self, xds: SocketAddr) -> serde_json::Value {
        let app = self.labels.get("app").cloned().unwrap_or_else(|| self.pod.clone());
        let ads = json!({ "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" });
        json!({
            "node": {
                "id": self.node_id(),
                "cluster": format!("{app}.{}", self.namespace),
                "metadata": {
                    "ISTIO_VERSION": self.istio_version,
                    "CLUSTER_ID": self.cluster_id,
                    "NAMESPACE": self.namespace,
                    "NAME": self.pod,
                    "WORKLOAD_NAME": app,
                    "MESH_ID": "cluster.local",
                    "INTERCEPTION_MODE": "REDIRECT",
                    "LABELS": self.labels,
                }
            },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": true,
                    "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds-grpc" } }]
                },
                "cds_config": ads,
                "lds_config": ads
            },
            "static_resources": {
                "clusters": [{
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                            "address": xds.ip().to_string(), "port_value": xds.port()
                        }}}}]}]
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": { "http2_protocol_options": {} }
                        }
                    }
                }]
            }
        })
    }

    /// The injected pod as the API server holds it: `sidecar.istio.io/status`, an `istio-proxy`
    /// container, Running, with the sidecar's IP.
    pub fn pod_object(&self) -> serde_json::Value {
        let status = json!({
            "initContainers": ["istio-init"],
            "containers": ["istio-proxy"],
            "volumes": ["istio-envoy"],
            "imagePullSecrets": null,
            "revision": "default"
        });
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod,
                "namespace": self.namespace,
                "labels": self.labels,
                "annotations": { mesh_core::names::SIDECAR_STATUS: status.to_string() }
            },
            "spec": {
                "containers": [
                    { "name": "app", "image": "registry.example/app:1" },
                    { "name": mesh_core::names::CONTAINER_PROXY, "image": "docker.io/istio/proxyv2:1.28.0",
                      "ports": [{ "containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP" }] }
                ]
            },
            "status": { "phase": "Running", "podIP": self.ip.to_string(), "podIPs": [{ "ip": self.ip.to_string() }] }
        })
    }
}

/// A running Envoy sidecar, stopped when dropped.
pub struct Sidecar {
    spec: SidecarSpec,
    envoy: Envoy,
}

impl Sidecar {
    /// Starts Envoy for `spec` with ADS to `xds` and waits (bounded) until its admin API is up.
    pub fn start(spec: SidecarSpec, xds: SocketAddr) -> anyhow::Result<Sidecar> {
        let envoy = Envoy::start(&spec.bootstrap(xds))?;
        Ok(Sidecar { spec, envoy })
    }

    /// What the sidecar is.
    pub fn spec(&self) -> &SidecarSpec {
        &self.spec
    }

    /// istiod's proxy ID, `<pod>.<namespace>`.
    pub fn proxy_id(&self) -> String {
        self.spec.proxy_id()
    }

    /// The admin API's loopback address (what the pod's port 15000 maps to).
    pub fn admin(&self) -> SocketAddr {
        self.envoy.admin()
    }

    /// The Envoy process.
    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// Waits (bounded) until Envoy reports LIVE (it has its initial CDS and LDS).
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.envoy.wait_ready(timeout).await
    }

    /// Envoy's `/config_dump` (add a query such as `?include_eds`).
    pub async fn config_dump(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        self.envoy.config_dump(query).await
    }
}

//! The report `explain` produces: plain data, serialised as-is for `-o json|yaml` and rendered as a
//! tree for people. The schema is documented in docs/explain.md ("Output schema").

use std::collections::BTreeSet;

use serde::Serialize;

use super::provenance::{ObjectRef, Workload};
use super::request::Request;
use crate::config_dump::Problem;

/// Everything `explain` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Where the config came from: `file <path>` or `pod <namespace>/<name>`.
    pub source: String,
    /// The proxy's node id, when the dump has a bootstrap.
    pub node: Option<String>,
    /// The pod's traffic capture, when a pod is known.
    pub capture: Option<CaptureView>,
    /// Whole-pod view: outbound listeners (absent with `--to`).
    pub outbound: Vec<ListenerView>,
    /// Whole-pod view: inbound ports of `virtualInbound` (absent with `--to`).
    pub inbound: Vec<InboundPort>,
    /// For a gateway (node id `router~`): the pod and its Service's ports; absent for sidecars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayView>,
    /// The traced request (only with `--to`).
    pub trace: Option<Trace>,
    /// Resources Envoy is warming or rejected.
    pub problems: Vec<Problem>,
    /// The Kubernetes and Istio objects referenced, with what the API server says about them.
    pub objects: Vec<ObjectStatus>,
    /// Pod mode, with a trace: Envoy's endpoints of each cluster reached against the Service's
    /// EndpointSlices, and Envoy's live health of each endpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoint_checks: Vec<EndpointCheck>,
}

/// Envoy's endpoints of one `outbound|port|subset|host` cluster against Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointCheck {
    /// The cluster.
    pub cluster: String,
    /// `agree`, `drift` (they differ, still after a re-read 2 s later), or `unchecked`.
    pub status: String,
    /// What was compared (Service, EndpointSlices, subset selector), or why nothing was.
    pub source: String,
    /// How many ready addresses Kubernetes has for the cluster.
    pub kubernetes: usize,
    /// How many endpoints Envoy has.
    pub envoy: usize,
    /// Ready in Kubernetes, absent from Envoy.
    pub missing: Vec<AddressView>,
    /// In Envoy, not ready (or gone) in Kubernetes.
    pub extra: Vec<AddressView>,
    /// Envoy's live view of the endpoints (`GET /clusters`).
    pub live: Vec<LiveEndpoint>,
}

/// An endpoint address and the pod behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressView {
    /// `ip:port`.
    pub address: String,
    /// The pod, when known (EndpointSlice `targetRef`, or Envoy's workload metadata).
    pub pod: Option<String>,
}

/// Envoy's live state of one endpoint (`GET /clusters?format=json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveEndpoint {
    /// `ip:port`.
    pub address: String,
    /// The health status EDS gave it.
    pub eds_health: String,
    /// The `health_status` flags that are set, e.g. `failed_outlier_check`.
    pub flags: Vec<String>,
    /// Ejected by outlier detection.
    pub ejected: bool,
    /// Failing health checks, or not healthy in EDS.
    pub unhealthy: bool,
}

/// A gateway: it binds its listeners itself, and its Service maps ports to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayView {
    /// `pod.namespace`, from the node id.
    pub pod: String,
    /// The gateway's Service and its port mapping, when known.
    pub service: Option<GatewayService>,
}

/// One referenced object and, with a cluster, its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectStatus {
    /// The object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// `found`, `missing` (the config is stale), `forbidden`, or `unchecked` (offline).
    pub status: String,
    /// `metadata.generation`, when found.
    pub generation: Option<i64>,
}

/// The pod's capture settings, from its `istio-init` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureView {
    /// Outbound TCP is redirected here (15001).
    pub outbound_port: u16,
    /// Inbound TCP is redirected here (15006).
    pub inbound_port: u16,
    /// `REDIRECT` or `TPROXY`.
    pub mode: String,
    /// Outbound CIDRs captured (`*` for all).
    pub outbound_include_cidrs: String,
    /// Outbound CIDRs never captured.
    pub outbound_exclude_cidrs: String,
    /// Outbound ports always captured.
    pub outbound_include_ports: String,
    /// Outbound ports never captured.
    pub outbound_exclude_ports: String,
    /// UIDs whose traffic is never captured (the proxy's).
    pub bypass_uids: Vec<u32>,
    /// GIDs whose traffic is never captured.
    pub bypass_gids: Vec<u32>,
    /// Inbound ports captured (`*` for all).
    pub inbound_include_ports: String,
    /// Inbound ports never captured.
    pub inbound_exclude_ports: String,
}

/// One listener and its chains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerView {
    /// The listener's name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its filter chains, then its default chain.
    pub chains: Vec<ChainView>,
}

/// One filter chain and where it leads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainView {
    /// The chain's name (or `default_filter_chain`).
    pub name: String,
    /// Its match criteria in words (`ALL` when none).
    #[serde(rename = "match")]
    pub criteria: String,
    /// Where it sends traffic.
    pub destination: Destination,
    /// The Istio object behind the chain (`filter_metadata.istio.config`).
    pub config: Option<ObjectRef>,
}

/// Where a filter chain sends traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Destination {
    /// An HTTP connection manager and its routes.
    Http(HttpView),
    /// A TCP proxy.
    Tcp {
        /// The cluster(s).
        clusters: Vec<ClusterView>,
    },
    /// Something else (named filters).
    Other {
        /// The filters' names.
        filters: Vec<String>,
    },
}

/// An HTTP connection manager's route configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpView {
    /// The route configuration's name (`inline` for an inline one).
    pub route_config: String,
    /// Whether it is in the dump.
    pub found: bool,
    /// Its virtual hosts.
    pub virtual_hosts: Vec<VirtualHostView>,
}

/// A virtual host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHostView {
    /// Its name.
    pub name: String,
    /// Its domains.
    pub domains: Vec<String>,
    /// The Service it is for, from its name or domains.
    pub service: Option<ObjectRef>,
    /// Its routes, in order.
    pub routes: Vec<RouteView>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteView {
    /// Its name.
    pub name: String,
    /// The match in words.
    #[serde(rename = "match")]
    pub criteria: String,
    /// What it does.
    pub action: Action,
    /// The VirtualService behind it.
    pub config: Option<ObjectRef>,
    /// The index of an earlier route that takes every request this one would.
    pub shadowed_by: Option<usize>,
}

/// A route's action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Forward to one or more clusters.
    Forward {
        /// The clusters, with weights when weighted.
        clusters: Vec<ClusterView>,
    },
    /// Forward to the cluster named by a request header.
    ClusterHeader {
        /// The header.
        header: String,
    },
    /// Answer with a redirect.
    Redirect {
        /// Where to, in words.
        to: String,
        /// The response code name.
        code: String,
    },
    /// Answer directly.
    DirectResponse {
        /// The status.
        status: u32,
        /// The body, when inline.
        body: Option<String>,
    },
    /// No action configured.
    None,
}

/// A cluster and its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    /// The cluster's name.
    pub name: String,
    /// Its weight among weighted clusters.
    pub weight: Option<u32>,
    /// Its share in percent among weighted clusters.
    pub share_percent: Option<f64>,
    /// Whether the cluster is in the dump (Envoy answers 503 NC when it is not); absent when the
    /// dump has no clusters at all.
    pub found: Option<bool>,
    /// Its discovery type.
    pub discovery_type: Option<String>,
    /// The Service behind it.
    pub service: Option<ObjectRef>,
    /// The subset.
    pub subset: Option<String>,
    /// The DestinationRule behind it.
    pub destination_rule: Option<ObjectRef>,
    /// Whether endpoints are known (EDS in the dump, or inline).
    pub endpoints_known: bool,
    /// Its endpoints.
    pub endpoints: Vec<EndpointView>,
}

/// An endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointView {
    /// `ip:port`.
    pub address: String,
    /// Health status (`HEALTHY` when unset).
    pub health: String,
    /// `region/zone/sub_zone`.
    pub locality: String,
    /// Its weight.
    pub weight: Option<u32>,
    /// Priority.
    pub priority: u32,
    /// `istio` for mTLS-capable endpoints.
    pub tls_mode: Option<String>,
    /// The workload behind it.
    pub workload: Option<Workload>,
}

/// The inbound chains of one port of `virtualInbound`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundPort {
    /// The destination port (absent for the catch-all chains).
    pub port: Option<u32>,
    /// `STRICT` (TLS only), `PERMISSIVE` (TLS and plaintext) or `DISABLE` (plaintext only).
    pub mtls: String,
    /// The chains.
    pub chains: Vec<ChainView>,
}

/// A traced request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The request.
    pub request: Request,
    /// The steps, in Envoy's order.
    pub steps: Vec<Step>,
    /// Where the request ends up.
    pub outcome: Outcome,
    /// Routes of the chosen virtual host that can never match.
    pub shadowed_routes: Vec<Shadowed>,
}

/// One step of the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// `resolve`, `capture`, `listener`, `filter_chain`, `route_config`, `virtual_host`, `route`,
    /// `action`, `endpoints`; inbound also `http_filters`, `rbac` (one per RBAC filter), `application`.
    pub stage: String,
    /// What was chosen.
    pub chosen: String,
    /// Why.
    pub why: String,
    /// Earlier (or other) candidates and why they lost; for an `rbac` step, every policy and its
    /// result (`matches`, `does not match: ...`, `cannot evaluate: uses ...`).
    pub rejected: Vec<Candidate>,
    /// Objects behind the chosen item.
    pub objects: Vec<ObjectRef>,
}

/// A candidate that lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// Why it lost.
    pub reason: String,
}

/// A route that can never match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadowed {
    /// Its index and name.
    pub route: String,
    /// The earlier route that takes its requests.
    pub by: String,
}

/// Where the request ends up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `cluster`, `weighted_clusters`, `redirect`, `direct_response`, `not_captured`, `no_listener`,
    /// `no_filter_chain`, `no_route_config`, `no_virtual_host`, `no_route`, `cluster_header`; inbound:
    /// `direct_to_app`, `blackhole`, `rbac_denied` (403).
    pub kind: String,
    /// The cluster Envoy sends it to, when that is determined.
    pub cluster: Option<String>,
    /// The clusters that may take it, with shares and endpoints.
    pub clusters: Vec<ClusterView>,
    /// The HTTP status Envoy answers itself with (404, 503, redirects, direct responses).
    pub status: Option<u32>,
    /// The outcome in words.
    pub summary: String,
}

impl Report {
    /// All objects referenced anywhere in the report, deduplicated and sorted.
    pub fn referenced_objects(&self) -> Vec<ObjectRef> {
        let mut out = BTreeSet::new();
        for l in &self.outbound {
            l.chains.iter().for_each(|c| add_chain(c, &mut out));
        }
        for p in &self.inbound {
            p.chains.iter().for_each(|c| add_chain(c, &mut out));
        }
        if let Some(s) = self.gateway.as_ref().and_then(|g| g.service.as_ref()) {
            out.insert(s.service.clone());
        }
        if let Some(t) = &self.trace {
            for s in &t.steps {
                out.extend(s.objects.iter().cloned());
            }
            t.outcome.clusters.iter().for_each(|c| add_cluster(c, &mut out));
        }
        out.into_iter().collect()
    }
}

fn add_cluster(c: &ClusterView, out: &mut BTreeSet<ObjectRef>) {
    out.extend(c.service.clone());
    out.extend(c.destination_rule.clone());
}

fn add_chain(ch: &ChainView, out: &mut BTreeSet<ObjectRef>) {
    out.extend(ch.config.clone());
    match &ch.destination {
        Destination::Http(h) => {
            for vh in &h.virtual_hosts {
                out.extend(vh.service.clone());
                for r in &vh.routes {
                    out.extend(r.config.clone());
                    if let Action::Forward { clusters } = &r.action {
                        clusters.iter().for_each(|c| add_cluster(c, out));
                    }
                }
            }
        }
        Destination::Tcp { clusters } => clusters.iter().for_each(|c| add_cluster(c, out)),
        Destination::Other { .. } => {}
    }
}

/// One port of the gateway's Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayPort {
    /// The port's name (`http2`, `https`), when known.
    pub name: Option<String>,
    /// The Service port clients dial.
    pub port: u16,
    /// The container port it maps to (the listener's port), when known.
    pub target_port: Option<u16>,
}

/// The gateway's Service and how its ports reach the listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayService {
    /// The Service.
    pub service: ObjectRef,
    /// Its ports.
    pub ports: Vec<GatewayPort>,
    /// Where this came from, in words.
    pub how: String,
}

impl GatewayService {
    /// The port that maps to listener port `target`.
    pub fn by_target(&self, target: u16) -> Option<&GatewayPort> {
        self.ports.iter().find(|p| p.target_port == Some(target))
    }

    /// The Service port `port`.
    pub fn by_port(&self, port: u16) -> Option<&GatewayPort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

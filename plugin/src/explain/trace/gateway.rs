//! Gateways (Envoy node id `router~…`): an ingress or egress gateway receives traffic on listeners
//! it binds itself. There is no iptables capture and no virtualOutbound hand-off: the client dials
//! the gateway's Service port, kube-proxy sends it to the target port, and the listener bound to
//! that port (`0.0.0.0_8080`, `0.0.0.0_8443`) takes it. Its filter chains match the SNI of the
//! Gateway's TLS servers; its HTTP routes are `http.<port>` (every plaintext server on the port,
//! merged) or `https.<port>.<portName>.<gateway>.<namespace>` (one TLS server of one Gateway).
//!
//! Also here: the hop from a sidecar to an egress gateway, which the trace names with the command
//! that continues it on the gateway.

use std::net::IpAddr;

use super::super::provenance::{ClusterKey, ObjectRef};
use super::super::report::{Candidate, GatewayPort, GatewayService, Outcome, Step, Trace};
use super::super::request::Request;
use super::listener::serving;
use super::{Tracer, outcome, step};
use crate::config_dump::{ConfigDump, Index, Listener};

/// The node id prefix of Istio gateways (sidecars are `sidecar~`).
pub const ROUTER_PREFIX: &str = "router~";

/// Whether the dump is a gateway's (its node id starts with `router~`).
pub fn is_router(dump: &ConfigDump) -> bool {
    dump.node.as_ref().is_some_and(|n| n.id.starts_with(ROUTER_PREFIX))
}

fn port_text(p: &GatewayPort) -> String {
    let name = p.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
    match p.target_port {
        Some(t) => format!("{}{name} → {t}", p.port),
        None => format!("{}{name} → target port unknown", p.port),
    }
}

/// The gateway line of the text report: the pod and how its Service's ports reach its listeners.
pub fn describe(g: &super::super::report::GatewayView) -> String {
    let head = format!("{} binds its own listeners (no capture, no virtualOutbound)", g.pod);
    match &g.service {
        Some(s) => format!(
            "{head}; {} ports {} ({})",
            s.service.display(),
            s.ports.iter().map(port_text).collect::<Vec<_>>().join(", "),
            s.how
        ),
        None => format!("{head}; its Service is not known"),
    }
}

/// The gateway's Service read from the dump: an `outbound|port||host` cluster whose endpoints
/// include the gateway's own IP is the gateway's Service, and the endpoint's port is the target
/// port (istiod sends a gateway the endpoints of every Service, its own included).
pub fn service_from_dump(dump: &ConfigDump, index: &Index<'_>) -> Option<GatewayService> {
    let ip = super::instance_ip(dump)?;
    let mut hosts: std::collections::BTreeMap<String, Vec<GatewayPort>> = std::collections::BTreeMap::new();
    for (name, cluster) in &index.clusters {
        let Some(key) = ClusterKey::parse(name).filter(|k| k.direction == "outbound" && k.subset.is_none()) else {
            continue;
        };
        let Some(assignment) = index.endpoints_of(cluster) else { continue };
        let target = assignment.endpoints.iter().flat_map(|l| &l.lb_endpoints).find_map(|e| {
            let sa = e.endpoint.as_ref()?.address.as_ref()?.socket_address.as_ref()?;
            (sa.address.parse::<IpAddr>().ok()? == ip).then_some(sa.port_value?)
        });
        if let Some(t) = target.and_then(|t| u16::try_from(t).ok()) {
            hosts.entry(key.host).or_default().push(GatewayPort { name: None, port: key.port, target_port: Some(t) });
        }
    }
    // Prefer a Service named like the workload (a pod may back several Services).
    let workload = dump
        .node
        .as_ref()
        .and_then(|n| n.metadata.get("WORKLOAD_NAME").or_else(|| n.metadata.get("CANONICAL_SERVICE")))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let (host, mut ports) = hosts
        .iter()
        .max_by_key(|(h, p)| (!workload.is_empty() && h.starts_with(&format!("{workload}.")), p.len()))
        .map(|(h, p)| (h.clone(), p.clone()))?;
    let service = super::super::provenance::service_of_host(&host)?;
    ports.sort_by_key(|p| p.port);
    Some(GatewayService {
        how: format!("from the dump: the endpoints of the outbound|port||{host} clusters include this pod ({ip})"),
        service,
        ports,
    })
}

/// The Gateway behind a gateway route configuration name, when the name carries it
/// (`https.<port>.<portName>.<gateway>.<namespace>`), and the server it stands for in words.
pub fn route_config_origin(name: &str) -> Option<(Option<ObjectRef>, String)> {
    if let Some(port) = name.strip_prefix("http.").filter(|p| p.parse::<u16>().is_ok()) {
        return Some((
            None,
            format!(
                "the plaintext HTTP servers of every Gateway bound to this gateway on port {port}, merged by istiod"
            ),
        ));
    }
    let rest = name.strip_prefix("https.")?;
    let (port, rest) = rest.split_once('.')?;
    port.parse::<u16>().ok()?;
    let (port_name, rest) = rest.split_once('.')?;
    // Namespaces have no dots; Gateway names may.
    let (gateway, namespace) = rest.rsplit_once('.')?;
    if gateway.is_empty() || namespace.is_empty() {
        return None;
    }
    let object = ObjectRef {
        kind: "Gateway".into(),
        group: "networking.istio.io".into(),
        version: "v1".into(),
        namespace: namespace.into(),
        name: gateway.into(),
    };
    Some((
        Some(object),
        format!("the TLS server {port_name} (port {port}) of Gateway {namespace}/{gateway}, terminated here"),
    ))
}

/// Why a bound listener on another port is not the one.
fn listener_port(l: &Listener) -> Option<u16> {
    l.socket_address().and_then(|(_, p)| u16::try_from(p).ok())
}

/// The listeners a gateway binds (Istio's gateway listeners bind; `bind_to_port: false` ones only
/// take hand-offs, which a gateway has none of).
fn bound(dump: &ConfigDump) -> Vec<&Listener> {
    serving(dump).filter(|l| l.bind_to_port != Some(false) && l.use_original_dst != Some(true)).collect()
}

/// Traces `req` arriving at a gateway. `service` is the gateway's Service (pod mode: the Service
/// that selects the pod; offline: [`service_from_dump`]).
pub fn trace_gateway(
    dump: &ConfigDump,
    index: &Index<'_>,
    req: &Request,
    service: Option<&GatewayService>,
    ip: Option<IpAddr>,
) -> Trace {
    // curl sends no port in the authority for https on 443.
    let mut req = req.clone();
    if req.sni.is_some() && req.port == 443 && req.authority == format!("{}:443", req.host) {
        req.authority = req.host.clone();
    }
    let mut t = Tracer { index, req: &req, steps: Vec::new(), shadowed: Vec::new() };
    let outcome = t.run_gateway(dump, service, ip);
    let (steps, shadowed_routes) = (t.steps, t.shadowed);
    Trace { request: req, steps, outcome, shadowed_routes }
}

impl<'a> Tracer<'a, '_> {
    fn run_gateway(&mut self, dump: &'a ConfigDump, service: Option<&GatewayService>, ip: Option<IpAddr>) -> Outcome {
        let req = self.req;
        let node = dump.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let pod = node.split('~').nth(2).unwrap_or_default().to_string();
        self.steps.push(step(
            "gateway",
            format!("router {pod}"),
            "a gateway (node id router~…) receives traffic on listeners it binds itself: no iptables capture, no virtualOutbound hand-off",
        ));
        let listeners = bound(dump);
        let has_listener = |p: u16| listeners.iter().any(|l| listener_port(l) == Some(p));

        // The Service port the client dials → the listener's port.
        let mapping = service.and_then(|s| s.by_port(req.port).map(|p| (s, p)));
        let target = match mapping {
            Some((s, p)) if p.target_port.is_some() => {
                let t = p.target_port.unwrap_or(req.port);
                let mut st = step(
                    "service_port",
                    format!("{} port {}", s.service.display(), port_text(p)),
                    format!(
                        "the client dials Service port {}, which sends it to port {t} of the pod; {}",
                        p.port, s.how
                    ),
                );
                st.objects.push(s.service.clone());
                self.steps.push(st);
                t
            }
            _ if has_listener(req.port) => {
                let via = service.and_then(|s| s.by_target(req.port).map(|p| (s, p)));
                let st = match via {
                    Some((s, p)) => {
                        let mut st = step(
                            "service_port",
                            format!("{} port {}", s.service.display(), port_text(p)),
                            format!(
                                "{} is the listener port itself; clients reach it through Service port {} ({})",
                                req.port, p.port, s.how
                            ),
                        );
                        st.objects.push(s.service.clone());
                        st
                    }
                    None => step(
                        "service_port",
                        format!("port {}", req.port),
                        match service {
                            Some(s) => format!(
                                "a listener is bound to {}; no port of {} maps to it ({})",
                                req.port,
                                s.service.display(),
                                s.how
                            ),
                            None => format!(
                                "a listener is bound to {}; the gateway's Service is not known (offline without endpoints in the dump)",
                                req.port
                            ),
                        },
                    ),
                };
                self.steps.push(st);
                req.port
            }
            _ => {
                // Istio's gateways run as non-root and listen on port + 8000 (80 → 8080, 443 → 8443).
                let shifted = req.port.checked_add(8000).filter(|p| has_listener(*p));
                match (mapping, shifted) {
                    (None, Some(p)) if service.is_none() => {
                        self.steps.push(step(
                            "service_port",
                            format!("port {} → {p} (assumed)", req.port),
                            format!(
                                "the gateway's Service is not known and no listener is bound to {}; Istio's gateway Services map {} to {p} by default",
                                req.port, req.port
                            ),
                        ));
                        p
                    }
                    _ => {
                        let mut st = step(
                            "service_port",
                            "none",
                            match service {
                                Some(s) => format!(
                                    "{} has no port {} with a known target, and no listener is bound to {}",
                                    s.service.display(),
                                    req.port,
                                    req.port
                                ),
                                None => format!("no listener is bound to {}", req.port),
                            },
                        );
                        st.rejected = service
                            .map(|s| {
                                s.ports
                                    .iter()
                                    .map(|p| Candidate {
                                        name: format!("port {}", port_text(p)),
                                        reason: "another port".into(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        st.objects.extend(service.map(|s| s.service.clone()));
                        self.steps.push(st);
                        return outcome(
                            "no_listener",
                            None,
                            format!("the gateway has no listener for port {}; the connection is refused", req.port),
                        );
                    }
                }
            }
        };

        // The bound listener: the pod's IP, else the wildcard.
        let on_port: Vec<&Listener> = listeners.iter().copied().filter(|l| listener_port(l) == Some(target)).collect();
        let ip_text = ip.map(|i| i.to_string());
        let chosen = on_port
            .iter()
            .copied()
            .find(|l| l.socket_address().is_some_and(|(a, _)| Some(a) == ip_text.as_deref()))
            .or_else(|| {
                on_port.iter().copied().find(|l| l.socket_address().is_some_and(|(a, _)| a == "0.0.0.0" || a == "::"))
            });
        let Some(listener) = chosen else {
            let mut st = step("listener", "none", format!("no listener is bound to port {target}"));
            st.rejected = listeners
                .iter()
                .map(|l| Candidate {
                    name: l.name.clone(),
                    reason: format!("bound to {}", l.address.as_ref().map(|a| a.display()).unwrap_or_default()),
                })
                .collect();
            self.steps.push(st);
            return outcome(
                "no_listener",
                None,
                format!("the gateway has no listener on port {target}; the connection is refused"),
            );
        };
        let mut st = step(
            "listener",
            listener.name.clone(),
            format!(
                "bound by the gateway to {} (no capture, no hand-off)",
                listener.address.as_ref().map(|a| a.display()).unwrap_or_default()
            ),
        );
        st.rejected = on_port
            .iter()
            .filter(|l| l.name != listener.name)
            .map(|l| Candidate { name: l.name.clone(), reason: "the exact address wins over the wildcard".into() })
            .collect();
        self.steps.push(st);

        // The filter chain: SNI of the Gateway's TLS servers, then TLS termination.
        let conn = super::chain::Connection::outbound(listener, target, ip, req.sni.as_deref());
        let Some(chain) = self.select_chain(listener, &conn) else {
            let hint = if req.sni.is_none() && listener.has_listener_filter("tls_inspector") {
                " (the listener inspects TLS: is this an HTTPS port? pass --sni)"
            } else {
                ""
            };
            return outcome(
                "no_filter_chain",
                None,
                format!("no filter chain of {} matches{hint}; Envoy closes the connection", listener.name),
            );
        };
        if let Some(ts) = chain.transport_socket.as_ref().filter(|t| t.name.contains("tls"))
            && let Some(last) = self.steps.last_mut()
        {
            last.why = format!("{}; TLS is terminated here ({})", last.why, ts.name);
        }
        let o = self.terminal(chain);
        self.gateway_provenance();
        o
    }

    /// Names the Gateway behind the route configuration, and the virtual host's Istio object.
    fn gateway_provenance(&mut self) {
        let index = self.index;
        for s in &mut self.steps {
            match s.stage.as_str() {
                "route_config" => {
                    let name = s.chosen.clone();
                    if let Some((gateway, what)) = route_config_origin(&name) {
                        s.why = format!("{}: {what}", s.why);
                        s.objects.extend(gateway);
                    }
                    if let Some(rc) = index.route_configs.get(name.as_str()) {
                        s.objects.extend(super::super::views::config_ref(rc.metadata.as_ref()));
                    }
                }
                "virtual_host" => {
                    let vh = index.route_configs.values().flat_map(|rc| &rc.virtual_hosts).find(|v| v.name == s.chosen);
                    if let Some(o) = vh.and_then(|v| super::super::views::config_ref(v.metadata.as_ref()))
                        && !s.objects.contains(&o)
                    {
                        s.objects.push(o);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The egress (or any) gateway a sidecar's request is sent to, from the cluster it reaches:
/// `outbound|port|subset|<name>.<ns>.svc…` whose Service name says it is a gateway, or whose
/// endpoints are a gateway workload.
pub fn gateway_of_cluster(index: &Index<'_>, cluster: &str) -> Option<(ObjectRef, u16)> {
    let key = ClusterKey::parse(cluster).filter(|k| k.direction == "outbound")?;
    let service = key.service()?;
    let by_name = service.name.contains("gateway");
    let by_workload = index.clusters.get(cluster).and_then(|c| index.endpoints_of(c)).is_some_and(|a| {
        a.endpoints.iter().flat_map(|l| &l.lb_endpoints).any(|e| {
            e.metadata
                .as_ref()
                .and_then(crate::config_dump::Metadata::istio_workload)
                .is_some_and(|w| w.split(';').next().is_some_and(|n| n.contains("gateway")))
        })
    });
    (by_name || by_workload).then_some((service, key.port))
}

/// The command that continues a request on the gateway it was sent to.
pub fn continue_command(pod: Option<&str>, service: &ObjectRef, port: u16, req: &Request) -> String {
    let pod = pod.map(str::to_string).unwrap_or_else(|| pod_placeholder(service));
    let host = req.authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(&req.authority);
    let host = if host.is_empty() { req.host.as_str() } else { host };
    let mut cmd = format!("kubectl mesh explain pod/{pod} -n {} --to {host}:{port}{}", service.namespace, req.path);
    for (k, v) in &req.headers {
        cmd.push_str(&format!(" -H '{k}: {v}'"));
    }
    if req.method != "GET" {
        cmd.push_str(&format!(" --method {}", req.method));
    }
    if let Some(s) = &req.sni {
        cmd.push_str(&format!(" --sni {s}"));
    }
    cmd
}

/// The placeholder the continue command carries until the gateway's pod is known.
pub fn pod_placeholder(service: &ObjectRef) -> String {
    format!("<a {} pod>", service.name)
}

/// Adds the next-hop step to a sidecar's trace whose request goes to a gateway (the command names
/// a placeholder pod; [`name_gateway_pod`] fills it in pod mode).
pub fn add_gateway_hop(index: &Index<'_>, trace: &mut Trace) {
    let Some(cluster) = trace.outcome.cluster.clone() else { return };
    let Some((service, port)) = gateway_of_cluster(index, &cluster) else { return };
    let cmd = continue_command(None, &service, port, &trace.request);
    let mut s: Step = step(
        "next_hop",
        format!("→ {}", service.name),
        format!("{cluster} is the gateway {}; continue there with `{cmd}`", service.display()),
    );
    s.objects.push(service.clone());
    trace.steps.push(s);
    trace.outcome.summary = format!("{} → {}, continue there with `{cmd}`", trace.outcome.summary, service.name);
}

/// The gateway Service of a trace's next hop, when the trace has one.
pub fn next_hop_service(trace: &Trace) -> Option<&ObjectRef> {
    trace.steps.iter().find(|s| s.stage == "next_hop").and_then(|s| s.objects.first())
}

/// Puts the gateway pod's name into the next hop's command.
pub fn name_gateway_pod(trace: &mut Trace, pod: &str) {
    let Some(service) = next_hop_service(trace).cloned() else { return };
    let placeholder = format!("pod/{}", pod_placeholder(&service));
    let named = format!("pod/{pod}");
    for s in trace.steps.iter_mut().filter(|s| s.stage == "next_hop") {
        s.why = s.why.replace(&placeholder, &named);
    }
    trace.outcome.summary = trace.outcome.summary.replace(&placeholder, &named);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::super::{Input, Request, explain};
    use super::*;

    const HCM: &str =
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

    fn hcm(rds: &str) -> Value {
        json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": "outbound_0.0.0.0_8080", "rds": {"route_config_name": rds},
            "http_filters": [{"name": "envoy.filters.http.router"}]}})
    }

    fn route_config(name: &str, host: &str, cluster: &str) -> Value {
        json!({"route_config": {"name": name, "ignore_port_in_host_matching": true, "virtual_hosts": [{
            "name": format!("{host}:80"), "domains": [host],
            "routes": [{"name": "productpage", "match": {"prefix": "/productpage"}, "route": {"cluster": cluster},
                "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/bookinfo/virtual-service/bookinfo"}}}}]}]}})
    }

    fn cluster(name: &str, endpoint: (&str, u32)) -> Value {
        json!({"cluster": {"name": name, "type": "STATIC", "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": endpoint.0, "port_value": endpoint.1}}}}]}]}}})
    }

    const PRODUCTPAGE: &str = "outbound|9080||productpage.bookinfo.svc.cluster.local";

    /// An ingress gateway: 0.0.0.0_8080 (http.8080) and 0.0.0.0_8443 (one TLS server), its own
    /// Service's clusters with this pod as the endpoint.
    fn gateway_dump() -> ConfigDump {
        let l8080 = json!({"name": "0.0.0.0_8080", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
            "filter_chains": [{"filters": [hcm("http.8080")]}]});
        let l8443 = json!({"name": "0.0.0.0_8443", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8443}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector"}],
            "filter_chains": [{"filter_chain_match": {"server_names": ["bookinfo.example.com"]},
                "transport_socket": {"name": "envoy.transport_sockets.tls"},
                "filters": [hcm("https.443.https.bookinfo-gateway.bookinfo")]}]});
        let own = |p: u32, t: u32| {
            cluster(&format!("outbound|{p}||istio-ingressgateway.istio-system.svc.cluster.local"), ("10.244.0.7", t))
        };
        let d = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {
                "id": "router~10.244.0.7~istio-ingressgateway-7d4f-x2b.istio-system~istio-system.svc.cluster.local",
                "metadata": {"WORKLOAD_NAME": "istio-ingressgateway", "NAMESPACE": "istio-system"}}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                own(80, 8080), own(443, 8443), cluster(PRODUCTPAGE, ("10.244.1.5", 9080))]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                {"name": "0.0.0.0_8080", "active_state": {"listener": l8080}},
                {"name": "0.0.0.0_8443", "active_state": {"listener": l8443}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
                route_config("http.8080", "bookinfo.example.com", PRODUCTPAGE),
                route_config("https.443.https.bookinfo-gateway.bookinfo", "bookinfo.example.com", PRODUCTPAGE)]}
        ]});
        ConfigDump::parse(d.to_string().as_bytes()).expect("a valid dump")
    }

    fn traced(d: &ConfigDump, to: &str, sni: Option<&str>) -> crate::explain::Report {
        let req = Request::parse(to, &[], None, sni).expect("a valid --to");
        explain(d, Input { request: Some(&req), ..Default::default() })
    }

    fn chosen(t: &Trace, stage: &str) -> String {
        t.steps.iter().find(|s| s.stage == stage).map(|s| s.chosen.clone()).unwrap_or_default()
    }

    #[test]
    fn service_port_maps_to_the_bound_listener_offline() {
        let d = gateway_dump();
        let r = traced(&d, "bookinfo.example.com:80/productpage", None);
        let g = r.gateway.as_ref().and_then(|g| g.service.as_ref()).expect("the gateway's Service from the dump");
        assert_eq!(g.service.display(), "Service istio-system/istio-ingressgateway");
        let t = r.trace.expect("a trace");
        assert!(t.steps.iter().all(|s| s.stage != "capture"), "a gateway has no capture step: {t:#?}");
        assert_eq!(chosen(&t, "service_port"), "Service istio-system/istio-ingressgateway port 80 → 8080");
        assert_eq!(chosen(&t, "listener"), "0.0.0.0_8080");
        assert_eq!(chosen(&t, "route_config"), "http.8080");
        assert_eq!(t.outcome.cluster.as_deref(), Some(PRODUCTPAGE));
        let objects: Vec<String> = r.objects.iter().map(|o| o.object.display()).collect();
        assert!(objects.contains(&"VirtualService bookinfo/bookinfo".to_string()), "{objects:?}");
    }

    #[test]
    fn https_by_sni_names_the_gateway_from_the_route_config() {
        let d = gateway_dump();
        let r = traced(&d, "bookinfo.example.com:443/productpage", Some("bookinfo.example.com"));
        let t = r.trace.expect("a trace");
        assert_eq!(chosen(&t, "listener"), "0.0.0.0_8443");
        assert_eq!(t.request.authority, "bookinfo.example.com", "curl sends no :443");
        let fc = t.steps.iter().find(|s| s.stage == "filter_chain").expect("a chain step");
        assert!(fc.why.contains("TLS is terminated here"), "{}", fc.why);
        assert_eq!(chosen(&t, "route_config"), "https.443.https.bookinfo-gateway.bookinfo");
        let objects: Vec<String> = r.objects.iter().map(|o| o.object.display()).collect();
        assert!(objects.contains(&"Gateway bookinfo/bookinfo-gateway".to_string()), "{objects:?}");
        assert_eq!(t.outcome.cluster.as_deref(), Some(PRODUCTPAGE));
        // Without --sni the TLS listener finds no chain and says why.
        let r = traced(&d, "bookinfo.example.com:443/productpage", None);
        let t = r.trace.expect("a trace");
        assert_eq!(t.outcome.kind, "no_filter_chain");
        assert!(t.outcome.summary.contains("--sni"), "{}", t.outcome.summary);
        // A port the Service does not have.
        let t = traced(&d, "bookinfo.example.com:9999/", None).trace.expect("a trace");
        assert_eq!(t.outcome.kind, "no_listener");
    }

    #[test]
    fn route_config_names() {
        let (g, what) = route_config_origin("https.443.https.my.gw.bookinfo").expect("a gateway route name");
        assert_eq!(g.map(|g| g.display()).as_deref(), Some("Gateway bookinfo/my.gw"));
        assert!(what.contains("TLS server https (port 443)"), "{what}");
        let (g, _) = route_config_origin("http.8080").expect("a gateway route name");
        assert!(g.is_none());
        assert!(route_config_origin("9080").is_none());
        assert!(route_config_origin("https.x.y.z").is_none());
    }

    #[test]
    fn sidecar_request_to_the_egress_gateway_names_the_next_hop() {
        let egress = "outbound|80||istio-egressgateway.istio-system.svc.cluster.local";
        let l = json!({"name": "0.0.0.0_80", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
            "filter_chains": [{"filters": [hcm("80")]}]});
        let d = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {
                "id": "sidecar~10.244.1.9~sleep-1.default~default.svc.cluster.local"}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
                cluster(egress, ("10.244.0.8", 8080))]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                {"name": "0.0.0.0_80", "active_state": {"listener": l}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
                route_config("80", "edition.cnn.com", egress)]}
        ]});
        let d = ConfigDump::parse(d.to_string().as_bytes()).expect("a valid dump");
        let req = Request::parse("edition.cnn.com/productpage", &["x-user: alice".into()], None, None).expect("--to");
        let r = explain(&d, Input { request: Some(&req), ..Default::default() });
        let mut t = r.trace.expect("a trace");
        assert_eq!(chosen(&t, "next_hop"), "→ istio-egressgateway");
        let want = "kubectl mesh explain pod/<a istio-egressgateway pod> -n istio-system --to edition.cnn.com:80/productpage -H 'x-user: alice'";
        assert!(t.outcome.summary.contains(want), "{}", t.outcome.summary);
        name_gateway_pod(&mut t, "istio-egressgateway-5c-abc");
        assert!(t.outcome.summary.contains("pod/istio-egressgateway-5c-abc -n istio-system"), "{}", t.outcome.summary);
        // A cluster of an ordinary Service has no next hop.
        assert!(gateway_of_cluster(&d.index(), PRODUCTPAGE).is_none());
    }
}

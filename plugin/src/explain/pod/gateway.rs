//! Pod mode for gateways: the Service that selects the gateway pod (its ports and target ports),
//! the Gateways bound to the traced routes (from each VirtualService's `spec.gateways`, kept when
//! their selector picks this pod and one of their servers is on the dialled port), and the pod
//! behind a sidecar's next hop to a gateway. Every call is bounded; a failed lookup leaves the
//! offline answer in place.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use super::super::provenance::ObjectRef;
use super::super::report::{ObjectStatus, Report};
use super::super::trace::gateway::{name_gateway_pod, next_hop_service};
use super::super::trace::{GatewayPort, GatewayService};

/// Whether every `selector` label is on the pod (an empty selector selects nothing here).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// The gateway's ports from a Service (JSON) that selects `pod`: a named target port resolves
/// through the pod's container ports; no target port means the port itself.
pub fn service_ports(service: &Value, pod: &Value) -> Vec<GatewayPort> {
    let container_port = |name: &str| -> Option<u16> {
        pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find_map(|p| (p["name"].as_str() == Some(name)).then(|| p["containerPort"].as_u64()).flatten())
            .and_then(|p| u16::try_from(p).ok())
    };
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().is_none_or(|p| p == "TCP"))
        .filter_map(|p| {
            let port = u16::try_from(p["port"].as_u64()?).ok()?;
            let target_port = match &p["targetPort"] {
                Value::Number(n) => n.as_u64().and_then(|t| u16::try_from(t).ok()),
                Value::String(s) => s.parse().ok().or_else(|| container_port(s)),
                _ => Some(port),
            };
            Some(GatewayPort { name: p["name"].as_str().map(str::to_string), port, target_port })
        })
        .collect()
}

/// The Service in the pod's namespace that selects the gateway pod, with its port mapping.
pub async fn service_of_pod(client: &kube::Client, pod: &Value, timeout: Duration) -> Option<GatewayService> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let labels = labels_of(&pod["metadata"]["labels"]);
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let list = tokio::time::timeout(timeout, api.list(&ListParams::default())).await.ok()?.ok()?;
    let mut found: Vec<(String, Vec<GatewayPort>)> = list
        .items
        .iter()
        .filter_map(|s| {
            let v = serde_json::to_value(s).ok()?;
            selects(&labels_of(&v["spec"]["selector"]), &labels)
                .then(|| (v["metadata"]["name"].as_str().unwrap_or_default().to_string(), service_ports(&v, pod)))
        })
        .collect();
    // With several, the one with the most ports (the gateway's own, not a per-port extra).
    found.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let (name, ports) = found.into_iter().next()?;
    Some(GatewayService {
        how: format!("Service {namespace}/{name} selects this pod"),
        service: ObjectRef::service(namespace, &name),
        ports,
    })
}

fn istio(kind: &str, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        group: "networking.istio.io".into(),
        version: "v1".into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

async fn get(client: &kube::Client, o: &ObjectRef, timeout: Duration) -> Option<DynamicObject> {
    let gvk = GroupVersionKind::gvk(&o.group, &o.version, &o.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", o.kind.to_ascii_lowercase()));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &o.namespace, &ar);
    tokio::time::timeout(timeout, api.get_opt(&o.name)).await.ok()?.ok()?
}

/// `spec.gateways` of a VirtualService as Gateway references (`mesh` is the sidecars, not a Gateway).
pub fn gateway_refs(vs_namespace: &str, spec: &Value) -> Vec<ObjectRef> {
    spec["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|g| *g != "mesh")
        .map(|g| match g.split_once('/') {
            Some((ns, name)) => istio("Gateway", ns, name),
            None => istio("Gateway", vs_namespace, g),
        })
        .collect()
}

/// Whether a Gateway (its `spec`) applies to the pod and has a server on Service port `port`.
pub fn gateway_serves(spec: &Value, labels: &BTreeMap<String, String>, port: Option<u16>) -> bool {
    let selector = labels_of(&spec["selector"]);
    let on_port = port.is_none_or(|p| {
        spec["servers"].as_array().into_iter().flatten().any(|s| s["port"]["number"].as_u64() == Some(u64::from(p)))
    });
    selects(&selector, labels) && on_port
}

/// Adds the Gateways bound to the traced VirtualServices to the route configuration step (for
/// `http.<port>` names, which do not carry them).
pub async fn gateways_for_routes(client: &kube::Client, report: &mut Report, pod: &Value, timeout: Duration) {
    let Some(trace) = report.trace.as_mut() else { return };
    let labels = labels_of(&pod["metadata"]["labels"]);
    let service_port = trace.request.port;
    let dialled = report.gateway.as_ref().and_then(|g| g.service.as_ref()).and_then(|s| s.by_port(service_port));
    let port = dialled.map(|p| p.port);
    let services: Vec<ObjectRef> =
        trace.steps.iter().flat_map(|s| s.objects.iter()).filter(|o| o.kind == "VirtualService").cloned().collect();
    let mut bound = Vec::new();
    for vs in services {
        let Some(obj) = get(client, &vs, timeout).await else { continue };
        for g in gateway_refs(&vs.namespace, &obj.data["spec"]) {
            if bound.contains(&g) {
                continue;
            }
            if let Some(gw) = get(client, &g, timeout).await
                && gateway_serves(&gw.data["spec"], &labels, port)
            {
                bound.push(g);
            }
        }
    }
    if let Some(s) = trace.steps.iter_mut().find(|s| s.stage == "route_config") {
        for g in &bound {
            if !s.objects.contains(g) {
                s.objects.push(g.clone());
            }
        }
    }
    for g in bound {
        if !report.objects.iter().any(|o| o.object == g) {
            report.objects.push(ObjectStatus { object: g, status: "unchecked".into(), generation: None });
        }
    }
}

/// Names a running pod of the gateway a sidecar's request goes to, in the next hop's command.
pub async fn name_next_hop_pod(client: &kube::Client, report: &mut Report, timeout: Duration) {
    let Some(trace) = report.trace.as_mut() else { return };
    let Some(service) = next_hop_service(trace).cloned() else { return };
    let services: Api<Service> = Api::namespaced(client.clone(), &service.namespace);
    let Ok(Ok(Some(svc))) = tokio::time::timeout(timeout, services.get_opt(&service.name)).await else { return };
    let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    if selector.is_empty() {
        return;
    }
    let text = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &service.namespace);
    let Ok(Ok(list)) = tokio::time::timeout(timeout, pods.list(&ListParams::default().labels(&text))).await else {
        return;
    };
    let running = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name.clone())
        .min();
    if let Some(pod) = running {
        name_gateway_pod(trace, &pod);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_map_to_target_ports_by_number_or_name() {
        let svc = json!({"spec": {"selector": {"istio": "ingressgateway"}, "ports": [
            {"name": "http2", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": "https-tls"},
            {"name": "status-port", "port": 15021},
        ]}});
        let pod = json!({"spec": {"containers": [{"name": "istio-proxy", "ports": [{"name": "https-tls", "containerPort": 8443}]}]}});
        let ports = service_ports(&svc, &pod);
        let pairs: Vec<(u16, Option<u16>)> = ports.iter().map(|p| (p.port, p.target_port)).collect();
        assert_eq!(pairs, [(80, Some(8080)), (443, Some(8443)), (15021, Some(15021))]);
        assert_eq!(ports[1].name.as_deref(), Some("https"));
    }

    #[test]
    fn gateways_come_from_the_virtual_service_and_must_select_the_pod() {
        let refs = gateway_refs("bookinfo", &json!({"gateways": ["mesh", "bookinfo-gateway", "istio-system/shared"]}));
        let names: Vec<String> = refs.iter().map(ObjectRef::display).collect();
        assert_eq!(names, ["Gateway bookinfo/bookinfo-gateway", "Gateway istio-system/shared"]);
        let labels: BTreeMap<String, String> = [("istio".to_string(), "ingressgateway".to_string())].into();
        let gw = json!({"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80}}]});
        assert!(gateway_serves(&gw, &labels, Some(80)));
        assert!(!gateway_serves(&gw, &labels, Some(443)), "no server on 443");
        let other = json!({"selector": {"istio": "egressgateway"}, "servers": [{"port": {"number": 80}}]});
        assert!(!gateway_serves(&other, &labels, Some(80)), "selects another gateway");
    }
}

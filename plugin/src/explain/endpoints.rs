//! Envoy's endpoints against Kubernetes: the ready addresses of a Service's EndpointSlices for one
//! Service port (narrowed to a DestinationRule subset's pods), compared with the endpoints Envoy
//! holds for the `outbound|port|subset|host` cluster; and Envoy's live view of each endpoint
//! (`GET /clusters?format=json`: health flags, outlier ejection). Pure functions over the objects
//! as JSON; the fetching is in [`super::pod`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::provenance::ClusterKey;
use super::report::{AddressView, ClusterView, EndpointCheck, LiveEndpoint};

/// The Service's port `port`: its name (EndpointSlice ports carry the same name).
fn service_port_name(service: &Value, port: u16) -> Result<String, String> {
    let ports = service["spec"]["ports"].as_array().cloned().unwrap_or_default();
    ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .ok_or_else(|| {
            let have: Vec<String> = ports.iter().filter_map(|p| p["port"].as_u64()).map(|p| p.to_string()).collect();
            format!(
                "the Service has no port {port} (it has {})",
                if have.is_empty() { "none".into() } else { have.join(", ") }
            )
        })
}

/// The ready addresses (`ip:port`, with the pod behind each) of `slices` for Service port `port`;
/// with `pods`, only the endpoints of those pods (a subset's). An endpoint whose `ready` is unset
/// counts as ready, as the API says.
pub fn kubernetes_endpoints(
    service: &Value,
    slices: &[Value],
    port: u16,
    pods: Option<&BTreeSet<String>>,
) -> Result<Vec<AddressView>, String> {
    let name = service_port_name(service, port)?;
    let mut out = BTreeMap::new();
    for slice in slices {
        let Some(sp) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] == Value::Bool(false) {
                continue;
            }
            let pod = (e["targetRef"]["kind"] == "Pod").then(|| e["targetRef"]["name"].as_str()).flatten();
            if let Some(wanted) = pods
                && !pod.is_some_and(|p| wanted.contains(p))
            {
                continue;
            }
            for a in e["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let address = if a.contains(':') { format!("[{a}]:{sp}") } else { format!("{a}:{sp}") };
                out.insert(address.clone(), AddressView { address, pod: pod.map(str::to_string) });
            }
        }
    }
    Ok(out.into_values().collect())
}

/// The labels a DestinationRule's subset selects pods by.
pub fn subset_labels(destination_rule: &Value, subset: &str) -> Option<BTreeMap<String, String>> {
    let s = destination_rule["spec"]["subsets"].as_array()?.iter().find(|s| s["name"] == subset)?;
    Some(
        s["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
    )
}

/// A label selector for the API server, `k=v,k2=v2`.
pub fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Compares Envoy's endpoints of `cluster` with the Kubernetes ones.
pub fn compare(cluster: &ClusterView, kubernetes: &[AddressView], source: String) -> EndpointCheck {
    let envoy: BTreeMap<&str, Option<String>> =
        cluster.endpoints.iter().map(|e| (e.address.as_str(), e.workload.as_ref().map(|w| w.name.clone()))).collect();
    let k8s: BTreeMap<&str, &AddressView> = kubernetes.iter().map(|a| (a.address.as_str(), a)).collect();
    let missing: Vec<AddressView> =
        kubernetes.iter().filter(|a| !envoy.contains_key(a.address.as_str())).cloned().collect();
    let extra: Vec<AddressView> = envoy
        .iter()
        .filter(|(a, _)| !k8s.contains_key(*a))
        .map(|(a, pod)| AddressView { address: a.to_string(), pod: pod.clone() })
        .collect();
    let status = if missing.is_empty() && extra.is_empty() { "agree" } else { "differ" };
    EndpointCheck {
        cluster: cluster.name.clone(),
        status: status.to_string(),
        source,
        kubernetes: kubernetes.len(),
        envoy: cluster.endpoints.len(),
        missing,
        extra,
        live: Vec::new(),
    }
}

/// An unchecked cluster, with the reason.
pub fn unchecked(cluster: &str, why: String) -> EndpointCheck {
    EndpointCheck {
        cluster: cluster.to_string(),
        status: "unchecked".to_string(),
        source: why,
        kubernetes: 0,
        envoy: 0,
        missing: Vec::new(),
        extra: Vec::new(),
        live: Vec::new(),
    }
}

/// The clusters of a trace worth checking: `outbound|port|subset|host` with a Service host, with
/// the parsed name.
pub fn checkable(clusters: &[ClusterView]) -> Vec<(&ClusterView, ClusterKey)> {
    clusters
        .iter()
        .filter_map(|c| ClusterKey::parse(&c.name).map(|k| (c, k)))
        .filter(|(_, k)| k.direction == "outbound" && k.service().is_some())
        .collect()
}

fn socket_text(address: &Value) -> Option<String> {
    let sa = &address["socket_address"];
    let ip = sa["address"].as_str()?;
    let port = sa["port_value"].as_u64()?;
    Some(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") })
}

/// Envoy's live view of `cluster`'s endpoints from `GET /clusters?format=json`: each endpoint's
/// health flags; `ejected` for outlier detection, `unhealthy` for failed health checks or an EDS
/// status other than healthy.
pub fn live_endpoints(clusters: &Value, cluster: &str) -> Option<Vec<LiveEndpoint>> {
    let c = clusters["cluster_statuses"].as_array()?.iter().find(|c| c["name"] == cluster)?;
    let mut out = Vec::new();
    for h in c["host_statuses"].as_array().into_iter().flatten() {
        let Some(address) = socket_text(&h["address"]) else { continue };
        let hs = h["health_status"].as_object().cloned().unwrap_or_default();
        let eds = hs.get("eds_health_status").and_then(Value::as_str).unwrap_or("UNKNOWN").to_string();
        let flags: Vec<String> = hs.iter().filter(|(_, v)| **v == Value::Bool(true)).map(|(k, _)| k.clone()).collect();
        let ejected = flags.iter().any(|f| f == "failed_outlier_check");
        let unhealthy = flags.iter().any(|f| f == "failed_active_health_check" || f == "active_hc_timeout")
            || matches!(eds.as_str(), "UNHEALTHY" | "DRAINING" | "TIMEOUT");
        out.push(LiveEndpoint { address, eds_health: eds, flags, ejected, unhealthy });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::explain::report::EndpointView;

    fn service() -> Value {
        json!({"spec": {"ports": [{"name": "http-bar", "port": 50002, "targetPort": 8080}, {"name": "grpc", "port": 9000}]}})
    }

    fn slice(endpoints: Value) -> Value {
        json!({"ports": [{"name": "http-bar", "port": 8080}, {"name": "grpc", "port": 9001}], "endpoints": endpoints})
    }

    fn ep(ip: &str, pod: &str, ready: Option<bool>) -> Value {
        let mut e = json!({"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod, "namespace": "bar"}});
        if let Some(r) = ready {
            e["conditions"] = json!({"ready": r});
        }
        e
    }

    fn view(addresses: &[(&str, &str)]) -> ClusterView {
        ClusterView {
            name: "outbound|50002|v1|bar.bar.svc.cluster.local".into(),
            weight: None,
            share_percent: None,
            found: Some(true),
            discovery_type: Some("EDS".into()),
            service: None,
            subset: None,
            destination_rule: None,
            endpoints_known: true,
            endpoints: addresses
                .iter()
                .map(|(a, pod)| EndpointView {
                    address: a.to_string(),
                    health: "HEALTHY".into(),
                    locality: String::new(),
                    weight: None,
                    priority: 0,
                    tls_mode: None,
                    workload: crate::explain::provenance::Workload::parse(&format!("{pod};bar")),
                })
                .collect(),
        }
    }

    #[test]
    fn ready_addresses_of_the_service_port_and_the_subset() {
        let slices = [
            slice(json!([ep("10.0.0.1", "bar-1", Some(true)), ep("10.0.0.2", "bar-2", None)])),
            slice(json!([ep("10.0.0.3", "bar-3", Some(false)), ep("10.0.0.4", "bar-4", Some(true))])),
        ];
        let all = kubernetes_endpoints(&service(), &slices, 50002, None).unwrap();
        let addrs: Vec<&str> = all.iter().map(|a| a.address.as_str()).collect();
        // The slice's port for the Service port's name (the target port), not the Service port.
        assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080"]);
        let pods = BTreeSet::from(["bar-2".to_string(), "bar-4".to_string()]);
        let subset = kubernetes_endpoints(&service(), &slices, 50002, Some(&pods)).unwrap();
        assert_eq!(subset.iter().map(|a| a.pod.as_deref().unwrap()).collect::<Vec<_>>(), ["bar-2", "bar-4"]);
        assert_eq!(kubernetes_endpoints(&service(), &slices, 9000, None).unwrap()[0].address, "10.0.0.1:9001");
        let e = kubernetes_endpoints(&service(), &slices, 1234, None).unwrap_err();
        assert_eq!(e, "the Service has no port 1234 (it has 50002, 9000)");
    }

    #[test]
    fn missing_and_extra_addresses_name_their_pods() {
        let k8s = kubernetes_endpoints(
            &service(),
            &[slice(json!([ep("10.0.0.1", "bar-1", None), ep("10.0.0.2", "bar-2", None)]))],
            50002,
            None,
        )
        .unwrap();
        let c = compare(&view(&[("10.0.0.1:8080", "bar-1"), ("10.0.0.2:8080", "bar-2")]), &k8s, String::new());
        assert_eq!((c.status.as_str(), c.kubernetes, c.envoy), ("agree", 2, 2));
        let c = compare(&view(&[("10.0.0.1:8080", "bar-1"), ("10.0.0.9:8080", "bar-9")]), &k8s, String::new());
        assert_eq!(c.status, "differ");
        assert_eq!((c.missing[0].address.as_str(), c.missing[0].pod.as_deref()), ("10.0.0.2:8080", Some("bar-2")));
        assert_eq!((c.extra[0].address.as_str(), c.extra[0].pod.as_deref()), ("10.0.0.9:8080", Some("bar-9")));
    }

    #[test]
    fn subsets_and_live_health() {
        let dr = json!({"spec": {"subsets": [{"name": "v1", "labels": {"version": "v1", "app": "bar"}}]}});
        let labels = subset_labels(&dr, "v1").unwrap();
        assert_eq!(selector_text(&labels), "app=bar,version=v1");
        assert!(subset_labels(&dr, "v2").is_none());
        let clusters = json!({"cluster_statuses": [{"name": "c", "host_statuses": [
            {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 8080}}, "health_status": {"eds_health_status": "HEALTHY"}},
            {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 8080}}, "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": true}},
            {"address": {"socket_address": {"address": "10.0.0.3", "port_value": 8080}}, "health_status": {"eds_health_status": "UNHEALTHY"}}
        ]}]});
        let live = live_endpoints(&clusters, "c").unwrap();
        let flags: Vec<(bool, bool)> = live.iter().map(|l| (l.ejected, l.unhealthy)).collect();
        assert_eq!(flags, [(false, false), (true, false), (false, true)]);
        assert_eq!(live[1].flags, ["failed_outlier_check"]);
        assert!(live_endpoints(&clusters, "other").is_none());
    }
}

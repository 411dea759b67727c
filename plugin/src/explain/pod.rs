//! Reading a pod's sidecar config from a cluster: the pod, its `/config_dump?include_eds` through a
//! port-forward (or the API server's pod proxy), the Service behind `--to`, and the objects the
//! config names, with their generation. Every call is bounded by `--request-timeout`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use super::args::ExplainArgs;
use super::provenance::{ClusterKey, ObjectRef};
use super::report::{AddressView, ClusterView, EndpointCheck, ObjectStatus};
use super::trace::{Resolution, resolve_offline};
use super::{Input, Report, Request, explain, pod_capture};
use super::{endpoints, views};
use crate::cluster::Cluster;
use crate::config_dump::ConfigDump;

mod gateway;

/// Explains a pod of a live cluster.
pub async fn explain_pod(args: &ExplainArgs, request: Option<&Request>) -> anyhow::Result<Report> {
    let cluster = Cluster::connect(&args.cluster).await?;
    explain_pod_in(&cluster, args, request).await
}

/// `pod/NAME`, `pods/NAME` or `NAME` → `NAME`.
fn pod_name(arg: &str) -> anyhow::Result<&str> {
    let name = match arg.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name,
        Some((kind, _)) => bail!("invalid pod {arg:?}: only pods can be explained, not {kind}"),
        None => arg,
    };
    if name.is_empty() {
        bail!("invalid pod {arg:?}: the name is empty");
    }
    Ok(name)
}

/// Explains a pod of a connected cluster.
pub async fn explain_pod_in(
    cluster: &Cluster,
    args: &ExplainArgs,
    request: Option<&Request>,
) -> anyhow::Result<Report> {
    let (client, namespace, timeout) = (&cluster.client, cluster.namespace.clone(), cluster.timeout);
    let name = pod_name(args.pod.as_deref().unwrap_or_default())?;
    let pod = cluster.get_pod(&namespace, name).await?.ok_or_else(|| anyhow!("pod {namespace}/{name} not found"))?;
    let pod_value = serde_json::to_value(&pod)?;
    let capture = pod_capture(&pod_value)?;

    let path = "/config_dump?include_eds";
    let body = cluster.admin_get(args.admin_via, &namespace, name, args.admin_port, path).await?;
    let dump = ConfigDump::parse(&body).with_context(|| format!("the config dump of pod {namespace}/{name}"))?;
    drop(body);

    let router = super::trace::gateway::is_router(&dump);
    let gateway = if router { gateway::service_of_pod(client, &pod_value, timeout).await } else { None };
    let resolution = match request {
        Some(req) if req.ip.is_none() && args.inbound.is_none() && !router => {
            Some(resolve_through_api(client, &dump, req, &namespace, timeout).await)
        }
        _ => None,
    };
    let mut report = explain(
        &dump,
        Input {
            source: format!("pod {namespace}/{name}"),
            capture,
            request,
            resolution,
            inbound: args.inbound_peer(),
            gateway,
        },
    );
    if router {
        gateway::gateways_for_routes(client, &mut report, &pod_value, timeout).await;
    } else {
        gateway::name_next_hop_pod(client, &mut report, timeout).await;
    }
    let mut objects = Vec::with_capacity(report.objects.len());
    for o in &report.objects {
        objects.push(object_status(client, &o.object, timeout).await);
    }
    report.objects = objects;
    if let Some(trace) = &report.trace {
        let clusters = trace.outcome.clusters.clone();
        report.endpoint_checks = check_endpoints(cluster, args, &namespace, name, &clusters).await;
    }
    Ok(report)
}

/// How long a difference between Envoy and Kubernetes must last to be drift (EDS lags a little).
const DRIFT_RECHECK: Duration = Duration::from_secs(2);

/// Compares Envoy's endpoints of every `outbound|port|subset|host` cluster in `clusters` with the
/// Service's EndpointSlices; a difference is re-read once after [`DRIFT_RECHECK`] before it counts
/// as drift. Adds Envoy's live health of each endpoint (`GET /clusters?format=json`).
async fn check_endpoints(
    cluster: &Cluster,
    args: &ExplainArgs,
    namespace: &str,
    pod: &str,
    clusters: &[ClusterView],
) -> Vec<EndpointCheck> {
    let mut checks = Vec::new();
    for (c, key) in endpoints::checkable(clusters) {
        checks.push(match kubernetes_side(cluster, c, &key).await {
            Ok((addresses, source)) => endpoints::compare(c, &addresses, source),
            Err(why) => endpoints::unchecked(&c.name, why),
        });
    }
    if checks.iter().any(|c| c.status == "differ") {
        tokio::time::sleep(DRIFT_RECHECK).await;
        let dump = match cluster
            .admin_get(args.admin_via, namespace, pod, args.admin_port, "/config_dump?include_eds")
            .await
        {
            Ok(body) => ConfigDump::parse(&body).ok(),
            Err(_) => None,
        };
        let index = dump.as_ref().map(ConfigDump::index);
        for check in checks.iter_mut().filter(|c| c.status == "differ") {
            let Some((c, key)) = endpoints::checkable(clusters).into_iter().find(|(c, _)| c.name == check.cluster)
            else {
                continue;
            };
            let envoy = match &index {
                Some(i) => views::cluster_view(i, &c.name, c.weight, None),
                None => c.clone(),
            };
            if let Ok((addresses, source)) = kubernetes_side(cluster, &envoy, &key).await {
                let again = endpoints::compare(&envoy, &addresses, source);
                *check = if again.status == "agree" {
                    EndpointCheck { source: format!("{}; agreed when re-read 2 s later", again.source), ..again }
                } else {
                    EndpointCheck {
                        status: "drift".into(),
                        source: format!("{}; still differs 2 s later", again.source),
                        ..again
                    }
                };
            } else {
                check.status = "drift".into();
            }
        }
    }
    if checks.is_empty() {
        return checks;
    }
    match cluster.admin_get(args.admin_via, namespace, pod, args.admin_port, "/clusters?format=json").await {
        Ok(body) => {
            let live: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            for check in &mut checks {
                check.live = endpoints::live_endpoints(&live, &check.cluster).unwrap_or_default();
            }
        }
        Err(e) => {
            for check in &mut checks {
                check.source.push_str(&format!("; live health unavailable: {e:#}"));
            }
        }
    }
    checks
}

/// The ready addresses Kubernetes has for the cluster: the Service, its EndpointSlices, and for a
/// subset the pods the DestinationRule's subset selects. `Err` says what could not be read.
async fn kubernetes_side(
    cluster: &Cluster,
    c: &ClusterView,
    key: &ClusterKey,
) -> Result<(Vec<AddressView>, String), String> {
    let svc = key.service().ok_or_else(|| format!("{} is not a Service host", key.host))?;
    let timeout = cluster.timeout;
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &svc.namespace);
    let service = match tokio::time::timeout(timeout, services.get_opt(&svc.name)).await {
        Ok(Ok(Some(s))) => serde_json::to_value(s).map_err(|e| e.to_string())?,
        Ok(Ok(None)) => return Err(format!("Service {}/{} does not exist", svc.namespace, svc.name)),
        Ok(Err(e)) => {
            return Err(crate::cluster::Op::new("get", "services", Some(&svc.namespace), Some(&svc.name))
                .error(e)
                .to_string());
        }
        Err(_) => return Err(format!("reading Service {}/{} timed out", svc.namespace, svc.name)),
    };
    let slices_api: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), &svc.namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={}", svc.name));
    let slices = match tokio::time::timeout(timeout, slices_api.list(&params)).await {
        Ok(Ok(l)) => l.items.into_iter().filter_map(|s| serde_json::to_value(s).ok()).collect::<Vec<_>>(),
        Ok(Err(e)) => {
            return Err(crate::cluster::Op::new("list", "endpointslices", Some(&svc.namespace), None)
                .error(e)
                .to_string());
        }
        Err(_) => return Err(format!("listing the EndpointSlices of {}/{} timed out", svc.namespace, svc.name)),
    };
    let mut source = format!("Service {}/{}, {} EndpointSlice(s)", svc.namespace, svc.name, slices.len());
    let pods = match (&key.subset, &c.destination_rule) {
        (None, _) => None,
        (Some(subset), None) => return Err(format!("subset {subset}: no DestinationRule in the cluster's metadata")),
        (Some(subset), Some(dr)) => {
            let gvk = GroupVersionKind::gvk(&dr.group, &dr.version, &dr.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, "destinationrules");
            let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), &dr.namespace, &ar);
            let dr_value = match tokio::time::timeout(timeout, api.get_opt(&dr.name)).await {
                Ok(Ok(Some(o))) => serde_json::to_value(o).map_err(|e| e.to_string())?,
                Ok(Ok(None)) => return Err(format!("subset {subset}: {} does not exist", dr.display())),
                Ok(Err(e)) => {
                    return Err(crate::cluster::Op::new(
                        "get",
                        "destinationrules",
                        Some(&dr.namespace),
                        Some(&dr.name),
                    )
                    .error(e)
                    .to_string());
                }
                Err(_) => return Err(format!("reading {} timed out", dr.display())),
            };
            let labels = endpoints::subset_labels(&dr_value, subset)
                .ok_or_else(|| format!("{} has no subset {subset}", dr.display()))?;
            let selector = endpoints::selector_text(&labels);
            let pods = cluster
                .list_pods(Some(&svc.namespace), (!selector.is_empty()).then_some(selector.as_str()))
                .await
                .map_err(|e| e.to_string())?;
            source.push_str(&format!(", subset {subset} ({selector}) of {}", dr.display()));
            Some(pods.into_iter().filter_map(|p| p.metadata.name).collect::<std::collections::BTreeSet<_>>())
        }
    };
    let addresses = endpoints::kubernetes_endpoints(&service, &slices, key.port, pods.as_ref())?;
    Ok((addresses, source))
}

/// Resolves `--to`'s host through the API server: the Service's cluster IP.
async fn resolve_through_api(
    client: &kube::Client,
    dump: &ConfigDump,
    req: &Request,
    namespace: &str,
    timeout: Duration,
) -> Resolution {
    let offline = resolve_offline(dump, &dump.index(), req);
    let host = req.host.to_ascii_lowercase();
    let parts: Vec<&str> = host.split('.').collect();
    let (svc, ns) = match parts.as_slice() {
        [svc] => (svc.to_string(), namespace.to_string()),
        [svc, ns, ..] if parts.len() == 2 || parts.get(2) == Some(&"svc") => (svc.to_string(), ns.to_string()),
        _ => return offline,
    };
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let found = tokio::time::timeout(timeout, services.get_opt(&svc)).await;
    match found {
        Ok(Ok(Some(s))) => {
            let ip = s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).and_then(|ip| ip.parse().ok());
            match ip {
                Some(ip) => Resolution {
                    fqdn: offline.fqdn.or_else(|| Some(format!("{svc}.{ns}.svc.cluster.local"))),
                    ip: Some(ip),
                    how: format!("Service {ns}/{svc} has cluster IP {ip}"),
                },
                None => Resolution { how: format!("Service {ns}/{svc} is headless; {}", offline.how), ..offline },
            }
        }
        Ok(Ok(None)) => Resolution { how: format!("no Service {ns}/{svc} in the cluster; {}", offline.how), ..offline },
        Ok(Err(e)) => {
            let e = crate::cluster::Op::new("get", "services", Some(&ns), Some(&svc)).error(e);
            Resolution { how: format!("{e}; {}", offline.how), ..offline }
        }
        Err(_) => Resolution { how: format!("reading Service {ns}/{svc} timed out; {}", offline.how), ..offline },
    }
}

/// The resource name of a kind, as the API server's own pluralisation gives it for the kinds a
/// config names (`ServiceEntry` → `serviceentries`, `Gateway` → `gateways`).
fn plural_of(kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match kind.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
        _ if kind.ends_with('s') => format!("{kind}es"),
        _ => format!("{kind}s"),
    }
}

/// Looks an object up: found (with its generation), missing (the proxy's config is stale) or forbidden.
async fn object_status(client: &kube::Client, o: &ObjectRef, timeout: Duration) -> ObjectStatus {
    let gvk = GroupVersionKind::gvk(&o.group, &o.version, &o.kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural_of(&o.kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &o.namespace, &ar);
    let (status, generation) = match tokio::time::timeout(timeout, api.get_opt(&o.name)).await {
        // Kinds without a generation (Service) have none: nothing to show.
        Ok(Ok(Some(obj))) => ("found", obj.metadata.generation),
        Ok(Ok(None)) => ("missing", None),
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => ("forbidden", None),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => ("missing", None),
        Ok(Err(_)) => ("error", None),
        Err(_) => ("timeout", None),
    };
    ObjectStatus { object: o.clone(), status: status.to_string(), generation }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names() {
        assert_eq!(pod_name("pod/foo").unwrap(), "foo");
        assert_eq!(pod_name("foo").unwrap(), "foo");
        assert!(pod_name("svc/foo").unwrap_err().to_string().contains("not svc"));
        assert!(pod_name("pod/").is_err());
    }

    #[test]
    fn plurals_are_the_api_servers() {
        for (kind, plural) in [
            ("Service", "services"),
            ("Gateway", "gateways"),
            ("ServiceEntry", "serviceentries"),
            ("AuthorizationPolicy", "authorizationpolicies"),
            ("Telemetry", "telemetries"),
            ("DestinationRule", "destinationrules"),
            ("Sidecar", "sidecars"),
        ] {
            assert_eq!(plural_of(kind), plural, "{kind}");
        }
    }
}

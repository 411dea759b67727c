//! Reading a pod's sidecar config from a cluster: the pod, its `/config_dump?include_eds` through a
//! port-forward (or the API server's pod proxy), the Service behind `--to`, and the objects the
//! config names, with their generation. Every call is bounded by `--request-timeout`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use super::args::ExplainArgs;
use super::provenance::ObjectRef;
use super::report::ObjectStatus;
use super::trace::{Resolution, resolve_offline};
use super::{Input, Report, Request, explain, pod_capture};
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
    Ok(report)
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

/// Looks an object up: found (with its generation), missing (the proxy's config is stale) or forbidden.
async fn object_status(client: &kube::Client, o: &ObjectRef, timeout: Duration) -> ObjectStatus {
    let gvk = GroupVersionKind::gvk(&o.group, &o.version, &o.kind);
    let plural = format!("{}s", o.kind.to_ascii_lowercase());
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
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
}

//! Reading a pod's sidecar config from a cluster: the pod, its `/config_dump?include_eds` through a
//! port-forward (or the API server's pod proxy), the Service behind `--to`, and the objects the
//! config names, with their generation. Every call is bounded by `--timeout`.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::command::{AdminVia, ExplainArgs};
use super::provenance::ObjectRef;
use super::report::ObjectStatus;
use super::trace::{Resolution, resolve_offline};
use super::{Input, Report, Request, explain, pod_capture};
use crate::config_dump::ConfigDump;
use crate::proxy_status::fetch;

/// Explains a pod of a live cluster (runs its own async runtime).
pub fn explain_pod(args: &ExplainArgs, request: Option<&Request>) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(explain_pod_async(args, request))
}

async fn bounded<T>(what: &str, timeout: Duration, f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, f).await.map_err(|_| anyhow!("{what}: no answer within {timeout:?}"))?
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

async fn explain_pod_async(args: &ExplainArgs, request: Option<&Request>) -> anyhow::Result<Report> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.context("no cluster configuration (kubeconfig or in-cluster)")?,
    };
    let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    let name = pod_name(args.pod.as_deref().unwrap_or_default())?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = bounded("reading the pod", timeout, async {
        pods.get_opt(name).await.with_context(|| format!("reading pod {namespace}/{name}"))
    })
    .await?
    .ok_or_else(|| anyhow!("pod {namespace}/{name} not found"))?;
    let pod_value = serde_json::to_value(&pod)?;
    let capture = pod_capture(&pod_value)?;

    let path = "/config_dump?include_eds";
    let body = match args.admin_via {
        AdminVia::PortForward => {
            bounded("port-forward to the sidecar's admin port", timeout, async {
                Ok(fetch::http_via_portforward(&client, &namespace, name, args.admin_port, path).await?)
            })
            .await?
        }
        AdminVia::Proxy => {
            bounded("the API server's pod proxy", timeout, async {
                Ok(fetch::http_via_proxy(&client, &namespace, name, args.admin_port, path).await?)
            })
            .await?
        }
    };
    let dump = ConfigDump::parse(&body).with_context(|| format!("the config dump of pod {namespace}/{name}"))?;
    drop(body);

    let resolution = match request {
        Some(req) if req.ip.is_none() && args.inbound.is_none() => {
            Some(resolve_through_api(&client, &dump, req, &namespace, timeout).await)
        }
        _ => None,
    };
    let mut report = explain(
        &dump,
        Input { source: format!("pod {namespace}/{name}"), capture, request, resolution, inbound: args.inbound_peer() },
    );
    let mut objects = Vec::with_capacity(report.objects.len());
    for o in &report.objects {
        objects.push(object_status(&client, &o.object, timeout).await);
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
            Resolution { how: format!("reading Service {ns}/{svc} failed ({e}); {}", offline.how), ..offline }
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
        Ok(Ok(Some(obj))) => ("found", Some(obj.metadata.generation.unwrap_or(0))),
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

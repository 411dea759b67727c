//! `kubectl mesh proxy-status`: the xDS sync state of every injected pod, as istiod sees it, and with
//! a POD, istiod's config for that proxy compared with Envoy's own.
//!
//! Fetch (istiod pods, syncz from each, injected pods) concurrently with bounded calls, then build a
//! [`model::Report`] and render it. Exit codes: 0 all synced, 2 something is not synced / NACKing /
//! not connected / an istiod did not answer, 1 the command itself failed.

pub mod diff;
pub mod fetch;
pub mod model;
pub mod render;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use crate::cluster::{AdminVia, Cluster, ClusterArgs, ClusterError};
use crate::exit::{FAILED as EXIT_FAILED, OK as EXIT_OK, PROBLEM as EXIT_PROBLEM};
use fetch::{DEBUG_CONFIG_DUMP, DEBUG_SYNCZ};
use model::{Filter, InjectedPod, IstiodResult, ProxySync, Report};
use render::Output;

/// `kubectl mesh proxy-status`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit codes: 0 all synced; 2 a proxy is not synced, NACKing or not connected, or an istiod \
did not answer; 1 the command failed.\n\nExamples:\n  kubectl mesh proxy-status -A\n  kubectl mesh proxy-status -n foo -o wide\n  \
kubectl mesh proxy-status foo.foo-namespace\n  kubectl mesh proxy-status -A --wait=2m")]
pub struct ProxyStatusArgs {
    /// Compare istiod's config for this pod (`NAME`, `NAME.NAMESPACE` or `pod/NAME`) with Envoy's.
    pub pod: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only pods matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Only the istiods of this revision (`istio.io/rev`).
    #[arg(short, long)]
    pub revision: Option<String>,
    /// The namespace istiod runs in.
    #[arg(long, default_value = "istio-system", visible_alias = "istioNamespace")]
    pub istio_namespace: String,
    /// Poll until everything is synced or TIMEOUT passes (e.g. 30s, 2m; default 2m).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "2m", value_parser = crate::cluster::parse_timeout)]
    pub wait: Option<Duration>,
    /// How to reach Envoy's admin API (POD mode).
    #[arg(long, value_enum, default_value_t = AdminVia::PortForward)]
    pub admin_via: AdminVia,
    /// How many calls run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// kubectl's cluster flags.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the command, writing to `out`.
pub async fn run(args: ProxyStatusArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let cluster = Cluster::connect(&args.cluster).await?;
    run_with(&cluster, args, out).await
}

async fn run_with(cluster: &Cluster, args: ProxyStatusArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let namespace = if args.all_namespaces { None } else { Some(cluster.namespace.clone()) };
    let target = args.pod.as_deref().map(|p| parse_pod(p, namespace.as_deref().unwrap_or("default")));

    let deadline = args.wait.map(|w| Instant::now() + w);
    loop {
        let (report, code) = status_once(cluster, &args, namespace.as_deref(), target.as_ref()).await?;
        let done = code == EXIT_OK || code == EXIT_FAILED || deadline.is_none_or(|d| Instant::now() >= d);
        if done {
            let combined = target.is_some() && matches!(args.output, Output::Json | Output::Yaml);
            if !combined {
                out.write_all(render::render(&report, args.output).map_err(anyhow::Error::msg)?.as_bytes())?;
            }
            let mut code = code;
            if let Some((pod_ns, pod_name)) = &target {
                let diff_code = diff_pod(cluster, &args, &report, pod_ns, pod_name, out).await?;
                code = code.max(diff_code);
            }
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `NAME`, `NAME.NS` or `pod/NAME` -> (namespace, name).
fn parse_pod(text: &str, default_ns: &str) -> (String, String) {
    let text = text.strip_prefix("pod/").or_else(|| text.strip_prefix("pods/")).unwrap_or(text);
    match text.split_once('.') {
        Some((name, ns)) => (ns.to_string(), name.to_string()),
        None => (default_ns.to_string(), text.to_string()),
    }
}

async fn status_once(
    cluster: &Cluster,
    args: &ProxyStatusArgs,
    namespace: Option<&str>,
    target: Option<&(String, String)>,
) -> anyhow::Result<(Report, u8)> {
    let istiod_selector = match &args.revision {
        Some(rev) => format!("app=istiod,{}={rev}", mesh_core::names::ISTIO_REV),
        None => "app=istiod".to_string(),
    };
    let pod_namespace = target.map(|(ns, _)| ns.as_str()).or(namespace);
    // istiods -> their syncz, overlapped with the (possibly large) pod list.
    let syncz = async {
        let istiods: Vec<String> = cluster
            .list_pods(Some(&args.istio_namespace), Some(&istiod_selector))
            .await?
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name)
            .collect();
        if istiods.is_empty() {
            bail!(
                "no running istiod pods with labels {istiod_selector} in namespace {} (use --istio-namespace / --revision)",
                args.istio_namespace
            );
        }
        let results: Vec<(IstiodResult, Vec<ProxySync>)> = futures::stream::iter(istiods)
            .map(|name| syncz_from(cluster, args, name, pod_namespace))
            .buffer_unordered(usize::from(args.concurrency))
            .collect()
            .await;
        Ok(results)
    };
    let pods = cluster.list_pods(pod_namespace, args.selector.as_deref());
    let (results, pods) = tokio::join!(syncz, pods);
    let results = results?;
    let pods: Vec<InjectedPod> = pods?
        .into_iter()
        .filter(injected)
        .filter_map(|p| {
            Some(InjectedPod { name: p.metadata.name?, namespace: p.metadata.namespace.unwrap_or_default() })
        })
        .collect();

    let mut syncs = Vec::new();
    let mut istiod_results = Vec::new();
    for (r, s) in results {
        istiod_results.push(r);
        syncs.extend(s);
    }
    istiod_results.sort_by(|a, b| a.name.cmp(&b.name));
    let none_answered = istiod_results.iter().all(|r| r.error.is_some());
    let filter = Filter {
        namespace: pod_namespace.map(str::to_string),
        pods_only: args.selector.is_some(),
        proxy: target.map(|(ns, name)| format!("{name}.{ns}")),
    };
    let report = model::build_report(&pods, syncs, istiod_results, &filter, SystemTime::now());
    let code = if none_answered {
        EXIT_FAILED
    } else if report.synced {
        EXIT_OK
    } else {
        EXIT_PROBLEM
    };
    Ok((report, code))
}

/// The status annotation or an `istio-proxy` container (regular or native sidecar), read from the
/// typed pod (no conversion: this runs for every pod in the cluster).
fn injected(p: &Pod) -> bool {
    let annotated = p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(mesh_core::names::SIDECAR_STATUS));
    let proxy =
        |cs: &[k8s_openapi::api::core::v1::Container]| cs.iter().any(|c| c.name == mesh_core::names::CONTAINER_PROXY);
    annotated
        || p.spec.as_ref().is_some_and(|s| proxy(&s.containers) || s.init_containers.as_deref().is_some_and(proxy))
}

/// One istiod's syncz: HTTP on 15014 through a port-forward, else the xDS debug type on 15010.
async fn syncz_from(
    cluster: &Cluster,
    args: &ProxyStatusArgs,
    name: String,
    namespace: Option<&str>,
) -> (IstiodResult, Vec<ProxySync>) {
    let ns = &args.istio_namespace;
    let client = &cluster.client;
    // istiod filters by namespace itself (`?namespace=`), which keeps the answer small.
    let path = match namespace {
        Some(n) => format!("/debug/syncz?namespace={n}"),
        None => "/debug/syncz".to_string(),
    };
    let http = cluster
        .bounded(&format!("GET /debug/syncz from istiod {name}"), async {
            let body =
                crate::cluster::http_via_portforward(client, ns, &name, mesh_core::ports::ISTIOD_HTTP_DEBUG, &path)
                    .await?;
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ClusterError::Failed { what: format!("syncz from {name}"), reason: e.to_string() })?;
            model::from_syncz_json(&json, &name).map_err(|m| ClusterError::Failed { what: "syncz".into(), reason: m })
        })
        .await;
    let http_err = match http {
        Ok(s) => return (IstiodResult { name, source: Some("http".into()), error: None, proxies: s.len() }, s),
        Err(e) => e,
    };
    if http_err.code() == Some(403) {
        return (IstiodResult { name, source: None, error: Some(http_err.to_string()), proxies: 0 }, Vec::new());
    }
    let xds = cluster
        .bounded(&format!("{DEBUG_SYNCZ} from istiod {name}"), async {
            let (resources, identifier) =
                fetch::xds_debug(client, ns, &name, mesh_core::ports::ISTIOD_XDS_PLAINTEXT, DEBUG_SYNCZ, Vec::new())
                    .await?;
            model::from_client_configs(&resources, &identifier, &name)
                .map_err(|m| ClusterError::Failed { what: "syncz".into(), reason: m })
        })
        .await;
    match xds {
        Ok(s) => (IstiodResult { name, source: Some("xds".into()), error: None, proxies: s.len() }, s),
        Err(e) => {
            (IstiodResult { name, source: None, error: Some(format!("{http_err}; then {e}")), proxies: 0 }, Vec::new())
        }
    }
}

/// POD mode's `-o json|yaml` document (kind `ProxyStatusDiff`, schema in docs/proxy-status.md).
fn diff_document(
    output: Output,
    proxy: &str,
    status: Option<&model::Row>,
    diff: &diff::Diff,
    rejected: &[crate::config_dump::Problem],
) -> anyhow::Result<String> {
    let body = serde_json::json!({ "proxy": proxy, "status": status, "diff": diff, "rejectedByEnvoy": rejected });
    let doc = crate::schema::versioned(crate::schema::Kind::ProxyStatusDiff, &body);
    Ok(if output == Output::Json {
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        serde_saphyr::to_string(&doc).map_err(|e| anyhow::anyhow!("{e}"))?
    })
}

/// POD mode: istiod's config for the proxy against Envoy's /config_dump, plus what Envoy rejected.
async fn diff_pod(
    cluster: &Cluster,
    args: &ProxyStatusArgs,
    report: &Report,
    namespace: &str,
    pod: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u8> {
    let proxy_id = format!("{pod}.{namespace}");
    // Ask the istiod holding the connection first, then the others.
    let mut istiods: Vec<String> = report.istiods.iter().map(|i| i.name.clone()).collect();
    if let Some(owner) = report.proxies.iter().find(|r| r.name == proxy_id).map(|r| r.istiod.clone()) {
        istiods.sort_by_key(|n| *n != owner);
    }
    let mut istiod_dump = None;
    let mut errors = Vec::new();
    for name in &istiods {
        let got = cluster
            .bounded(
                &format!("{DEBUG_CONFIG_DUMP} from {name}"),
                fetch::xds_debug(
                    &cluster.client,
                    &args.istio_namespace,
                    name,
                    mesh_core::ports::ISTIOD_XDS_PLAINTEXT,
                    DEBUG_CONFIG_DUMP,
                    vec![proxy_id.clone()],
                ),
            )
            .await;
        match got {
            Ok((resources, _)) if !resources.is_empty() => {
                istiod_dump = resources.into_iter().next();
                break;
            }
            Ok(_) => errors.push(format!("istiod {name} holds no connection for {proxy_id}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let Some(istiod_dump) = istiod_dump else {
        bail!("no istiod has config for {proxy_id}: {}", errors.join("; "));
    };
    let admin = mesh_core::ports::ENVOY_ADMIN;
    let envoy_bytes = cluster.admin_get(args.admin_via, namespace, pod, admin, "/config_dump").await?;
    let envoy_dump = crate::config_dump::ConfigDump::parse(&envoy_bytes).context("reading Envoy's /config_dump")?;
    let istiod_side = diff::istiod_side(&istiod_dump)?;
    let envoy_side = diff::envoy_side(&envoy_dump);
    let d = diff::diff(&istiod_side, &envoy_side);
    let rejected: Vec<crate::config_dump::Problem> =
        envoy_dump.problems().into_iter().filter(|p| p.details.is_some()).collect();
    match args.output {
        Output::Json | Output::Yaml => {
            let status = report.proxies.iter().find(|r| r.name == proxy_id);
            out.write_all(diff_document(args.output, &proxy_id, status, &d, &rejected)?.as_bytes())?;
        }
        Output::Table | Output::Wide => {
            writeln!(out, "\n--- istiod ({proxy_id}) vs Envoy /config_dump ---")?;
            out.write_all(diff::render(&d).as_bytes())?;
            if rejected.is_empty() {
                writeln!(out, "Rejected by Envoy: none")?;
            } else {
                writeln!(out, "Rejected by Envoy (error_state):")?;
                for p in &rejected {
                    writeln!(out, "  {} {}: {}", p.kind, p.name, p.details.as_deref().unwrap_or_default())?;
                }
            }
        }
    }
    Ok(if d.is_empty() && rejected.is_empty() { EXIT_OK } else { EXIT_PROBLEM })
}

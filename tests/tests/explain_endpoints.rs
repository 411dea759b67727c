//! `kubectl mesh explain pod/NAME --to ...` checks Envoy's endpoints against Kubernetes: the test API
//! server holds the Service, its EndpointSlice, the DestinationRule and the subset's pods; a real
//! Envoy sidecar gets its endpoints from the test discovery server. They agree; then an endpoint
//! leaves the EndpointSlice while EDS still has it (drift, exit 2, with the pod named); then EDS
//! catches up (exit 0). Envoy's live health of each endpoint comes from `GET /clusters`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mesh_tests::apiserver::TestApiServer;
use mesh_tests::sidecar::{Sidecar, SidecarSpec};
use mesh_tests::xds::{DiscoveryServer, Scenario};
use serde_json::{Value, json};

const CLUSTER: &str = "outbound|50002|v1|bar-service.bar-namespace.svc.cluster.local";

struct Cluster {
    api: TestApiServer,
    xds: DiscoveryServer,
    sidecar: Sidecar,
    dir: tempfile::TempDir,
}

fn slice(ips: &[u8]) -> Value {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|i| {
            json!({"addresses": [format!("11.0.0.{i}")], "conditions": {"ready": true},
                   "targetRef": {"kind": "Pod", "name": format!("bar-{i}"), "namespace": "bar-namespace"}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "bar-service-abc12", "namespace": "bar-namespace",
                     "labels": {"kubernetes.io/service-name": "bar-service"}},
        "addressType": "IPv4",
        "ports": [{"name": "http-bar", "port": 50002, "protocol": "TCP"}],
        "endpoints": endpoints})
}

async fn cluster() -> anyhow::Result<Cluster> {
    let api = TestApiServer::start()?;
    let xds = DiscoveryServer::start(Scenario::classic()).await?;
    let sidecar = Sidecar::start(SidecarSpec::new("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)), xds.xds_addr())?;
    sidecar.wait_ready(Duration::from_secs(30)).await?;
    xds.wait_synced(&sidecar.proxy_id(), Duration::from_secs(30)).await?;
    api.put(sidecar.spec().pod_object())?;
    api.put(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bar-service", "namespace": "bar-namespace"},
        "spec": {"clusterIP": "10.96.0.2", "ports": [{"name": "http-bar", "port": 50002}], "selector": {"app": "bar"}}}))?;
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bar-vs", "namespace": "bar-namespace"},
        "spec": {"hosts": ["bar-service.bar-namespace.svc.cluster.local"]}}))?;
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "bar-dr", "namespace": "bar-namespace"},
        "spec": {"host": "bar-service.bar-namespace.svc.cluster.local",
                 "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}))?;
    // Three v1 pods behind the slice, and a v2 pod the subset must leave out.
    for (i, version) in [(1, "v1"), (2, "v1"), (3, "v1"), (4, "v2")] {
        api.put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("bar-{i}"), "namespace": "bar-namespace", "labels": {"app": "bar", "version": version}},
            "spec": {"containers": [{"name": "app", "image": "bar"}]}}))?;
    }
    api.put(slice(&[1, 2, 3, 4]))?;
    api.map_pod_port("foo-namespace", "foo", 15000, sidecar.admin());
    let dir = tempfile::tempdir()?;
    api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
    Ok(Cluster { api, xds, sidecar, dir })
}

async fn explain(c: &Cluster, output: &str) -> (u8, String) {
    let kubeconfig = c.dir.path().join("kubeconfig").to_string_lossy().into_owned();
    let args: Vec<String> = [
        "kubectl-mesh",
        "explain",
        "--kubeconfig",
        &kubeconfig,
        "-n",
        "foo-namespace",
        "--timeout",
        "20",
        "pod/foo",
        "--to",
        "bar-service.bar-namespace:50002/",
        "-o",
        output,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out) = mesh_tests::support::run_plugin(args).await;
    (code.unwrap_or_else(|e| panic!("explain failed: {e:#}")), out)
}

fn check(out: &str) -> Value {
    let report: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let checks = report["endpoint_checks"].as_array().unwrap_or_else(|| panic!("no endpoint_checks: {out}"));
    assert_eq!(checks.len(), 1, "{out}");
    assert_eq!(checks[0]["cluster"], CLUSTER, "{out}");
    checks[0].clone()
}

fn addresses(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|a| (a["address"].as_str().unwrap_or("").to_string(), a["pod"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_endpoints_are_checked_against_the_endpoint_slices() {
    let c = cluster().await.unwrap();

    // In step: the subset v1 is pods bar-1..3 (bar-4 is v2), and EDS has 11.0.0.1-3.
    let (code, out) = explain(&c, "json").await;
    let first = check(&out);
    assert_eq!(first["status"], "agree", "{first:#}");
    assert_eq!((first["kubernetes"].as_u64(), first["envoy"].as_u64()), (Some(3), Some(3)), "{first:#}");
    assert!(first["source"].as_str().unwrap().contains("subset v1 (version=v1)"), "{first:#}");
    let live = first["live"].as_array().unwrap();
    assert_eq!(live.len(), 3, "{first:#}");
    assert!(live.iter().all(|l| l["ejected"] == false && l["eds_health"] == "HEALTHY"), "{first:#}");
    assert_eq!(code, 0, "{out}");
    let (code, text) = explain(&c, "text").await;
    assert!(text.contains(&format!("{CLUSTER} endpoints agree (3)")), "{text}");
    assert!(text.contains("live: 11.0.0.1:50002 healthy (EDS HEALTHY)"), "{text}");
    assert_eq!(code, 0, "{text}");

    // bar-3 leaves the EndpointSlice; EDS still sends it: drift, confirmed by a re-read 2 s later.
    c.api.put(slice(&[1, 2, 4])).unwrap();
    let started = Instant::now();
    let (code, out) = explain(&c, "json").await;
    let drift = check(&out);
    assert!(started.elapsed() >= Duration::from_secs(2), "the difference must be re-read before it counts");
    assert_eq!(drift["status"], "drift", "{drift:#}");
    assert_eq!(addresses(&drift["extra"]), [("11.0.0.3:50002".to_string(), "bar-3".to_string())], "{drift:#}");
    assert_eq!(addresses(&drift["missing"]), [], "{drift:#}");
    assert_eq!(code, 2, "{out}");
    let (_, text) = explain(&c, "text").await;
    assert!(text.contains("not ready in Kubernetes: 11.0.0.3:50002 (pod bar-3)"), "{text}");

    // EDS catches up: Envoy drops 11.0.0.3, and the two sides agree again.
    c.xds.update(|s| {
        for svc in s.services.iter_mut().filter(|s| s.name == "bar-service") {
            svc.endpoints.retain(|e| e.pod != "bar-3");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dump = c.sidecar.config_dump("?include_eds").await.unwrap().to_string();
        if !dump.contains("11.0.0.3") {
            break;
        }
        assert!(Instant::now() < deadline, "Envoy still has 11.0.0.3 after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out) = explain(&c, "json").await;
    let caught_up = check(&out);
    assert_eq!(caught_up["status"], "agree", "{caught_up:#}");
    assert_eq!(caught_up["envoy"].as_u64(), Some(2), "{caught_up:#}");
    assert_eq!(code, 0, "{out}");
}

//! `kubectl mesh explain pod/NAME` against the test API server and a real Envoy sidecar fed by the
//! test discovery server: the pod is read, its capture comes from `istio-init`, the config dump comes
//! through a port-forward (or the API server's pod proxy), `--to` resolves through the Service, and
//! the referenced objects show their generation, or are flagged as missing (stale config).

use std::net::Ipv4Addr;
use std::time::Duration;

use mesh_tests::apiserver::TestApiServer;
use mesh_tests::sidecar::{Sidecar, SidecarSpec};
use mesh_tests::xds::{DiscoveryServer, Scenario};
use serde_json::{Value, json};

struct Cluster {
    api: TestApiServer,
    _xds: DiscoveryServer,
    _sidecar: Sidecar,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn kubeconfig(&self) -> String {
        self.dir.path().join("kubeconfig").to_string_lossy().into_owned()
    }
}

async fn cluster() -> anyhow::Result<Cluster> {
    let api = TestApiServer::start()?;
    let xds = DiscoveryServer::start(Scenario::classic()).await?;
    let sidecar = Sidecar::start(SidecarSpec::new("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)), xds.xds_addr())?;
    sidecar.wait_ready(Duration::from_secs(30)).await?;
    xds.wait_synced(&sidecar.proxy_id(), Duration::from_secs(30)).await?;

    let mut pod = sidecar.spec().pod_object();
    pod["spec"]["initContainers"] = json!([{
        "name": "istio-init",
        "image": "docker.io/istio/proxyv2:1.28.0",
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                 "-x", "", "-b", "*", "-d", "15090,15021,15020", "-o", "5432"]
    }]);
    api.put(pod)?;
    api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": "foo-namespace"},
        "spec": {"containers": [{"name": "app", "image": "app"}]}}))?;
    api.put(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bar-service", "namespace": "bar-namespace"},
        "spec": {"clusterIP": "10.96.0.2", "ports": [{"name": "http-bar", "port": 50002}]}}))?;
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bar-vs", "namespace": "bar-namespace", "generation": 3},
        "spec": {"hosts": ["bar-service.bar-namespace.svc.cluster.local"]}}))?;
    // No DestinationRule bar-dr: the sidecar's config still names it, so it is stale.
    api.map_pod_port("foo-namespace", "foo", 15000, sidecar.admin());
    let dir = tempfile::tempdir()?;
    api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
    Ok(Cluster { api, _xds: xds, _sidecar: sidecar, dir })
}

async fn run(args: Vec<String>) -> (anyhow::Result<u8>, String) {
    mesh_tests::support::run_plugin(args).await
}

fn args(c: &Cluster, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["kubectl-mesh", "explain", "--kubeconfig", &c.kubeconfig(), "-n", "foo-namespace", "--timeout", "20"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_a_pod_through_the_api_server() {
    let c = cluster().await.unwrap();

    // Trace through a port-forward to the admin port.
    let (code, out) = run(args(&c, &["pod/foo", "--to", "bar-service.bar-namespace:50002/", "-o", "json"])).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {code:?}"));
    // Exit 2: the config names a DestinationRule that no longer exists.
    assert_eq!(code.unwrap(), 2, "{out}");
    assert_eq!(report["source"], "pod foo-namespace/foo");
    assert_eq!(
        (report["apiVersion"].as_str(), report["kind"].as_str()),
        (Some("mesh.dev/v1alpha1"), Some("Explanation"))
    );
    let steps = report["trace"]["steps"].as_array().unwrap();
    let resolve = &steps[0];
    assert_eq!(resolve["stage"], "resolve");
    assert!(
        resolve["why"].as_str().unwrap().contains("Service bar-namespace/bar-service has cluster IP 10.96.0.2"),
        "{resolve}"
    );
    let capture = steps.iter().find(|s| s["stage"] == "capture").unwrap();
    assert!(capture["chosen"].as_str().unwrap().contains("15001"), "{capture}");
    assert_eq!(report["trace"]["outcome"]["cluster"], "outbound|50002|v1|bar-service.bar-namespace.svc.cluster.local");
    let objects = report["objects"].as_array().unwrap();
    let status = |kind: &str| {
        objects.iter().find(|o| o["kind"] == kind).cloned().unwrap_or_else(|| panic!("{kind}: {objects:?}"))
    };
    assert_eq!(status("VirtualService")["status"], "found");
    let vs = c.api.get("networking.istio.io/v1", "VirtualService", "bar-namespace", "bar-vs").unwrap();
    let generation = vs["metadata"]["generation"].as_i64().unwrap();
    assert_eq!(status("VirtualService")["generation"], generation);
    assert_eq!(status("Service")["status"], "found");
    // Services have no generation.
    assert_eq!(status("Service")["generation"], Value::Null);
    assert_eq!(status("DestinationRule")["status"], "missing");
    assert_eq!(report["capture"]["outbound_exclude_ports"], "5432");

    // An excluded port bypasses the sidecar.
    let (_, out) = run(args(&c, &["foo", "--to", "bar-service.bar-namespace:5432", "-o", "json"])).await;
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["trace"]["outcome"]["kind"], "not_captured", "{out}");

    // The whole pod through the API server's pod proxy, as text.
    let (code, out) = run(args(&c, &["pod/foo", "--admin-via", "proxy"])).await;
    assert_eq!(code.unwrap(), 2, "{out}");
    let vs_line = format!("VirtualService bar-namespace/bar-vs generation {generation}");
    for want in [
        "listener 0.0.0.0_50002",
        "virtual host bar-service.bar-namespace.svc.cluster.local:50002",
        "11.0.0.2:50002",
        "DestinationRule bar-namespace/bar-dr MISSING",
        vs_line.as_str(),
        "Service bar-namespace/bar-service found",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(!out.contains("generation 0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pods_get_clear_errors() {
    let c = cluster().await.unwrap();
    let (result, _) = run(args(&c, &["pod/nope"])).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("pod foo-namespace/nope not found"), "{err}");
    let (result, _) = run(args(&c, &["pod/plain"])).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("pod foo-namespace/plain has no istio-proxy container"), "{err}");
    let (result, _) = run(args(&c, &["svc/foo"])).await;
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("only pods can be explained"), "{err}");
}

/// `--admin-via proxy` to an admin port the pod proxy cannot reach (Istio binds admin to 127.0.0.1):
/// the API server answers 503 at once; the plugin waited out its whole timeout and said "no answer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_via_proxy_fails_fast_on_the_pod_proxys_503() {
    let c = cluster().await.unwrap();
    let started = std::time::Instant::now();
    let (result, _) = run(args(&c, &["pod/foo", "--admin-via", "proxy", "--admin-port", "15999"])).await;
    let elapsed = started.elapsed();
    let err = format!("{:#}", result.unwrap_err());
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?} (timeout 20s): {err}");
    assert!(err.starts_with("get pods/proxy foo in namespace foo-namespace: error trying to reach service"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.ends_with("use --admin-via port-forward"), "{err}");
    assert!(!err.contains("no answer") && !err.contains("Some(") && !err.contains("Status {"), "{err}");
}

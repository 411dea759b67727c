//! The plugin reads large lists a page at a time, as kubectl does: `kubectl mesh injector list -A`
//! against the test API server with more pods than three pages hold walks every page once (each pod
//! counted once), and when the server compacts its history mid-list (the next `continue` token is 410
//! Expired) it lists again from the start in one request, as client-go's pager does.

use anyhow::{Context, Result, ensure};
use mesh_tests::apiserver::TestApiServer;
use serde_json::{Value, json};

const PODS: usize = 1_234;

/// A server with one injector webhook selecting `istio-injection=enabled` namespaces and `PODS` pods
/// without sidecars spread over three such namespaces.
fn seeded() -> Result<TestApiServer> {
    let api = TestApiServer::start()?;
    api.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mesh-sidecar-injector", "labels": {"app.kubernetes.io/part-of": "mesh"}},
        "webhooks": [{"name": "namespace.sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": "mesh-webhook", "namespace": "mesh-system", "path": "/inject"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}}]}))?;
    // "shop" sorts before "shop-eu" as a namespace but after it as a list key ("shop-eu/" < "shop/").
    let namespaces = ["shop", "shop-eu", "web"];
    for ns in namespaces {
        api.put(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}}))?;
    }
    for i in 0..PODS {
        let ns = namespaces[i % namespaces.len()];
        api.put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("app-{i:04}"), "namespace": ns, "labels": {"app": "app"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
            "status": {"phase": "Running"}}))?;
    }
    Ok(api)
}

/// Runs `kubectl mesh injector list -A -o json --show-pods --config FILE` in process; the exit code and the document.
fn injector_list(api: &TestApiServer) -> Result<(u8, Value)> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "proxy: {image: docker.io/istio/proxyv2:1.28.0}\n")?;
    let argv = [
        "kubectl-mesh",
        "injector",
        "list",
        "-A",
        "-o",
        "json",
        "--show-pods",
        "--config",
        config.to_str().context("path")?,
        "--kubeconfig",
        kubeconfig.to_str().context("path")?,
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = kubectl_mesh::main_with(argv.map(Into::into), &mut out, &mut err);
    let doc = serde_json::from_slice(&out)
        .with_context(|| format!("exit {code}: {}{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err)))?;
    Ok((code, doc))
}

fn not_injected(doc: &Value) -> usize {
    doc["namespaces"].as_array().into_iter().flatten().filter_map(|r| r["notInjected"].as_u64()).sum::<u64>() as usize
}

fn pod_lists(api: &TestApiServer) -> Vec<String> {
    api.requests().into_iter().filter(|r| r.starts_with("GET /api/v1/pods")).collect()
}

#[test]
fn every_page_is_read_once() -> Result<()> {
    let api = seeded()?;
    let (code, doc) = injector_list(&api)?;
    ensure!(code == 2, "exit {code} (pods without sidecars): {doc}");
    ensure!(not_injected(&doc) == PODS, "{} pods counted, want {PODS}: {doc}", not_injected(&doc));
    let pods: Vec<&str> = doc["pods"].as_array().into_iter().flatten().filter_map(|p| p["pod"].as_str()).collect();
    let mut unique = pods.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure!(pods.len() == PODS && unique.len() == PODS, "{} pod rows, {} distinct", pods.len(), unique.len());
    let lists = pod_lists(&api);
    ensure!(lists.len() == 3, "pod list requests: {lists:?}");
    ensure!(lists[0] == "GET /api/v1/pods?limit=500", "{lists:?}");
    ensure!(lists[1..].iter().all(|r| r.starts_with("GET /api/v1/pods?limit=500&continue=")), "{lists:?}");
    Ok(())
}

#[test]
fn an_expired_continue_token_lists_again_in_one_request() -> Result<()> {
    let api = seeded()?;
    api.compact_after_next_page();
    let (code, doc) = injector_list(&api)?;
    ensure!(code == 2, "exit {code}: {doc}");
    ensure!(not_injected(&doc) == PODS, "{} pods counted, want {PODS}: {doc}", not_injected(&doc));
    let lists = pod_lists(&api);
    ensure!(lists.len() == 3, "pod list requests: {lists:?}");
    ensure!(lists[0] == "GET /api/v1/pods?limit=500", "{lists:?}");
    ensure!(lists[1].starts_with("GET /api/v1/pods?limit=500&continue="), "{lists:?}");
    ensure!(lists[2] == "GET /api/v1/pods", "the full list after 410 Expired: {lists:?}");
    Ok(())
}

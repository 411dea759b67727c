//! The test API server's wire format against what a real v1.36 API server sent
//! (shared/fixtures/kube-apiserver/): version, discovery (legacy and aggregated), list and watch shapes,
//! key order, and the 404 Status. Raw HTTP through a kube-rs client, so TLS and the token are real too.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http::Request;
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use mesh_tests::apiserver::TestApiServer;
use serde_json::{Value, json};

fn fixture(name: &str) -> Result<Value> {
    let path = mesh_tests::shared_dir()?.join("fixtures/kube-apiserver").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(text.lines().next().filter(|_| name.ends_with(".jsonl")).unwrap_or(&text))?)
}

struct Raw {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn client(server: &TestApiServer) -> Result<Client> {
    Ok(Client::try_from(server.kube_config().await?)?)
}

async fn get(client: &Client, path: &str, accept: &str) -> Result<Raw> {
    let mut req = Request::get(path);
    if !accept.is_empty() {
        req = req.header("Accept", accept);
    }
    let resp = client.send(req.body(Body::from(Vec::new()))?).await?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await??.to_bytes().to_vec();
    Ok(Raw { status, content_type, body })
}

async fn get_json(client: &Client, path: &str, accept: &str) -> Result<Value> {
    let raw = get(client, path, accept).await?;
    anyhow::ensure!(raw.status == 200, "GET {path}: {} {}", raw.status, String::from_utf8_lossy(&raw.body));
    Ok(serde_json::from_slice(&raw.body)?)
}

/// Blanks the values a server generates (uid, resourceVersion, creationTimestamp), everywhere.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if matches!(k.as_str(), "uid" | "resourceVersion" | "creationTimestamp") && val.is_string() {
                    *val = json!("<generated>");
                } else {
                    normalize(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn strip(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|x| strip(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, key)),
        _ => {}
    }
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

#[tokio::test]
async fn version_and_legacy_discovery_match_the_real_server() -> Result<()> {
    let server = TestApiServer::start()?;
    let c = client(&server).await?;
    assert_eq!(get_json(&c, "/version", "").await?, fixture("version.json")?);

    let mut api = get_json(&c, "/api", "application/json").await?;
    api["serverAddressByClientCIDRs"][0]["serverAddress"] = json!("127.0.0.1:6443");
    assert_eq!(api, fixture("api.json")?);

    let mut real = fixture("apis-discovery.k8s.io-v1.json")?;
    strip(&mut real, "storageVersionHash");
    assert_eq!(get_json(&c, "/apis/discovery.k8s.io/v1", "").await?, real);

    let mut real = fixture("apis-networking.istio.io-v1.json")?;
    strip(&mut real, "storageVersionHash");
    let mut ours = get_json(&c, "/apis/networking.istio.io/v1", "").await?;
    let sort = |v: &mut Value| {
        if let Some(a) = v["resources"].as_array_mut() {
            a.sort_by_key(|r| r["name"].as_str().unwrap_or("").to_string());
        }
    };
    sort(&mut real);
    sort(&mut ours);
    assert_eq!(ours, real);

    // Every core resource we serve is described exactly as the real server describes it.
    let mut real_v1 = fixture("api-v1.json")?;
    strip(&mut real_v1, "storageVersionHash");
    let ours = get_json(&c, "/api/v1", "").await?;
    assert_eq!(ours["kind"], real_v1["kind"]);
    assert_eq!(ours.get("apiVersion"), None, "the core APIResourceList has no apiVersion");
    for r in ours["resources"].as_array().context("resources")? {
        let theirs = real_v1["resources"].as_array().context("real resources")?.iter().find(|x| x["name"] == r["name"]);
        assert_eq!(Some(r), theirs, "resource {}", r["name"]);
    }

    // Groups in /apis look like the real ones (the fixture predates the Istio CRDs; their groups are
    // compared through aggregated discovery).
    let apis = get_json(&c, "/apis", "application/json").await?;
    let real_apis = fixture("apis.json")?;
    for g in ["discovery.k8s.io", "apps", "admissionregistration.k8s.io", "apiextensions.k8s.io"] {
        let pick = |doc: &Value| doc["groups"].as_array().and_then(|gs| gs.iter().find(|x| x["name"] == g).cloned());
        assert_eq!(pick(&apis), pick(&real_apis), "group {g}");
    }
    Ok(())
}

#[tokio::test]
async fn aggregated_discovery_matches_the_real_server() -> Result<()> {
    let server = TestApiServer::start()?;
    let c = client(&server).await?;
    let raw = get(&c, "/apis", AGGREGATED).await?;
    assert_eq!(raw.content_type, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    let ours: Value = serde_json::from_slice(&raw.body)?;
    let real = fixture("apis-aggregated-discovery.json")?;
    assert_eq!((&ours["kind"], &ours["apiVersion"]), (&real["kind"], &real["apiVersion"]));
    let group = |doc: &Value, name: &str| -> Option<Value> {
        doc["items"].as_array()?.iter().find(|g| g["metadata"]["name"] == name).cloned()
    };
    for name in ["networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"] {
        let mut o = group(&ours, name).ok_or_else(|| anyhow!("{name} missing"))?;
        let mut r = group(&real, name).ok_or_else(|| anyhow!("{name} missing in fixture"))?;
        for doc in [&mut o, &mut r] {
            for v in doc["versions"].as_array_mut().into_iter().flatten() {
                if let Some(a) = v["resources"].as_array_mut() {
                    a.sort_by_key(|x| x["resource"].as_str().unwrap_or("").to_string());
                }
            }
        }
        assert_eq!(o, r, "aggregated discovery of {name}");
    }

    let core: Value = serde_json::from_slice(&get(&c, "/api", AGGREGATED).await?.body)?;
    let real_core = fixture("api-aggregated-discovery.json")?;
    let real_resources = real_core["items"][0]["versions"][0]["resources"].as_array().context("real core")?;
    for r in core["items"][0]["versions"][0]["resources"].as_array().context("core")? {
        let mut theirs = real_resources.iter().find(|x| x["resource"] == r["resource"]).cloned().context("unknown")?;
        // We serve fewer subresources (e.g. pods: status, portforward, proxy); each one we serve must match.
        let subs = r["subresources"].as_array().cloned().unwrap_or_default();
        for s in &subs {
            let t =
                theirs["subresources"].as_array().and_then(|a| a.iter().find(|x| x["subresource"] == s["subresource"]));
            assert_eq!(Some(s), t, "{}/{}", r["resource"], s["subresource"]);
        }
        match theirs.as_object_mut() {
            Some(m) if subs.is_empty() => {
                m.shift_remove("subresources");
            }
            Some(m) => {
                m.insert("subresources".into(), json!(subs));
            }
            None => {}
        }
        assert_eq!(r, &theirs, "core resource {}", r["resource"]);
    }
    Ok(())
}

fn fixture_pod() -> Result<Value> {
    let mut pod = fixture("podlist-foo.json")?["items"][0].clone();
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");
    Ok(pod)
}

#[tokio::test]
async fn lists_and_watch_events_are_shaped_like_the_real_ones() -> Result<()> {
    let server = TestApiServer::start()?;
    server.put(fixture_pod()?)?;
    let mut svc = fixture("servicelist-foo.json")?["items"][0].clone();
    svc["kind"] = json!("Service");
    svc["apiVersion"] = json!("v1");
    server.put(svc)?;
    for (file, kind) in
        [("virtualservicelist-foo.json", "VirtualService"), ("destinationrulelist-foo.json", "DestinationRule")]
    {
        let obj = fixture(file)?["items"][0].clone();
        assert_eq!(obj["kind"], kind);
        server.put(obj)?;
    }
    let c = client(&server).await?;

    // Byte-for-byte equal once generated values are blanked: same keys, same order, typed lists drop
    // the items' kind/apiVersion, custom resource lists keep them and sort keys.
    for (path, file) in [
        ("/api/v1/namespaces/foo/pods", "podlist-foo.json"),
        ("/api/v1/namespaces/foo/pods?labelSelector=app%3Dbar", "podlist-foo-selector-app-bar.json"),
        ("/api/v1/namespaces/foo/services", "servicelist-foo.json"),
        ("/apis/networking.istio.io/v1/namespaces/foo/virtualservices", "virtualservicelist-foo.json"),
        ("/apis/networking.istio.io/v1/namespaces/foo/destinationrules", "destinationrulelist-foo.json"),
    ] {
        let raw = get(&c, path, "application/json").await?;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.content_type, "application/json");
        let mut ours: Value = serde_json::from_slice(&raw.body)?;
        let mut real = fixture(file)?;
        normalize(&mut ours);
        normalize(&mut real);
        assert_eq!(serde_json::to_string(&ours)?, serde_json::to_string(&real)?, "GET {path}");
    }

    // A watch streams one JSON event per line; objects carry kind and apiVersion.
    let req = Request::get("/api/v1/namespaces/foo/pods?watch=1&resourceVersion=0").body(Body::from(Vec::new()))?;
    let resp = c.send(req).await?;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while !buf.contains(&b'\n') {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await?.context("watch ended")??;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    let line = buf.split(|b| *b == b'\n').next().context("no line")?;
    let mut ours: Value = serde_json::from_slice(line)?;
    let mut real = fixture("pod-watch-foo.jsonl")?;
    normalize(&mut ours);
    normalize(&mut real);
    assert_eq!(serde_json::to_string(&ours)?, serde_json::to_string(&real)?);

    let missing = get(&c, "/api/v1/namespaces/foo/pods/nonexistent", "").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(serde_json::from_slice::<Value>(&missing.body)?, fixture("error-404-pod.json")?);
    Ok(())
}

#[tokio::test]
async fn watch_resumes_from_resource_version_with_bookmarks_and_selector_transitions() -> Result<()> {
    let server = TestApiServer::start()?;
    server.set_bookmark_interval(Duration::from_millis(100));
    let first = server.put(fixture_pod()?)?;
    let rv = first["metadata"]["resourceVersion"].as_str().context("rv")?.to_string();
    let c = client(&server).await?;
    // Changes after rv: relabel foo out of the selection, then add a matching pod.
    let mut relabelled = fixture_pod()?;
    relabelled["metadata"]["labels"]["app"] = json!("other");
    server.put(relabelled)?;
    let mut second = fixture_pod()?;
    second["metadata"]["name"] = json!("second");
    server.put(second)?;

    let path = format!(
        "/api/v1/namespaces/foo/pods?watch=true&labelSelector=app%3Dfoo&allowWatchBookmarks=true&resourceVersion={rv}"
    );
    let resp = c.send(Request::get(path).body(Body::from(Vec::new()))?).await?;
    let mut body = resp.into_body();
    let mut events: Vec<(String, String)> = Vec::new();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !events.iter().any(|e| e.0 == "BOOKMARK") {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await?.context("watch ended")??;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: Value = serde_json::from_slice(&line)?;
            let name = ev["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
            events.push((ev["type"].as_str().unwrap_or("").to_string(), name));
        }
    }
    assert_eq!(
        events[..2],
        [("DELETED".to_string(), "foo".to_string()), ("ADDED".to_string(), "second".to_string())],
        "leaving the selection is DELETED, entering it ADDED: {events:?}"
    );
    Ok(())
}

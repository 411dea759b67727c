//! Differential test of the `explain` tracer against the real Envoy: from a seed, generate route
//! configurations (exact and wildcard domains; prefix, path, regex and path_separated_prefix matches;
//! header and query matchers; case sensitivity; deterministic weights), load them all into one Envoy
//! (one listener each), send generated requests through it to upstreams that answer with their own
//! name, and check that for every request the tracer predicts the cluster Envoy chose. The tracer
//! reads the config back from Envoy's own /config_dump.

use std::time::Duration;

use futures::StreamExt;
use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::{Input, Request, explain};
use mesh_tests::Envoy;
use mesh_tests::envoy::free_port;
use serde_json::{Value, json};

const SEED: u64 = 0x6d65_7368_2d37;
const CONFIGS: usize = 240;
const REQUESTS_PER_CONFIG: usize = 5;
const CLUSTERS: usize = 6;

/// SplitMix64: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const DOMAINS: &[&str] = &[
    "svc-a.test",
    "svc-b.test",
    "svc-a.test:8080",
    "*.w.test",
    "*-x.w.test",
    "*.test",
    "pre.*",
    "pre-long.*",
    "Svc-C.Test",
    "*",
];
const HOSTS: &[&str] = &[
    "svc-a.test",
    "SVC-A.test",
    "svc-a.test:8080",
    "svc-b.test:9090",
    "svc-b.test",
    "svc-c.test",
    "foo.w.test",
    "foo-x.w.test",
    "-x.w.test",
    ".w.test",
    "pre.example",
    "pre-long.example:1",
    "other.test",
    "nothing.example",
];
const PREFIXES: &[&str] = &["/", "/a", "/a/b", "/A", "/api", "/api/v1", "/b"];
const PATHS: &[&str] = &["/", "/a", "/a/b", "/api/v1", "/API/V1", "/b/c"];
const REGEXES: &[&str] = &["/a/[0-9]+", "/api/.*", "/(a|b)/c", "/a.*", "/[A-Z]+/.*"];
const SEPARATED: &[&str] = &["/a", "/api", "/api/v1", "/b"];
const REQUEST_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/A/b",
    "/ab",
    "/api",
    "/api/v1",
    "/api/v1/x",
    "/API/V1",
    "/b/c",
    "/a/12",
    "/x?debug",
    "/a?v=2",
    "/api/v1?v=2&debug=1",
    "/a/b?v=3",
    "/b",
    "/bc",
];

fn header_matcher(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => json!({"name": "x-user", "string_match": {"exact": "alice", "ignore_case": rng.chance(50)}}),
        1 => json!({"name": "x-env", "present_match": true}),
        2 => json!({"name": "x-env", "present_match": false}),
        3 => json!({"name": "x-user", "string_match": {"prefix": "al"}, "invert_match": true}),
        4 => json!({"name": ":method", "string_match": {"exact": "POST"}}),
        5 => json!({"name": "x-ver", "string_match": {"safe_regex": {"regex": "v[12]"}}}),
        _ => json!({"name": "x-user", "string_match": {"suffix": "ob"}}),
    }
}

fn query_matcher(rng: &mut Rng) -> Value {
    match rng.below(3) {
        0 => json!({"name": "debug", "present_match": true}),
        1 => json!({"name": "v", "string_match": {"exact": "2"}}),
        _ => json!({"name": "v", "string_match": {"prefix": "3"}}),
    }
}

fn route(rng: &mut Rng) -> Value {
    let mut m = serde_json::Map::new();
    match rng.below(4) {
        0 => m.insert("prefix".into(), json!(rng.pick(PREFIXES))),
        1 => m.insert("path".into(), json!(rng.pick(PATHS))),
        2 => m.insert("safe_regex".into(), json!({"regex": rng.pick(REGEXES)})),
        _ => m.insert("path_separated_prefix".into(), json!(rng.pick(SEPARATED))),
    };
    if !m.contains_key("safe_regex") && rng.chance(30) {
        m.insert("case_sensitive".into(), json!(false));
    }
    if rng.chance(35) {
        let n = 1 + rng.below(2);
        m.insert("headers".into(), Value::Array((0..n).map(|_| header_matcher(rng)).collect()));
    }
    if rng.chance(20) {
        m.insert("query_parameters".into(), json!([query_matcher(rng)]));
    }
    let action = if rng.chance(30) {
        let n = 2 + rng.below(2);
        let names: Vec<usize> =
            (0..n).map(|_| rng.below(CLUSTERS)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        if rng.chance(50) || names.len() < 2 {
            // Deterministic: one cluster carries all the weight.
            let hot = rng.below(names.len());
            let clusters: Vec<Value> = names
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"name": format!("c{c}"), "weight": if i == hot { 1 + rng.below(100) } else { 0 }}))
                .collect();
            json!({"weighted_clusters": {"clusters": clusters}})
        } else {
            // Deterministic: the random value comes from the x-pick header every request carries.
            let clusters: Vec<Value> =
                names.iter().map(|c| json!({"name": format!("c{c}"), "weight": 1 + rng.below(50)})).collect();
            json!({"weighted_clusters": {"clusters": clusters, "header_name": "x-pick"}})
        }
    } else {
        json!({"cluster": format!("c{}", rng.below(CLUSTERS))})
    };
    json!({"match": Value::Object(m), "route": action})
}

fn route_config(rng: &mut Rng, i: usize) -> Value {
    let mut domains: Vec<&str> = DOMAINS.to_vec();
    let n_vhosts = 1 + rng.below(4);
    let mut vhosts = Vec::new();
    for v in 0..n_vhosts {
        let mut mine = Vec::new();
        for _ in 0..1 + rng.below(3) {
            if domains.is_empty() {
                break;
            }
            mine.push(domains.remove(rng.below(domains.len())));
        }
        if mine.is_empty() {
            break;
        }
        let mut routes: Vec<Value> = (0..1 + rng.below(6)).map(|_| route(rng)).collect();
        if rng.chance(40) {
            // A catch-all at the end (and sometimes in the middle, shadowing what follows).
            let at = if rng.chance(25) { rng.below(routes.len() + 1) } else { routes.len() };
            routes.insert(
                at,
                json!({"match": {"prefix": "/"}, "route": {"cluster": format!("c{}", rng.below(CLUSTERS))}}),
            );
        }
        vhosts.push(json!({"name": format!("rc{i}-vh{v}"), "domains": mine, "routes": routes}));
    }
    let mut rc = json!({"name": format!("rc{i}"), "virtual_hosts": vhosts});
    if rng.chance(20) {
        rc["ignore_port_in_host_matching"] = json!(true);
    }
    rc
}

fn listener(port: u16, rc: Value) -> Value {
    json!({
        "name": format!("127.0.0.1_{port}"),
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "diff",
                "route_config": rc,
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
            }
        }]}]
    })
}

struct Probe {
    port: u16,
    host: String,
    path: String,
    method: String,
    headers: Vec<(String, String)>,
}

/// A host that a domain matches (with its case changed at times).
fn host_for(rng: &mut Rng, domain: &str) -> String {
    let host = if domain == "*" {
        "any.example".to_string()
    } else if let Some(suffix) = domain.strip_prefix('*') {
        format!("{}{suffix}", rng.pick(&["foo", "a-b", "x"]))
    } else if let Some(prefix) = domain.strip_suffix('*') {
        format!("{prefix}{}", rng.pick(&["example", "svc:80", "x.y"]))
    } else {
        domain.to_string()
    };
    if rng.chance(20) { host.to_ascii_uppercase() } else { host }
}

fn probe(rng: &mut Rng, port: u16, domains: &[String]) -> Probe {
    let mut headers = vec![("x-pick".to_string(), (rng.next() % 1000).to_string())];
    if rng.chance(40) {
        headers.push(("x-user".into(), rng.pick(&["alice", "Alice", "bob", "al"]).to_string()));
    }
    if rng.chance(30) {
        headers.push(("x-env".into(), "prod".into()));
    }
    if rng.chance(30) {
        headers.push(("x-ver".into(), rng.pick(&["v1", "v3", "v12"]).to_string()));
    }
    Probe {
        port,
        host: if rng.chance(65) && !domains.is_empty() {
            let d = rng.pick(domains).clone();
            host_for(rng, &d)
        } else {
            rng.pick(HOSTS).to_string()
        },
        path: rng.pick(REQUEST_PATHS).to_string(),
        method: if rng.chance(25) { "POST".into() } else { "GET".into() },
        headers,
    }
}

async fn upstream(name: String) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().fallback(move || {
        let name = name.clone();
        async move { name }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracer_agrees_with_envoy() {
    let mut rng = Rng(SEED);
    let mut clusters = Vec::new();
    for c in 0..CLUSTERS {
        let port = upstream(format!("c{c}")).await.unwrap();
        clusters.push(json!({
            "name": format!("c{c}"),
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {"cluster_name": format!("c{c}"), "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
            ]}]}
        }));
    }
    // The listener ports are picked free, then bound by Envoy: another test may take one in between.
    // Then Envoy exits with "Address already in use", and the same configs get fresh ports (bounded).
    let rng_start = rng.0;
    let mut attempt = 0;
    let (envoy, listeners, probes) = loop {
        attempt += 1;
        rng = Rng(rng_start);
        let mut listeners = Vec::new();
        let mut probes = Vec::new();
        let mut used = std::collections::HashSet::new();
        for i in 0..CONFIGS {
            let mut port = free_port().unwrap();
            while !used.insert(port) {
                port = free_port().unwrap();
            }
            let rc = route_config(&mut rng, i);
            let domains: Vec<String> = rc["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|v| v["domains"].as_array().cloned().unwrap_or_default())
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect();
            listeners.push(listener(port, rc));
            for _ in 0..REQUESTS_PER_CONFIG {
                probes.push(probe(&mut rng, port, &domains));
            }
        }
        let bootstrap = json!({
            "node": {"id": "explain-differential", "cluster": "explain"},
            "static_resources": {"listeners": listeners, "clusters": clusters}
        });
        let envoy = Envoy::start(&bootstrap).unwrap();
        match envoy.wait_ready(Duration::from_secs(60)).await {
            Ok(()) => break (envoy, listeners, probes),
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => continue,
            Err(e) => panic!("{e:#}"),
        }
    };

    // The tracer reads the config as Envoy reports it.
    let (code, body) = envoy.admin_get("/config_dump").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let dump = ConfigDump::parse(body.as_bytes()).unwrap();
    let names: std::collections::HashSet<&str> = dump.listeners.iter().map(|l| l.name.as_str()).collect();
    let missing: Vec<&Value> = listeners.iter().filter(|l| !names.contains(l["name"].as_str().unwrap_or(""))).collect();
    assert!(missing.is_empty(), "listeners missing from the dump: {missing:#?}");

    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let results: Vec<(usize, Result<Option<String>, String>)> = futures::stream::iter(probes.iter().enumerate())
        .map(|(i, p)| {
            let client = client.clone();
            async move {
                let method = reqwest::Method::from_bytes(p.method.as_bytes()).unwrap();
                let mut req =
                    client.request(method, format!("http://127.0.0.1:{}{}", p.port, p.path)).header("host", &p.host);
                for (k, v) in &p.headers {
                    req = req.header(k, v);
                }
                let got = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        match status {
                            200 => Ok(Some(text)),
                            404 => Ok(None),
                            other => Err(format!("Envoy answered {other}: {text}")),
                        }
                    }
                    Err(e) => Err(format!("request failed: {e}")),
                };
                (i, got)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let mut agree = 0;
    let mut failures = Vec::new();
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (i, got) in results {
        let p = &probes[i];
        let mut headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        headers.push(format!("host: {}", p.host));
        let req = Request::parse(&format!("127.0.0.1:{}{}", p.port, p.path), &headers, Some(&p.method), None).unwrap();
        let report = explain(&dump, Input { source: "differential".into(), request: Some(&req), ..Default::default() });
        let predicted = report.trace.as_ref().and_then(|t| t.outcome.cluster.clone());
        if let Ok(actual) = &got {
            *seen.entry(actual.clone().unwrap_or_else(|| "404".into())).or_default() += 1;
        }
        match got {
            Ok(actual) if actual == predicted => agree += 1,
            Ok(actual) => failures.push(format!(
                "{} {} host {} headers {:?} on port {}: envoy chose {actual:?}, tracer predicted {predicted:?}\n{}",
                p.method,
                p.path,
                p.host,
                p.headers,
                p.port,
                kubectl_mesh::explain::render::render(&report, false)
            )),
            Err(e) => failures.push(format!("{} {} host {}: {e}", p.method, p.path, p.host)),
        }
    }
    let total = probes.len();
    println!("tracer agreement: {agree}/{total}");
    println!("envoy's choices: {seen:?}");
    assert!(CONFIGS >= 200 && total >= 1000);
    // The generated traffic exercises both outcomes: every cluster, and no route at all.
    assert_eq!(seen.len(), CLUSTERS + 1, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 20), "{seen:?}");
    assert!(
        failures.is_empty(),
        "tracer agreement: {agree}/{total}; disagreements:\n{}",
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

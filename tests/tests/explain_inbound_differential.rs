//! Differential test of `explain --inbound` against the real Envoy: a virtualInbound-style listener
//! (TLS and HTTP inspectors; one listener bound to six loopback ports through
//! `additional_addresses`, so the destination port picks the chain as the original destination does
//! behind iptables) with per-port chains as Istio builds them for STRICT (TLS with ALPN `istio`
//! only), PERMISSIVE (TLS and plaintext) and DISABLE (plaintext only) ports, a port without any
//! chain, and RBAC filters (DENY then ALLOW, a shadow rule) on the HTTP chains; two TCP ports behind
//! network RBAC filters (one refuses clients without an identity). Real plaintext and
//! mutual-TLS-style requests (ALPN `istio`) go through it, and for each one the tracer, reading
//! Envoy's own /config_dump, must predict the outcome: the app that answers, a 403 from RBAC, a 404,
//! or the connection closed because no chain matches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::trace::Peer;
use kubectl_mesh::explain::{Input, Request, explain};
use mesh_tests::Envoy;
use mesh_tests::envoy::free_port;
use mesh_tests::support::TestCa;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ALPN an Istio client sidecar offers on mutual TLS (the tracer assumes the same).
const ISTIO_ALPN: &[&str] = &["istio-http/1.1", "istio", "istio-peer-exchange"];

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

fn rbac(action: &str, policies: Value) -> Value {
    json!({"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": action, "policies": policies}}})
}

/// Istio's shape for one `to.operation` field: `and_rules` of `or_rules`.
fn operation(fields: &[Value]) -> Value {
    let rules: Vec<Value> = fields.iter().map(|f| json!({"or_rules": {"rules": [f]}})).collect();
    json!({"and_rules": {"rules": rules}})
}

fn anyone() -> Value {
    json!([{"and_ids": {"ids": [{"any": true}]}}])
}

fn method(m: &str) -> Value {
    json!({"header": {"name": ":method", "string_match": {"exact": m}}})
}

fn hcm(port: u16, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("inbound_0.0.0.0_{port}"),
        "route_config": {"name": format!("inbound|{port}||"), "virtual_hosts": [{"name": format!("inbound|http|{port}"), "domains": ["*"],
            "routes": [
                {"name": "missing", "match": {"prefix": "/missing"}, "direct_response": {"status": 404}},
                {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": format!("inbound|{port}||")}}
            ]}]},
        "http_filters": http_filters}})
}

fn tls(cert: &str, key: &str) -> Value {
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"tls_certificates": [{
            "certificate_chain": {"inline_string": cert}, "private_key": {"inline_string": key}}]}}})
}

struct Ports {
    strict: u16,
    permissive: u16,
    disable: u16,
    unconfigured: u16,
    /// A TCP port whose network RBAC refuses clients without an identity.
    tcp_guarded: u16,
    /// A TCP port whose network RBAC denies another port only.
    tcp_open: u16,
}

/// A plaintext TCP chain to `inbound|port||` behind a network RBAC filter that denies clients
/// without an identity on `denied_port`.
fn tcp_chain(port: u16, denied_port: u16) -> Value {
    json!({"name": format!("0.0.0.0_{port}"), "filter_chain_match": {"destination_port": port, "transport_protocol": "raw_buffer"},
    "filters": [
        {"name": "envoy.filters.network.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "tcp.",
            "rules": {"action": "DENY", "policies": {"ns[db]-policy[mtls-only]-rule[0]": {
                "permissions": [operation(&[json!({"destination_port": denied_port})])],
                "principals": [{"and_ids": {"ids": [{"not_id": {"authenticated": {}}}]}}]}}}}},
        {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": format!("inbound_{port}"), "cluster": format!("inbound|{port}||")}}
    ]})
}

fn inbound_listener(p: &Ports, cert: &str, key: &str) -> Value {
    // STRICT: DENY /admin, then ALLOW GET or x-allow: yes, with a shadow DENY on POST (never enforced).
    let strict_filters = || {
        let mut shadowed = rbac(
            "ALLOW",
            json!({
                "ns[foo]-policy[allow-read]-rule[0]": {"permissions": [operation(&[method("GET")])], "principals": anyone()},
                "ns[foo]-policy[allow-flagged]-rule[0]": {"permissions": [operation(&[json!({"header": {"name": "x-allow", "string_match": {"exact": "yes"}}})])], "principals": anyone()}
            }),
        );
        shadowed["typed_config"]["shadow_rules"] = json!({"action": "DENY", "policies": {
            "ns[foo]-policy[dry-run]-rule[0]": {"permissions": [operation(&[method("POST")])], "principals": anyone()}}});
        shadowed["typed_config"]["shadow_rules_stat_prefix"] = json!("istio_dry_run_allow_");
        vec![
            rbac(
                "DENY",
                json!({"ns[foo]-policy[deny-admin]-rule[0]": {
                "permissions": [operation(&[json!({"url_path": {"path": {"prefix": "/admin"}}})])], "principals": anyone()}}),
            ),
            shadowed,
        ]
    };
    // PERMISSIVE: DENY x-block on both chains; plaintext clients may not reach /secure (not authenticated).
    let block = || {
        rbac(
            "DENY",
            json!({"ns[bar]-policy[block]-rule[0]": {"permissions": [operation(&[json!({"header": {"name": "x-block", "present_match": true}})])], "principals": anyone()}}),
        )
    };
    let unauthenticated = rbac(
        "DENY",
        json!({"ns[bar]-policy[require-mtls]-rule[0]": {
        "permissions": [operation(&[json!({"url_path": {"path": {"prefix": "/secure"}}})])],
        "principals": [{"and_ids": {"ids": [{"not_id": {"authenticated": {}}}]}}]}}),
    );
    let tls_match = |port: u16| json!({"destination_port": port, "transport_protocol": "tls", "application_protocols": ["istio", "istio-peer-exchange"]});
    let raw_match = |port: u16| json!({"destination_port": port, "transport_protocol": "raw_buffer"});
    let chains = json!([
        {"name": format!("0.0.0.0_{}", p.strict), "filter_chain_match": tls_match(p.strict),
         "transport_socket": tls(cert, key), "filters": [hcm(p.strict, strict_filters())]},
        {"name": format!("0.0.0.0_{}", p.permissive), "filter_chain_match": tls_match(p.permissive),
         "transport_socket": tls(cert, key), "filters": [hcm(p.permissive, vec![block()])]},
        {"name": format!("0.0.0.0_{}", p.permissive), "filter_chain_match": raw_match(p.permissive),
         "filters": [hcm(p.permissive, vec![block(), unauthenticated])]},
        {"name": format!("0.0.0.0_{}", p.disable), "filter_chain_match": raw_match(p.disable),
         "filters": [hcm(p.disable, vec![])]},
        tcp_chain(p.tcp_guarded, p.tcp_guarded),
        tcp_chain(p.tcp_open, p.tcp_guarded)
    ]);
    let addr = |port: u16| json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}});
    json!({
        "name": "virtualInbound",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": p.unconfigured}},
        "additional_addresses": [addr(p.strict), addr(p.permissive), addr(p.disable), addr(p.tcp_guarded), addr(p.tcp_open)],
        "traffic_direction": "INBOUND",
        "listener_filters": [
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
            {"name": "envoy.filters.listener.http_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}
        ],
        "filter_chains": chains
    })
}

/// A request: method, path, headers.
type Sent = (&'static str, &'static str, Vec<(&'static str, &'static str)>);

#[derive(Debug, Clone)]
struct Probe {
    port: u16,
    peer: Peer,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

/// What happened, in the terms both sides can speak: `app <cluster>`, `status <code>`, `closed`.
fn outcome_of_response(status: u16, body: &str) -> String {
    if status == 200 { format!("app {}", body.trim()) } else { format!("status {status}") }
}

async fn send_plaintext(client: &reqwest::Client, p: &Probe) -> String {
    let m = reqwest::Method::from_bytes(p.method.as_bytes()).expect("a method");
    let mut req = client.request(m, format!("http://127.0.0.1:{}{}", p.port, p.path));
    for (k, v) in &p.headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            outcome_of_response(status, &resp.text().await.unwrap_or_default())
        }
        Err(_) => "closed".to_string(),
    }
}

async fn send_tls(config: Arc<rustls::ClientConfig>, p: &Probe) -> String {
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", p.port)).await else { return "closed".into() };
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let Ok(mut stream) = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await else {
        return "closed".into();
    };
    let mut text = format!("{} {} HTTP/1.1\r\nhost: inbound.test\r\nconnection: close\r\n", p.method, p.path);
    for (k, v) in &p.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    if stream.write_all(text.as_bytes()).await.is_err() {
        return "closed".into();
    }
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    // Envoy closes without close_notify at times: whatever arrived counts.
    let status = response.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    match (status, read) {
        (Some(code), _) => outcome_of_response(code, response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")),
        (None, _) => "closed".into(),
    }
}

fn predicted(dump: &ConfigDump, p: &Probe) -> (String, String) {
    let headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let req = Request::inbound(&format!("{}{}", p.port, p.path), &headers, Some(p.method), None).expect("a request");
    let report = explain(dump, Input { request: Some(&req), inbound: Some(p.peer), ..Default::default() });
    let t = report.trace.as_ref().expect("a trace");
    let o = &t.outcome;
    let said = match (&o.cluster, o.status, o.kind.as_str()) {
        (_, Some(code), _) => format!("status {code}"),
        (Some(c), None, _) => format!("app {c}"),
        (None, None, "no_filter_chain" | "no_listener" | "rbac_denied") => "closed".to_string(),
        (None, None, kind) => format!("unexpected outcome {kind}"),
    };
    (said, kubectl_mesh::explain::render::render(&report, false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tracer_agrees_with_envoy() {
    let ca = TestCa::new();
    let (cert, key) = ca.serving("inbound");
    let mut client_tls = (*ca.client_config()).clone();
    client_tls.alpn_protocols = ISTIO_ALPN.iter().map(|a| a.as_bytes().to_vec()).collect();
    let client_tls = Arc::new(client_tls);

    // Envoy binds the ports itself: another test may take one in between (bounded retries).
    let mut attempt = 0;
    let (envoy, ports) = loop {
        attempt += 1;
        let ports = Ports {
            strict: free_port().unwrap(),
            permissive: free_port().unwrap(),
            disable: free_port().unwrap(),
            unconfigured: free_port().unwrap(),
            tcp_guarded: free_port().unwrap(),
            tcp_open: free_port().unwrap(),
        };
        let mut clusters = Vec::new();
        for port in [ports.strict, ports.permissive, ports.disable, ports.tcp_guarded, ports.tcp_open] {
            let name = format!("inbound|{port}||");
            let app = upstream(name.clone()).await.unwrap();
            clusters.push(json!({
                "name": name, "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": app}}}}]}]}
            }));
        }
        let bootstrap = json!({
            "node": {"id": "explain-inbound-differential", "cluster": "explain"},
            "static_resources": {"listeners": [inbound_listener(&ports, &cert, &key)], "clusters": clusters}
        });
        let envoy = Envoy::start(&bootstrap).unwrap();
        match envoy.wait_ready(Duration::from_secs(60)).await {
            Ok(()) => break (envoy, ports),
            Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => continue,
            Err(e) => panic!("{e:#}"),
        }
    };
    let (code, body) = envoy.admin_get("/config_dump").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let dump = ConfigDump::parse(body.as_bytes()).unwrap();

    let requests: [Sent; 8] = [
        ("GET", "/", vec![]),
        ("GET", "/admin/users", vec![]),
        ("POST", "/api", vec![]),
        ("POST", "/api", vec![("x-allow", "yes")]),
        ("GET", "/", vec![("x-block", "1")]),
        ("GET", "/secure/data", vec![]),
        ("GET", "/missing", vec![]),
        ("DELETE", "/admin?x=/ok", vec![("x-allow", "yes")]),
    ];
    let mut probes = Vec::new();
    for port in [ports.strict, ports.permissive, ports.disable, ports.unconfigured, ports.tcp_guarded, ports.tcp_open] {
        for peer in [Peer::Plaintext, Peer::Mtls] {
            for (method, path, headers) in &requests {
                probes.push(Probe { port, peer, method, path, headers: headers.clone() });
            }
        }
    }
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let mut agree = 0;
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for p in &probes {
        let actual = match p.peer {
            Peer::Plaintext => send_plaintext(&http, p).await,
            Peer::Mtls => send_tls(client_tls.clone(), p).await,
        };
        let (said, text) = predicted(&dump, p);
        if p.port == ports.tcp_guarded && p.peer == Peer::Plaintext {
            // Envoy's network RBAC refuses a client without an identity, whatever it sends.
            assert_eq!(actual, "closed", "{p:?}");
        }
        if p.port == ports.tcp_open && p.peer == Peer::Plaintext {
            assert_eq!(actual, format!("app inbound|{}||", ports.tcp_open), "{p:?}");
        }
        let class = actual.split(' ').next().unwrap_or_default().to_string();
        *seen.entry(if actual.starts_with("status") { actual.clone() } else { class }).or_default() += 1;
        if said == actual {
            agree += 1;
        } else {
            failures.push(format!("{p:?}: envoy: {actual}, tracer: {said}\n{text}"));
        }
    }
    println!("inbound tracer agreement: {agree}/{}", probes.len());
    println!("envoy's outcomes: {seen:?}");
    // Every kind of outcome occurs: delivered, refused by RBAC, answered 404, closed for lack of a chain.
    for kind in ["app", "status 403", "status 404", "closed"] {
        assert!(seen.get(kind).is_some_and(|n| *n >= 2), "{kind} seen too rarely: {seen:?}");
    }
    assert!(
        failures.is_empty(),
        "inbound tracer agreement: {agree}/{}; disagreements:\n{}\nenvoy log:\n{}",
        probes.len(),
        failures.iter().take(4).cloned().collect::<Vec<_>>().join("\n"),
        envoy.log()
    );
}

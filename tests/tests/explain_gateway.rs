//! `explain` for gateways, against a real Envoy configured the way istiod configures an ingress
//! gateway: node id `router~…`, listeners it binds itself (0.0.0.0:8080 with RDS `http.8080`,
//! 0.0.0.0:8443 with one filter chain per TLS server: SNI, TLS termination, RDS
//! `https.443.<portName>.<gateway>.<namespace>`, and a TLS passthrough chain), route configurations
//! with `ignore_port_in_host_matching`, EDS clusters for its own Service and the backends. Envoy
//! runs in a network namespace (so it can bind 0.0.0.0:8080 and the pods' IPs exist), with its xDS
//! resources read from files.
//!
//! - The capture is committed as `examples/explain/ingressgateway-config-dump.json`; every run
//!   captures it again and fails when the normalised capture differs (`UPDATE_GOLDEN=1` rewrites it).
//! - Goldens of traces over the committed capture.
//! - A differential run: generated requests (HTTP on 80, HTTPS with and without SNI on 443,
//!   passthrough) go to the real Envoy; the tracer must predict each outcome from Envoy's own
//!   config dump: the backend, 404, or the connection closed for want of a filter chain.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::{Format, Input, Request, explain, render_report};
use mesh_tests::Envoy;
use mesh_tests::netns::{Netns, require_root_and_tools};
use serde_json::{Value, json};

const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 7);
const NODE_ID: &str =
    "router~10.244.0.7~istio-ingressgateway-6d7f9c8b4-x2z9q.istio-system~istio-system.svc.cluster.local";
const XDS_DIR: &str = "/etc/istio/proxy/xds";
const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// A backend: its cluster, the pod behind it, and the name it answers with.
struct Backend {
    cluster: &'static str,
    ip: Ipv4Addr,
    port: u16,
    workload: &'static str,
    answer: &'static str,
}

const BACKENDS: &[Backend] = &[
    Backend {
        cluster: "outbound|9080||productpage.bookinfo.svc.cluster.local",
        ip: Ipv4Addr::new(10, 244, 1, 5),
        port: 9080,
        workload: "productpage-v1;bookinfo;productpage;v1;Kubernetes",
        answer: "productpage",
    },
    Backend {
        cluster: "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
        ip: Ipv4Addr::new(10, 244, 1, 6),
        port: 9080,
        workload: "reviews-v1;bookinfo;reviews;v1;Kubernetes",
        answer: "reviews-v1",
    },
    Backend {
        cluster: "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
        ip: Ipv4Addr::new(10, 244, 1, 7),
        port: 9080,
        workload: "reviews-v2;bookinfo;reviews;v2;Kubernetes",
        answer: "reviews-v2",
    },
    Backend {
        cluster: "outbound|8000||httpbin.default.svc.cluster.local",
        ip: Ipv4Addr::new(10, 244, 1, 8),
        port: 8000,
        workload: "httpbin;default;httpbin;v1;Kubernetes",
        answer: "httpbin",
    },
    Backend {
        cluster: "outbound|443||tls-backend.tls.svc.cluster.local",
        ip: Ipv4Addr::new(10, 244, 1, 9),
        port: 443,
        workload: "tls-backend;tls;tls-backend;v1;Kubernetes",
        answer: "tls-backend",
    },
];

/// The gateway's own Service: port → target port, its endpoint being this pod.
const OWN_PORTS: &[(u16, u16)] = &[(80, 8080), (443, 8443)];
const OWN_HOST: &str = "istio-ingressgateway.istio-system.svc.cluster.local";

/// The TLS servers of the Gateways on 443: (SNI, route config, credential).
const TLS_SERVERS: &[(&str, &str, &str)] = &[
    ("bookinfo.example.com", "https.443.https.bookinfo-gateway.bookinfo", "bookinfo-credential"),
    ("httpbin.example.com", "https.443.https-httpbin.httpbin-gateway.default", "httpbin-credential"),
    ("*.apps.example.com", "https.443.https-apps.apps-gateway.apps", "apps-credential"),
];

fn config_link(ns: &str, kind: &str, name: &str) -> Value {
    json!({"filter_metadata": {"istio": {"config": format!("/apis/networking.istio.io/v1/namespaces/{ns}/{kind}/{name}")}}})
}

fn source(path: &Path) -> Value {
    json!({"path_config_source": {"path": path.to_string_lossy()}, "resource_api_version": "V3"})
}

fn route_action(cluster: &str) -> Value {
    json!({"cluster": cluster, "timeout": "0s", "retry_policy": {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2, "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": "5"}})
}

/// The routes of the bookinfo virtual host (VirtualServices `bookinfo` and `reviews-gw`).
fn bookinfo_routes() -> Value {
    let pp = BACKENDS[0].cluster;
    json!([
        {"name": "productpage", "match": {"path": "/productpage", "case_sensitive": true}, "route": route_action(pp),
         "metadata": config_link("bookinfo", "virtual-service", "bookinfo")},
        {"name": "static", "match": {"prefix": "/static"}, "route": route_action(pp),
         "metadata": config_link("bookinfo", "virtual-service", "bookinfo")},
        {"name": "reviews-jason", "match": {"prefix": "/reviews", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
         "route": route_action(BACKENDS[2].cluster), "metadata": config_link("bookinfo", "virtual-service", "reviews-gw")},
        {"name": "reviews", "match": {"prefix": "/reviews"}, "route": route_action(BACKENDS[1].cluster),
         "metadata": config_link("bookinfo", "virtual-service", "reviews-gw")}
    ])
}

fn httpbin_routes() -> Value {
    let hb = BACKENDS[3].cluster;
    json!([
        {"name": "status", "match": {"prefix": "/status"}, "route": route_action(hb), "metadata": config_link("default", "virtual-service", "httpbin")},
        {"name": "headers", "match": {"path_separated_prefix": "/headers"}, "route": route_action(hb), "metadata": config_link("default", "virtual-service", "httpbin")}
    ])
}

fn apps_routes() -> Value {
    json!([{"name": "apps", "match": {"prefix": "/"}, "route": route_action(BACKENDS[3].cluster), "metadata": config_link("apps", "virtual-service", "apps")}])
}

fn vhost(host: &str, port: u16, routes: Value) -> Value {
    json!({"name": format!("{host}:{port}"), "domains": [host], "routes": routes, "include_request_attempt_count": true})
}

fn route_config(name: &str, vhosts: Vec<Value>) -> Value {
    json!({"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": name,
        "virtual_hosts": vhosts, "validate_clusters": false, "max_direct_response_body_size_bytes": 1048576,
        "ignore_port_in_host_matching": true})
}

fn hcm(port: u16, rds: &str, rds_file: &Path) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": format!("outbound_0.0.0.0_{port}"),
        "rds": {"config_source": source(rds_file), "route_config_name": rds},
        "http_filters": [
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        ],
        "use_remote_address": true, "normalize_path": true, "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "server_name": "istio-envoy", "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}]}})
}

fn downstream_tls(credential: &str) -> Value {
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"alpn_protocols": ["h2", "http/1.1"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificate_sds_secret_configs": [{"name": format!("kubernetes://{credential}")}]},
        "require_client_certificate": false}})
}

fn write_xds(path: &Path, resources: Vec<Value>) -> anyhow::Result<()> {
    let doc = json!({"version_info": "2026-01-01T00:00:00Z/1", "resources": resources});
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?).with_context(|| format!("writing {}", path.display()))
}

/// A CA and one serving certificate per TLS server host.
struct Certs {
    ca: rcgen::Certificate,
    by_credential: Vec<(String, String, String)>,
}

fn certs() -> Certs {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "gateway test CA");
    let ca = params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(params, ca_key);
    let by_credential = TLS_SERVERS
        .iter()
        .map(|(host, _, credential)| {
            let key = rcgen::KeyPair::generate().expect("key");
            // The wildcard also covers a two-label name the probes send (Envoy's SNI match does).
            let mut names = vec![host.to_string()];
            if host.starts_with("*.") {
                names.push(format!("x.y{}", &host[1..]));
            }
            let p = rcgen::CertificateParams::new(names).expect("params");
            let cert = p.signed_by(&key, &issuer).expect("certificate");
            (credential.to_string(), cert.pem(), key.serialize_pem())
        })
        .collect();
    Certs { ca, by_credential }
}

/// Writes the gateway's xDS files into `dir` and returns its bootstrap.
fn gateway_config(dir: &Path, certs: &Certs) -> anyhow::Result<Value> {
    // EDS: one file per cluster (a file subscription carries one ClusterLoadAssignment).
    let mut clusters = Vec::new();
    let mut eds = |name: &str,
                   ip: Ipv4Addr,
                   port: u16,
                   workload: &str,
                   subset: Option<(&str, &str)>|
     -> anyhow::Result<()> {
        let file = dir.join(format!("eds-{}.json", clusters.len()));
        write_xds(
            &file,
            vec![json!({
                "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": name,
                "endpoints": [{"locality": {"region": "us-east1", "zone": "us-east1-b"}, "lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": ip.to_string(), "port_value": port}}},
                    "health_status": "HEALTHY",
                    "metadata": {"filter_metadata": {"istio": {"workload": workload}, "envoy.transport_socket_match": {"tlsMode": "istio"}}},
                    "load_balancing_weight": 1}], "load_balancing_weight": 1}]
            })],
        )?;
        let mut c = json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": name, "type": "EDS", "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
            "eds_cluster_config": {"eds_config": source(&file), "service_name": name},
            "circuit_breakers": {"thresholds": [{"max_connections": 4294967295_u64, "max_pending_requests": 4294967295_u64,
                "max_requests": 4294967295_u64, "max_retries": 4294967295_u64}]},
            "common_lb_config": {}
        });
        if let Some((dr_ns, subset)) = subset {
            let mut md = config_link(dr_ns, "destination-rule", "reviews");
            md["filter_metadata"]["istio"]["subset"] = json!(subset);
            c["metadata"] = md;
        }
        clusters.push(c);
        Ok(())
    };
    for (port, target) in OWN_PORTS {
        eds(
            &format!("outbound|{port}||{OWN_HOST}"),
            GATEWAY_IP,
            *target,
            "istio-ingressgateway;istio-system;istio-ingressgateway;latest;Kubernetes",
            None,
        )?;
    }
    for b in BACKENDS {
        let subset = b.cluster.split('|').nth(2).filter(|s| !s.is_empty()).map(|s| ("bookinfo", s));
        eds(b.cluster, b.ip, b.port, b.workload, subset)?;
    }
    write_xds(&dir.join("cds.json"), clusters)?;

    // RDS: one file per route configuration.
    let mut rds_files = std::collections::BTreeMap::new();
    let mut http = vec![
        vhost("bookinfo.example.com", 80, bookinfo_routes()),
        vhost("httpbin.example.com", 80, httpbin_routes()),
        vhost("*.apps.example.com", 80, apps_routes()),
    ];
    http.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
    let mut rc_list = vec![("http.8080".to_string(), route_config("http.8080", http))];
    for (host, rc, _) in TLS_SERVERS {
        let routes = match *host {
            "bookinfo.example.com" => bookinfo_routes(),
            "httpbin.example.com" => httpbin_routes(),
            _ => apps_routes(),
        };
        rc_list.push((rc.to_string(), route_config(rc, vec![vhost(host, 443, routes)])));
    }
    for (i, (name, rc)) in rc_list.into_iter().enumerate() {
        let file = dir.join(format!("rds-{i}.json"));
        write_xds(&file, vec![rc])?;
        rds_files.insert(name, file);
    }

    // LDS: the two bound listeners.
    let http_listener = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "0.0.0.0_8080",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
        "filter_chains": [{"filters": [hcm(8080, "http.8080", &rds_files["http.8080"])]}],
        "traffic_direction": "OUTBOUND",
        "per_connection_buffer_limit_bytes": 32768,
    });
    let mut tls_chains: Vec<Value> = TLS_SERVERS
        .iter()
        .map(|(host, rc, credential)| {
            json!({"filter_chain_match": {"server_names": [host]},
                   "filters": [hcm(8443, rc, &rds_files[*rc])],
                   "transport_socket": downstream_tls(credential)})
        })
        .collect();
    tls_chains.push(json!({
        "filter_chain_match": {"server_names": ["tls.example.com"]},
        "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": BACKENDS[4].cluster, "cluster": BACKENDS[4].cluster}}],
        "metadata": config_link("tls", "virtual-service", "tls-backend")
    }));
    let tls_listener = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "0.0.0.0_8443",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8443}},
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "listener_filters_timeout": "0s",
        "filter_chains": tls_chains,
        "traffic_direction": "OUTBOUND",
        "per_connection_buffer_limit_bytes": 32768,
    });
    write_xds(&dir.join("lds.json"), vec![http_listener, tls_listener])?;

    let secrets: Vec<Value> = certs
        .by_credential
        .iter()
        .map(|(name, cert, key)| {
            json!({"name": format!("kubernetes://{name}"), "tls_certificate": {
                "certificate_chain": {"inline_string": cert}, "private_key": {"inline_string": key}}})
        })
        .collect();
    Ok(json!({
        "node": {
            "id": NODE_ID,
            "cluster": "istio-ingressgateway.istio-system",
            "locality": {"region": "us-east1", "zone": "us-east1-b"},
            "metadata": {
                "ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes", "NAMESPACE": "istio-system",
                "NAME": "istio-ingressgateway-6d7f9c8b4-x2z9q", "WORKLOAD_NAME": "istio-ingressgateway",
                "SERVICE_ACCOUNT": "istio-ingressgateway-service-account", "MESH_ID": "cluster.local",
                "INSTANCE_IPS": GATEWAY_IP.to_string(), "ROUTER_MODE": "sni-dnat",
                "LABELS": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
                "OWNER": "kubernetes://apis/apps/v1/namespaces/istio-system/deployments/istio-ingressgateway"
            }
        },
        "dynamic_resources": {"lds_config": source(&dir.join("lds.json")), "cds_config": source(&dir.join("cds.json"))},
        "static_resources": {"secrets": secrets}
    }))
}

/// A raw HTTP/1.1 exchange over `stream`: (status, body). Handles chunked and sized bodies.
fn http_exchange(
    stream: &mut dyn ReadWrite,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> anyhow::Result<(u16, String)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    // Read until the response is complete (Envoy delays closing after its own answers by 1 s);
    // a TLS peer may close without close_notify, and what was read counts.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if response_complete(&raw) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("no HTTP response: {text:?}"))?;
    let status: u16 =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("bad status line: {head}"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Whether `raw` holds a whole response: headers, then the sized or chunked body.
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// The gateway in its network namespace, with its backends.
struct Gateway {
    ns: Netns,
    envoy: Envoy,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(tag: &str) -> anyhow::Result<Gateway> {
        require_root_and_tools()?;
        let ns = Netns::create(&format!("mesh-gw-{tag}-{}", std::process::id()))?;
        for ip in std::iter::once(GATEWAY_IP).chain(BACKENDS.iter().map(|b| b.ip)) {
            ns.exec_ok("ip", &["addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
        }
        // Backends answer with their name; the passthrough one with its name on any bytes.
        for b in BACKENDS {
            let addr = SocketAddr::from((b.ip, b.port));
            let std_listener = ns.enter(|| {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })?;
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            let answer = b.answer;
            if b.port == 443 {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok((mut s, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            let mut buf = [0u8; 512];
                            let _ = s.read(&mut buf).await;
                            let _ = s.write_all(format!("{answer}\n").as_bytes()).await;
                        });
                    }
                });
            } else {
                let app = axum::Router::new().fallback(move || async move { answer });
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        let dir = tempfile::tempdir()?;
        let certs = certs();
        let bootstrap = gateway_config(dir.path(), &certs)?;
        let envoy = Envoy::start_in_netns(&bootstrap, ns.name())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs.ca.der().clone())?;
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let gw = Gateway { ns, envoy, tls, _dir: dir };
        gw.wait_ready()?;
        Ok(gw)
    }

    fn admin(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let admin = self.envoy.admin();
        self.ns.enter(|| http_exchange(&mut connect(admin)?, "localhost", path, &[]))
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.admin("/ready") {
                Ok((200, body)) if body.trim() == "LIVE" => {
                    // The listeners are bound once the TLS one accepts.
                    if self.ns.enter(|| connect(SocketAddr::from((GATEWAY_IP, 8443)))).is_ok() {
                        return Ok(());
                    }
                }
                Ok((code, body)) => last = format!("{code} {}", body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the gateway's Envoy was not ready within 30s (last: {last}):\n{}", self.envoy.log())
    }

    /// `/config_dump?include_eds`, normalised.
    fn capture(&self) -> anyhow::Result<Value> {
        let (code, body) = self.admin("/config_dump?include_eds")?;
        if code != 200 {
            bail!("config_dump answered {code}: {body}");
        }
        let dir = self._dir.path().to_string_lossy().to_string();
        let dump: Value = serde_json::from_str(&body.replace(&dir, XDS_DIR))?;
        Ok(normalise(dump))
    }
}

/// Removes what changes from run to run: timestamps, the generated certificates, the Envoy build,
/// and the order of keys (Envoy prints protobuf `Struct`s, the metadata, in hash order).
fn normalise(mut v: Value) -> Value {
    fn sort_keys(v: &mut Value) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, mut x) in entries {
                    sort_keys(&mut x);
                    m.insert(k, x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(sort_keys),
            _ => {}
        }
    }
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match k.as_str() {
                        "last_updated" => *x = json!("2026-01-01T00:00:00Z"),
                        "certificate_chain" => *x = json!({"inline_string": "<certificate of the test CA>"}),
                        _ => walk(x),
                    }
                }
                m.remove("user_agent_build_version");
                m.remove("extensions");
                for list in [
                    "dynamic_listeners",
                    "dynamic_active_clusters",
                    "dynamic_route_configs",
                    "dynamic_endpoint_configs",
                    "static_secrets",
                ] {
                    if let Some(Value::Array(a)) = m.get_mut(list) {
                        a.sort_by_key(|x| {
                            serde_json::to_string(
                                &x.get("name")
                                    .or_else(|| x.pointer("/endpoint_config/cluster_name"))
                                    .or_else(|| x.pointer("/cluster/name"))
                                    .or_else(|| x.pointer("/route_config/name")),
                            )
                            .unwrap_or_default()
                        });
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    sort_keys(&mut v);
    v
}

fn example_path() -> PathBuf {
    mesh_tests::tools::repo_root().join("examples/explain/ingressgateway-config-dump.json")
}

fn example() -> ConfigDump {
    let bytes = std::fs::read(example_path())
        .expect("examples/explain/ingressgateway-config-dump.json (UPDATE_GOLDEN=1 creates it)");
    ConfigDump::parse(&bytes).expect("the example parses")
}

fn trace(dump: &ConfigDump, to: &str, headers: &[String], sni: Option<&str>) -> kubectl_mesh::explain::Report {
    let req = Request::parse(to, headers, None, sni).expect("a valid --to");
    explain(
        dump,
        Input {
            source: "file examples/explain/ingressgateway-config-dump.json".into(),
            request: Some(&req),
            ..Default::default()
        },
    )
}

fn golden(name: &str, text: &str) {
    let path = mesh_tests::tools::repo_root().join("tests/golden/explain").join(name);
    if let Err(e) = mesh_test_data::check_golden(&path, text) {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_capture_is_committed_and_regenerates_identically() {
    let gw = Gateway::start("capture").await.unwrap();
    // Bounded: the EDS files are read right after the clusters.
    let mut fresh = gw.capture().unwrap();
    for _ in 0..50 {
        if fresh.to_string().contains("10.244.1.9") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        fresh = gw.capture().unwrap();
    }
    let text = serde_json::to_string_pretty(&fresh).unwrap() + "\n";
    let parsed = ConfigDump::parse(text.as_bytes()).unwrap();
    assert!(parsed.problems().is_empty(), "Envoy rejected part of the gateway config: {:?}", parsed.problems());
    assert_eq!(parsed.node.as_ref().map(|n| n.id.as_str()), Some(NODE_ID));
    if let Err(e) = mesh_test_data::check_golden(&example_path(), &text) {
        panic!("the gateway capture changed (review it, then UPDATE_GOLDEN=1 rewrites it): {e}");
    }
}

#[test]
fn gateway_traces_match_goldens() {
    let d = example();
    let whole = explain(
        &d,
        Input { source: "file examples/explain/ingressgateway-config-dump.json".into(), ..Default::default() },
    );
    golden("gateway-whole.txt", &render_report(&whole, Format::Text, false).unwrap());
    let cases: &[(&str, &str, &[&str], Option<&str>)] = &[
        ("gateway-http-productpage.txt", "bookinfo.example.com/productpage", &[], None),
        ("gateway-https-productpage.txt", "bookinfo.example.com:443/productpage", &[], Some("bookinfo.example.com")),
        (
            "gateway-https-reviews-jason.txt",
            "bookinfo.example.com:443/reviews/1",
            &["end-user: jason"],
            Some("bookinfo.example.com"),
        ),
        ("gateway-https-wildcard.txt", "shop.apps.example.com:443/cart", &[], Some("shop.apps.example.com")),
        ("gateway-https-no-sni.txt", "bookinfo.example.com:443/productpage", &[], None),
        ("gateway-passthrough.txt", "tls.example.com:443/", &[], Some("tls.example.com")),
        ("gateway-http-no-route.txt", "unknown.example.com/", &[], None),
    ];
    for (file, to, headers, sni) in cases {
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        let r = trace(&d, to, &headers, *sni);
        golden(file, &render_report(&r, Format::Text, false).unwrap());
    }
    let r = trace(&d, "bookinfo.example.com:443/productpage", &[], Some("bookinfo.example.com"));
    golden("gateway-https-productpage.json", &render_report(&r, Format::Json, false).unwrap());
    // What the goldens show, asserted: the Service port mapping, the Gateway, the VirtualService.
    let t = r.trace.as_ref().unwrap();
    let chosen = |stage: &str| t.steps.iter().find(|s| s.stage == stage).map(|s| s.chosen.clone()).unwrap_or_default();
    assert_eq!(chosen("service_port"), "Service istio-system/istio-ingressgateway port 443 → 8443");
    assert_eq!(chosen("listener"), "0.0.0.0_8443");
    assert_eq!(chosen("route_config"), "https.443.https.bookinfo-gateway.bookinfo");
    assert_eq!(t.outcome.cluster.as_deref(), Some(BACKENDS[0].cluster));
    let objects: Vec<String> = r.objects.iter().map(|o| o.object.display()).collect();
    for want in [
        "Gateway bookinfo/bookinfo-gateway",
        "VirtualService bookinfo/bookinfo",
        "Service istio-system/istio-ingressgateway",
    ] {
        assert!(objects.iter().any(|o| o == want), "{want} missing from {objects:?}");
    }
}

#[test]
fn gateway_cli_form_from_the_docs() {
    // kubectl mesh explain --file examples/explain/ingressgateway-config-dump.json --to bookinfo.example.com:443/productpage --sni bookinfo.example.com
    use clap::Parser;
    let path = example_path();
    let cli = kubectl_mesh::Cli::parse_from([
        "kubectl-mesh",
        "explain",
        "--file",
        path.to_str().unwrap(),
        "--to",
        "bookinfo.example.com:443/productpage",
        "--sni",
        "bookinfo.example.com",
    ]);
    let mut out = Vec::new();
    let code = kubectl_mesh::run(cli, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    for want in [
        "gateway:",
        "listener      0.0.0.0_8443",
        "https.443.https.bookinfo-gateway.bookinfo",
        "Gateway bookinfo/bookinfo-gateway",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // No SNI on the TLS port: no chain, exit 2.
    let cli = kubectl_mesh::Cli::parse_from([
        "kubectl-mesh",
        "explain",
        "--file",
        path.to_str().unwrap(),
        "--to",
        "bookinfo.example.com:443/",
    ]);
    assert_eq!(kubectl_mesh::run(cli, &mut Vec::new()).unwrap(), 2);
}

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
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const HOSTS: &[&str] = &[
    "bookinfo.example.com",
    "BOOKINFO.Example.com",
    "bookinfo.example.com:80",
    "bookinfo.example.com:8443",
    "httpbin.example.com",
    "httpbin.example.com:443",
    "shop.apps.example.com",
    "a.b.apps.example.com",
    "apps.example.com",
    ".apps.example.com",
    "other.example.com",
    "tls.example.com",
];
const SNIS: &[Option<&str>] = &[
    Some("bookinfo.example.com"),
    Some("httpbin.example.com"),
    Some("shop.apps.example.com"),
    Some("x.y.apps.example.com"),
    Some("apps.example.com"),
    Some("tls.example.com"),
    Some("other.example.com"),
    None,
];
const PATHS: &[&str] = &[
    "/productpage",
    "/productpage?u=1",
    "/productpage/x",
    "/static/a.css",
    "/reviews/1",
    "/reviews",
    "/status/200",
    "/headers",
    "/headersx",
    "/",
    "/nothing",
];

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A backend answered with its name.
    Backend(String),
    /// Envoy answered this status itself.
    Status(u16),
    /// The connection was closed without an answer (no filter chain).
    Closed,
}

struct Probe {
    port: u16,
    sni: Option<&'static str>,
    host: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
}

fn send(tls: &Arc<rustls::ClientConfig>, p: &Probe) -> Seen {
    let target = if p.port == 80 { 8080 } else { 8443 };
    let Ok(mut tcp) = connect(SocketAddr::from((GATEWAY_IP, target))) else { return Seen::Closed };
    let result = if p.port == 80 {
        http_exchange(&mut tcp, p.host, p.path, &p.headers)
    } else {
        let name = match p.sni {
            Some(s) => rustls::pki_types::ServerName::try_from(s.to_string()).expect("a DNS name"),
            None => rustls::pki_types::ServerName::IpAddress(IpAddr::V4(GATEWAY_IP).into()),
        };
        let Ok(mut conn) = rustls::ClientConnection::new(tls.clone(), name) else { return Seen::Closed };
        if p.sni == Some("tls.example.com") {
            // Passthrough: the backend reads the ClientHello and answers in plaintext.
            let mut hello = Vec::new();
            let _ = conn.write_tls(&mut hello);
            if tcp.write_all(&hello).is_err() {
                return Seen::Closed;
            }
            let mut raw = Vec::new();
            let _ = tcp.read_to_end(&mut raw);
            let text = String::from_utf8_lossy(&raw).trim().to_string();
            return if text.is_empty() { Seen::Closed } else { Seen::Backend(text) };
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        http_exchange(&mut stream, p.host, p.path, &p.headers)
    };
    match result {
        Ok((200, body)) => Seen::Backend(body.trim().to_string()),
        Ok((status, _)) => Seen::Status(status),
        Err(_) => Seen::Closed,
    }
}

fn predict(dump: &ConfigDump, p: &Probe) -> (Seen, String) {
    let mut headers: Vec<String> = p.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    headers.push(format!("host: {}", p.host));
    let to = format!("{}:{}{}", p.sni.unwrap_or("ingress.example.com"), p.port, p.path);
    let req = Request::parse(&to, &headers, None, p.sni).expect("a valid request");
    let report = explain(dump, Input { source: "differential".into(), request: Some(&req), ..Default::default() });
    let text = kubectl_mesh::explain::render::render(&report, false);
    let Some(t) = report.trace else { return (Seen::Closed, text) };
    let seen = match (&t.outcome.cluster, t.outcome.status) {
        (_, Some(s)) => Seen::Status(u16::try_from(s).unwrap_or(0)),
        (Some(c), None) => Seen::Backend(
            BACKENDS.iter().find(|b| b.cluster == c).map(|b| b.answer.to_string()).unwrap_or_else(|| c.clone()),
        ),
        (None, None) => Seen::Closed,
    };
    (seen, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracer_agrees_with_a_real_gateway() {
    let gw = Gateway::start("diff").await.unwrap();
    let (code, body) = gw.admin("/config_dump?include_eds").unwrap();
    assert_eq!(code, 200, "{body}");
    let dump = ConfigDump::parse(body.as_bytes()).unwrap();
    let mut rng = Rng(0x0067_772d_6469_6666);
    let probes: Vec<Probe> = (0..400)
        .map(|_| {
            let port = if rng.chance(40) { 80 } else { 443 };
            let mut headers = Vec::new();
            if rng.chance(40) {
                headers.push(("end-user".to_string(), rng.pick(&["jason", "Jason", "bob"]).to_string()));
            }
            let sni = if port == 443 { *rng.pick(SNIS) } else { None };
            // Mostly the host the SNI names, as browsers send it.
            let host = match sni {
                Some(s) if rng.chance(60) && !s.starts_with("x.y") => {
                    HOSTS.iter().copied().find(|h| *h == s).unwrap_or(s)
                }
                _ => *rng.pick(HOSTS),
            };
            Probe { port, sni, host, path: rng.pick::<&str>(PATHS), headers }
        })
        .collect();
    let tls = gw.tls.clone();
    let seen: Vec<Seen> = gw.ns.enter(|| Ok(probes.iter().map(|p| send(&tls, p)).collect())).unwrap();
    let mut agree = 0;
    let mut failures = Vec::new();
    let mut outcomes: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (p, actual) in probes.iter().zip(&seen) {
        *outcomes.entry(format!("{actual:?}")).or_default() += 1;
        let (predicted, text) = predict(&dump, p);
        if &predicted == actual {
            agree += 1;
        } else {
            failures.push(format!(
                "port {} sni {:?} host {} path {} headers {:?}: envoy {actual:?}, tracer {predicted:?}\n{text}",
                p.port, p.sni, p.host, p.path, p.headers
            ));
        }
    }
    println!("gateway tracer agreement: {agree}/{}", probes.len());
    println!("envoy's outcomes: {outcomes:?}");
    // Every kind of outcome is exercised: each backend, 404, and refused connections.
    for want in ["productpage", "reviews-v1", "reviews-v2", "httpbin", "tls-backend"] {
        assert!(outcomes.contains_key(&format!("Backend({want:?})")), "{want} never reached: {outcomes:?}");
    }
    assert!(outcomes.contains_key("Status(404)") && outcomes.contains_key("Closed"), "{outcomes:?}");
    assert!(
        failures.is_empty(),
        "gateway tracer agreement: {agree}/{}; disagreements:\n{}",
        probes.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
            + &failures.iter().map(|f| f.lines().next().unwrap_or_default().to_string()).collect::<Vec<_>>().join("\n")
    );
}

/// Pod mode for a gateway, against the test API server: the gateway pod's admin port serves the
/// bundled capture; the Service that selects the pod gives the port mapping (a named target port
/// resolved through the container's ports), and the Gateway behind `http.8080` comes from the
/// VirtualService's `spec.gateways` (the one whose selector picks another gateway is left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_mode_reads_the_gateway_service_and_the_bound_gateways() {
    let api = mesh_tests::apiserver::TestApiServer::start().unwrap();
    let dump = std::fs::read(example_path()).unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let app = axum::Router::new().route("/config_dump", axum::routing::get(move || async move { dump }));
    tokio::spawn(async move {
        let _ = axum::serve(admin, app).await;
    });
    let pod = "istio-ingressgateway-6d7f9c8b4-x2z9q";
    let labels = json!({"app": "istio-ingressgateway", "istio": "ingressgateway"});
    api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "istio-system", "labels": labels},
        "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0", "ports": [
            {"name": "http2-port", "containerPort": 8080}, {"name": "https", "containerPort": 8443}]}]},
        "status": {"phase": "Running", "podIP": GATEWAY_IP.to_string()}}))
    .unwrap();
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "ingressgateway"}, "clusterIP": "10.96.0.10", "ports": [
            {"name": "http2", "port": 80, "targetPort": "http2-port"}, {"name": "https", "port": 443, "targetPort": 8443}]}}))
    .unwrap();
    api.put(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "productpage", "namespace": "bookinfo"},
        "spec": {"selector": {"app": "productpage"}, "ports": [{"name": "http", "port": 9080}]}}),
    )
    .unwrap();
    // Kubernetes agrees with the endpoints Envoy has for the backend the trace reaches.
    api.put(slice("bookinfo", "productpage", "http", 9080, "10.244.1.5", "productpage-v1-7d9f")).unwrap();
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bookinfo", "namespace": "bookinfo"},
        "spec": {"hosts": ["bookinfo.example.com"], "gateways": ["bookinfo-gateway", "istio-system/egress-only", "mesh"]}}))
    .unwrap();
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "bookinfo-gateway", "namespace": "bookinfo"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["bookinfo.example.com"]},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["bookinfo.example.com"],
             "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-credential"}}]}}))
        .unwrap();
    api.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "egress-only", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "egressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}))
    .unwrap();
    api.map_pod_port("istio-system", pod, 15000, admin_addr);
    let (code, out) =
        explain_pod(&api, "istio-system", pod, &["--to", "bookinfo.example.com/productpage", "-o", "json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {code:?}"));
    assert_eq!(code.unwrap(), 0, "{out}");
    assert_eq!(report["gateway"]["service"]["how"], "Service istio-system/istio-ingressgateway selects this pod");
    assert_eq!(report["endpoint_checks"][0]["status"], "agree", "{out}");
    assert_eq!(report["gateway"]["service"]["ports"][0]["target_port"], 8080, "the named target port: {out}");
    let steps = report["trace"]["steps"].as_array().unwrap();
    let step = |stage: &str| {
        steps.iter().find(|s| s["stage"] == stage).cloned().unwrap_or_else(|| panic!("no {stage}: {out}"))
    };
    assert_eq!(step("service_port")["chosen"], "Service istio-system/istio-ingressgateway port 80 (http2) → 8080");
    assert_eq!(step("route_config")["chosen"], "http.8080");
    let route_config = step("route_config");
    let gateways: Vec<&Value> =
        route_config["objects"].as_array().unwrap().iter().filter(|o| o["kind"] == "Gateway").collect();
    assert_eq!(gateways.len(), 1, "only the Gateway that selects this pod: {gateways:?}");
    assert_eq!(gateways[0]["name"], "bookinfo-gateway");
    let gw =
        report["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "Gateway").expect("the Gateway is checked");
    assert!(gw["status"] == "found" && gw["generation"].as_i64().is_some(), "{gw}");
}

/// The egress hop in pod mode: a sidecar whose VirtualService sends `edition.cnn.com` to the
/// egress gateway's cluster; the continue command names a Running pod the gateway Service selects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_mode_names_the_egress_gateway_pod_to_continue_on() {
    let egress = "outbound|80||istio-egressgateway.istio-system.svc.cluster.local";
    let hcm = json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {"@type": HCM,
        "stat_prefix": "outbound_0.0.0.0_80", "rds": {"route_config_name": "80"}, "http_filters": [{"name": "envoy.filters.http.router"}]}});
    let dump = json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {"node": {
            "id": "sidecar~10.244.1.20~sleep-7b9f-abc.default~default.svc.cluster.local", "metadata": {"NAMESPACE": "default"}}}},
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [{"cluster": {
            "name": egress, "type": "STATIC", "load_assignment": {"cluster_name": egress, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "10.244.0.8", "port_value": 8080}}}}]}]}}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [{"name": "0.0.0.0_80", "active_state": {"listener": {
            "name": "0.0.0.0_80", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}}, "filter_chains": [{"filters": [hcm]}]}}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [{"route_config": {"name": "80", "virtual_hosts": [{
            "name": "edition.cnn.com:80", "domains": ["edition.cnn.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": egress}}]}]}}]}
    ]})
    .to_string();
    let api = mesh_tests::apiserver::TestApiServer::start().unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let app = axum::Router::new().route("/config_dump", axum::routing::get(move || async move { dump }));
    tokio::spawn(async move {
        let _ = axum::serve(admin, app).await;
    });
    api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleep-7b9f-abc", "namespace": "default", "labels": {"app": "sleep"}},
        "spec": {"containers": [{"name": "sleep", "image": "curl"}, {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.20"}}))
    .unwrap();
    for (name, phase) in [("istio-egressgateway-5c4f-old", "Failed"), ("istio-egressgateway-5c4f-xyz", "Running")] {
        api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "istio-system",
            "labels": {"istio": "egressgateway"}}, "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]},
            "status": {"phase": phase}}))
        .unwrap();
    }
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "egressgateway"}, "clusterIP": "10.96.0.11", "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}}))
    .unwrap();
    api.put(slice("istio-system", "istio-egressgateway", "http2", 8080, "10.244.0.8", "istio-egressgateway-5c4f-xyz"))
        .unwrap();
    api.map_pod_port("default", "sleep-7b9f-abc", 15000, admin_addr);
    let (code, out) = explain_pod(&api, "default", "sleep-7b9f-abc", &["--to", "edition.cnn.com/politics"]).await;
    assert_eq!(code.unwrap(), 0, "{out}");
    let want = "continue there with `kubectl mesh explain pod/istio-egressgateway-5c4f-xyz -n istio-system --to edition.cnn.com:80/politics`";
    assert!(out.contains(want), "{want} missing:\n{out}");
    assert!(out.contains("endpoints agree (1)"), "Kubernetes and Envoy agree on the gateway's endpoint:\n{out}");
    assert!(out.contains("next_hop      → istio-egressgateway"), "{out}");
}

/// The EndpointSlice of Service `ns/service` with one ready endpoint `ip` (pod `pod`) on `port_name`.
fn slice(ns: &str, service: &str, port_name: &str, port: u16, ip: &str, pod: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x1y2z"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}}]})
}

/// Runs `kubectl mesh explain pod/POD -n NS EXTRA...` in process against the test API server.
async fn explain_pod(
    api: &mesh_tests::apiserver::TestApiServer,
    ns: &str,
    pod: &str,
    extra: &[&str],
) -> (anyhow::Result<u8>, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("the kubeconfig");
    let pod = format!("pod/{pod}");
    let head = ["kubectl-mesh", "explain", "--kubeconfig", kubeconfig.to_str().unwrap_or_default(), "-n", ns];
    let args = head.iter().chain(&["--timeout", "20", pod.as_str()]).chain(extra).map(|s| s.to_string()).collect();
    mesh_tests::support::run_plugin(args).await
}

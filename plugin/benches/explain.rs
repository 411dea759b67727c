//! Benchmark of `kubectl mesh explain` over a generated ~50 MB config dump with thousands of
//! services: parse, whole-pod explain (report + text), one trace; then the same file through
//! `jq . >/dev/null` and through the `kubectl-mesh` binary end to end, with peak memory (GNU time).
//!
//! Run: `cargo bench -p kubectl-mesh --bench explain` (`MESH_BENCH_MB` sets the size, default 50).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubectl_mesh::config_dump::ConfigDump;
use kubectl_mesh::explain::{Format, Input, Request, explain, render_report};

const HTTP_PORTS: [u16; 8] = [80, 443, 8080, 9080, 9090, 5000, 3000, 8443];

fn service(i: usize) -> (String, String, u16, [u8; 4]) {
    let name = format!("svc-{i}");
    let ns = format!("ns-{}", i % 97);
    let port = HTTP_PORTS[i % HTTP_PORTS.len()];
    let vip = [10, (96 + i / 65536) as u8, ((i / 256) % 256) as u8, (i % 256) as u8];
    (name, ns, port, vip)
}

/// Writes an Istio-shaped dump of `services` services (pretty JSON, as the admin API prints it).
fn generate(path: &Path, services: usize) -> std::io::Result<u64> {
    let mut clusters = String::new();
    let mut endpoints = String::new();
    let mut listeners = String::new();
    let mut routes: Vec<String> = vec![String::new(); HTTP_PORTS.len()];
    for i in 0..services {
        let (name, ns, port, vip) = service(i);
        let host = format!("{name}.{ns}.svc.cluster.local");
        let cluster = format!("outbound|{port}||{host}");
        let dr = format!("/apis/networking.istio.io/v1/namespaces/{ns}/destination-rule/{name}");
        let _ = write!(
            clusters,
            r#"{}{{"version_info":"2026-01-01T00:00:00Z/7","cluster":{{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"{cluster}","type":"EDS","eds_cluster_config":{{"eds_config":{{"ads":{{}},"initial_fetch_timeout":"0s","resource_api_version":"V3"}},"service_name":"{cluster}"}},"connect_timeout":"10s","lb_policy":"LEAST_REQUEST","circuit_breakers":{{"thresholds":[{{"max_connections":4294967295,"max_pending_requests":4294967295,"max_requests":4294967295,"max_retries":4294967295}}]}},"metadata":{{"filter_metadata":{{"istio":{{"config":"{dr}","services":[{{"host":"{host}","name":"{name}","namespace":"{ns}"}}]}}}}}},"common_lb_config":{{"locality_weighted_lb_config":{{}}}}}},"last_updated":"2026-01-01T00:00:00.000Z"}}"#,
            if i == 0 { "" } else { "," }
        );
        let mut eps = String::new();
        for e in 0..3 {
            let _ = write!(
                eps,
                r#"{}{{"endpoint":{{"address":{{"socket_address":{{"address":"10.{}.{}.{}","port_value":{port}}}}},"health_check_config":{{}}}},"health_status":"HEALTHY","metadata":{{"filter_metadata":{{"istio":{{"workload":"{name}-v{e};{ns};{name};v{e};Kubernetes"}},"envoy.transport_socket_match":{{"tlsMode":"istio"}}}}}},"load_balancing_weight":1}}"#,
                if e == 0 { "" } else { "," },
                1 + i % 200,
                (i / 200) % 256,
                e + 1
            );
        }
        let _ = write!(
            endpoints,
            r#"{}{{"endpoint_config":{{"@type":"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment","cluster_name":"{cluster}","endpoints":[{{"locality":{{"region":"us-east1","zone":"us-east1-b"}},"lb_endpoints":[{eps}],"load_balancing_weight":3}}],"policy":{{"overprovisioning_factor":140}}}}}}"#,
            if i == 0 { "" } else { "," }
        );
        let ip = format!("{}.{}.{}.{}", vip[0], vip[1], vip[2], vip[3]);
        let short = format!("{name}.{ns}");
        let vs = format!("/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}");
        let r = &mut routes[i % HTTP_PORTS.len()];
        let _ = write!(
            r,
            r#",{{"name":"{host}:{port}","domains":["{host}","{host}:{port}","{short}","{short}:{port}","{short}.svc","{short}.svc:{port}","{ip}","{ip}:{port}"],"routes":[{{"name":"{name}-api","match":{{"prefix":"/api","case_sensitive":true,"headers":[{{"name":"x-canary","string_match":{{"exact":"true"}}}}]}},"route":{{"cluster":"{cluster}","timeout":"0s","retry_policy":{{"retry_on":"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes","num_retries":2}},"max_grpc_timeout":"0s"}},"metadata":{{"filter_metadata":{{"istio":{{"config":"{vs}"}}}}}},"decorator":{{"operation":"{host}:{port}/api*"}}}},{{"name":"default","match":{{"prefix":"/"}},"route":{{"cluster":"{cluster}","timeout":"0s","max_grpc_timeout":"0s"}},"decorator":{{"operation":"{host}:{port}/*"}}}}],"include_request_attempt_count":true}}"#
        );
        if i % 10 == 0 {
            let _ = write!(
                listeners,
                r#",{{"name":"{ip}_{port}","active_state":{{"version_info":"2026-01-01T00:00:00Z/7","listener":{{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"{ip}_{port}","address":{{"socket_address":{{"address":"{ip}","port_value":{port}}}}},"filter_chains":[{{"filters":[{{"name":"envoy.filters.network.tcp_proxy","typed_config":{{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","stat_prefix":"{cluster}","cluster":"{cluster}"}}}}]}}],"bind_to_port":false,"traffic_direction":"OUTBOUND"}},"last_updated":"2026-01-01T00:00:00.000Z"}}}}"#
            );
        }
    }
    let hcm = |port: u16| {
        format!(
            r#"{{"name":"0.0.0.0_{port}","active_state":{{"version_info":"v7","listener":{{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"0.0.0.0_{port}","address":{{"socket_address":{{"address":"0.0.0.0","port_value":{port}}}}},"filter_chains":[{{"filter_chain_match":{{"transport_protocol":"raw_buffer","application_protocols":["http/1.1","h2c"]}},"filters":[{{"name":"envoy.filters.network.http_connection_manager","typed_config":{{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager","stat_prefix":"outbound_0.0.0.0_{port}","rds":{{"config_source":{{"ads":{{}},"resource_api_version":"V3"}},"route_config_name":"{port}"}},"http_filters":[{{"name":"envoy.filters.http.router"}}]}}}}]}}],"listener_filters":[{{"name":"envoy.filters.listener.tls_inspector"}},{{"name":"envoy.filters.listener.http_inspector"}}],"bind_to_port":false}}}}}}"#
        )
    };
    let virtual_outbound = r#"{"name":"virtualOutbound","active_state":{"listener":{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"virtualOutbound","address":{"socket_address":{"address":"0.0.0.0","port_value":15001}},"filter_chains":[{"name":"virtualOutbound-catchall-tcp","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","stat_prefix":"PassthroughCluster","cluster":"PassthroughCluster"}}]}],"use_original_dst":true}}}"#;
    let mut http_listeners = String::new();
    for p in HTTP_PORTS {
        let _ = write!(http_listeners, ",{}", hcm(p));
    }
    let mut route_configs = String::new();
    for (k, p) in HTTP_PORTS.iter().enumerate() {
        let _ = write!(
            route_configs,
            r#"{}{{"version_info":"v7","route_config":{{"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":"{p}","virtual_hosts":[{{"name":"allow_any","domains":["*"],"routes":[{{"name":"allow_any","match":{{"prefix":"/"}},"route":{{"cluster":"PassthroughCluster"}}}}]}}{}],"validate_clusters":false}}}}"#,
            if k == 0 { "" } else { "," },
            routes[k]
        );
    }
    let compact = format!(
        r#"{{"configs":[{{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump","bootstrap":{{"node":{{"id":"sidecar~10.1.0.5~foo.foo-namespace~foo-namespace.svc.cluster.local","cluster":"foo.foo-namespace","metadata":{{"NAMESPACE":"foo-namespace"}}}}}}}},{{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","dynamic_active_clusters":[{clusters}]}},{{"@type":"type.googleapis.com/envoy.admin.v3.EndpointsConfigDump","dynamic_endpoint_configs":[{endpoints}]}},{{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[{virtual_outbound}{http_listeners}{listeners}]}},{{"@type":"type.googleapis.com/envoy.admin.v3.RoutesConfigDump","dynamic_route_configs":[{route_configs}]}}]}}"#
    );
    drop((clusters, endpoints, listeners, routes));
    let value: serde_json::Value = serde_json::from_str(&compact)?;
    drop(compact);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut file, &value)?;
    file.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    println!("{label:<42} {:>9.1} ms", took.as_secs_f64() * 1000.0);
    (out, took)
}

/// Runs a command under GNU time: (seconds, peak RSS in KiB).
fn measured(cmd: &mut Command) -> Option<(f64, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return None;
    }
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new(time)
        .arg("-f")
        .arg("%e %M")
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().last()?;
    let mut it = last.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("explain: bench");
        return Ok(());
    }
    let mb: u64 = std::env::var("MESH_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config_dump.json");
    // ~7.4 KB per service in pretty JSON.
    let services = (mb as usize * 1024 * 1024) / 7400;
    let size = generate(&path, services)?;
    println!("generated {path:?}: {:.1} MB, {services} services", size as f64 / 1e6);

    let bytes = std::fs::read(&path)?;
    let (dump, _) = time("parse", || ConfigDump::parse(&bytes));
    let dump = dump?;
    drop(bytes);
    let (report, _) =
        time("whole-pod explain (report)", || explain(&dump, Input { source: "bench".into(), ..Default::default() }));
    let (text, _) = time("whole-pod explain (render text)", || render_report(&report, Format::Text, false));
    println!("  {} outbound listeners, {} lines of text", report.outbound.len(), text?.lines().count());
    drop(report);
    let target = service(services / 2);
    let to = format!("{}.{}:{}/api/x", target.0, target.1, target.2);
    let req = Request::parse(&to, &["x-canary: true".to_string()], None, None)?;
    let (traced, _) = time("one trace (--to)", || {
        explain(&dump, Input { source: "bench".into(), request: Some(&req), ..Default::default() })
    });
    let outcome = traced.trace.as_ref().map(|t| t.outcome.summary.clone()).unwrap_or_default();
    println!("  {to}: {outcome}");
    drop(dump);

    let bin = env!("CARGO_BIN_EXE_kubectl-mesh");
    match measured(Command::new(bin).args(["explain", "--file"]).arg(&path).args(["-o", "json"])) {
        Some((s, kb)) => println!(
            "{:<42} {:>9.1} ms, peak {:.0} MB ({:.2}x the file)",
            "kubectl-mesh explain --file (end to end)",
            s * 1000.0,
            kb as f64 / 1024.0,
            kb as f64 * 1024.0 / size as f64
        ),
        None => println!("kubectl-mesh end to end: /usr/bin/time (GNU time) not installed"),
    }
    if let Some((s, kb)) =
        measured(Command::new(bin).args(["explain", "--file"]).arg(&path).args(["--to", &to, "-H", "x-canary: true"]))
    {
        println!(
            "{:<42} {:>9.1} ms, peak {:.0} MB",
            "kubectl-mesh explain --file --to",
            s * 1000.0,
            kb as f64 / 1024.0
        );
    }
    match measured(Command::new("jq").arg(".").arg(&path)) {
        Some((s, kb)) => {
            println!("{:<42} {:>9.1} ms, peak {:.0} MB", "jq . >/dev/null", s * 1000.0, kb as f64 / 1024.0)
        }
        None => println!("jq or /usr/bin/time not installed"),
    }
    Ok(())
}

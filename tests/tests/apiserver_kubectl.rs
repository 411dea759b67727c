//! The test API server seen through the REAL kubectl ($MESH_KUBECTL): discovery, tables, JSON output,
//! selectors, Istio custom resources, errors shaped like a real server's, pods/proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_tests::Tool;
use mesh_tests::apiserver::TestApiServer;
use serde_json::{Value, json};

struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &TestApiServer) -> Result<Self> {
        let bin = Tool::Kubectl.path()?;
        let dir = tempfile::tempdir()?;
        server.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        Ok(Kubectl { bin, dir })
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        let home: &Path = self.dir.path();
        let out = Command::new(&self.bin)
            .args(["--kubeconfig", &home.join("kubeconfig").display().to_string()])
            .args(["--cache-dir", &home.join("cache").display().to_string()])
            .args(["--request-timeout", "20s"])
            .args(args)
            .env("HOME", home)
            .env_remove("KUBECONFIG")
            .output()
            .with_context(|| format!("running {} {args:?}", self.bin.display()))?;
        Ok(out)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!("kubectl {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

fn seed(server: &TestApiServer) -> Result<()> {
    server.put(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "foo", "namespace": "foo", "labels": {"app": "foo", "version": "v1"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/foo:1.0"},
                                 {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0"}]},
        "status": {"phase": "Running", "podIP": "10.244.0.7",
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0},
                                         {"name": "istio-proxy", "ready": true, "restartCount": 1}]}}))?;
    server.put(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bar", "namespace": "bar", "labels": {"app": "bar"}},
        "spec": {"containers": [{"name": "bar", "image": "registry.example/bar:2.1"}]},
        "status": {"phase": "Pending"}}))?;
    server.put(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bar", "namespace": "foo"},
        "spec": {"hosts": ["bar-service.foo.svc.cluster.local"], "gateways": ["mesh"]}}))?;
    server.put(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bar-service", "namespace": "foo"},
        "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 50002, "targetPort": 50002}],
                 "selector": {"app": "bar"}, "clusterIP": "10.96.160.81", "type": "ClusterIP"}}))?;
    Ok(())
}

#[test]
fn kubectl_gets_pods_namespaces_and_istio_objects() -> Result<()> {
    let server = TestApiServer::start()?;
    seed(&server)?;
    let k = Kubectl::new(&server)?;

    let all: Value = serde_json::from_str(&k.ok(&["get", "pods", "-A", "-o", "json"])?)?;
    assert_eq!(all["kind"], "List");
    let names: Vec<&str> =
        all["items"].as_array().context("items")?.iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, vec!["bar", "foo"]);
    assert_eq!(all["items"][1]["kind"], "Pod", "kubectl restores kind on list items");

    let ns = k.ok(&["get", "ns"])?;
    let header: Vec<&str> = ns.lines().next().context("no header")?.split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "STATUS", "AGE"]);
    for want in ["default", "foo", "bar", "kube-system"] {
        assert!(ns.lines().any(|l| l.split_whitespace().next() == Some(want) && l.contains("Active")), "{want}:\n{ns}");
    }

    let pod = k.ok(&["get", "pod", "foo", "-n", "foo"])?;
    let lines: Vec<Vec<&str>> = pod.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{pod}");
    assert_eq!(&lines[1][..4], &["foo", "2/2", "Running", "1"], "{pod}");

    let wide = k.ok(&["get", "pods", "-n", "foo", "-o", "wide"])?;
    assert!(wide.lines().next().is_some_and(|h| h.contains("IP") && h.contains("NODE")), "{wide}");
    assert!(wide.contains("10.244.0.7"), "{wide}");

    let vs = k.ok(&["get", "virtualservices", "-n", "foo"])?;
    let lines: Vec<Vec<&str>> = vs.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["NAME", "GATEWAYS", "HOSTS", "AGE"], "{vs}");
    assert_eq!(&lines[1][..3], &["bar", "[\"mesh\"]", "[\"bar-service.foo.svc.cluster.local\"]"], "{vs}");
    let vs_json: Value = serde_json::from_str(&k.ok(&["get", "vs", "bar", "-n", "foo", "-o", "json"])?)?;
    assert_eq!(vs_json["apiVersion"], "networking.istio.io/v1");
    assert_eq!(vs_json["spec"]["hosts"][0], "bar-service.foo.svc.cluster.local");

    let crds = k.ok(&["get", "crd"])?;
    let header: Vec<&str> = crds.lines().next().context("no header")?.split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "CREATED", "AT"], "{crds}");
    assert!(crds.lines().any(|l| l.starts_with("virtualservices.networking.istio.io ")), "{crds}");

    let svc = k.ok(&["get", "svc", "-n", "foo"])?;
    assert!(svc.contains("10.96.160.81") && svc.contains("50002/TCP"), "{svc}");

    let labelled = k.ok(&["get", "pods", "-A", "-l", "app=bar", "-o", "name"])?;
    assert_eq!(labelled.trim(), "pod/bar");
    let fields = k.ok(&["get", "pods", "-A", "--field-selector", "status.phase=Running", "-o", "name"])?;
    assert_eq!(fields.trim(), "pod/foo");
    let none = k.run(&["get", "pods", "-n", "foo", "-l", "app=nothing"])?;
    assert!(none.status.success());
    assert_eq!(String::from_utf8_lossy(&none.stderr).trim(), "No resources found in foo namespace.");
    Ok(())
}

#[test]
fn kubectl_sees_real_error_messages() -> Result<()> {
    let server = TestApiServer::start()?;
    seed(&server)?;
    let k = Kubectl::new(&server)?;

    let missing = k.run(&["get", "pod", "nonexistent", "-n", "foo"])?;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Error from server (NotFound): pods \"nonexistent\" not found"
    );

    server.forbid("list", "pods", None);
    let denied = k.run(&["get", "pods", "-A"])?;
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&denied.stderr).trim(),
        "Error from server (Forbidden): pods is forbidden: User \"admin\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    server.forbid("get", "virtualservices", Some("foo"));
    let denied = k.run(&["get", "vs", "bar", "-n", "foo"])?;
    assert_eq!(
        String::from_utf8_lossy(&denied.stderr).trim(),
        "Error from server (Forbidden): virtualservices.networking.istio.io \"bar\" is forbidden: User \"admin\" cannot get resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"foo\""
    );

    let unknown = k.run(&["get", "frobnicators"])?;
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr).trim(),
        "error: the server doesn't have a resource type \"frobnicators\""
    );
    Ok(())
}

#[test]
fn kubectl_api_resources_and_versions_come_from_discovery() -> Result<()> {
    let server = TestApiServer::start()?;
    let k = Kubectl::new(&server)?;
    let out = k.ok(&["api-resources"])?;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for want in [
        vec!["pods", "po", "v1", "true", "Pod"],
        vec!["namespaces", "ns", "v1", "false", "Namespace"],
        vec!["endpointslices", "discovery.k8s.io/v1", "true", "EndpointSlice"],
        vec!["virtualservices", "vs", "networking.istio.io/v1", "true", "VirtualService"],
        vec!["destinationrules", "dr", "networking.istio.io/v1", "true", "DestinationRule"],
    ] {
        assert!(rows.contains(&want), "missing {want:?} in:\n{out}");
    }
    let versions = k.ok(&["api-versions"])?;
    for want in ["v1", "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"] {
        assert!(versions.lines().any(|l| l == want), "{want} missing:\n{versions}");
    }
    let version: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])?)?;
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.36.2");
    // kubectl asked for aggregated discovery and got it.
    assert!(
        server.requests().iter().any(|r| r.starts_with("GET /apis?") || r == "GET /apis"),
        "{:?}",
        server.requests()
    );
    Ok(())
}

#[test]
fn kubectl_raw_goes_through_pods_proxy() -> Result<()> {
    let server = TestApiServer::start()?;
    seed(&server)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let handle = std::thread::spawn(move || -> Result<String> {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0_u8; 4096];
        let n = s.read(&mut buf)?;
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nproxied!\n",
        )?;
        Ok(request)
    });
    server.map_pod_port("foo", "foo", 15020, addr);
    let k = Kubectl::new(&server)?;
    let out = k.ok(&["get", "--raw", "/api/v1/namespaces/foo/pods/foo:15020/proxy/stats/prometheus?x=1"])?;
    assert_eq!(out, "proxied!\n");
    let request = handle.join().map_err(|_| anyhow::anyhow!("proxy target thread panicked"))??;
    let first_line = request.lines().next().unwrap_or("");
    assert!(first_line.starts_with("GET /stats/prometheus?") && first_line.contains("x=1"), "{request}");
    assert!(!request.to_lowercase().contains("authorization"), "the bearer token must not leak to the pod");

    // A port bound to the pod's localhost only is not reachable through the proxy.
    server.map_pod_localhost_port("foo", "foo", 15000, addr);
    let refused = k.run(&["get", "--raw", "/api/v1/namespaces/foo/pods/foo:15000/proxy/config_dump"])?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("connection refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    Ok(())
}

#[test]
fn kubectl_get_watch_prints_table_rows_as_objects_change() -> Result<()> {
    use std::io::BufRead;
    let server = TestApiServer::start()?;
    seed(&server)?;
    let k = Kubectl::new(&server)?;
    let home = k.dir.path();
    let mut child = Command::new(&k.bin)
        .args(["--kubeconfig", &home.join("kubeconfig").display().to_string()])
        .args(["--cache-dir", &home.join("cache").display().to_string()])
        .args(["get", "pods", "-n", "foo", "-w"])
        .env("HOME", home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut wait_for = |want: &str| -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !lines.iter().any(|l: &String| l.starts_with(want)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => bail!("no line starting with {want:?}; got {lines:?}"),
            }
        }
        Ok(())
    };
    let result = (|| -> Result<()> {
        wait_for("foo ")?;
        server.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "namespace": "foo"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Pending"}}))?;
        wait_for("late ")?;
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{lines:?}");
    let late: Vec<&str> =
        lines.iter().find(|l| l.starts_with("late ")).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    assert_eq!(&late[..3], &["late", "0/1", "Pending"], "{lines:?}");
    Ok(())
}

#[test]
fn kubectl_label_annotate_and_delete_change_objects() -> Result<()> {
    let server = TestApiServer::start()?;
    seed(&server)?;
    let k = Kubectl::new(&server)?;
    assert_eq!(k.ok(&["label", "pod", "foo", "-n", "foo", "canary=true"])?.trim(), "pod/foo labeled");
    assert_eq!(
        k.ok(&["annotate", "vs", "bar", "-n", "foo", "owner=mesh"])?.trim(),
        "virtualservice.networking.istio.io/bar annotated"
    );
    let pod = server.get("v1", "Pod", "foo", "foo").context("pod foo")?;
    assert_eq!(pod["metadata"]["labels"]["canary"], "true");
    let vs = server.get("networking.istio.io/v1", "VirtualService", "foo", "bar").context("vs bar")?;
    assert_eq!(vs["metadata"]["annotations"]["owner"], "mesh");

    // kubectl sends built-in objects it creates as protobuf, which this server does not decode.
    let create = k.run(&["create", "namespace", "made-by-kubectl"])?;
    assert!(String::from_utf8_lossy(&create.stderr).contains("UnsupportedMediaType"), "{create:?}");

    let deleted = k.ok(&["delete", "pod", "foo", "-n", "foo"])?;
    assert!(deleted.starts_with("pod \"foo\" deleted"), "{deleted}");
    assert!(server.get("v1", "Pod", "foo", "foo").is_none());
    Ok(())
}

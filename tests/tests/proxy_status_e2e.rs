//! `kubectl mesh proxy-status` end to end: real Envoy sidecars, the test discovery server as istiod,
//! the test API server, and the plugin run both through the real kubectl (plugin discovery on PATH)
//! and directly.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mesh_tests::Tool;
use mesh_tests::apiserver::TestApiServer;
use mesh_tests::sidecar::{Sidecar, SidecarSpec};
use mesh_tests::xds::state::CLUSTER_TYPE;
use mesh_tests::xds::{DiscoveryServer, Scenario};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const ISTIOD: &str = "istiod-6d8f7c9b5-x2k4q";

/// The plugin binary: `$MESH_PLUGIN` (relative to the workspace root), else `<target>/debug/kubectl-mesh`, built if missing or older
/// than this test.
fn plugin() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = mesh_tests::support::plugin_from_env() {
                return if p.is_file() { Ok(p) } else { Err(format!("MESH_PLUGIN: no file at {}", p.display())) };
            }
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let debug = exe.parent().and_then(Path::parent).ok_or("no target dir")?.to_path_buf();
            let bin = debug.join("kubectl-mesh");
            let fresh = |b: &Path| {
                let (Ok(b), Ok(t)) = (std::fs::metadata(b), std::fs::metadata(&exe)) else { return false };
                matches!((b.modified(), t.modified()), (Ok(b), Ok(t)) if b >= t)
            };
            if !fresh(&bin) {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = std::process::Command::new(cargo)
                    .args(["build", "-q", "--workspace", "--bins"]) // as tests/run does: no second feature set
                    .current_dir(mesh_tests::tools::repo_root())
                    .status()
                    .map_err(|e| format!("building kubectl-mesh: {e}"))?;
                if !status.success() {
                    return Err(format!("cargo build -p kubectl-mesh failed: {status}"));
                }
            }
            if bin.is_file() { Ok(bin) } else { Err(format!("kubectl-mesh not found at {}", bin.display())) }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A mesh: istiod (the discovery server) and an API server that knows it, plus sidecars.
struct Mesh {
    api: TestApiServer,
    istiod: DiscoveryServer,
    sidecars: Vec<Sidecar>,
    dir: tempfile::TempDir,
}

impl Mesh {
    async fn start() -> anyhow::Result<Mesh> {
        let istiod = DiscoveryServer::start_named(ISTIOD, Scenario::classic()).await?;
        let api = TestApiServer::start()?;
        for ns in ["istio-system", "foo-namespace", "ghost-namespace"] {
            api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
        }
        let mesh = Mesh { api, istiod, sidecars: Vec::new(), dir: tempfile::tempdir()? };
        mesh.add_istiod(ISTIOD, mesh.istiod.debug_addr(), mesh.istiod.xds_addr())?;
        mesh.api.write_kubeconfig(&mesh.kubeconfig())?;
        // An injected pod whose proxy never connected.
        let ghost = SidecarSpec::new("ghost", "ghost-namespace", Ipv4Addr::new(10, 1, 0, 9));
        mesh.api.put(ghost.pod_object())?;
        // A pod without a sidecar: never listed.
        mesh.api.put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "plain", "namespace": "foo-namespace", "labels": {"app": "plain"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]}, "status": {"phase": "Running"}}))?;
        Ok(mesh)
    }

    fn add_istiod(&self, name: &str, debug: SocketAddr, xds: SocketAddr) -> anyhow::Result<()> {
        self.api.put(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "istio-system", "labels": {"app": "istiod", "istio.io/rev": "default"}},
            "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.10"}}))?;
        self.api.map_pod_port("istio-system", name, 15014, debug);
        self.api.map_pod_port("istio-system", name, 15010, xds);
        Ok(())
    }

    async fn add_sidecar(&mut self, pod: &str, ns: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        let spec = SidecarSpec::new(pod, ns, ip);
        self.api.put(spec.pod_object())?;
        let sidecar = Sidecar::start(spec, self.istiod.xds_addr())?;
        sidecar.wait_ready(TIMEOUT).await?;
        self.api.map_pod_localhost_port(ns, pod, 15000, sidecar.admin());
        self.istiod.wait_synced(&sidecar.proxy_id(), TIMEOUT).await?;
        self.sidecars.push(sidecar);
        Ok(())
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs `kubectl-mesh proxy-status ARGS` directly.
    async fn direct(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = tokio::process::Command::new(plugin()?);
        cmd.arg("proxy-status").args(args).arg("--kubeconfig").arg(self.kubeconfig());
        run(cmd).await
    }

    /// Runs `kubectl mesh proxy-status ARGS` through the real kubectl, which finds the plugin on PATH.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let bin_dir = self.dir.path().join("bin");
        if !bin_dir.exists() {
            std::fs::create_dir_all(&bin_dir)?;
            std::os::unix::fs::symlink(plugin()?, bin_dir.join("kubectl-mesh"))?;
        }
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = tokio::process::Command::new(Tool::Kubectl.path()?);
        cmd.env("PATH", path).env("KUBECONFIG", self.kubeconfig()).args(["mesh", "proxy-status"]).args(args);
        run(cmd).await
    }
}

async fn run(mut cmd: tokio::process::Command) -> anyhow::Result<Output> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.context("command hung for 60s")??;
    Ok(out)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn row<'a>(out: &'a str, name: &str) -> anyhow::Result<&'a str> {
    match out.lines().find(|l| l.split_whitespace().next() == Some(name)) {
        Some(l) => Ok(l),
        None => bail!("no row {name} in:\n{out}"),
    }
}

#[tokio::test]
async fn synced_not_connected_and_exit_codes_through_kubectl_and_directly() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();

    // Everything in foo-namespace is synced: exit 0, istioctl's columns, SYNCED with an age.
    let out = mesh.kubectl(&["-n", "foo-namespace"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"]);
    let foo = row(&stdout, "foo.foo-namespace").unwrap();
    for synced in ["CDS", "LDS", "EDS", "RDS"] {
        assert!(foo.matches("SYNCED (").count() == 4, "{synced} not SYNCED with an age: {foo}");
    }
    assert!(foo.contains("IGNORED") && foo.contains(ISTIOD) && foo.contains("Kubernetes") && foo.contains("1.28.0"));
    assert!(!stdout.contains("plain."), "a pod without a sidecar is not listed");

    // All namespaces: the injected pod with no Envoy shows up NOT CONNECTED, and the exit code is 2.
    let out = mesh.direct(&["-A"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let ghost = row(&stdout, "ghost.ghost-namespace").unwrap();
    assert!(ghost.contains("NOT CONNECTED"), "{ghost}");
    row(&stdout, "foo.foo-namespace").unwrap();

    // JSON: the documented schema.
    let out = mesh.direct(&["-A", "-o", "json"]).await.unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&doc["apiVersion"], &doc["kind"]), (&json!("mesh.dev/v1alpha1"), &json!("ProxyStatus")));
    assert_eq!(doc["synced"], false);
    let proxies = doc["proxies"].as_array().unwrap();
    let foo = proxies.iter().find(|p| p["name"] == "foo.foo-namespace").unwrap();
    assert_eq!(foo["connected"], true);
    assert_eq!(foo["hasPod"], true);
    assert_eq!(foo["istiod"], ISTIOD);
    assert_eq!(foo["xds"]["CDS"]["status"], "SYNCED");
    assert!(foo["xds"]["CDS"]["ageSeconds"].is_u64());
    assert_eq!(foo["xds"]["ECDS"]["status"], "IGNORED");
    let ghost = proxies.iter().find(|p| p["name"] == "ghost.ghost-namespace").unwrap();
    assert_eq!(ghost["connected"], false);
    assert_eq!(ghost["xds"]["LDS"]["status"], "NOT_CONNECTED");
    assert_eq!(doc["istiods"][0]["source"], "http");

    // YAML carries the same document.
    let out = mesh.direct(&["-n", "foo-namespace", "-o", "yaml"]).await.unwrap();
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("name: foo.foo-namespace") && yaml.contains("status: SYNCED"), "{yaml}");

    // The command itself failing: exit 1 (no istiod in the given namespace).
    let out = mesh.direct(&["-A", "--istio-namespace", "nowhere"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no running istiod pods"), "{}", text(&out));
    let out = mesh.kubectl(&["-o", "bogus"]).await.unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[tokio::test]
async fn nack_shows_error_with_envoys_message() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();
    mesh.istiod.push_invalid_cluster("outbound|1|bad|broken.example");
    let proxy = mesh
        .istiod
        .wait_for("foo.foo-namespace", "NACKing", TIMEOUT, |p| {
            p.watches.get(CLUSTER_TYPE).is_some_and(|w| !w.last_error.is_empty())
        })
        .await
        .unwrap();
    let envoy_message = proxy.watches[CLUSTER_TYPE].last_error.clone();

    let out = mesh.kubectl(&["-n", "foo-namespace", "-o", "wide"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let foo = row(&stdout, "foo.foo-namespace").unwrap();
    assert!(foo.contains("ERROR ("), "{foo}");
    let first_line = envoy_message.lines().next().unwrap();
    assert!(foo.contains(&format!("CDS: {first_line}")), "wide output carries Envoy's NACK text {first_line:?}: {foo}");

    let out = mesh.direct(&["-n", "foo-namespace", "-o", "json"]).await.unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["proxies"][0]["xds"]["CDS"]["status"], "ERROR");
    assert_eq!(doc["proxies"][0]["xds"]["CDS"]["error"], envoy_message.as_str());
}

#[tokio::test]
async fn stale_proxy_and_diff_shows_cluster_envoy_lacks() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();
    mesh.istiod.hold("foo.foo-namespace", CLUSTER_TYPE);
    mesh.istiod.update(|s| {
        let mut svc = s.services[0].clone();
        svc.name = "baz-service".into();
        svc.vip = Ipv4Addr::new(10, 96, 0, 9);
        s.services.push(svc);
    });
    mesh.istiod
        .wait_for("foo.foo-namespace", "STALE", TIMEOUT, |p| {
            p.watches.get(CLUSTER_TYPE).is_some_and(|w| w.nonce_sent != w.nonce_acked)
        })
        .await
        .unwrap();

    let out = mesh.direct(&["-n", "foo-namespace"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let foo = row(&stdout, "foo.foo-namespace").unwrap();
    let cds = foo.split_whitespace().nth(2).unwrap();
    assert_eq!(cds, "STALE", "{foo}");

    // POD mode: istiod's config has the new clusters, Envoy's /config_dump (port-forward to 15000) lacks them.
    let out = mesh.kubectl(&["foo.foo-namespace"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("Clusters Don't Match"), "{stdout}");
    assert!(
        stdout.contains("- outbound|50002||baz-service.bar-namespace.svc.cluster.local"),
        "the cluster istiod has and Envoy lacks is named: {stdout}"
    );
    assert!(stdout.contains("Listeners Match"), "{stdout}");

    // Released: Envoy catches up, the diff is clean, exit 0.
    mesh.istiod.release("foo.foo-namespace", CLUSTER_TYPE);
    mesh.istiod.wait_synced("foo.foo-namespace", TIMEOUT).await.unwrap();
    let out = mesh.direct(&["foo", "-n", "foo-namespace", "-o", "json"]).await.unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!((&doc["apiVersion"], &doc["kind"]), (&json!("mesh.dev/v1alpha1"), &json!("ProxyStatusDiff")));
    assert_eq!(doc["diff"]["clusters"]["missing_in_envoy"], json!([]));
    assert!(doc["diff"]["clusters"]["matching"].as_u64().unwrap() > 5);
}

#[tokio::test]
async fn wait_polls_until_synced() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();
    mesh.istiod.hold("foo.foo-namespace", CLUSTER_TYPE);
    mesh.istiod.update(|s| s.services[0].endpoints.truncate(2));
    mesh.istiod
        .wait_for("foo.foo-namespace", "STALE", TIMEOUT, |p| {
            p.watches.get(CLUSTER_TYPE).is_some_and(|w| w.nonce_sent != w.nonce_acked)
        })
        .await
        .unwrap();
    let started = Instant::now();
    let waiting = mesh.direct(&["-n", "foo-namespace", "--wait=30s"]);
    let release = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        mesh.istiod.release("foo.foo-namespace", CLUSTER_TYPE);
    };
    let (out, ()) = tokio::join!(waiting, release);
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited for the release");
    assert!(row(&text(&out), "foo.foo-namespace").unwrap().contains("SYNCED"));

    // A wait that cannot succeed ends at its timeout with exit 2.
    mesh.istiod.hold("foo.foo-namespace", CLUSTER_TYPE);
    mesh.istiod.update(|s| s.services[0].endpoints.truncate(1));
    let started = Instant::now();
    let out = mesh.direct(&["-n", "foo-namespace", "--wait=2s"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn unreachable_istiod_times_out_within_the_limit() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();
    // A second istiod that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    mesh.add_istiod("istiod-hung", silent_addr, silent_addr).unwrap();

    let started = Instant::now();
    let out = mesh.direct(&["-n", "foo-namespace", "--timeout", "1s"]).await.unwrap();
    let elapsed = started.elapsed();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(stdout.contains("istiod istiod-hung:") && stdout.contains("no answer within 1s"), "{stdout}");
    assert!(row(&stdout, "foo.foo-namespace").unwrap().contains("SYNCED"), "the healthy istiod still reports");
    hold.abort();
}

#[tokio::test]
async fn forbidden_requests_name_the_missing_rbac_permission() {
    let mesh = Mesh::start().await.unwrap();
    mesh.api.forbid("list", "pods", Some("foo-namespace"));
    let out = mesh.kubectl(&["-n", "foo-namespace"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("list pods in namespace foo-namespace: pods is forbidden: User "), "{stdout}");
    assert!(
        stdout.contains(
            "missing RBAC permission: grant it with a Role in namespace foo-namespace with the rule {apiGroups: [\"\"], \
             resources: [\"pods\"], verbs: [\"list\"]}"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("Some(") && !stdout.contains("Status {"), "{stdout}");

    // A WebSocket port-forward needs both verbs (Kubernetes 1.35+): missing either one, the hint names both.
    for verb in ["create", "get"] {
        mesh.api.allow_all();
        mesh.api.forbid(verb, "pods/portforward", Some("istio-system"));
        let out = mesh.direct(&["-n", "foo-namespace"]).await.unwrap();
        let stdout = text(&out);
        assert_eq!(out.status.code(), Some(1), "no istiod could be asked: {stdout}");
        assert!(stdout.contains(" pods/portforward istiod"), "{stdout}");
        assert!(
            stdout.contains(
                "grant it with a Role in namespace istio-system with the rule {apiGroups: [\"\"], resources: \
                 [\"pods/portforward\"], verbs: [\"get\", \"create\"]}"
            ),
            "{verb}: {stdout}"
        );
        assert!(!stdout.contains("Some(") && !stdout.contains("Status {"), "{stdout}");
    }
}

#[tokio::test]
async fn xds_fallback_and_admin_via_proxy() {
    let mut mesh = Mesh::start().await.unwrap();
    mesh.add_sidecar("foo", "foo-namespace", Ipv4Addr::new(10, 1, 0, 5)).await.unwrap();
    // istiod's HTTP debug port is closed: syncz comes from the xDS debug type on 15010.
    let closed = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
    mesh.api.map_pod_port("istio-system", ISTIOD, 15014, closed);
    let out = mesh.direct(&["-n", "foo-namespace", "-o", "json"]).await.unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["istiods"][0]["source"], "xds");
    assert_eq!(doc["proxies"][0]["istiod"], ISTIOD, "from the control plane identifier");
    assert_eq!(doc["proxies"][0]["xds"]["RDS"]["status"], "SYNCED");

    // Envoy's admin on the pod IP: --admin-via proxy reaches it through the API server's pod proxy.
    let admin = mesh.sidecars[0].admin();
    mesh.api.map_pod_port("foo-namespace", "foo", 15000, admin);
    let out = mesh.direct(&["foo.foo-namespace", "--admin-via", "proxy"]).await.unwrap();
    let stdout = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Clusters Match") && stdout.contains("Routes Match"), "{stdout}");
}

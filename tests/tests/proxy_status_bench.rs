//! Benchmark (not a timed test): end-to-end wall time of `kubectl-mesh proxy-status -A` against the
//! test servers with 1,000 and 10,000 proxies in istiod's syncz (each with its injected pod in the
//! API server). Prints the times; asserts only that every proxy is reported. Goals: < 1 s and < 5 s.
//!
//! The 10,000 case runs with `--run-ignored all` (it needs a few seconds of setup):
//! `cargo nextest run -p mesh-tests proxy_status_bench:: --run-ignored all --no-capture`
//! (`MESH_PLUGIN` names another plugin binary; a relative path is taken from the workspace root).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesh_tests::apiserver::TestApiServer;
use mesh_tests::sidecar::SidecarSpec;
use mesh_tests::xds::{DiscoveryServer, Scenario};
use serde_json::json;

fn plugin() -> anyhow::Result<PathBuf> {
    if let Some(p) = mesh_tests::support::plugin_from_env() {
        anyhow::ensure!(p.is_file(), "MESH_PLUGIN: no file at {}", p.display());
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let debug = exe.parent().and_then(|d| d.parent()).ok_or_else(|| anyhow::anyhow!("no target dir"))?.to_path_buf();
    let bin = debug.join("kubectl-mesh");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "--workspace", "--bins"]) // as tests/run does: no second feature set
        .current_dir(mesh_tests::tools::repo_root())
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p kubectl-mesh failed: {status}");
    Ok(bin)
}

async fn bench(proxies: usize) -> anyhow::Result<()> {
    let istiod = DiscoveryServer::start_named("istiod-bench", Scenario::default()).await?;
    istiod.add_simulated_proxies("bench", proxies);
    let api = TestApiServer::start()?;
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}))?;
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}))?;
    api.put(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "istiod-bench", "namespace": "istio-system", "labels": {"app": "istiod"}},
        "spec": {"containers": [{"name": "discovery", "image": "istio/pilot"}]},
        "status": {"phase": "Running"}}))?;
    api.map_pod_port("istio-system", "istiod-bench", 15014, istiod.debug_addr());
    api.map_pod_port("istio-system", "istiod-bench", 15010, istiod.xds_addr());
    for i in 0..proxies {
        let octets = u32::try_from(i)?.to_be_bytes();
        let spec = SidecarSpec::new(&format!("sim-{i}"), "bench", Ipv4Addr::new(10, octets[1], octets[2], octets[3]));
        api.put(spec.pod_object())?;
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let bin = plugin()?;

    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out = tokio::process::Command::new(&bin)
            .args(["proxy-status", "-A", "--timeout", "60s", "--kubeconfig"])
            .arg(&kubeconfig)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), out).await??;
        times.push(started.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(out.status.code() == Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let reported = stdout.lines().filter(|l| l.contains("SYNCED (")).count();
        anyhow::ensure!(reported == proxies, "{reported} of {proxies} proxies reported");
    }
    times.sort();
    println!(
        "proxy-status -A, {proxies} proxies in syncz + {proxies} injected pods: best {:?}, median {:?} (3 runs)",
        times[0], times[1]
    );
    Ok(())
}

#[tokio::test]
async fn proxy_status_1000_proxies() {
    bench(1_000).await.unwrap();
}

#[tokio::test]
#[ignore = "benchmark with 10,000 proxies; run with --run-ignored all"]
async fn proxy_status_10000_proxies() {
    bench(10_000).await.unwrap();
}

/// The documented command failed: a relative MESH_PLUGIN was taken from `tests/`, where cargo runs
/// the test, instead of the workspace root the command is run from.
#[test]
fn relative_mesh_plugin_is_taken_from_the_workspace_root() {
    use mesh_tests::support::plugin_path;
    let root = mesh_tests::repo_root();
    assert_eq!(
        plugin_path("target/release/kubectl-mesh".into(), &root),
        Some(root.join("target/release/kubectl-mesh"))
    );
    assert_eq!(plugin_path("/opt/kubectl-mesh".into(), &root), Some(PathBuf::from("/opt/kubectl-mesh")));
    assert_eq!(plugin_path("".into(), &root), None);
    assert!(
        root.join("Cargo.toml").is_file() && root.join("tests").is_dir(),
        "{} is not the workspace root",
        root.display()
    );
}

//! Opt-in end-to-end test of the Helm chart in a real cluster: installs `charts/mesh`, labels a
//! namespace `istio-injection=enabled`, creates a pod there and checks that the API server returned
//! it injected (istio-init, istio-proxy, the `sidecar.istio.io/status` annotation), and that an
//! opted-out pod is left alone; in the `selfSigned` certificate mode, that `helm uninstall` deletes
//! the Secret the webhook created (through its ownerReference to the release's ConfigMap).
//!
//! Needs `MESH_E2E_KUBECONFIG` (a kubeconfig with cluster-admin rights on a cluster that can pull the
//! chart's images and has no other injector for the default revision) and kubectl and helm
//! (`$MESH_KUBECTL`, `$MESH_HELM`, installed by tests/run). `MESH_E2E_HELM_ARGS` adds helm arguments,
//! e.g. `--set images.webhook.registry=localhost:5001 --set images.init.registry=localhost:5001`.
//! Everything it creates is deleted at the end, also when it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mesh_core::SidecarStatus;
use mesh_tests::Tool;
use serde_json::Value;

/// How long the webhook may take to serve its first review after helm reports the release ready
/// (the self-signed certificate's caBundle is patched in asynchronously).
const FIRST_REVIEW_DEADLINE: Duration = Duration::from_secs(90);

struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
}

impl Cluster {
    fn from_env() -> Result<Cluster> {
        let Some(kubeconfig) = std::env::var_os("MESH_E2E_KUBECONFIG") else {
            bail!(
                "MESH_E2E_KUBECONFIG is not set: this test installs the chart into a real cluster. Set it to a \
                 kubeconfig with cluster-admin rights, then run: \
                 cargo nextest run --run-ignored only -p mesh-tests chart_e2e::"
            );
        };
        let kubeconfig = PathBuf::from(kubeconfig);
        ensure!(kubeconfig.is_file(), "MESH_E2E_KUBECONFIG={} is not a file", kubeconfig.display());
        Ok(Cluster { kubeconfig, kubectl: Tool::Kubectl.path()?, helm: Tool::Helm.path()? })
    }

    fn run(&self, tool: &Path, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
        let mut child = Command::new(tool)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", tool.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        ))
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut all = vec!["--request-timeout=30s"];
        all.extend_from_slice(args);
        let (ok, stdout, stderr) = self.run(&self.kubectl, &all, stdin)?;
        ensure!(ok, "kubectl {}: {stderr}", args.join(" "));
        Ok(stdout)
    }
}

/// Deletes what the test created, whatever happens.
struct Cleanup<'a> {
    cluster: &'a Cluster,
    release: String,
    release_ns: String,
    app_ns: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let c = self.cluster;
        let _ = c.run(&c.kubectl, &["delete", "namespace", &self.app_ns, "--ignore-not-found", "--wait=false"], None);
        let _ =
            c.run(&c.helm, &["uninstall", &self.release, "-n", &self.release_ns, "--wait", "--timeout", "2m"], None);
        let _ =
            c.run(&c.kubectl, &["delete", "namespace", &self.release_ns, "--ignore-not-found", "--wait=false"], None);
    }
}

fn pod_manifest(ns: &str, name: &str, labels: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
            "metadata": {{"name": "{name}", "namespace": "{ns}", "labels": {{"app": "{name}"{labels}}}}},
            "spec": {{"containers": [{{"name": "app", "image": "registry.k8s.io/pause:3.10"}}],
                      "terminationGracePeriodSeconds": 1}}}}"#
    )
}

/// Creates a pod and returns it as the API server admitted it, retrying while the webhook is not yet
/// reachable (the caBundle is being patched), for at most [`FIRST_REVIEW_DEADLINE`].
fn create_pod(cluster: &Cluster, manifest: &str, dry_run: bool) -> Result<Value> {
    let start = Instant::now();
    let mut args = vec!["create", "-o", "json", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    loop {
        match cluster.kubectl(&args, Some(manifest)) {
            Ok(out) => return Ok(serde_json::from_str(&out)?),
            Err(e) if start.elapsed() < FIRST_REVIEW_DEADLINE && e.to_string().contains("webhook") => {
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(e) => return Err(e),
        }
    }
}

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect()
}

#[test]
#[ignore = "needs a real cluster: set MESH_E2E_KUBECONFIG and run cargo nextest run --run-ignored only -p mesh-tests chart_e2e::"]
fn chart_installs_and_injects_a_labelled_namespace() {
    let cluster = Cluster::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let id = format!("{}", std::process::id());
    let cleanup = Cleanup {
        cluster: &cluster,
        release: format!("mesh-e2e-{id}"),
        release_ns: format!("mesh-e2e-{id}"),
        app_ns: format!("mesh-e2e-app-{id}"),
    };
    let chart = mesh_tests::tools::repo_root().join("charts/mesh");
    let chart = chart.to_string_lossy();
    let extra = std::env::var("MESH_E2E_HELM_ARGS").unwrap_or_default();
    let mut install = vec![
        "install",
        &cleanup.release,
        &chart,
        "-n",
        &cleanup.release_ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        "replicaCount=1",
    ];
    install.extend(extra.split_whitespace());
    let (ok, stdout, stderr) = cluster.run(&cluster.helm, &install, None).unwrap();
    assert!(ok, "helm install failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("istio-injection=enabled"), "NOTES.txt says what to label next:\n{stdout}");

    cluster.kubectl(&["create", "namespace", &cleanup.app_ns], None).unwrap();
    cluster.kubectl(&["label", "namespace", &cleanup.app_ns, "istio-injection=enabled"], None).unwrap();

    let pod = create_pod(&cluster, &pod_manifest(&cleanup.app_ns, "injected", ""), false).unwrap();
    let containers = container_names(&pod, "containers");
    let init = container_names(&pod, "initContainers");
    assert!(init.iter().any(|n| n == "istio-init"), "no istio-init in {init:?}");
    assert!(
        containers.iter().chain(&init).any(|n| n == "istio-proxy"),
        "no istio-proxy in containers {containers:?} or initContainers {init:?}"
    );
    let status =
        pod["metadata"]["annotations"]["sidecar.istio.io/status"].as_str().expect("no sidecar.istio.io/status");
    let status = SidecarStatus::parse(status).unwrap_or_else(|e| panic!("sidecar.istio.io/status: {e}"));
    assert!(status.owns_container("istio-proxy"), "{status:?}");

    let opted_out = create_pod(
        &cluster,
        &pod_manifest(&cleanup.app_ns, "opted-out", r#", "sidecar.istio.io/inject": "false""#),
        true,
    )
    .unwrap();
    assert_eq!(container_names(&opted_out, "containers"), ["app"], "an opted-out pod is left alone");
    assert!(container_names(&opted_out, "initContainers").is_empty());

    if !extra.contains("certificates.mode") {
        let secrets = [
            "get",
            "secrets",
            "-n",
            &cleanup.release_ns,
            "-l",
            "app.kubernetes.io/managed-by=mesh-webhook",
            "-o",
            "name",
        ];
        let before = cluster.kubectl(&secrets, None).unwrap();
        assert_eq!(before.lines().count(), 1, "one self-signed Secret: {before}");
        let uninstall = ["uninstall", &cleanup.release, "-n", &cleanup.release_ns, "--wait", "--timeout", "2m"];
        let (ok, stdout, stderr) = cluster.run(&cluster.helm, &uninstall, None).unwrap();
        assert!(ok, "helm uninstall failed:\n{stdout}\n{stderr}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster.kubectl(&secrets, None).unwrap().trim().is_empty() {
            assert!(Instant::now() < deadline, "the self-signed Secret outlived helm uninstall: {before}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    drop(cleanup);
}

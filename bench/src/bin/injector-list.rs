//! Benchmark of `kubectl mesh injector list -A` on a large cluster: the test API server holds one mesh
//! release (webhook configuration, Service, Deployment, ConfigMap) and `--pods` injected pods of
//! `--owners` Deployments spread over `--namespaces` labelled namespaces (every tenth owner injected
//! with an older proxy image, so outdated pods are found and compared too). Runs the command in process
//! `--rounds` times and prints the wall time of each run (fetch over TLS, parse, compare, render) and of
//! the pure listing alone.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector};
use mesh_test_apiserver::TestApiServer;
use serde_json::{Value, json};

/// Flags.
#[derive(Debug, Parser)]
struct Args {
    /// Injected pods in total.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Deployments owning them (pods are spread evenly).
    #[arg(long, default_value_t = 500)]
    owners: usize,
    /// Labelled namespaces the owners are spread over.
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const CURRENT: &str = "docker.io/istio/proxyv2:1.28.0";
const OLD: &str = "docker.io/istio/proxyv2:1.27.0";

/// One mesh release as the chart renders it, reduced to what the plugin reads.
fn release() -> Vec<Value> {
    let sel = json!({"app.kubernetes.io/instance": "mesh"});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-system"}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mesh-sidecar-injector", "labels": {"app.kubernetes.io/part-of": "mesh"}},
            "webhooks": [{"name": "namespace.sidecar-injector.istio.io",
                "clientConfig": {"service": {"name": "mesh-webhook", "namespace": "mesh-system", "path": "/inject"}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}},
                "objectSelector": {"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}}]}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mesh-webhook", "namespace": "mesh-system"},
            "spec": {"selector": sel}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mesh-webhook", "namespace": "mesh-system"},
            "spec": {"selector": {"matchLabels": sel}, "template": {"metadata": {"labels": sel}, "spec": {
                "containers": [{"name": "webhook", "args": ["--config=/etc/mesh/config/config.yaml"],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/mesh/config"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "mesh-webhook"}}]}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mesh-webhook", "namespace": "mesh-system"},
            "data": {"config.yaml": format!("proxy: {{image: {CURRENT}}}\n")}}),
    ]
}

/// The pods of owner `o` in `ns`, injected by `injector`.
fn pods(ns: &str, o: usize, count: usize, injector: &Injector) -> anyhow::Result<Vec<Value>> {
    let (deploy, hash) = (format!("app-{o}"), format!("{:x}", 0x5d8f_0000 + o));
    let template = |i: usize| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{deploy}-{hash}-{i:05}"), "generateName": format!("{deploy}-{hash}-"),
                "namespace": ns, "uid": format!("uid-{ns}-{o}-{i}"),
                "labels": {"app": deploy, "version": "v1", "pod-template-hash": hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-{hash}"),
                    "controller": true, "blockOwnerDeletion": true, "uid": format!("rs-{o}")}]},
            "spec": {"nodeName": format!("node-{}", i % 20), "serviceAccountName": deploy,
                "containers": [{"name": deploy, "image": format!("registry.example.com/{deploy}:1.0"),
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "volumeMounts": [{"name": format!("kube-api-access-{i:05}"), "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
                "volumes": [{"name": format!("kube-api-access-{i:05}"), "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]},
            "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", o % 250, i % 250)}})
    };
    let req = InjectRequest { namespace: ns, nodes_support_native_sidecars: true, ..Default::default() };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let pod = template(i);
        let Decision::Patch(patch) = injector.inject(&pod, &req) else { anyhow::bail!("{ns}/{deploy} not injected") };
        let mut injected = pod;
        json_patch::patch(&mut injected, &patch)?;
        out.push(injected);
    }
    Ok(out)
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.owners > 0 && args.namespaces > 0 && args.rounds > 0,
        "--owners, --namespaces and --rounds must be > 0"
    );
    let api = TestApiServer::start()?;
    for obj in release() {
        api.put(obj)?;
    }
    let current = Injector::new(InjectConfig::from_yaml(&format!("proxy: {{image: {CURRENT}}}"))?);
    let old = Injector::new(InjectConfig::from_yaml(&format!("proxy: {{image: {OLD}}}"))?);
    for n in 0..args.namespaces {
        api.put(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{n}"), "labels": {"istio-injection": "enabled"}}}))?;
    }
    let seeding = Instant::now();
    let (mut total, mut outdated) = (0, 0);
    for o in 0..args.owners {
        let count = args.pods / args.owners + usize::from(o < args.pods % args.owners);
        let injector = if o % 10 == 9 { &old } else { &current };
        for pod in pods(&format!("ns-{}", o % args.namespaces), o, count, injector)? {
            api.put(pod)?;
        }
        total += count;
        outdated += if o % 10 == 9 { count } else { 0 };
    }
    eprintln!(
        "seeded {total} pods of {} owners in {} namespaces in {}",
        args.owners,
        args.namespaces,
        millis(seeding.elapsed())
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;

    let mut runs = Vec::new();
    for _ in 0..args.rounds {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let argv = [
            "kubectl-mesh",
            "injector",
            "list",
            "-A",
            "--request-timeout=0",
            "--kubeconfig",
            kubeconfig.to_str().context("path")?,
        ];
        let start = Instant::now();
        let code = kubectl_mesh::main_with(argv.map(Into::into), &mut out, &mut err);
        runs.push(start.elapsed());
        let text = String::from_utf8_lossy(&out);
        ensure!(code == 2, "exit code {code} (want 2: outdated pods): {}{text}", String::from_utf8_lossy(&err));
        let counted: usize =
            text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(5)?.parse::<usize>().ok()).sum();
        ensure!(counted == outdated, "{counted} outdated pods counted, want {outdated}:\n{text}");
    }
    // The pure listing alone, on the objects as the command receives them.
    let cluster = kubectl_mesh::injector::ClusterWebhooks {
        mwcs: api.list("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        objects: [("v1", "Service"), ("apps/v1", "Deployment"), ("v1", "ConfigMap")]
            .iter()
            .flat_map(|(v, k)| api.list(v, k))
            .collect(),
    };
    let (namespaces, all_pods) = (api.list("v1", "Namespace"), api.list("v1", "Pod"));
    let mut pure = Vec::new();
    let mut computed = 0;
    for _ in 0..args.rounds {
        let start = Instant::now();
        let listing = kubectl_mesh::injector::list(&cluster, &namespaces, &all_pods, None, None)?;
        pure.push(start.elapsed());
        computed = listing.computed;
    }
    runs.sort();
    pure.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "injector list -A: {total} pods, {} owners, {} namespaces ({outdated} outdated): median {} (min {}, max {}) end to end; \
         the listing alone {} ({computed} templates computed)",
        args.owners,
        args.namespaces,
        millis(median(&runs)),
        millis(runs[0]),
        millis(runs[runs.len() - 1]),
        millis(median(&pure)),
    );
    Ok(())
}

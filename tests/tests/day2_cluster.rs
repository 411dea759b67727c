//! `kubectl mesh injector list` and live `kubectl mesh check-inject` against the test API server with
//! the chart's objects as `helm template` renders them (two releases side by side: the default
//! revision and `canary`), namespaces labelled each way, and pods injected with mesh-core the way the
//! webhook injects them (the test API server has no admission chain), plus pods created before their
//! namespace was labelled. Every count, verdict and exit code is asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, inject};
use mesh_tests::Tool;
use mesh_tests::apiserver::TestApiServer;
use serde_json::{Value, json};

/// The plugin binary: `$MESH_PLUGIN`, else `<target>/debug/kubectl-mesh`, built if missing or older
/// than this test.
fn plugin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("MESH_PLUGIN") {
                return Ok(PathBuf::from(p));
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
                let status = Command::new(cargo)
                    .args(["build", "-q", "--workspace", "--bins"])
                    .current_dir(mesh_tests::tools::repo_root())
                    .status()
                    .map_err(|e| format!("building kubectl-mesh: {e}"))?;
                if !status.success() {
                    return Err(format!("cargo build --workspace --bins failed: {status}"));
                }
            }
            if bin.is_file() { Ok(bin) } else { Err(format!("kubectl-mesh not found at {}", bin.display())) }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `helm template RELEASE charts/mesh -n mesh-system ARGS` as JSON documents.
fn helm_template(release: &str, args: &[&str]) -> Result<Vec<Value>> {
    let helm = Tool::Helm.path()?;
    let out = Command::new(&helm)
        .arg("template")
        .arg(release)
        .arg(mesh_tests::tools::repo_root().join("charts/mesh"))
        .args(["--namespace", "mesh-system", "--kube-version", "1.33.0"])
        .args(args)
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    ensure!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<Value> = mesh_core::documents::parse_documents(&String::from_utf8(out.stdout)?)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The config a release's webhook serves, found the way the plugin finds it.
fn served(objects: &[Value]) -> Result<String> {
    let mwc = objects.iter().find(|o| o["kind"] == "MutatingWebhookConfiguration").context("no webhook")?;
    let w = kubectl_mesh::check_inject::pod_webhooks(mwc).into_iter().next().context("no pod webhook")?;
    Ok(kubectl_mesh::check_inject::served_config(objects, w).context("no served config")?.1)
}

/// Pod `i` of Deployment `deploy` in `ns` (through ReplicaSet `<deploy>-6b9c`), injected with
/// `config` as the webhook would inject it, or not injected.
fn pod(ns: &str, deploy: &str, i: usize, labels: Value, config: Option<&str>) -> Result<Value> {
    let mut all_labels = json!({"app": deploy, "pod-template-hash": "6b9c"});
    for (k, v) in labels.as_object().into_iter().flatten() {
        all_labels[k] = v.clone();
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{deploy}-6b9c-{i}"), "generateName": format!("{deploy}-6b9c-"), "namespace": ns,
            "labels": all_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-6b9c"),
                "controller": true, "uid": format!("rs-{deploy}")}]},
        "spec": {"nodeName": format!("node-{i}"), "containers": [{"name": deploy, "image": format!("{deploy}:1"),
            "ports": [{"containerPort": 8080, "name": "http"}]}]},
        "status": {"phase": "Running"}});
    let Some(config) = config else { return Ok(pod) };
    let cfg = InjectConfig::from_yaml(config)?;
    let req = InjectRequest { namespace: ns, nodes_support_native_sidecars: true, ..Default::default() };
    let Decision::Patch(patch) = inject(&pod, &req, &cfg) else { anyhow::bail!("{ns}/{deploy} not injected") };
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch)?;
    Ok(out)
}

struct Cluster {
    api: TestApiServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn run(&self, args: &[&str]) -> Result<Output> {
        let out = Command::new(plugin()?)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .stdin(std::process::Stdio::null())
            .output()?;
        Ok(out)
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Two releases, their webhooks' objects, and namespaces and pods of every kind.
fn cluster() -> Result<Cluster> {
    let api = TestApiServer::start()?;
    let default = helm_template("mesh", &[])?;
    let canary = helm_template("mesh-canary", &["--set", "revision=canary"])?;
    let (default_cfg, canary_cfg) = (served(&default)?, served(&canary)?);
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-system"}}))?;
    for obj in default.iter().chain(&canary) {
        if ["MutatingWebhookConfiguration", "Service", "Deployment", "ConfigMap"]
            .contains(&obj["kind"].as_str().unwrap_or(""))
        {
            api.put(obj.clone())?;
        }
    }
    // An unrelated webhook for pods is listed too, and decides nothing.
    api.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "defaulter"},
        "webhooks": [{"name": "defaults.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "defaulter", "namespace": "default"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]}))?;
    let mut old: Value = serde_saphyr::from_str(&default_cfg)?;
    old["proxy"]["image"] = json!("docker.io/istio/proxyv2:1.27.0");
    let old_image = old.to_string();
    for (name, labels) in [
        ("shop", json!({"istio-injection": "enabled"})),
        ("good", json!({"istio-injection": "enabled"})),
        ("cart", json!({"istio.io/rev": "canary"})),
        ("late", json!({})),
        ("plain", json!({})),
        ("off", json!({"istio-injection": "disabled"})),
    ] {
        api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))?;
    }
    let none = json!({});
    for i in 0..3 {
        api.put(pod("shop", "reviews", i, none.clone(), Some(&default_cfg))?)?;
        api.put(pod("good", "details", i, none.clone(), Some(&default_cfg))?)?;
    }
    for i in 0..2 {
        api.put(pod("shop", "ratings", i, none.clone(), Some(&old_image))?)?;
        api.put(pod("late", "orders", i, none.clone(), None)?)?;
    }
    // Opted out: not counted as missing.
    api.put(pod("shop", "batch", 0, json!({"sidecar.istio.io/inject": "false"}), None)?)?;
    api.put(pod("cart", "checkout", 0, none.clone(), Some(&canary_cfg))?)?;
    // Injected by the default revision before the namespace moved to canary.
    api.put(pod("cart", "payments", 0, none.clone(), Some(&default_cfg))?)?;
    api.put(pod("plain", "static", 0, none.clone(), None)?)?;
    api.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "template": {"metadata": {"labels": {"app": "reviews"}},
            "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]}}}}))?;
    api.put(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "cart"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db", "sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}}))?;
    // The orders pods were created before `late` was labelled.
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late", "labels": {"istio-injection": "enabled"}}}))?;
    let dir = tempfile::tempdir()?;
    api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
    Ok(Cluster { api, dir })
}

/// The table row of `namespace`, split into cells (columns are separated by 3 spaces).
fn row(out: &str, namespace: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(namespace))
        .unwrap_or_else(|| panic!("no row {namespace}:\n{out}"));
    line.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

const DEFAULT_NS: &str = "mesh-sidecar-injector/namespace.sidecar-injector.istio.io";
const CANARY_NS: &str = "mesh-canary-sidecar-injector/rev.namespace.sidecar-injector.istio.io";

#[test]
fn injector_list_counts_every_namespace() -> Result<()> {
    let c = cluster()?;
    let out = c.run(&["injector", "list", "-A"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert_eq!(row(&t, "shop"), ["shop", "istio-injection=enabled", DEFAULT_NS, "default", "3", "2", "0"], "{t}");
    assert_eq!(row(&t, "good"), ["good", "istio-injection=enabled", DEFAULT_NS, "default", "3", "0", "0"], "{t}");
    assert_eq!(row(&t, "late"), ["late", "istio-injection=enabled", DEFAULT_NS, "default", "0", "0", "2"], "{t}");
    assert_eq!(row(&t, "cart"), ["cart", "istio.io/rev=canary", CANARY_NS, "canary", "1", "1", "0"], "{t}");
    for absent in ["plain", "off", "mesh-system", "default", "kube-system"] {
        assert!(!t.lines().any(|l| l.split_whitespace().next() == Some(absent)), "{absent} listed:\n{t}");
    }

    let out = c.run(&["injector", "list", "-A", "--show-pods"])?;
    let t = text(&out);
    println!("$ kubectl mesh injector list -A --show-pods\n{t}");
    for pod in ["ratings-6b9c-0", "ratings-6b9c-1"] {
        let line = t.lines().find(|l| l.contains(pod)).unwrap_or_else(|| panic!("no {pod}:\n{t}"));
        assert!(
            row(line, "shop")[2..4] == ["deployment/ratings", "outdated"]
                && line.ends_with("istio-proxy image proxyv2:1.27.0 → 1.28.0"),
            "{line}"
        );
    }
    let payments = t.lines().find(|l| l.contains("payments-6b9c-0")).unwrap_or_else(|| panic!("{t}"));
    assert!(payments.contains("revision default → canary"), "{payments}");
    assert!(t.lines().any(|l| l.contains("orders-6b9c-1") && l.contains("not injected")), "{t}");
    for cmd in ["ratings -n shop", "payments -n cart", "orders -n late"] {
        assert_eq!(t.matches(&format!("  kubectl rollout restart deployment/{cmd}\n")).count(), 1, "{cmd}:\n{t}");
    }
    assert!(!t.contains("reviews-6b9c") && !t.contains("batch-6b9c"), "{t}");

    let out = c.run(&["injector", "list", "-n", "good", "-o", "json"])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["namespaces"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["namespaces"][0]["injectedCurrent"], 3);
    assert_eq!(doc["namespaces"][0]["revision"], "default");
    Ok(())
}

#[test]
fn check_inject_live_verdicts() -> Result<()> {
    let c = cluster()?;
    let out = c.run(&["check-inject", "deployment/reviews", "-n", "shop"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("will be injected by {DEFAULT_NS} (revision default)")), "{t}");
    assert!(t.contains("defaulter/defaults.example.com"), "unrelated webhooks are listed:\n{t}");

    let out = c.run(&["check-inject", "pod/reviews-6b9c-0", "-n", "shop"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("pod: injected (revision default)"), "{t}");

    let out = c.run(&["check-inject", "pod/orders-6b9c-0", "-n", "late"])?;
    let t = text(&out);
    println!("$ kubectl mesh check-inject pod/orders-6b9c-0 -n late\n{t}");
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("pod: not injected; restart its owner"), "{t}");

    let out = c.run(&["check-inject", "pod/payments-6b9c-0", "-n", "cart"])?;
    let t = text(&out);
    assert!(t.contains(&format!("will be injected by {CANARY_NS} (revision canary)")), "{t}");
    assert!(
        t.contains("pod: injected by revision default, would now be injected by revision canary; restart its owner"),
        "{t}"
    );

    let out = c.run(&["check-inject", "-n", "cart", "-l", "app=new,version=v1"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("(revision canary)"), "{t}");

    let out = c.run(&["check-inject", "-n", "plain", "-l", "app=new"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("not injected: no injector selects the pod") && t.contains("istio-injection=enabled"), "{t}");

    let out = c.run(&["check-inject", "-n", "off", "-l", "app=new"])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // -l gives the labels of a pod to be created: prefixed keys and empty values are labels too.
    let out = c.run(&["check-inject", "-n", "cart", "-l", "app.kubernetes.io/name==new, canary="])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("(revision canary)"), "{t}");
    let out = c.run(&["check-inject", "-n", "cart", "-l", "app=new,version in (v1,v2)"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("\"version in (v1,v2)\" is a selector requirement")
            && t.contains("-l here describes the labels of a pod to be created, so it needs key=value pairs"),
        "{t}"
    );
    let out = c.run(&["check-inject", "-n", "cart", "-l", "app=a,app=b"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("label app is given twice, as \"a\" and \"b\""), "{t}");

    let out = c.run(&["check-inject", "statefulset/db", "-n", "cart"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("not injected:") && t.contains("sidecar.istio.io/inject"), "{t}");

    let out = c.run(&["check-inject", "deployment/nope", "-n", "shop"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("deployment/nope not found in namespace shop"), "{t}");
    Ok(())
}

#[test]
fn forbidden_reads_name_the_rbac_rule() -> Result<()> {
    let c = cluster()?;
    c.api.forbid("list", "mutatingwebhookconfigurations", None);
    for args in [&["check-inject", "deployment/reviews", "-n", "shop"][..], &["injector", "list", "-A"]] {
        let out = c.run(args)?;
        let t = text(&out);
        println!("$ kubectl mesh {}\n{t}", args.join(" "));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("missing RBAC permission: grant it with a ClusterRole with the rule {apiGroups: [\"admissionregistration.k8s.io\"], resources: [\"mutatingwebhookconfigurations\"], verbs: [\"list\"]}"),
            "{args:?}: {t}"
        );
    }
    c.api.allow_all();
    c.api.forbid("list", "configmaps", Some("mesh-system"));
    let out = c.run(&["injector", "list", "-n", "shop"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("a Role in namespace mesh-system with the rule {apiGroups: [\"\"], resources: [\"configmaps\"], verbs: [\"list\"]}"), "{t}");
    Ok(())
}

//! `kubectl mesh injector list` and live `kubectl mesh check-inject` against the test API server with
//! the chart's objects as `helm template` renders them (two releases side by side: the default
//! revision and `canary`) and namespaces labelled each way. Each release's webhook is a real
//! `mesh-webhook` process started with its Deployment's arguments and the config its ConfigMap
//! holds, and every pod is created through the test API server's admission chain (ServiceAccount
//! plugin, mutating webhooks over HTTPS, reinvocation), so injected pods are what the webhooks
//! answered: pods injected before the default release's proxy image moved from 1.27.0 to 1.28.0,
//! a pod injected by the default revision before its namespace moved to canary, and pods created
//! before their namespace was labelled. Every count, verdict and exit code is asserted, and so is
//! each pod's admission: which webhook reviewed it, twice, and what it answered.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mesh_tests::Tool;
use mesh_tests::apiserver::{AdmissionCall, TOKEN_MOUNT_PATH, TOKEN_VOLUME_PREFIX, TestApiServer};
use mesh_tests::support::{self, Webhook};
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

/// The pod a ReplicaSet `<deploy>-6b9c` of Deployment `deploy` would create: `generateName`, no
/// name, pod `i` scheduled on `node-<i>`.
fn pod(ns: &str, deploy: &str, i: usize, labels: Value) -> Value {
    let mut all_labels = json!({"app": deploy, "pod-template-hash": "6b9c"});
    for (k, v) in labels.as_object().into_iter().flatten() {
        all_labels[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deploy}-6b9c-"), "namespace": ns, "labels": all_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-6b9c"),
                "controller": true, "uid": format!("rs-{deploy}")}]},
        "spec": {"nodeName": format!("node-{i}"), "containers": [{"name": deploy, "image": format!("{deploy}:1"),
            "ports": [{"containerPort": 8080, "name": "http"}]}]}})
}

/// The namespace of the chart's releases.
const MESH_NS: &str = "mesh-system";

/// How long a webhook may take to come up, reload or get its caBundle patched.
const READY: Duration = Duration::from_secs(60);

/// Writes what the ConfigMaps in `api` hold into their volumes, as the kubelet does (a new
/// `..data` directory swapped in): (ConfigMap name, directory, version written last).
fn sync_volumes(api: &TestApiServer, volumes: &mut [(String, PathBuf, u32)]) -> Result<()> {
    for (cm, dir, version) in volumes {
        let stored = api.get("v1", "ConfigMap", MESH_NS, cm).with_context(|| format!("ConfigMap {cm}"))?;
        let files: Vec<(&str, &str)> = stored["data"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        *version += 1;
        support::kubelet_update(dir, *version, &files)?;
    }
    Ok(())
}

/// One chart release: its rendered objects and its webhook, a real `mesh-webhook` started with the
/// arguments of the release's Deployment, its ConfigMap volume laid out the way the kubelet mounts
/// it (kept in step with the ConfigMap in the API server by [`sync_volumes`]), its
/// certificate made by `--self-signed` (which patches the caBundle of the release's
/// MutatingWebhookConfiguration through the API server), and its Service routed to it.
struct Release {
    objects: Vec<Value>,
    /// The ConfigMap volumes: (ConfigMap name, directory, version written last).
    volumes: Vec<(String, PathBuf, u32)>,
    webhook: Webhook,
    _dir: tempfile::TempDir,
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Result<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind).with_context(|| format!("the release renders no {kind}"))
}

impl Release {
    /// Starts the release's webhook against `api` (whose kubeconfig is `kubeconfig`) and waits until
    /// it is ready, its caBundle is in every webhook of its configuration and its Service is routed.
    fn start(api: &TestApiServer, objects: Vec<Value>, kubeconfig: &Path) -> Result<Release> {
        let deployment = of_kind(&objects, "Deployment")?;
        let spec = &deployment["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        let dir = tempfile::tempdir()?;
        let mut mounts = Vec::new();
        let mut volumes = Vec::new();
        for m in container["volumeMounts"].as_array().into_iter().flatten() {
            let volume = spec["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == m["name"]);
            let Some(cm) = volume.and_then(|v| v["configMap"]["name"].as_str()) else { continue };
            let path = dir.path().join(m["name"].as_str().context("volumeMount without name")?);
            std::fs::create_dir_all(&path)?;
            mounts.push((m["mountPath"].as_str().context("volumeMount without mountPath")?.to_string(), path.clone()));
            volumes.push((cm.to_string(), path, 0));
        }
        // The chart's arguments, with loopback addresses (Webhook::start adds them) and the mount
        // paths moved to the volumes' directories.
        let args: Vec<String> = container["args"]
            .as_array()
            .context("the webhook container has no args")?
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| !a.starts_with("--listen=") && !a.starts_with("--health-listen="))
            .map(|a| {
                mounts
                    .iter()
                    .fold(a.to_string(), |a, (mount, dir)| a.replace(mount.as_str(), &dir.display().to_string()))
            })
            .collect();
        sync_volumes(api, &mut volumes)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let kubeconfig = kubeconfig.display().to_string();
        let pod_name = format!("{}-0", deployment["metadata"]["name"].as_str().unwrap_or("webhook"));
        let env = [("KUBECONFIG", kubeconfig.as_str()), ("POD_NAMESPACE", MESH_NS), ("POD_NAME", pod_name.as_str())];
        let webhook = Webhook::start(&args, &env)?;
        webhook.wait_ready(READY)?;
        let release = Release { objects, volumes, webhook, _dir: dir };
        let mwc = of_kind(&release.objects, "MutatingWebhookConfiguration")?;
        let name = mwc["metadata"]["name"].as_str().context("configuration without name")?.to_string();
        support::wait_until(&format!("the caBundle of {name}"), READY, || {
            let stored = api.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", &name);
            stored.and_then(|c| c["webhooks"].as_array().cloned()).is_some_and(|ws| {
                !ws.is_empty()
                    && ws.iter().all(|w| w["clientConfig"]["caBundle"].as_str().is_some_and(|b| !b.is_empty()))
            })
        })?;
        for w in mwc["webhooks"].as_array().into_iter().flatten() {
            let svc = &w["clientConfig"]["service"];
            let port = svc["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(443);
            let (ns, svc_name) = (svc["namespace"].as_str().unwrap_or(""), svc["name"].as_str().unwrap_or(""));
            api.route_service(ns, svc_name, port, release.webhook.listen);
        }
        Ok(release)
    }

    /// Puts the release's ConfigMap back as the chart renders it (as `helm upgrade` would), updates
    /// the volumes and waits until the webhook has loaded the new config.
    fn upgrade(&mut self, api: &TestApiServer) -> Result<()> {
        api.put(of_kind(&self.objects, "ConfigMap")?.clone())?;
        let series = "mesh_webhook_config_reloads_total{result=\"ok\"}";
        let loaded = self.webhook.metric(series)?;
        sync_volumes(api, &mut self.volumes)?;
        self.webhook.wait_metric(series, loaded + 1.0, READY)?;
        Ok(())
    }
}

/// A pod the test created through the admission chain, as stored once Running, and the webhook
/// calls its CREATE made.
struct Created {
    pod: Value,
    calls: Vec<AdmissionCall>,
}

impl Created {
    fn namespace(&self) -> &str {
        self.pod["metadata"]["namespace"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.pod["metadata"]["name"].as_str().unwrap_or("")
    }

    fn app(&self) -> &str {
        self.pod["metadata"]["labels"]["app"].as_str().unwrap_or("")
    }
}

/// Creates pods through the API server's admission chain (a POST, as a ReplicaSet controller
/// does) and marks them Running through the status subresource (as the kubelet does).
struct Creator {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Creator {
    fn new(api: &TestApiServer) -> Result<Creator> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = rt.block_on(async { anyhow::Ok(kube::Client::try_from(api.kube_config().await?)?) })?;
        Ok(Creator { rt, client })
    }

    fn send(&self, method: http::Method, path: &str, content_type: &str, body: &Value) -> Result<Value> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(body)?)?;
        self.rt.block_on(self.client.request::<Value>(request)).with_context(|| path.to_string())
    }

    fn create(&self, api: &TestApiServer, pod: Value) -> Result<Created> {
        let ns = pod["metadata"]["namespace"].as_str().context("pod without namespace")?.to_string();
        let before = api.admission_calls().len();
        let path = format!("/api/v1/namespaces/{ns}/pods");
        let created = self.send(http::Method::POST, &path, "application/json", &pod)?;
        let calls = api.admission_calls().get(before..).map(<[_]>::to_vec).unwrap_or_default();
        let name = created["metadata"]["name"].as_str().context("created pod without name")?;
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
        let running = json!({"status": {"phase": "Running"}});
        let pod = self.send(http::Method::PATCH, &path, "application/merge-patch+json", &running)?;
        Ok(Created { pod, calls })
    }
}

struct Cluster {
    api: TestApiServer,
    dir: tempfile::TempDir,
    /// Every pod created, in order.
    pods: Vec<Created>,
    /// The default and the canary release.
    releases: [Release; 2],
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

    /// The name of the `i`-th pod created for Deployment `deploy` in `ns`.
    fn pod(&self, ns: &str, deploy: &str, i: usize) -> String {
        let pod = self.pods.iter().filter(|p| p.namespace() == ns && p.app() == deploy).nth(i);
        pod.unwrap_or_else(|| panic!("no pod {i} of {ns}/{deploy}")).name().to_string()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn node(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i}")},
        "status": {"nodeInfo": {"kubeletVersion": "v1.33.2"}}})
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// Two releases with their webhooks running, and namespaces and pods of every kind, every pod
/// created through the admission chain.
fn cluster() -> Result<Cluster> {
    let api = TestApiServer::start()?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let default = helm_template("mesh", &[])?;
    let canary = helm_template("mesh-canary", &["--set", "revision=canary"])?;
    api.put(namespace(MESH_NS, json!({})))?;
    for obj in default.iter().chain(&canary) {
        if ["MutatingWebhookConfiguration", "Service", "Deployment", "ConfigMap"]
            .contains(&obj["kind"].as_str().unwrap_or(""))
        {
            api.put(obj.clone())?;
        }
    }
    // An unrelated webhook for pods is listed too, and decides nothing. Nothing serves it (its
    // Service is not routed), so it says `failurePolicy: Ignore`: with the default `Fail` no pod
    // could be created. Its calls fail and are recorded; the chain goes on.
    api.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "defaulter"},
        "webhooks": [{"name": "defaults.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"service": {"name": "defaulter", "namespace": "default"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]}))?;
    // Every kubelet is 1.33: the webhooks (`nativeSidecars: auto`) inject native sidecars.
    for i in 0..3 {
        api.put(node(i))?;
    }
    for (name, labels) in [
        ("shop", json!({"istio-injection": "enabled"})),
        ("good", json!({"istio-injection": "enabled"})),
        // Served by the default revision until it moves to canary below.
        ("cart", json!({"istio.io/rev": "default"})),
        ("late", json!({})),
        ("plain", json!({})),
        ("off", json!({"istio-injection": "disabled"})),
    ] {
        api.put(namespace(name, labels))?;
    }
    // The default release first runs with the previous proxy image.
    let mut previous = of_kind(&default, "ConfigMap")?.clone();
    let mut config: Value =
        serde_saphyr::from_str(previous["data"]["config.yaml"].as_str().context("ConfigMap without config.yaml")?)?;
    config["proxy"]["image"] = json!("docker.io/istio/proxyv2:1.27.0");
    previous["data"]["config.yaml"] = json!(config.to_string());
    api.put(previous)?;
    let mut default = Release::start(&api, default, &kubeconfig)?;
    let canary = Release::start(&api, canary, &kubeconfig)?;
    let creator = Creator::new(&api)?;
    let mut pods = Vec::new();
    let none = json!({});
    for i in 0..2 {
        pods.push(creator.create(&api, pod("shop", "ratings", i, none.clone()))?);
    }
    // `helm upgrade`: the ConfigMap now says 1.28.0, the ratings pods keep 1.27.0.
    default.upgrade(&api)?;
    for i in 0..3 {
        pods.push(creator.create(&api, pod("shop", "reviews", i, none.clone()))?);
        pods.push(creator.create(&api, pod("good", "details", i, none.clone()))?);
    }
    // Opted out: not counted as missing.
    pods.push(creator.create(&api, pod("shop", "batch", 0, json!({"sidecar.istio.io/inject": "false"})))?);
    // Injected by the default revision before the namespace moved to canary.
    pods.push(creator.create(&api, pod("cart", "payments", 0, none.clone()))?);
    api.put(namespace("cart", json!({"istio.io/rev": "canary"})))?;
    pods.push(creator.create(&api, pod("cart", "checkout", 0, none.clone()))?);
    // The orders pods are created before `late` is labelled.
    for i in 0..2 {
        pods.push(creator.create(&api, pod("late", "orders", i, none.clone()))?);
    }
    pods.push(creator.create(&api, pod("plain", "static", 0, none.clone()))?);
    api.put(namespace("late", json!({"istio-injection": "enabled"})))?;
    api.put(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "template": {"metadata": {"labels": {"app": "reviews"}},
            "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]}}}}))?;
    api.put(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "cart"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db", "sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}}))?;
    Ok(Cluster { api, dir, pods, releases: [default, canary] })
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
    for pod in [c.pod("shop", "ratings", 0), c.pod("shop", "ratings", 1)] {
        let line = t.lines().find(|l| l.contains(&pod)).unwrap_or_else(|| panic!("no {pod}:\n{t}"));
        assert!(
            row(line, "shop")[2..4] == ["deployment/ratings", "outdated"]
                && line.ends_with("istio-proxy image proxyv2:1.27.0 → 1.28.0"),
            "{line}"
        );
    }
    let payments = t.lines().find(|l| l.contains(&c.pod("cart", "payments", 0))).unwrap_or_else(|| panic!("{t}"));
    assert!(payments.contains("revision default → canary"), "{payments}");
    let orders = c.pod("late", "orders", 1);
    assert!(t.lines().any(|l| l.contains(&orders) && l.contains("not injected")), "{t}");
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

    let out = c.run(&["check-inject", &format!("pod/{}", c.pod("shop", "reviews", 0)), "-n", "shop"])?;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("pod: injected (revision default)"), "{t}");

    let orders = format!("pod/{}", c.pod("late", "orders", 0));
    let out = c.run(&["check-inject", &orders, "-n", "late"])?;
    let t = text(&out);
    println!("$ kubectl mesh check-inject {orders} -n late\n{t}");
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("pod: not injected; restart its owner"), "{t}");

    let out = c.run(&["check-inject", &format!("pod/{}", c.pod("cart", "payments", 0)), "-n", "cart"])?;
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

const DEFAULT: &str = "mesh-sidecar-injector";
const CANARY: &str = "mesh-canary-sidecar-injector";
const BY_NAMESPACE: &str = "namespace.sidecar-injector.istio.io";
const BY_REVISION: &str = "rev.namespace.sidecar-injector.istio.io";

/// An injection: (configuration, webhook, proxy image).
type Injection = (&'static str, &'static str, &'static str);

/// Each Deployment's pods: the configuration and webhook that inject them and the proxy image they
/// get, or `None` when no mesh webhook selects them.
const ADMITTED: [(&str, &str, Option<Injection>); 8] = [
    ("shop", "ratings", Some((DEFAULT, BY_NAMESPACE, "docker.io/istio/proxyv2:1.27.0"))),
    ("shop", "reviews", Some((DEFAULT, BY_NAMESPACE, "docker.io/istio/proxyv2:1.28.0"))),
    ("good", "details", Some((DEFAULT, BY_NAMESPACE, "docker.io/istio/proxyv2:1.28.0"))),
    ("cart", "payments", Some((DEFAULT, BY_REVISION, "docker.io/istio/proxyv2:1.28.0"))),
    ("cart", "checkout", Some((CANARY, BY_REVISION, "docker.io/istio/proxyv2:1.28.0"))),
    ("shop", "batch", None),
    ("late", "orders", None),
    ("plain", "static", None),
];

/// Whether a string somewhere in `value` is `text`.
fn holds(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Array(l) => l.iter().any(|v| holds(v, text)),
        Value::Object(m) => m.values().any(|v| holds(v, text)),
        _ => false,
    }
}

#[test]
fn pods_are_injected_through_their_release_webhook() -> Result<()> {
    let c = cluster()?;
    assert_eq!(c.pods.len(), 14);
    for p in &c.pods {
        let (ns, app, name) = (p.namespace(), p.app(), p.name());
        let admitted = ADMITTED.iter().find(|a| (a.0, a.1) == (ns, app)).with_context(|| format!("{ns}/{app}"))?.2;
        let spec = &p.pod["spec"];
        // The ServiceAccount plugin's one token volume, mounted in every container, the injected
        // ones (mounted during the reinvocation round) included.
        let tokens: Vec<&str> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .filter(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
            .collect();
        assert_eq!(tokens.len(), 1, "{ns}/{name}: {spec}");
        let containers: Vec<&Value> =
            ["initContainers", "containers"].iter().flat_map(|l| spec[l].as_array().into_iter().flatten()).collect();
        for container in &containers {
            let mounts = container["volumeMounts"].as_array().into_iter().flatten();
            assert_eq!(
                mounts
                    .filter(|m| m["mountPath"] == TOKEN_MOUNT_PATH && m["name"] == tokens[0] && m["readOnly"] == true)
                    .count(),
                1,
                "{ns}/{name} {}: {container}",
                container["name"]
            );
        }
        // The unrelated webhook: called once, unreachable, ignored.
        let (defaulter, mesh): (Vec<&AdmissionCall>, Vec<&AdmissionCall>) =
            p.calls.iter().partition(|call| call.configuration == "defaulter");
        assert!(
            defaulter.len() == 1 && defaulter[0].error.as_deref().is_some_and(|e| e.contains("no such host")),
            "{ns}/{name}: {defaulter:?}"
        );
        let status = p.pod["metadata"]["annotations"]["sidecar.istio.io/status"].as_str();
        let Some((configuration, webhook, image)) = admitted else {
            assert!(mesh.is_empty(), "{ns}/{name} reviewed by a mesh webhook: {mesh:?}");
            assert!(status.is_none(), "{ns}/{name} injected: {}", p.pod);
            let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
            assert_eq!(names, [app], "{ns}/{name}");
            continue;
        };
        let seen: Vec<(&str, &str, bool)> =
            mesh.iter().map(|call| (call.configuration.as_str(), call.webhook.as_str(), call.reinvocation)).collect();
        assert_eq!(seen, [(configuration, webhook, false), (configuration, webhook, true)], "{ns}/{name}");
        for call in &mesh {
            // Reviewed before the pod had a name, as a ReplicaSet's pods are.
            assert_eq!((call.namespace.as_str(), call.name.as_str()), (ns, format!("{app}-6b9c-").as_str()));
            assert!(call.allowed && call.error.is_none(), "{ns}/{name}: {call:?}");
        }
        // The first answer is the injection the pod carries: its sidecar status is a value that
        // patch wrote, and istio-proxy is a native sidecar with the release's proxy image.
        let status = status.with_context(|| format!("{ns}/{name} not injected: {}", p.pod))?;
        let patch = mesh[0].patch.as_ref().with_context(|| format!("{ns}/{name}: no patch"))?;
        assert!(holds(patch, status), "{ns}/{name}: the status {status} is not in the patch {patch}");
        let proxy = spec["initContainers"].as_array().into_iter().flatten().find(|c| c["name"] == "istio-proxy");
        let proxy = proxy.with_context(|| format!("{ns}/{name}: no native istio-proxy: {spec}"))?;
        assert_eq!((&proxy["image"], &proxy["restartPolicy"]), (&json!(image), &json!("Always")), "{ns}/{name}");
        // What the reinvocation answered, as recorded, for the pod as this server hands it over
        // today (the token mounted in the injected containers, no API defaulting between the
        // rounds): allowed without a patch, the webhook's `already_injected` skip. A server that
        // defaults the pod between the rounds may get a patch here.
        assert_eq!(mesh[1].patch, None, "{ns}/{name}: the reinvocation answered a patch");
    }
    // Each webhook's own account: one injection and one `already_injected` skip per pod it injected.
    for (release, injected) in c.releases.iter().zip([9, 1]) {
        let lines = release.webhook.wait_logs("admission review", 2 * injected, READY)?;
        let outcomes: Vec<(&str, &str)> =
            lines.iter().map(|l| (l["outcome"].as_str().unwrap_or(""), l["reason"].as_str().unwrap_or(""))).collect();
        let count = |want: (&str, &str)| outcomes.iter().filter(|o| **o == want).count();
        assert_eq!(outcomes.len(), 2 * injected, "{outcomes:?}");
        assert_eq!(
            (count(("injected", "")), count(("skipped", "already_injected"))),
            (injected, injected),
            "{outcomes:?}"
        );
    }
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

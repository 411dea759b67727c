//! The re-review of an injected pod as a real API server sends it (`reinvocationPolicy: IfNeeded`),
//! against the real binary over TLS: after the webhook's patch the server decodes the pod into its
//! Go types and defaults it (`mesh_test_apiserver::defaulting::decoded_pod`), mounts the token in
//! the new containers, and reviews it again. That review is allowed without a patch and counted
//! `already_injected`; a pod edited after the injection is injected again.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use http::Request;
use http_body_util::BodyExt;
use kube::client::Body;
use mesh_tests::apiserver::TestApiServer;
use mesh_tests::apiserver::defaulting::decoded_pod;
use mesh_tests::inject_cases::{self, Expect};
use mesh_tests::support::{self, Conn, Sent, TestCa, Webhook, review_body};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

const ALREADY_INJECTED: &str = "mesh_webhook_requests_total{outcome=\"skipped\",reason=\"already_injected\"}";
const CACHE_HITS: &str = "mesh_webhook_review_cache_total{result=\"hit\"}";

/// The configs the pods are injected with: the defaults, native sidecars, and CNI with proxy
/// limits written in a non-canonical form (which the API server rewrites and copies to requests).
const CONFIGS: [(&str, &str); 3] = [
    ("default", "{}"),
    ("native", "nativeSidecars: enabled"),
    ("cni-limits", "cni: {enabled: true}\nproxy: {resources: {limits: {cpu: 2000m, memory: 1024Mi}}}"),
];

/// A running webhook with `config_yaml`, and the CA its certificate chains to.
struct Served {
    webhook: Webhook,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

fn serve(config_yaml: &str) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new();
    let (cert, key) = ca.serving("127.0.0.1");
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("tls.crt"), &cert)?;
    std::fs::write(path("tls.key"), &key)?;
    std::fs::write(path("config.yaml"), config_yaml)?;
    let webhook = Webhook::start(
        &["--tls-cert", &path("tls.crt"), "--tls-key", &path("tls.key"), "--config", &path("config.yaml")],
        &[],
    )?;
    webhook.wait_ready(READY)?;
    Ok(Served { webhook, ca, _dir: dir })
}

/// The pods: the real API server's two captured reviews (a named pod, a ReplicaSet's pod with an
/// init container) and the first pod of every Istio conformance case that expects one, each as
/// the API server sends it (decoded and defaulted).
fn pods() -> anyhow::Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for name in ["admissionreview-v1-pod-foo.json", "admissionreview-v1-pod-generatename-owner.json"] {
        let path = mesh_tests::shared_dir()?.join("fixtures/kube-apiserver").join(name);
        let review: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        out.push((name.to_string(), review["request"]["object"].clone()));
    }
    for case in inject_cases::load_cases()? {
        if let (Expect::Pods(_), Some(pod)) = (&case.expect, case.pods.first()) {
            out.push((case.name.clone(), decoded_pod(pod)));
        }
    }
    Ok(out)
}

fn namespace_of(pod: &Value) -> &str {
    pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default")
}

/// Posts `pod` for review; the pod with the answer's patch applied, `None` for a denial.
async fn review(conn: &mut Conn, uid: &str, pod: &Value) -> anyhow::Result<(Option<Value>, bool)> {
    let body = match conn.post("/inject", review_body(uid, namespace_of(pod), pod)).await {
        Sent::Answered(200, _, body) => body,
        Sent::Answered(status, _, body) => bail!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
        other => bail!("no answer: {other:?}"),
    };
    let answer: Value = serde_json::from_slice(&body)?;
    let patched = answer["response"].get("patch").is_some();
    Ok((support::apply_response(pod, &body, uid)?.ok(), patched))
}

/// What the API server does between the injection and the re-review: decode and default the
/// patched pod, then run its ServiceAccount plugin again (the token mount in the new containers).
fn as_re_reviewed(patched: &Value) -> Value {
    let mut pod = decoded_pod(patched);
    mesh_tests::apiserver::service_account_admit(&mut pod, None, || "kube-api-access-zzzzz".into());
    decoded_pod(&pod)
}

/// For every config and pod: inject, then the re-review as the API server sends it is allowed
/// without a patch and counted `already_injected`; the same re-review again (another replica) is
/// answered from the review cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_re_review_of_a_decoded_pod_needs_no_patch() -> anyhow::Result<()> {
    let pods = pods()?;
    let mut failures = Vec::new();
    for (config, yaml) in CONFIGS {
        let served = serve(yaml)?;
        let mut conn = Conn::open(served.webhook.listen, served.ca.client_config()).await?;
        let mut injected = 0;
        for (i, (name, pod)) in pods.iter().enumerate() {
            let (once, patched) = review(&mut conn, &format!("{config}-{i}"), pod).await?;
            let Some(once) = once.filter(|_| patched) else { continue };
            injected += 1;
            let re_review = as_re_reviewed(&once);
            let before = served.webhook.metric(ALREADY_INJECTED).unwrap_or(0.0);
            let mut hits = 0.0;
            for pass in ["re-review", "re-review of a replica"] {
                hits = served.webhook.metric(CACHE_HITS).unwrap_or(0.0);
                let (out, patched) = review(&mut conn, &format!("{config}-{i}-{pass}"), &re_review).await?;
                if out.is_none() || patched {
                    failures.push(format!("{config}/{name}: the {pass} was answered with a patch or denied"));
                }
            }
            if served.webhook.metric(ALREADY_INJECTED)? - before != 2.0 {
                failures.push(format!("{config}/{name}: re-reviews not counted already_injected"));
            }
            // (The first re-review is a hit too when an earlier case had the same pod.)
            if served.webhook.metric(CACHE_HITS)? - hits != 1.0 {
                failures.push(format!("{config}/{name}: the replica's re-review was not a cache hit"));
            }
        }
        println!("{config}: {injected} of {} pods injected and re-reviewed", pods.len());
        ensure!(injected >= pods.len() / 2, "{config}: only {injected} pods injected");
    }
    for failure in &failures {
        eprintln!("FAIL {failure}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    Ok(())
}

fn proxy(pod: &mut Value) -> anyhow::Result<&mut Value> {
    let containers = pod["spec"]["containers"].as_array_mut().context("containers")?;
    containers.iter_mut().find(|c| c["name"] == "istio-proxy").context("no istio-proxy")
}

/// Edits made after the injection (by a later webhook) are not defaults: the re-review is injected
/// again, and the re-review after that is allowed without a patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_re_review_is_injected_again() -> anyhow::Result<()> {
    let served = serve("{}")?;
    let mut conn = Conn::open(served.webhook.listen, served.ca.client_config()).await?;
    let (_, pod) = pods()?.into_iter().next().context("a pod")?;
    let (once, _) = review(&mut conn, "first", &pod).await?;
    let re_review = as_re_reviewed(&once.context("denied")?);
    type Edit = fn(&mut Value) -> anyhow::Result<()>;
    let edits: [(&str, Edit); 6] = [
        ("image", |p| {
            proxy(p)?["image"] = json!("example.com/proxyv2:0.9");
            Ok(())
        }),
        ("removed container", |p| {
            p["spec"]["containers"].as_array_mut().context("containers")?.retain(|c| c["name"] != "istio-proxy");
            Ok(())
        }),
        ("env", |p| {
            let env = proxy(p)?["env"].as_array_mut().context("env")?;
            let mesh_id = env.iter_mut().find(|e| e["name"] == "ISTIO_META_MESH_ID").context("mesh id")?;
            mesh_id["value"] = json!("other.mesh");
            Ok(())
        }),
        ("removed volume", |p| {
            p["spec"]["volumes"].as_array_mut().context("volumes")?.retain(|v| v["name"] != "istio-envoy");
            Ok(())
        }),
        ("probe", |p| {
            proxy(p)?["readinessProbe"]["failureThreshold"] = json!(1);
            Ok(())
        }),
        ("label", |p| {
            p["metadata"]["labels"].as_object_mut().context("labels")?.shift_remove("security.istio.io/tlsMode");
            Ok(())
        }),
    ];
    for (what, edit) in edits {
        let mut edited = re_review.clone();
        edit(&mut edited)?;
        let edited = decoded_pod(&edited);
        let (again, patched) = review(&mut conn, &format!("{what}-edited"), &edited).await?;
        ensure!(patched, "{what}: the edited pod was answered without a patch");
        let settled = as_re_reviewed(&again.context("denied")?);
        let (_, patched) = review(&mut conn, &format!("{what}-settled"), &settled).await?;
        ensure!(!patched, "{what}: the re-review after the new injection got a patch");
    }
    Ok(())
}

/// The whole loop through the test API server's admission chain: a pod created there is injected
/// by the webhook, decoded, given its token mounts, and reviewed again; the reinvocation is
/// answered without a patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_reinvocation_gets_no_patch() -> anyhow::Result<()> {
    let served = serve("{}")?;
    let api = TestApiServer::start()?;
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}))?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&served.ca.pem);
    api.put(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mesh"},
        "webhooks": [{"name": "sidecar-injector.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded", "failurePolicy": "Fail",
            "clientConfig": {"url": format!("https://{}/inject", served.webhook.listen), "caBundle": ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]}))?;
    let client = kube::Client::try_from(api.kube_config().await?)?;
    // The pod as the user wrote it: the captured pod without what the server added to it.
    let (_, mut pod) = pods()?.into_iter().next().context("a pod")?;
    pod["metadata"].as_object_mut().context("metadata")?.shift_remove("managedFields");
    pod["spec"].as_object_mut().context("spec")?.shift_remove("volumes");
    pod["spec"]["containers"][0].as_object_mut().context("container")?.shift_remove("volumeMounts");
    let request = Request::post("/api/v1/namespaces/foo/pods")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&pod)?))?;
    let response = client.send(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(status.is_success(), "create: {status} {}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body)?;
    let calls = api.admission_calls();
    let rounds: Vec<(bool, bool, bool)> =
        calls.iter().map(|c| (c.reinvocation, c.allowed, c.patch.is_some())).collect();
    assert_eq!(rounds, [(false, true, true), (true, true, false)], "{calls:?}");
    let names: Vec<&str> =
        created["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["app", "istio-proxy"]);
    assert_eq!(served.webhook.metric(ALREADY_INJECTED)?, 1.0);
    Ok(())
}

use serde_json::{Value, json};

use super::*;
use crate::inject::InjectConfig;

/// The image the conformance harness gives Istio's injector (and ours) for both containers.
const ISTIO_TEST_IMAGE: &str = "registry.istio.io/testing/proxyv2:latest";

fn config(yaml: &str) -> Injector {
    Injector::new(InjectConfig::from_yaml(yaml).expect("config"))
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "reviews-7d4f-abcde", "generateName": "reviews-7d4f-", "namespace": "shop",
            "labels": {"app": "reviews", "pod-template-hash": "7d4f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-7d4f", "controller": true, "uid": "u"}]},
        "spec": {"containers": [{"name": "reviews", "image": "reviews:1",
            "ports": [{"name": "http", "containerPort": 9080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9080}}}]}})
}

fn injected(pod: &Value, injector: &Injector) -> Value {
    let req = InjectRequest { namespace: "shop", nodes_support_native_sidecars: true, ..Default::default() };
    let Decision::Patch(patch) = injector.inject(pod, &req) else { panic!("not injected") };
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies");
    out
}

#[test]
fn a_fresh_injection_is_current() {
    let injector = config("{}");
    let pod = injected(&pod(), &injector);
    assert_eq!(differences(&pod, &injector).unwrap(), Vec::<String>::new());
}

#[test]
fn an_image_change_is_outdated_with_both_tags() {
    let old = config("proxy: {image: docker.io/istio/proxyv2:1.27.0}");
    let new = config("proxy: {image: docker.io/istio/proxyv2:1.28.0}");
    let pod = injected(&pod(), &old);
    let diffs = differences(&pod, &new).unwrap();
    assert_eq!(diffs, ["istio-proxy image proxyv2:1.27.0 → 1.28.0"]);
    // And back: the new pod against the old config.
    assert_eq!(
        differences(&injected(&self::pod(), &new), &old).unwrap(),
        ["istio-proxy image proxyv2:1.28.0 → 1.27.0"]
    );
}

#[test]
fn a_config_change_is_outdated() {
    let pod = injected(&pod(), &config("{}"));
    let diffs = differences(&pod, &config("proxy: {logLevel: debug}")).unwrap();
    assert_eq!(diffs, ["istio-proxy args changed"], "{diffs:?}");
    let diffs = differences(&pod, &config("proxy: {resources: {limits: {cpu: '1'}}}")).unwrap();
    assert!(diffs.contains(&"istio-proxy resources limits.cpu 2 → 1".to_string()), "{diffs:?}");
    let diffs = differences(&pod, &config("meshId: other.mesh")).unwrap();
    assert!(diffs.contains(&"istio-proxy env ISTIO_META_MESH_ID changed".to_string()), "{diffs:?}");
    let diffs = differences(&pod, &config("nativeSidecars: disabled")).unwrap();
    assert!(diffs.contains(&"istio-proxy moves from initContainers to containers".to_string()), "{diffs:?}");
    let diffs = differences(&pod, &config("revision: canary")).unwrap();
    assert_eq!(diffs.first().map(String::as_str), Some("revision default → canary"), "{diffs:?}");
}

#[test]
fn api_server_defaults_are_not_differences() {
    let injector = config("{}");
    let mut pod = injected(&pod(), &injector);
    // What the API server writes back: fieldRef apiVersion, probe and volume defaults, port protocol,
    // canonical quantities.
    fn fill(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(f)) = map.get_mut("fieldRef") {
                    f.entry("apiVersion").or_insert(json!("v1"));
                }
                for probe in ["readinessProbe", "startupProbe", "livenessProbe"] {
                    if let Some(Value::Object(p)) = map.get_mut(probe) {
                        p.entry("successThreshold").or_insert(json!(1));
                        p.entry("timeoutSeconds").or_insert(json!(1));
                        if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                            h.entry("scheme").or_insert(json!("HTTP"));
                        }
                    }
                }
                for vol in ["configMap", "downwardAPI", "projected"] {
                    if let Some(Value::Object(s)) = map.get_mut(vol) {
                        s.entry("defaultMode").or_insert(json!(420));
                    }
                }
                map.values_mut().for_each(fill);
            }
            Value::Array(items) => items.iter_mut().for_each(fill),
            _ => {}
        }
    }
    fill(&mut pod);
    for c in pod["spec"]["initContainers"].as_array_mut().unwrap() {
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["imagePullPolicy"] = json!("IfNotPresent");
    }
    assert_eq!(differences(&pod, &injector).unwrap(), Vec::<String>::new());
    // A real change among the defaults still shows.
    let proxy = pod["spec"]["initContainers"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "istio-proxy");
    proxy.unwrap()["readinessProbe"]["timeoutSeconds"] = json!(30);
    assert_eq!(differences(&pod, &injector).unwrap(), ["istio-proxy readinessProbe changed"]);
}

#[test]
fn edits_to_injected_volumes_and_annotations_show() {
    let injector = config("{}");
    let mut pod = injected(&pod(), &injector);
    let volumes = pod["spec"]["volumes"].as_array_mut().unwrap();
    volumes.retain(|v| v["name"] != "istio-envoy");
    pod["metadata"]["annotations"].as_object_mut().unwrap().remove("prometheus.io/path");
    let diffs = differences(&pod, &injector).unwrap();
    assert!(diffs.contains(&"volume istio-envoy added".to_string()), "{diffs:?}");
    assert!(diffs.contains(&"annotation prometheus.io/path=\"/stats/prometheus\" added".to_string()), "{diffs:?}");
}

#[test]
fn a_pod_that_would_now_be_skipped_or_is_not_injected() {
    let pod = injected(&pod(), &config("{}"));
    let diffs = differences(&pod, &config("neverInjectSelector: [{matchLabels: {app: reviews}}]")).unwrap();
    assert_eq!(diffs, ["the injector would not inject it now (never_inject_selector)"]);
    assert!(matches!(differences(&self::pod(), &config("{}")), Err(DriftError::NotInjected)));
}

fn istio_golden(name: &str) -> Value {
    let path = format!("conformance/istio-inject/golden/{name}");
    let bytes = mesh_test_data::read_shared(&path).unwrap_or_else(|e| panic!("{path}: {e} (set MESH_SHARED)"));
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(std::str::from_utf8(&bytes).expect("utf-8")).expect("yaml");
    docs.into_iter().next().expect("a document")
}

fn istio_harness_config() -> Injector {
    config(&format!("{{proxy: {{image: '{ISTIO_TEST_IMAGE}'}}, proxyInit: {{image: '{ISTIO_TEST_IMAGE}'}}}}"))
}

#[test]
fn a_pod_injected_by_istio_is_current_when_the_config_matches() {
    let pod = istio_golden("pod.yaml.injected");
    assert_eq!(differences(&pod, &istio_harness_config()).unwrap(), Vec::<String>::new());
    // A Deployment's pod, with the owner the conformance harness gives it.
    let deploy = istio_golden("hello.yaml.injected");
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": deploy["spec"]["template"]["metadata"].clone(),
        "spec": deploy["spec"]["template"]["spec"].clone()});
    pod["metadata"]["generateName"] = json!("hello-fake-");
    pod["metadata"]["labels"]["pod-template-hash"] = json!("fake");
    pod["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-fake", "controller": true}]);
    assert_eq!(differences(&pod, &istio_harness_config()).unwrap(), Vec::<String>::new());
    // The same pod against mesh's default image is outdated.
    let diffs = differences(&pod, &config(&format!("proxyInit: {{image: '{ISTIO_TEST_IMAGE}'}}"))).unwrap();
    assert_eq!(
        diffs,
        [format!("istio-proxy image {}", image_change(ISTIO_TEST_IMAGE, crate::inject::DEFAULT_PROXY_IMAGE))]
    );
}

#[test]
fn image_change_text() {
    assert_eq!(
        image_change("docker.io/istio/proxyv2:1.27.0", "docker.io/istio/proxyv2:1.28.0"),
        "proxyv2:1.27.0 → 1.28.0"
    );
    assert_eq!(image_change("a/proxyv2:1", "b/proxyv2:1"), "a/proxyv2:1 → b/proxyv2:1");
    assert_eq!(image_change("a/proxyv2:1", "b/envoy:2"), "proxyv2:1 → envoy:2");
    assert_eq!(image_change("localhost:5000/proxy", "localhost:5000/proxy:2"), "proxy → 2");
}

/// `pod` as the API server writes it back after decoding it into its Go types and defaulting it:
/// every object's members in another order, and the defaults of `pkg/apis/core/v1/defaults.go` on
/// containers (termination message, pull policy, ports, env, probes, requests from limits) and
/// volumes. (The test API server's `defaulting` module models the real encoder in full; this is
/// the part the injector writes.)
pub(crate) fn read_back(pod: &Value) -> Value {
    fn fill(parent: &str, v: &mut Value) {
        match v {
            Value::Object(map) => {
                let mut set = |key: &str, value: Value| {
                    map.entry(key).or_insert(value);
                };
                match parent {
                    "containers" | "initContainers" => {
                        set("terminationMessagePath", json!("/dev/termination-log"));
                        set("terminationMessagePolicy", json!("File"));
                        set("resources", json!({}));
                    }
                    "ports" => set("protocol", json!("TCP")),
                    "fieldRef" => set("apiVersion", json!("v1")),
                    "resourceFieldRef" => set("divisor", json!("0")),
                    "httpGet" => set("scheme", json!("HTTP")),
                    "configMap" | "secret" | "downwardAPI" | "projected" => set("defaultMode", json!(420)),
                    "serviceAccountToken" => set("expirationSeconds", json!(3600)),
                    p if p.ends_with("Probe") => {
                        for (k, d) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1)] {
                            set(k, json!(d));
                        }
                        set("failureThreshold", json!(3));
                    }
                    _ => {}
                }
                if matches!(parent, "containers" | "initContainers") {
                    let image = map.get("image").and_then(Value::as_str).unwrap_or("");
                    let policy = if image.ends_with(":latest") { "Always" } else { "IfNotPresent" };
                    map.entry("imagePullPolicy").or_insert(json!(policy));
                    if let Some(Value::Object(r)) = map.get_mut("resources")
                        && let Some(limits) = r.get("limits").cloned()
                    {
                        let requests = r.entry("requests").or_insert(json!({}));
                        for (k, q) in limits.as_object().into_iter().flatten() {
                            requests.as_object_mut().unwrap().entry(k.clone()).or_insert(q.clone());
                        }
                    }
                }
                if parent == "env" && map.get("value") == Some(&json!("")) {
                    map.remove("value");
                }
                if parent == "volumeMounts" && map.get("readOnly") == Some(&json!(false)) {
                    map.remove("readOnly");
                }
                for (k, v) in map.iter_mut() {
                    fill(k, v);
                }
                // Go writes its own member order.
                let members: Vec<(String, Value)> = std::mem::take(map).into_iter().rev().collect();
                map.extend(members);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| fill(parent, i)),
            _ => {}
        }
    }
    let mut pod = pod.clone();
    fill("", &mut pod);
    pod
}

fn empty() -> Decision {
    Decision::Patch(json_patch::Patch(Vec::new()))
}

fn req() -> InjectRequest<'static> {
    InjectRequest { namespace: "shop", nodes_support_native_sidecars: true, ..Default::default() }
}

#[test]
fn same_pod_ignores_what_the_api_server_writes_back() {
    for yaml in ["{}", "nativeSidecars: disabled", "proxy: {resources: {limits: {cpu: '2000m', memory: 1Gi}}}"] {
        let injector = config(yaml);
        // The API server reads the pod before the first review too.
        let once = injected(&read_back(&pod()), &injector);
        let back = read_back(&once);
        assert_ne!(back.to_string(), once.to_string(), "{yaml}: the server's form differs");
        assert!(same_pod(&once, &back), "{yaml}");
        assert_eq!(injector.inject(&back, &req()), empty(), "{yaml}: the re-review needs no patch");
        assert_eq!(differences(&back, &injector).unwrap(), Vec::<String>::new(), "{yaml}");
    }
}

/// Edits that matter are not defaults: the re-review of an edited pod is injected again, and the
/// result is the fresh injection (as the API server reads it).
#[test]
fn edits_after_the_api_server_read_back_are_injected_again() {
    let injector = config("{}");
    let back = read_back(&injected(&read_back(&pod()), &injector));
    fn proxy(pod: &mut Value) -> &mut Value {
        let list = pod["spec"]["initContainers"].as_array_mut().unwrap();
        list.iter_mut().find(|c| c["name"] == "istio-proxy").unwrap()
    }
    type Edit = (&'static str, fn(&mut Value));
    let edits: [Edit; 6] = [
        ("image", |p| proxy(p)["image"] = json!("example.com/proxy:9")),
        ("removed container", |p| {
            p["spec"]["initContainers"].as_array_mut().unwrap().retain(|c| c["name"] != "istio-proxy")
        }),
        ("env", |p| proxy(p)["env"].as_array_mut().unwrap().retain(|e| e["name"] != "ISTIO_META_MESH_ID")),
        ("probe", |p| proxy(p)["readinessProbe"]["timeoutSeconds"] = json!(30)),
        ("pull policy", |p| proxy(p)["imagePullPolicy"] = json!("Never")),
        ("removed volume", |p| p["spec"]["volumes"].as_array_mut().unwrap().retain(|v| v["name"] != "istio-envoy")),
    ];
    for (what, edit) in edits {
        let mut edited = back.clone();
        edit(&mut edited);
        assert!(!same_pod(&edited, &back), "{what}");
        let Decision::Patch(patch) = injector.inject(&edited, &req()) else { panic!("{what}: not injected") };
        assert!(!patch.0.is_empty(), "{what}: needs a patch");
        let mut fixed = edited.clone();
        json_patch::patch(&mut fixed, &patch).unwrap();
        if what == "removed container" {
            // The agent's probe settings went with the container: it comes back without them.
            assert!(fixed["spec"]["initContainers"].as_array().unwrap().iter().any(|c| c["name"] == "istio-proxy"));
        } else {
            assert!(same_pod(&fixed, &back), "{what}: the patch restores the injection");
        }
    }
}

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

use mesh_core::inject::{Decision, InjectConfig, InjectRequest, inject};
use serde_json::{Value, json};

use super::*;
use crate::check_inject::tests::release;

const OLD: &str = "proxy: {image: docker.io/istio/proxyv2:1.27.0}\n";
const NEW: &str = "proxy: {image: docker.io/istio/proxyv2:1.28.0}\n";

fn cluster() -> ClusterWebhooks {
    let mut all = release("mesh", "default", NEW);
    all.extend(release("mesh-canary", "canary", &format!("{NEW}revision: canary\n")));
    let mwcs = all.iter().filter(|o| o["kind"] == "MutatingWebhookConfiguration").cloned().collect();
    ClusterWebhooks { mwcs, objects: all }
}

fn namespaces() -> Vec<Value> {
    [("on", json!({"istio-injection": "enabled"})), ("canary", json!({"istio.io/rev": "canary"})), ("off", json!({}))]
        .into_iter()
        .map(|(name, labels)| json!({"kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
        .collect()
}

/// Pod `i` of Deployment `deploy` (ReplicaSet `<deploy>-5d8f`), injected with `config` when given.
fn pod(ns: &str, deploy: &str, i: usize, config: Option<&str>) -> Value {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{deploy}-5d8f-{i}"), "generateName": format!("{deploy}-5d8f-"), "namespace": ns,
            "uid": format!("uid-{ns}-{deploy}-{i}"),
            "labels": {"app": deploy, "pod-template-hash": "5d8f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-5d8f"),
                "controller": true, "uid": "rs"}]},
        "spec": {"nodeName": format!("node-{i}"), "containers": [{"name": deploy, "image": "app:1",
            "volumeMounts": [{"name": format!("kube-api-access-{i}"), "mountPath": "/var/run/secrets"}]}],
            "volumes": [{"name": format!("kube-api-access-{i}"), "projected": {"sources": []}}]},
        "status": {"phase": "Running"}});
    let Some(config) = config else { return pod };
    let cfg = InjectConfig::from_yaml(config).unwrap();
    let req = InjectRequest { namespace: ns, nodes_support_native_sidecars: true, ..Default::default() };
    let Decision::Patch(patch) = inject(&pod, &req, &cfg) else { panic!("not injected") };
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn pods() -> Vec<Value> {
    let mut pods = Vec::new();
    for i in 0..3 {
        pods.push(pod("on", "reviews", i, Some(NEW)));
        pods.push(pod("on", "ratings", i, Some(OLD)));
    }
    pods.push(pod("on", "legacy", 0, None));
    pods.push(pod("canary", "cart", 0, Some(&format!("{NEW}revision: canary\n"))));
    pods.push(pod("canary", "web", 0, Some(NEW)));
    pods.push(pod("off", "stale", 0, Some(NEW)));
    pods.push(pod("off", "plain", 0, None));
    let mut done = pod("on", "batch", 0, None);
    done["status"]["phase"] = json!("Succeeded");
    pods.push(done);
    pods
}

#[test]
fn counts_per_namespace_and_each_pod_that_needs_a_restart() {
    let listing = list(&cluster(), &namespaces(), &pods(), None, None).unwrap();
    let counts: Vec<(&str, &str, &str, usize, usize, usize)> = listing
        .namespaces
        .iter()
        .map(|r| {
            (
                r.namespace.as_str(),
                r.labels.as_str(),
                r.revision.as_str(),
                r.injected_current,
                r.injected_outdated,
                r.not_injected,
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("canary", "istio.io/rev=canary", "canary", 1, 1, 0),
            ("off", "-", "-", 0, 1, 0),
            ("on", "istio-injection=enabled", "default", 3, 3, 1),
        ]
    );
    assert_eq!(listing.namespaces[2].webhook, "mesh-sidecar-injector/w0.sidecar-injector.istio.io");
    // Three pods of one template are computed once: reviews, ratings, legacy, cart, web.
    assert_eq!(listing.computed, 5);
    let find = |name: &str| listing.pods.iter().find(|p| p.pod == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(find("ratings-5d8f-1").differences, ["istio-proxy image proxyv2:1.27.0 → 1.28.0"]);
    assert_eq!(find("ratings-5d8f-1").restart, "kubectl rollout restart deployment/ratings -n on");
    assert_eq!(find("legacy-5d8f-0").state, PodState::NotInjected);
    assert_eq!(find("web-5d8f-0").differences.first().map(String::as_str), Some("revision default → canary"));
    assert_eq!(find("stale-5d8f-0").differences, ["no injector selects it now"]);
    assert!(!listing.pods.iter().any(|p| p.pod.starts_with("reviews") || p.pod.starts_with("plain")));
    assert_eq!(listing.exit_code(), crate::exit::PROBLEM);
}

#[test]
fn one_namespace_and_all_current_exits_0() {
    let pods: Vec<Value> = (0..2).map(|i| pod("on", "reviews", i, Some(NEW))).collect();
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), None).unwrap();
    assert_eq!(listing.namespaces.len(), 1);
    assert_eq!(listing.namespaces[0].injected_current, 2);
    assert_eq!(listing.exit_code(), crate::exit::OK);
    // --config replaces every served config.
    let old = InjectConfig::from_yaml(OLD).unwrap();
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), Some(&old)).unwrap();
    assert_eq!(listing.namespaces[0].injected_outdated, 2);
}

#[test]
fn table_and_pods() {
    let listing = list(&cluster(), &namespaces(), &pods(), None, None).unwrap();
    let text = render(&listing, Output::Table, true).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("NAMESPACE   LABELS")
            && first.ends_with("INJECTED CURRENT   INJECTED OUTDATED   NOT INJECTED"),
        "{text}"
    );
    assert!(text.contains("  kubectl rollout restart deployment/ratings -n on\n"), "{text}");
    assert_eq!(text.matches("kubectl rollout restart deployment/ratings").count(), 1, "{text}");
    assert!(
        text.contains("ratings-5d8f-0   deployment/ratings   outdated       istio-proxy image proxyv2:1.27.0 → 1.28.0"),
        "{text}"
    );
    let without = render(&listing, Output::Table, false).unwrap();
    assert!(!without.contains("To restart"), "{without}");
    let doc: Value = serde_json::from_str(&render(&listing, Output::Json, true).unwrap()).unwrap();
    assert_eq!(doc["namespaces"][2]["injectedOutdated"], 3);
    assert_eq!(doc["pods"].as_array().map(Vec::len), Some(6));
}

#[test]
fn a_mesh_webhook_without_its_config_names_the_fix() {
    let mut c = cluster();
    c.objects.retain(|o| o["kind"] != "ConfigMap");
    let err = list(&c, &namespaces(), &pods(), None, None).unwrap_err();
    assert!(format!("{err:#}").contains("give --config FILE"), "{err:#}");
}

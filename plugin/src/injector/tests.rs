use mesh_core::inject::{Decision, InjectConfig, InjectRequest, inject};
use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::model::{selector_label_keys, template_key};
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

/// `pod` injected with `config` as the webhook would have done at its creation.
fn injected(pod: Value, config: &str) -> Value {
    let cfg = InjectConfig::from_yaml(config).unwrap();
    let ns = pod["metadata"]["namespace"].as_str().unwrap().to_string();
    let req = InjectRequest { namespace: &ns, nodes_support_native_sidecars: true, ..Default::default() };
    let Decision::Patch(patch) = inject(&pod, &req, &cfg) else { panic!("not injected") };
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// Pod `i` of StatefulSet `sts` at controller revision `rev`, as the StatefulSet controller writes it
/// (name, hostname, pod-name and pod-index labels, a claim per pod).
fn sts_pod(sts: &str, i: usize, rev: &str) -> Value {
    let name = format!("{sts}-{i}");
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "generateName": format!("{sts}-"), "namespace": "on", "uid": format!("uid-{name}"),
            "labels": {"app": sts, "controller-revision-hash": format!("{sts}-{rev}"),
                "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": i.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts, "controller": true, "uid": "sts"}]},
        "spec": {"hostname": name, "subdomain": sts, "nodeName": format!("node-{i}"),
            "containers": [{"name": sts, "image": "db:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}},
                {"name": format!("kube-api-access-{i}"), "projected": {"sources": []}}]},
        "status": {"phase": "Running"}})
}

/// The pod of DaemonSet `ds` on `node`, with the node affinity the DaemonSet controller writes.
fn ds_pod(ds: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{ds}-{node}"), "generateName": format!("{ds}-"), "namespace": "on",
            "labels": {"app": ds, "controller-revision-hash": "7c9d", "pod-template-generation": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds, "controller": true, "uid": "ds"}]},
        "spec": {"nodeName": node, "containers": [{"name": ds, "image": "agent:1"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}},
        "status": {"phase": "Running"}})
}

/// Removes `key` from object `v`, keeping the order of the other members.
fn without(v: &mut Value, key: &str) {
    let rest = v.as_object().unwrap().iter().filter(|(k, _)| *k != key).map(|(k, v)| (k.clone(), v.clone())).collect();
    *v = Value::Object(rest);
}

/// Each pod's state (`None`: current or left alone) when listed with the others, and when listed alone.
fn grouped_and_alone(pods: &[Value], fixed: Option<&InjectConfig>) -> (Vec<Option<PodState>>, Vec<Option<PodState>>) {
    let state = |l: &Listing, p: &Value| l.pods.iter().find(|r| r.pod == p["metadata"]["name"]).map(|r| r.state);
    let all = list(&cluster(), &namespaces(), pods, Some("on"), fixed).unwrap();
    let grouped = pods.iter().map(|p| state(&all, p)).collect();
    let alone = pods
        .iter()
        .map(|p| state(&list(&cluster(), &namespaces(), std::slice::from_ref(p), Some("on"), fixed).unwrap(), p))
        .collect();
    (grouped, alone)
}

#[test]
fn statefulset_pods_of_one_revision_are_compared_once() {
    let pods: Vec<Value> = (0..3).map(|i| injected(sts_pod("db", i, "6d4f"), NEW)).collect();
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), None).unwrap();
    assert_eq!(listing.computed, 1);
    assert_eq!(listing.namespaces[0].injected_current, 3);
    // Another revision (an older proxy) is its own template, its pods again compared once.
    let mut pods = pods;
    pods.extend((3..5).map(|i| injected(sts_pod("db", i, "5b7a"), OLD)));
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), None).unwrap();
    assert_eq!(listing.computed, 2);
    assert_eq!((listing.namespaces[0].injected_current, listing.namespaces[0].injected_outdated), (3, 2));
    assert_eq!(listing.pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>(), ["db-3", "db-4"]);
}

#[test]
fn statefulset_fields_that_are_not_the_controllers_keep_pods_apart() {
    let kept = BTreeSet::new();
    let key = |p: &Value| template_key(p, &kept);
    let base = key(&sts_pod("db", 0, "6d4f"));
    assert_eq!(key(&sts_pod("db", 1, "6d4f")), base);
    let mut other_host = sts_pod("db", 1, "6d4f");
    other_host["spec"]["hostname"] = json!("other");
    let mut wrong_index = sts_pod("db", 1, "6d4f");
    wrong_index["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!("0");
    let mut wrong_name_label = sts_pod("db", 1, "6d4f");
    wrong_name_label["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!("db-0");
    let mut shared_claim = sts_pod("db", 1, "6d4f");
    shared_claim["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("data-db-0");
    let mut no_index = sts_pod("db", 1, "6d4f");
    without(&mut no_index["metadata"]["labels"], "apps.kubernetes.io/pod-index");
    let mut not_generated = sts_pod("db", 1, "6d4f");
    without(&mut not_generated["metadata"], "generateName");
    let mut not_generated_0 = sts_pod("db", 0, "6d4f");
    without(&mut not_generated_0["metadata"], "generateName");
    for (what, pod) in [
        ("hostname differs from the name", &other_host),
        ("pod-index is not the name's ordinal", &wrong_index),
        ("pod-name label is not the name", &wrong_name_label),
        ("claim name is not <volume>-<pod name>", &shared_claim),
        ("no pod-index label", &no_index),
    ] {
        assert_ne!(key(pod), base, "{what}");
    }
    // Without generateName the injector names the workload after the pod, so the name counts.
    assert_ne!(key(&not_generated), key(&not_generated_0));
    // Listed together, the pod whose hostname differs is compared on its own.
    let pods =
        [injected(sts_pod("db", 0, "6d4f"), NEW), injected(sts_pod("db", 2, "6d4f"), NEW), injected(other_host, NEW)];
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), None).unwrap();
    assert_eq!(listing.computed, 2);
    assert_eq!(listing.namespaces[0].injected_current, 3);
}

#[test]
fn daemonset_pods_on_three_nodes_are_compared_once() {
    let pods: Vec<Value> = ["node-a", "node-b", "node-c"].iter().map(|n| injected(ds_pod("agent", n), OLD)).collect();
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), None).unwrap();
    assert_eq!(listing.computed, 1);
    assert_eq!(listing.namespaces[0].injected_outdated, 3);
    assert!(listing.pods.iter().all(|p| p.differences == ["istio-proxy image proxyv2:1.27.0 → 1.28.0"]));
    assert!(listing.pods.iter().all(|p| p.restart == "kubectl rollout restart daemonset/agent -n on"));
    // Only the exact term the controller writes, for the pod's own node, is left out.
    let kept = BTreeSet::new();
    let base = template_key(&ds_pod("agent", "node-a"), &kept);
    let required = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
    let mut two_terms = ds_pod("agent", "node-b");
    two_terms.pointer_mut(required).unwrap().as_array_mut().unwrap().push(json!({"matchExpressions": []}));
    let mut other_node = ds_pod("agent", "node-b");
    other_node["spec"]["nodeName"] = json!("node-x");
    let mut two_values = ds_pod("agent", "node-b");
    two_values
        .pointer_mut(&format!("{required}/0/matchFields/0/values"))
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(json!("node-c"));
    let mut label_key = ds_pod("agent", "node-b");
    label_key.pointer_mut(&format!("{required}/0/matchFields/0/key")).unwrap().clone_from(&json!("metadata.labels"));
    let mut pending = ds_pod("agent", "node-b");
    without(&mut pending["spec"], "nodeName");
    assert_eq!(template_key(&pending, &kept), base, "not yet scheduled");
    for (what, pod) in [
        ("two terms", &two_terms),
        ("scheduled elsewhere", &other_node),
        ("two nodes", &two_values),
        ("another field", &label_key),
    ] {
        assert_ne!(template_key(pod, &kept), base, "{what}");
    }
}

#[test]
fn a_selector_naming_the_pod_name_label_keeps_statefulset_pods_apart() {
    // The config never injects db-1: grouped with db-0 it would wrongly count as not injected.
    let cfg = InjectConfig::from_yaml(&format!(
        "{NEW}neverInjectSelector: [{{matchLabels: {{statefulset.kubernetes.io/pod-name: db-1}}}}]\n"
    ))
    .unwrap();
    assert_eq!(selector_label_keys(&cfg), BTreeSet::from(["statefulset.kubernetes.io/pod-name".to_string()]));
    let pods: Vec<Value> = (0..3).map(|i| sts_pod("db", i, "6d4f")).collect();
    let listing = list(&cluster(), &namespaces(), &pods, Some("on"), Some(&cfg)).unwrap();
    assert_eq!(listing.computed, 3);
    assert_eq!(listing.namespaces[0].not_injected, 2);
    assert_eq!(listing.pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>(), ["db-0", "db-2"]);
    let (grouped, alone) = grouped_and_alone(&pods, Some(&cfg));
    assert_eq!(grouped, alone);
    // A selector on another label lets them share a key again.
    let other =
        InjectConfig::from_yaml(&format!("{NEW}alwaysInjectSelector: [{{matchLabels: {{tier: db}}}}]\n")).unwrap();
    assert_eq!(list(&cluster(), &namespaces(), &pods, Some("on"), Some(&other)).unwrap().computed, 1);
}

#[test]
fn grouped_pods_get_the_outcome_they_get_alone() {
    let mut other_host = injected(sts_pod("db", 3, "6d4f"), NEW);
    other_host["spec"]["hostname"] = json!("other");
    let pods = vec![
        injected(sts_pod("db", 0, "6d4f"), NEW),
        injected(sts_pod("db", 1, "6d4f"), NEW),
        injected(sts_pod("db", 2, "5b7a"), OLD),
        other_host,
        sts_pod("cache", 0, "1a2b"),
        injected(ds_pod("agent", "node-a"), OLD),
        injected(ds_pod("agent", "node-b"), NEW),
        ds_pod("agent", "node-c"),
    ];
    let (grouped, alone) = grouped_and_alone(&pods, None);
    assert_eq!(grouped, alone);
    assert_eq!(
        grouped,
        [
            None,
            None,
            Some(PodState::Outdated),
            None,
            Some(PodState::NotInjected),
            Some(PodState::Outdated),
            None,
            Some(PodState::NotInjected)
        ]
    );
}

//! The review cache and the API server's generated service-account token volume: replicas that
//! differ only by its name share an entry, and every answer equals a fresh injection of that very
//! review.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn token_mount(name: &str) -> Value {
    json!({"name": name, "readOnly": true, "mountPath": TOKEN_PATH})
}

/// The volume the ServiceAccount plugin adds (with OpenShift's extra source when `openshift`).
fn token_volume(name: &str, openshift: bool) -> Value {
    let mut sources = vec![
        json!({"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}),
        json!({"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
        json!({"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}),
    ];
    if openshift {
        sources.push(json!({"configMap": {"name": "openshift-service-ca.crt",
            "items": [{"key": "service-ca.crt", "path": "service-ca.crt"}]}}));
    }
    json!({"name": name, "projected": {"sources": sources, "defaultMode": 420}})
}

/// A pod template as the API server completes it, but for the token volume's name.
#[derive(Debug, Clone)]
struct Shape {
    /// Other volumes, and where among them the token volume goes.
    volumes: Vec<String>,
    token_at: usize,
    openshift: bool,
    /// Containers: name, own mounts (indexes into `volumes`), where the token mount goes (none:
    /// not mounted, as with a container of its own mount at the token path).
    containers: Vec<(String, Vec<usize>, Option<usize>)>,
    init: Vec<(String, Vec<usize>, Option<usize>)>,
    /// A user `istio-proxy` container (`image: auto`) with the token mount: the injection's
    /// overrides annotation then names the volume.
    user_proxy: bool,
    /// An annotation whose value is the token volume's name: the name is then kept in the key.
    mentioned: bool,
    /// The review is the re-review after injection (the ServiceAccount plugin mounted the volume
    /// in the injected containers too).
    reinvoked: bool,
}

fn container(name: &str, own: &[usize], token_at: Option<usize>, volumes: &[String], token: &str) -> Value {
    let mut mounts: Vec<Value> =
        own.iter().map(|i| json!({"name": volumes[*i], "mountPath": format!("/mnt/{}", volumes[*i])})).collect();
    if let Some(at) = token_at {
        mounts.insert(at.min(mounts.len()), token_mount(token));
    }
    let mut c = json!({"name": name, "image": format!("{name}:1"), "ports": [{"containerPort": 8080}]});
    if !mounts.is_empty() {
        c["volumeMounts"] = json!(mounts);
    }
    c
}

impl Shape {
    fn pod(&self, token: &str) -> Value {
        let mut volumes: Vec<Value> = self.volumes.iter().map(|v| json!({"name": v, "emptyDir": {}})).collect();
        volumes.insert(self.token_at.min(volumes.len()), token_volume(token, self.openshift));
        let list = |list: &[(String, Vec<usize>, Option<usize>)]| -> Vec<Value> {
            list.iter().map(|(n, own, at)| container(n, own, *at, &self.volumes, token)).collect()
        };
        let mut containers = list(&self.containers);
        if self.user_proxy {
            containers.push(json!({"name": "istio-proxy", "image": "auto", "volumeMounts": [token_mount(token)]}));
        }
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-5d8f7-", "namespace": "foo", "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7",
                    "uid": "6a1c8f9e-0000-4000-8000-000000000001", "controller": true}]},
            "spec": {"volumes": volumes, "containers": containers, "serviceAccountName": "default"}});
        let init = list(&self.init);
        if !init.is_empty() {
            pod["spec"]["initContainers"] = json!(init);
        }
        if self.mentioned {
            pod["metadata"]["annotations"] = json!({"example.com/volume": token});
        }
        pod
    }
}

fn arb_containers(prefix: &'static str, max: usize) -> impl Strategy<Value = Vec<(String, Vec<usize>, Option<usize>)>> {
    let one = (
        "[a-z]{1,5}".prop_map(move |n| format!("{prefix}{n}")),
        proptest::collection::vec(0usize..4, 0..3),
        proptest::option::weighted(0.9, 0usize..4),
    );
    proptest::collection::vec(one, 0..max).prop_map(|list| {
        let mut seen = Vec::new();
        list.into_iter().filter(|(n, ..)| !seen.contains(n) && (seen.push(n.clone()), true).1).collect()
    })
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    (
        proptest::collection::btree_set("[a-z]{1,6}", 1..5),
        0usize..6,
        any::<bool>(),
        arb_containers("c-", 4),
        arb_containers("i-", 3),
        proptest::bool::weighted(0.25),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.3),
    )
        .prop_filter("a pod has a container", |s| !s.3.is_empty())
        .prop_map(|(volumes, token_at, openshift, containers, init, user_proxy, mentioned, reinvoked)| {
            let volumes: Vec<String> = volumes.into_iter().collect();
            let fix = |list: Vec<(String, Vec<usize>, Option<usize>)>| -> Vec<(String, Vec<usize>, Option<usize>)> {
                let n = volumes.len();
                list.into_iter()
                    .map(|(name, own, at)| {
                        let mut own: Vec<usize> = own.into_iter().map(|i| i % n).collect();
                        own.dedup();
                        (name, own, at)
                    })
                    .collect()
            };
            Shape {
                containers: fix(containers),
                init: fix(init),
                volumes,
                token_at,
                openshift,
                user_proxy,
                mentioned,
                reinvoked,
            }
        })
}

fn state(cache_bytes: usize) -> Arc<AppState> {
    let state = Arc::new(AppState::new(Arc::new(CertStore::new())).with_review_cache(cache_bytes));
    state.set_config(InjectConfig::default());
    state.set_native_sidecars(true);
    state
}

/// The answer's body and whether it came from the cache.
fn answer_of(state: &AppState, review: &Value) -> (Vec<u8>, bool) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(review).unwrap();
    match answer(state, Ok(InjectTarget::default()), &headers, Ok(body)) {
        Ok(answered) => (answered.body, answered.cached),
        Err(failure) => panic!("{}: {}", failure.status, failure.message),
    }
}

fn decoded_patch(body: &[u8]) -> Option<String> {
    let response: Value = serde_json::from_slice(body).unwrap();
    let patch = response["response"]["patch"].as_str()?;
    Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(patch).unwrap()).unwrap())
}

/// What the ServiceAccount plugin does to the injected pod before the re-review: mounts the token
/// volume in every container and init container that has no mount at the token path.
fn mount_token_everywhere(pod: &mut Value, token: &str) {
    for list in ["containers", "initContainers"] {
        for c in pod["spec"].get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let mounts = c.as_object_mut().unwrap().entry("volumeMounts").or_insert_with(|| json!([]));
            let mounts = mounts.as_array_mut().unwrap();
            if !mounts.iter().any(|m| m["mountPath"] == TOKEN_PATH) {
                mounts.push(token_mount(token));
            }
        }
    }
}

/// The review of `shape` with `token`, as the API server sends it (the re-review after a fresh
/// injection when `shape.reinvoked`).
fn review_for(shape: &Shape, token: &str) -> Value {
    let pod = shape.pod(token);
    if !shape.reinvoked {
        return review_of(pod);
    }
    let (body, _) = answer_of(&state(0), &review_of(pod.clone()));
    let response: Value = serde_json::from_slice(&body).unwrap();
    let mut injected = if response["response"]["patch"].is_string() { apply_patch(&pod, &response) } else { pod };
    mount_token_everywhere(&mut injected, token);
    review_of(injected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every answer through the cache is the answer of a fresh injection of the same review, for
    /// random token volume names, positions of the volume and of its mounts, containers that do
    /// not mount it, a user istio-proxy mounting it and re-reviews; replicas that differ only by
    /// the name share one entry.
    #[test]
    fn cached_answers_are_fresh_injections_whatever_the_token_volume(
        shape in arb_shape(),
        suffixes in proptest::collection::btree_set("[a-z0-9]{5}", 2..5),
    ) {
        let (cached, fresh) = (state(cache::DEFAULT_BYTES), state(0));
        // The re-review of a pod with a user istio-proxy mentions the name in the overrides
        // annotation the injection wrote: the name stays in the key.
        let shared = !(shape.mentioned || shape.user_proxy && shape.reinvoked);
        for (i, suffix) in suffixes.iter().enumerate() {
            let token = format!("kube-api-access-{suffix}");
            let review = review_for(&shape, &token);
            let (got, hit) = answer_of(&cached, &review);
            let (want, _) = answer_of(&fresh, &review);
            prop_assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap(), "review {} ({})", i, token);
            prop_assert_eq!(hit, i > 0 && shared, "review {}", i);
        }
        let entries = cached.config().unwrap().cache.len();
        prop_assert_eq!(entries, if shared { 1 } else { suffixes.len() });
    }
}

#[test]
fn an_answer_that_names_the_token_volume_is_bound_to_each_review() {
    let shape = Shape {
        volumes: vec!["data".into()],
        token_at: 1,
        openshift: false,
        containers: vec![("app".into(), vec![0], Some(1))],
        init: Vec::new(),
        user_proxy: true,
        mentioned: false,
        reinvoked: false,
    };
    let cached = state(cache::DEFAULT_BYTES);
    let (first, hit) = answer_of(&cached, &review_of(shape.pod("kube-api-access-abcde")));
    assert!(!hit);
    assert!(decoded_patch(&first).unwrap().contains("kube-api-access-abcde"), "the overrides name the volume");
    let (second, hit) = answer_of(&cached, &review_of(shape.pod("kube-api-access-x7k2q")));
    assert!(hit);
    let second = decoded_patch(&second).unwrap();
    assert!(second.contains("kube-api-access-x7k2q") && !second.contains("abcde"), "{second}");
}

#[test]
fn the_token_name_stays_in_the_key_unless_it_is_only_the_volume_and_its_mounts() {
    let key = |pod: &Value| {
        let body = serde_json::to_vec(&review_of(pod.clone())).unwrap();
        let request = admission::parse_review(&body).unwrap();
        cache::Key::new(&request, None, None, true)
    };
    let shape = Shape {
        volumes: vec!["data".into()],
        token_at: 0,
        openshift: true,
        containers: vec![("app".into(), vec![0], Some(0))],
        init: vec![("i-setup".into(), Vec::new(), Some(0))],
        user_proxy: false,
        mentioned: false,
        reinvoked: false,
    };
    let (a, b) = (shape.pod("kube-api-access-8mhdn"), shape.pod("kube-api-access-x7k2q"));
    assert_eq!(key(&a).token(), Some("kube-api-access-8mhdn"));
    assert_eq!(key(&a), key(&b), "replicas share a key");
    let moved = Shape { token_at: 1, ..shape.clone() }.pod("kube-api-access-x7k2q");
    assert_ne!(key(&a), key(&moved), "the volume's position is in the key");
    let unmounted = Shape { init: vec![("i-setup".into(), Vec::new(), None)], ..shape.clone() };
    assert_ne!(key(&a), key(&unmounted.pod("kube-api-access-x7k2q")), "which containers mount it is in the key");
    let mut elsewhere = b.clone();
    elsewhere["spec"]["containers"][0]["env"] = json!([{"name": "V", "value": "kube-api-access-x7k2q"}]);
    assert_eq!(key(&elsewhere).token(), None, "another mention keeps the name");
    let mut not_projected = b.clone();
    not_projected["spec"]["volumes"][0] = json!({"name": "kube-api-access-x7k2q", "emptyDir": {}});
    assert_eq!(key(&not_projected).token(), None);
    let mut long = b.clone();
    long["spec"]["volumes"][0]["name"] = json!("kube-api-access-x7k2qq");
    assert_eq!(key(&long).token(), None, "only five generated characters");
    let mut escaped = serde_json::to_string(&review_of(b)).unwrap();
    escaped = escaped.replacen("kube-api-access-x7k2q", "kube-api-access-x7k2\\u0071", 1);
    let request = admission::parse_review(escaped.as_bytes()).unwrap();
    assert_eq!(cache::Key::new(&request, None, None, true).token(), None, "an escaped mention keeps the name");
}

#[test]
fn the_re_review_of_an_injected_pod_is_allowed_without_a_patch() {
    let fixture = fixture("admissionreview-v1-pod-generatename-owner.json");
    let pod = fixture["request"]["object"].clone();
    let token = "kube-api-access-8mhdn";
    let state = state(cache::DEFAULT_BYTES);
    let (first, _) = answer_of(&state, &review_of(pod.clone()));
    let mut injected = apply_patch(&pod, &serde_json::from_slice(&first).unwrap());
    mount_token_everywhere(&mut injected, token);
    for (i, uid) in ["re-1", "re-2"].into_iter().enumerate() {
        let mut review = review_of(injected.clone());
        review["request"]["uid"] = json!(uid);
        let (body, hit) = answer_of(&state, &review);
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            response,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": uid, "allowed": true}})
        );
        assert_eq!(hit, i == 1, "the second re-review is answered from the cache");
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&review_of(injected)).unwrap();
    let answered = answer(&state, Ok(InjectTarget::default()), &headers, Ok(body)).ok().unwrap();
    assert_eq!((answered.decided.outcome, answered.decided.reason), (Outcome::Skipped, ALREADY_INJECTED));
}

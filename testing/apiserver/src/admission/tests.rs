use std::collections::HashMap;

use super::*;

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "bar-7d9f8b6c5-", "namespace": "foo", "labels": {"app": "bar"}},
        "spec": {"initContainers": [{"name": "migrate", "image": "m:1"}],
                 "containers": [{"name": "bar", "image": "b:1"}]}})
}

fn fixture_pod() -> anyhow::Result<Value> {
    let path =
        mesh_test_data::shared_dir()?.join("fixtures/kube-apiserver/admissionreview-v1-pod-generatename-owner.json");
    let review: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok(review["request"]["object"].clone())
}

#[test]
fn service_account_plugin_mounts_the_token_like_the_real_server() -> anyhow::Result<()> {
    let mut p = pod();
    service_account_admit(&mut p, None, || "kube-api-access-8mhdn".into());
    let real = fixture_pod()?;
    let (ours, theirs) = (&p["spec"]["volumes"][0], &real["spec"]["volumes"][0]);
    assert_eq!(ours["name"], theirs["name"]);
    assert_eq!(ours["projected"]["defaultMode"], theirs["projected"]["defaultMode"]);
    // The capture's fourth source (openshift-service-ca.crt) is its distribution's addition; the
    // upstream plugin's three sources come first, in this order.
    let sources = theirs["projected"]["sources"].as_array().cloned().unwrap_or_default();
    assert_eq!(ours["projected"]["sources"].as_array().map(Vec::as_slice), sources.get(..3));
    for list in ["initContainers", "containers"] {
        assert_eq!(p["spec"][list][0]["volumeMounts"], real["spec"][list][0]["volumeMounts"], "{list}");
    }
    assert_eq!(
        (&p["spec"]["serviceAccountName"], &p["spec"]["serviceAccount"]),
        (&json!("default"), &json!("default"))
    );
    assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[test]
fn service_account_plugin_respects_opt_outs_and_existing_mounts() {
    let mut p = pod();
    p["spec"]["automountServiceAccountToken"] = json!(false);
    service_account_admit(&mut p, None, || "kube-api-access-aaaaa".into());
    assert!(p["spec"].get("volumes").is_none() && p["spec"]["containers"][0].get("volumeMounts").is_none(), "{p}");
    assert_eq!(p["spec"]["serviceAccountName"], "default");

    let mut p = pod();
    let sa = json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false,
                    "imagePullSecrets": [{"name": "registry"}]});
    service_account_admit(&mut p, Some(&sa), || "kube-api-access-aaaaa".into());
    assert!(p["spec"].get("volumes").is_none(), "{p}");
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));

    // A container that mounts something at the path keeps it; the others get the token.
    let mut p = pod();
    p["spec"]["serviceAccountName"] = json!("reviews");
    p["spec"]["initContainers"][0]["volumeMounts"] = json!([{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]);
    service_account_admit(&mut p, None, || "kube-api-access-bbbbb".into());
    assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], json!([{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]));
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-bbbbb");
    assert_eq!(p["spec"]["serviceAccount"], "reviews");

    // Mirror pods are not touched.
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    let before = p.clone();
    service_account_admit(&mut p, None, || "kube-api-access-ccccc".into());
    assert_eq!(p, before);
}

#[test]
fn service_account_plugin_again_reuses_the_volume_for_new_containers() {
    let mut p = pod();
    service_account_admit(&mut p, None, || "kube-api-access-first".into());
    let again = p.clone();
    let mut unchanged = again.clone();
    service_account_admit(&mut unchanged, None, || "kube-api-access-other".into());
    assert_eq!(unchanged, again, "a second run changes nothing");
    if let Some(c) = p["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "istio-proxy", "image": "proxyv2"}));
    }
    service_account_admit(&mut p, None, || "kube-api-access-other".into());
    assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        p["spec"]["containers"][1]["volumeMounts"],
        json!([{"name": "kube-api-access-first", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}])
    );
}

fn attrs() -> Attributes {
    Attributes {
        group: String::new(),
        version: "v1".into(),
        kind: "Pod".into(),
        resource: "pods".into(),
        namespaced: true,
        namespace: "foo".into(),
        dry_run: false,
        user: "admin".into(),
        field_manager: None,
    }
}

#[test]
fn rules_match_operation_group_version_resource_and_scope() {
    let a = attrs();
    let rule = |ops: &str, groups: &str, versions: &str, resources: &str, scope: Option<&str>| {
        let mut r =
            json!({"operations": [ops], "apiGroups": [groups], "apiVersions": [versions], "resources": [resources]});
        if let Some(s) = scope {
            r["scope"] = json!(s);
        }
        rule_matches(&r, &a)
    };
    assert!(rule("CREATE", "", "v1", "pods", None));
    assert!(rule("*", "*", "*", "*", Some("Namespaced")));
    assert!(rule("CREATE", "", "v1", "*/*", Some("*")));
    assert!(!rule("UPDATE", "", "v1", "pods", None));
    assert!(!rule("CREATE", "apps", "v1", "pods", None));
    assert!(!rule("CREATE", "", "v1beta1", "pods", None));
    assert!(!rule("CREATE", "", "v1", "pods/status", None));
    assert!(!rule("CREATE", "", "v1", "pods/*", None));
    assert!(!rule("CREATE", "", "v1", "services", None));
    assert!(!rule("CREATE", "", "v1", "pods", Some("Cluster")));
}

fn hook(configuration: &str, name: &str, extra: Value) -> Hook {
    let mut spec = json!({"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"url": format!("https://127.0.0.1:9/{name}")},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    Hook { configuration: configuration.into(), index: 0, name: name.into(), spec }
}

#[test]
fn selectors_decide_with_the_namespace_and_the_object_labels() {
    let ns = json!({"metadata": {"name": "foo", "labels": {"istio-injection": "enabled"}}});
    let injection = json!({"namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}},
        "objectSelector": {"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}});
    let h = hook("c", "w", injection);
    assert_eq!(should_call(&h, &attrs(), &ns, &pod()), Ok(true));
    assert_eq!(should_call(&h, &attrs(), &json!({"metadata": {"name": "foo"}}), &pod()), Ok(false));
    let mut opted_out = pod();
    opted_out["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
    assert_eq!(should_call(&h, &attrs(), &ns, &opted_out), Ok(false));
    let bad = hook("c", "w", json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}));
    let err = should_call(&bad, &attrs(), &ns, &pod());
    assert!(
        err.as_ref().is_err_and(|e| e.contains("objectSelector") && e.contains("values must be non-empty")),
        "{err:?}"
    );
}

#[test]
fn hooks_are_ordered_by_configuration_name_then_position() {
    let config = |name: &str, hooks: &[&str]| json!({"metadata": {"name": name}, "webhooks": hooks.iter().map(|h| json!({"name": h})).collect::<Vec<_>>()});
    let got: Vec<(String, usize, String)> = hooks(&[config("zeta", &["z1"]), config("alpha", &["a2", "a1"])])
        .into_iter()
        .map(|h| (h.configuration, h.index, h.name))
        .collect();
    assert_eq!(
        got,
        [("alpha".into(), 0, "a2".into()), ("alpha".into(), 1, "a1".into()), ("zeta".into(), 0, "z1".into())]
    );
}

#[test]
fn endpoints_of_services_and_urls() -> Result<(), String> {
    let addr: SocketAddr = "127.0.0.1:4443".parse().map_err(|e| format!("{e}"))?;
    let routes = ServiceRoutes::from([(("mesh-system".into(), "injector".into(), 443), addr)]);
    let svc = hook(
        "c",
        "w",
        json!({"clientConfig": {"service": {"name": "injector", "namespace": "mesh-system", "path": "/inject"}}}),
    );
    let e = endpoint(&svc, &routes, None)?;
    assert_eq!(e.url, "https://injector.mesh-system.svc:443/inject?timeout=10s");
    assert_eq!(
        (e.host.as_str(), e.path.as_str(), e.addr),
        ("injector.mesh-system.svc", "/inject?timeout=10s", Some(addr))
    );
    let other = hook(
        "c",
        "w",
        json!({"timeoutSeconds": 3, "clientConfig": {"service": {"name": "x", "namespace": "y", "port": 8443}}}),
    );
    let e = endpoint(&other, &routes, Some("PEM"))?;
    assert_eq!((e.url.as_str(), e.addr, e.ca_pem.as_str()), ("https://x.y.svc:8443/?timeout=3s", None, "PEM"));
    let url = hook("c", "w", json!({"clientConfig": {"url": "https://localhost:8443/mutate", "caBundle": "UEVN"}}));
    let e = endpoint(&url, &routes, Some("other"))?;
    assert_eq!(
        (e.url.as_str(), e.host.as_str(), e.ca_pem.as_str()),
        ("https://localhost:8443/mutate?timeout=10s", "localhost", "PEM")
    );
    assert_eq!(e.addr, Some(SocketAddr::from(([127, 0, 0, 1], 8443))));
    let remote = hook("c", "w", json!({"clientConfig": {"url": "https://10.0.0.1/mutate"}}));
    assert_eq!(endpoint(&remote, &routes, None)?.addr, None, "only loopback is reached");
    Ok(())
}

#[test]
fn answers_are_checked_like_the_real_server() {
    let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": "W10="}});
    let body = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    assert_eq!(read_answer("u1", &body(&ok)), Ok(Answer { allowed: true, status: None, patch: Some(json!([])) }));
    assert_eq!(
        read_answer("u2", &body(&ok)),
        Err("received invalid webhook response: expected response.uid=\"u2\", got \"u1\"".into())
    );
    let mut no_type = ok.clone();
    no_type["response"].as_object_mut().map(|r| r.remove("patchType"));
    assert!(read_answer("u1", &body(&no_type)).is_err_and(|e| e.contains("response.patch but not response.patchType")));
    let d = denial("w.example.com", Some(&json!({"message": "no root", "code": 403, "reason": "Forbidden"})));
    assert_eq!(d.code, 403);
    assert_eq!(d.status["message"], "admission webhook \"w.example.com\" denied the request: no root");
    let d = denial("w.example.com", None);
    assert_eq!(
        (d.code, d.status["message"].as_str()),
        (400, Some("admission webhook \"w.example.com\" denied the request without explanation"))
    );
}

/// A transport that answers each webhook (by URL path) with a function of the review.
struct Fake(HashMap<String, Answerer>);

impl Transport for Fake {
    async fn post(&self, endpoint: &Endpoint, body: Vec<u8>, _timeout: Duration) -> Result<Vec<u8>, String> {
        let review: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let name = endpoint.path.trim_start_matches('/').split('?').next().unwrap_or("").to_string();
        let answer = self.0.get(&name).ok_or("no such webhook")?(&review)?;
        Ok(serde_json::to_vec(&answer).unwrap_or_default())
    }
}

fn allow(review: &Value, patch: Option<Value>) -> Value {
    let mut response = json!({"uid": review["request"]["uid"], "allowed": true});
    if let Some(p) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

fn uid() -> String {
    meta::uid()
}

type Answerer = Box<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

fn no_patch() -> Answerer {
    Box::new(|r| Ok(allow(r, None)))
}

fn label(key: &'static str) -> Answerer {
    Box::new(move |r| {
        Ok(allow(r, Some(json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": "x"}]))))
    })
}

/// (webhook, reinvocation) of every call of a chain over `hooks`, the in-tree plugin changing the
/// object in the second round when `in_tree_changes`.
/// A chain over `answers` with no Service routes and no fallback CA.
fn chain<P: FnMut(&mut Value) -> Result<(), Rejection>>(
    answers: &Fake,
    hooks: Vec<Hook>,
    in_tree: P,
) -> Chain<'_, Fake, P> {
    Chain {
        transport: answers,
        hooks,
        routes: ServiceRoutes::new(),
        fallback_ca: None,
        in_tree,
        new_uid: uid,
        calls: Vec::new(),
    }
}

/// The in-tree plugins as a test runs them: the ServiceAccount plugin with a fixed volume name.
fn token_plugin(o: &mut Value) -> Result<(), Rejection> {
    service_account_admit(o, None, || "kube-api-access-zzzzz".into());
    Ok(())
}

fn calls_of(hooks: Vec<Hook>, answers: Fake, in_tree_changes: bool) -> Vec<(String, bool)> {
    let mut rounds = 0;
    let in_tree = |o: &mut Value| {
        rounds += 1;
        if in_tree_changes && rounds == 2 {
            o["metadata"]["annotations"] = json!({"in-tree": "again"});
        }
        Ok(())
    };
    let mut chain = chain(&answers, hooks, in_tree);
    let ns = json!({"metadata": {"name": "foo"}});
    let result = futures::executor::block_on(chain.admit(pod(), &attrs(), &ns));
    assert!(result.is_ok(), "{result:?}");
    chain.calls.iter().map(|c| (c.webhook.clone(), c.reinvocation)).collect()
}

#[test]
fn reinvocation_calls_again_the_reinvocable_webhooks_called_before_a_change() {
    let if_needed = json!({"reinvocationPolicy": "IfNeeded"});
    let hooks =
        || vec![hook("a", "a1", if_needed.clone()), hook("b", "b1", json!({})), hook("c", "c1", if_needed.clone())];
    let answers =
        || Fake(HashMap::from([("a1".to_string(), no_patch()), ("b1".into(), label("b")), ("c1".into(), no_patch())]));
    let call = |n: &str, again: bool| (n.to_string(), again);
    // b1 changed the object after a1: a1 again; c1 ran after the last change: not again.
    assert_eq!(
        calls_of(hooks(), answers(), false),
        [call("a1", false), call("b1", false), call("c1", false), call("a1", true)]
    );
    // The in-tree plugins changed the object in the second round: c1 too.
    assert_eq!(
        calls_of(hooks(), answers(), true),
        [call("a1", false), call("b1", false), call("c1", false), call("a1", true), call("c1", true)]
    );
    // No change at all: no second round.
    let quiet =
        Fake(HashMap::from([("a1".to_string(), no_patch()), ("b1".into(), no_patch()), ("c1".into(), no_patch())]));
    assert_eq!(calls_of(hooks(), quiet, true), [call("a1", false), call("b1", false), call("c1", false)]);
    // A reinvocable webhook that made the only change is called again only if something changes after it.
    let single = || vec![hook("m", "m1", if_needed.clone())];
    let changes = || Fake(HashMap::from([("m1".to_string(), label("m"))]));
    assert_eq!(calls_of(single(), changes(), false), [call("m1", false)]);
    assert_eq!(calls_of(single(), changes(), true), [call("m1", false), call("m1", true)]);
}

#[test]
fn an_injected_container_gets_the_token_and_the_injector_is_asked_again() {
    let injector = hook("mesh", "sidecar-injector.istio.io", json!({"reinvocationPolicy": "IfNeeded"}));
    let inject: Answerer = Box::new(|r| {
        let injected = r["request"]["object"]["metadata"]["annotations"].get("sidecar.istio.io/status").is_some();
        Ok(allow(
            r,
            (!injected).then(|| {
                json!([
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "istio-proxy", "image": "proxyv2"}},
            {"op": "add", "path": "/metadata/annotations", "value": {"sidecar.istio.io/status": "{}"}}])
            }),
        ))
    });
    let answers = Fake(HashMap::from([("sidecar-injector.istio.io".to_string(), inject)]));
    let mut chain = chain(&answers, vec![injector], token_plugin);
    let admitted = futures::executor::block_on(chain.admit(pod(), &attrs(), &json!({})));
    let admitted = admitted.unwrap_or_else(|e| panic!("{e:?}"));
    let proxy = &admitted["spec"]["containers"][1];
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(proxy["volumeMounts"][0]["name"], "kube-api-access-zzzzz", "{admitted}");
    let rounds: Vec<(bool, Option<Value>)> = chain.calls.iter().map(|c| (c.reinvocation, c.patch.clone())).collect();
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[1], (true, None), "the reinvocation answered no patch");
    assert_ne!(chain.calls[0].uid, chain.calls[1].uid, "each call has its own uid");
}

/// After a webhook's patch the pod is decoded as the real server decodes it, so the reinvocation
/// reviews the patched pod in the Go types' form: labels sorted, the added container defaulted
/// and in field order. An empty patch leaves the pod as it was.
#[test]
fn the_reinvocation_reviews_the_patched_pod_decoded() {
    let injector = hook("mesh", "sidecar-injector.istio.io", json!({"reinvocationPolicy": "IfNeeded"}));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let record = seen.clone();
    let inject: Answerer = Box::new(move |r| {
        let object = r["request"]["object"].clone();
        record.lock().map_err(|e| e.to_string())?.push(object.clone());
        let injected = object["metadata"]["annotations"].get("sidecar.istio.io/status").is_some();
        Ok(allow(
            r,
            Some(if injected {
                json!([])
            } else {
                json!([
                    {"op": "add", "path": "/spec/containers/-",
                     "value": {"ports": [{"containerPort": 15090}], "image": "proxyv2:1.28.0", "name": "istio-proxy"}},
                    {"op": "add", "path": "/metadata/labels/aaa", "value": "x"},
                    {"op": "add", "path": "/metadata/annotations", "value": {"sidecar.istio.io/status": "{}"}}])
            }),
        ))
    });
    let answers = Fake(HashMap::from([("sidecar-injector.istio.io".to_string(), inject)]));
    // The ServiceAccount plugin mounts the token in the new container: the reason for the re-review.
    let mut chain = chain(&answers, vec![injector], token_plugin);
    let admitted = futures::executor::block_on(chain.admit(pod(), &attrs(), &json!({})));
    let admitted = admitted.unwrap_or_else(|e| panic!("{e:?}"));
    let mut seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "reviewed again");
    assert_eq!(seen[1], admitted, "the empty patch changed nothing");
    let text = seen[1].to_string();
    assert_eq!(defaulting::decoded_pod(&seen[1]).to_string(), text, "the re-review is the decoded form");
    let labels: Vec<&String> =
        seen[1]["metadata"]["labels"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(labels, ["aaa", "app"]);
    let proxy = &mut seen[1]["spec"]["containers"][1];
    assert_eq!(proxy["volumeMounts"][0]["name"], "kube-api-access-zzzzz");
    proxy.as_object_mut().map(|p| p.shift_remove("volumeMounts"));
    assert_eq!(
        proxy.to_string(),
        json!({"name": "istio-proxy", "image": "proxyv2:1.28.0",
               "ports": [{"containerPort": 15090, "protocol": "TCP"}], "resources": {},
               "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
               "imagePullPolicy": "IfNotPresent"})
        .to_string()
    );
}

#[test]
fn failure_policy_fail_rejects_and_ignore_goes_on() {
    let run = |policy: &str| {
        let h = hook("a", "down.example.com", json!({"failurePolicy": policy}));
        let answers = Fake(HashMap::from([(
            "down.example.com".to_string(),
            Box::new(|_: &Value| Err("dial tcp 127.0.0.1:9: connect: connection refused".to_string())) as Answerer,
        )]));
        let mut chain = chain(&answers, vec![h], |_: &mut Value| Ok(()));
        let result = futures::executor::block_on(chain.admit(pod(), &attrs(), &json!({})));
        (result, chain.calls)
    };
    let (result, calls) = run("Fail");
    let rejected = result.err().unwrap_or_else(|| panic!("admitted"));
    assert_eq!(rejected.code, 500);
    assert_eq!(
        rejected.status["message"],
        "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: \
         Post \"https://127.0.0.1:9/down.example.com?timeout=10s\": dial tcp 127.0.0.1:9: connect: connection refused"
    );
    assert_eq!(rejected.status["reason"], "InternalError");
    assert!(calls[0].error.is_some() && !calls[0].allowed);
    let (result, calls) = run("Ignore");
    assert!(result.is_ok() && calls.len() == 1, "{result:?}");
}

#[test]
fn a_denial_rejects_with_the_webhooks_message() {
    let h = hook("a", "deny.example.com", json!({"failurePolicy": "Ignore"}));
    let deny: Answerer = Box::new(|r| {
        Ok(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": r["request"]["uid"], "allowed": false, "status": {"message": "no sidecar for you", "code": 403}}}))
    });
    let answers = Fake(HashMap::from([("deny.example.com".to_string(), deny)]));
    let mut chain = chain(&answers, vec![h], |_: &mut Value| Ok(()));
    let result = futures::executor::block_on(chain.admit(pod(), &attrs(), &json!({})));
    let rejected = result.err().unwrap_or_else(|| panic!("admitted"));
    assert_eq!(
        (rejected.code, &rejected.status["message"]),
        (403, &json!("admission webhook \"deny.example.com\" denied the request: no sidecar for you"))
    );
}

#[test]
fn the_review_is_shaped_like_the_real_one() -> anyhow::Result<()> {
    let path =
        mesh_test_data::shared_dir()?.join("fixtures/kube-apiserver/admissionreview-v1-pod-generatename-owner.json");
    let real: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let ours = review("uid-1", &attrs(), &real["request"]["object"]);
    let keys = |v: &Value| v["request"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&ours), keys(&real), "same fields in the same order (no name for a generateName pod)");
    for field in ["kind", "resource", "requestKind", "requestResource", "namespace", "operation", "oldObject", "dryRun"]
    {
        assert_eq!(ours["request"][field], real["request"][field], "{field}");
    }
    assert_eq!(ours["request"]["userInfo"]["groups"], real["request"]["userInfo"]["groups"]);
    Ok(())
}

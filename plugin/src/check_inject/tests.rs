use super::*;

/// One mesh release as the chart renders it: the two webhooks (namespace and object form) of a
/// revision, the webhook's Service and Deployment, and its ConfigMap.
pub(crate) fn release(instance: &str, rev: &str, config: &str) -> Vec<Value> {
    let ns_forms = if rev == "default" {
        vec![
            json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}),
            json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": ["default"]},
                {"key": "istio-injection", "operator": "DoesNotExist"}]}),
        ]
    } else {
        vec![json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [rev]},
            {"key": "istio-injection", "operator": "DoesNotExist"}]})]
    };
    let webhooks: Vec<Value> = ns_forms
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            json!({"name": format!("w{i}.sidecar-injector.istio.io"),
                "clientConfig": {"service": {"name": instance, "namespace": "mesh-system", "path": "/inject"}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": ns,
                "objectSelector": {"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}})
        })
        .collect();
    let sel = json!({"app.kubernetes.io/instance": instance});
    vec![
        json!({"kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("{instance}-sidecar-injector"),
                "labels": {"app.kubernetes.io/part-of": "mesh", "istio.io/rev": rev}},
            "webhooks": webhooks}),
        json!({"kind": "Service", "metadata": {"name": instance, "namespace": "mesh-system"}, "spec": {"selector": sel}}),
        json!({"kind": "Deployment", "metadata": {"name": instance, "namespace": "mesh-system"},
            "spec": {"template": {"metadata": {"labels": sel}, "spec": {
                "containers": [{"name": "webhook", "args": ["--config=/etc/mesh/config/config.yaml"],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/mesh/config"}]}],
                "volumes": [{"name": "config", "configMap": {"name": format!("{instance}-cfg")}}]}}}}),
        json!({"kind": "ConfigMap", "metadata": {"name": format!("{instance}-cfg"), "namespace": "mesh-system"},
            "data": {"config.yaml": config}}),
    ]
}

fn cluster() -> Vec<Value> {
    let mut all = release("mesh", "default", "revision: \"\"\n");
    all.extend(release("mesh-canary", "canary", "revision: canary\npolicy: disabled\n"));
    all.push(json!({"kind": "MutatingWebhookConfiguration", "metadata": {"name": "other"},
        "webhooks": [{"name": "other.example.com", "rules": [{"operations": ["CREATE"], "apiGroups": ["apps"],
            "apiVersions": ["v1"], "resources": ["deployments"]}]}]}));
    for (name, labels) in [
        ("on", json!({"istio-injection": "enabled"})),
        ("canary", json!({"istio.io/rev": "canary"})),
        ("both", json!({"istio.io/rev": "default"})),
    ] {
        all.push(json!({"kind": "Namespace", "metadata": {"name": name, "labels": labels}}));
    }
    all
}

fn deployment(ns: &str, labels: Value, annotations: Value) -> Value {
    json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"template": {"metadata": {"labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}})
}

fn verdict(ns: &str, labels: Value, annotations: Value) -> Report {
    let mut reports = check_offline(&[deployment(ns, labels, annotations)], &cluster(), None, "default").unwrap();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

#[test]
fn labelled_namespace_is_injected_by_the_default_release() {
    let r = verdict("on", json!({"app": "web"}), json!({}));
    assert_eq!(
        r.verdict,
        Verdict::Injected {
            webhook: "mesh-sidecar-injector/w0.sidecar-injector.istio.io".into(),
            revision: "default".into()
        }
    );
    assert_eq!(r.exit_code(), 0);
    // Only webhooks for pods are listed: two of the default release, one of the canary.
    assert_eq!(r.webhooks.len(), 3);
    assert_eq!(r.webhooks[0].decision, "inject");
    assert_eq!(r.webhooks[1].selects_why, "namespaceSelector needs istio.io/rev=default");
}

#[test]
fn canary_policy_disabled_skips_until_the_pod_opts_in() {
    let r = verdict("canary", json!({"app": "web"}), json!({}));
    match &r.verdict {
        Verdict::NotInjected { reason } => {
            assert!(
                reason.contains("policy is disabled") && reason.contains("sidecar.istio.io/inject=true"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.exit_code(), 2);
    let r = verdict("canary", json!({"app": "web", "sidecar.istio.io/inject": "true"}), json!({}));
    assert!(matches!(&r.verdict, Verdict::Injected { revision, .. } if revision == "canary"), "{:?}", r.verdict);
}

#[test]
fn opt_out_and_unlabelled_namespace_name_the_label_that_would_change_it() {
    let r = verdict("on", json!({"sidecar.istio.io/inject": "false"}), json!({}));
    match &r.verdict {
        Verdict::NotInjected { reason } => {
            assert!(reason.contains("objectSelector needs sidecar.istio.io/inject!=false"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let r = verdict("plain", json!({}), json!({}));
    match &r.verdict {
        Verdict::NotInjected { reason } => {
            assert!(
                reason.contains("istio-injection=enabled") && reason.contains("kubectl label namespace plain"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_annotation_is_denied() {
    let r = verdict("on", json!({}), json!({"traffic.sidecar.istio.io/excludeInboundPorts": "80,abc"}));
    match &r.verdict {
        Verdict::Denied { message } => assert!(message.contains("80,abc"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn two_injectors_are_a_conflict() {
    let mut all = cluster();
    let mut second = release("mesh2", "default", "");
    second[0]["metadata"]["name"] = json!("mesh2-sidecar-injector");
    all.extend(second);
    let r = check_offline(&[deployment("on", json!({}), json!({}))], &all, None, "default").unwrap().remove(0);
    assert!(matches!(&r.verdict, Verdict::Conflict { webhooks } if webhooks.len() == 2), "{:?}", r.verdict);
    assert!(verdict_line(&r.verdict).starts_with("CONFLICT: selected by 2 injectors (mesh-sidecar-injector/"));
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn existing_pod_created_before_the_label_needs_a_restart() {
    let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "on", "uid": "1"},
        "spec": {"containers": [{"name": "app"}]}});
    let r = check_offline(&[pod], &cluster(), None, "default").unwrap().remove(0);
    let e = r.existing.clone().unwrap();
    assert!(!e.injected);
    assert!(e.note.contains("restart its owner"), "{}", e.note);
    assert_eq!(r.exit_code(), 2);
    let table = render(&[r], Output::Table).unwrap();
    assert!(table.starts_with("WEBHOOK"), "{table}");
    assert!(table.contains("\nwill be injected by mesh-sidecar-injector/w0.sidecar-injector.istio.io (revision default)\npod: not injected"), "{table}");
}

#[test]
fn missing_served_config_is_an_error_unless_given() {
    let mut all = cluster();
    all.retain(|o| text(o, "/kind") != "ConfigMap");
    let err = check_offline(&[deployment("on", json!({}), json!({}))], &all, None, "default").unwrap_err();
    assert!(format!("{err:#}").contains("give --config FILE"), "{err:#}");
    let cfg = InjectConfig::default();
    assert!(check_offline(&[deployment("on", json!({}), json!({}))], &all, Some(&cfg), "default").is_ok());
}

#[test]
fn json_and_yaml_carry_the_version_fields() {
    let one = verdict("on", json!({}), json!({}));
    let doc: Value = serde_json::from_str(&render(std::slice::from_ref(&one), Output::Json).unwrap()).unwrap();
    assert_eq!((doc["apiVersion"].as_str(), doc["kind"].as_str()), (Some("mesh.dev/v1alpha1"), Some("CheckInject")));
    assert_eq!(doc["target"], json!(one.target));
    let two = [one.clone(), one];
    let doc: Value = serde_json::from_str(&render(&two, Output::Json).unwrap()).unwrap();
    assert_eq!(doc["kind"], "CheckInjectList");
    assert_eq!(doc["items"].as_array().map(Vec::len), Some(2));
    assert!(doc["items"][0].get("kind").is_none(), "items are bodies: {doc}");
    let yaml = render(&two[..1], Output::Yaml).unwrap();
    assert!(yaml.starts_with("apiVersion: mesh.dev/v1alpha1\nkind: CheckInject\n"), "{yaml}");
}

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;
use crate::names;
use crate::status::SidecarStatus;

fn req() -> InjectRequest<'static> {
    InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

fn hello() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello", "labels": {"app": "hello"}},
        "spec": {"containers": [{"name": "hello", "image": "hello:1", "ports": [{"name": "http", "containerPort": 80}]}]}})
}

fn apply(pod: &Value, decision: &Decision) -> Value {
    let mut out = pod.clone();
    if let Decision::Patch(p) = decision {
        json_patch::patch(&mut out, p).unwrap();
    }
    out
}

fn injected(pod: &Value, cfg: &InjectConfig) -> Value {
    let d = inject(pod, &req(), cfg);
    assert!(matches!(d, Decision::Patch(_)), "{d:?}");
    apply(pod, &d)
}

fn names_at(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list].as_array().into_iter().flatten().map(|c| name_of(c).to_owned()).collect()
}

fn env<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    let proxy = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["containers"].as_array())
        .flatten()
        .find(|c| name_of(c) == "istio-proxy")?;
    env_value(proxy, name)
}

#[test]
fn native_sidecar_by_default_and_regular_when_disabled() {
    let pod = injected(&hello(), &InjectConfig::default());
    assert_eq!(names_at(&pod, "initContainers"), ["istio-init", "istio-proxy"]);
    assert_eq!(names_at(&pod, "containers"), ["hello"]);
    let cfg = InjectConfig { native_sidecars: NativeSidecars::Disabled, ..InjectConfig::default() };
    let pod = injected(&hello(), &cfg);
    assert_eq!(names_at(&pod, "initContainers"), ["istio-init"]);
    assert_eq!(names_at(&pod, "containers"), ["hello", "istio-proxy"]);
    // Auto follows the nodes.
    let cfg = InjectConfig::default();
    let old_nodes = InjectRequest { nodes_support_native_sidecars: false, ..req() };
    let pod = apply(&hello(), &inject(&hello(), &old_nodes, &cfg));
    assert_eq!(names_at(&pod, "containers"), ["hello", "istio-proxy"]);
    // The pod's opt-out wins.
    let mut opt_out = hello();
    opt_out["metadata"]["annotations"] = json!({"sidecar.istio.io/nativeSidecar": "false"});
    assert_eq!(names_at(&injected(&opt_out, &cfg), "containers"), ["hello", "istio-proxy"]);
}

#[test]
fn decision_follows_istio_rules() {
    let cfg = InjectConfig::default();
    let mut host = hello();
    host["spec"]["hostNetwork"] = json!(true);
    assert_eq!(inject(&host, &req(), &cfg), Decision::Skip(SkipReason::HostNetwork));
    let system = InjectRequest { namespace: "kube-system", ..req() };
    assert_eq!(inject(&hello(), &system, &cfg), Decision::Skip(SkipReason::IgnoredNamespace));
    // The label wins over the annotation.
    let mut pod = hello();
    pod["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
    pod["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "true"});
    assert_eq!(inject(&pod, &req(), &cfg), Decision::Skip(SkipReason::PodOptOut));
    // Disabled policy: only opted-in pods.
    let disabled = InjectConfig { policy: InjectPolicy::Disabled, ..InjectConfig::default() };
    assert_eq!(inject(&hello(), &req(), &disabled), Decision::Skip(SkipReason::PolicyDisabled));
    let mut opted_in = hello();
    opted_in["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "true"});
    assert!(matches!(inject(&opted_in, &req(), &disabled), Decision::Patch(_)));
    // Anything but true/false means the default.
    let mut odd = hello();
    odd["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "yes"});
    assert_eq!(inject(&odd, &req(), &disabled), Decision::Skip(SkipReason::PolicyDisabled));
    // Never, then always selectors.
    let sel = |k: &str, v: &str| LabelSelector { match_labels: [(k.into(), v.into())].into(), ..Default::default() };
    let never = InjectConfig { never_inject_selector: vec![sel("app", "hello")], ..InjectConfig::default() };
    assert_eq!(inject(&hello(), &req(), &never), Decision::Skip(SkipReason::NeverInjectSelector));
    let always = InjectConfig { always_inject_selector: vec![sel("app", "hello")], ..disabled.clone() };
    assert!(matches!(inject(&hello(), &req(), &always), Decision::Patch(_)));
    let both = InjectConfig { always_inject_selector: vec![sel("app", "hello")], ..never };
    assert_eq!(inject(&hello(), &req(), &both), Decision::Skip(SkipReason::NeverInjectSelector));
    assert_eq!(SkipReason::NeverInjectSelector.label(), "never_inject_selector");
}

#[test]
fn bad_annotations_are_denied_naming_annotation_and_value() {
    for (key, value) in [
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/33"),
        ("traffic.sidecar.istio.io/includeInboundPorts", "80,http"),
        ("status.sidecar.istio.io/port", "99999"),
        ("sidecar.istio.io/proxyCPU", "lots"),
        ("sidecar.istio.io/proxyMemoryLimit", "1GB"),
        ("prometheus.istio.io/merge-metrics", "maybe"),
        ("sidecar.istio.io/interceptionMode", "SIDEWAYS"),
        ("readiness.status.sidecar.istio.io/periodSeconds", "-1"),
    ] {
        let mut pod = hello();
        pod["metadata"]["annotations"] = json!({key: value});
        match inject(&pod, &req(), &InjectConfig::default()) {
            Decision::Deny(message) => {
                assert!(message.contains(key) && message.contains(value), "{message}");
            }
            other => panic!("{key}={value}: {other:?}"),
        }
    }
}

#[test]
fn patch_is_minimal_adds_with_escaped_keys() {
    let pod = hello();
    let Decision::Patch(patch) = inject(&pod, &req(), &InjectConfig::default()) else { panic!() };
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    assert!(patch.0.iter().all(|op| matches!(op, json_patch::PatchOperation::Add(_))), "{paths:?}");
    assert!(paths.contains(&"/metadata/annotations".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/metadata/labels/security.istio.io~1tlsMode".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/spec/containers/0/resources".to_owned()), "{paths:?}");
    assert!(!paths.iter().any(|p| p == "/spec" || p == "/spec/containers"), "{paths:?}");
    // Unknown fields survive.
    let mut odd = hello();
    odd["spec"]["futureField"] = json!({"x": 1});
    odd["spec"]["containers"][0]["futureField"] = json!(true);
    let out = injected(&odd, &InjectConfig::default());
    assert_eq!(out["spec"]["futureField"], json!({"x": 1}));
    assert_eq!(out["spec"]["containers"][0]["futureField"], json!(true));
}

#[test]
fn init_args_come_from_annotations_and_config() {
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9000",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "3306",
        "traffic.sidecar.istio.io/includeOutboundPorts": "443",
        "istio.io/reroute-virtual-interfaces": "net1",
        "traffic.sidecar.istio.io/excludeInterfaces": "eth9",
        "sidecar.istio.io/agentLogLevel": "default:debug",
    });
    let out = injected(&pod, &InjectConfig::default());
    let args: Vec<&str> =
        out["spec"]["initContainers"][0]["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        args,
        [
            "istio-iptables",
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "10.0.0.0/8",
            "-x",
            "",
            "-b",
            "*",
            "-d",
            "15090,15021,9000,15020",
            "-q",
            "443",
            "-o",
            "3306",
            "-k",
            "net1",
            "-c",
            "eth9",
            "--log_output_level=default:debug",
        ]
    );
    // The args round-trip through the contract's parser.
    let parsed = crate::capture::CaptureConfig::from_args(&args).unwrap();
    assert!(parsed.captures_inbound(80) && !parsed.captures_inbound(9000));
}

#[test]
fn tproxy_none_and_cni_modes() {
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"sidecar.istio.io/interceptionMode": "TPROXY"});
    let out = injected(&pod, &InjectConfig::default());
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["securityContext"]["capabilities"]["add"], json!(["NET_ADMIN"]));
    assert_eq!(proxy["securityContext"]["runAsUser"], json!(0));
    assert_eq!(env(&out, "ISTIO_META_INTERCEPTION_MODE"), Some("TPROXY"));

    pod["metadata"]["annotations"] = json!({"sidecar.istio.io/interceptionMode": "NONE"});
    let out = injected(&pod, &InjectConfig::default());
    assert_eq!(names_at(&out, "initContainers"), ["istio-proxy"]);
    let cfg = InjectConfig { native_sidecars: NativeSidecars::Disabled, ..InjectConfig::default() };
    let out = injected(&pod, &cfg);
    assert!(names_at(&out, "initContainers").is_empty());

    let cni = InjectConfig { cni: CniConfig { enabled: true, ..CniConfig::default() }, ..InjectConfig::default() };
    let out = injected(&hello(), &cni);
    assert_eq!(names_at(&out, "initContainers"), ["istio-validation", "istio-proxy"]);
    let args = out["spec"]["initContainers"][0]["args"].as_array().unwrap();
    assert_eq!(&args[args.len() - 2..], [json!("--run-validation"), json!("--skip-rule-apply")]);
}

#[test]
fn hold_application_puts_the_proxy_first() {
    let cfg = InjectConfig {
        native_sidecars: NativeSidecars::Disabled,
        hold_application_until_proxy_starts: true,
        ..InjectConfig::default()
    };
    let out = injected(&hello(), &cfg);
    assert_eq!(names_at(&out, "containers"), ["istio-proxy", "hello"]);
    assert_eq!(
        out["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["pilot-agent", "wait"])
    );
    // The same through proxy.istio.io/config.
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"});
    let cfg = InjectConfig { native_sidecars: NativeSidecars::Disabled, ..InjectConfig::default() };
    let out = injected(&pod, &cfg);
    assert_eq!(names_at(&out, "containers"), ["istio-proxy", "hello"]);
    let proxy_config: Value = serde_json::from_str(env(&out, "PROXY_CONFIG").unwrap()).unwrap();
    assert_eq!(proxy_config, json!({"holdApplicationUntilProxyStarts": true}));
}

#[test]
fn cluster_and_network_from_the_request_go_last() {
    let request = InjectRequest { cluster_id: Some("c1"), network: Some("n1"), ..req() };
    let pod = apply(&hello(), &inject(&hello(), &request, &InjectConfig::default()));
    let proxy = &pod["spec"]["initContainers"][1];
    let names: Vec<&str> = proxy["env"].as_array().unwrap().iter().map(name_of).collect();
    assert_eq!(&names[names.len() - 2..], ["ISTIO_META_CLUSTER_ID", "ISTIO_META_NETWORK"]);
    assert_eq!(env(&pod, "ISTIO_META_CLUSTER_ID"), Some("c1"));
    assert_eq!(pod["metadata"]["labels"]["topology.istio.io/network"], "n1");
}

#[test]
fn probes_and_hooks_are_rewritten_with_named_ports() {
    let mut pod = hello();
    pod["spec"]["containers"][0]["livenessProbe"] =
        json!({"httpGet": {"port": "http", "path": "/live"}, "timeoutSeconds": 5});
    pod["spec"]["containers"][0]["readinessProbe"] = json!({"grpc": {"port": 9090}});
    pod["spec"]["containers"][0]["lifecycle"] = json!({"preStop": {"tcpSocket": {"port": 91}}});
    let out = injected(&pod, &InjectConfig::default());
    let c = &out["spec"]["containers"][0];
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 15020, "path": "/app-health/hello/livez"}, "timeoutSeconds": 5})
    );
    assert_eq!(c["readinessProbe"], json!({"httpGet": {"path": "/app-health/hello/readyz", "port": 15020}}));
    assert_eq!(c["lifecycle"]["preStop"], json!({"httpGet": {"path": "/app-lifecycle/hello/prestopz", "port": 15020}}));
    let probers: Value = serde_json::from_str(env(&out, "ISTIO_KUBE_APP_PROBERS").unwrap()).unwrap();
    assert_eq!(
        probers,
        json!({
            "/app-health/hello/livez": {"httpGet": {"port": 80, "path": "/live"}, "timeoutSeconds": 5},
            "/app-health/hello/readyz": {"grpc": {"port": 9090}},
            "/app-lifecycle/hello/prestopz": {"tcpSocket": {"port": 91}},
        })
    );
    // Re-injection keeps the probers although the probes already point at the agent.
    let again = apply(&out, &inject(&out, &req(), &InjectConfig::default()));
    assert_eq!(again, out);
}

#[test]
fn prometheus_annotations_move_into_the_agent() {
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8080"});
    let out = injected(&pod, &InjectConfig::default());
    assert_eq!(out["metadata"]["annotations"]["prometheus.io/port"], "15020");
    assert_eq!(out["metadata"]["annotations"]["prometheus.io/path"], "/stats/prometheus");
    let sc: Value = serde_json::from_str(env(&out, "ISTIO_PROMETHEUS_ANNOTATIONS").unwrap()).unwrap();
    assert_eq!(sc, json!({"scrape": "true", "path": "", "port": "8080"}));
    let again = apply(&out, &inject(&out, &req(), &InjectConfig::default()));
    assert_eq!(again, out);
}

/// Prometheus annotation names match after label-name sanitising, as Istio matches them.
#[test]
fn prometheus_annotations_match_in_any_spelling() {
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"prometheus.io.scrape": "false"});
    let out = injected(&pod, &InjectConfig::default());
    assert!(out["metadata"]["annotations"].get("prometheus.io/port").is_none(), "scrape false: no merge");
    assert!(env(&out, "ISTIO_PROMETHEUS_ANNOTATIONS").is_none());
    pod["metadata"]["annotations"] = json!({"prometheus-io/port": "9090", "prometheus.io.path": "/m"});
    let out = injected(&pod, &InjectConfig::default());
    let annotations = out["metadata"]["annotations"].as_object().unwrap();
    assert!(!annotations.contains_key("prometheus-io/port") && !annotations.contains_key("prometheus.io.path"));
    assert_eq!(annotations["prometheus.io/port"], "15020");
    let sc: Value = serde_json::from_str(env(&out, "ISTIO_PROMETHEUS_ANNOTATIONS").unwrap()).unwrap();
    assert_eq!(sc, json!({"scrape": "", "path": "/m", "port": "9090"}));
    // Already pointed at the agent in another spelling: left alone.
    pod["metadata"]["annotations"] = json!({"prometheus.io.port": "15020"});
    let out = injected(&pod, &InjectConfig::default());
    assert!(out["metadata"]["annotations"].get("prometheus.io/path").is_none());
}

#[test]
fn resources_from_annotations_are_canonical() {
    let mut pod = hello();
    pod["metadata"]["annotations"] =
        json!({"sidecar.istio.io/proxyCPU": "0.5", "sidecar.istio.io/proxyMemoryLimit": "1024Mi"});
    let out = injected(&pod, &InjectConfig::default());
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["resources"], json!({"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}));
}

#[test]
fn user_overrides_of_istio_proxy_are_kept_and_recorded() {
    let mut pod = hello();
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "istio-proxy", "image": "auto", "securityContext": {"runAsUser": 1234}, "env": [{"name": "X", "value": "1"}]}));
    let out = injected(&pod, &InjectConfig::default());
    assert_eq!(names_at(&out, "containers"), ["hello"]);
    let proxy = &out["spec"]["initContainers"][1];
    assert_eq!(proxy["securityContext"]["runAsUser"], json!(1234));
    assert_eq!(proxy["image"], json!(DEFAULT_PROXY_IMAGE));
    assert_eq!(env(&out, "X"), Some("1"));
    assert_eq!(out["spec"]["initContainers"][0]["args"][6], json!("1234"));
    let recorded = out["metadata"]["annotations"]["proxy.istio.io/overrides"].as_str().unwrap();
    assert!(recorded.starts_with(r#"{"initContainers":[{"name":"istio-proxy","env""#), "{recorded}");
    let again = apply(&out, &inject(&out, &req(), &InjectConfig::default()));
    assert_eq!(again["spec"]["initContainers"][1]["securityContext"]["runAsUser"], json!(1234));
    assert_eq!(again, out);
}

#[test]
fn shape_errors_are_denied_not_panics() {
    for pod in [
        json!({"metadata": {"annotations": "x"}, "spec": {"containers": []}}),
        json!({"metadata": {"labels": {"a": 1}}, "spec": {"containers": []}}),
        json!({"spec": {"containers": [{"image": "x"}]}}),
        json!({"spec": {"containers": [], "volumes": {}}}),
    ] {
        assert!(matches!(inject(&pod, &req(), &InjectConfig::default()), Decision::Deny(_)), "{pod}");
    }
    assert_eq!(inject(&json!(null), &req(), &InjectConfig::default()), Decision::Skip(SkipReason::NotAPod));
    assert_eq!(inject(&json!({"spec": {}}), &req(), &InjectConfig::default()), Decision::Skip(SkipReason::NotAPod));
}

fn with_templates(pod: &Value, templates: &str) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]["annotations"] = json!({ names::INJECT_TEMPLATES: templates });
    pod
}

#[test]
fn unknown_template_is_denied_naming_it() {
    let d = inject(&with_templates(&hello(), "sidecar,nope"), &req(), &InjectConfig::default());
    let Decision::Deny(message) = d else { panic!("want a denial, got {d:?}") };
    assert!(message.contains("\"nope\" not found"), "{message}");
    assert!(message.contains("gateway, grpc-agent, grpc-simple, sidecar"), "{message}");
    let d = inject(&with_templates(&hello(), ""), &req(), &InjectConfig::default());
    assert!(matches!(d, Decision::Deny(_)), "an empty template name is unknown too: {d:?}");
}

#[test]
fn templates_apply_in_order_and_merge() {
    // The sidecar, then grpc-simple on top: both templates' containers, env merged into the app's.
    let pod = injected(&with_templates(&hello(), "sidecar, grpc-simple"), &InjectConfig::default());
    assert_eq!(names_at(&pod, "initContainers"), ["istio-init", "istio-proxy", "grpc-bootstrap-init"]);
    assert_eq!(names_at(&pod, "containers"), ["hello"]);
    assert_eq!(
        env_value(&pod["spec"]["containers"][0], "GRPC_XDS_BOOTSTRAP"),
        Some("/var/lib/grpc/data/bootstrap.json")
    );
    assert_eq!(pod["metadata"]["annotations"][names::REWRITE_APP_HTTP_PROBERS], "false");
    assert_eq!(pod["metadata"]["labels"][names::LABEL_TLS_MODE], "istio");
    let status = SidecarStatus::parse(pod["metadata"]["annotations"][names::SIDECAR_STATUS].as_str().unwrap()).unwrap();
    // The status lists the merged templates' lists: a strategic merge puts the later template's first.
    assert_eq!(status.init_containers, ["grpc-bootstrap-init", "istio-init", "istio-proxy"]);
    assert_eq!(status.containers, ["hello"]);
    assert!(status.volumes.iter().any(|v| v == "grpc-io-proxyless-bootstrap"), "{:?}", status.volumes);
    // grpc-simple alone: no proxy, no capture, no mesh labels.
    let pod = injected(&with_templates(&hello(), "grpc-simple"), &InjectConfig::default());
    assert_eq!(names_at(&pod, "initContainers"), ["grpc-bootstrap-init"]);
    assert!(pod["metadata"]["labels"].get(names::LABEL_TLS_MODE).is_none());
}

#[test]
fn gateway_keeps_the_proxy_a_regular_container_and_reinjects_idempotently() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw", "annotations": {names::INJECT_TEMPLATES: "gateway"}},
        "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]}});
    // Native sidecars are on: the gateway template still puts the proxy among the containers.
    let once = injected(&pod, &InjectConfig::default());
    assert_eq!(names_at(&once, "containers"), ["istio-proxy"]);
    assert!(names_at(&once, "initContainers").is_empty());
    assert_eq!(once["spec"]["containers"][0]["args"][1], "router");
    assert_eq!(once["spec"]["containers"][0]["image"], DEFAULT_PROXY_IMAGE);
    assert_eq!(once["spec"]["securityContext"]["sysctls"][0]["name"], "net.ipv4.ip_unprivileged_port_start");
    assert_eq!(injected(&once, &InjectConfig::default()), once);
}

fn arb_container(prefix: &'static str) -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,6}",
        proptest::option::of(prop_oneof![
            (1u16..65535).prop_map(|p| json!({"httpGet": {"port": p}})),
            "[a-z]{1,4}".prop_map(|p| json!({"httpGet": {"port": p, "path": "/x"}})),
            (1u16..65535).prop_map(|p| json!({"tcpSocket": {"port": p}})),
            Just(json!({"exec": {"command": ["true"]}})),
        ]),
        proptest::collection::vec((1u16..65535, proptest::option::of("[a-z]{1,4}")), 0..3),
        proptest::option::of(Just(json!({}))),
    )
        .prop_map(move |(name, probe, ports, extra)| {
            let mut c = json!({"name": format!("{prefix}{name}"), "image": "img"});
            if let Some(p) = probe {
                c["readinessProbe"] = p;
            }
            let ports: Vec<Value> = ports
                .into_iter()
                .map(|(p, n)| match n {
                    Some(n) => json!({"containerPort": p, "name": n}),
                    None => json!({"containerPort": p}),
                })
                .collect();
            if !ports.is_empty() {
                c["ports"] = json!(ports);
            }
            if let Some(e) = extra {
                c["unknownField"] = e;
            }
            c
        })
}

fn arb_pod() -> impl Strategy<Value = Value> {
    let annotation = prop_oneof![
        Just(("sidecar.istio.io/inject".to_owned(), "true".to_owned())),
        Just(("sidecar.istio.io/nativeSidecar".to_owned(), "false".to_owned())),
        Just(("sidecar.istio.io/interceptionMode".to_owned(), "TPROXY".to_owned())),
        Just(("sidecar.istio.io/interceptionMode".to_owned(), "NONE".to_owned())),
        Just(("prometheus.io/port".to_owned(), "8080".to_owned())),
        Just(("prometheus.io/scrape".to_owned(), "false".to_owned())),
        Just(("status.sidecar.istio.io/port".to_owned(), "123".to_owned())),
        Just(("sidecar.istio.io/proxyCPU".to_owned(), "1000m".to_owned())),
        Just(("proxy.istio.io/config".to_owned(), "holdApplicationUntilProxyStarts: true".to_owned())),
        ("[a-z./]{1,12}", "[ -~]{0,8}"),
        ("traffic.sidecar.istio.io/[a-zA-Z]{1,24}", "[0-9*,./a-z]{0,12}"),
    ];
    (
        proptest::collection::vec(arb_container("c-"), 0..4),
        proptest::collection::vec(arb_container("i-"), 0..3),
        proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3),
        proptest::collection::vec(annotation, 0..4),
        any::<bool>(),
        proptest::collection::vec("[a-z]{1,6}", 0..3),
    )
        .prop_map(|(containers, init, labels, annotations, host_network, volumes)| {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": dedupe(containers)}});
            let init = dedupe(init);
            if !init.is_empty() {
                pod["spec"]["initContainers"] = json!(init);
            }
            if !labels.is_empty() {
                pod["metadata"]["labels"] = json!(labels);
            }
            if !annotations.is_empty() {
                let map: Map<String, Value> = annotations.into_iter().map(|(k, v)| (k, json!(v))).collect();
                pod["metadata"]["annotations"] = Value::Object(map);
            }
            if host_network {
                pod["spec"]["hostNetwork"] = json!(false);
            }
            let mut seen = Vec::new();
            let volumes: Vec<Value> = volumes
                .into_iter()
                .filter(|v| {
                    !seen.contains(v) && {
                        seen.push(v.clone());
                        true
                    }
                })
                .map(|v| json!({"name": v, "emptyDir": {}}))
                .collect();
            if !volumes.is_empty() {
                pod["spec"]["volumes"] = json!(volumes);
            }
            pod
        })
}

fn dedupe(list: Vec<Value>) -> Vec<Value> {
    let mut seen = Vec::new();
    list.into_iter()
        .filter(|c| {
            let n = name_of(c).to_owned();
            if seen.contains(&n) {
                return false;
            }
            seen.push(n);
            true
        })
        .collect()
}

fn arb_config() -> impl Strategy<Value = InjectConfig> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(native, cni, hold)| InjectConfig {
        native_sidecars: if native { NativeSidecars::Enabled } else { NativeSidecars::Disabled },
        cni: CniConfig { enabled: cni, ..CniConfig::default() },
        hold_application_until_proxy_starts: hold,
        ..InjectConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random pods never panic, and every patch applies to the pod it was made for.
    #[test]
    fn random_pods_never_panic(pod in arb_pod(), cfg in arb_config()) {
        let decision = inject(&pod, &req(), &cfg);
        if let Decision::Patch(patch) = &decision {
            let mut out = pod.clone();
            prop_assert!(json_patch::patch(&mut out, patch).is_ok(), "{:?}", patch);
        }
    }

    /// inject(inject(p)) == inject(p).
    #[test]
    fn injection_is_idempotent(pod in arb_pod(), cfg in arb_config()) {
        if let Decision::Patch(patch) = inject(&pod, &req(), &cfg) {
            let mut once = pod.clone();
            json_patch::patch(&mut once, &patch).unwrap();
            let twice = match inject(&once, &req(), &cfg) {
                Decision::Patch(p) => { let mut t = once.clone(); json_patch::patch(&mut t, &p).unwrap(); t }
                other => panic!("second injection: {other:?}"),
            };
            prop_assert_eq!(twice, once);
        }
    }

    /// Containers the injector did not create are never removed or reordered.
    #[test]
    fn foreign_containers_are_kept_in_order(pod in arb_pod(), cfg in arb_config()) {
        if let Decision::Patch(patch) = inject(&pod, &req(), &cfg) {
            let mut out = pod.clone();
            json_patch::patch(&mut out, &patch).unwrap();
            let ours = ["istio-proxy", "istio-init", "istio-validation"];
            for list in ["containers", "initContainers"] {
                let before: Vec<String> = names_at(&pod, list).into_iter().filter(|n| !ours.contains(&n.as_str())).collect();
                let after: Vec<String> = names_at(&out, list).into_iter().filter(|n| !ours.contains(&n.as_str())).collect();
                prop_assert_eq!(before, after);
            }
        }
    }

    /// The Injector (template parts prebuilt per config) answers exactly as the plain function, for
    /// pods setting any of the annotations the template reads, a user istio-proxy with its own IDs,
    /// and configs with proxy metadata, default resources and mounted certificates.
    #[test]
    fn injector_answers_as_inject(
        pod in arb_pod(),
        extra in proptest::collection::vec((0..TEMPLATE_KEYS.len(), 0..TEMPLATE_VALUES.len()), 0..5),
        user_proxy in proptest::option::of((proptest::option::of(1u32..3000), proptest::option::of(1u32..3000))),
        account in proptest::option::of("[a-z]{0,4}"),
        cfg in arb_config(),
        metadata in any::<bool>(),
        certs in any::<bool>(),
    ) {
        let mut pod = pod;
        for (k, v) in extra {
            pod["metadata"]["annotations"][TEMPLATE_KEYS[k]] = json!(TEMPLATE_VALUES[v]);
        }
        if let Some((uid, gid)) = user_proxy {
            let mut sc = Map::new();
            if let Some(uid) = uid { sc.insert("runAsUser".into(), json!(uid)); }
            if let Some(gid) = gid { sc.insert("runAsGroup".into(), json!(gid)); }
            pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "istio-proxy", "image": "auto", "securityContext": sc}));
        }
        if let Some(account) = account {
            pod["spec"]["serviceAccountName"] = json!(account);
        }
        let mut cfg = cfg;
        if metadata {
            cfg.proxy_metadata.insert("ISTIO_META_DNS_CAPTURE".into(), "true".into());
        }
        cfg.mount_mtls_certs = certs;
        let injector = Injector::new(cfg.clone());
        prop_assert_eq!(injector.inject(&pod, &req()), inject(&pod, &req(), &cfg));
    }
}

/// The API server's token volume and its mount in every container and init container that has
/// none at the token path, as its ServiceAccount plugin adds them (before the webhook, and again
/// before the re-review).
fn with_service_account_token(pod: &Value, name: &str) -> Value {
    let mut pod = pod.clone();
    let volume = json!({"name": name, "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}});
    match pod["spec"]["volumes"].as_array_mut() {
        Some(volumes) if volumes.iter().any(|v| name_of(v) == name) => {}
        Some(volumes) => volumes.push(volume),
        None => pod["spec"]["volumes"] = json!([volume]),
    }
    let mount = json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
    for list in ["containers", "initContainers"] {
        for c in pod["spec"].get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let mounts = c.as_object_mut().unwrap().entry("volumeMounts").or_insert_with(|| json!([]));
            let mounts = mounts.as_array_mut().unwrap();
            if !mounts.iter().any(|m| m["mountPath"] == mount["mountPath"]) {
                mounts.push(mount.clone());
            }
        }
    }
    pod
}

#[test]
fn the_re_review_after_the_service_account_plugin_is_an_empty_patch() {
    let pod = with_service_account_token(&hello(), "kube-api-access-x7k2q");
    let once = injected(&pod, &InjectConfig::default());
    let re_review = with_service_account_token(&once, "kube-api-access-x7k2q");
    assert_ne!(re_review, once, "the plugin mounted the token in the injected containers");
    assert_eq!(inject(&re_review, &req(), &InjectConfig::default()), Decision::Patch(json_patch::Patch(Vec::new())));
    // Another config re-injects: the new containers keep the plugin's mounts.
    let other = InjectConfig { cni: CniConfig { enabled: true, ..CniConfig::default() }, ..InjectConfig::default() };
    let moved = injected(&re_review, &other);
    assert_ne!(moved, re_review);
    let proxy =
        moved["spec"]["initContainers"].as_array().unwrap().iter().find(|c| name_of(c) == "istio-proxy").unwrap();
    let mounts = proxy["volumeMounts"].as_array().unwrap();
    assert_eq!(mounts.last().unwrap()["name"], "kube-api-access-x7k2q", "{proxy}");
    assert_eq!(mounts.iter().filter(|m| m["name"] == "kube-api-access-x7k2q").count(), 1);
    assert_eq!(inject(&moved, &req(), &other), Decision::Patch(json_patch::Patch(Vec::new())));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The re-review of an injected pod, after the ServiceAccount plugin mounted the token volume
    /// in the injected containers too, gets an empty patch.
    #[test]
    fn re_review_after_the_service_account_plugin_is_an_empty_patch(pod in arb_pod(), cfg in arb_config()) {
        let pod = with_service_account_token(&pod, "kube-api-access-8mhdn");
        if let Decision::Patch(patch) = inject(&pod, &req(), &cfg) {
            let mut once = pod.clone();
            json_patch::patch(&mut once, &patch).unwrap();
            let re_review = with_service_account_token(&once, "kube-api-access-8mhdn");
            prop_assert_eq!(inject(&re_review, &req(), &cfg), Decision::Patch(json_patch::Patch(Vec::new())));
        }
    }

    /// The same when the API server also decoded the patched pod into its Go types and defaulted
    /// it (as it does after every patch, and before the first review): the re-review differs from
    /// the injection by member order and defaults only, and gets an empty patch.
    #[test]
    fn re_review_as_the_api_server_reads_it_back_is_an_empty_patch(pod in arb_pod(), cfg in arb_config()) {
        use crate::drift::tests::read_back;
        let pod = read_back(&with_service_account_token(&pod, "kube-api-access-8mhdn"));
        if let Decision::Patch(patch) = inject(&pod, &req(), &cfg) {
            let mut once = pod.clone();
            json_patch::patch(&mut once, &patch).unwrap();
            let re_review = read_back(&with_service_account_token(&once, "kube-api-access-8mhdn"));
            prop_assert_eq!(inject(&re_review, &req(), &cfg), Decision::Patch(json_patch::Patch(Vec::new())));
        }
    }
}

/// Every annotation the template reads, for [`injector_answers_as_inject`].
const TEMPLATE_KEYS: [&str; 30] = [
    names::INJECT_TEMPLATES,
    names::INTERCEPTION_MODE,
    names::NATIVE_SIDECAR,
    names::PROXY_IMAGE,
    names::PROXY_INIT_IMAGE,
    names::PROXY_CPU,
    names::PROXY_MEMORY,
    names::PROXY_CPU_LIMIT,
    names::PROXY_MEMORY_LIMIT,
    names::AGENT_LOG_LEVEL,
    names::LOG_LEVEL,
    names::COMPONENT_LOG_LEVEL,
    names::INCLUDE_OUTBOUND_IP_RANGES,
    names::EXCLUDE_OUTBOUND_IP_RANGES,
    names::INCLUDE_INBOUND_PORTS,
    names::EXCLUDE_INBOUND_PORTS,
    names::INCLUDE_OUTBOUND_PORTS,
    names::EXCLUDE_OUTBOUND_PORTS,
    names::KUBEVIRT_INTERFACES,
    names::EXCLUDE_INTERFACES,
    names::REROUTE_VIRTUAL_INTERFACES,
    names::STATUS_PORT,
    names::READINESS_INITIAL_DELAY,
    names::READINESS_PERIOD,
    names::READINESS_FAILURE_THRESHOLD,
    annotations::PROXY_CONFIG,
    annotations::BOOTSTRAP_OVERRIDE,
    annotations::USER_VOLUME,
    annotations::USER_VOLUME_MOUNT,
    annotations::CAP_NET_BIND_SERVICE,
];

/// Values for [`TEMPLATE_KEYS`]; many are invalid for most keys, which must deny the same way.
const TEMPLATE_VALUES: [&str; 19] = [
    "gateway",
    "grpc-agent",
    "sidecar, grpc-simple",
    "",
    "true",
    "false",
    "REDIRECT",
    "TPROXY",
    "250m",
    "1Gi",
    "15021",
    "10.0.0.0/8",
    "*",
    "80,443",
    "eth1",
    "debug",
    "example.com/proxy:1.2",
    "proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"false\"}\ninterceptionMode: TPROXY",
    "{\"extra\": {\"mountPath\": \"/x\", \"secret\": {\"secretName\": \"s\"}}}",
];

fn with_default_config(default_config: Value) -> InjectConfig {
    let Value::Object(default_config) = default_config else { panic!("not an object") };
    let mesh_config = MeshConfig { default_config, ..MeshConfig::default() };
    InjectConfig { mesh_config, ..InjectConfig::default() }
}

fn proxy_config_of(pod: &Value) -> Value {
    serde_json::from_str(env(pod, "PROXY_CONFIG").expect("PROXY_CONFIG")).expect("PROXY_CONFIG is JSON")
}

fn init_arg_after<'a>(pod: &'a Value, flag: &str) -> Option<&'a str> {
    let init = pod["spec"]["initContainers"].as_array()?.iter().find(|c| name_of(c) == "istio-init")?;
    let args = init["args"].as_array()?;
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.as_str()
}

#[test]
fn mesh_default_config_interception_mode_drives_the_template() {
    // Istio's own test: defaultConfig.interceptionMode TPROXY gives PROXY_CONFIG, init args and env.
    let out = injected(&hello(), &with_default_config(json!({"interceptionMode": "TPROXY"})));
    assert_eq!(proxy_config_of(&out), json!({"interceptionMode": "TPROXY"}));
    assert_eq!(init_arg_after(&out, "-m"), Some("TPROXY"));
    assert_eq!(env(&out, "ISTIO_META_INTERCEPTION_MODE"), Some("TPROXY"));
    // The pod's annotation wins over the mesh default.
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"proxy.istio.io/config": "interceptionMode: REDIRECT"});
    let out = injected(&pod, &with_default_config(json!({"interceptionMode": "TPROXY"})));
    assert_eq!(proxy_config_of(&out), json!({"interceptionMode": "REDIRECT"}));
    assert_eq!(init_arg_after(&out, "-m"), Some("REDIRECT"));
}

#[test]
fn mesh_default_config_is_overlaid_by_the_annotation() {
    let cfg = InjectConfig {
        proxy_metadata: std::collections::BTreeMap::from([("FROM_CONFIG".to_owned(), "c".to_owned())]),
        ..with_default_config(json!({
            "discoveryAddress": "istiod.istio-system.svc:15012",
            "concurrency": 2,
            "someFutureField": {"kept": true},
            "proxyMetadata": {"FROM_MESH": "m", "SHARED": "mesh"},
        }))
    };
    let mut pod = hello();
    pod["metadata"]["annotations"] =
        json!({"proxy.istio.io/config": "concurrency: 4\nproxyMetadata:\n  SHARED: pod\n  FROM_POD: p\n"});
    let out = injected(&pod, &cfg);
    assert_eq!(
        proxy_config_of(&out),
        json!({
            "proxyMetadata": {"FROM_CONFIG": "c", "FROM_MESH": "m", "SHARED": "pod", "FROM_POD": "p"},
            "discoveryAddress": "istiod.istio-system.svc:15012",
            "concurrency": 4,
            "someFutureField": {"kept": true},
        })
    );
    for (name, value) in [("FROM_CONFIG", "c"), ("FROM_MESH", "m"), ("SHARED", "pod"), ("FROM_POD", "p")] {
        assert_eq!(env(&out, name), Some(value), "{name}");
    }
    // A pod without the annotation gets the mesh default as it is (and the Injector agrees).
    let plain = injected(&hello(), &cfg);
    assert_eq!(proxy_config_of(&plain)["concurrency"], 2);
    assert_eq!(env(&plain, "SHARED"), Some("mesh"));
    let injector = Injector::new(cfg.clone());
    assert_eq!(injector.inject(&hello(), &req()), inject(&hello(), &req(), &cfg));
    assert_eq!(injector.inject(&pod, &req()), inject(&pod, &req(), &cfg));
}

#[test]
fn mesh_default_config_hold_puts_the_proxy_first() {
    let cfg = InjectConfig {
        native_sidecars: NativeSidecars::Disabled,
        ..with_default_config(json!({"holdApplicationUntilProxyStarts": true}))
    };
    let out = injected(&hello(), &cfg);
    assert_eq!(names_at(&out, "containers"), ["istio-proxy", "hello"]);
    assert_eq!(proxy_config_of(&out), json!({"holdApplicationUntilProxyStarts": true}));
    // The annotation can turn it off again.
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"proxy.istio.io/config": "holdApplicationUntilProxyStarts: false"});
    let out = injected(&pod, &cfg);
    assert_eq!(names_at(&out, "containers"), ["hello", "istio-proxy"]);
}

#[test]
fn bad_proxy_config_fields_are_named() {
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"proxy.istio.io/config": "interceptionMode: SIDEWAYS"});
    let Decision::Deny(message) = inject(&pod, &req(), &InjectConfig::default()) else { panic!("not denied") };
    assert!(message.contains("proxy.istio.io/config") && message.contains("SIDEWAYS"), "{message}");
    pod["metadata"]["annotations"] = json!({"proxy.istio.io/config": "proxyMetadata: {A: [1]}"});
    let Decision::Deny(message) = inject(&pod, &req(), &InjectConfig::default()) else { panic!("not denied") };
    assert!(message.contains("proxyMetadata.A"), "{message}");
}

#[test]
fn mesh_config_trust_domain_and_prometheus_merge_win() {
    let cfg = InjectConfig {
        mesh_config: MeshConfig {
            trust_domain: "example.org".into(),
            enable_prometheus_merge: Some(false),
            ..MeshConfig::default()
        },
        ..InjectConfig::default()
    };
    let mut pod = hello();
    pod["metadata"]["annotations"] = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9090"});
    let out = injected(&pod, &cfg);
    assert_eq!(env(&out, "TRUST_DOMAIN"), Some("example.org"));
    assert_eq!(env(&out, "ISTIO_META_MESH_ID"), Some("example.org"));
    assert_eq!(out["metadata"]["annotations"]["prometheus.io/port"], "9090");
    assert_eq!(env(&out, "ISTIO_PROMETHEUS_ANNOTATIONS"), None);
}

//! Conformance with Istio's injector: every case of `shared/conformance/istio-inject/cases.yaml`
//! goes through `mesh_core::inject::inject` (what the webhook calls), the JSON patch is applied with
//! the json-patch crate, and the pod is compared with Istio's golden output after the normalisation
//! the cases file describes. Prints `inject conformance: N/M`; fails unless every case passes.

use std::path::Path;

use anyhow::{Context, bail};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, inject};
use mesh_core::status::SidecarStatus;
use serde_json::{Value, json};

/// The image the cases expect for both injected containers (cases.yaml `harness.images`).
const TEST_IMAGE: &str = "registry.istio.io/testing/proxyv2:latest";

fn yaml_docs(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Expands `List`s into their items.
fn flatten(docs: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for doc in docs {
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
        } else {
            out.push(doc);
        }
    }
    out
}

/// Turns a workload into the pod its controller would create (cases.yaml `harness.owner`), or `None`
/// for objects that have no pods.
fn to_pod(obj: &Value) -> Option<Value> {
    let kind = obj.get("kind")?.as_str()?;
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let namespace = obj.pointer("/metadata/namespace").cloned();
    if kind == "Pod" {
        let mut pod = obj.clone();
        pod.as_object_mut()?.remove("status");
        return Some(pod);
    }
    // Any workload with a pod template (Deployment, DaemonSet, ..., DeploymentConfig); CronJob nests it.
    let template = match kind {
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template")?,
        _ => obj.pointer("/spec/template").filter(|t| t.pointer("/spec/containers").is_some())?,
    };
    let mut meta = template.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (owner_version, owner_kind, owner_name) = match kind {
        "Deployment" => {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            labels["pod-template-hash"] = json!("fake");
            ("apps/v1".to_owned(), "ReplicaSet".to_owned(), format!("{name}-fake"))
        }
        "CronJob" => ("batch/v1".to_owned(), "Job".to_owned(), format!("{name}-27000000")),
        _ => (api_version.to_owned(), kind.to_owned(), name.to_owned()),
    };
    meta.insert("generateName".into(), json!(format!("{owner_name}-")));
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": owner_version, "kind": owner_kind, "name": owner_name, "controller": true}]),
    );
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), ns);
    }
    Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec")?}))
}

/// Istio values (dotted, as cases.yaml writes them) and the InjectConfig keys they become.
const VALUE_KEYS: &[(&str, &str)] = &[
    ("cni.enabled", "cni.enabled"),
    ("cni.provider", "cni.provider"),
    ("pilot.cni.enabled", "cni.enabled"),
    ("pilot.cni.provider", "cni.provider"),
    ("revision", "revision"),
    ("global.network", "network"),
    ("global.meshID", "meshId"),
    ("global.trustDomain", "trustDomain"),
    ("global.multiCluster.clusterName", "clusterId"),
    ("global.imagePullPolicy", "imagePullPolicy"),
    ("global.imagePullSecrets", "imagePullSecrets"),
    ("global.logAsJson", "logAsJson"),
    ("global.logging.level", "logLevel"),
    ("global.nativeNftables", "nativeNftables"),
    ("global.istioNamespace", "istioNamespace"),
    ("global.caAddress", "caAddress"),
    ("global.pilotCertProvider", "pilotCertProvider"),
    ("global.sds.token.aud", "sdsTokenAudience"),
    ("global.trustBundleName", "trustBundleName"),
    ("global.mountMtlsCerts", "mountMtlsCerts"),
    ("global.proxy.image", "proxy.image"),
    ("global.proxy_init.image", "proxyInit.image"),
    ("global.proxy_init.forceApplyIptables", "proxyInit.forceApplyIptables"),
    ("global.proxy.includeIPRanges", "includeIPRanges"),
    ("global.proxy.excludeIPRanges", "excludeIPRanges"),
    ("global.proxy.includeInboundPorts", "includeInboundPorts"),
    ("global.proxy.excludeInboundPorts", "excludeInboundPorts"),
    ("global.proxy.includeOutboundPorts", "includeOutboundPorts"),
    ("global.proxy.excludeOutboundPorts", "excludeOutboundPorts"),
    ("global.proxy.statusPort", "proxy.statusPort"),
    ("global.proxy.clusterDomain", "clusterDomain"),
    ("global.proxy.logLevel", "proxy.logLevel"),
    ("global.proxy.componentLogLevel", "proxy.componentLogLevel"),
    ("global.proxy.privileged", "proxy.privileged"),
    ("global.proxy.capNetBindService", "proxy.capNetBindService"),
    ("global.proxy.readinessInitialDelaySeconds", "proxy.readinessInitialDelaySeconds"),
    ("global.proxy.readinessPeriodSeconds", "proxy.readinessPeriodSeconds"),
    ("global.proxy.readinessFailureThreshold", "proxy.readinessFailureThreshold"),
    ("global.proxy.startupProbe.enabled", "proxy.startupProbe.enabled"),
    ("global.proxy.startupProbe.failureThreshold", "proxy.startupProbe.failureThreshold"),
    ("global.proxy.resources", "proxy.resources"),
    ("global.proxy.holdApplicationUntilProxyStarts", "holdApplicationUntilProxyStarts"),
    ("global.proxy.interceptionMode", "interceptionMode"),
    ("sidecarInjectorWebhook.rewriteAppHTTPProbe", "rewriteAppHTTPProbe"),
    ("sidecarInjectorWebhook.neverInjectSelector", "neverInjectSelector"),
    ("sidecarInjectorWebhook.alwaysInjectSelector", "alwaysInjectSelector"),
    ("sidecarInjectorWebhook.injectedAnnotations", "injectedAnnotations"),
    ("meshConfig.enablePrometheusMerge", "enablePrometheusMerge"),
    ("meshConfig.trustDomain", "trustDomain"),
    ("meshConfig.defaultConfig.proxyMetadata", "proxyMetadata"),
    ("meshConfig.defaultConfig.interceptionMode", "interceptionMode"),
    ("meshConfig.defaultConfig.holdApplicationUntilProxyStarts", "holdApplicationUntilProxyStarts"),
];

/// Flattens nested values into dotted keys (`{global: {network: n}}` to `global.network: n`), stopping
/// at keys the table knows (their values may be maps, e.g. `global.proxy.resources`).
fn flatten_values(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !VALUE_KEYS.iter().any(|(k, _)| *k == prefix) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_values(&key, v, out);
            }
        }
        _ => out.push((prefix.to_owned(), value.clone())),
    }
}

/// Builds the config of a case: the harness images plus the case's Istio values, translated to
/// InjectConfig keys and read through `InjectConfig::from_yaml`.
fn config_for(settings: Option<&Value>) -> anyhow::Result<InjectConfig> {
    let mut cfg = json!({"proxy": {"image": TEST_IMAGE}, "proxyInit": {"image": TEST_IMAGE}});
    if let Some(settings) = settings {
        if let Some(mode) = settings.get("nativeSidecars") {
            cfg["nativeSidecars"] = mode.clone();
        }
        let mut values = Vec::new();
        if let Some(v) = settings.get("values") {
            flatten_values("", v, &mut values);
        }
        for (key, value) in values {
            let Some((_, ours)) = VALUE_KEYS.iter().find(|(k, _)| *k == key) else {
                bail!("the harness does not know the Istio value {key}");
            };
            let mut slot = &mut cfg;
            for part in ours.split('.') {
                slot = &mut slot[part];
            }
            *slot = match (ours, value) {
                // Istio's values take `imagePullSecrets` as names or as `{name: ...}` objects.
                (&"imagePullSecrets", Value::Array(items)) => {
                    Value::Array(items.into_iter().map(|i| i.get("name").cloned().unwrap_or(i)).collect())
                }
                (_, value) => value,
            };
        }
    }
    Ok(InjectConfig::from_yaml(&cfg.to_string())?)
}

/// Normalises a pod as cases.yaml `harness.compare` says.
fn normalise(pod: &mut Value) -> anyhow::Result<()> {
    if let Some(o) = pod.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("creationTimestamp");
        if let Some(status) = meta.get_mut("annotations").and_then(|a| a.get_mut(mesh_core::names::SIDECAR_STATUS)) {
            let parsed = SidecarStatus::parse(status.as_str().unwrap_or_default())?;
            *status = json!(parsed.to_annotation());
        }
    }
    for list in ["containers", "initContainers"] {
        for c in pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut).into_iter().flatten() {
            // Kubernetes' typed structs always write `resources: {}`; an empty one equals none.
            if c.get("resources") == Some(&json!({})) {
                c.as_object_mut().map(|o| o.remove("resources"));
            }
            for env in c.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
                let name = env.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
                if ["PROXY_CONFIG", "ISTIO_META_POD_PORTS", "ISTIO_KUBE_APP_PROBERS", "ISTIO_PROMETHEUS_ANNOTATIONS"]
                    .contains(&name.as_str())
                    && let Some(text) = env.get("value").and_then(Value::as_str)
                {
                    let parsed: Value = serde_json::from_str(text).with_context(|| format!("env {name}={text:?}"))?;
                    env["value"] = parsed;
                }
            }
        }
    }
    strip_field_ref_api_version(pod);
    Ok(())
}

fn strip_field_ref_api_version(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(field_ref)) = map.get_mut("fieldRef") {
                field_ref.remove("apiVersion");
            }
            map.values_mut().for_each(strip_field_ref_api_version);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_field_ref_api_version),
        _ => {}
    }
}

/// The paths where two values differ, for a readable failure.
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}/{k}"),
                    g.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}/{i}"), g, w, out);
            }
        }
        (g, w) if g != w => out.push(format!("{path}: got {g}, want {w}")),
        _ => {}
    }
}

fn request() -> InjectRequest<'static> {
    InjectRequest { namespace: "default", cluster_id: None, network: None, nodes_support_native_sidecars: true }
}

/// Runs one case; `Ok(())` when it matches.
fn run_case(dir: &Path, case: &Value) -> anyhow::Result<()> {
    let input_path = dir.join(case["input"].as_str().context("case without input")?);
    let input = flatten(yaml_docs(&std::fs::read_to_string(&input_path)?)?);
    let cfg = config_for(case.get("settings"))?;
    let pods: Vec<Value> = input.iter().filter_map(to_pod).collect();
    if pods.is_empty() {
        bail!("no workload in {}", input_path.display());
    }
    if let Some(expected) = case.get("expect_error_containing").and_then(Value::as_str) {
        for pod in &pods {
            match inject(pod, &request(), &cfg) {
                Decision::Deny(message) if message.to_lowercase().contains(&expected.to_lowercase()) => {}
                other => bail!("want a deny containing {expected:?}, got {other:?}"),
            }
        }
        return Ok(());
    }
    let golden_path = dir.join(case["golden"].as_str().context("case without golden")?);
    let golden: Vec<Value> =
        flatten(yaml_docs(&std::fs::read_to_string(&golden_path)?)?).iter().filter_map(to_pod).collect();
    if golden.len() != pods.len() {
        bail!("{} pods in the input, {} in the golden file", pods.len(), golden.len());
    }
    for (pod, want) in pods.iter().zip(golden) {
        let mut got = pod.clone();
        match inject(pod, &request(), &cfg) {
            Decision::Patch(patch) => json_patch::patch(&mut got, &patch).context("applying the patch")?,
            Decision::Skip(_) => {}
            Decision::Deny(message) => bail!("denied: {message}"),
        }
        let mut want = want;
        normalise(&mut got)?;
        normalise(&mut want)?;
        let mut diffs = Vec::new();
        differences("", &got, &want, &mut diffs);
        if !diffs.is_empty() {
            bail!("{} differences:\n  {}", diffs.len(), diffs.join("\n  "));
        }
    }
    Ok(())
}

#[test]
fn istio_injection_conformance() -> anyhow::Result<()> {
    let dir = mesh_tests::shared_dir()?.join("conformance/istio-inject");
    let cases: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join("cases.yaml"))?)?;
    let cases = cases["cases"].as_array().context("cases.yaml without cases")?;
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        match run_case(&dir, case) {
            Ok(()) => passed += 1,
            Err(err) => failures.push(format!("{name}: {err:#}")),
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}\n");
    }
    println!("inject conformance: {passed}/{}", cases.len());
    assert!(failures.is_empty(), "inject conformance: {passed}/{}", cases.len());
    Ok(())
}

#[test]
fn harness_turns_a_deployment_into_an_owned_pod() {
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}});
    let pod = to_pod(&deploy).unwrap();
    assert_eq!(pod["metadata"]["generateName"], "web-fake-");
    assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], "fake");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "web-fake");
    assert!(to_pod(&json!({"kind": "Service", "metadata": {"name": "s"}})).is_none());
}

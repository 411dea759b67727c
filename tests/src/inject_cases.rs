//! The Istio injection conformance cases (`shared/conformance/istio-inject/cases.yaml`) as data:
//! inputs turned into pods the way the harness notes say, the config of each case as InjectConfig
//! YAML, and the comparison normalisation. Used by every test that checks injection output against
//! Istio's golden files, whether through `mesh_core::inject` directly or through the webhook.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mesh_core::status::SidecarStatus;
use serde_json::{Value, json};

/// The image the cases expect for both injected containers (cases.yaml `harness.images`).
pub const TEST_IMAGE: &str = "registry.istio.io/testing/proxyv2:latest";

/// Kubelet versions of the harness's nodes (cases.yaml `harness.nodes`).
pub const NODE_KUBELET_VERSIONS: [&str; 2] = ["v1.33.0", "v1.34.0"];

/// One conformance case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// The pods of the input, in order.
    pub pods: Vec<Value>,
    /// The InjectConfig of the case, as YAML (JSON is YAML).
    pub config_yaml: String,
    /// What is expected.
    pub expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone)]
pub enum Expect {
    /// These pods (one per input pod) after injection.
    Pods(Vec<Value>),
    /// A denial whose message contains this text (case-insensitive).
    DenyContaining(String),
}

/// The directory of the cases.
pub fn cases_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::shared_dir()?.join("conformance/istio-inject"))
}

/// The case files: cases.yaml and cases-templates.yaml (Istio's non-sidecar templates).
pub const CASE_FILES: [&str; 2] = ["cases.yaml", "cases-templates.yaml"];

/// Loads every case of every file of [`CASE_FILES`].
pub fn load_cases() -> anyhow::Result<Vec<Case>> {
    let dir = cases_dir()?;
    let mut out = Vec::new();
    for file in CASE_FILES {
        let cases: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join(file))?)?;
        let cases = cases["cases"].as_array().with_context(|| format!("{file} without cases"))?;
        for case in cases {
            out.push(load_case(&dir, case).context(file)?);
        }
    }
    Ok(out)
}

fn load_case(dir: &Path, case: &Value) -> anyhow::Result<Case> {
    let name = case["name"].as_str().context("case without name")?.to_string();
    let input_path = dir.join(case["input"].as_str().context("case without input")?);
    let pods: Vec<Value> =
        flatten(yaml_docs(&std::fs::read_to_string(&input_path)?)?).iter().filter_map(to_pod).collect();
    if pods.is_empty() {
        bail!("case {name}: no workload in {}", input_path.display());
    }
    let config_yaml = config_yaml(case.get("settings")).with_context(|| format!("case {name}"))?;
    let expect = match case.get("expect_error_containing").and_then(Value::as_str) {
        Some(text) => Expect::DenyContaining(text.to_string()),
        None => {
            let golden_path = dir.join(case["golden"].as_str().context("case without golden")?);
            let golden: Vec<Value> =
                flatten(yaml_docs(&std::fs::read_to_string(&golden_path)?)?).iter().filter_map(to_pod).collect();
            if golden.len() != pods.len() {
                bail!("case {name}: {} pods in the input, {} in the golden file", pods.len(), golden.len());
            }
            Expect::Pods(golden)
        }
    };
    Ok(Case { name, pods, config_yaml, expect })
}

/// Parses multi-document YAML, dropping empty documents.
pub fn yaml_docs(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = mesh_core::documents::parse_documents(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Expands `List`s into their items.
pub fn flatten(docs: Vec<Value>) -> Vec<Value> {
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
pub fn to_pod(obj: &Value) -> Option<Value> {
    let kind = obj.get("kind")?.as_str()?;
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let namespace = obj.pointer("/metadata/namespace").cloned();
    if kind == "Pod" {
        let mut pod = obj.clone();
        pod.as_object_mut()?.remove("status");
        return Some(pod);
    }
    let template = match kind {
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template")?,
        // Any workload with a pod template (Deployment, DaemonSet, ..., DeploymentConfig); CronJob nests it.
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
pub const VALUE_KEYS: &[(&str, &str)] = &[
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

/// The InjectConfig of a case as YAML: the harness images plus the case's Istio values translated
/// to InjectConfig keys through [`VALUE_KEYS`].
pub fn config_yaml(settings: Option<&Value>) -> anyhow::Result<String> {
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
    Ok(cfg.to_string())
}

/// Normalises a pod as cases.yaml `harness.compare` says.
pub fn normalise(pod: &mut Value) -> anyhow::Result<()> {
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

/// The JSON paths where two values differ (`path: got X, want Y`), for readable failures.
pub fn differences(got: &Value, want: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_differences("", got, want, &mut out);
    out
}

fn collect_differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                let (g, w) = (g.get(k).unwrap_or(&Value::Null), w.get(k).unwrap_or(&Value::Null));
                collect_differences(&format!("{path}/{k}"), g, w, out);
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                collect_differences(&format!("{path}/{i}"), g, w, out);
            }
        }
        (g, w) if g != w => out.push(format!("{path}: got {g}, want {w}")),
        _ => {}
    }
}

/// Normalises both pods and returns their differences (empty when they match).
pub fn compare(got: &Value, want: &Value) -> anyhow::Result<Vec<String>> {
    let (mut got, mut want) = (got.clone(), want.clone());
    normalise(&mut got)?;
    normalise(&mut want)?;
    Ok(differences(&got, &want))
}

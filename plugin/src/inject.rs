//! `kubectl mesh inject -f FILE|-`: the offline equivalent of `istioctl kube-inject`. Reads
//! multi-document YAML, injects the pod templates of workloads (and bare pods) with the same core the
//! webhook uses, and prints the manifests in the same order; other kinds pass through unchanged.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector, NativeSidecars, Workload};
use serde_json::{Map, Value, json};

use crate::exit::OK as EXIT_OK;

/// Flags of `kubectl mesh inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The manifests to inject: a file, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-", value_hint = clap::ValueHint::FilePath)]
    pub filename: String,
    /// The injector settings (InjectConfig YAML, see docs/inject.md, "InjectConfig"); Istio's defaults without it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Istio's injector configuration instead of --config: a directory with the files `mesh`
    /// (ConfigMap `istio`), `config` and `values` (ConfigMap `istio-sidecar-injector`); a setting
    /// mesh cannot honour is an error naming the key (see docs/inject.md, "Istio's configuration").
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub istio_config: Option<PathBuf>,
    /// Whether istio-proxy is a native sidecar; overrides the config's `nativeSidecars`. Offline,
    /// `auto` means enabled (every supported Kubernetes, 1.33 and later, has native sidecars).
    #[arg(long, value_enum, value_name = "MODE")]
    pub native_sidecars: Option<NativeSidecarsArg>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Output,
}

/// `--native-sidecars` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NativeSidecarsArg {
    /// Enabled (offline there are no nodes to ask).
    Auto,
    /// istio-proxy is an init container with `restartPolicy: Always`.
    Enabled,
    /// istio-proxy is a regular container.
    Disabled,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Multi-document YAML, one document per input document.
    Yaml,
    /// JSON: the object, or one flat `v1` `List` of them when there are several (the items of
    /// input Lists are spliced in, as `kubectl apply -f -` needs).
    Json,
}

/// Errors of `kubectl mesh inject`.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A document is not valid YAML.
    #[error("document {document} (line {line}): invalid YAML: {reason}")]
    Yaml {
        /// 1-based document number.
        document: usize,
        /// 1-based line in the whole input.
        line: usize,
        /// What the parser said.
        reason: String,
    },
    /// The injector refused a pod (e.g. a bad annotation value).
    #[error("document {document} ({kind} {name}): {message}")]
    Denied {
        /// 1-based document number.
        document: usize,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Why.
        message: String,
    },
    /// The output could not be rendered.
    #[error("cannot render the output: {0}")]
    Output(String),
}

/// Runs `kubectl mesh inject`.
pub fn run(args: InjectArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let InjectArgs { filename, config, istio_config, native_sidecars, output } = args;
    let mut cfg = match (&config, &istio_config) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read --config {}", path.display()))?;
            InjectConfig::from_yaml(&text).with_context(|| format!("--config {}", path.display()))?
        }
        (None, Some(dir)) => mesh_core::inject::istio_config::read_dir(dir)
            .with_context(|| format!("--istio-config {}", dir.display()))?,
        (None, None) => InjectConfig::default(),
    };
    if let Some(mode) = native_sidecars {
        cfg.native_sidecars = match mode {
            NativeSidecarsArg::Auto => NativeSidecars::Auto,
            NativeSidecarsArg::Enabled => NativeSidecars::Enabled,
            NativeSidecarsArg::Disabled => NativeSidecars::Disabled,
        };
    }
    let text = if filename == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(&filename).with_context(|| format!("cannot read -f {filename}"))?
    };
    let docs = inject_manifests(&text, &cfg)?;
    out.write_all(render(&docs, output)?.as_bytes())?;
    Ok(EXIT_OK)
}

/// Parses multi-document YAML, naming the document and line of a syntax error. Empty documents are
/// dropped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, InjectError> {
    mesh_core::documents::parse_documents(text).map_err(|e| InjectError::Yaml {
        document: e.document,
        line: e.line,
        reason: e.reason,
    })
}

/// Injects every pod template in the manifests; other objects come back unchanged, in order.
pub fn inject_manifests(text: &str, cfg: &InjectConfig) -> Result<Vec<Value>, InjectError> {
    let injector = Injector::new(cfg.clone());
    parse_documents(text)?.into_iter().enumerate().map(|(i, doc)| inject_object(doc, i + 1, &injector)).collect()
}

/// Injects one object (a `List` item by item).
pub fn inject_object(mut obj: Value, document: usize, injector: &Injector) -> Result<Value, InjectError> {
    let text = |v: &Value, path: &str| v.pointer(path).and_then(Value::as_str).unwrap_or("").to_owned();
    let kind = text(&obj, "/kind");
    if kind == "List" {
        if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                *item = inject_object(item.take(), document, injector)?;
            }
        }
        return Ok(obj);
    }
    let template_path = match kind.as_str() {
        "Pod" => "",
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "ReplicationController" | "Job" => "/spec/template",
        "CronJob" => "/spec/jobTemplate/spec/template",
        _ => return Ok(obj),
    };
    let name = text(&obj, "/metadata/name");
    let namespace = text(&obj, "/metadata/namespace");
    let (pod, workload) = if template_path.is_empty() {
        let workload = Workload::from_pod(&obj, &namespace);
        (obj.clone(), workload)
    } else {
        let Some(template) = obj.pointer(template_path) else { return Ok(obj) };
        let mut meta = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
        if !namespace.is_empty()
            && let Some(m) = meta.as_object_mut()
        {
            m.entry("namespace").or_insert_with(|| json!(namespace));
        }
        let pod = json!({"metadata": meta, "spec": template.get("spec").cloned().unwrap_or(Value::Null)});
        let workload = Workload {
            api_version: text(&obj, "/apiVersion"),
            kind: kind.clone(),
            name: name.clone(),
            namespace: namespace.clone(),
        };
        (pod, workload)
    };
    // Offline there are no nodes to ask: `auto` means native sidecars, as on every Kubernetes >= 1.33.
    let req =
        InjectRequest { namespace: &namespace, cluster_id: None, network: None, nodes_support_native_sidecars: true };
    let patch = match injector.inject_workload(&pod, &workload, &req) {
        Decision::Patch(patch) => patch,
        Decision::Skip(_) => return Ok(obj),
        Decision::Deny(message) => return Err(InjectError::Denied { document, kind, name, message }),
    };
    let mut injected = pod;
    json_patch::patch(&mut injected, &patch).map_err(|e| InjectError::Denied {
        document,
        kind: kind.clone(),
        name: name.clone(),
        message: e.to_string(),
    })?;
    if template_path.is_empty() {
        return Ok(injected);
    }
    if let Some(template) = obj.pointer_mut(template_path).and_then(Value::as_object_mut) {
        let mut meta = injected.get("metadata").cloned().unwrap_or_else(|| json!({}));
        // The namespace was only lent to the injector; the template keeps what it had.
        let had_namespace = template.get("metadata").and_then(|m| m.get("namespace")).is_some();
        if !had_namespace && let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        template.insert("metadata".into(), meta);
        template.insert("spec".into(), injected.get("spec").cloned().unwrap_or(Value::Null));
    }
    Ok(obj)
}

/// Renders the manifests as YAML documents or JSON.
pub fn render(docs: &[Value], output: Output) -> Result<String, InjectError> {
    match output {
        Output::Yaml => {
            let mut out = String::new();
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(doc).map_err(|e| InjectError::Output(e.to_string()))?);
            }
            Ok(out)
        }
        Output::Json => {
            let value = match docs {
                [one] if one.get("kind").and_then(Value::as_str) != Some("List") => one.clone(),
                many => {
                    let mut items = Vec::with_capacity(many.len());
                    flatten_into(many, &mut items);
                    let mut list = Map::new();
                    list.insert("apiVersion".into(), json!("v1"));
                    list.insert("kind".into(), json!("List"));
                    list.insert("items".into(), Value::Array(items));
                    Value::Object(list)
                }
            };
            let mut text = serde_json::to_string_pretty(&value).map_err(|e| InjectError::Output(e.to_string()))?;
            text.push('\n');
            Ok(text)
        }
    }
}

/// Appends `docs` to `items`, splicing in the items of every `List` (at any depth).
fn flatten_into(docs: &[Value], items: &mut Vec<Value>) {
    for doc in docs {
        match doc.get("items").and_then(Value::as_array) {
            Some(inner) if doc.get("kind").and_then(Value::as_str) == Some("List") => flatten_into(inner, items),
            _ => items.push(doc.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `inject -o json` of a stream holding a List printed a List nested in a List, which
    /// `kubectl apply -f -` rejects (`*unstructured.Unstructured is not a list`).
    #[test]
    fn json_output_is_one_flat_list() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: List, items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: b}}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\n";
        let docs = inject_manifests(text, &InjectConfig::default()).unwrap();
        let out: Value = serde_json::from_str(&render(&docs, Output::Json).unwrap()).unwrap();
        assert_eq!(out["kind"], "List");
        let names: Vec<&str> =
            out["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(out["items"].as_array().unwrap().iter().all(|i| i["kind"] != "List"));
    }

    #[test]
    fn documents_keep_their_line_numbers() {
        let err = parse_documents("kind: Pod\n---\nkind: Pod\nmetadata: [\n  x: 1\n").unwrap_err().to_string();
        assert!(err.starts_with("document 2 (line "), "{err}");
    }

    #[test]
    fn deployment_template_is_injected_with_its_owner() {
        let docs = inject_manifests(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
            &InjectConfig::default(),
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        let template = &docs[0]["spec"]["template"];
        assert!(template["metadata"].get("namespace").is_none());
        let proxy = &template["spec"]["initContainers"][1];
        let owner = proxy["env"].as_array().unwrap().iter().find(|e| e["name"] == "ISTIO_META_OWNER").unwrap();
        assert_eq!(owner["value"], "kubernetes://apis/apps/v1/namespaces/shop/deployments/web");
        assert_eq!(docs[1]["kind"], "Service");
    }

    #[test]
    fn denied_pod_names_the_document() {
        let err = inject_manifests(
            "kind: Service\n---\nkind: Pod\nmetadata:\n  name: p\n  annotations: {status.sidecar.istio.io/port: x}\nspec: {containers: [{name: c}]}\n",
            &InjectConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("document 2 (Pod p): invalid annotation status.sidecar.istio.io/port"), "{err}");
    }
}

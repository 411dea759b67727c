//! Resource types from CustomResourceDefinitions (the Istio CRDs in the shared fixtures).

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use super::resource::{PrinterColumn, ResourceType};

/// Errors reading CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The file could not be read.
    #[error("reading CRDs from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML did not parse.
    #[error("parsing CRDs from {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A CRD lacks a field the server needs.
    #[error("CRD {name:?} in {path}: missing or invalid {field}")]
    Field {
        /// The file.
        path: String,
        /// CRD name.
        name: String,
        /// The field (e.g. `spec.names.plural`).
        field: &'static str,
    },
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The served versions of one CRD object, as resource types (the storage version is `preferred`).
pub fn types_of(crd: &Value, path: &str) -> Result<Vec<ResourceType>, CrdError> {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let field = |field: &'static str| CrdError::Field { path: path.to_string(), name: name.clone(), field };
    let spec = crd.get("spec").ok_or_else(|| field("spec"))?;
    let group = spec.get("group").and_then(Value::as_str).ok_or_else(|| field("spec.group"))?;
    let names = spec.get("names").ok_or_else(|| field("spec.names"))?;
    let kind = names.get("kind").and_then(Value::as_str).ok_or_else(|| field("spec.names.kind"))?;
    let plural = names.get("plural").and_then(Value::as_str).ok_or_else(|| field("spec.names.plural"))?;
    let singular = names.get("singular").and_then(Value::as_str).map_or_else(|| kind.to_lowercase(), str::to_string);
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec.get("versions").and_then(Value::as_array).ok_or_else(|| field("spec.versions"))?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = v.get("name").and_then(Value::as_str).ok_or_else(|| field("spec.versions[].name"))?;
        let mut rt = ResourceType::new(group, version, kind, plural, namespaced);
        rt.singular.clone_from(&singular);
        rt.short_names = strs(names.get("shortNames"));
        rt.categories = strs(names.get("categories"));
        rt.custom = true;
        rt.verbs = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        rt.preferred = v.get("storage").and_then(Value::as_bool) == Some(true);
        if v.pointer("/subresources/status").is_some() {
            rt = rt.with_status();
        }
        rt.printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                        type_: c.get("type").and_then(Value::as_str).unwrap_or("string").to_string(),
                        json_path: c.get("jsonPath").and_then(Value::as_str).unwrap_or("").to_string(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        description: c.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(rt);
    }
    Ok(out)
}

/// Replaces every block-style `openAPIV3Schema:` mapping with a schema that preserves unknown fields.
/// The schemas are most of the file and the server does not validate, so this makes parsing fast.
fn without_schemas(text: &str) -> String {
    let mut out = String::with_capacity(text.len() / 8);
    let mut skip_deeper_than: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(limit) = skip_deeper_than {
            if line.trim().is_empty() || indent > limit {
                continue;
            }
            skip_deeper_than = None;
        }
        if line.trim_start() == "openAPIV3Schema:" {
            out.push_str(&line[..indent]);
            out.push_str("openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n");
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Parses a multi-document CRD YAML file into CRD objects (other kinds are skipped). The OpenAPI
/// schemas are replaced by `x-kubernetes-preserve-unknown-fields: true` (the server does not validate).
pub fn read_crds(path: &Path) -> Result<Vec<Value>, CrdError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CrdError::Read { path: p.clone(), source })?;
    let docs: Vec<Value> = mesh_core::documents::parse_documents(&without_schemas(&text))
        .map_err(|e| CrdError::Parse { path: p.clone(), message: e.to_string() })?;
    Ok(docs.into_iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")).collect())
}

/// The Istio CRDs from `<shared>/fixtures/istio-crds/crd-all.gen.yaml`, parsed once per process.
pub fn istio_crds() -> Result<&'static [Value], String> {
    static CRDS: OnceLock<Result<Vec<Value>, String>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let dir = mesh_test_data::shared_dir().map_err(|e| format!("{e:#}"))?;
        read_crds(&dir.join("fixtures/istio-crds/crd-all.gen.yaml")).map_err(|e| e.to_string())
    })
    .as_ref()
    .map(Vec::as_slice)
    .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_replaced_and_the_rest_kept() {
        let text = "spec:\n  versions:\n  - name: v1\n    schema:\n      openAPIV3Schema:\n        properties:\n          spec:\n            type: object\n\n        type: object\n    served: true\n";
        assert_eq!(
            without_schemas(text),
            "spec:\n  versions:\n  - name: v1\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n    served: true\n"
        );
    }

    #[test]
    fn istio_crds_give_virtual_services_in_three_versions() -> anyhow::Result<()> {
        let crds = istio_crds().map_err(anyhow::Error::msg)?;
        let vs = crds
            .iter()
            .find(|c| {
                c.pointer("/metadata/name").and_then(Value::as_str) == Some("virtualservices.networking.istio.io")
            })
            .ok_or_else(|| anyhow::anyhow!("no VirtualService CRD"))?;
        let types = types_of(vs, "crd-all.gen.yaml")?;
        let versions: Vec<&str> = types.iter().map(|t| t.version.as_str()).collect();
        assert_eq!(versions, vec!["v1", "v1alpha3", "v1beta1"]);
        assert!(types.iter().all(|t| t.namespaced && t.custom && t.short_names == ["vs"]));
        assert!(types[0].printer_columns.iter().any(|c| c.name == "Hosts"));
        Ok(())
    }
}

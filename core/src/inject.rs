//! Istio-compatible sidecar injection: a pure function from a pod (as JSON) and an [`InjectConfig`]
//! to a [`Decision`]: skip it, deny it, or patch it with a minimal RFC 6902 JSON Patch.
//!
//! The webhook calls [`inject`] for every AdmissionReview; `kubectl mesh inject` calls it for every pod
//! template. The rendering follows Istio's `sidecar-injector` template (`istio-init`, `istio-proxy`,
//! volumes, labels, annotations, probe rewrites), and a pod that is already injected is injected again
//! idempotently: what its `sidecar.istio.io/status` lists is stripped first, then added again.
//!
//! Choosing namespaces (`istio-injection=enabled`, `istio.io/rev=<rev>`) is the job of the webhook
//! configuration's selectors, as in Istio; this module only applies the per-pod rules.

use serde_json::Value;

pub mod annotations;
mod config;
pub mod istio_config;
mod merge;
mod owner;
mod patch;
mod plan;
mod policy;
mod probe;
mod prometheus;
pub mod quantity;
mod template;
mod token_mounts;

pub use config::{
    CniConfig, ConfigError, DEFAULT_PROXY_IMAGE, DEFAULT_PROXY_INIT_IMAGE, InjectConfig, InjectPolicy, LabelSelector,
    LabelSelectorRequirement, MeshConfig, NativeSidecars, ProxyConfig, ProxyInitConfig, Resources, SelectorOperator,
    StartupProbe,
};
pub use owner::Workload;

/// What the caller knows about the request beyond the pod itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectRequest<'a> {
    /// The AdmissionReview's namespace (the pod may lack one); `default` when empty.
    pub namespace: &'a str,
    /// The cluster id from the `/inject/cluster/<c>/net/<n>` path; overrides the config's.
    pub cluster_id: Option<&'a str>,
    /// The network from the `/inject/cluster/<c>/net/<n>` path; overrides the config's.
    pub network: Option<&'a str>,
    /// What [`NativeSidecars::Auto`] resolves to: whether every node's kubelet supports native sidecars.
    pub nodes_support_native_sidecars: bool,
}

/// Why a pod is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The pod uses the host network.
    HostNetwork,
    /// The pod is in one of [`crate::names::IGNORED_NAMESPACES`].
    IgnoredNamespace,
    /// `sidecar.istio.io/inject: "false"` (label or annotation).
    PodOptOut,
    /// The pod matches one of the config's `neverInjectSelector`s.
    NeverInjectSelector,
    /// The policy is `disabled` and nothing on the pod asks for injection.
    PolicyDisabled,
    /// The object is not a pod (no `spec.containers` list).
    NotAPod,
}

impl SkipReason {
    /// A short, stable name for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::HostNetwork => "host_network",
            SkipReason::IgnoredNamespace => "ignored_namespace",
            SkipReason::PodOptOut => "pod_opt_out",
            SkipReason::NeverInjectSelector => "never_inject_selector",
            SkipReason::PolicyDisabled => "policy_disabled",
            SkipReason::NotAPod => "not_a_pod",
        }
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allow the pod unchanged.
    Skip(SkipReason),
    /// Refuse the pod; the message names the bad annotation and its value.
    Deny(String),
    /// Allow the pod with this patch: minimal RFC 6902 operations that apply cleanly to the input.
    Patch(json_patch::Patch),
}

/// Decides what to do with `pod` and, when it is to be injected, builds the patch. The owning
/// workload is derived from the pod's controller reference, as Istio's webhook does.
///
/// For many pods with one config, [`Injector`] gives the same answers faster.
pub fn inject(pod: &Value, req: &InjectRequest, cfg: &InjectConfig) -> Decision {
    decide(pod, &workload_of(pod, req), req, cfg, None)
}

/// Like [`inject`], for a pod template whose workload is known (`kubectl mesh inject`): `workload`
/// gives `ISTIO_META_OWNER`, `ISTIO_META_WORKLOAD_NAME` and the default canonical name.
pub fn inject_workload(pod: &Value, workload: &Workload, req: &InjectRequest, cfg: &InjectConfig) -> Decision {
    decide(pod, workload, req, cfg, None)
}

/// An [`InjectConfig`] with the parts of the sidecar template that depend on it alone (volumes,
/// mounts, resources, the init container, most of the proxy's env) rendered once. Its answers are
/// exactly those of [`inject`] and [`inject_workload`] with the same config; the webhook keeps one
/// per loaded config.
pub struct Injector {
    cfg: InjectConfig,
    prebuilt: template::Prebuilt,
}

impl Injector {
    /// Renders the config-only parts of the template for `cfg`.
    pub fn new(cfg: InjectConfig) -> Injector {
        let prebuilt = template::Prebuilt::new(&cfg);
        Injector { cfg, prebuilt }
    }

    /// The config.
    pub fn config(&self) -> &InjectConfig {
        &self.cfg
    }

    /// [`inject`] with this config.
    pub fn inject(&self, pod: &Value, req: &InjectRequest) -> Decision {
        decide(pod, &workload_of(pod, req), req, &self.cfg, Some(&self.prebuilt))
    }

    /// [`inject_workload`] with this config.
    pub fn inject_workload(&self, pod: &Value, workload: &Workload, req: &InjectRequest) -> Decision {
        decide(pod, workload, req, &self.cfg, Some(&self.prebuilt))
    }
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector").field("config", &self.cfg).finish_non_exhaustive()
    }
}

fn decide(
    pod: &Value,
    workload: &Workload,
    req: &InjectRequest,
    cfg: &InjectConfig,
    prebuilt: Option<&template::Prebuilt>,
) -> Decision {
    if at(pod, "/spec/containers").and_then(Value::as_array).is_none() {
        return Decision::Skip(SkipReason::NotAPod);
    }
    if let Err(message) = check_shape(pod) {
        return Decision::Deny(message);
    }
    let namespace = namespace_of(pod, req);
    if let Some(reason) = policy::skip_reason(pod, &namespace, cfg) {
        return Decision::Skip(reason);
    }
    match token_mounts::keep(pod, |pod| plan::plan(pod, workload, req, cfg, prebuilt)) {
        Ok(ops) if !ops.is_empty() && carries_the_result(pod, &ops) => Decision::Patch(json_patch::Patch(Vec::new())),
        Ok(ops) => Decision::Patch(json_patch::Patch(ops)),
        Err(message) => Decision::Deny(message),
    }
}

/// Whether `pod`, already injected, is the result of `ops` as the API server holds it: the
/// re-review after the API server decoded the patched pod into its Go types and defaulted it
/// (member order, `terminationMessagePath`, `imagePullPolicy`, probe thresholds, ...), which only
/// [`crate::drift::same_pod`] tells apart from the patch's own spelling. Such a pod needs no patch.
fn carries_the_result(pod: &Value, ops: &[json_patch::PatchOperation]) -> bool {
    let injected = at(pod, "/metadata/annotations").and_then(|a| a.get(crate::names::SIDECAR_STATUS)).is_some();
    if !injected {
        return false;
    }
    let mut result = pod.clone();
    json_patch::patch(&mut result, ops).is_ok() && crate::drift::same_pod(pod, &result)
}

/// The owning workload, from the pod's controller reference, as Istio's webhook derives it.
fn workload_of(pod: &Value, req: &InjectRequest) -> Workload {
    Workload::from_pod(pod, &namespace_of(pod, req))
}

/// The pod's namespace, else the request's, else `default`.
fn namespace_of(pod: &Value, req: &InjectRequest) -> String {
    let ns = at(pod, "/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let ns = if ns.is_empty() { req.namespace } else { ns };
    if ns.is_empty() { "default".into() } else { ns.into() }
}

/// Rejects pods whose shape the API server would reject, so the patch always applies.
fn check_shape(pod: &Value) -> Result<(), String> {
    let object = |field: &str, value: Option<&Value>| match value {
        None | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(format!("invalid pod: {field} must be a map, not {other}")),
    };
    let (meta, spec) = (pod.get("metadata"), pod.get("spec"));
    object("metadata", meta)?;
    object("spec", spec)?;
    for (field, key) in [("metadata.labels", "labels"), ("metadata.annotations", "annotations")] {
        let value = meta.and_then(|m| m.get(key));
        object(field, value)?;
        if let Some(Value::Object(map)) = value
            && let Some((k, v)) = map.iter().find(|(_, v)| !v.is_string())
        {
            return Err(format!("invalid pod: {field}[{k:?}] must be a string, not {v}"));
        }
    }
    for list in ["containers", "initContainers", "volumes", "imagePullSecrets"] {
        match spec.and_then(|s| s.get(list)) {
            None => {}
            Some(Value::Array(items)) => {
                if let Some(bad) = items.iter().find(|i| i.get("name").and_then(Value::as_str).is_none()) {
                    return Err(format!("invalid pod: every spec.{list} entry needs a string name, not {bad}"));
                }
            }
            Some(other) => return Err(format!("invalid pod: spec.{list} must be a list, not {other}")),
        }
    }
    Ok(())
}

/// The value at a JSON Pointer made of plain object keys (`/spec/containers`): like
/// [`Value::pointer`] without unescaping (and allocating for) every token.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').skip(1).try_fold(v, |v, key| v.get(key))
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

fn list(pod: &Value, path: &str) -> Vec<Value> {
    list_ref(pod, path).to_vec()
}

fn list_ref<'a>(pod: &'a Value, path: &str) -> &'a [Value] {
    at(pod, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container.get("env")?.as_array()?.iter().find(|e| name_of(e) == name)?.get("value")?.as_str()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

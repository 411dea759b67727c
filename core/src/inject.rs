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

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::status::SidecarStatus;
use crate::{names, ports};

pub mod annotations;
mod config;
pub mod istio_config;
mod merge;
mod owner;
mod patch;
mod policy;
mod probe;
mod prometheus;
pub mod quantity;
mod template;

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
    match plan(pod, workload, req, cfg, prebuilt) {
        Ok(ops) => Decision::Patch(json_patch::Patch(ops)),
        Err(message) => Decision::Deny(message),
    }
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

const ENV_PROMETHEUS: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";
const ENV_PROBERS: &str = "ISTIO_KUBE_APP_PROBERS";

/// Computes the injected pod's parts and the operations that produce them.
fn plan(
    pod: &Value,
    workload: &Workload,
    req: &InjectRequest,
    cfg: &InjectConfig,
    prebuilt: Option<&template::Prebuilt>,
) -> Result<Vec<json_patch::PatchOperation>, String> {
    let empty = Map::new();
    let (meta, spec) = (pod.get("metadata"), pod.get("spec"));
    let m = |key: &str| meta.and_then(|m| m.get(key));
    let s = |key: &str| spec.and_then(|s| s.get(key));
    let s_list = |key: &str| s(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let orig_annotations = m("annotations").and_then(Value::as_object).unwrap_or(&empty);
    annotations::validate(orig_annotations)?;
    let templates = template::Template::selected(orig_annotations)?;
    let orig_containers = s_list("containers");
    let orig_init = s_list("initContainers");

    // A previous injection: strip what it added, keeping what the agent needs to stay idempotent.
    let prev = match orig_annotations.get(names::SIDECAR_STATUS).and_then(Value::as_str) {
        Some(text) => Some(SidecarStatus::parse(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let owned = |name: &str| prev.as_ref().is_some_and(|s| s.owns_container(name));
    let old_proxy = orig_containers
        .iter()
        .chain(orig_init)
        .find(|c| name_of(c) == names::CONTAINER_PROXY && owned(names::CONTAINER_PROXY));
    let old_probers: BTreeMap<String, Value> = old_proxy
        .and_then(|p| env_value(p, ENV_PROBERS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let old_prometheus = old_proxy.and_then(|p| env_value(p, ENV_PROMETHEUS)).map(str::to_owned);
    let strip = |list: &[Value], names: Option<&Vec<String>>| -> Vec<Value> {
        list.iter().filter(|c| !names.is_some_and(|n| n.iter().any(|n| n == name_of(c)))).cloned().collect()
    };
    let mut containers = strip(orig_containers, prev.as_ref().map(|s| &s.containers));
    let mut init = strip(orig_init, prev.as_ref().map(|s| &s.init_containers));
    let mut annotations = orig_annotations.clone();
    let mut labels = m("labels").and_then(Value::as_object).cloned().unwrap_or_default();
    let target_port = ports::AGENT_STATUS.to_string();
    if prev.is_some() {
        if annotations.get(prometheus::PORT).and_then(Value::as_str) == Some(target_port.as_str()) {
            for key in [prometheus::SCRAPE, prometheus::PORT, prometheus::PATH] {
                annotations.remove(key);
            }
        }
        annotations.remove(names::SIDECAR_STATUS);
    }

    // The user's overrides recorded by a previous injection come back as containers.
    let (over_containers, over_init) = match orig_annotations.get(annotations::PROXY_OVERRIDES).and_then(Value::as_str)
    {
        Some(text) => {
            let parsed: Value = serde_json::from_str(text)
                .map_err(|e| format!("invalid annotation {}={text:?}: {e}", annotations::PROXY_OVERRIDES))?;
            (list(&parsed, "/containers"), list(&parsed, "/initContainers"))
        }
        None => (Vec::new(), Vec::new()),
    };
    for c in &over_containers {
        if !containers.iter().any(|x| name_of(x) == name_of(c)) {
            containers.push(c.clone());
        }
    }
    for c in &over_init {
        if !init.iter().any(|x| name_of(x) == name_of(c)) {
            init.push(c.clone());
        }
    }

    let native_default = match cfg.native_sidecars {
        NativeSidecars::Enabled => true,
        NativeSidecars::Disabled => false,
        NativeSidecars::Auto => req.nodes_support_native_sidecars,
    };
    let native = match annotations.get(names::NATIVE_SIDECAR).and_then(Value::as_str).filter(|v| !v.is_empty()) {
        Some(v) => v != "false",
        None => native_default,
    };
    let user_proxy = containers.iter().chain(&init).find(|c| name_of(c) == names::CONTAINER_PROXY);
    let id = |key: &str| user_proxy.and_then(|p| at(p, &format!("/securityContext/{key}"))).and_then(Value::as_i64);
    let mut proxy_config = template::default_proxy_config(cfg);
    if let Some(text) = annotations.get(annotations::PROXY_CONFIG).and_then(Value::as_str) {
        let mut merged = Value::Object(proxy_config);
        merge::merge(&mut merged, &Value::Object(annotations::proxy_config(text)?));
        proxy_config = match merged {
            Value::Object(m) => m,
            _ => Map::new(),
        };
    }
    let mut cluster_id = req.cluster_id.unwrap_or(&cfg.cluster_id).to_owned();
    let mut network = req.network.unwrap_or(&cfg.network).to_owned();
    if cluster_id.is_empty() {
        cluster_id = cfg.cluster_id.clone();
    }
    if network.is_empty() {
        network = cfg.network.clone();
    }
    if let Some(n) = labels.get(annotations::TOPOLOGY_NETWORK).and_then(Value::as_str) {
        network = n.to_owned();
    }
    let ctx = template::Context {
        cfg,
        annotations: &annotations,
        labels: &labels,
        containers: &containers,
        workload,
        native,
        proxy_config,
        proxy_uid: id("runAsUser"),
        proxy_gid: id("runAsGroup"),
        service_account: s("serviceAccountName").and_then(Value::as_str),
        prebuilt,
        reads: None,
    };
    let hold = ctx.hold_configured();
    let rendered = templates
        .iter()
        .map(|t| ctx.render_template(*t, &cluster_id, &network))
        .reduce(template::Rendered::overlay)
        .unwrap_or_else(|| ctx.render(&cluster_id, &network));
    let is_proxy = |c: &Value| name_of(c) == names::CONTAINER_PROXY;
    let proxy_is_native = rendered.init_containers.iter().any(is_proxy);
    let proxy_is_regular = rendered.containers.iter().any(is_proxy);
    let security_context = rendered.security_context.clone();
    let names_of = |list: &[Value]| -> Vec<String> { list.iter().map(|c| name_of(c).to_owned()).collect() };
    let status = SidecarStatus {
        init_containers: names_of(&rendered.init_containers),
        containers: names_of(&rendered.containers),
        volumes: names_of(&rendered.volumes),
        image_pull_secrets: rendered.image_pull_secrets.clone(),
        revision: if cfg.revision.is_empty() { "default".into() } else { cfg.revision.clone() },
    };

    // Merge the template into the pod, as a strategic merge would.
    for (k, v) in &rendered.labels {
        labels.insert(k.clone(), json!(v));
    }
    for (k, v) in &rendered.annotations {
        annotations.insert(k.clone(), json!(v));
    }
    merge::merge_list(&mut init, rendered.init_containers, "name");
    merge::merge_list(&mut containers, rendered.containers, "name");
    let mut volumes = s_list("volumes").to_vec();
    merge::merge_list(&mut volumes, rendered.volumes, "name");
    let mut pull_secrets = s_list("imagePullSecrets").to_vec();
    let wanted: Vec<Value> = rendered.image_pull_secrets.iter().map(|s| json!({"name": s})).collect();
    merge::merge_list(&mut pull_secrets, wanted, "name");

    // Re-apply the user's own istio-proxy / istio-init fields on top of the template's.
    let mut overrides = Map::new();
    for (field, template_list, target, prev_names, recorded) in [
        ("containers", &status.containers, &mut containers, prev.as_ref().map(|s| &s.containers), &over_containers),
        ("initContainers", &status.init_containers, &mut init, prev.as_ref().map(|s| &s.init_containers), &over_init),
    ] {
        let mut applied = Vec::new();
        for name in template_list {
            let name = name.as_str();
            // On re-injection the pod's own istio-proxy is the previous injection's: only the recorded
            // overrides apply again (so that injecting twice equals injecting once).
            let reinjected = prev_names.is_some_and(|n| n.iter().any(|n| n == name));
            let found = recorded
                .iter()
                .chain(orig_containers.iter().filter(|_| !reinjected))
                .chain(orig_init.iter().filter(|_| !reinjected))
                .find(|c| name_of(c) == name)
                .cloned();
            let Some(mut overlay) = found else { continue };
            if overlay.get("image").and_then(Value::as_str) == Some("auto")
                && let Some(o) = overlay.as_object_mut()
            {
                o.remove("image");
            }
            if let Some(slot) = target.iter_mut().find(|c| name_of(c) == name) {
                merge::merge(slot, &overlay);
            }
            applied.push(go_container(&overlay));
        }
        if !applied.is_empty() {
            overrides.insert(field.into(), Value::Array(applied));
        }
    }
    if prev.is_none() && !overrides.is_empty() {
        annotations.insert(annotations::PROXY_OVERRIDES.into(), json!(Value::Object(overrides).to_string()));
    }
    // A user's istio-proxy in the other list moved to where the template put it.
    if proxy_is_native {
        containers.retain(|c| !is_proxy(c));
    } else if proxy_is_regular {
        init.retain(|c| !is_proxy(c));
    }

    // Post-processing, in Istio's order: cluster env, Prometheus merge, probe rewrite, metadata.
    let mut proxy_envs: Vec<(&str, &str)> = Vec::new();
    if !cluster_id.is_empty() {
        proxy_envs.push(("ISTIO_META_CLUSTER_ID", &cluster_id));
    }
    if !network.is_empty() {
        proxy_envs.push(("ISTIO_META_NETWORK", &network));
    }
    let mut sidecar_env: Vec<Value> = Vec::new();
    let merge_metrics = match annotations.get(names::ENABLE_METRICS_MERGE).and_then(Value::as_str) {
        Some(v) => parse_bool(v).unwrap_or(cfg.effective_prometheus_merge()),
        None => cfg.effective_prometheus_merge(),
    };
    if merge_metrics && prometheus::scrape(&annotations) && prometheus::port(&annotations) != Some(target_port.as_str())
    {
        if let Some(scrape) = prometheus::scrape_configuration(&annotations) {
            sidecar_env.push(json!({"name": ENV_PROMETHEUS, "value": scrape}));
        } else if let Some(old) = &old_prometheus {
            sidecar_env.push(json!({"name": ENV_PROMETHEUS, "value": old}));
        }
        prometheus::point_at_agent(&mut annotations, &target_port);
    }
    if probe::enabled(&annotations, cfg.rewrite_app_http_probe) {
        let status_port = annotations
            .get(names::STATUS_PORT)
            .and_then(Value::as_str)
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or(ports::AGENT_STATUS);
        let all: Vec<&Value> = init.iter().chain(&containers).collect();
        let probers = probe::app_probers(&all, status_port, &old_probers);
        if !probers.is_empty() {
            sidecar_env.push(json!({"name": ENV_PROBERS, "value": json!(probers).to_string()}));
        }
        for c in init.iter_mut().chain(containers.iter_mut()) {
            probe::rewrite_container(c, status_port);
        }
    }
    if let Some(proxy) = containers.iter_mut().chain(init.iter_mut()).find(|c| name_of(c) == names::CONTAINER_PROXY)
        && let Some(env) = proxy.get_mut("env").and_then(Value::as_array_mut)
    {
        if !proxy_envs.is_empty() {
            env.retain(|e| !proxy_envs.iter().any(|(k, _)| *k == name_of(e)));
            for (k, v) in &proxy_envs {
                env.push(json!({"name": k, "value": v}));
            }
        }
        env.extend(sidecar_env);
    }
    if !network.is_empty() {
        labels.insert(annotations::TOPOLOGY_NETWORK.into(), json!(network));
    }
    annotations.insert(names::SIDECAR_STATUS.into(), json!(status.to_annotation()));
    for (k, v) in &cfg.injected_annotations {
        annotations.insert(k.clone(), json!(v));
    }

    // Order: istio-proxy last (first when the app waits for it); native: init, proxy, then the rest.
    move_to(&mut containers, names::CONTAINER_PROXY, hold);
    if init.iter().any(|c| name_of(c) == names::CONTAINER_PROXY) {
        for name in [names::CONTAINER_PROXY, names::CONTAINER_VALIDATION, names::CONTAINER_INIT] {
            move_to(&mut init, name, true);
        }
    } else {
        for name in [names::CONTAINER_INIT, names::CONTAINER_VALIDATION] {
            move_to(&mut init, name, false);
        }
    }
    // Kubernetes always writes a container's resources; so does Istio's typed output.
    for c in containers.iter_mut().chain(init.iter_mut()) {
        if let Some(c) = c.as_object_mut()
            && !c.contains_key("resources")
        {
            c.insert("resources".into(), json!({}));
        }
    }

    let mut ops = patch::Ops::default();
    if pod.get("metadata").is_none() {
        ops.add("/metadata", json!({"labels": labels, "annotations": annotations}));
    } else {
        ops.map("/metadata/labels", m("labels"), labels);
        ops.map("/metadata/annotations", m("annotations"), annotations);
    }
    let ours = |c: &Value| {
        let n = name_of(c);
        !(n == names::CONTAINER_PROXY || n == names::CONTAINER_INIT || n == names::CONTAINER_VALIDATION)
    };
    ops.list("/spec/initContainers", s("initContainers"), init, &ours);
    ops.list("/spec/containers", s("containers"), containers, &ours);
    ops.list("/spec/volumes", s("volumes"), volumes, &|_| false);
    if let Some(more) = security_context {
        let mut merged = s("securityContext").cloned().unwrap_or_else(|| json!({}));
        merge::merge(&mut merged, &more);
        ops.set("/spec/securityContext", s("securityContext"), merged);
    }
    ops.list("/spec/imagePullSecrets", s("imagePullSecrets"), pull_secrets, &|_| false);
    Ok(ops.0)
}

/// Moves the container called `name` to the front or the back, keeping the others' order.
fn move_to(list: &mut Vec<Value>, name: &str, first: bool) {
    if let Some(i) = list.iter().position(|c| name_of(c) == name) {
        let c = list.remove(i);
        if first {
            list.insert(0, c);
        } else {
            list.push(c);
        }
    }
}

/// A container with its fields in Kubernetes' (Go) order and `resources` always present, as Istio
/// writes `proxy.istio.io/overrides`.
fn go_container(c: &Value) -> Value {
    const ORDER: [&str; 25] = [
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    ];
    const SECURITY: [&str; 12] = [
        "capabilities",
        "privileged",
        "seLinuxOptions",
        "windowsOptions",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "procMount",
        "seccompProfile",
        "appArmorProfile",
    ];
    let Some(fields) = c.as_object() else { return c.clone() };
    let ordered = |fields: &Map<String, Value>, order: &[&str]| -> Map<String, Value> {
        let mut out = Map::new();
        for key in order {
            if let Some(v) = fields.get(*key) {
                out.insert((*key).into(), v.clone());
            }
        }
        for (k, v) in fields {
            if !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    };
    let mut fields = fields.clone();
    fields.entry("resources").or_insert_with(|| json!({}));
    if let Some(Value::Object(sc)) = fields.get("securityContext") {
        let sc = ordered(sc, &SECURITY);
        fields.insert("securityContext".into(), Value::Object(sc));
    }
    Value::Object(ordered(&fields, &ORDER))
}

#[cfg(test)]
mod tests;

//! The injected pod and the JSON Patch that produces it, in the steps of Istio's injector: strip a
//! previous injection, restore the overrides it recorded, resolve the template's inputs, render the
//! templates, merge them into the pod, re-apply the user's own proxy fields, post-process (cluster env,
//! Prometheus merge, probe rewrite, metadata), order the containers and write the patch.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::template::{self, Context, Rendered, Template};
use super::{InjectConfig, InjectRequest, NativeSidecars, Workload, annotations, merge, patch, probe, prometheus};
use super::{at, env_value, list, name_of, parse_bool};
use crate::status::SidecarStatus;
use crate::{names, ports};

const ENV_PROMETHEUS: &str = "ISTIO_PROMETHEUS_ANNOTATIONS";
const ENV_PROBERS: &str = "ISTIO_KUBE_APP_PROBERS";

/// Computes the injected pod's parts and the operations that produce them.
pub(super) fn plan(
    pod: &Value,
    workload: &Workload,
    req: &InjectRequest,
    cfg: &InjectConfig,
    prebuilt: Option<&template::Prebuilt>,
) -> Result<Vec<json_patch::PatchOperation>, String> {
    let input = Input::new(pod);
    annotations::validate(input.annotations)?;
    let templates = Template::selected(input.annotations)?;
    let previous = Previous::read(&input)?;
    let recorded = Recorded::read(input.annotations)?;
    let mut pod_out = Output::stripped(&input, &previous);
    pod_out.restore(&recorded);

    let native = native_sidecar(&pod_out.annotations, cfg, req);
    let proxy_config = proxy_config(cfg, &pod_out.annotations)?;
    let (cluster_id, network) = cluster_and_network(req, cfg, &pod_out.labels);
    let user_proxy = pod_out.containers.iter().chain(&pod_out.init).find(|c| name_of(c) == names::CONTAINER_PROXY);
    let id = |key: &str| user_proxy.and_then(|p| at(p, &format!("/securityContext/{key}"))).and_then(Value::as_i64);
    let ctx = Context {
        cfg,
        annotations: &pod_out.annotations,
        labels: &pod_out.labels,
        containers: &pod_out.containers,
        workload,
        native,
        proxy_config,
        proxy_uid: id("runAsUser"),
        proxy_gid: id("runAsGroup"),
        service_account: input.spec("serviceAccountName").and_then(Value::as_str),
        prebuilt,
        reads: None,
    };
    let hold = ctx.hold_configured();
    let rendered = templates
        .iter()
        .map(|t| ctx.render_template(*t, &cluster_id, &network))
        .reduce(Rendered::overlay)
        .unwrap_or_else(|| ctx.render(&cluster_id, &network));
    let status = status_of(&rendered, cfg);

    let merged = pod_out.merge(rendered);
    pod_out.reapply_user_fields(&input, &status, previous.status.as_ref(), &recorded, &merged);
    pod_out.post_process(cfg, &previous, &cluster_id, &network);
    pod_out.annotations.insert(names::SIDECAR_STATUS.into(), json!(status.to_annotation()));
    for (k, v) in &cfg.injected_annotations {
        pod_out.annotations.insert(k.clone(), json!(v));
    }
    pod_out.order(hold);
    Ok(pod_out.patch(&input, merged.security_context))
}

/// The pod as the API server sent it.
struct Input<'a> {
    pod: &'a Value,
    annotations: &'a Map<String, Value>,
    containers: &'a [Value],
    init: &'a [Value],
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Input<'a> {
    fn new(pod: &'a Value) -> Input<'a> {
        let mut input = Input { pod, annotations: &EMPTY, containers: &[], init: &[] };
        input.annotations = input.meta("annotations").and_then(Value::as_object).unwrap_or(&EMPTY);
        input.containers = input.spec_list("containers");
        input.init = input.spec_list("initContainers");
        input
    }

    fn meta(&self, key: &str) -> Option<&'a Value> {
        self.pod.get("metadata").and_then(|m| m.get(key))
    }

    fn spec(&self, key: &str) -> Option<&'a Value> {
        self.pod.get("spec").and_then(|s| s.get(key))
    }

    fn spec_list(&self, key: &str) -> &'a [Value] {
        self.spec(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
    }
}

/// What a previous injection left that re-injection keeps: its status, and the probe and Prometheus
/// settings its `istio-proxy` carried (the app's own probes and scrape settings are gone by now).
struct Previous {
    status: Option<SidecarStatus>,
    probers: BTreeMap<String, Value>,
    prometheus: Option<String>,
}

impl Previous {
    fn read(input: &Input) -> Result<Previous, String> {
        let status = match input.annotations.get(names::SIDECAR_STATUS).and_then(Value::as_str) {
            Some(text) => Some(SidecarStatus::parse(text).map_err(|e| e.to_string())?),
            None => None,
        };
        let owned = |name: &str| status.as_ref().is_some_and(|s| s.owns_container(name));
        let old_proxy = input
            .containers
            .iter()
            .chain(input.init)
            .find(|c| name_of(c) == names::CONTAINER_PROXY && owned(names::CONTAINER_PROXY));
        let probers = old_proxy
            .and_then(|p| env_value(p, ENV_PROBERS))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        let prometheus = old_proxy.and_then(|p| env_value(p, ENV_PROMETHEUS)).map(str::to_owned);
        Ok(Previous { status, probers, prometheus })
    }
}

/// The user's own `istio-proxy` / `istio-init` fields that a previous injection recorded in
/// `proxy.istio.io/overrides`.
struct Recorded {
    containers: Vec<Value>,
    init: Vec<Value>,
}

impl Recorded {
    fn read(annotations: &Map<String, Value>) -> Result<Recorded, String> {
        let Some(text) = annotations.get(annotations::PROXY_OVERRIDES).and_then(Value::as_str) else {
            return Ok(Recorded { containers: Vec::new(), init: Vec::new() });
        };
        let parsed: Value = serde_json::from_str(text)
            .map_err(|e| format!("invalid annotation {}={text:?}: {e}", annotations::PROXY_OVERRIDES))?;
        Ok(Recorded { containers: list(&parsed, "/containers"), init: list(&parsed, "/initContainers") })
    }
}

/// Whether `istio-proxy` becomes a native sidecar: the pod's annotation, else the config.
fn native_sidecar(annotations: &Map<String, Value>, cfg: &InjectConfig, req: &InjectRequest) -> bool {
    let default = match cfg.native_sidecars {
        NativeSidecars::Enabled => true,
        NativeSidecars::Disabled => false,
        NativeSidecars::Auto => req.nodes_support_native_sidecars,
    };
    match annotations.get(names::NATIVE_SIDECAR).and_then(Value::as_str).filter(|v| !v.is_empty()) {
        Some(v) => v != "false",
        None => default,
    }
}

/// The pod's ProxyConfig: the config's, with `proxy.istio.io/config` merged over it.
fn proxy_config(cfg: &InjectConfig, annotations: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let defaults = template::default_proxy_config(cfg);
    let Some(text) = annotations.get(annotations::PROXY_CONFIG).and_then(Value::as_str) else {
        return Ok(defaults);
    };
    let mut merged = Value::Object(defaults);
    merge::merge(&mut merged, &Value::Object(annotations::proxy_config(text)?));
    Ok(match merged {
        Value::Object(m) => m,
        _ => Map::new(),
    })
}

/// The cluster id and network: the request path's, else the config's; the pod's
/// `topology.istio.io/network` label overrides the network.
fn cluster_and_network(req: &InjectRequest, cfg: &InjectConfig, labels: &Map<String, Value>) -> (String, String) {
    let pick = |from_path: Option<&str>, configured: &str| match from_path {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => configured.to_owned(),
    };
    let cluster_id = pick(req.cluster_id, &cfg.cluster_id);
    let mut network = pick(req.network, &cfg.network);
    if let Some(n) = labels.get(annotations::TOPOLOGY_NETWORK).and_then(Value::as_str) {
        network = n.to_owned();
    }
    (cluster_id, network)
}

/// The `sidecar.istio.io/status` of what was rendered.
fn status_of(rendered: &Rendered, cfg: &InjectConfig) -> SidecarStatus {
    let names_of = |list: &[Value]| -> Vec<String> { list.iter().map(|c| name_of(c).to_owned()).collect() };
    SidecarStatus {
        init_containers: names_of(&rendered.init_containers),
        containers: names_of(&rendered.containers),
        volumes: names_of(&rendered.volumes),
        image_pull_secrets: rendered.image_pull_secrets.clone(),
        revision: if cfg.revision.is_empty() { "default".into() } else { cfg.revision.clone() },
    }
}

/// The pod's parts as they are being built.
struct Output {
    annotations: Map<String, Value>,
    labels: Map<String, Value>,
    containers: Vec<Value>,
    init: Vec<Value>,
    volumes: Vec<Value>,
    pull_secrets: Vec<Value>,
}

fn is_proxy(c: &Value) -> bool {
    name_of(c) == names::CONTAINER_PROXY
}

impl Output {
    /// The pod without what a previous injection added (its containers, status annotation and the
    /// Prometheus annotations it pointed at the agent).
    fn stripped(input: &Input, previous: &Previous) -> Output {
        let prev = previous.status.as_ref();
        let strip = |list: &[Value], names: Option<&Vec<String>>| -> Vec<Value> {
            list.iter().filter(|c| !names.is_some_and(|n| n.iter().any(|n| n == name_of(c)))).cloned().collect()
        };
        let mut annotations = input.annotations.clone();
        if prev.is_some() {
            let agent_port = ports::AGENT_STATUS.to_string();
            if annotations.get(prometheus::PORT).and_then(Value::as_str) == Some(agent_port.as_str()) {
                for key in [prometheus::SCRAPE, prometheus::PORT, prometheus::PATH] {
                    annotations.remove(key);
                }
            }
            annotations.remove(names::SIDECAR_STATUS);
        }
        Output {
            annotations,
            labels: input.meta("labels").and_then(Value::as_object).cloned().unwrap_or_default(),
            containers: strip(input.containers, prev.map(|s| &s.containers)),
            init: strip(input.init, prev.map(|s| &s.init_containers)),
            volumes: input.spec_list("volumes").to_vec(),
            pull_secrets: input.spec_list("imagePullSecrets").to_vec(),
        }
    }

    /// The recorded overrides come back as containers, where the pod has none of that name.
    fn restore(&mut self, recorded: &Recorded) {
        for (list, more) in [(&mut self.containers, &recorded.containers), (&mut self.init, &recorded.init)] {
            for c in more {
                if !list.iter().any(|x| name_of(x) == name_of(c)) {
                    list.push(c.clone());
                }
            }
        }
    }

    /// Merges the rendered templates into the pod, as a strategic merge would.
    fn merge(&mut self, rendered: Rendered) -> Merged {
        let Rendered {
            labels,
            annotations,
            init_containers,
            containers,
            volumes,
            image_pull_secrets,
            security_context,
        } = rendered;
        for (k, v) in labels {
            self.labels.insert(k, json!(v));
        }
        for (k, v) in annotations {
            self.annotations.insert(k, json!(v));
        }
        let merged = Merged {
            proxy_is_native: init_containers.iter().any(is_proxy),
            proxy_is_regular: containers.iter().any(is_proxy),
            security_context,
        };
        merge::merge_list(&mut self.init, init_containers, "name");
        merge::merge_list(&mut self.containers, containers, "name");
        merge::merge_list(&mut self.volumes, volumes, "name");
        let wanted: Vec<Value> = image_pull_secrets.iter().map(|s| json!({"name": s})).collect();
        merge::merge_list(&mut self.pull_secrets, wanted, "name");
        merged
    }

    /// Re-applies the user's own `istio-proxy` / `istio-init` fields on top of the template's, records
    /// them in `proxy.istio.io/overrides` on a first injection, and leaves a user's `istio-proxy` only
    /// in the list the template put it in.
    fn reapply_user_fields(
        &mut self,
        input: &Input,
        status: &SidecarStatus,
        prev: Option<&SidecarStatus>,
        recorded: &Recorded,
        merged: &Merged,
    ) {
        let mut overrides = Map::new();
        for (field, template_list, target, prev_names, recorded) in [
            ("containers", &status.containers, &mut self.containers, prev.map(|s| &s.containers), &recorded.containers),
            (
                "initContainers",
                &status.init_containers,
                &mut self.init,
                prev.map(|s| &s.init_containers),
                &recorded.init,
            ),
        ] {
            let mut applied = Vec::new();
            for name in template_list {
                let name = name.as_str();
                // On re-injection the pod's own istio-proxy is the previous injection's: only the
                // recorded overrides apply again (so that injecting twice equals injecting once).
                let reinjected = prev_names.is_some_and(|n| n.iter().any(|n| n == name));
                let found = recorded
                    .iter()
                    .chain(input.containers.iter().filter(|_| !reinjected))
                    .chain(input.init.iter().filter(|_| !reinjected))
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
            self.annotations.insert(annotations::PROXY_OVERRIDES.into(), json!(Value::Object(overrides).to_string()));
        }
        if merged.proxy_is_native {
            self.containers.retain(|c| !is_proxy(c));
        } else if merged.proxy_is_regular {
            self.init.retain(|c| !is_proxy(c));
        }
    }

    /// Istio's post-processing, in its order: the cluster env, the Prometheus merge, the probe
    /// rewrite, the network label.
    fn post_process(&mut self, cfg: &InjectConfig, previous: &Previous, cluster_id: &str, network: &str) {
        let agent_port = ports::AGENT_STATUS.to_string();
        let mut proxy_envs: Vec<(&str, &str)> = Vec::new();
        if !cluster_id.is_empty() {
            proxy_envs.push(("ISTIO_META_CLUSTER_ID", cluster_id));
        }
        if !network.is_empty() {
            proxy_envs.push(("ISTIO_META_NETWORK", network));
        }
        let mut sidecar_env: Vec<Value> = Vec::new();
        let annotations = &mut self.annotations;
        let merge_metrics = match annotations.get(names::ENABLE_METRICS_MERGE).and_then(Value::as_str) {
            Some(v) => parse_bool(v).unwrap_or(cfg.effective_prometheus_merge()),
            None => cfg.effective_prometheus_merge(),
        };
        if merge_metrics
            && prometheus::scrape(annotations)
            && prometheus::port(annotations) != Some(agent_port.as_str())
        {
            if let Some(scrape) = prometheus::scrape_configuration(annotations) {
                sidecar_env.push(json!({"name": ENV_PROMETHEUS, "value": scrape}));
            } else if let Some(old) = &previous.prometheus {
                sidecar_env.push(json!({"name": ENV_PROMETHEUS, "value": old}));
            }
            prometheus::point_at_agent(annotations, &agent_port);
        }
        if probe::enabled(annotations, cfg.rewrite_app_http_probe) {
            let status_port = annotations
                .get(names::STATUS_PORT)
                .and_then(Value::as_str)
                .and_then(|p| p.trim().parse::<u16>().ok())
                .unwrap_or(ports::AGENT_STATUS);
            let all: Vec<&Value> = self.init.iter().chain(&self.containers).collect();
            let probers = probe::app_probers(&all, status_port, &previous.probers);
            if !probers.is_empty() {
                sidecar_env.push(json!({"name": ENV_PROBERS, "value": json!(probers).to_string()}));
            }
            for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
                probe::rewrite_container(c, status_port);
            }
        }
        if let Some(proxy) = self.containers.iter_mut().chain(self.init.iter_mut()).find(|c| is_proxy(c))
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
            self.labels.insert(annotations::TOPOLOGY_NETWORK.into(), json!(network));
        }
    }

    /// Orders the containers as Istio does: `istio-proxy` last (first when the app waits for it); with
    /// a native sidecar the init list starts with the proxy, validation and init containers. Every
    /// container gets a `resources`, as Kubernetes (and Istio's typed output) writes it.
    fn order(&mut self, hold: bool) {
        move_to(&mut self.containers, names::CONTAINER_PROXY, hold);
        if self.init.iter().any(is_proxy) {
            for name in [names::CONTAINER_PROXY, names::CONTAINER_VALIDATION, names::CONTAINER_INIT] {
                move_to(&mut self.init, name, true);
            }
        } else {
            for name in [names::CONTAINER_INIT, names::CONTAINER_VALIDATION] {
                move_to(&mut self.init, name, false);
            }
        }
        for c in self.containers.iter_mut().chain(self.init.iter_mut()) {
            if let Some(c) = c.as_object_mut()
                && !c.contains_key("resources")
            {
                c.insert("resources".into(), json!({}));
            }
        }
    }

    /// The minimal operations that turn the input pod into this one.
    fn patch(self, input: &Input, security_context: Option<Value>) -> Vec<json_patch::PatchOperation> {
        let mut ops = patch::Ops::default();
        if input.pod.get("metadata").is_none() {
            ops.add("/metadata", json!({"labels": self.labels, "annotations": self.annotations}));
        } else {
            ops.map("/metadata/labels", input.meta("labels"), self.labels);
            ops.map("/metadata/annotations", input.meta("annotations"), self.annotations);
        }
        let ours = |c: &Value| {
            let n = name_of(c);
            !(n == names::CONTAINER_PROXY || n == names::CONTAINER_INIT || n == names::CONTAINER_VALIDATION)
        };
        ops.list("/spec/initContainers", input.spec("initContainers"), self.init, &ours);
        ops.list("/spec/containers", input.spec("containers"), self.containers, &ours);
        ops.list("/spec/volumes", input.spec("volumes"), self.volumes, &|_| false);
        if let Some(more) = security_context {
            let mut merged = input.spec("securityContext").cloned().unwrap_or_else(|| json!({}));
            merge::merge(&mut merged, &more);
            ops.set("/spec/securityContext", input.spec("securityContext"), merged);
        }
        ops.list("/spec/imagePullSecrets", input.spec("imagePullSecrets"), self.pull_secrets, &|_| false);
        ops.0
    }
}

/// What merging the rendered templates decided beyond the pod's lists.
struct Merged {
    /// The template put `istio-proxy` among the init containers (a native sidecar).
    proxy_is_native: bool,
    /// The template put `istio-proxy` among the regular containers.
    proxy_is_regular: bool,
    /// The pod `securityContext` fields to merge in.
    security_context: Option<Value>,
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

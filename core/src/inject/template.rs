//! The sidecar template: what Istio's `sidecar-injector` template renders for a pod (the init
//! container, `istio-proxy`, volumes, labels and annotations), built directly as JSON values.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::annotations::{BOOTSTRAP_OVERRIDE, CAP_NET_BIND_SERVICE, USER_VOLUME, USER_VOLUME_MOUNT};
use super::config::InjectConfig;
use super::owner::Workload;
use super::quantity;
use crate::capture::{CaptureConfig, CidrList, InterceptionMode, PortList, split_list};
use crate::{names, ports};

mod gateway;
mod grpc;

/// Istio's stock injection templates, chosen by the pod's `inject.istio.io/templates` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `sidecar`: the init container and `istio-proxy` next to the app (the default).
    Sidecar,
    /// `gateway`: the pod's own `istio-proxy` runs as a router; no init container.
    Gateway,
    /// `grpc-agent`: proxyless gRPC with the agent (no Envoy) for certificates and xDS.
    GrpcAgent,
    /// `grpc-simple`: proxyless gRPC with a bootstrap file written by an init container.
    GrpcSimple,
}

impl Template {
    /// Every template with its name, sorted by name.
    pub const ALL: [(&'static str, Template); 4] = [
        ("gateway", Template::Gateway),
        ("grpc-agent", Template::GrpcAgent),
        ("grpc-simple", Template::GrpcSimple),
        ("sidecar", Template::Sidecar),
    ];

    /// The template called `name`.
    pub fn from_name(name: &str) -> Option<Template> {
        Template::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The templates a pod asks for: the `inject.istio.io/templates` comma list (each name trimmed,
    /// in order), else `sidecar`. An unknown name is an error naming it and the known ones.
    pub fn selected(annotations: &Map<String, Value>) -> Result<Vec<Template>, String> {
        let Some(list) = annotations.get(names::INJECT_TEMPLATES).and_then(Value::as_str) else {
            return Ok(vec![Template::Sidecar]);
        };
        list.split(',')
            .map(str::trim)
            .map(|name| {
                Template::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = Template::ALL.iter().map(|(n, _)| *n).collect();
                    format!(
                        "invalid annotation {}={list:?}: requested template {name:?} not found; have {}",
                        names::INJECT_TEMPLATES,
                        known.join(", ")
                    )
                })
            })
            .collect()
    }
}

/// Everything the template reads, resolved from the pod, its annotations and the config.
pub struct Context<'a> {
    /// The settings.
    pub cfg: &'a InjectConfig,
    /// The (stripped) pod's annotations.
    pub annotations: &'a Map<String, Value>,
    /// The (stripped) pod's labels.
    pub labels: &'a Map<String, Value>,
    /// The (stripped) pod's regular containers, including a user-supplied `istio-proxy`.
    pub containers: &'a [Value],
    /// The owning workload.
    pub workload: &'a Workload,
    /// `istio-proxy` is a native sidecar.
    pub native: bool,
    /// The merged ProxyConfig (config defaults and `proxy.istio.io/config`).
    pub proxy_config: Map<String, Value>,
    /// The UID and GID from a user-supplied `istio-proxy`'s securityContext.
    pub proxy_uid: Option<i64>,
    /// The pod's `spec.serviceAccountName`.
    pub service_account: Option<&'a str>,
    /// See `proxy_uid`.
    pub proxy_gid: Option<i64>,
    /// The parts rendered once for this config, reused where this pod's inputs are the defaults.
    pub prebuilt: Option<&'a Prebuilt>,
    /// While prebuilding: the annotation keys read so far.
    pub reads: Option<&'a RefCell<Vec<String>>>,
}

/// A part of the template rendered for the default inputs, with the annotation keys it read.
pub struct Part<T> {
    value: T,
    keys: Vec<String>,
}

/// The parts of the template rendered once per config ([`super::Injector`]).
///
/// Each part was rendered with no annotations and default inputs, recording every annotation key it
/// looked up. It is reused for a pod that has none of those keys and whose other inputs the part reads
/// (listed at each use) are the defaults too: the rendering code then takes the same path, reads the
/// same values and produces the same part. Tests check both paths against each other.
pub struct Prebuilt {
    /// The ProxyConfig a pod without `proxy.istio.io/config` gets.
    proxy_config: Map<String, Value>,
    /// The `PROXY_CONFIG` env value for that ProxyConfig.
    proxy_config_env: String,
    /// The proxy metadata env entries for that ProxyConfig.
    metadata_env: Vec<Value>,
    /// The proxy's first env entries, which depend on the config alone.
    env_head: Vec<Value>,
    resources: Part<Value>,
    init_container: Part<Value>,
    /// `istio-proxy` with a null `env` (filled in per pod), as a regular and as a native sidecar.
    proxy: Part<Value>,
    native_proxy: Part<Value>,
    volumes: Part<Vec<Value>>,
}

impl Prebuilt {
    /// Renders the config-only parts of the template.
    pub fn new(cfg: &InjectConfig) -> Prebuilt {
        let empty = Map::new();
        let workload = Workload::default();
        let reads = RefCell::new(Vec::new());
        let proxy_config = default_proxy_config(cfg);
        let ctx = |native: bool| Context {
            cfg,
            annotations: &empty,
            labels: &empty,
            containers: &[],
            workload: &workload,
            native,
            proxy_config: proxy_config.clone(),
            proxy_uid: None,
            proxy_gid: None,
            service_account: None,
            prebuilt: None,
            reads: Some(&reads),
        };
        fn part<T>(reads: &RefCell<Vec<String>>, render: impl FnOnce() -> T) -> Part<T> {
            reads.borrow_mut().clear();
            let value = render();
            let mut keys = std::mem::take(&mut *reads.borrow_mut());
            keys.sort();
            keys.dedup();
            Part { value, keys }
        }
        let (regular, native) = (ctx(false), ctx(true));
        Prebuilt {
            proxy_config_env: regular.proxy_config_env(),
            metadata_env: regular.metadata_env(),
            env_head: regular.env_head(),
            resources: part(&reads, || regular.resources()),
            init_container: part(&reads, || regular.init_container()),
            proxy: part(&reads, || regular.proxy_container_with(Value::Null)),
            native_proxy: part(&reads, || native.proxy_container_with(Value::Null)),
            volumes: part(&reads, || regular.volumes()),
            proxy_config,
        }
    }
}

/// The ProxyConfig of a pod without `proxy.istio.io/config` ([`InjectConfig::default_proxy_config`]).
pub fn default_proxy_config(cfg: &InjectConfig) -> Map<String, Value> {
    cfg.default_proxy_config()
}

/// What the template adds to a pod.
pub struct Rendered {
    /// Labels to set.
    pub labels: Vec<(String, String)>,
    /// Annotations to set.
    pub annotations: Vec<(String, String)>,
    /// Init containers, in template order.
    pub init_containers: Vec<Value>,
    /// Regular containers, in template order.
    pub containers: Vec<Value>,
    /// Volumes, in template order.
    pub volumes: Vec<Value>,
    /// Image pull secrets (names).
    pub image_pull_secrets: Vec<String>,
    /// The pod's `spec.securityContext` fields to merge in, if any.
    pub security_context: Option<Value>,
}

impl Rendered {
    /// Overlays `next` (a later template) on this one, as Istio merges its templates' output: a
    /// strategic merge where the later template's values win and keyed lists merge by key.
    pub fn overlay(mut self, next: Rendered) -> Rendered {
        let Rendered {
            labels,
            annotations,
            init_containers,
            containers,
            volumes,
            image_pull_secrets,
            security_context,
        } = next;
        for (list, more) in [(&mut self.labels, labels), (&mut self.annotations, annotations)] {
            for (k, v) in more {
                match list.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => list.push((k, v)),
                }
            }
        }
        super::merge::merge_list(&mut self.init_containers, init_containers, "name");
        super::merge::merge_list(&mut self.containers, containers, "name");
        super::merge::merge_list(&mut self.volumes, volumes, "name");
        let mut secrets = std::mem::take(&mut self.image_pull_secrets);
        secrets.retain(|s| !image_pull_secrets.contains(s));
        self.image_pull_secrets = image_pull_secrets;
        self.image_pull_secrets.extend(secrets);
        self.security_context = match (self.security_context, security_context) {
            (Some(mut sc), Some(more)) => {
                super::merge::merge(&mut sc, &more);
                Some(sc)
            }
            (sc, more) => more.or(sc),
        };
        self
    }
}

impl Context<'_> {
    fn ann(&self, key: &str) -> Option<&str> {
        if let Some(reads) = self.reads {
            reads.borrow_mut().push(key.to_owned());
        }
        self.annotations.get(key).and_then(Value::as_str)
    }

    /// The prebuilt part when none of the annotations it read is set on this pod.
    fn reuse<'p, T>(&self, part: impl FnOnce(&'p Prebuilt) -> &'p Part<T>) -> Option<&'p T>
    where
        Self: 'p,
    {
        let part = part(self.prebuilt?);
        part.keys.iter().all(|k| !self.annotations.contains_key(k)).then_some(&part.value)
    }

    /// Whether this pod's proxy inputs are the defaults the prebuilt parts were rendered with: the
    /// ProxyConfig (same members in the same order) and no user-set proxy UID or GID.
    fn default_proxy_inputs(&self) -> bool {
        self.proxy_uid.is_none()
            && self.proxy_gid.is_none()
            && self.prebuilt.is_some_and(|p| p.proxy_config.iter().eq(self.proxy_config.iter()))
    }

    /// Istio's `annotation` template function: the annotation when present (even empty), else the default.
    fn annotation(&self, key: &str, default: &str) -> String {
        self.ann(key).unwrap_or(default).to_owned()
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str).filter(|v| !v.is_empty())
    }

    /// The interception mode: annotation, then `proxy.istio.io/config`, then the config.
    pub fn interception_mode(&self) -> &str {
        if let Some(mode) = self.ann(names::INTERCEPTION_MODE) {
            return mode;
        }
        self.proxy_config_interception_mode()
    }

    /// The ProxyConfig's interception mode (`proxy.istio.io/config`, then the config), which the
    /// templates other than `sidecar` read.
    fn proxy_config_interception_mode(&self) -> &str {
        match self.proxy_config.get("interceptionMode").and_then(Value::as_str) {
            Some(mode) => mode,
            None => match self.cfg.interception_mode {
                InterceptionMode::Redirect => "REDIRECT",
                InterceptionMode::Tproxy => "TPROXY",
                InterceptionMode::None => "NONE",
            },
        }
    }

    fn tproxy(&self) -> bool {
        self.interception_mode() == "TPROXY"
    }

    fn cap_net_bind_service(&self) -> bool {
        match self.ann(CAP_NET_BIND_SERVICE) {
            Some(v) => v == "true",
            None => self.cfg.proxy.cap_net_bind_service,
        }
    }

    /// Whether the app waits for the proxy (only for a regular-container proxy).
    pub fn hold_application(&self) -> bool {
        self.hold_configured() && !self.native
    }

    /// Whether the ProxyConfig or the config asks the app to wait for the proxy; a regular-container
    /// proxy then goes first, whichever template rendered it.
    pub fn hold_configured(&self) -> bool {
        let from_proxy_config = self.proxy_config.get("holdApplicationUntilProxyStarts").and_then(Value::as_bool);
        from_proxy_config == Some(true) || self.cfg.hold_application_until_proxy_starts
    }

    /// The status port as the template sees it (annotation, then config).
    pub fn status_port(&self) -> String {
        self.annotation(names::STATUS_PORT, &self.cfg.proxy.status_port.to_string())
    }

    fn proxy_metadata(&self) -> Cow<'_, BTreeMap<String, String>> {
        let Some(Value::Object(meta)) = self.proxy_config.get("proxyMetadata") else {
            return Cow::Borrowed(&self.cfg.proxy_metadata);
        };
        let mut out = self.cfg.proxy_metadata.clone();
        for (k, v) in meta {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), v);
        }
        Cow::Owned(out)
    }

    /// The app containers: every regular container but `istio-proxy`.
    pub fn app_containers(&self) -> Vec<&str> {
        self.containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .filter(|n| *n != names::CONTAINER_PROXY)
            .collect()
    }

    fn proxy_image(&self) -> String {
        match self.ann(names::PROXY_IMAGE) {
            Some(image) if image.contains('/') => image.to_owned(),
            Some(name) => with_name(&self.cfg.proxy.image, name),
            None => self.cfg.proxy.image.clone(),
        }
    }

    fn init_image(&self) -> String {
        if let Some(image) = self.ann(names::PROXY_INIT_IMAGE) {
            return image.to_owned();
        }
        match self.ann(names::PROXY_IMAGE) {
            Some(image) if image.contains('/') => image.to_owned(),
            _ => self.cfg.proxy_init.image.clone(),
        }
    }

    fn uid(&self) -> String {
        self.proxy_uid.map_or_else(|| ports::PROXY_UID.to_string(), |u| u.to_string())
    }

    fn gid(&self) -> String {
        self.proxy_gid.map_or_else(|| ports::PROXY_GID.to_string(), |g| g.to_string())
    }

    fn resources(&self) -> Value {
        if let Some(prebuilt) = self.reuse(|p| &p.resources) {
            return prebuilt.clone();
        }
        let requests: Vec<(&str, &str)> = [("cpu", names::PROXY_CPU), ("memory", names::PROXY_MEMORY)]
            .into_iter()
            .filter_map(|(k, a)| self.ann(a).map(|v| (k, v)))
            .collect();
        let limits: Vec<(&str, &str)> = [("cpu", names::PROXY_CPU_LIMIT), ("memory", names::PROXY_MEMORY_LIMIT)]
            .into_iter()
            .filter_map(|(k, a)| self.ann(a).map(|v| (k, v)))
            .collect();
        let quantities = |list: Vec<(&str, &str)>| -> Value {
            Value::Object(list.into_iter().map(|(k, v)| (k.to_owned(), Value::String(canonical(v)))).collect())
        };
        let mut out = Map::new();
        if !requests.is_empty() || !limits.is_empty() {
            if !requests.is_empty() {
                out.insert("requests".into(), quantities(requests));
            }
            if !limits.is_empty() {
                out.insert("limits".into(), quantities(limits));
            }
        } else {
            let res = &self.cfg.proxy.resources;
            let map = |m: &BTreeMap<String, String>| -> Value {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(canonical(v)))).collect())
            };
            if !res.limits.is_empty() {
                out.insert("limits".into(), map(&res.limits));
            }
            if !res.requests.is_empty() {
                out.insert("requests".into(), map(&res.requests));
            }
        }
        Value::Object(out)
    }

    fn exclude_inbound_ports(&self) -> String {
        exclude_inbound_port(
            &self.status_port(),
            &self.annotation(names::EXCLUDE_INBOUND_PORTS, &self.cfg.exclude_inbound_ports),
        )
    }

    fn include_outbound_ports(&self) -> Option<String> {
        (self.ann(names::INCLUDE_OUTBOUND_PORTS).is_some() || !self.cfg.include_outbound_ports.is_empty())
            .then(|| self.annotation(names::INCLUDE_OUTBOUND_PORTS, &self.cfg.include_outbound_ports))
    }

    fn exclude_outbound_ports(&self) -> Option<String> {
        (self.ann(names::EXCLUDE_OUTBOUND_PORTS).is_some() || !self.cfg.exclude_outbound_ports.is_empty())
            .then(|| self.annotation(names::EXCLUDE_OUTBOUND_PORTS, &self.cfg.exclude_outbound_ports))
    }

    fn virtual_interfaces(&self) -> Option<String> {
        self.ann(names::REROUTE_VIRTUAL_INTERFACES).or_else(|| self.ann(names::KUBEVIRT_INTERFACES)).map(str::to_owned)
    }

    fn agent_log_level(&self) -> String {
        self.annotation(names::AGENT_LOG_LEVEL, &self.cfg.log_level)
    }

    /// The `istio-iptables` arguments, rendered with [`CaptureConfig`].
    fn init_args(&self) -> Vec<Value> {
        let cfg = self.cfg;
        let lenient_ports = |v: &str| v.parse::<PortList>().unwrap_or(PortList::List(Vec::new()));
        let lenient_cidrs = |v: &str| v.parse::<CidrList>().unwrap_or(CidrList::List(Vec::new()));
        let mode = self.interception_mode();
        let uid: Option<u32> = if self.tproxy() { Some(ports::PROXY_UID) } else { self.uid().parse().ok() };
        let mut exclude = PortList::List(ports::DEFAULT_EXCLUDED_INBOUND.to_vec());
        if let (PortList::List(list), PortList::List(more)) =
            (&mut exclude, lenient_ports(&self.exclude_inbound_ports()))
        {
            list.extend(more);
        }
        let capture = CaptureConfig {
            proxy_port: Some(ports::OUTBOUND_CAPTURE),
            inbound_capture_port: Some(ports::INBOUND_CAPTURE),
            proxy_uid: uid.map(|u| vec![u]),
            interception_mode: mode.parse::<InterceptionMode>().ok(),
            outbound_ip_ranges_include: Some(lenient_cidrs(
                &self.annotation(names::INCLUDE_OUTBOUND_IP_RANGES, &cfg.include_ip_ranges),
            )),
            outbound_ip_ranges_exclude: Some(lenient_cidrs(
                &self.annotation(names::EXCLUDE_OUTBOUND_IP_RANGES, &cfg.exclude_ip_ranges),
            )),
            inbound_ports_include: Some(lenient_ports(
                &self.annotation(names::INCLUDE_INBOUND_PORTS, &cfg.include_inbound_ports),
            )),
            inbound_ports_exclude: Some(exclude),
            outbound_ports_include: self.include_outbound_ports().map(|v| lenient_ports(&v)),
            outbound_ports_exclude: self.exclude_outbound_ports().map(|v| lenient_ports(&v)),
            kube_virt_interfaces: self.virtual_interfaces().map(|v| split_list(&v)),
            exclude_interfaces: self.ann(names::EXCLUDE_INTERFACES).map(split_list),
            log_output_level: Some(self.agent_log_level()),
            log_as_json: cfg.log_as_json,
            run_validation: cfg.cni.enabled,
            skip_rule_apply: cfg.cni.enabled,
            force_apply: !cfg.cni.enabled && cfg.proxy_init.force_apply_iptables,
            native_nftables: cfg.native_nftables,
            ..CaptureConfig::default()
        };
        let mut args = vec!["istio-iptables".to_owned()];
        args.extend(capture.to_args());
        args.into_iter().map(Value::String).collect()
    }

    fn metadata_env(&self) -> Vec<Value> {
        if self.default_proxy_inputs()
            && let Some(p) = self.prebuilt
        {
            return p.metadata_env.clone();
        }
        self.proxy_metadata().iter().map(|(k, v)| json!({"name": k, "value": v})).collect()
    }

    fn init_container(&self) -> Value {
        if self.default_proxy_inputs()
            && let Some(prebuilt) = self.reuse(|p| &p.init_container)
        {
            return prebuilt.clone();
        }
        let cfg = self.cfg;
        let cni = cfg.cni.enabled;
        let mut c = Map::new();
        let name = if cni { names::CONTAINER_VALIDATION } else { names::CONTAINER_INIT };
        c.insert("name".into(), json!(name));
        c.insert("image".into(), json!(self.init_image()));
        c.insert("args".into(), Value::Array(self.init_args()));
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        let env = self.metadata_env();
        if !env.is_empty() {
            c.insert("env".into(), Value::Array(env));
        }
        c.insert("resources".into(), self.resources());
        let privileged = cfg.proxy.privileged;
        let mut sc = Map::new();
        sc.insert("allowPrivilegeEscalation".into(), json!(privileged));
        sc.insert("privileged".into(), json!(privileged));
        if cni {
            sc.insert("capabilities".into(), json!({"drop": ["ALL"]}));
            let (uid, gid) = if self.tproxy() { ("1337".into(), "1337".into()) } else { (self.uid(), self.gid()) };
            sc.insert("readOnlyRootFilesystem".into(), json!(true));
            sc.insert("runAsGroup".into(), number(&gid));
            sc.insert("runAsUser".into(), number(&uid));
            sc.insert("runAsNonRoot".into(), json!(true));
        } else {
            sc.insert("capabilities".into(), json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}));
            sc.insert("readOnlyRootFilesystem".into(), json!(false));
            sc.insert("runAsGroup".into(), json!(0));
            sc.insert("runAsNonRoot".into(), json!(false));
            sc.insert("runAsUser".into(), json!(0));
        }
        c.insert("securityContext".into(), Value::Object(sc));
        Value::Object(c)
    }

    fn pod_ports(&self) -> String {
        let mut out = String::from("[");
        let mut first = true;
        for port in self.containers.iter().filter_map(|c| c.get("ports").and_then(Value::as_array)).flatten() {
            let Some(port) = port.as_object() else { continue };
            let mut p = Map::new();
            for key in ["name", "hostPort", "containerPort", "protocol", "hostIP"] {
                match port.get(key) {
                    Some(Value::String(s)) if s.is_empty() => {}
                    Some(Value::Number(n)) if n.as_i64() == Some(0) && key != "containerPort" => {}
                    Some(v) if !v.is_null() => {
                        p.insert(key.into(), v.clone());
                    }
                    _ if key == "containerPort" => {
                        p.insert(key.into(), json!(0));
                    }
                    _ => {}
                }
            }
            out.push_str("\n    ");
            if !first {
                out.push(',');
            }
            out.push_str(&Value::Object(p).to_string());
            first = false;
        }
        out.push_str("\n]");
        out
    }

    /// The proxy's first env entries: they depend on the config alone.
    fn env_head(&self) -> Vec<Value> {
        if let Some(p) = self.prebuilt {
            return p.env_head.clone();
        }
        let cfg = self.cfg;
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let ca_addr = if cfg.ca_address.is_empty() {
            let rev = if cfg.revision.is_empty() { String::new() } else { format!("-{}", cfg.revision) };
            format!("istiod{rev}.{}.svc:15012", cfg.istio_namespace)
        } else {
            cfg.ca_address.clone()
        };
        vec![
            value("PILOT_CERT_PROVIDER", &cfg.pilot_cert_provider),
            value("CA_ADDR", &ca_addr),
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("INSTANCE_IP", "status.podIP"),
            field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            field("HOST_IP", "status.hostIP"),
            resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        ]
    }

    /// The `PROXY_CONFIG` env value: the merged ProxyConfig as JSON.
    fn proxy_config_env(&self) -> String {
        if self.default_proxy_inputs()
            && let Some(p) = self.prebuilt
        {
            return p.proxy_config_env.clone();
        }
        format!("{}\n", Value::Object(self.proxy_config.clone()))
    }

    fn proxy_env(&self, cluster_id: &str, network: &str) -> Vec<Value> {
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let mut env = self.env_head();
        env.reserve(16);
        env.extend([
            value("PROXY_CONFIG", &self.proxy_config_env()),
            value("ISTIO_META_POD_PORTS", &self.pod_ports()),
            value("ISTIO_META_APP_CONTAINERS", &self.app_containers().join(",")),
            resource_env("GOMEMLIMIT", "limits.memory"),
            value("ISTIO_META_CLUSTER_ID", if cluster_id.is_empty() { "Kubernetes" } else { cluster_id }),
            field("ISTIO_META_NODE_NAME", "spec.nodeName"),
            value("ISTIO_META_INTERCEPTION_MODE", self.interception_mode()),
        ]);
        if !network.is_empty() {
            env.push(value("ISTIO_META_NETWORK", network));
        }
        let workload_name = self.label(super::annotations::WORKLOAD_NAME).unwrap_or(&self.workload.name);
        if !workload_name.is_empty() {
            env.push(value("ISTIO_META_WORKLOAD_NAME", workload_name));
        }
        if let Some(owner) = self.workload.owner_uri() {
            env.push(value("ISTIO_META_OWNER", &owner));
        }
        if self.ann(BOOTSTRAP_OVERRIDE).is_some() {
            env.push(value("ISTIO_BOOTSTRAP_OVERRIDE", "/etc/istio/custom-bootstrap/custom_bootstrap.json"));
        }
        self.push_mesh_env(&mut env);
        env.extend(self.metadata_env());
        env
    }

    /// `ISTIO_META_MESH_ID` (the mesh id, else the trust domain) and `TRUST_DOMAIN`.
    fn push_mesh_env(&self, env: &mut Vec<Value>) {
        let cfg = self.cfg;
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let trust_domain = cfg.effective_trust_domain();
        if !cfg.mesh_id.is_empty() {
            env.push(value("ISTIO_META_MESH_ID", &cfg.mesh_id));
        } else if !trust_domain.is_empty() {
            env.push(value("ISTIO_META_MESH_ID", trust_domain));
        }
        if !trust_domain.is_empty() {
            env.push(value("TRUST_DOMAIN", trust_domain));
        }
    }

    /// The `--domain` and log level arguments every proxy gets after its mode (`sidecar`, `router`).
    fn proxy_args(&self, mode: &str) -> Vec<Value> {
        let cfg = self.cfg;
        let mut args = vec![
            json!("proxy"),
            json!(mode),
            json!("--domain"),
            json!(format!("$(POD_NAMESPACE).svc.{}", cfg.cluster_domain)),
            json!(format!("--proxyLogLevel={}", self.annotation(names::LOG_LEVEL, &cfg.proxy.log_level))),
            json!(format!(
                "--proxyComponentLogLevel={}",
                self.annotation(names::COMPONENT_LOG_LEVEL, &cfg.proxy.component_log_level)
            )),
            json!(format!("--log_output_level={}", self.agent_log_level())),
        ];
        if cfg.log_as_json {
            args.push(json!("--log_as_json"));
        }
        args
    }

    fn proxy_container(&self, cluster_id: &str, network: &str) -> Value {
        let env = Value::Array(self.proxy_env(cluster_id, network));
        if self.default_proxy_inputs()
            && let Some(prebuilt) = self.reuse(|p| if self.native { &p.native_proxy } else { &p.proxy })
        {
            let mut c = prebuilt.clone();
            if let Some(slot) = c.get_mut("env") {
                *slot = env;
            }
            return c;
        }
        self.proxy_container_with(env)
    }

    /// The `istio-proxy` container with the given env (a placeholder while prebuilding).
    fn proxy_container_with(&self, env: Value) -> Value {
        let cfg = self.cfg;
        let status_port = self.status_port();
        let mut c = Map::new();
        c.insert("name".into(), json!(names::CONTAINER_PROXY));
        c.insert("image".into(), json!(self.proxy_image()));
        if self.native {
            c.insert("restartPolicy".into(), json!("Always"));
        }
        c.insert(
            "ports".into(),
            json!([{"containerPort": ports::ENVOY_PROMETHEUS, "protocol": "TCP", "name": "http-envoy-prom"}]),
        );
        c.insert("args".into(), Value::Array(self.proxy_args("sidecar")));
        if self.hold_application() {
            c.insert("lifecycle".into(), json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}));
        } else if self.native {
            c.insert(
                "lifecycle".into(),
                json!({"preStop": {"exec": {"command":
                    ["pilot-agent", "request", format!("--debug-port={status_port}"), "POST", "drain"]}}}),
            );
        }
        c.insert("env".into(), env);
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        if status_port != "0" {
            let ready = json!({"path": "/healthz/ready", "port": ports::HEALTH});
            if cfg.proxy.startup_probe.enabled {
                let mut probe = Map::new();
                probe.insert("httpGet".into(), ready.clone());
                probe.insert("periodSeconds".into(), json!(1));
                probe.insert("timeoutSeconds".into(), json!(3));
                insert_nonzero(&mut probe, "failureThreshold", &cfg.proxy.startup_probe.failure_threshold.to_string());
                c.insert("startupProbe".into(), Value::Object(probe));
            }
            let mut probe = Map::new();
            probe.insert("httpGet".into(), ready);
            let p = &cfg.proxy;
            insert_nonzero(
                &mut probe,
                "initialDelaySeconds",
                &self.annotation(names::READINESS_INITIAL_DELAY, &p.readiness_initial_delay_seconds.to_string()),
            );
            insert_nonzero(
                &mut probe,
                "periodSeconds",
                &self.annotation(names::READINESS_PERIOD, &p.readiness_period_seconds.to_string()),
            );
            probe.insert("timeoutSeconds".into(), json!(3));
            insert_nonzero(
                &mut probe,
                "failureThreshold",
                &self.annotation(names::READINESS_FAILURE_THRESHOLD, &p.readiness_failure_threshold.to_string()),
            );
            c.insert("readinessProbe".into(), Value::Object(probe));
        }
        c.insert("securityContext".into(), self.proxy_security_context());
        c.insert("resources".into(), self.resources());
        c.insert("volumeMounts".into(), Value::Array(self.volume_mounts()));
        Value::Object(c)
    }

    fn proxy_security_context(&self) -> Value {
        let privileged = self.cfg.proxy.privileged;
        if self.proxy_metadata().get("IPTABLES_TRACE_LOGGING").map(String::as_str) == Some("true") {
            return json!({
                "allowPrivilegeEscalation": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "privileged": true,
                "readOnlyRootFilesystem": true,
                "runAsGroup": number(&self.gid()),
                "runAsNonRoot": false,
                "runAsUser": 0,
            });
        }
        let (tproxy, bind) = (self.tproxy(), self.cap_net_bind_service());
        let mut sc = Map::new();
        sc.insert("allowPrivilegeEscalation".into(), json!(privileged));
        let mut caps = Map::new();
        if tproxy || bind {
            let mut add = Vec::new();
            if tproxy {
                add.push(json!("NET_ADMIN"));
            }
            if bind {
                add.push(json!("NET_BIND_SERVICE"));
            }
            caps.insert("add".into(), Value::Array(add));
        }
        caps.insert("drop".into(), json!(["ALL"]));
        sc.insert("capabilities".into(), Value::Object(caps));
        sc.insert("privileged".into(), json!(privileged));
        sc.insert("readOnlyRootFilesystem".into(), json!(true));
        if tproxy || bind {
            sc.insert("runAsNonRoot".into(), json!(false));
            sc.insert("runAsUser".into(), json!(0));
            sc.insert("runAsGroup".into(), json!(ports::PROXY_GID));
        } else {
            sc.insert("runAsNonRoot".into(), json!(true));
            sc.insert("runAsUser".into(), number(&self.uid()));
            sc.insert("runAsGroup".into(), number(&self.gid()));
        }
        Value::Object(sc)
    }

    fn volume_mounts(&self) -> Vec<Value> {
        let m = |name: &str, path: &str| json!({"name": name, "mountPath": path});
        let mut out = vec![
            m("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
            m("credential-socket", "/var/run/secrets/credential-uds"),
            m("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
        ];
        if self.cfg.pilot_cert_provider == "istiod" {
            out.push(m("istiod-ca-cert", "/var/run/secrets/istio"));
            out.push(m("istio-ca-crl", "/var/run/secrets/istio/crl"));
        }
        out.push(m("istio-data", "/var/lib/istio/data"));
        if self.ann(BOOTSTRAP_OVERRIDE).is_some() {
            out.push(m("custom-bootstrap-volume", "/etc/istio/custom-bootstrap"));
        }
        out.push(m("istio-envoy", "/etc/istio/proxy"));
        out.push(m("istio-token", "/var/run/secrets/tokens"));
        if self.cfg.mount_mtls_certs {
            out.push(json!({"mountPath": "/etc/certs/", "name": "istio-certs", "readOnly": true}));
        }
        out.push(m("istio-podinfo", "/etc/istio/pod"));
        out.extend(named_entries(self.ann(USER_VOLUME_MOUNT)));
        out
    }

    fn volumes(&self) -> Vec<Value> {
        // The certificate volume names the pod's service account.
        if !self.cfg.mount_mtls_certs
            && let Some(prebuilt) = self.reuse(|p| &p.volumes)
        {
            return prebuilt.clone();
        }
        let cfg = self.cfg;
        let mut out = vec![
            json!({"name": "workload-socket"}),
            json!({"name": "credential-socket"}),
            json!({"name": "workload-certs"}),
        ];
        if let Some(cm) = self.ann(BOOTSTRAP_OVERRIDE) {
            out.push(json!({"name": "custom-bootstrap-volume", "configMap": {"name": cm}}));
        }
        out.push(json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}));
        out.push(json!({"name": "istio-data", "emptyDir": {}}));
        out.push(json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}}));
        out.push(json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200, "audience": cfg.sds_token_audience}}]}}));
        if cfg.pilot_cert_provider == "istiod" {
            let name = if cfg.trust_bundle_name.is_empty() { "istio-ca-root-cert" } else { &cfg.trust_bundle_name };
            out.push(json!({"name": "istiod-ca-cert", "configMap": {"name": name}}));
        }
        out.push(json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}}));
        if cfg.mount_mtls_certs {
            let account = self.service_account.filter(|a| !a.is_empty()).unwrap_or("default");
            out.push(
                json!({"name": "istio-certs", "secret": {"optional": true, "secretName": format!("istio.{account}")}}),
            );
        }
        out.extend(named_entries(self.ann(USER_VOLUME)));
        out
    }

    fn labels_out(&self) -> Vec<(String, String)> {
        let tls = self.label(names::LABEL_TLS_MODE).unwrap_or("istio");
        let mut out = vec![(names::LABEL_TLS_MODE.into(), tls.into())];
        out.extend(self.canonical_labels());
        out
    }

    /// The canonical service name and revision labels, from the pod's labels or its workload.
    fn canonical_labels(&self) -> Vec<(String, String)> {
        let name = self
            .label(names::LABEL_CANONICAL_NAME)
            .or_else(|| self.label("app.kubernetes.io/name"))
            .or_else(|| self.label("app"))
            .unwrap_or(&self.workload.name);
        let name: String = name.chars().take(63).collect();
        let name = name.trim_matches(|c| c == '-' || c == '_' || c == '.');
        let revision = self
            .label(names::LABEL_CANONICAL_REVISION)
            .or_else(|| self.label("app.kubernetes.io/version"))
            .or_else(|| self.label("version"))
            .unwrap_or("latest");
        vec![
            (names::LABEL_CANONICAL_NAME.into(), name.into()),
            (names::LABEL_CANONICAL_REVISION.into(), revision.into()),
        ]
    }

    /// The revision and, unless set, the default (logs) container annotations: every template's first.
    fn revision_annotations(&self) -> Vec<(String, String)> {
        let cfg = self.cfg;
        let rev = if cfg.revision.is_empty() { "default" } else { &cfg.revision };
        let mut out = vec![(names::ISTIO_REV.to_owned(), rev.to_owned())];
        if let Some(first) = self.app_containers().first() {
            for key in [names::DEFAULT_LOGS_CONTAINER, names::DEFAULT_CONTAINER] {
                if self.ann(key).is_none() {
                    out.push((key.into(), (*first).into()));
                }
            }
        }
        out
    }

    fn annotations_out(&self) -> Vec<(String, String)> {
        let cfg = self.cfg;
        let mut out = self.revision_annotations();
        if cfg.cni.enabled {
            if cfg.cni.provider == "multus" {
                let networks = append_multus_network(self.ann("k8s.v1.cni.cncf.io/networks").unwrap_or(""));
                out.push(("k8s.v1.cni.cncf.io/networks".into(), networks));
            }
            out.push((names::INTERCEPTION_MODE.into(), self.interception_mode().to_owned()));
            for (key, default) in [
                (names::INCLUDE_OUTBOUND_IP_RANGES, &cfg.include_ip_ranges),
                (names::EXCLUDE_OUTBOUND_IP_RANGES, &cfg.exclude_ip_ranges),
            ] {
                let v = self.annotation(key, default);
                if !v.is_empty() {
                    out.push((key.into(), v));
                }
            }
            out.push((
                names::INCLUDE_INBOUND_PORTS.into(),
                self.annotation(names::INCLUDE_INBOUND_PORTS, &cfg.include_inbound_ports),
            ));
            out.push((names::EXCLUDE_INBOUND_PORTS.into(), self.exclude_inbound_ports()));
            if let Some(v) = self.include_outbound_ports() {
                out.push((names::INCLUDE_OUTBOUND_PORTS.into(), v));
            }
            if self.ann(names::EXCLUDE_OUTBOUND_PORTS).is_some() || !cfg.exclude_outbound_ports.is_empty() {
                out.push((
                    names::EXCLUDE_OUTBOUND_PORTS.into(),
                    self.annotation(names::EXCLUDE_OUTBOUND_PORTS, &cfg.exclude_outbound_ports),
                ));
            }
            for key in [names::KUBEVIRT_INTERFACES, names::REROUTE_VIRTUAL_INTERFACES, names::EXCLUDE_INTERFACES] {
                if let Some(v) = self.ann(key).filter(|v| !v.is_empty()) {
                    out.push((key.into(), v.into()));
                }
            }
        }
        out
    }

    /// Renders the template for this pod.
    pub fn render(&self, cluster_id: &str, network: &str) -> Rendered {
        let mode = self.interception_mode();
        let mut init_containers = Vec::new();
        let mut containers = Vec::new();
        if mode != "NONE" {
            init_containers.push(self.init_container());
        }
        let proxy = self.proxy_container(cluster_id, network);
        if self.native {
            init_containers.push(proxy);
        } else {
            containers.push(proxy);
        }
        Rendered {
            labels: self.labels_out(),
            annotations: self.annotations_out(),
            init_containers,
            containers,
            volumes: self.volumes(),
            image_pull_secrets: self.cfg.image_pull_secrets.clone(),
            security_context: None,
        }
    }

    /// Renders one of the stock templates for this pod.
    pub fn render_template(&self, template: Template, cluster_id: &str, network: &str) -> Rendered {
        match template {
            Template::Sidecar => self.render(cluster_id, network),
            Template::Gateway => self.render_gateway(cluster_id, network),
            Template::GrpcAgent => self.render_grpc_agent(cluster_id, network),
            Template::GrpcSimple => self.render_grpc_simple(),
        }
    }
}

/// An env entry from a container resource (`valueFrom.resourceFieldRef`).
fn resource_env(name: &str, resource: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"resource": resource, "divisor": "1"}}})
}

/// Istio's `excludeInboundPort`: adds the status port to the excluded ports unless it is 0 or listed.
fn exclude_inbound_port(port: &str, excluded: &str) -> String {
    let port = port.trim();
    if port.is_empty() || port == "0" {
        return excluded.to_owned();
    }
    let mut out = Vec::new();
    for p in excluded.split(',') {
        if p == port {
            return excluded.to_owned();
        }
        let p = p.trim();
        if !p.is_empty() {
            out.push(p);
        }
    }
    out.push(port);
    out.join(",")
}

/// Istio's `appendMultusNetwork`: adds `default/istio-cni` to a Multus networks annotation (a comma
/// list or a JSON list), unless it is there already.
fn append_multus_network(existing: &str) -> String {
    const NET: &str = "default/istio-cni";
    if existing.is_empty() {
        return NET.into();
    }
    if let Some(i) = existing.rfind(']') {
        let Ok(networks) = serde_json::from_str::<Vec<Map<String, Value>>>(existing) else {
            return existing.into();
        };
        if networks.iter().any(|n| n.get("name").and_then(Value::as_str) == Some(NET)) {
            return existing.into();
        }
        return format!("{}, {{\"name\": \"{NET}\"}}]", &existing[..i]);
    }
    if existing.split(',').any(|n| n.trim() == NET) {
        return existing.into();
    }
    format!("{existing}, {NET}")
}

/// A proxy image with its repository name replaced, keeping registry and tag (`hub/<name>:tag`).
fn with_name(image: &str, name: &str) -> String {
    let (hub, last) = image.rsplit_once('/').unwrap_or(("", image));
    let tag = last.split_once(':').map(|(_, t)| t);
    let mut out = String::new();
    if !hub.is_empty() {
        out.push_str(hub);
        out.push('/');
    }
    out.push_str(name);
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    out
}

/// The entries of a JSON map annotation as `{"name": key, ...value}`, sorted by name.
fn named_entries(annotation: Option<&str>) -> Vec<Value> {
    let Some(map) = annotation.and_then(|a| serde_json::from_str::<BTreeMap<String, Value>>(a).ok()) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(name, value)| {
            let mut out = Map::new();
            out.insert("name".into(), Value::String(name));
            if let Value::Object(fields) = value {
                out.extend(fields.into_iter().filter(|(k, _)| k != "name"));
            }
            Value::Object(out)
        })
        .collect()
}

/// A number when the text is one, else the text (for values the template writes unquoted).
fn number(text: &str) -> Value {
    text.trim().parse::<i64>().map_or_else(|_| json!(text), |n| json!(n))
}

/// Inserts an integer field unless it is zero (Kubernetes leaves zero probe fields out).
fn insert_nonzero(map: &mut Map<String, Value>, key: &str, text: &str) {
    match text.trim().parse::<i64>() {
        Ok(0) => {}
        Ok(n) => {
            map.insert(key.into(), json!(n));
        }
        Err(_) => {
            map.insert(key.into(), json!(text));
        }
    }
}

/// The canonical form of a quantity that was validated before.
fn canonical(text: &str) -> String {
    quantity::canonical(text).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_inbound_port_appends_status_port_once() {
        assert_eq!(exclude_inbound_port("15020", ""), "15020");
        assert_eq!(exclude_inbound_port("15020", "4,5,6"), "4,5,6,15020");
        assert_eq!(exclude_inbound_port("0", "4,5,6"), "4,5,6");
        assert_eq!(exclude_inbound_port("5", "4,5,6"), "4,5,6");
    }

    #[test]
    fn multus_network_is_appended_once() {
        assert_eq!(append_multus_network(""), "default/istio-cni");
        assert_eq!(append_multus_network("a/b"), "a/b, default/istio-cni");
        assert_eq!(append_multus_network("a/b, default/istio-cni"), "a/b, default/istio-cni");
        assert_eq!(append_multus_network(r#"[{"name": "a"}]"#), r#"[{"name": "a"}, {"name": "default/istio-cni"}]"#);
    }

    #[test]
    fn proxy_image_name_override_keeps_hub_and_tag() {
        assert_eq!(
            with_name("docker.io/istio/proxyv2:1.28.0", "proxyv2-debug"),
            "docker.io/istio/proxyv2-debug:1.28.0"
        );
        assert_eq!(with_name("proxyv2", "other"), "other");
    }
}

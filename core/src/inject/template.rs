//! The sidecar template: what Istio's `sidecar-injector` template renders for a pod (the init
//! container, `istio-proxy`, volumes, labels and annotations), built directly as JSON values.
//!
//! This module holds the [`Context`] (what the template reads, and the small lookups every part
//! shares), the parts prebuilt per config and [`Rendered`]; each part of the output has its own
//! module: `init` (the init container and its `istio-iptables` args), `proxy` (`istio-proxy`),
//! `volumes` (volumes and mounts, shared with the other stock templates), `metadata` (labels and
//! annotations), and `gateway` / `grpc` for Istio's other stock templates.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::annotations::{BOOTSTRAP_OVERRIDE, CAP_NET_BIND_SERVICE, USER_VOLUME, USER_VOLUME_MOUNT};
use super::config::InjectConfig;
use super::owner::Workload;
use crate::capture::InterceptionMode;
use crate::names;

mod gateway;
mod grpc;
mod init;
mod metadata;
mod proxy;
mod volumes;

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

    /// The app containers: every regular container but `istio-proxy`.
    pub fn app_containers(&self) -> Vec<&str> {
        self.containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .filter(|n| *n != names::CONTAINER_PROXY)
            .collect()
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

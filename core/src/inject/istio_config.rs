//! Istio's own injector configuration as input: the keys of the `istio` ConfigMap (`mesh`, the
//! MeshConfig YAML) and of the `istio-sidecar-injector` ConfigMap (`config`, the injector's settings
//! and templates; `values`, the Helm values as JSON), mapped to an [`InjectConfig`].
//!
//! Every setting that Istio's stock templates read is mapped. A setting mesh cannot honour (a
//! custom or changed template, another default template, a Helm value that changes template output
//! mesh does not render) is an error naming the file and key: nothing is silently dropped.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::config::{
    CniConfig, ConfigError, InjectConfig, InjectPolicy, LabelSelector, MeshConfig, NativeSidecars, ProxyConfig,
    ProxyInitConfig, Resources, StartupProbe,
};

/// The file names in an `--istio-config` directory: the ConfigMaps' keys.
pub const FILES: [&str; 3] = ["mesh", "config", "values"];

/// Istio's stock templates as its `istio-discovery` chart ships them (Istio 1.31, `86c9f01`): name,
/// length in bytes and FNV-1a 64 of the exact text (without trailing line breaks, which YAML parsers
/// keep or drop differently at the end of a document). The first four are rendered by mesh; the others
/// are the gateway controller's (for Gateway API objects, not pods) and are accepted as shipped.
const STOCK_TEMPLATES: [(&str, usize, u64); 8] = [
    ("sidecar", 24644, 0xf3c7_01ed_58f7_3357),
    ("gateway", 10244, 0xd132_1131_a0dc_0977),
    ("grpc-simple", 1870, 0xdb8e_c4b2_6926_3512),
    ("grpc-agent", 12869, 0xf553_bf8f_7f0b_3ee6),
    ("waypoint", 14158, 0x314a_9449_3539_ec50),
    ("kube-gateway", 14522, 0xf8e1_ba91_b170_36e1),
    ("agentgateway", 11225, 0xbaea_7504_244c_9172),
    ("agentgateway-waypoint", 10819, 0x3e98_8685_1e3d_aa77),
];

/// The legacy `template` key as the chart writes it: a marker, not a template.
const LEGACY_TEMPLATE_MARKER: &str = "{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}";

/// Errors mapping Istio's configuration.
#[derive(Debug, thiserror::Error)]
pub enum IstioConfigError {
    /// A file of the directory cannot be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A file does not parse.
    #[error("istio config {file}: {message}")]
    Parse {
        /// `mesh`, `config` or `values`.
        file: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A setting mesh cannot honour, or a value of the wrong type.
    #[error("istio config {file}: {key}: {reason}")]
    Setting {
        /// `mesh`, `config` or `values`.
        file: &'static str,
        /// The key, dotted (`templates.sidecar`, `global.proxy.lifecycle`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The mapped settings are not a valid [`InjectConfig`] (a bad CIDR, port list or selector).
    #[error("istio config: {0}")]
    Config(#[from] ConfigError),
}

/// Reads `mesh`, `config` and `values` from `dir` and maps them ([`from_istio`]).
pub fn read_dir(dir: &Path) -> Result<InjectConfig, IstioConfigError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| IstioConfigError::Read { path: path.display().to_string(), message: e.to_string() })
    };
    from_istio(&read("mesh")?, &read("config")?, &read("values")?)
}

/// Maps the three ConfigMap keys (`mesh` YAML, `config` YAML, `values` JSON or YAML) to an
/// [`InjectConfig`], or names the first setting mesh cannot honour.
pub fn from_istio(mesh: &str, config: &str, values: &str) -> Result<InjectConfig, IstioConfigError> {
    let mesh = parse("mesh", mesh)?;
    let config = parse("config", config)?;
    let values = parse("values", values)?;
    let injector = Injector::read(&config)?;
    let mesh_config = read_mesh(&mesh)?;
    let cfg = map_values(&Tree { file: "values", root: &values }, injector, mesh_config)?;
    cfg.validate()?;
    Ok(cfg)
}

fn parse(file: &'static str, text: &str) -> Result<Value, IstioConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let parsed: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_str(text).map_err(|e| IstioConfigError::Parse { file, message: e.to_string() })?,
    };
    match parsed {
        Value::Object(_) => Ok(parsed),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(IstioConfigError::Parse { file, message: "expected a mapping".into() }),
    }
}

/// Istio's `ProxyConfig` image type or `global.variant`: a tag suffix (`distroless` gives `:1.0-distroless`).
fn image_url(hub: &str, name: &str, tag: &str, image_type: &str) -> String {
    if name.contains('/') {
        return name.to_owned();
    }
    let prefix = if hub.is_empty() { name.to_owned() } else { format!("{hub}/{name}") };
    if image_type.is_empty() || image_type == "default" || tag.ends_with(&format!("-{image_type}")) {
        format!("{prefix}:{tag}")
    } else {
        format!("{prefix}:{tag}-{image_type}")
    }
}

/// FNV-1a 64: the fingerprint of a template's text.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Whether `text` is Istio's stock template `name` exactly as the chart ships it.
fn is_stock_template(name: &str, text: &str) -> bool {
    let text = text.trim_end_matches('\n');
    STOCK_TEMPLATES.iter().any(|(n, len, hash)| *n == name && text.len() == *len && fnv1a64(text.as_bytes()) == *hash)
}

/// What `config` says: policy, selectors and injected annotations (templates are checked).
struct Injector {
    policy: InjectPolicy,
    always: Vec<LabelSelector>,
    never: Vec<LabelSelector>,
    injected_annotations: BTreeMap<String, String>,
}

impl Injector {
    fn read(config: &Value) -> Result<Injector, IstioConfigError> {
        let setting = |key: &str, reason: String| IstioConfigError::Setting { file: "config", key: key.into(), reason };
        let mut out = Injector {
            policy: InjectPolicy::Enabled,
            always: Vec::new(),
            never: Vec::new(),
            injected_annotations: BTreeMap::new(),
        };
        let Some(map) = config.as_object() else { return Ok(out) };
        for (key, value) in map {
            match key.as_str() {
                "policy" => {
                    out.policy = match value {
                        Value::Null => InjectPolicy::Enabled,
                        Value::String(p) if p == "enabled" => InjectPolicy::Enabled,
                        Value::String(p) if p == "disabled" => InjectPolicy::Disabled,
                        _ => return Err(setting(key, format!("{value} is not a policy (enabled or disabled)"))),
                    }
                }
                "alwaysInjectSelector" | "neverInjectSelector" => {
                    let list: Vec<LabelSelector> = match value {
                        Value::Null => Vec::new(),
                        v => serde_json::from_value(v.clone())
                            .map_err(|e| setting(key, format!("not a list of label selectors: {e}")))?,
                    };
                    if key == "alwaysInjectSelector" {
                        out.always = list;
                    } else {
                        out.never = list;
                    }
                }
                "injectedAnnotations" => match value {
                    Value::Null => {}
                    Value::Object(m) => {
                        for (k, v) in m {
                            let Some(v) = v.as_str() else {
                                return Err(setting(&format!("{key}.{k}"), format!("{v} is not a string")));
                            };
                            out.injected_annotations.insert(k.clone(), v.to_owned());
                        }
                    }
                    other => return Err(setting(key, format!("{other} is not a map of annotations"))),
                },
                "defaultTemplates" => {
                    let ok = match value {
                        Value::Null => true,
                        Value::Array(names) => names.is_empty() || names.as_slice() == [Value::from("sidecar")],
                        _ => false,
                    };
                    if !ok {
                        return Err(setting(
                            key,
                            format!("{value} is not supported: pods without inject.istio.io/templates get [sidecar]"),
                        ));
                    }
                }
                "template" => {
                    let text = value.as_str().unwrap_or("");
                    if !value.is_null() && !text.is_empty() && text.trim() != LEGACY_TEMPLATE_MARKER {
                        return Err(setting(key, "a custom legacy template is not supported".into()));
                    }
                }
                "templates" => {
                    for (name, text) in value.as_object().into_iter().flatten() {
                        let key = format!("templates.{name}");
                        let Some(text) = text.as_str() else {
                            return Err(setting(&key, "not a template text".into()));
                        };
                        if !STOCK_TEMPLATES.iter().any(|(n, _, _)| n == name) {
                            return Err(setting(
                                &key,
                                "a custom template is not supported (only Istio's stock templates)".into(),
                            ));
                        }
                        if !is_stock_template(name, text) {
                            return Err(setting(
                                &key,
                                "differs from Istio's stock template (changed templates are not supported)".into(),
                            ));
                        }
                    }
                }
                "aliases" => {
                    if value.as_object().is_some_and(|m| !m.is_empty()) {
                        return Err(setting(key, "template aliases are not supported".into()));
                    }
                }
                _ => return Err(setting(key, "unknown key".into())),
            }
        }
        Ok(out)
    }
}

/// The MeshConfig fields injection reads; the rest is ignored, as Istio's injector ignores it.
fn read_mesh(mesh: &Value) -> Result<MeshConfig, IstioConfigError> {
    let tree = Tree { file: "mesh", root: mesh };
    let default_config = match mesh.get("defaultConfig") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(tree.bad("defaultConfig", other, "not a ProxyConfig")),
    };
    if let Err((field, value, reason)) = super::config::check_proxy_config(&default_config) {
        return Err(IstioConfigError::Setting {
            file: "mesh",
            key: format!("defaultConfig.{field}"),
            reason: format!("{value:?}: {reason}"),
        });
    }
    let port = |key: &str, want: u16| -> Result<Option<u16>, IstioConfigError> {
        let port = tree.u16(key)?;
        match port {
            Some(p) if p != 0 && p != want => Err(tree.bad(key, &Value::from(p), &format!("only {want} is supported"))),
            p => Ok(p),
        }
    };
    Ok(MeshConfig {
        default_config,
        trust_domain: tree.string(&["trustDomain"], "cluster.local")?,
        enable_prometheus_merge: Some(tree.boolean(&["enablePrometheusMerge"], true)?),
        proxy_listen_port: port("proxyListenPort", crate::ports::OUTBOUND_CAPTURE)?,
        proxy_inbound_listen_port: port("proxyInboundListenPort", crate::ports::INBOUND_CAPTURE)?,
    })
}

/// A parsed file with typed, key-naming lookups by dotted path.
struct Tree<'a> {
    file: &'static str,
    root: &'a Value,
}

impl Tree<'_> {
    fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(self.root, |v, k| v.get(*k)).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, value: &Value, reason: &str) -> IstioConfigError {
        IstioConfigError::Setting { file: self.file, key: key.into(), reason: format!("{value}: {reason}") }
    }

    fn string(&self, path: &[&str], default: &str) -> Result<String, IstioConfigError> {
        match self.get(path) {
            None => Ok(default.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            Some(v) => Err(self.bad(&path.join("."), v, "not a string")),
        }
    }

    fn boolean(&self, path: &[&str], default: bool) -> Result<bool, IstioConfigError> {
        match self.get(path) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(v) => Err(self.bad(&path.join("."), v, "not a boolean")),
        }
    }

    fn number(&self, path: &[&str]) -> Result<Option<u64>, IstioConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => match v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
                Some(n) => Ok(Some(n)),
                None => Err(self.bad(&path.join("."), v, "not a non-negative integer")),
            },
        }
    }

    fn u16(&self, key: &str) -> Result<Option<u16>, IstioConfigError> {
        let path: Vec<&str> = key.split('.').collect();
        self.number(&path)?
            .map(|n| u16::try_from(n).map_err(|_| self.bad(key, &Value::from(n), "not a port")))
            .transpose()
    }

    fn u32(&self, path: &[&str], default: u32) -> Result<u32, IstioConfigError> {
        match self.number(path)? {
            None => Ok(default),
            Some(n) => u32::try_from(n).map_err(|_| self.bad(&path.join("."), &Value::from(n), "too large")),
        }
    }

    /// Errors unless the value at `path` is absent, empty, or `fine`.
    fn refuse_set(&self, path: &[&str], fine: &[&str], what: &str) -> Result<(), IstioConfigError> {
        let Some(v) = self.get(path) else { return Ok(()) };
        let empty = match v {
            Value::String(s) => s.is_empty() || fine.contains(&s.as_str()),
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Number(n) => n.as_u64() == Some(0),
            Value::Bool(b) => !b,
            Value::Null => true,
        };
        if empty { Ok(()) } else { Err(self.bad(&path.join("."), v, &format!("{what} is not supported"))) }
    }

    /// Errors on a key of the map at `path` that is not in `known`.
    fn only_keys(&self, path: &[&str], known: &[&str]) -> Result<(), IstioConfigError> {
        for key in self.get(path).and_then(Value::as_object).into_iter().flat_map(Map::keys) {
            if !known.contains(&key.as_str()) {
                let full = format!("{}.{key}", path.join("."));
                return Err(IstioConfigError::Setting { file: self.file, key: full, reason: "unknown key".into() });
            }
        }
        Ok(())
    }
}

/// The keys of `global.proxy` Istio's chart has; every one is mapped or checked below.
const PROXY_KEYS: [&str; 24] = [
    "autoInject",
    "capNetBindService",
    "clusterDomain",
    "componentLogLevel",
    "enableCoreDump",
    "excludeIPRanges",
    "excludeInboundPorts",
    "excludeOutboundPorts",
    "holdApplicationUntilProxyStarts",
    "image",
    "includeIPRanges",
    "includeInboundPorts",
    "includeOutboundPorts",
    "lifecycle",
    "logLevel",
    "outlierLogPath",
    "privileged",
    "readinessFailureThreshold",
    "readinessInitialDelaySeconds",
    "readinessPeriodSeconds",
    "resources",
    "seccompProfile",
    "startupProbe",
    "statusPort",
];

fn map_values(v: &Tree, injector: Injector, mesh_config: MeshConfig) -> Result<InjectConfig, IstioConfigError> {
    v.only_keys(&["global", "proxy"], &[&PROXY_KEYS[..], &["tracer"]].concat())?;
    v.only_keys(&["global", "proxy_init"], &["image", "forceApplyIptables", "resources"])?;
    v.only_keys(&["global", "proxy", "startupProbe"], &["enabled", "failureThreshold"])?;
    v.only_keys(&["global", "proxy", "resources"], &["requests", "limits"])?;
    // Helm values the stock templates read whose output mesh does not render.
    v.refuse_set(&["global", "proxy", "lifecycle"], &[], "a custom proxy lifecycle")?;
    v.refuse_set(&["global", "proxy", "outlierLogPath"], &[], "--outlierLogPath")?;
    v.refuse_set(&["global", "proxy", "seccompProfile"], &[], "a proxy seccompProfile")?;
    v.refuse_set(&["global", "proxy", "tracer"], &["none", "zipkin", "openCensusAgent", "stackdriver"], "this tracer")?;
    v.refuse_set(&["global", "proxy_init", "resources"], &[], "separate init container resources")?;
    v.refuse_set(&["global", "sts", "servicePort"], &[], "--stsPort")?;
    v.refuse_set(&["global", "caName"], &["", "istiod"], "this CA name")?;
    v.refuse_set(&["pilot", "crlConfigMapName"], &["istio-ca-crl"], "another CRL ConfigMap")?;
    v.refuse_set(&["gateways", "securityContext"], &[], "a gateway securityContext")?;
    let env = Tree { file: "values", root: v.get(&["pilot", "env"]).unwrap_or(&Value::Null) };
    if env.boolean(&["ENABLE_CLUSTER_TRUST_BUNDLE_API"], false).unwrap_or(true) {
        return Err(v.bad(
            "pilot.env.ENABLE_CLUSTER_TRUST_BUNDLE_API",
            &Value::from(true),
            "ClusterTrustBundles are not supported",
        ));
    }
    let native_sidecars = match env.get(&["ENABLE_NATIVE_SIDECARS"]) {
        None => NativeSidecars::Auto,
        Some(_) => match env.boolean(&["ENABLE_NATIVE_SIDECARS"], false) {
            Ok(true) => NativeSidecars::Enabled,
            Ok(false) => NativeSidecars::Disabled,
            Err(_) => {
                let value = env.get(&["ENABLE_NATIVE_SIDECARS"]).cloned().unwrap_or_default();
                return Err(v.bad("pilot.env.ENABLE_NATIVE_SIDECARS", &value, "not a boolean"));
            }
        },
    };

    fn g(k: &str) -> Vec<&str> {
        std::iter::once("global").chain(k.split('.')).collect()
    }
    let s = |k: &str, d: &str| v.string(&g(k), d);
    let b = |k: &str, d: bool| v.boolean(&g(k), d);
    let n = |k: &str, d: u32| v.u32(&g(k), d);

    let image_type =
        match mesh_config.default_config.get("image").and_then(|i| i.get("imageType")).and_then(Value::as_str) {
            Some(t) => t.to_owned(),
            None => s("variant", "")?,
        };
    let (hub, tag) = (s("hub", "")?, s("tag", "")?);
    let proxy_image = image_url(&hub, &s("proxy.image", "proxyv2")?, &tag, &image_type);
    let init_name = s("proxy_init.image", "proxyv2")?;
    let init_image = if init_name.contains('/') { init_name } else { proxy_image.clone() };

    let defaults = ProxyConfig::default();
    let proxy = ProxyConfig {
        image: proxy_image,
        resources: resources(v)?,
        status_port: v.u16("global.proxy.statusPort")?.unwrap_or(defaults.status_port),
        log_level: s("proxy.logLevel", &defaults.log_level)?,
        component_log_level: s("proxy.componentLogLevel", &defaults.component_log_level)?,
        privileged: b("proxy.privileged", false)?,
        readiness_initial_delay_seconds: n(
            "proxy.readinessInitialDelaySeconds",
            defaults.readiness_initial_delay_seconds,
        )?,
        readiness_period_seconds: n("proxy.readinessPeriodSeconds", defaults.readiness_period_seconds)?,
        readiness_failure_threshold: n("proxy.readinessFailureThreshold", defaults.readiness_failure_threshold)?,
        startup_probe: StartupProbe {
            enabled: b("proxy.startupProbe.enabled", defaults.startup_probe.enabled)?,
            failure_threshold: n("proxy.startupProbe.failureThreshold", defaults.startup_probe.failure_threshold)?,
        },
        cap_net_bind_service: b("proxy.capNetBindService", false)?,
    };
    let cni_enabled = v.boolean(&["pilot", "cni", "enabled"], false)? || v.boolean(&["cni", "enabled"], false)?;
    let cni_provider = match v.string(&["pilot", "cni", "provider"], "")?.as_str() {
        "" | "default" => v.string(&["cni", "provider"], "default")?,
        other => other.to_owned(),
    };
    let image_pull_secrets = match v.get(&g("imagePullSecrets")) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i.as_str().or_else(|| i.get("name").and_then(Value::as_str)) {
                Some(name) => Ok(name.to_owned()),
                None => Err(v.bad("global.imagePullSecrets", i, "not a secret name")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(v.bad("global.imagePullSecrets", other, "not a list")),
    };
    let Injector { policy, always, never, injected_annotations } = injector;
    let cfg = InjectConfig {
        policy,
        never_inject_selector: never,
        always_inject_selector: always,
        native_sidecars,
        revision: v.string(&["revision"], "")?,
        proxy,
        proxy_init: ProxyInitConfig {
            image: init_image,
            force_apply_iptables: b("proxy_init.forceApplyIptables", false)?,
        },
        include_ip_ranges: s("proxy.includeIPRanges", "*")?,
        exclude_ip_ranges: s("proxy.excludeIPRanges", "")?,
        include_inbound_ports: s("proxy.includeInboundPorts", "*")?,
        exclude_inbound_ports: s("proxy.excludeInboundPorts", "")?,
        include_outbound_ports: s("proxy.includeOutboundPorts", "")?,
        exclude_outbound_ports: s("proxy.excludeOutboundPorts", "")?,
        // Istio has no Helm value for it: the mesh's defaultConfig.interceptionMode says it.
        interception_mode: crate::capture::InterceptionMode::Redirect,
        hold_application_until_proxy_starts: b("proxy.holdApplicationUntilProxyStarts", false)?,
        cni: CniConfig { enabled: cni_enabled, provider: cni_provider },
        cluster_domain: s("proxy.clusterDomain", "cluster.local")?,
        trust_domain: s("trustDomain", "")?,
        mesh_id: s("meshID", "")?,
        cluster_id: s("multiCluster.clusterName", "")?,
        network: s("network", "")?,
        image_pull_secrets,
        image_pull_policy: s("imagePullPolicy", "")?,
        log_level: s("logging.level", "default:info")?,
        log_as_json: b("logAsJson", false)?,
        native_nftables: b("nativeNftables", false)?,
        istio_namespace: s("istioNamespace", "istio-system")?,
        ca_address: s("caAddress", "")?,
        pilot_cert_provider: s("pilotCertProvider", "istiod")?,
        sds_token_audience: s("sds.token.aud", "istio-ca")?,
        trust_bundle_name: s("trustBundleName", "")?,
        // The mesh's defaultConfig.proxyMetadata, in meshConfig, says it.
        proxy_metadata: BTreeMap::new(),
        enable_prometheus_merge: true,
        mount_mtls_certs: b("mountMtlsCerts", false)?,
        injected_annotations,
        rewrite_app_http_probe: v.boolean(&["sidecarInjectorWebhook", "rewriteAppHTTPProbe"], true)?,
        mesh_config,
    };
    Ok(cfg)
}

/// `global.proxy.resources`: requests and limits, quantities as text (numbers allowed).
fn resources(v: &Tree) -> Result<Resources, IstioConfigError> {
    let mut out = Resources { requests: BTreeMap::new(), limits: BTreeMap::new() };
    for (field, slot) in [("requests", &mut out.requests), ("limits", &mut out.limits)] {
        let key = format!("global.proxy.resources.{field}");
        match v.get(&["global", "proxy", "resources", field]) {
            None => {}
            Some(Value::Object(m)) => {
                for (name, q) in m {
                    let q = match q {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => continue,
                        other => return Err(v.bad(&format!("{key}.{name}"), other, "not a quantity")),
                    };
                    super::quantity::canonical(&q)
                        .map_err(|e| v.bad(&format!("{key}.{name}"), &Value::from(q.clone()), &e))?;
                    slot.insert(name.clone(), q);
                }
            }
            Some(other) => return Err(v.bad(&key, other, "not a map of quantities")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: &str =
        "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\ntrustDomain: cluster.local\n";
    const CONFIG: &str = "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ninjectedAnnotations:\n";
    const VALUES: &str = r#"{"global": {"hub": "example.io/istio", "tag": "1.31.0", "proxy": {"image": "proxyv2",
        "statusPort": 15020, "resources": {"requests": {"cpu": "10m"}}}, "proxy_init": {"image": "proxyv2"}}}"#;

    fn err(mesh: &str, config: &str, values: &str) -> String {
        from_istio(mesh, config, values).expect_err("an error").to_string()
    }

    #[test]
    fn images_follow_istios_hub_tag_and_variant() {
        let cfg = from_istio(MESH, CONFIG, VALUES).unwrap();
        assert_eq!(cfg.proxy.image, "example.io/istio/proxyv2:1.31.0");
        assert_eq!(cfg.proxy_init.image, "example.io/istio/proxyv2:1.31.0");
        assert_eq!(image_url("h", "proxyv2", "1.0", "distroless"), "h/proxyv2:1.0-distroless");
        assert_eq!(image_url("h", "proxyv2", "1.0-distroless", "distroless"), "h/proxyv2:1.0-distroless");
        assert_eq!(image_url("h", "other.io/p:2", "1.0", ""), "other.io/p:2");
        let values =
            r#"{"global": {"hub": "h", "tag": 1.3, "variant": "distroless", "proxy_init": {"image": "x.io/init:1"}}}"#;
        let cfg = from_istio(MESH, CONFIG, values).unwrap();
        assert_eq!(cfg.proxy.image, "h/proxyv2:1.3-distroless");
        assert_eq!(cfg.proxy_init.image, "x.io/init:1");
    }

    #[test]
    fn mesh_default_config_and_settings_are_mapped() {
        let values = r#"{"global": {"proxy": {"holdApplicationUntilProxyStarts": true, "excludeInboundPorts": "4,5"},
            "network": "n1", "meshID": "m1", "multiCluster": {"clusterName": "c1"}, "imagePullSecrets": ["a", {"name": "b"}]},
            "pilot": {"cni": {"enabled": true, "provider": "multus"}, "env": {"ENABLE_NATIVE_SIDECARS": "false"}},
            "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": false}}"#;
        let config = "policy: disabled\nneverInjectSelector:\n- matchLabels: {skip: \"yes\"}\ninjectedAnnotations:\n  a.example/b: c\n";
        let cfg = from_istio(MESH, config, values).unwrap();
        assert_eq!(cfg.policy, InjectPolicy::Disabled);
        assert_eq!(cfg.never_inject_selector.len(), 1);
        assert_eq!(cfg.injected_annotations.get("a.example/b").map(String::as_str), Some("c"));
        assert!(cfg.hold_application_until_proxy_starts);
        assert_eq!(cfg.exclude_inbound_ports, "4,5");
        assert_eq!((cfg.network.as_str(), cfg.mesh_id.as_str(), cfg.cluster_id.as_str()), ("n1", "m1", "c1"));
        assert_eq!(cfg.image_pull_secrets, ["a", "b"]);
        assert_eq!(cfg.cni, CniConfig { enabled: true, provider: "multus".into() });
        assert_eq!(cfg.native_sidecars, NativeSidecars::Disabled);
        assert!(!cfg.rewrite_app_http_probe);
        assert_eq!(
            cfg.mesh_config.default_config.get("discoveryAddress"),
            Some(&Value::from("istiod.istio-system.svc:15012"))
        );
        assert_eq!(cfg.effective_trust_domain(), "cluster.local");
    }

    #[test]
    fn settings_mesh_cannot_honour_are_named() {
        for (values, key) in [
            (r#"{"global": {"proxy": {"lifecycle": {"preStop": {}}}}}"#, "global.proxy.lifecycle"),
            (r#"{"global": {"proxy": {"outlierLogPath": "/dev/stdout"}}}"#, "global.proxy.outlierLogPath"),
            (r#"{"global": {"proxy": {"tracer": "datadog"}}}"#, "global.proxy.tracer"),
            (r#"{"global": {"proxy": {"newThing": 1}}}"#, "global.proxy.newThing"),
            (r#"{"global": {"sts": {"servicePort": 15463}}}"#, "global.sts.servicePort"),
            (r#"{"global": {"caName": "GkeWorkloadCertificate"}}"#, "global.caName"),
            (r#"{"pilot": {"env": {"ENABLE_CLUSTER_TRUST_BUNDLE_API": true}}}"#, "ENABLE_CLUSTER_TRUST_BUNDLE_API"),
            (r#"{"global": {"proxy": {"statusPort": "abc"}}}"#, "global.proxy.statusPort"),
            (r#"{"global": {"proxy": {"includeIPRanges": "10.0.0.0/99"}}}"#, "includeIPRanges"),
        ] {
            let e = err(MESH, CONFIG, values);
            assert!(e.contains(key), "{values}: {e}");
        }
        for (config, key) in [
            ("templates:\n  custom: |\n    spec: {}\n", "templates.custom"),
            ("templates:\n  sidecar: |\n    spec: {}\n", "templates.sidecar"),
            ("defaultTemplates: [sidecar, extra]\n", "defaultTemplates"),
            ("template: \"spec: {}\"\n", "template"),
            ("policy: sometimes\n", "policy"),
            ("injectedAnnotations:\n  a: {b: c}\n", "injectedAnnotations.a"),
            ("newKey: 1\n", "newKey"),
        ] {
            let e = err(MESH, config, VALUES);
            assert!(e.contains(key) && e.contains("config"), "{config}: {e}");
        }
        let e = err("proxyListenPort: 15002\n", CONFIG, VALUES);
        assert!(e.contains("proxyListenPort") && e.contains("15002"), "{e}");
        let e = err("defaultConfig:\n  interceptionMode: SIDEWAYS\n", CONFIG, VALUES);
        assert!(e.contains("defaultConfig.interceptionMode") && e.contains("SIDEWAYS"), "{e}");
        // Unknown MeshConfig keys are ignored, as Istio's injector ignores them.
        assert!(from_istio("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", CONFIG, VALUES).is_ok());
    }

    #[test]
    fn stock_template_fingerprints_are_exact() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert!(!is_stock_template("sidecar", "spec: {}\n"));
    }
}

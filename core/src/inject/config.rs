//! [`InjectConfig`]: the injector's settings, in YAML with Istio-like keys. `Default` equals Istio's
//! defaults (the `sidecar-injector` values), except the init image, which is mesh's own `mesh-init`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::capture::InterceptionMode;
pub use crate::selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

/// The proxy image by default: Istio's proxyv2.
pub const DEFAULT_PROXY_IMAGE: &str = "docker.io/istio/proxyv2:1.28.0";
/// The init image by default: mesh's `mesh-init`, a drop-in for `istio-iptables`.
pub const DEFAULT_PROXY_INIT_IMAGE: &str = concat!("ghcr.io/mesh-project/mesh-init:", env!("CARGO_PKG_VERSION"));

/// The injector's settings. Every key is optional; an unknown key is an error naming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectConfig {
    /// `enabled` (inject unless a pod opts out) or `disabled` (inject only pods that opt in).
    pub policy: InjectPolicy,
    /// Pods matching any of these label selectors are never injected (unless they opt in).
    pub never_inject_selector: Vec<LabelSelector>,
    /// Pods matching any of these label selectors are always injected (unless they opt out).
    pub always_inject_selector: Vec<LabelSelector>,
    /// Whether `istio-proxy` is a native sidecar (an init container with `restartPolicy: Always`).
    pub native_sidecars: NativeSidecars,
    /// The control plane revision written to `istio.io/rev` (empty means `default`).
    pub revision: String,
    /// The `istio-proxy` container.
    pub proxy: ProxyConfig,
    /// The `istio-init` (or `istio-validation`) init container.
    pub proxy_init: ProxyInitConfig,
    /// Outbound CIDRs to capture (`-i`), `*` for all.
    #[serde(rename = "includeIPRanges")]
    pub include_ip_ranges: String,
    /// Outbound CIDRs never captured (`-x`).
    #[serde(rename = "excludeIPRanges")]
    pub exclude_ip_ranges: String,
    /// Inbound ports to capture (`-b`), `*` for all.
    pub include_inbound_ports: String,
    /// Inbound ports never captured (`-d`, after 15090, 15021 and the status port).
    pub exclude_inbound_ports: String,
    /// Outbound ports always captured (`-q`).
    pub include_outbound_ports: String,
    /// Outbound ports never captured (`-o`).
    pub exclude_outbound_ports: String,
    /// Inbound interception mode: `REDIRECT`, `TPROXY` or `NONE`.
    #[serde(with = "interception_mode")]
    pub interception_mode: InterceptionMode,
    /// Start the app only once the proxy is ready (regular-container sidecars only).
    pub hold_application_until_proxy_starts: bool,
    /// Whether the Istio CNI plugin programs capture (then `istio-init` becomes `istio-validation`).
    pub cni: CniConfig,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// The mesh id (`ISTIO_META_MESH_ID`); the trust domain when empty.
    pub mesh_id: String,
    /// The cluster id (`ISTIO_META_CLUSTER_ID`); `Kubernetes` when empty.
    pub cluster_id: String,
    /// The network (`ISTIO_META_NETWORK`); left out when empty.
    pub network: String,
    /// Image pull secrets added to every injected pod.
    pub image_pull_secrets: Vec<String>,
    /// `imagePullPolicy` of the injected containers; left out when empty.
    pub image_pull_policy: String,
    /// The agent's log level (`--log_output_level`), e.g. `default:info`.
    pub log_level: String,
    /// Structured logs for the agent and the init container.
    pub log_as_json: bool,
    /// Program nftables directly (`--native-nftables`) instead of iptables.
    pub native_nftables: bool,
    /// The control plane's namespace (for `CA_ADDR`).
    pub istio_namespace: String,
    /// The CA address; `istiod[-<revision>].<istioNamespace>.svc:15012` when empty.
    pub ca_address: String,
    /// Who provides the control plane's certificate (`istiod` mounts its CA bundle).
    pub pilot_cert_provider: String,
    /// The service account token audience.
    pub sds_token_audience: String,
    /// The ConfigMap with the mesh's root certificate; `istio-ca-root-cert` when empty.
    pub trust_bundle_name: String,
    /// `ProxyConfig.proxyMetadata`: extra environment variables of the proxy (and `istio-init`).
    pub proxy_metadata: BTreeMap<String, String>,
    /// Merge the app's Prometheus annotations into the agent's (`prometheus.io/*` on port 15020).
    pub enable_prometheus_merge: bool,
    /// Mount the `istio.<service account>` Secret at `/etc/certs/` in the proxy.
    pub mount_mtls_certs: bool,
    /// Annotations added to every injected pod (they win over the pod's).
    pub injected_annotations: BTreeMap<String, String>,
    /// Rewrite HTTP, TCP and gRPC probes to the agent (`:15020/app-health/...`).
    #[serde(rename = "rewriteAppHTTPProbe")]
    pub rewrite_app_http_probe: bool,
    /// Istio's MeshConfig, the part injection reads (`defaultConfig`, the mesh-wide ProxyConfig).
    pub mesh_config: MeshConfig,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            policy: InjectPolicy::Enabled,
            never_inject_selector: Vec::new(),
            always_inject_selector: Vec::new(),
            native_sidecars: NativeSidecars::Auto,
            revision: String::new(),
            proxy: ProxyConfig::default(),
            proxy_init: ProxyInitConfig::default(),
            include_ip_ranges: "*".into(),
            exclude_ip_ranges: String::new(),
            include_inbound_ports: "*".into(),
            exclude_inbound_ports: String::new(),
            include_outbound_ports: String::new(),
            exclude_outbound_ports: String::new(),
            interception_mode: InterceptionMode::Redirect,
            hold_application_until_proxy_starts: false,
            cni: CniConfig::default(),
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
            mesh_id: String::new(),
            cluster_id: String::new(),
            network: String::new(),
            image_pull_secrets: Vec::new(),
            image_pull_policy: String::new(),
            log_level: "default:info".into(),
            log_as_json: false,
            native_nftables: false,
            istio_namespace: "istio-system".into(),
            ca_address: String::new(),
            pilot_cert_provider: "istiod".into(),
            sds_token_audience: "istio-ca".into(),
            trust_bundle_name: String::new(),
            proxy_metadata: BTreeMap::new(),
            enable_prometheus_merge: true,
            mount_mtls_certs: false,
            injected_annotations: BTreeMap::new(),
            rewrite_app_http_probe: true,
            mesh_config: MeshConfig::default(),
        }
    }
}

/// Istio's MeshConfig (the `mesh` key of the `istio` ConfigMap): the fields injection reads. Other
/// MeshConfig keys are accepted and ignored, so a mesh config can be pasted as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// The mesh-wide ProxyConfig. A pod's `proxy.istio.io/config` is merged over it; the result is
    /// the pod's `PROXY_CONFIG` and drives the template (`interceptionMode`,
    /// `holdApplicationUntilProxyStarts`, `proxyMetadata`). Every key is kept, known or not.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub default_config: Map<String, Value>,
    /// The mesh's trust domain; wins over the top-level `trustDomain` when set (as in Istio).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trust_domain: String,
    /// Merge the app's Prometheus annotations; wins over the top-level `enablePrometheusMerge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_prometheus_merge: Option<bool>,
    /// The outbound capture port; only Istio's 15001 is supported (0 means 15001).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_listen_port: Option<u16>,
    /// The inbound capture port; only Istio's 15006 is supported (0 means 15006).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_inbound_listen_port: Option<u16>,
}

/// Checks the ProxyConfig fields the templates read: `interceptionMode` is `REDIRECT`, `TPROXY` or
/// `NONE`, `holdApplicationUntilProxyStarts` a boolean and `proxyMetadata` a map of strings. Other
/// fields are not read, only passed on. The error is `(field, value, reason)`.
pub fn check_proxy_config(pc: &Map<String, Value>) -> Result<(), (String, String, &'static str)> {
    let bad = |field: &str, value: &Value, reason: &'static str| {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Err((field.to_owned(), value, reason))
    };
    if let Some(v) = pc.get("interceptionMode")
        && !matches!(v.as_str(), Some("REDIRECT" | "TPROXY" | "NONE"))
    {
        return bad("interceptionMode", v, "not an interception mode (REDIRECT, TPROXY or NONE)");
    }
    if let Some(v) = pc.get("holdApplicationUntilProxyStarts")
        && !v.is_boolean()
    {
        return bad("holdApplicationUntilProxyStarts", v, "not a boolean");
    }
    match pc.get("proxyMetadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            if let Some((k, v)) = meta.iter().find(|(_, v)| !v.is_string()) {
                return bad(&format!("proxyMetadata.{k}"), v, "not a string");
            }
        }
        Some(v) => return bad("proxyMetadata", v, "not a map of strings"),
    }
    Ok(())
}

/// Whether pods are injected unless they opt out, or only when they opt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectPolicy {
    /// Inject unless the pod says `sidecar.istio.io/inject: "false"`.
    #[default]
    Enabled,
    /// Inject only pods that say `sidecar.istio.io/inject: "true"` (or match `alwaysInjectSelector`).
    Disabled,
}

/// Whether `istio-proxy` is a native sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeSidecars {
    /// Native when every node supports it ([`super::InjectRequest::nodes_support_native_sidecars`]).
    #[default]
    Auto,
    /// Always native.
    Enabled,
    /// Never native: `istio-proxy` is a regular container.
    Disabled,
}

impl std::str::FromStr for NativeSidecars {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NativeSidecars::Auto),
            "enabled" => Ok(NativeSidecars::Enabled),
            "disabled" => Ok(NativeSidecars::Disabled),
            other => Err(format!("{other:?} is not a native sidecar mode (auto, enabled or disabled)")),
        }
    }
}

/// Settings of the `istio-proxy` container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The proxy image (a name without `/` is taken as-is too).
    pub image: String,
    /// Requests and limits of the proxy (and of the init container).
    pub resources: Resources,
    /// The agent's status port (`0` turns the readiness and startup probes off).
    pub status_port: u16,
    /// Envoy's log level.
    pub log_level: String,
    /// Envoy's component log levels.
    pub component_log_level: String,
    /// Run the proxy privileged.
    pub privileged: bool,
    /// Readiness probe initial delay in seconds.
    pub readiness_initial_delay_seconds: u32,
    /// Readiness probe period in seconds.
    pub readiness_period_seconds: u32,
    /// Readiness probe failure threshold.
    pub readiness_failure_threshold: u32,
    /// The startup probe.
    pub startup_probe: StartupProbe,
    /// Give the proxy `NET_BIND_SERVICE` (runs it as root).
    pub cap_net_bind_service: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            image: DEFAULT_PROXY_IMAGE.into(),
            resources: Resources::default(),
            status_port: crate::ports::AGENT_STATUS,
            log_level: "warning".into(),
            component_log_level: "misc:error".into(),
            privileged: false,
            readiness_initial_delay_seconds: 0,
            readiness_period_seconds: 15,
            readiness_failure_threshold: 4,
            startup_probe: StartupProbe::default(),
            cap_net_bind_service: false,
        }
    }
}

/// Container resources: quantities by resource name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Requests, e.g. `cpu: 100m`.
    pub requests: BTreeMap<String, String>,
    /// Limits, e.g. `memory: 1Gi`.
    pub limits: BTreeMap<String, String>,
}

impl Default for Resources {
    fn default() -> Self {
        let map =
            |cpu: &str, memory: &str| BTreeMap::from([("cpu".into(), cpu.into()), ("memory".into(), memory.into())]);
        Resources { requests: map("100m", "128Mi"), limits: map("2", "1Gi") }
    }
}

/// The proxy's startup probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StartupProbe {
    /// Whether the probe is added.
    pub enabled: bool,
    /// Failure threshold (one probe per second).
    pub failure_threshold: u32,
}

impl Default for StartupProbe {
    fn default() -> Self {
        StartupProbe { enabled: true, failure_threshold: 600 }
    }
}

/// Settings of the init container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyInitConfig {
    /// The init image.
    pub image: String,
    /// Pass `--force-apply` to the init container.
    pub force_apply_iptables: bool,
}

impl Default for ProxyInitConfig {
    fn default() -> Self {
        ProxyInitConfig { image: DEFAULT_PROXY_INIT_IMAGE.into(), force_apply_iptables: false }
    }
}

/// The Istio CNI plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CniConfig {
    /// Whether the CNI plugin programs capture.
    pub enabled: bool,
    /// `default` or `multus`.
    pub provider: String,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig { enabled: false, provider: "default".into() }
    }
}

/// Errors reading an [`InjectConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML does not parse, has an unknown key, or a value of the wrong type.
    #[error("invalid inject config: {0}")]
    Yaml(String),
    /// A value parses but is not valid (a bad CIDR, port list or quantity).
    #[error("invalid inject config: {key}={value:?}: {reason}")]
    Invalid {
        /// The key, e.g. `excludeInboundPorts`.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl InjectConfig {
    /// Parses YAML; an empty document gives the defaults. An unknown key is an error naming it.
    pub fn from_yaml(text: &str) -> Result<InjectConfig, ConfigError> {
        if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(InjectConfig::default());
        }
        let cfg: InjectConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values that have a syntax: CIDR and port lists, resource quantities and selectors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: &str, reason: String| ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            reason,
        };
        for (key, value) in [("includeIPRanges", &self.include_ip_ranges), ("excludeIPRanges", &self.exclude_ip_ranges)]
        {
            value.parse::<crate::capture::CidrList>().map_err(|r| bad(key, value, r))?;
        }
        for (key, value) in [
            ("includeInboundPorts", &self.include_inbound_ports),
            ("excludeInboundPorts", &self.exclude_inbound_ports),
            ("includeOutboundPorts", &self.include_outbound_ports),
            ("excludeOutboundPorts", &self.exclude_outbound_ports),
        ] {
            value.parse::<crate::capture::PortList>().map_err(|r| bad(key, value, r))?;
        }
        for (key, list) in [
            ("neverInjectSelector", &self.never_inject_selector),
            ("alwaysInjectSelector", &self.always_inject_selector),
        ] {
            for (i, sel) in list.iter().enumerate() {
                sel.validate().map_err(|e| bad(&format!("{key}[{i}]"), &format!("{sel:?}"), e.to_string()))?;
            }
        }
        let mesh = &self.mesh_config;
        check_proxy_config(&mesh.default_config).map_err(|(field, value, reason)| {
            bad(&format!("meshConfig.defaultConfig.{field}"), &value, reason.to_owned())
        })?;
        for (key, value, port) in [
            ("meshConfig.proxyListenPort", mesh.proxy_listen_port, crate::ports::OUTBOUND_CAPTURE),
            ("meshConfig.proxyInboundListenPort", mesh.proxy_inbound_listen_port, crate::ports::INBOUND_CAPTURE),
        ] {
            if let Some(v) = value.filter(|v| *v != 0 && *v != port) {
                return Err(bad(key, &v.to_string(), format!("only {port} is supported")));
            }
        }
        Ok(())
    }

    /// The ProxyConfig of a pod without `proxy.istio.io/config`: `proxyMetadata` from the config,
    /// then `meshConfig.defaultConfig` merged over it (its `proxyMetadata` entries win).
    pub fn default_proxy_config(&self) -> Map<String, Value> {
        let mut pc = Map::new();
        if !self.proxy_metadata.is_empty() {
            pc.insert("proxyMetadata".into(), serde_json::json!(self.proxy_metadata));
        }
        if self.mesh_config.default_config.is_empty() {
            return pc;
        }
        let mut merged = Value::Object(pc);
        super::merge::merge(&mut merged, &Value::Object(self.mesh_config.default_config.clone()));
        match merged {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The trust domain the templates use: `meshConfig.trustDomain`, else `trustDomain`.
    pub fn effective_trust_domain(&self) -> &str {
        if self.mesh_config.trust_domain.is_empty() { &self.trust_domain } else { &self.mesh_config.trust_domain }
    }

    /// Whether Prometheus annotations are merged: `meshConfig.enablePrometheusMerge`, else
    /// `enablePrometheusMerge`.
    pub fn effective_prometheus_merge(&self) -> bool {
        self.mesh_config.enable_prometheus_merge.unwrap_or(self.enable_prometheus_merge)
    }
}

mod interception_mode {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::capture::InterceptionMode;

    pub fn serialize<S: Serializer>(mode: &InterceptionMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&mode.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<InterceptionMode, D::Error> {
        let text = String::deserialize(d)?;
        InterceptionMode::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_is_istio_defaults() {
        let cfg = InjectConfig::from_yaml("").unwrap();
        assert_eq!(cfg, InjectConfig::default());
        assert_eq!(cfg.include_ip_ranges, "*");
        assert_eq!(cfg.proxy.status_port, 15020);
        assert_eq!(cfg.proxy.image, DEFAULT_PROXY_IMAGE);
        assert!(cfg.proxy_init.image.starts_with("ghcr.io/mesh-project/mesh-init:"));
    }

    #[test]
    fn reads_istio_like_keys() {
        let cfg = InjectConfig::from_yaml(
            "proxy:\n  image: example/proxy:1\n  statusPort: 15021\nincludeIPRanges: 10.0.0.0/8\nnativeSidecars: disabled\n\
             policy: disabled\ninterceptionMode: TPROXY\ncni:\n  enabled: true\n",
        )
        .unwrap();
        assert_eq!(cfg.proxy.image, "example/proxy:1");
        assert_eq!(cfg.proxy.status_port, 15021);
        assert_eq!(cfg.include_ip_ranges, "10.0.0.0/8");
        assert_eq!(cfg.native_sidecars, NativeSidecars::Disabled);
        assert_eq!(cfg.policy, InjectPolicy::Disabled);
        assert_eq!(cfg.interception_mode, InterceptionMode::Tproxy);
        assert!(cfg.cni.enabled);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = InjectConfig::from_yaml("proxy:\n  imagee: x\n").unwrap_err().to_string();
        assert!(err.contains("imagee"), "{err}");
        let err = InjectConfig::from_yaml("nativeSidecar: auto\n").unwrap_err().to_string();
        assert!(err.contains("nativeSidecar"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = InjectConfig::from_yaml("excludeIPRanges: 10.0.0.0/99\n").unwrap_err().to_string();
        assert!(err.contains("excludeIPRanges") && err.contains("10.0.0.0/99"), "{err}");
        let err = InjectConfig::from_yaml("interceptionMode: SIDEWAYS\n").unwrap_err().to_string();
        assert!(err.contains("SIDEWAYS"), "{err}");
    }

    #[test]
    fn mesh_config_keeps_unknown_proxy_config_keys_and_ignores_unknown_mesh_keys() {
        let cfg = InjectConfig::from_yaml(
            "meshConfig:\n  rootNamespace: istio-system\n  defaultProviders: {metrics: [prometheus]}\n  \
             trustDomain: example.org\n  defaultConfig:\n    discoveryAddress: istiod:15012\n    \
             futureField: {a: 1}\n    interceptionMode: TPROXY\n",
        )
        .unwrap();
        let pc = cfg.default_proxy_config();
        assert_eq!(pc.get("discoveryAddress"), Some(&Value::from("istiod:15012")));
        assert_eq!(pc.get("futureField"), Some(&serde_json::json!({"a": 1})));
        assert_eq!(cfg.effective_trust_domain(), "example.org");
        assert_eq!(InjectConfig::default().effective_trust_domain(), "cluster.local");
    }

    #[test]
    fn default_proxy_config_merges_proxy_metadata() {
        let cfg = InjectConfig::from_yaml(
            "proxyMetadata: {A: config, B: config}\nmeshConfig:\n  defaultConfig:\n    proxyMetadata: {B: mesh}\n",
        )
        .unwrap();
        assert_eq!(
            Value::Object(cfg.default_proxy_config()),
            serde_json::json!({"proxyMetadata": {"A": "config", "B": "mesh"}})
        );
        assert!(InjectConfig::default().default_proxy_config().is_empty());
    }

    #[test]
    fn bad_mesh_config_values_are_named() {
        let err = InjectConfig::from_yaml("meshConfig:\n  defaultConfig:\n    interceptionMode: SIDEWAYS\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("meshConfig.defaultConfig.interceptionMode") && err.contains("SIDEWAYS"), "{err}");
        let err =
            InjectConfig::from_yaml("meshConfig:\n  defaultConfig:\n    holdApplicationUntilProxyStarts: yes please\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("holdApplicationUntilProxyStarts"), "{err}");
        let err = InjectConfig::from_yaml("meshConfig:\n  proxyListenPort: 15002\n").unwrap_err().to_string();
        assert!(err.contains("meshConfig.proxyListenPort") && err.contains("15002"), "{err}");
        assert!(InjectConfig::from_yaml("meshConfig:\n  proxyListenPort: 15001\n").is_ok());
    }
}

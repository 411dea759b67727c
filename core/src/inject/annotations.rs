//! Validation of the pod's injection annotations, as Istio's `validateAnnotations` does: a bad value
//! denies the pod with a message naming the annotation and the value.

use serde_json::{Map, Value};

use super::quantity;
use crate::capture::{Cidr, parse_port, split_list};
use crate::names;

/// `sidecar.istio.io/capNetBindService`.
pub const CAP_NET_BIND_SERVICE: &str = "sidecar.istio.io/capNetBindService";
/// `proxy.istio.io/config`: a ProxyConfig (YAML or JSON) for this pod.
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
/// `proxy.istio.io/overrides`: the user's `istio-proxy`/`istio-init` fields, kept for re-injection.
pub const PROXY_OVERRIDES: &str = "proxy.istio.io/overrides";
/// `sidecar.istio.io/bootstrapOverride`: a ConfigMap with a custom Envoy bootstrap.
pub const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
/// `sidecar.istio.io/userVolume`: extra volumes (JSON map of name to volume).
pub const USER_VOLUME: &str = "sidecar.istio.io/userVolume";
/// `sidecar.istio.io/userVolumeMount`: extra proxy mounts (JSON map of name to mount).
pub const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
/// `sidecar.istio.io/enableCoreDump`.
pub const ENABLE_CORE_DUMP: &str = "sidecar.istio.io/enableCoreDump";
/// `topology.istio.io/network`: the pod's network label.
pub const TOPOLOGY_NETWORK: &str = "topology.istio.io/network";
/// `service.istio.io/workload-name`: overrides the workload name.
pub const WORKLOAD_NAME: &str = "service.istio.io/workload-name";

/// Checks every annotation Istio validates; the error names the annotation and its value.
pub fn validate(annotations: &Map<String, Value>) -> Result<(), String> {
    for (key, value) in annotations {
        let Some(value) = value.as_str() else { continue };
        let reason = match key.as_str() {
            names::INTERCEPTION_MODE => match value {
                "REDIRECT" | "TPROXY" | "NONE" => None,
                _ => Some(format!("{value:?} is not an interception mode (REDIRECT, TPROXY or NONE)")),
            },
            names::ENABLE_METRICS_MERGE | ENABLE_CORE_DUMP => check_bool(value),
            names::STATUS_PORT => parse_port(value).err(),
            names::READINESS_INITIAL_DELAY | names::READINESS_PERIOD | names::READINESS_FAILURE_THRESHOLD => {
                value.trim().parse::<u32>().err().map(|_| format!("{value:?} is not a non-negative integer"))
            }
            // Istio's messages name the setting (e.g. `includeIPRanges invalid`); so do these.
            names::INCLUDE_OUTBOUND_IP_RANGES => {
                (value != "*").then(|| check_cidrs(value)).flatten().map(|r| format!("includeIPRanges invalid: {r}"))
            }
            names::EXCLUDE_OUTBOUND_IP_RANGES => check_cidrs(value).map(|r| format!("excludeIPRanges invalid: {r}")),
            names::INCLUDE_INBOUND_PORTS => (value != "*")
                .then(|| check_ports(value))
                .flatten()
                .map(|r| format!("includeInboundPorts invalid: {r}")),
            names::EXCLUDE_INBOUND_PORTS => check_ports(value).map(|r| format!("excludeInboundPorts invalid: {r}")),
            names::EXCLUDE_OUTBOUND_PORTS => check_ports(value).map(|r| format!("excludeOutboundPorts invalid: {r}")),
            names::INCLUDE_OUTBOUND_PORTS => check_ports(value).map(|r| format!("includeOutboundPorts invalid: {r}")),
            names::PROXY_CPU | names::PROXY_MEMORY | names::PROXY_CPU_LIMIT | names::PROXY_MEMORY_LIMIT => {
                quantity::canonical(value).err()
            }
            PROXY_CONFIG => match proxy_config(value) {
                Ok(pc) => super::config::check_proxy_config(&pc)
                    .err()
                    .map(|(field, v, reason)| format!("{field}={v:?}: {reason}")),
                Err(e) => Some(e),
            },
            USER_VOLUME | USER_VOLUME_MOUNT => serde_json::from_str::<Map<String, Value>>(value)
                .err()
                .map(|e| format!("not a JSON object of name to value: {e}")),
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(format!("invalid annotation {key}={value:?}: {reason}"));
        }
    }
    Ok(())
}

/// Parses `proxy.istio.io/config` (YAML or JSON) into a JSON object.
pub fn proxy_config(value: &str) -> Result<Map<String, Value>, String> {
    if value.trim().is_empty() {
        return Ok(Map::new());
    }
    let parsed: Value = serde_saphyr::from_str(value).map_err(|e| format!("not a ProxyConfig: {e}"))?;
    match parsed {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err("not a ProxyConfig: expected a mapping".into()),
    }
}

fn check_bool(value: &str) -> Option<String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False" => None,
        _ => Some(format!("{value:?} is not a boolean")),
    }
}

fn check_cidrs(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    value.split(',').find_map(|c| {
        let c = c.trim();
        if !c.contains('/') {
            return Some(format!("{c:?} is not a CIDR"));
        }
        c.parse::<Cidr>().err()
    })
}

fn check_ports(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return None;
    }
    value.split(',').find_map(|p| parse_port(p).err())
}

/// Whether the raw list has any entries (after trimming), as istio-iptables reads it.
pub fn non_empty_list(value: &str) -> bool {
    !split_list(value).is_empty()
}

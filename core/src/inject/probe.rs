//! Probe and lifecycle-hook rewriting: the kubelet's HTTP, TCP and gRPC checks of app containers go to
//! the agent at `:15020/app-health/<container>/<kind>z` (`/app-lifecycle/...` for hooks), and the
//! originals travel to the agent in `ISTIO_KUBE_APP_PROBERS`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::names;

const PROBES: [(&str, &str); 3] =
    [("readinessProbe", "readyz"), ("livenessProbe", "livez"), ("startupProbe", "startupz")];
const HOOKS: [(&str, &str); 2] = [("preStop", "prestopz"), ("postStart", "poststartz")];

/// Whether probes are rewritten: the `sidecar.istio.io/rewriteAppHTTPProbers` annotation when it is a
/// boolean, else the config.
pub fn enabled(annotations: &Map<String, Value>, default: bool) -> bool {
    match annotations.get(names::REWRITE_APP_HTTP_PROBERS).and_then(Value::as_str) {
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
        _ => default,
    }
}

/// The agent's view of one check: the original action (named ports resolved) and its timeout.
fn prober(
    action: &Map<String, Value>,
    timeout: Option<&Value>,
    ports: &Map<String, Value>,
    target: u16,
) -> Option<Value> {
    let mut out = Map::new();
    if let Some(grpc) = action.get("grpc").filter(|g| g.is_object()) {
        out.insert("grpc".into(), grpc.clone());
    } else {
        let (key, handler) = if let Some(h) = action.get("httpGet").and_then(Value::as_object) {
            ("httpGet", h)
        } else if let Some(h) = action.get("tcpSocket").and_then(Value::as_object) {
            ("tcpSocket", h)
        } else {
            return None;
        };
        let mut handler = handler.clone();
        match handler.get("port") {
            Some(Value::String(name)) => {
                handler.insert("port".into(), ports.get(name)?.clone());
            }
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(target)) => return None,
            _ => {}
        }
        out.insert(key.into(), Value::Object(handler));
    }
    if let Some(t) = timeout.filter(|t| t.as_i64().is_some_and(|t| t != 0)) {
        out.insert("timeoutSeconds".into(), t.clone());
    }
    Some(Value::Object(out))
}

/// The rewritten check: an HTTP GET to the agent.
fn rewritten(action: &Map<String, Value>, path: &str, status_port: u16) -> Option<Map<String, Value>> {
    let mut out = action.clone();
    if let Some(http) = action.get("httpGet").and_then(Value::as_object) {
        let mut http = http.clone();
        http.insert("port".into(), json!(status_port));
        http.insert("path".into(), json!(path));
        if http.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
            http.insert("scheme".into(), json!("HTTP"));
        }
        out.insert("httpGet".into(), Value::Object(http));
    } else if action.get("tcpSocket").is_some_and(Value::is_object) || action.get("grpc").is_some_and(Value::is_object)
    {
        out.remove("tcpSocket");
        out.remove("grpc");
        out.insert("httpGet".into(), json!({"path": path, "port": status_port}));
    } else {
        return None;
    }
    Some(out)
}

/// The agent's probers of every app container (`ISTIO_KUBE_APP_PROBERS`), keyed by path. Checks that
/// already point at the agent keep the prober `previous` had for them (re-injection).
pub fn app_probers(containers: &[&Value], target: u16, previous: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for c in containers {
        let Some(name) = c.get("name").and_then(Value::as_str) else { continue };
        if name == names::CONTAINER_PROXY {
            continue;
        }
        let has_checks = PROBES.iter().any(|(field, _)| c.get(field).is_some())
            || c.get("lifecycle").is_some_and(|l| HOOKS.iter().any(|(field, _)| l.get(field).is_some()));
        if !has_checks {
            continue;
        }
        let mut ports = Map::new();
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(n), Some(port)) = (p.get("name").and_then(Value::as_str), p.get("containerPort"))
                && !n.is_empty()
            {
                ports.insert(n.into(), port.clone());
            }
        }
        let mut add = |path: String, action: Option<&Value>, timeout: Option<&Value>| {
            let Some(action) = action.and_then(Value::as_object) else { return };
            match prober(action, timeout, &ports, target) {
                Some(p) => {
                    out.insert(path, p);
                }
                None => {
                    if let Some(p) = previous.get(&path).filter(|_| points_at(action, &path, target)) {
                        out.insert(path, p.clone());
                    }
                }
            }
        };
        for (field, suffix) in PROBES {
            if let Some(probe) = c.get(field) {
                add(format!("/app-health/{name}/{suffix}"), Some(probe), probe.get("timeoutSeconds"));
            }
        }
        let lifecycle = c.get("lifecycle");
        for (field, suffix) in HOOKS {
            if let Some(hook) = lifecycle.and_then(|l| l.get(field)) {
                add(format!("/app-lifecycle/{name}/{suffix}"), Some(hook), None);
            }
        }
    }
    out
}

/// Whether a check is already the agent's rewrite for `path`.
fn points_at(action: &Map<String, Value>, path: &str, target: u16) -> bool {
    action.get("httpGet").is_some_and(|h| {
        h.get("port").and_then(Value::as_u64) == Some(u64::from(target))
            && h.get("path").and_then(Value::as_str) == Some(path)
    })
}

/// Rewrites one container's probes and hooks in place to the agent on `status_port`.
pub fn rewrite_container(c: &mut Value, status_port: u16) {
    let Some(name) = c.get("name").and_then(Value::as_str).map(str::to_owned) else { return };
    if name == names::CONTAINER_PROXY {
        return;
    }
    let Some(fields) = c.as_object_mut() else { return };
    for (field, suffix) in PROBES {
        if let Some(slot) = fields.get_mut(field)
            && let Some(new) =
                slot.as_object().and_then(|p| rewritten(p, &format!("/app-health/{name}/{suffix}"), status_port))
        {
            *slot = Value::Object(new);
        }
    }
    let Some(lifecycle) = fields.get_mut("lifecycle").and_then(Value::as_object_mut) else { return };
    for (field, suffix) in HOOKS {
        if let Some(slot) = lifecycle.get_mut(field)
            && let Some(new) =
                slot.as_object().and_then(|h| rewritten(h, &format!("/app-lifecycle/{name}/{suffix}"), status_port))
        {
            *slot = Value::Object(new);
        }
    }
}

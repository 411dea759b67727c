//! Whether an injected pod's sidecar is what its injector would inject today.
//!
//! Exact, not a version guess: the pod is injected again with today's config (re-injection strips
//! what its `sidecar.istio.io/status` lists first, so this runs on the pod's own pre-injection form)
//! and the injected parts of the result are compared with the pod's: the containers and volumes the
//! status annotation lists (image, command, args, env, resources, probes, mounts, security context,
//! ports, lifecycle), the image pull secrets, and the labels and annotations the injector writes.
//! Values the API server fills in by default (`fieldRef.apiVersion: v1`, probe thresholds, volume
//! `defaultMode: 420`, port `protocol: TCP`, quantities in their canonical form) do not count as
//! differences, so a pod read back from a cluster compares equal to a fresh injection.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::inject::{Decision, InjectRequest, Injector};
use crate::status::SidecarStatus;
use crate::{names, status};

/// Why a pod cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// The pod carries no `sidecar.istio.io/status` annotation.
    #[error("the pod is not injected (no sidecar.istio.io/status annotation)")]
    NotInjected,
    /// The status annotation does not parse.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// The injector's patch does not apply to the pod.
    #[error("re-injecting the pod: the patch does not apply: {0}")]
    Patch(String),
}

/// The container fields the injector renders, compared one by one.
const CONTAINER_FIELDS: [&str; 12] = [
    "image",
    "command",
    "args",
    "env",
    "resources",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "volumeMounts",
    "securityContext",
    "ports",
    "lifecycle",
];

/// The differences between `pod` and what `injector` would inject into it today, each one line
/// (`istio-proxy image proxyv2:1.27.0 → 1.28.0`, `istio-proxy env PROXY_CONFIG changed`). Empty
/// means the sidecar is current. A pod the injector would now skip or deny gets one line saying so.
///
/// `NativeSidecars::Auto` resolves to what the pod has (istio-proxy among its init containers or
/// not), since the nodes' kubelet versions are not known here.
pub fn differences(pod: &Value, injector: &Injector) -> Result<Vec<String>, DriftError> {
    let actual_status = status_of(pod)?.ok_or(DriftError::NotInjected)?;
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let native_now = list(pod, "initContainers").iter().any(|c| name_of(c) == names::CONTAINER_PROXY);
    let req = InjectRequest { namespace, nodes_support_native_sidecars: native_now, ..Default::default() };
    let mut expected = pod.clone();
    match injector.inject(pod, &req) {
        Decision::Patch(patch) => {
            json_patch::patch(&mut expected, &patch).map_err(|e| DriftError::Patch(e.to_string()))?;
        }
        Decision::Skip(reason) => {
            return Ok(vec![format!("the injector would not inject it now ({})", reason.label())]);
        }
        Decision::Deny(message) => return Ok(vec![format!("the injector would deny it now: {message}")]),
    }
    let expected_status = status_of(&expected)?.unwrap_or_default();
    Ok(compare(pod, &actual_status, &expected, &expected_status))
}

fn status_of(pod: &Value) -> Result<Option<SidecarStatus>, status::StatusError> {
    let text = pod.get("metadata").and_then(|m| m.get("annotations")).and_then(|a| a.get(names::SIDECAR_STATUS));
    text.and_then(Value::as_str).map(SidecarStatus::parse).transpose()
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(pod: &'a Value, field: &str) -> &'a [Value] {
    pod.get("spec").and_then(|s| s.get(field)).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Finds container `name` in the init containers or the containers; returns it and its list.
fn container<'a>(pod: &'a Value, name: &str) -> Option<(&'static str, &'a Value)> {
    for field in ["initContainers", "containers"] {
        if let Some(c) = list(pod, field).iter().find(|c| name_of(c) == name) {
            return Some((field, c));
        }
    }
    None
}

/// The pure comparison of an injected pod with its re-injection.
fn compare(
    actual: &Value,
    actual_status: &SidecarStatus,
    expected: &Value,
    expected_status: &SidecarStatus,
) -> Vec<String> {
    let mut out = Vec::new();
    if actual_status.revision != expected_status.revision {
        out.push(format!("revision {} → {}", actual_status.revision, expected_status.revision));
    }
    let union = |a: &[String], b: &[String]| -> Vec<String> {
        let mut seen = BTreeSet::new();
        a.iter().chain(b).filter(|n| seen.insert(n.as_str())).cloned().collect()
    };
    let actual_containers: Vec<String> =
        actual_status.init_containers.iter().chain(&actual_status.containers).cloned().collect();
    let expected_containers: Vec<String> =
        expected_status.init_containers.iter().chain(&expected_status.containers).cloned().collect();
    for name in union(&actual_containers, &expected_containers) {
        let (was, now) = (container(actual, &name), container(expected, &name));
        match (was, now) {
            (None, None) => {}
            (None, Some(_)) => out.push(format!("container {name} added")),
            (Some(_), None) => out.push(format!("container {name} removed")),
            (Some((was_list, a)), Some((now_list, e))) => {
                if was_list != now_list {
                    out.push(format!("{name} moves from {was_list} to {now_list}"));
                }
                container_differences(&name, a, e, &mut out);
            }
        }
    }
    for name in union(&actual_status.volumes, &expected_status.volumes) {
        let find = |pod: &Value| list(pod, "volumes").iter().find(|v| name_of(v) == name.as_str()).cloned();
        match (find(actual), find(expected)) {
            (None, None) => {}
            (None, Some(_)) => out.push(format!("volume {name} added")),
            (Some(_), None) => out.push(format!("volume {name} removed")),
            (Some(a), Some(e)) if normalised(&a) != normalised(&e) => out.push(format!("volume {name} changed")),
            _ => {}
        }
    }
    if actual_status.image_pull_secrets != expected_status.image_pull_secrets {
        out.push(format!(
            "imagePullSecrets [{}] → [{}]",
            actual_status.image_pull_secrets.join(","),
            expected_status.image_pull_secrets.join(",")
        ));
    }
    for (what, field) in [("label", "labels"), ("annotation", "annotations")] {
        let empty = Map::new();
        let map = |pod: &'_ Value| -> Map<String, Value> {
            pod.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_object).unwrap_or(&empty).clone()
        };
        let (a, e) = (map(actual), map(expected));
        let keys: BTreeSet<&String> = a.keys().chain(e.keys()).collect();
        for key in keys {
            if key == names::SIDECAR_STATUS {
                let lists = |s: &SidecarStatus| {
                    (s.init_containers.clone(), s.containers.clone(), s.volumes.clone(), s.image_pull_secrets.clone())
                };
                if lists(actual_status) != lists(expected_status) {
                    out.push(format!("annotation {key} changed"));
                }
                continue;
            }
            match (a.get(key), e.get(key)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => out.push(format!("{what} {key} {} → {}", short(x), short(y))),
                (None, Some(y)) => out.push(format!("{what} {key}={} added", short(y))),
                (Some(_), None) => out.push(format!("{what} {key} removed")),
                (None, None) => {}
            }
        }
    }
    out
}

/// A label or annotation value for one line: quoted, cut after 40 characters.
fn short(v: &Value) -> String {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    if text.chars().count() > 40 {
        format!("{:?}…", text.chars().take(40).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

fn container_differences(name: &str, actual: &Value, expected: &Value, out: &mut Vec<String>) {
    for field in CONTAINER_FIELDS {
        let (a, e) = (actual.get(field), expected.get(field));
        match field {
            "image" => {
                let (a, e) = (a.and_then(Value::as_str).unwrap_or(""), e.and_then(Value::as_str).unwrap_or(""));
                if a != e {
                    out.push(format!("{name} image {}", image_change(a, e)));
                }
            }
            "env" => env_differences(name, a, e, out),
            "resources" => {
                let (a, e) = (resources(a), resources(e));
                if let Some(key) = a.keys().chain(e.keys()).find(|k| a.get(*k) != e.get(*k)) {
                    let show = |m: &std::collections::BTreeMap<String, String>| {
                        m.get(key).cloned().unwrap_or_else(|| "unset".into())
                    };
                    out.push(format!("{name} resources {key} {} → {}", show(&a), show(&e)));
                }
            }
            _ => {
                let empty = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v == &Value::Array(Vec::new()));
                if (empty(a) && empty(e)) || a.map(|v| normalised_at(field, v)) == e.map(|v| normalised_at(field, v)) {
                    continue;
                }
                out.push(format!("{name} {field} changed"));
            }
        }
    }
}

/// `proxyv2:1.27.0 → 1.28.0` for a new tag of the same image, else both images' last path segments.
pub fn image_change(was: &str, now: &str) -> String {
    let last = |i: &str| i.rsplit('/').next().unwrap_or(i).to_string();
    let repo = |i: &str| match i.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
        _ => (i.to_string(), String::new()),
    };
    let ((was_repo, _), (now_repo, now_tag)) = (repo(was), repo(now));
    if was_repo == now_repo && !now_tag.is_empty() {
        format!("{} → {now_tag}", last(was))
    } else if last(was) == last(now) {
        format!("{was} → {now}")
    } else {
        format!("{} → {}", last(was), last(now))
    }
}

fn env_differences(name: &str, actual: Option<&Value>, expected: Option<&Value>, out: &mut Vec<String>) {
    let vars = |v: Option<&Value>| -> Vec<(String, Value)> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let mut e = normalised(e);
                // JSON-valued variables (PROXY_CONFIG, ISTIO_META_POD_PORTS, ...) compare by their JSON.
                if let Some(text) = e.get("value").and_then(Value::as_str)
                    && text.trim_start().starts_with(['{', '['])
                    && let Ok(parsed) = serde_json::from_str::<Value>(text)
                {
                    e["value"] = parsed;
                }
                (name_of(&e).to_string(), e)
            })
            .collect()
    };
    let (a, e) = (vars(actual), vars(expected));
    for (key, want) in &e {
        match a.iter().find(|(k, _)| k == key) {
            None => out.push(format!("{name} env {key} added")),
            Some((_, got)) if got != want => out.push(format!("{name} env {key} changed")),
            Some(_) => {}
        }
    }
    for (key, _) in &a {
        if !e.iter().any(|(k, _)| k == key) {
            out.push(format!("{name} env {key} removed"));
        }
    }
}

/// `requests.cpu`, `limits.memory`, ... in canonical quantity form.
fn resources(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for kind in ["requests", "limits"] {
        for (k, q) in v.and_then(|r| r.get(kind)).and_then(Value::as_object).into_iter().flatten() {
            let text = q.as_str().map_or_else(|| q.to_string(), str::to_string);
            let canonical = crate::inject::quantity::canonical(&text).unwrap_or(text);
            out.insert(format!("{kind}.{k}"), canonical);
        }
    }
    out
}

/// Whether `a` and `b` are the same pod once the API server has read them: equal but for what its
/// decoding into the Go types and its defaulting change (member order, the values it fills in by
/// default, zero values and empty lists it leaves out, requests it copies from limits, the
/// spelling of quantities). A pod reviewed again after the API server applied a patch compares
/// equal to itself with the patch's parts as the injector writes them.
pub fn same_pod(a: &Value, b: &Value) -> bool {
    normalised(a) == normalised(b)
}

/// A copy without the values the API server fills in by default, and without empty maps, empty
/// lists and nulls.
fn normalised(v: &Value) -> Value {
    normalised_at("", v)
}

/// [`normalised`] for the value of field `parent` (`readinessProbe`, `ports`).
fn normalised_at(parent: &str, v: &Value) -> Value {
    let mut v = v.clone();
    strip_defaults(parent, &mut v);
    v
}

/// Defaults the API server writes, and zero values its encoder leaves out: `(parent key, "*probe"
/// for any probe or "*container" for any container list, key, value)`.
const DEFAULTS: [(&str, &str, &str); 29] = [
    ("fieldRef", "apiVersion", "\"v1\""),
    ("httpGet", "scheme", "\"HTTP\""),
    ("httpGet", "path", "\"/\""),
    ("grpc", "service", "\"\""),
    ("*probe", "successThreshold", "1"),
    ("*probe", "timeoutSeconds", "1"),
    ("*probe", "periodSeconds", "10"),
    ("*probe", "failureThreshold", "3"),
    ("*probe", "initialDelaySeconds", "0"),
    ("configMap", "defaultMode", "420"),
    ("secret", "defaultMode", "420"),
    ("downwardAPI", "defaultMode", "420"),
    ("projected", "defaultMode", "420"),
    ("serviceAccountToken", "expirationSeconds", "3600"),
    ("hostPath", "type", "\"\""),
    ("ports", "protocol", "\"TCP\""),
    ("ports", "hostPort", "0"),
    ("env", "value", "\"\""),
    ("volumeMounts", "readOnly", "false"),
    ("resourceFieldRef", "divisor", "\"0\""),
    ("*container", "terminationMessagePath", "\"/dev/termination-log\""),
    ("*container", "terminationMessagePolicy", "\"File\""),
    ("*container", "workingDir", "\"\""),
    ("spec", "dnsPolicy", "\"ClusterFirst\""),
    ("spec", "restartPolicy", "\"Always\""),
    ("spec", "terminationGracePeriodSeconds", "30"),
    ("spec", "schedulerName", "\"default-scheduler\""),
    ("spec", "enableServiceLinks", "true"),
    ("spec", "hostNetwork", "false"),
];

/// Fields holding a Kubernetes quantity, and maps of them, compared in canonical form.
const QUANTITIES: [&str; 2] = ["sizeLimit", "divisor"];
const QUANTITY_MAPS: [&str; 2] = ["requests", "limits"];

fn strip_defaults(parent: &str, v: &mut Value) {
    fn matches(p: &str, parent: &str) -> bool {
        p == parent
            || (p == "*probe" && parent.ends_with("Probe"))
            || (p == "*container" && matches!(parent, "containers" | "initContainers" | "ephemeralContainers"))
    }
    fn walk(parent: &str, v: &mut Value) {
        match v {
            Value::Object(map) => {
                if matches("*container", parent) {
                    container_defaults(map);
                }
                if parent == "resources" {
                    requests_from_limits(map);
                }
                if QUANTITY_MAPS.contains(&parent) {
                    map.values_mut().for_each(canonical_quantity);
                }
                // Only a key that has a default here is compared (the text of a whole subtree
                // for every member made a pod's comparison ten times the cost of its injection).
                map.retain(|k, val| {
                    !DEFAULTS.iter().any(|(p, key, default)| {
                        key == k
                            && matches(p, parent)
                            && serde_json::from_str::<Value>(default).is_ok_and(|d| d == *val)
                    })
                });
                for (k, val) in map.iter_mut() {
                    walk(k, val);
                }
                map.retain(|_, val| match val {
                    Value::Object(m) => !m.is_empty(),
                    Value::Array(items) => !items.is_empty(),
                    Value::Null => false,
                    _ => true,
                });
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(parent, i)),
            _ if QUANTITIES.contains(&parent) => canonical_quantity(v),
            _ => {}
        }
    }
    walk(parent, v);
}

/// Drops a container's `imagePullPolicy` when it is the one the API server gives its image
/// (`Always` for `:latest` or no tag, `IfNotPresent` otherwise).
fn container_defaults(container: &mut Map<String, Value>) {
    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
    let (name, digest) = image.split_once('@').map_or((image, false), |(name, _)| (name, true));
    let last = name.rsplit('/').next().unwrap_or(name);
    let latest = match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !digest,
    };
    let default = if latest { "Always" } else { "IfNotPresent" };
    if container.get("imagePullPolicy").and_then(Value::as_str) == Some(default) {
        container.remove("imagePullPolicy");
    }
}

/// Drops the requests that equal the limits (the API server copies a limit to a missing request).
fn requests_from_limits(resources: &mut Map<String, Value>) {
    let Some(Value::Object(limits)) = resources.get("limits") else { return };
    let mut limits = limits.clone();
    limits.values_mut().for_each(canonical_quantity);
    if let Some(Value::Object(requests)) = resources.get_mut("requests") {
        requests.retain(|k, q| {
            canonical_quantity(q);
            limits.get(k) != Some(q)
        });
    }
}

/// A quantity (string or number) in its canonical text; anything else as it is.
fn canonical_quantity(v: &mut Value) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return,
    };
    if let Ok(canonical) = crate::inject::quantity::canonical(&text) {
        *v = Value::String(canonical);
    }
}

#[cfg(test)]
pub(crate) mod tests;

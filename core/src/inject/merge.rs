//! Kubernetes strategic merge, as much of it as the injector needs: objects merge key by key, lists of
//! containers, env vars, ports, mounts, volumes and pull secrets merge by their key, other lists are
//! replaced. Istio merges its template into the pod, and a user's `istio-proxy` into the template's,
//! this way.

use serde_json::{Map, Value};

/// The merge key of a list field, if the list merges element by element.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" | "ephemeralContainers" => {
            Some("name")
        }
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        _ => None,
    }
}

/// Merges `patch` into `target`: patch values win, `null` deletes, keyed lists merge by key.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => merge_object(t, p),
        (t, p) => *t = p.clone(),
    }
}

fn merge_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Array(t)), Value::Array(p)) if merge_key(key).is_some() => {
                merge_list(t, p.clone(), merge_key(key).unwrap_or("name"));
            }
            (Some(t @ Value::Object(_)), Value::Object(_)) => merge(t, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Merges a keyed list as a strategic merge orders it: the patch's elements first, in patch order
/// (merged into the matching original element, if any), then the original elements the patch does
/// not name, in their order.
pub fn merge_list(target: &mut Vec<Value>, patch: Vec<Value>, key: &str) {
    if patch.is_empty() {
        return;
    }
    let mut rest = std::mem::take(target);
    for item in patch {
        let id = item.get(key);
        match id.and_then(|id| rest.iter().position(|t| t.get(key) == Some(id))) {
            Some(i) => {
                let mut existing = rest.remove(i);
                merge(&mut existing, &item);
                target.push(existing);
            }
            None => target.push(item),
        }
    }
    target.extend(rest);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut pod = json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["x"]}]});
        let patch = json!({"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}], "args": ["y"]},
            {"name": "b"}]});
        merge(&mut pod, &patch);
        assert_eq!(
            pod,
            json!({"containers": [
                {"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}], "args": ["y"]},
                {"name": "b"}]})
        );
    }

    #[test]
    fn null_deletes_and_objects_merge() {
        let mut c = json!({"securityContext": {"runAsUser": 1337, "runAsGroup": 1337}, "image": "x"});
        merge(&mut c, &json!({"securityContext": {"runAsUser": 1234}, "image": null}));
        assert_eq!(c, json!({"securityContext": {"runAsUser": 1234, "runAsGroup": 1337}}));
    }
}

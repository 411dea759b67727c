//! The ServiceAccount admission plugin's mounts on injected containers.
//!
//! With `reinvocationPolicy: IfNeeded` the API server runs its ServiceAccount plugin again after a
//! webhook changed the pod: the plugin mounts the pod's token volume (`kube-api-access-*`) at
//! [`TOKEN_MOUNT_PATH`] in every container that has no mount there, the injected `istio-proxy` and
//! `istio-init` included, and reviews the pod again. Re-injection keeps those mounts on the
//! containers the previous injection added, so the re-review of a pod that already carries the
//! injection the injector would write gets an empty patch, and one that needs a new injection gets
//! the new containers with the mounts the plugin gave the old ones.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::names;
use crate::status::SidecarStatus;

/// Where the ServiceAccount plugin mounts the service-account token volume.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The patch of `plan` for `pod`, with the token mounts of the injected containers (the ones the
/// pod's `sidecar.istio.io/status` names) kept: `plan` sees the pod without them, and every
/// container its operations write under one of those names gets its mount back.
pub(super) fn keep(
    pod: &Value,
    plan: impl FnOnce(&Value) -> Result<Vec<PatchOperation>, String>,
) -> Result<Vec<PatchOperation>, String> {
    let carried = token_mounts(pod);
    if carried.is_empty() {
        return plan(pod);
    }
    let mut stripped = pod.clone();
    for list in ["containers", "initContainers"] {
        for c in stripped.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut).into_iter().flatten() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
            if !carried.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if let Some(fields) = c.as_object_mut() {
                let empty = match fields.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                    Some(mounts) => {
                        mounts.retain(|m| !is_token_mount(m));
                        mounts.is_empty()
                    }
                    None => false,
                };
                if empty {
                    fields.remove("volumeMounts");
                }
            }
        }
    }
    let mut ops = plan(&stripped)?;
    for op in &mut ops {
        let (path, value) = match op {
            PatchOperation::Add(add) => (add.path.as_str(), &mut add.value),
            PatchOperation::Replace(replace) => (replace.path.as_str(), &mut replace.value),
            _ => continue,
        };
        // A whole list (`/spec/containers`) or one element (`/spec/containers/1`, `.../-`); our
        // containers are never patched field by field.
        match path.split('/').collect::<Vec<_>>()[..] {
            ["", "spec", "containers" | "initContainers"] => {
                value.as_array_mut().into_iter().flatten().for_each(|c| give_back(c, &carried));
            }
            ["", "spec", "containers" | "initContainers", _] => give_back(value, &carried),
            _ => {}
        }
    }
    Ok(ops)
}

fn is_token_mount(mount: &Value) -> bool {
    mount.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)
}

/// The token mounts of the containers the pod's status says were injected, by container name.
fn token_mounts(pod: &Value) -> Vec<(String, Value)> {
    let status = pod
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(names::SIDECAR_STATUS))
        .and_then(Value::as_str)
        .and_then(|text| SidecarStatus::parse(text).ok());
    let Some(status) = status else { return Vec::new() };
    let mut carried = Vec::new();
    for list in ["containers", "initContainers"] {
        let containers = pod.get("spec").and_then(|s| s.get(list)).and_then(Value::as_array);
        for c in containers.into_iter().flatten() {
            let Some(name) = c.get("name").and_then(Value::as_str) else { continue };
            if !status.owns_container(name) || carried.iter().any(|(n, _)| n == name) {
                continue;
            }
            let mounts = c.get("volumeMounts").and_then(Value::as_array);
            if let Some(mount) = mounts.into_iter().flatten().find(|m| is_token_mount(m)) {
                carried.push((name.to_owned(), mount.clone()));
            }
        }
    }
    carried
}

/// Appends its carried token mount to container `c` when it is one of `carried` and has no mount at
/// the token path.
fn give_back(c: &mut Value, carried: &[(String, Value)]) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    let Some((_, mount)) = carried.iter().find(|(n, _)| n == name) else { return };
    let mount = mount.clone();
    let Some(fields) = c.as_object_mut() else { return };
    let mounts = fields.entry("volumeMounts").or_insert_with(|| Value::Array(Vec::new()));
    if let Some(mounts) = mounts.as_array_mut()
        && !mounts.iter().any(is_token_mount)
    {
        mounts.push(mount);
    }
}

//! The workload that owns a pod (`ISTIO_META_WORKLOAD_NAME`, `ISTIO_META_OWNER`, the canonical name),
//! derived the way Istio's injector derives it from the pod's controller reference.

use serde_json::Value;

/// The workload a pod belongs to: its API version, kind, name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// e.g. `apps/v1`; empty when unknown (then `ISTIO_META_OWNER` is left out).
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    /// The workload's name (the pod's name when the pod has no controller).
    pub name: String,
    /// The namespace; `default` when empty.
    pub namespace: String,
}

impl Workload {
    /// Derives the workload from a pod's metadata, as Istio does: a pod with a generated name and a
    /// controller reference belongs to that controller; a ReplicaSet whose name ends in the
    /// `pod-template-hash` belongs to a Deployment; a Job named `<name>-<8 to 10 digits>` to a CronJob.
    pub fn from_pod(pod: &Value, namespace: &str) -> Workload {
        let meta = pod.get("metadata");
        let text =
            |v: Option<&Value>, k: &str| v.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_owned();
        let pod_name = text(meta, "name");
        let label = |k: &str| meta.and_then(|m| m.get("labels")).and_then(|l| l.get(k)).and_then(Value::as_str);
        let mut workload = Workload {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name.clone(),
            namespace: namespace.to_owned(),
        };
        let generated = !text(meta, "generateName").is_empty();
        let controller = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true)));
        if let (true, Some(owner)) = (generated, controller) {
            workload.api_version = text(Some(owner), "apiVersion");
            workload.kind = text(Some(owner), "kind");
            workload.name = text(Some(owner), "name");
            let hash = label("pod-template-hash").unwrap_or("");
            let rollout_hash = label("rollouts-pod-template-hash").unwrap_or("");
            if workload.kind == "ReplicaSet" && !hash.is_empty() && workload.name.ends_with(hash) {
                workload.name = workload.name.strip_suffix(&format!("-{hash}")).unwrap_or(&workload.name).to_owned();
                workload.kind = "Deployment".into();
            } else if workload.kind == "ReplicaSet" && !rollout_hash.is_empty() && workload.name.ends_with(rollout_hash)
            {
                workload.name =
                    workload.name.strip_suffix(&format!("-{rollout_hash}")).unwrap_or(&workload.name).to_owned();
                workload.kind = "Rollout".into();
            } else if workload.kind == "ReplicationController"
                && let Some(dc) = label("deploymentconfig").filter(|d| !d.is_empty())
            {
                workload.name = dc.to_owned();
                workload.kind = "DeploymentConfig".into();
            } else if workload.kind == "Job"
                && let Some(cron) = cron_job_name(&workload.name)
            {
                workload.name = cron.to_owned();
                workload.kind = "CronJob".into();
                workload.api_version = "batch/v1".into();
            }
        }
        if workload.name.is_empty() {
            workload.name = pod_name;
        }
        workload
    }

    /// `kubernetes://apis/<apiVersion>/namespaces/<ns>/<kind>s/<name>`, or `None` without an API version
    /// or name.
    pub fn owner_uri(&self) -> Option<String> {
        if self.api_version.is_empty() || self.name.is_empty() {
            return None;
        }
        let ns = if self.namespace.is_empty() { "default" } else { &self.namespace };
        Some(format!(
            "kubernetes://apis/{}/namespaces/{ns}/{}s/{}",
            self.api_version,
            self.kind.to_lowercase(),
            self.name
        ))
    }
}

/// `name` of a Job called `<name>-<8 to 10 digits>` (a CronJob's job).
fn cron_job_name(job: &str) -> Option<&str> {
    let (name, stamp) = job.rsplit_once('-')?;
    (!name.is_empty() && (8..=10).contains(&stamp.len()) && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployment_from_replica_set_and_hash() {
        let pod = json!({"metadata": {"generateName": "hello-fake-", "labels": {"pod-template-hash": "fake"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-fake", "controller": true}]}});
        let w = Workload::from_pod(&pod, "default");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", "hello"));
        assert_eq!(w.owner_uri().unwrap(), "kubernetes://apis/apps/v1/namespaces/default/deployments/hello");
    }

    #[test]
    fn cron_job_from_job_name() {
        let pod = json!({"metadata": {"generateName": "pi-27800000-",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi-27800000", "controller": true}]}});
        let w = Workload::from_pod(&pod, "ns");
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("CronJob", "pi"));
    }

    #[test]
    fn plain_pod_is_its_own_workload() {
        let w = Workload::from_pod(&json!({"metadata": {"name": "p"}}), "");
        assert_eq!(w.owner_uri().unwrap(), "kubernetes://apis/v1/namespaces/default/pods/p");
        // A controller without a generated name is ignored, as in Istio.
        let pod = json!({"metadata": {"name": "p", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s", "controller": true}]}});
        assert_eq!(Workload::from_pod(&pod, "x").kind, "Pod");
    }
}

//! `kubectl mesh check-inject` against a cluster: an existing pod or workload (`pod/NAME`,
//! `deployment/NAME`, ...) or a pod that does not exist yet (`-l app=foo,version=v1`), checked against
//! every MutatingWebhookConfiguration the cluster has, its namespace's labels and the config each mesh
//! webhook serves. The verdicts and exit codes are the offline check's ([`super::check`]).

use anyhow::bail;
use mesh_core::inject::InjectConfig;
use mesh_core::selector::{LabelsError, labels_of};
use serde_json::{Map, Value, json};

use super::webhooks::{fetch_webhooks, read_config};
use super::{CheckInjectArgs, Report, check, pods_of, render, webhook_config};
use crate::cluster::Cluster;
use crate::cluster::objects::{DAEMONSETS, DEPLOYMENTS, JOBS, NAMESPACES, PODS, Resource, STATEFULSETS};

/// What to check: an object in the cluster, or a pod with these labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `pod/NAME`, `deployment/NAME`, ...
    Object(Resource, String),
    /// A pod that does not exist yet, with these labels.
    Labels(Map<String, Value>),
}

/// Parses `KIND/NAME` (kubectl's singular, plural and short names of the five kinds).
pub fn parse_target(text: &str) -> anyhow::Result<Target> {
    let Some((kind, name)) = text.split_once('/').filter(|(k, n)| !k.is_empty() && !n.is_empty()) else {
        bail!("invalid target {text:?}: want KIND/NAME, e.g. pod/reviews-5d8f-x2x7q or deployment/reviews");
    };
    let resource = match kind.to_lowercase().as_str() {
        "pod" | "pods" | "po" => PODS,
        "deployment" | "deployments" | "deploy" => DEPLOYMENTS,
        "statefulset" | "statefulsets" | "sts" => STATEFULSETS,
        "daemonset" | "daemonsets" | "ds" => DAEMONSETS,
        "job" | "jobs" => JOBS,
        other => bail!("invalid target {text:?}: {other:?} is not one of pod, deployment, statefulset, daemonset, job"),
    };
    Ok(Target::Object(resource, name.to_string()))
}

/// Parses `-l app=foo,version=v1` into the labels of a new pod ([`mesh_core::selector::parse_labels`]:
/// `key=value` pairs with Kubernetes' rules for keys and values; selector terms are refused).
pub fn parse_labels(text: &str) -> anyhow::Result<Target> {
    let labels = mesh_core::selector::parse_labels(text).map_err(|e| {
        let why = match e {
            LabelsError::NotALabel { .. } => {
                "; -l here describes the labels of a pod to be created, so it needs key=value pairs, \
                 e.g. -l app=reviews,version=v2"
            }
            _ => "",
        };
        anyhow::anyhow!("invalid -l {text:?}: {e}{why}")
    })?;
    Ok(Target::Labels(labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

/// Runs the live check.
pub async fn run(args: CheckInjectArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let target = match (&args.target, &args.selector) {
        (Some(t), _) => parse_target(t)?,
        (None, Some(l)) => parse_labels(l)?,
        (None, None) => bail!("give KIND/NAME, -l LABELS, or -f FILE --webhooks FILE"),
    };
    let fixed = read_config(args.config.as_ref())?;
    let cluster = Cluster::connect(&args.cluster).await?;
    let report = check_live(&cluster, &target, fixed.as_ref()).await?;
    out.write_all(render(std::slice::from_ref(&report), args.output)?.as_bytes())?;
    Ok(report.exit_code())
}

/// Fetches what the check needs (webhook configurations, the configs they serve, the namespace, the
/// object) and checks it.
pub async fn check_live(cluster: &Cluster, target: &Target, fixed: Option<&InjectConfig>) -> anyhow::Result<Report> {
    let ns = cluster.namespace.as_str();
    let (hooks, namespace, object) = futures::try_join!(
        fetch_webhooks(cluster, fixed.is_none()),
        cluster.get_object(NAMESPACES, None, ns),
        async {
            match target {
                Target::Object(resource, name) => cluster.get_object(*resource, Some(ns), name).await,
                Target::Labels(_) => Ok(None),
            }
        },
    )?;
    let Some(namespace) = namespace else { bail!("namespace {ns} not found") };
    let mut ns_labels = labels_of(&namespace).clone();
    ns_labels.insert("kubernetes.io/metadata.name".into(), json!(ns));
    let (name, pod, existing) = match target {
        Target::Object(resource, name) => {
            let Some(object) = object else {
                bail!("{}/{name} not found in namespace {ns}", resource.kind.to_lowercase());
            };
            let existing = resource.kind == "Pod";
            let Some((name, _, pod)) = pods_of(std::slice::from_ref(&object), ns).into_iter().next() else {
                bail!("{}/{name} has no pod template", resource.kind.to_lowercase());
            };
            (name, pod, existing)
        }
        Target::Labels(labels) => {
            let text: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
            let pod = json!({"metadata": {"namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app"}]}});
            (format!("new pod with labels {}", text.join(",")), pod, false)
        }
    };
    let config_for = |mwc: &Value, w: &Value| -> anyhow::Result<InjectConfig> {
        match fixed {
            Some(cfg) => Ok(cfg.clone()),
            None => webhook_config(&hooks.objects, mwc, w, "in the cluster"),
        }
    };
    check(&name, &pod, ns, &ns_labels, &hooks.mwcs, &config_for, existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("deploy/web").unwrap(), Target::Object(DEPLOYMENTS, "web".into()));
        assert_eq!(parse_target("Pod/x").unwrap(), Target::Object(PODS, "x".into()));
        assert_eq!(parse_target("sts/db").unwrap(), Target::Object(STATEFULSETS, "db".into()));
        let err = parse_target("service/web").unwrap_err().to_string();
        assert!(err.contains("\"service\" is not one of pod"), "{err}");
        assert!(parse_target("web").is_err());
        let Target::Labels(l) = parse_labels("app=foo,version=v1").unwrap() else { panic!() };
        assert_eq!(Value::Object(l), json!({"app": "foo", "version": "v1"}));
        let Target::Labels(l) = parse_labels("app.kubernetes.io/name==x, canary=").unwrap() else { panic!() };
        assert_eq!(Value::Object(l), json!({"app.kubernetes.io/name": "x", "canary": ""}));
        let err = parse_labels("app in (a,b)").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid -l \"app in (a,b)\": \"app in (a,b)\" is a selector requirement (key in/notin a set of values), \
             not a label: a label is key=value; -l here describes the labels of a pod to be created, so it needs \
             key=value pairs, e.g. -l app=reviews,version=v2"
        );
        let err = parse_labels("app=a,app=b").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid -l \"app=a,app=b\": label app is given twice, as \"a\" and \"b\": a pod has one value per label"
        );
        let err = parse_labels("app=-x").unwrap_err().to_string();
        assert!(err.starts_with("invalid -l \"app=-x\": invalid value \"-x\" for label app: "), "{err}");
    }
}

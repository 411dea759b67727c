//! `kubectl mesh check-inject`: why a pod is (or is not) injected, and by which webhook.
//!
//! The webhooks for pods of every MutatingWebhookConfiguration are evaluated against the namespace's
//! and the pod's labels with mesh-core's selector evaluation (exactly as the API server does); for a
//! mesh webhook that selects the pod, the injector's own decision rules run with the config that
//! webhook serves (found through its Service → Deployment → `--config` volume → ConfigMap). Everything
//! here is pure over JSON objects: offline they come from files (`-f`, `--webhooks`), live from the
//! API server. Exit codes: 0 injected by exactly one injector; 2 not injected, denied, or a conflict;
//! 1 the command failed.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, SkipReason};
use mesh_core::selector::{LabelSelector, Labels, labels_of};
use mesh_core::{SidecarStatus, names};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::exit::{OK as EXIT_OK, PROBLEM as EXIT_PROBLEM};

/// `kubectl mesh check-inject`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["target", "file", "selector"])))]
#[command(after_help = "Exit codes: 0 the pod will be (or is) injected by exactly one injector; 2 not injected, \
denied, or selected by several injectors; 1 the command failed.\n\nExamples:\n  \
kubectl mesh check-inject deployment/reviews -n shop\n  \
kubectl mesh check-inject pod/reviews-5d8f-x2x7q -n shop\n  \
kubectl mesh check-inject -n shop -l app=reviews,version=v2\n  \
kubectl mesh check-inject -f deployment.yaml --webhooks <(helm template mesh charts/mesh -n mesh-system)\n  \
kubectl mesh check-inject -f pod.yaml --webhooks webhooks.yaml --config config.yaml -o json")]
pub struct CheckInjectArgs {
    /// The object in the cluster: `pod/NAME`, `deployment/NAME`, `statefulset/NAME`, `daemonset/NAME` or `job/NAME`.
    #[arg(value_name = "KIND/NAME")]
    pub target: Option<String>,
    /// A pod that does not exist yet, by its labels (`app=foo,version=v1`), in the cluster.
    #[arg(short = 'l', long, value_name = "LABELS", conflicts_with = "target")]
    pub selector: Option<String>,
    /// Offline: the manifest to check (Pod, Deployment, StatefulSet, DaemonSet, Job, ReplicaSet, CronJob).
    #[arg(short = 'f', long = "filename", value_name = "FILE", requires = "webhooks", conflicts_with_all = ["target", "selector"])]
    pub file: Option<PathBuf>,
    /// Offline: MutatingWebhookConfigurations (e.g. `helm template` output; other kinds serve as the
    /// webhook's Service, Deployment and ConfigMap, Namespaces give namespace labels).
    #[arg(long, value_name = "FILE", requires = "file", conflicts_with_all = ["target", "selector"])]
    pub webhooks: Option<PathBuf>,
    /// The injector config to use for every mesh webhook (default: the one each webhook serves).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// kubectl's cluster flags (offline only `-n`: the namespace of objects without one, default `default`).
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table (check-inject: the webhook table and the verdict line).
    Table,
    /// The report as JSON.
    Json,
    /// The report as YAML.
    Yaml,
}

/// One webhook for pods and what it does with the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRow {
    /// `<configuration>/<webhook name>`.
    pub webhook: String,
    /// The configuration's `istio.io/rev` label (`default` when absent); empty for other webhooks.
    pub revision: String,
    /// Whether the webhook is one of mesh's (its configuration is `app.kubernetes.io/part-of: mesh`).
    pub mesh: bool,
    /// Whether its selectors select the pod.
    pub selects: bool,
    /// Which selector decided, and the requirement that failed.
    pub selects_why: String,
    /// `inject`, `skip`, `deny`, `-` (not selected) or `unknown` (not a mesh webhook).
    pub decision: String,
    /// The rule that decided.
    pub decision_why: String,
}

/// The outcome for the pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum Verdict {
    /// Exactly one injector injects it.
    Injected {
        /// The webhook (`<configuration>/<name>`).
        webhook: String,
        /// Its revision.
        revision: String,
    },
    /// No injector injects it.
    NotInjected {
        /// Why, and what would change it.
        reason: String,
    },
    /// A mesh webhook refuses the pod.
    Denied {
        /// The denial message.
        message: String,
    },
    /// Several injectors select the pod.
    Conflict {
        /// Their webhooks.
        webhooks: Vec<String>,
    },
}

/// What an existing pod carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Existing {
    /// Whether it has `sidecar.istio.io/status` and an `istio-proxy` container.
    pub injected: bool,
    /// The revision its status annotation names.
    pub revision: Option<String>,
    /// How that compares with the verdict.
    pub note: String,
}

/// The whole answer for one pod (or pod template).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was checked, e.g. `deployment/reviews`.
    pub target: String,
    /// Its namespace.
    pub namespace: String,
    /// Every webhook for pods.
    pub webhooks: Vec<WebhookRow>,
    /// The verdict.
    pub verdict: Verdict,
    /// For an existing pod: whether it is injected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<Existing>,
}

impl Report {
    /// The exit code: 0 injected by one injector (and, for an existing pod, actually injected), else 2.
    pub fn exit_code(&self) -> u8 {
        let ok = matches!(self.verdict, Verdict::Injected { .. }) && self.existing.as_ref().is_none_or(|e| e.injected);
        if ok { EXIT_OK } else { EXIT_PROBLEM }
    }
}

/// The webhooks of a configuration that the API server calls for a pod CREATE (`""/v1/pods`).
pub fn pod_webhooks(mwc: &Value) -> Vec<&Value> {
    let has = |r: &Value, field: &str, want: &str| {
        r.get(field).and_then(Value::as_array).is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
    };
    let covers = |w: &Value| {
        w.get("rules").and_then(Value::as_array).is_some_and(|rules| {
            rules.iter().any(|r| {
                (has(r, "operations", "CREATE"))
                    && has(r, "apiGroups", "")
                    && has(r, "apiVersions", "v1")
                    && (has(r, "resources", "pods") || has(r, "resources", "*/*"))
            })
        })
    };
    mwc.get("webhooks")
        .and_then(Value::as_array)
        .map(|ws| ws.iter().filter(|w| covers(w)).collect())
        .unwrap_or_default()
}

/// Whether a configuration is one of mesh's releases.
pub fn is_mesh(mwc: &Value) -> bool {
    labels_of(mwc).label("app.kubernetes.io/part-of") == Some("mesh")
}

/// The revision a configuration serves (its `istio.io/rev` label, `default` when absent).
pub fn revision_of(mwc: &Value) -> String {
    labels_of(mwc).label(names::ISTIO_REV).unwrap_or("default").to_string()
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// The injector config a mesh webhook serves, found among `objects` the way the webhook's pods get it:
/// `clientConfig.service` → that Service's selector → the Deployment whose pods it selects → the
/// container's `--config=PATH` → the volume mounted over PATH → its ConfigMap's key. Returns the
/// ConfigMap's `namespace/name` and the config text.
pub fn served_config(objects: &[Value], webhook: &Value) -> Option<(String, String)> {
    let (svc_name, svc_ns) =
        (text(webhook, "/clientConfig/service/name"), text(webhook, "/clientConfig/service/namespace"));
    let of_kind = |kind: &'static str| {
        objects.iter().filter(move |o| text(o, "/kind") == kind && text(o, "/metadata/namespace") == svc_ns)
    };
    let svc = of_kind("Service").find(|o| text(o, "/metadata/name") == svc_name)?;
    let selector = svc.pointer("/spec/selector").and_then(Value::as_object)?;
    let deploy = of_kind("Deployment").find(|d| {
        let labels = d.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
        labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
    })?;
    let spec = deploy.pointer("/spec/template/spec")?;
    for c in spec.get("containers").and_then(Value::as_array).into_iter().flatten() {
        let args = c.get("args").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        let Some(path) = args.filter_map(|a| a.strip_prefix("--config=")).next() else { continue };
        for m in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
            let mount = text(m, "/mountPath").trim_end_matches('/');
            let Some(file) = path.strip_prefix(mount).and_then(|f| f.strip_prefix('/')) else { continue };
            let volume = spec
                .get("volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|v| text(v, "/name") == text(m, "/name"))?;
            let cm_name = text(volume, "/configMap/name");
            let cm = of_kind("ConfigMap").find(|o| text(o, "/metadata/name") == cm_name)?;
            let data = cm.pointer("/data")?.get(file)?.as_str()?;
            return Some((format!("{svc_ns}/{cm_name}"), data.to_string()));
        }
    }
    None
}

/// The config mesh webhook `w` of configuration `mwc` serves, from `objects` ([`served_config`]);
/// `place` says where they came from (`in the webhooks file`) for the error when it is not there.
pub fn webhook_config(objects: &[Value], mwc: &Value, w: &Value, place: &str) -> anyhow::Result<InjectConfig> {
    let Some((source, text_cfg)) = served_config(objects, w) else {
        bail!(
            "webhook {}/{}: the config it serves was not found (no Service, Deployment with --config and ConfigMap \
             for it {place}): give --config FILE",
            text(mwc, "/metadata/name"),
            text(w, "/name")
        );
    };
    InjectConfig::from_yaml(&text_cfg).with_context(|| format!("config in ConfigMap {source}"))
}

/// Why the injector skips a pod, in words, with what would change it.
pub fn skip_text(reason: SkipReason) -> (&'static str, &'static str) {
    match reason {
        SkipReason::HostNetwork => ("the pod uses the host network", "spec.hostNetwork: false"),
        SkipReason::IgnoredNamespace => ("the namespace is one the injector never injects", "another namespace"),
        SkipReason::PodOptOut => {
            ("sidecar.istio.io/inject=false on the pod", "remove the label or annotation sidecar.istio.io/inject")
        }
        SkipReason::NeverInjectSelector => {
            ("the pod matches the config's neverInjectSelector", "label sidecar.istio.io/inject=true")
        }
        SkipReason::PolicyDisabled => {
            ("the config's policy is disabled and the pod does not opt in", "label sidecar.istio.io/inject=true")
        }
        SkipReason::NotAPod => ("not a pod", "a pod"),
    }
}

/// Checks one pod (or template as a pod: `metadata` + `spec`) in `namespace` with `ns_labels` against
/// every configuration. `config_for` gives the config a mesh webhook serves (or an error naming why
/// none was found).
pub fn check(
    target: &str,
    pod: &Value,
    namespace: &str,
    ns_labels: &Map<String, Value>,
    mwcs: &[Value],
    config_for: &dyn Fn(&Value, &Value) -> anyhow::Result<InjectConfig>,
    existing: bool,
) -> anyhow::Result<Report> {
    let pod_labels = labels_of(pod);
    let mut rows = Vec::new();
    let mut injectors = Vec::new();
    let mut denied = None;
    let mut skipped: Option<String> = None;
    let mut nearest: Option<String> = None;
    for mwc in mwcs {
        let mesh = is_mesh(mwc);
        let istio = text(mwc, "/metadata/name").contains("sidecar-injector");
        let revision = if mesh || istio { revision_of(mwc) } else { String::new() };
        for w in pod_webhooks(mwc) {
            let name = format!("{}/{}", text(mwc, "/metadata/name"), text(w, "/name"));
            let parse = |field: &str| -> anyhow::Result<Option<LabelSelector>> {
                match w.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => {
                        Ok(Some(serde_json::from_value(v.clone()).with_context(|| format!("webhook {name}: {field}"))?))
                    }
                }
            };
            let (ns_sel, obj_sel) = (parse("namespaceSelector")?, parse("objectSelector")?);
            let ns_ok = LabelSelector::evaluate(ns_sel.as_ref(), ns_labels)
                .with_context(|| format!("webhook {name}: namespaceSelector"))?;
            let obj_ok = LabelSelector::evaluate(obj_sel.as_ref(), pod_labels)
                .with_context(|| format!("webhook {name}: objectSelector"))?;
            let selects_why = match (ns_ok, obj_ok) {
                (true, true) => "namespace and object selectors match".to_string(),
                (false, _) => format!(
                    "namespaceSelector needs {}",
                    ns_sel.as_ref().and_then(|s| s.first_failure(ns_labels)).unwrap_or_default()
                ),
                (true, false) => format!(
                    "objectSelector needs {}",
                    obj_sel.as_ref().and_then(|s| s.first_failure(pod_labels)).unwrap_or_default()
                ),
            };
            let selects = ns_ok && obj_ok;
            if !selects && (mesh || istio) && nearest.is_none() {
                nearest = Some(format!("{selects_why} ({name})"));
            }
            let (decision, decision_why) = if !selects {
                ("-".to_string(), String::new())
            } else if mesh {
                let cfg = config_for(mwc, w)?;
                let req = InjectRequest { namespace, nodes_support_native_sidecars: true, ..Default::default() };
                let mut p = pod.clone();
                if let Some(m) = p.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.entry("namespace").or_insert_with(|| json!(namespace));
                }
                match mesh_core::inject::inject(&p, &req, &cfg) {
                    Decision::Patch(_) => {
                        injectors.push((name.clone(), revision.clone()));
                        let why = match cfg.policy {
                            mesh_core::inject::InjectPolicy::Enabled => "policy enabled",
                            mesh_core::inject::InjectPolicy::Disabled => "the pod opts in (policy disabled)",
                        };
                        ("inject".to_string(), why.to_string())
                    }
                    Decision::Skip(reason) => {
                        let (why, fix) = skip_text(reason);
                        skipped.get_or_insert(format!("{why} ({name}); to inject: {fix}"));
                        ("skip".to_string(), why.to_string())
                    }
                    Decision::Deny(message) => {
                        denied.get_or_insert(message.clone());
                        ("deny".to_string(), message)
                    }
                }
            } else if istio {
                injectors.push((name.clone(), revision.clone()));
                ("unknown".to_string(), "Istio's injector: its config decides".to_string())
            } else {
                ("unknown".to_string(), "not an injector".to_string())
            };
            rows.push(WebhookRow {
                webhook: name,
                revision: revision.clone(),
                mesh,
                selects,
                selects_why,
                decision,
                decision_why,
            });
        }
    }
    let verdict = if injectors.len() > 1 {
        Verdict::Conflict { webhooks: injectors.into_iter().map(|(w, _)| w).collect() }
    } else if let Some((webhook, revision)) = injectors.pop() {
        Verdict::Injected { webhook, revision }
    } else if let Some(message) = denied {
        Verdict::Denied { message }
    } else if let Some(reason) = skipped {
        Verdict::NotInjected { reason }
    } else {
        let fix = format!(
            "label the namespace istio-injection=enabled (kubectl label namespace {namespace} istio-injection=enabled)"
        );
        let reason = match nearest {
            Some(n) => format!("no injector selects the pod: {n}; to inject: {fix}"),
            None => format!("no mesh or Istio injector webhook is installed; to inject: install one and {fix}"),
        };
        Verdict::NotInjected { reason }
    };
    let existing = existing.then(|| existing_state(pod, &verdict));
    Ok(Report { target: target.to_string(), namespace: namespace.to_string(), webhooks: rows, verdict, existing })
}

/// Whether an existing pod is injected, and how that compares with the verdict.
fn existing_state(pod: &Value, verdict: &Verdict) -> Existing {
    let status = pod.pointer(&format!("/metadata/annotations/{}", names::SIDECAR_STATUS.replace('/', "~1")));
    let status = status.and_then(Value::as_str).and_then(|s| SidecarStatus::parse(s).ok());
    let has_proxy = ["/spec/containers", "/spec/initContainers"].iter().any(|p| {
        pod.pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|c| text(c, "/name") == names::CONTAINER_PROXY))
    });
    let injected = status.is_some() && has_proxy;
    let revision = status.map(|s| s.revision);
    let note = match (verdict, injected) {
        (Verdict::Injected { revision: want, .. }, true) if revision.as_deref() == Some(want.as_str()) => {
            format!("injected (revision {want})")
        }
        (Verdict::Injected { revision: want, .. }, true) => format!(
            "injected by revision {}, would now be injected by revision {want}; restart its owner",
            revision.as_deref().unwrap_or("?")
        ),
        (Verdict::Injected { .. }, false) => {
            "not injected; restart its owner (it was created before the injector selected it)".to_string()
        }
        (_, true) => {
            format!("injected (revision {}), but would not be injected now", revision.as_deref().unwrap_or("?"))
        }
        (_, false) => "not injected".to_string(),
    };
    Existing { injected, revision, note }
}

/// The verdict line.
pub fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Injected { webhook, revision } => format!("will be injected by {webhook} (revision {revision})"),
        Verdict::NotInjected { reason } => format!("not injected: {reason}"),
        Verdict::Denied { message } => format!("denied: {message}"),
        Verdict::Conflict { webhooks } => {
            format!("CONFLICT: selected by {} injectors ({})", webhooks.len(), webhooks.join(", "))
        }
    }
}

/// Renders reports as the table (one per target) or a JSON/YAML document.
pub fn render(reports: &[Report], output: Output) -> anyhow::Result<String> {
    match output {
        Output::Json => Ok(serde_json::to_string_pretty(&one_or_list(reports)?)? + "\n"),
        Output::Yaml => Ok(serde_saphyr::to_string(&one_or_list(reports)?)?),
        Output::Table => {
            let mut out = String::new();
            for r in reports {
                if reports.len() > 1 {
                    out.push_str(&format!("{} -n {}\n", r.target, r.namespace));
                }
                let header = ["WEBHOOK", "REVISION", "SELECTS", "WHY", "DECISION", "WHY"];
                let cells: Vec<[String; 6]> = r
                    .webhooks
                    .iter()
                    .map(|w| {
                        [
                            w.webhook.clone(),
                            if w.revision.is_empty() { "-".into() } else { w.revision.clone() },
                            if w.selects { "yes" } else { "no" }.into(),
                            w.selects_why.clone(),
                            w.decision.clone(),
                            if w.decision_why.is_empty() { "-".into() } else { w.decision_why.clone() },
                        ]
                    })
                    .collect();
                out.push_str(&table(&header, &cells));
                out.push_str(&verdict_line(&r.verdict));
                out.push('\n');
                if let Some(e) = &r.existing {
                    out.push_str(&format!("pod: {}\n", e.note));
                }
            }
            Ok(out)
        }
    }
}

fn one_or_list(reports: &[Report]) -> anyhow::Result<Value> {
    use crate::schema::{Kind, versioned};
    Ok(match reports {
        [one] => serde_json::to_value(versioned(Kind::CheckInject, one))?,
        many => serde_json::to_value(versioned(Kind::CheckInjectList, &json!({"items": serde_json::to_value(many)?})))?,
    })
}

/// Left-aligned columns separated by three spaces, the last one unpadded.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The pods (or templates as pods) of a manifest's objects, with `kind/name` and namespace.
pub fn pods_of(objects: &[Value], default_ns: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for obj in objects {
        let kind = text(obj, "/kind");
        let template = match kind {
            "Pod" => "",
            "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
                "/spec/template"
            }
            "CronJob" => "/spec/jobTemplate/spec/template",
            _ => continue,
        };
        let ns = match text(obj, "/metadata/namespace") {
            "" => default_ns,
            ns => ns,
        };
        let target = format!("{}/{}", kind.to_lowercase(), text(obj, "/metadata/name"));
        let pod = if template.is_empty() {
            obj.clone()
        } else {
            let Some(t) = obj.pointer(template) else { continue };
            json!({"metadata": t.get("metadata").cloned().unwrap_or_else(|| json!({})), "spec": t.get("spec").cloned().unwrap_or(Value::Null)})
        };
        out.push((target, ns.to_string(), pod));
    }
    out
}

/// Namespace labels from the Namespace objects among `objects` (the API server's
/// `kubernetes.io/metadata.name` added); a namespace without one has only that label.
pub fn namespace_labels(objects: &[Value], namespace: &str) -> Map<String, Value> {
    let mut labels = objects
        .iter()
        .find(|o| text(o, "/kind") == "Namespace" && text(o, "/metadata/name") == namespace)
        .map(|o| labels_of(o).clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), json!(namespace));
    labels
}

/// The offline check: manifests and webhooks from files.
pub fn run(args: CheckInjectArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let (Some(file), Some(webhooks)) = (&args.file, &args.webhooks) else {
        bail!("the offline check needs -f FILE and --webhooks FILE");
    };
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let manifest =
        crate::inject::parse_documents(&read(file)?).with_context(|| format!("parsing {}", file.display()))?;
    let cluster =
        crate::inject::parse_documents(&read(webhooks)?).with_context(|| format!("parsing {}", webhooks.display()))?;
    let fixed = webhooks::read_config(args.config.as_ref())?;
    let default_ns = args.cluster.namespace.as_deref().unwrap_or("default");
    let report = check_offline(&manifest, &cluster, fixed.as_ref(), default_ns)?;
    out.write_all(render(&report, args.output)?.as_bytes())?;
    Ok(report.iter().map(Report::exit_code).max().unwrap_or(EXIT_OK))
}

/// Checks every pod or template of `manifest` against the configurations in `cluster`.
pub fn check_offline(
    manifest: &[Value],
    cluster: &[Value],
    config: Option<&InjectConfig>,
    default_ns: &str,
) -> anyhow::Result<Vec<Report>> {
    let mwcs: Vec<Value> =
        cluster.iter().filter(|o| text(o, "/kind") == "MutatingWebhookConfiguration").cloned().collect();
    let config_for = |mwc: &Value, w: &Value| -> anyhow::Result<InjectConfig> {
        match config {
            Some(cfg) => Ok(cfg.clone()),
            None => webhook_config(cluster, mwc, w, "in the webhooks file"),
        }
    };
    let mut all = manifest.to_vec();
    all.extend_from_slice(cluster);
    let mut reports = Vec::new();
    for (target, ns, pod) in pods_of(manifest, default_ns) {
        let existing = target.starts_with("pod/") && pod.pointer("/metadata/uid").is_some();
        reports.push(check(&target, &pod, &ns, &namespace_labels(&all, &ns), &mwcs, &config_for, existing)?);
    }
    if reports.is_empty() {
        bail!("no Pod, Deployment, StatefulSet, DaemonSet, Job, ReplicaSet or CronJob in the manifest");
    }
    Ok(reports)
}

pub mod live;
#[cfg(test)]
pub(crate) mod tests;
pub mod webhooks;

//! The pure model of `kubectl mesh injector list`: which injector serves each namespace and, for each
//! pod, whether its sidecar is current ([`mesh_core::drift`]), outdated, or missing.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use anyhow::Context;
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector, Workload};
use mesh_core::names;
use mesh_core::selector::{LabelSelector, labels_of};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::check_inject::{is_mesh, pod_webhooks, revision_of};

/// A webhook for pods, with its parsed selectors and (for injectors) the config it serves.
pub struct Webhook {
    /// `<configuration>/<webhook name>`.
    pub name: String,
    /// The revision (`default` when the configuration has no `istio.io/rev`).
    pub revision: String,
    /// One of mesh's webhooks.
    pub mesh: bool,
    /// A mesh or Istio sidecar injector (other webhooks are ignored here).
    pub injector: bool,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    config: Config,
}

/// Where a webhook's config comes from; resolved on first use.
enum Config {
    /// Resolved lazily by the caller's function: `(configuration, webhook)` objects.
    Lazy(Value, Value, OnceCell<Result<Option<Injector>, String>>),
}

impl Webhook {
    /// Every webhook for pods of `mwcs`, in order.
    pub fn all(mwcs: &[Value]) -> anyhow::Result<Vec<Webhook>> {
        let mut out = Vec::new();
        for mwc in mwcs {
            let mesh = is_mesh(mwc);
            let cfg_name = mwc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            let istio = cfg_name.contains("sidecar-injector");
            for w in pod_webhooks(mwc) {
                let name = format!("{cfg_name}/{}", w.get("name").and_then(Value::as_str).unwrap_or(""));
                let parse = |field: &str| -> anyhow::Result<Option<LabelSelector>> {
                    let Some(v) = w.get(field).filter(|v| !v.is_null()) else { return Ok(None) };
                    let s: LabelSelector =
                        serde_json::from_value(v.clone()).with_context(|| format!("webhook {name}: {field}"))?;
                    s.validate().with_context(|| format!("webhook {name}: {field}"))?;
                    Ok(Some(s))
                };
                out.push(Webhook {
                    revision: if mesh || istio { revision_of(mwc) } else { String::new() },
                    mesh,
                    injector: mesh || istio,
                    namespace_selector: parse("namespaceSelector")?,
                    object_selector: parse("objectSelector")?,
                    config: Config::Lazy(mwc.clone(), w.clone(), OnceCell::new()),
                    name,
                });
            }
        }
        Ok(out)
    }

    fn selects_namespace(&self, labels: &Map<String, Value>) -> bool {
        self.namespace_selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    fn selects_object(&self, labels: &Map<String, Value>) -> bool {
        self.object_selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// The injector with the config this webhook serves (`None` for an Istio webhook without a config).
    fn injector(&self, config_for: &ConfigFor) -> Result<Option<&Injector>, String> {
        let Config::Lazy(mwc, w, cell) = &self.config;
        let resolved = cell
            .get_or_init(|| config_for(mwc, w, self.mesh).map(|c| c.map(Injector::new)).map_err(|e| format!("{e:#}")));
        match resolved {
            Ok(i) => Ok(i.as_ref()),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The config a webhook serves: `(configuration, webhook, is mesh's)` to the config, `None` when it is
/// unknown and not required (an Istio webhook without `--config`), an error when it is required.
pub type ConfigFor<'a> = dyn Fn(&Value, &Value, bool) -> anyhow::Result<Option<InjectConfig>> + 'a;

/// One namespace's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceRow {
    /// The namespace.
    pub namespace: String,
    /// Its injection labels (`istio-injection=enabled`, `istio.io/rev=canary`), `-` when none.
    pub labels: String,
    /// The injector webhook that serves a pod without labels there (else most of its pods), `-` when none.
    pub webhook: String,
    /// Its revision.
    pub revision: String,
    /// Other injectors that select the same pods (a conflict).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Injected pods whose sidecar is what the serving injector injects today.
    pub injected_current: usize,
    /// Injected pods whose sidecar differs from it (or that no injector selects any more).
    pub injected_outdated: usize,
    /// Pods the serving injector would inject but that have no sidecar.
    pub not_injected: usize,
    /// Injected pods served by an injector whose config is unknown (Istio's, without `--config`).
    #[serde(skip_serializing_if = "is_zero")]
    pub unchecked: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a pod needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PodState {
    /// Its sidecar differs from today's injection.
    Outdated,
    /// It has no sidecar but would get one.
    NotInjected,
}

/// A pod that needs a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub pod: String,
    /// The workload to restart (`deployment/reviews`).
    pub owner: String,
    /// Why.
    pub state: PodState,
    /// The differences (outdated pods).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// The command that restarts its owner.
    pub restart: String,
}

/// The whole listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// One row per namespace.
    pub namespaces: Vec<NamespaceRow>,
    /// Every outdated or not injected pod.
    pub pods: Vec<PodRow>,
    /// How many distinct (injector, pod template) pairs were computed.
    #[serde(skip)]
    pub computed: usize,
}

impl Listing {
    /// 2 when a pod is outdated or not injected, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.pods.is_empty() { crate::exit::OK } else { crate::exit::PROBLEM }
    }
}

/// The verdict for one (injector, template) pair, computed once.
#[derive(Debug, Clone)]
enum Outcome {
    Current,
    Outdated(Vec<String>),
    NotInjected,
    /// Not injected, and the injector would not inject it either (opt-out, host network, ...).
    LeftAlone,
    Unchecked,
}

/// Builds the listing from the cluster's objects. `only` restricts the rows to one namespace.
pub fn build(
    webhooks: &[Webhook],
    namespaces: &[Value],
    pods: &[Value],
    only: Option<&str>,
    config_for: &ConfigFor,
) -> anyhow::Result<Listing> {
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let mut rows: BTreeMap<String, NamespaceRow> = BTreeMap::new();
    let mut ns_labels: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut ns_webhooks: HashMap<String, Vec<usize>> = HashMap::new();
    let empty = Map::new();
    for ns in namespaces {
        let name = text(ns, "/metadata/name");
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut labels = labels_of(ns).clone();
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        let selecting: Vec<usize> =
            (0..webhooks.len()).filter(|&i| webhooks[i].injector && webhooks[i].selects_namespace(&labels)).collect();
        let serving: Vec<usize> = selecting.iter().copied().filter(|&i| webhooks[i].selects_object(&empty)).collect();
        if !serving.is_empty() || only.is_some() {
            rows.insert(name.clone(), row(&name, &labels, webhooks, &serving));
        }
        ns_labels.insert(name.clone(), labels);
        ns_webhooks.insert(name, selecting);
    }
    let mut cache: HashMap<(usize, u64), Outcome> = HashMap::new();
    let mut kept_labels: HashMap<usize, BTreeSet<String>> = HashMap::new();
    let mut served_by: HashMap<String, BTreeMap<usize, usize>> = HashMap::new();
    let mut out_pods = Vec::new();
    for pod in pods {
        let namespace = text(pod, "/metadata/namespace");
        if only.is_some_and(|o| o != namespace) {
            continue;
        }
        let phase = text(pod, "/status/phase");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let injected = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(names::SIDECAR_STATUS))
            .is_some_and(Value::is_string);
        let labels = labels_of(pod);
        let selecting: Vec<usize> = ns_webhooks
            .get(&namespace)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| webhooks[i].selects_object(labels))
            .collect();
        let name = text(pod, "/metadata/name");
        let outcome = match selecting.first() {
            None if injected => Outcome::Outdated(vec!["no injector selects it now".into()]),
            None => continue,
            Some(&w) => {
                *served_by.entry(namespace.clone()).or_default().entry(w).or_default() += 1;
                let injector = webhooks[w]
                    .injector(config_for)
                    .map_err(|e| anyhow::anyhow!(e))
                    .with_context(|| format!("webhook {}", webhooks[w].name))?;
                let kept = kept_labels
                    .entry(w)
                    .or_insert_with(|| injector.map(|i| selector_label_keys(i.config())).unwrap_or_default());
                let key = (w, template_key(pod, kept));
                match cache.get(&key) {
                    Some(o) => o.clone(),
                    None => {
                        let o = outcome(injector, pod, injected);
                        cache.insert(key, o.clone());
                        o
                    }
                }
            }
        };
        let labels = ns_labels.get(&namespace).unwrap_or(&empty);
        let row = rows.entry(namespace.clone()).or_insert_with(|| row(&namespace, labels, webhooks, &[]));
        let state = match outcome {
            Outcome::Current => {
                row.injected_current += 1;
                continue;
            }
            Outcome::Unchecked => {
                row.unchecked += 1;
                continue;
            }
            Outcome::LeftAlone => continue,
            Outcome::Outdated(d) => {
                row.injected_outdated += 1;
                (PodState::Outdated, d)
            }
            Outcome::NotInjected => {
                row.not_injected += 1;
                (PodState::NotInjected, Vec::new())
            }
        };
        let (owner, restart) = owner_and_restart(pod, &namespace, &name);
        out_pods.push(PodRow { namespace, pod: name, owner, state: state.0, differences: state.1, restart });
    }
    // A row without a webhook of its own (its pods carry the selecting labels): the webhook most of its
    // pods are served by.
    for (ns, row) in rows.iter_mut() {
        if row.webhook == "-"
            && let Some((&w, _)) = served_by.get(ns).and_then(|m| m.iter().max_by_key(|(_, n)| **n))
        {
            row.webhook = webhooks[w].name.clone();
            row.revision = webhooks[w].revision.clone();
        }
    }
    out_pods.sort_by(|a, b| (&a.namespace, &a.owner, &a.pod).cmp(&(&b.namespace, &b.owner, &b.pod)));
    Ok(Listing { namespaces: rows.into_values().collect(), pods: out_pods, computed: cache.len() })
}

fn row(namespace: &str, labels: &Map<String, Value>, webhooks: &[Webhook], serving: &[usize]) -> NamespaceRow {
    let injection: Vec<String> = [names::LABEL_ISTIO_INJECTION, names::ISTIO_REV]
        .iter()
        .filter_map(|k| labels.get(*k).and_then(Value::as_str).map(|v| format!("{k}={v}")))
        .collect();
    let first = serving.first().map(|&i| &webhooks[i]);
    NamespaceRow {
        namespace: namespace.to_string(),
        labels: if injection.is_empty() { "-".into() } else { injection.join(",") },
        webhook: first.map_or_else(|| "-".into(), |w| w.name.clone()),
        revision: first.map_or_else(|| "-".into(), |w| w.revision.clone()),
        conflicts: serving.iter().skip(1).map(|&i| webhooks[i].name.clone()).collect(),
        injected_current: 0,
        injected_outdated: 0,
        not_injected: 0,
        unchecked: 0,
    }
}

fn outcome(injector: Option<&Injector>, pod: &Value, injected: bool) -> Outcome {
    let Some(injector) = injector else {
        return if injected { Outcome::Unchecked } else { Outcome::NotInjected };
    };
    if injected {
        return match mesh_core::drift::differences(pod, injector) {
            Ok(d) if d.is_empty() => Outcome::Current,
            Ok(d) => Outcome::Outdated(d),
            Err(e) => Outcome::Outdated(vec![e.to_string()]),
        };
    }
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let req = InjectRequest { namespace, nodes_support_native_sidecars: true, ..Default::default() };
    match injector.inject(pod, &req) {
        Decision::Patch(_) => Outcome::NotInjected,
        Decision::Skip(_) | Decision::Deny(_) => Outcome::LeftAlone,
    }
}

/// The pod's workload (`deployment/reviews`) and the command that restarts it.
pub fn owner_and_restart(pod: &Value, namespace: &str, name: &str) -> (String, String) {
    let w = Workload::from_pod(pod, namespace);
    let owner = format!("{}/{}", w.kind.to_lowercase(), w.name);
    let restart = match w.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" => format!("kubectl rollout restart {owner} -n {namespace}"),
        "Pod" => format!("kubectl get pod {name} -n {namespace} -o yaml | kubectl replace --force -f -"),
        _ => format!("kubectl delete pod {name} -n {namespace}"),
    };
    (owner, restart)
}

/// The label keys an injector config's `neverInjectSelector` and `alwaysInjectSelector` name: labels
/// that can change its decision, so [`template_key`] keeps them whatever their value.
pub fn selector_label_keys(cfg: &InjectConfig) -> BTreeSet<String> {
    cfg.never_inject_selector
        .iter()
        .chain(&cfg.always_inject_selector)
        .flat_map(|s| s.match_labels.keys().chain(s.match_expressions.iter().map(|e| &e.key)))
        .cloned()
        .collect()
}

/// The label the StatefulSet controller sets to the pod's name.
pub const STATEFULSET_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label the StatefulSet controller sets to the pod's ordinal.
pub const STATEFULSET_POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// What stands in the key for a per-pod value the controller wrote (no real value contains `<`).
const PER_POD: &str = "<per pod>";

/// A hash of everything about a pod that its injection and comparison read: pods of one owner with
/// the same template (and the same sidecar) hash the same, whatever their names (when generated:
/// the injector derives the workload from the owner then), nodes and service-account token volumes.
/// The per-pod fields a StatefulSet or DaemonSet controller writes count only when they are not
/// exactly what the controller writes for this pod ([`per_pod_fields_replaced`]); labels in `kept`
/// (the ones the config's selectors name, [`selector_label_keys`]) always count.
pub fn template_key(pod: &Value, kept: &BTreeSet<String>) -> u64 {
    let replaced = per_pod_fields_replaced(pod, kept);
    let pod = replaced.as_ref().unwrap_or(pod);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // The injector reads the name of a pod whose name is not generated (its workload is the pod).
    let generated = controller_of(pod).is_some()
        && pod.pointer("/metadata/generateName").and_then(Value::as_str).is_some_and(|g| !g.is_empty());
    let volatile_meta: &[&str] = if generated {
        &["name", "uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink"]
    } else {
        &["uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink"]
    };
    if let Some(Value::Object(meta)) = pod.get("metadata") {
        for (k, v) in meta {
            if !volatile_meta.contains(&k.as_str()) {
                k.hash(&mut h);
                hash_value(v, &mut h, false);
            }
        }
    }
    if let Some(Value::Object(spec)) = pod.get("spec") {
        for (k, v) in spec {
            if k == "nodeName" {
                continue;
            }
            k.hash(&mut h);
            hash_value(v, &mut h, true);
        }
    }
    h.finish()
}

/// The pod's controller: its `kind` and `name`.
fn controller_of(pod: &Value) -> Option<(&str, &str)> {
    let refs = pod.pointer("/metadata/ownerReferences").and_then(Value::as_array)?;
    let owner = refs.iter().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((owner.get("kind").and_then(Value::as_str)?, owner.get("name").and_then(Value::as_str)?))
}

/// A copy of a StatefulSet's or DaemonSet's pod with the per-pod fields its controller writes replaced
/// by a placeholder, each only where it holds exactly the controller's value for this pod: the
/// StatefulSet's `statefulset.kubernetes.io/pod-name` (the pod's name) and `apps.kubernetes.io/pod-index`
/// (the ordinal ending the name `<statefulset>-<ordinal>`) labels unless in `kept`, `spec.hostname`
/// (the name) and the claim names `<volume>-<pod name>` of its volumes; the DaemonSet's node affinity,
/// when it is the single `matchFields` `metadata.name In [node]` term the controller writes (for the
/// pod's node, once scheduled). `None` for other pods and when nothing is replaced. The injector reads
/// none of these fields, so pods that differ only in them get the same outcome.
pub fn per_pod_fields_replaced(pod: &Value, kept: &BTreeSet<String>) -> Option<Value> {
    let (kind, owner) = controller_of(pod).filter(|(k, _)| matches!(*k, "StatefulSet" | "DaemonSet"))?;
    let name = pod.pointer("/metadata/name").and_then(Value::as_str)?;
    let mut out = pod.clone();
    let mut replaced = false;
    let mut replace = |at: Option<&mut Value>, want: &str, with: Value| {
        if let Some(v) = at.filter(|v| v.as_str() == Some(want)) {
            *v = with;
            replaced = true;
        }
    };
    match kind {
        "StatefulSet" => {
            let ordinal = name
                .strip_prefix(owner)
                .and_then(|r| r.strip_prefix('-'))
                .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
            for (label, want) in [(STATEFULSET_POD_NAME, Some(name)), (STATEFULSET_POD_INDEX, ordinal)] {
                let Some(want) = want.filter(|_| !kept.contains(label)) else { continue };
                replace(
                    out.pointer_mut(&format!("/metadata/labels/{}", label.replace('/', "~1"))),
                    want,
                    json!(PER_POD),
                );
            }
            replace(out.pointer_mut("/spec/hostname"), name, json!(PER_POD));
            let volumes = out.pointer_mut("/spec/volumes").and_then(Value::as_array_mut).into_iter().flatten();
            for v in volumes {
                let Some(volume) = v.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
                let want = format!("{volume}-{name}");
                replace(v.pointer_mut("/persistentVolumeClaim/claimName"), &want, json!(format!("{volume}-{PER_POD}")));
            }
        }
        "DaemonSet" => {
            let required = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution";
            let node = pod.pointer(required).and_then(daemonset_node);
            let scheduled = pod.pointer("/spec/nodeName").and_then(Value::as_str);
            if let Some(node) = node.filter(|n| scheduled.is_none_or(|s| s == *n)) {
                let values = format!("{required}/nodeSelectorTerms/0/matchFields/0/values/0");
                replace(out.pointer_mut(&values), node, json!(PER_POD));
            }
        }
        _ => {}
    }
    replaced.then_some(out)
}

/// The node of the node selector the DaemonSet controller writes into each of its pods, exactly
/// `{nodeSelectorTerms: [{matchFields: [{key: metadata.name, operator: In, values: [NODE]}]}]}`.
fn daemonset_node(required: &Value) -> Option<&str> {
    fn one(v: &Value) -> Option<&Value> {
        v.as_array().filter(|a| a.len() == 1).and_then(|a| a.first())
    }
    let obj = |v: &Value, keys: &[&str]| {
        v.as_object().filter(|o| o.len() == keys.len() && keys.iter().all(|k| o.contains_key(*k))).is_some()
    };
    if !obj(required, &["nodeSelectorTerms"]) {
        return None;
    }
    let term = one(required.get("nodeSelectorTerms")?)?;
    if !obj(term, &["matchFields"]) {
        return None;
    }
    let req = one(term.get("matchFields")?)?;
    if !obj(req, &["key", "operator", "values"]) || req["key"] != "metadata.name" || req["operator"] != "In" {
        return None;
    }
    one(&req["values"])?.as_str()
}

/// Hashes a JSON value; with `skip_token`, list entries named `kube-api-access-*` (the API server's
/// per-pod token volume and its mounts) are left out.
fn hash_value(v: &Value, h: &mut impl Hasher, skip_token: bool) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        // Tagged like their text (1 and 1.0 differ), without formatting them.
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => (4u8, u).hash(h),
            (None, Some(i)) => (5u8, i).hash(h),
            (None, None) => (6u8, n.as_f64().map(f64::to_bits)).hash(h),
        },
        Value::String(s) => s.hash(h),
        Value::Array(items) => {
            for i in items {
                if skip_token
                    && i.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with("kube-api-access-"))
                {
                    continue;
                }
                1u8.hash(h);
                hash_value(i, h, skip_token);
            }
            2u8.hash(h);
        }
        Value::Object(map) => {
            for (k, v) in map {
                k.hash(h);
                hash_value(v, h, skip_token);
            }
            3u8.hash(h);
        }
    }
}

//! The pure model of `kubectl mesh injector list`: which injector serves each namespace and, for each
//! pod, whether its sidecar is current ([`mesh_core::drift`]), outdated, or missing.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
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
                let key = (w, template_key(pod));
                match cache.get(&key) {
                    Some(o) => o.clone(),
                    None => {
                        let o = outcome(&webhooks[w], pod, injected, config_for)?;
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

fn outcome(webhook: &Webhook, pod: &Value, injected: bool, config_for: &ConfigFor) -> anyhow::Result<Outcome> {
    let Some(injector) = webhook
        .injector(config_for)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("webhook {}", webhook.name))?
    else {
        return Ok(if injected { Outcome::Unchecked } else { Outcome::NotInjected });
    };
    if injected {
        return Ok(match mesh_core::drift::differences(pod, injector) {
            Ok(d) if d.is_empty() => Outcome::Current,
            Ok(d) => Outcome::Outdated(d),
            Err(e) => Outcome::Outdated(vec![e.to_string()]),
        });
    }
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let req = InjectRequest { namespace, nodes_support_native_sidecars: true, ..Default::default() };
    Ok(match injector.inject(pod, &req) {
        Decision::Patch(_) => Outcome::NotInjected,
        Decision::Skip(_) | Decision::Deny(_) => Outcome::LeftAlone,
    })
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

/// A hash of everything about a pod that its injection and comparison read: pods of one owner with
/// the same template (and the same sidecar) hash the same, whatever their names, nodes and
/// service-account token volumes.
pub fn template_key(pod: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let controlled = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|o| o.get("controller").and_then(Value::as_bool) == Some(true)));
    let volatile_meta: &[&str] = if controlled {
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

/// Hashes a JSON value; with `skip_token`, list entries named `kube-api-access-*` (the API server's
/// per-pod token volume and its mounts) are left out.
fn hash_value(v: &Value, h: &mut impl Hasher, skip_token: bool) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Number(n) => n.to_string().hash(h),
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

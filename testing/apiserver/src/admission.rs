//! The admission chain of a CREATE, as a v1.36 kube-apiserver runs it: NamespaceLifecycle (the
//! namespace must exist), the ServiceAccount plugin (pods), then every matching mutating admission
//! webhook, then once more the in-tree plugins and the webhooks that ask for it (reinvocation).
//!
//! The pure parts (the ServiceAccount plugin, rule and selector matching, the reinvocation
//! bookkeeping, reading a webhook's answer) are functions of their inputs; the chain itself is
//! generic over a [`Transport`], so that tests can run it without a socket. The real transport is
//! HTTPS ([`https`]).

pub mod https;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use mesh_core::selector::{LabelSelector, labels_of};
use serde_json::{Value, json};

use super::resource::ResourceType;
use super::shared::{Shared, lock};
use super::status::ApiError;
use super::store::Filter;
use super::{defaulting, meta};

/// Where the ServiceAccount plugin mounts the token volume.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the token volume's name (`kube-api-access-` + 5 random characters).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The pod annotation of static (mirror) pods, whose spec the plugin leaves alone.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How long the server waits for a webhook without `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One call of a mutating webhook, as recorded for tests ([`crate::TestApiServer::admission_calls`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionCall {
    /// The MutatingWebhookConfiguration.
    pub configuration: String,
    /// The webhook's `name`.
    pub webhook: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name, or its `generateName` when it has no name yet.
    pub name: String,
    /// Whether this was the reinvocation round.
    pub reinvocation: bool,
    /// The request's uid.
    pub uid: String,
    /// Whether the webhook allowed the request (false also when the call failed).
    pub allowed: bool,
    /// The JSON patch the webhook answered (decoded), `None` without one.
    pub patch: Option<Value>,
    /// Why the call failed (connection, TLS, timeout, bad answer), `None` when it was answered.
    pub error: Option<String>,
}

/// A rejected request: the HTTP code and the `Status` body the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// HTTP status code.
    pub code: u16,
    /// The `Status` object.
    pub status: Value,
}

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Rejection { code: e.code, status: e.to_status() }
    }
}

/// `Internal error occurred: <message>` (500), as `apierrors.NewInternalError` words it.
pub fn internal_error(message: &str) -> Rejection {
    Rejection {
        code: 500,
        status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("Internal error occurred: {message}"), "reason": "InternalError",
            "details": {"causes": [{"message": message}]}, "code": 500}),
    }
}

/// The webhook's denial as the client sees it (`webhookerrors.ToStatusErr`): the webhook's own
/// `status`, at least 400 and `Failure`, its message prefixed with `admission webhook "<name>"
/// denied the request`.
pub fn denial(webhook: &str, result: Option<&Value>) -> Rejection {
    let denied_by = format!("admission webhook \"{webhook}\" denied the request");
    let mut status = match result {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let code = status.get("code").and_then(Value::as_u64).unwrap_or(0);
    let code = if code < 400 { 400 } else { u16::try_from(code).unwrap_or(500) };
    let message = status.get("message").and_then(Value::as_str).unwrap_or("").to_string();
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), json!("Status"));
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("metadata".into(), status.remove("metadata").unwrap_or_else(|| json!({})));
    out.insert("status".into(), json!("Failure"));
    out.insert("message".into(), json!(message));
    if !reason.is_empty() {
        out.insert("reason".into(), json!(reason));
    }
    if let Some(d) = status.remove("details") {
        out.insert("details".into(), d);
    }
    out.insert("code".into(), json!(code));
    Rejection { code, status: Value::Object(out) }
}

/// What is being created: the request's attributes that rules and reviews look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Resource (plural).
    pub resource: String,
    /// Whether the resource is namespaced.
    pub namespaced: bool,
    /// The namespace of the request (`""` for cluster-scoped objects).
    pub namespace: String,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// The authenticated user.
    pub user: String,
    /// `fieldManager` of the request, when given.
    pub field_manager: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount).

/// The projected volume source of the token volume (`TokenVolumeSource`): a bound token that
/// expires after 3607 s, the cluster CA from `kube-root-ca.crt` and the namespace.
pub fn token_volume_source() -> Value {
    json!({
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ],
        "defaultMode": 420
    })
}

/// The service account a pod runs as: `spec.serviceAccountName`, or the deprecated
/// `spec.serviceAccount` (what the v1 conversion reads), or `default`.
pub fn service_account_name(pod: &Value) -> String {
    let spec = |k: &str| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_str).filter(|s| !s.is_empty());
    spec("serviceAccountName").or_else(|| spec("serviceAccount")).unwrap_or("default").to_string()
}

fn spec_mut(pod: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let obj = pod.as_object_mut()?;
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec.as_object_mut()
}

/// The ServiceAccount plugin's mutation of a pod being created, given its ServiceAccount (`None`:
/// one with no settings). Defaults `spec.serviceAccountName` (and the deprecated
/// `spec.serviceAccount` the v1 form carries); unless the pod or the ServiceAccount says
/// `automountServiceAccountToken: false`, mounts the token volume read-only at [`TOKEN_MOUNT_PATH`]
/// in every init container and container that has nothing mounted there, adding the volume (named
/// by `new_volume_name`) when the pod has no `kube-api-access-*` volume yet; copies the
/// ServiceAccount's `imagePullSecrets` to a pod without any. Mirror pods are left alone.
pub fn service_account_admit(pod: &mut Value, sa: Option<&Value>, new_volume_name: impl FnOnce() -> String) {
    let mirror = pod.pointer(&format!("/metadata/annotations/{}", MIRROR_POD_ANNOTATION.replace('/', "~1"))).is_some();
    if mirror {
        return;
    }
    let name = service_account_name(pod);
    let automount = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.and_then(|s| s.get("automountServiceAccountToken")).and_then(Value::as_bool))
        .unwrap_or(true);
    let Some(spec) = spec_mut(pod) else { return };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    if automount {
        mount_token(spec, new_volume_name);
    }
    let has_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    let sa_pull_secrets = sa.and_then(|s| s.get("imagePullSecrets")).and_then(Value::as_array);
    if let Some(secrets) = sa_pull_secrets.filter(|l| !l.is_empty() && !has_pull_secrets) {
        let refs: Vec<Value> =
            secrets.iter().map(|s| json!({"name": s.get("name").cloned().unwrap_or_default()})).collect();
        spec.insert("imagePullSecrets".into(), Value::Array(refs));
    }
}

fn mount_token(spec: &mut serde_json::Map<String, Value>, new_volume_name: impl FnOnce() -> String) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_string);
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(new_volume_name);
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                continue;
            }
            mounts.push(mount.clone());
            needs_volume = true;
        }
    }
    if needs_volume && !has_volume {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(json!({"name": volume_name, "projected": token_volume_source()}));
        }
    }
}

/// The 403 of a pod whose ServiceAccount does not exist (`admission.NewForbidden`).
pub fn missing_service_account(pod: &Value, namespace: &str, sa: &str) -> Rejection {
    let md = |k: &str| pod.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).filter(|s| !s.is_empty());
    let name = md("name").or_else(|| md("generateName")).unwrap_or("Unknown");
    let message = format!(
        "pods \"{name}\" is forbidden: error looking up service account {namespace}/{sa}: serviceaccount \"{sa}\" not found"
    );
    ApiError { code: 403, reason: "Forbidden", message, details: Some(json!({"name": name, "kind": "pods"})) }.into()
}

// ---------------------------------------------------------------------------------------------
// Which webhooks are called.

/// A webhook of a stored MutatingWebhookConfiguration, in call order.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The configuration's name.
    pub configuration: String,
    /// The webhook's position in the configuration.
    pub index: usize,
    /// The webhook's `name`.
    pub name: String,
    /// The webhook object as stored.
    pub spec: Value,
}

impl Hook {
    /// The identity the reinvocation bookkeeping uses (configuration, position).
    fn id(&self) -> (String, usize) {
        (self.configuration.clone(), self.index)
    }

    fn field(&self, key: &str) -> &str {
        self.spec.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// `failurePolicy: Ignore` (the v1 default is `Fail`).
    pub fn ignores_failures(&self) -> bool {
        self.field("failurePolicy") == "Ignore"
    }

    /// `reinvocationPolicy: IfNeeded` (the default is `Never`).
    pub fn reinvocable(&self) -> bool {
        self.field("reinvocationPolicy") == "IfNeeded"
    }

    /// `timeoutSeconds`, 10 s by default.
    pub fn timeout(&self) -> Duration {
        self.spec.get("timeoutSeconds").and_then(Value::as_u64).map_or(DEFAULT_TIMEOUT, Duration::from_secs)
    }
}

/// Every webhook of `configurations`, sorted by configuration name, each configuration's webhooks
/// in order (the API server's order).
pub fn hooks(configurations: &[Value]) -> Vec<Hook> {
    let mut configs: Vec<&Value> = configurations.iter().collect();
    configs.sort_by_key(|c| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string());
    let mut out = Vec::new();
    for c in configs {
        let configuration = c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        for (index, w) in c.get("webhooks").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let name = w.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            out.push(Hook { configuration: configuration.clone(), index, name, spec: w.clone() });
        }
    }
    out
}

fn list_has(rule: &Value, key: &str, want: &str) -> bool {
    rule.get(key).and_then(Value::as_array).is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
}

/// Whether one of a webhook's `rules` covers a CREATE of `attrs` (operations, apiGroups,
/// apiVersions, resources — `pods`, `*`, `*/*` — and scope `*`, `Namespaced` or `Cluster`).
pub fn rule_matches(rule: &Value, attrs: &Attributes) -> bool {
    let resource_ok = rule.get("resources").and_then(Value::as_array).is_some_and(|l| {
        l.iter().filter_map(Value::as_str).any(|r| match r.split_once('/') {
            // A create of the main resource: `pods/status`-style entries cover subresources only.
            Some((res, sub)) => res == "*" && sub == "*",
            None => r == "*" || r == attrs.resource,
        })
    });
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => attrs.namespaced,
        "Cluster" => !attrs.namespaced,
        _ => true,
    };
    list_has(rule, "operations", "CREATE")
        && list_has(rule, "apiGroups", &attrs.group)
        && list_has(rule, "apiVersions", &attrs.version)
        && resource_ok
        && scope_ok
}

fn selector(hook: &Hook, key: &str) -> Result<Option<LabelSelector>, String> {
    match hook.spec.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| format!("{key}: {e}")),
    }
}

/// Whether `hook` is called for `object` (`ShouldCallHook`): a rule matches, the
/// `namespaceSelector` matches the namespace's labels (namespaced objects) and the
/// `objectSelector` the object's labels (`namespace` is the Namespace object). A malformed selector
/// is an error naming it; webhooks with `matchConditions` are refused (the server does not
/// evaluate CEL).
pub fn should_call(hook: &Hook, attrs: &Attributes, namespace: &Value, object: &Value) -> Result<bool, String> {
    let rules = hook.spec.get("rules").and_then(Value::as_array);
    if !rules.is_some_and(|rs| rs.iter().any(|r| rule_matches(r, attrs))) {
        return Ok(false);
    }
    let bad = |e: String| format!("webhook {:?}: {e}", hook.name);
    if attrs.namespaced {
        let ns =
            LabelSelector::evaluate(selector(hook, "namespaceSelector").map_err(bad)?.as_ref(), labels_of(namespace))
                .map_err(|e| bad(format!("namespaceSelector: {e}")))?;
        if !ns {
            return Ok(false);
        }
    }
    let obj = LabelSelector::evaluate(selector(hook, "objectSelector").map_err(bad)?.as_ref(), labels_of(object))
        .map_err(|e| bad(format!("objectSelector: {e}")))?;
    if obj && hook.spec.get("matchConditions").and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
        return Err(bad("matchConditions are not supported by the test API server".into()));
    }
    Ok(obj)
}

/// Webhook configurations themselves are never sent to webhooks
/// (`IsExemptAdmissionConfigurationResource`).
pub fn exempt(attrs: &Attributes) -> bool {
    attrs.group == "admissionregistration.k8s.io"
}

// ---------------------------------------------------------------------------------------------
// Reinvocation (pkg/admission/reinvocation.go, webhook/mutating/reinvocationcontext.go).

/// The mutating webhook plugin's reinvocation bookkeeping for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reinvocation {
    /// Whether the whole chain must run a second time (a webhook changed the object).
    pub should_reinvoke: bool,
    /// The object after the last webhook round.
    last_output: Option<Value>,
    /// `IfNeeded` webhooks called since the last change.
    previously_invoked: HashSet<(String, usize)>,
    /// Webhooks to call in the reinvocation round.
    reinvoke: HashSet<(String, usize)>,
}

impl Reinvocation {
    /// Everything called before a change is to be called again.
    fn require_reinvoking_previous(&mut self) {
        self.reinvoke.extend(self.previously_invoked.drain());
    }
}

// ---------------------------------------------------------------------------------------------
// Calling a webhook.

/// Where a webhook's request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as the API server writes it in errors (with `?timeout=10s`).
    pub url: String,
    /// The path and query sent.
    pub path: String,
    /// The `Host` header and TLS server name.
    pub host: String,
    /// The loopback address to connect to; `None` when the host does not resolve.
    pub addr: Option<SocketAddr>,
    /// The CA certificates (PEM) the server's certificate must chain to; empty: none is trusted.
    pub ca_pem: String,
}

/// Services registered by the test: (namespace, name, port) → loopback address.
pub type ServiceRoutes = HashMap<(String, String, u16), SocketAddr>;

/// Where `hook` is called: `clientConfig.url`, or `clientConfig.service` (`https://<name>.<ns>.svc:<port><path>`,
/// port 443 by default) through `routes`; trusting its `caBundle`, or `fallback_ca` when that is empty.
pub fn endpoint(hook: &Hook, routes: &ServiceRoutes, fallback_ca: Option<&str>) -> Result<Endpoint, String> {
    let cc = hook.spec.get("clientConfig").cloned().unwrap_or_default();
    let timeout = format!("timeout={}s", hook.timeout().as_secs());
    let ca_bundle = cc.get("caBundle").and_then(Value::as_str).unwrap_or("");
    let ca_pem = if ca_bundle.is_empty() {
        fallback_ca.unwrap_or("").to_string()
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle)
            .map_err(|e| format!("clientConfig.caBundle is not base64: {e}"))?;
        String::from_utf8(bytes).map_err(|e| format!("clientConfig.caBundle is not PEM: {e}"))?
    };
    if let Some(svc) = cc.get("service").filter(|s| s.is_object()) {
        let text = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or("");
        let port = svc.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443);
        let host = format!("{}.{}.svc", text("name"), text("namespace"));
        let path = if text("path").is_empty() { "/".to_string() } else { text("path").to_string() };
        let path = format!("{path}{}{timeout}", if path.contains('?') { "&" } else { "?" });
        let addr = routes.get(&(text("namespace").to_string(), text("name").to_string(), port)).copied();
        return Ok(Endpoint { url: format!("https://{host}:{port}{path}"), path, host, addr, ca_pem });
    }
    let url = cc.get("url").and_then(Value::as_str).ok_or("clientConfig has neither url nor service")?;
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("clientConfig.url {url:?} is not https"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().map_err(|_| format!("bad port in {url:?}"))?)
        }
        _ => (authority.trim_matches(['[', ']']).to_string(), 443),
    };
    let ip = if host == "localhost" { Some(IpAddr::V4(Ipv4Addr::LOCALHOST)) } else { host.parse::<IpAddr>().ok() };
    // Only loopback: anything else does not resolve here.
    let addr = ip.filter(IpAddr::is_loopback).map(|ip| SocketAddr::new(ip, port));
    let path = format!("{path}{}{timeout}", if path.contains('?') { "&" } else { "?" });
    let shown = url.split('?').next().unwrap_or(url);
    let query = path.split_once('?').map_or("", |(_, q)| q);
    Ok(Endpoint { url: format!("{shown}?{query}"), path, host, addr, ca_pem })
}

/// Sends an AdmissionReview and returns the answer's body.
pub trait Transport: Sync {
    /// POSTs `body` to `endpoint` within `timeout`; `Err` says why no answer came (Go's wording
    /// after `Post "<url>": `).
    fn post(
        &self,
        endpoint: &Endpoint,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

/// The AdmissionReview the server sends for a CREATE of `object` (`CreateV1AdmissionReview`).
/// `name` is omitted while the object has none (a `generateName` object), as Go's `omitempty` does.
pub fn review(uid: &str, attrs: &Attributes, object: &Value) -> Value {
    let gvk = json!({"group": attrs.group, "version": attrs.version, "kind": attrs.kind});
    let gvr = json!({"group": attrs.group, "version": attrs.version, "resource": attrs.resource});
    let mut req = serde_json::Map::new();
    req.insert("uid".into(), json!(uid));
    req.insert("kind".into(), gvk.clone());
    req.insert("resource".into(), gvr.clone());
    req.insert("requestKind".into(), gvk);
    req.insert("requestResource".into(), gvr);
    if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        req.insert("name".into(), json!(name));
    }
    if !attrs.namespace.is_empty() {
        req.insert("namespace".into(), json!(attrs.namespace));
    }
    req.insert("operation".into(), json!("CREATE"));
    req.insert(
        "userInfo".into(),
        json!({"username": attrs.user, "groups": ["system:masters", "system:authenticated"]}),
    );
    req.insert("object".into(), object.clone());
    req.insert("oldObject".into(), Value::Null);
    req.insert("dryRun".into(), json!(attrs.dry_run));
    let mut options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
    if let Some(fm) = &attrs.field_manager {
        options["fieldManager"] = json!(fm);
    }
    req.insert("options".into(), options);
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": Value::Object(req)})
}

/// What a webhook answered, checked as `VerifyAdmissionResponse` does.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `response.allowed`.
    pub allowed: bool,
    /// `response.status` (used for a denial's message).
    pub status: Option<Value>,
    /// The decoded JSON patch, when there is one.
    pub patch: Option<Value>,
}

/// Reads a webhook's response body for request `uid`; `Err` is the reason the answer is invalid.
pub fn read_answer(uid: &str, body: &[u8]) -> Result<Answer, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| format!("received invalid webhook response: {e}"))?;
    let invalid = |why: String| format!("received invalid webhook response: {why}");
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("webhook response was absent".into()))?;
    let got_uid = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(invalid(format!("expected response.uid={uid:?}, got {got_uid:?}")));
    }
    let gvk = (review.get("apiVersion").and_then(Value::as_str), review.get("kind").and_then(Value::as_str));
    if gvk != (Some("admission.k8s.io/v1"), Some("AdmissionReview")) {
        return Err(invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            gvk.0.unwrap_or(""),
            gvk.1.unwrap_or("")
        )));
    }
    let patch = response.get("patch").and_then(Value::as_str).unwrap_or("");
    let patch_type = response.get("patchType").and_then(Value::as_str).unwrap_or("");
    if !patch.is_empty() && patch_type.is_empty() {
        return Err(invalid("webhook returned response.patch but not response.patchType".into()));
    }
    if !patch_type.is_empty() && patch.is_empty() {
        return Err(invalid("webhook returned response.patchType but not response.patch".into()));
    }
    if !patch_type.is_empty() && patch_type != "JSONPatch" {
        return Err(invalid(format!("webhook returned invalid response.patchType of {patch_type:?}")));
    }
    let patch = if patch.is_empty() {
        None
    } else {
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch).map_err(|e| invalid(e.to_string()))?;
        Some(serde_json::from_slice(&bytes).map_err(|e| invalid(format!("response.patch is not JSON: {e}")))?)
    };
    Ok(Answer {
        allowed: response.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        status: response.get("status").cloned(),
        patch,
    })
}

/// How the chain reaches the world: the webhooks (`transport`), the services the test routed, the
/// trust for webhooks without a caBundle, the in-tree plugins, and where calls are recorded.
pub struct Chain<'a, T: Transport, P: FnMut(&mut Value) -> Result<(), Rejection>> {
    /// Sends reviews.
    pub transport: &'a T,
    /// The stored webhooks, in order.
    pub hooks: Vec<Hook>,
    /// Service routes.
    pub routes: ServiceRoutes,
    /// CA (PEM) trusted for webhooks whose caBundle is empty.
    pub fallback_ca: Option<String>,
    /// The in-tree mutating plugins (the ServiceAccount plugin for pods).
    pub in_tree: P,
    /// New request uids.
    pub new_uid: fn() -> String,
    /// The calls made, in order.
    pub calls: Vec<AdmissionCall>,
}

impl<T: Transport, P: FnMut(&mut Value) -> Result<(), Rejection>> Chain<'_, T, P> {
    /// Runs the mutating admission of a CREATE on `object`: the in-tree plugins, the webhooks, and,
    /// when a webhook changed the object, both once more (only the reinvocable webhooks called
    /// before a later change). Returns the admitted object.
    pub async fn admit(
        &mut self,
        mut object: Value,
        attrs: &Attributes,
        namespace: &Value,
    ) -> Result<Value, Rejection> {
        let mut state = Reinvocation::default();
        // The server holds a pod as its Go type: read from the request's body, and encoded for
        // every review after the in-tree plugins changed it.
        let read = |object: Value| if is_pod(attrs) { defaulting::decoded_pod(&object) } else { object };
        object = read(object);
        (self.in_tree)(&mut object)?;
        object = read(object);
        self.dispatch(&mut object, attrs, namespace, &mut state, false).await?;
        if state.should_reinvoke {
            (self.in_tree)(&mut object)?;
            object = read(object);
            self.dispatch(&mut object, attrs, namespace, &mut state, true).await?;
        }
        Ok(object)
    }

    async fn dispatch(
        &mut self,
        object: &mut Value,
        attrs: &Attributes,
        namespace: &Value,
        state: &mut Reinvocation,
        reinvoke: bool,
    ) -> Result<(), Rejection> {
        if exempt(attrs) {
            return Ok(());
        }
        if reinvoke && state.last_output.as_ref() != Some(object) {
            // The in-tree plugins changed the object again: every reinvocable webhook called so far.
            state.require_reinvoking_previous();
        }
        for hook in self.hooks.clone() {
            if !should_call(&hook, attrs, namespace, object).map_err(|e| internal_error(&e))? {
                continue;
            }
            // During reinvocation a webhook is never called for the first time.
            if reinvoke && !state.reinvoke.contains(&hook.id()) {
                continue;
            }
            let outcome = self.call(&hook, object, attrs, reinvoke).await;
            let changed = matches!(outcome, Ok(true));
            if changed {
                state.require_reinvoking_previous();
                state.should_reinvoke = true;
            }
            if hook.reinvocable() {
                state.previously_invoked.insert(hook.id());
            }
            match outcome {
                Ok(_) => {}
                Err(CallError::Calling(_)) if hook.ignores_failures() => {}
                Err(CallError::Calling(reason)) => {
                    return Err(internal_error(&format!("failed calling webhook {:?}: {reason}", hook.name)));
                }
                Err(CallError::Rejected(r)) => return Err(r),
            }
        }
        // A failed round ends the admission, so only a completed round's output is compared.
        state.last_output = Some(object.clone());
        Ok(())
    }

    /// One call: `Ok(changed)`.
    async fn call(
        &mut self,
        hook: &Hook,
        object: &mut Value,
        attrs: &Attributes,
        reinvoke: bool,
    ) -> Result<bool, CallError> {
        let uid = (self.new_uid)();
        let md = |k: &str| object.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).filter(|s| !s.is_empty());
        let mut record = AdmissionCall {
            configuration: hook.configuration.clone(),
            webhook: hook.name.clone(),
            namespace: attrs.namespace.clone(),
            name: md("name").or_else(|| md("generateName")).unwrap_or("").to_string(),
            reinvocation: reinvoke,
            uid: uid.clone(),
            allowed: false,
            patch: None,
            error: None,
        };
        if attrs.dry_run
            && !matches!(hook.spec.get("sideEffects").and_then(Value::as_str), Some("None" | "NoneOnDryRun"))
        {
            let message = format!("admission webhook {:?} does not support dry run", hook.name);
            return Err(CallError::Rejected(ApiError::bad_request(message).into()));
        }
        let outcome = self.exchange(hook, object, attrs, &uid).await;
        let result = match outcome {
            Err(reason) => {
                record.error = Some(reason.clone());
                Err(CallError::Calling(reason))
            }
            Ok(answer) => {
                record.allowed = answer.allowed;
                record.patch = answer.patch.clone();
                apply(hook, object, answer, is_pod(attrs))
            }
        };
        self.calls.push(record);
        result
    }

    async fn exchange(&self, hook: &Hook, object: &Value, attrs: &Attributes, uid: &str) -> Result<Answer, String> {
        let versions = hook.spec.get("admissionReviewVersions").and_then(Value::as_array);
        if !versions.is_some_and(|v| v.iter().any(|x| x == "v1")) {
            return Err("could not create admission objects: webhook does not accept v1 AdmissionReview \
                        (the test API server sends v1 only)"
                .into());
        }
        let endpoint = endpoint(hook, &self.routes, self.fallback_ca.as_deref())?;
        let body = serde_json::to_vec(&review(uid, attrs, object)).map_err(|e| e.to_string())?;
        let answer = self
            .transport
            .post(&endpoint, body, hook.timeout())
            .await
            .map_err(|e| format!("failed to call webhook: Post {:?}: {e}", endpoint.url))?;
        read_answer(uid, &answer)
    }
}

/// Whether the request is for a core v1 Pod.
fn is_pod(attrs: &Attributes) -> bool {
    attrs.group.is_empty() && attrs.resource == "pods"
}

/// Why a call did not admit the object.
enum CallError {
    /// No valid answer (`ErrCallingWebhook`): the failure policy decides.
    Calling(String),
    /// Denied, or a patch that cannot be applied: the request fails whatever the policy.
    Rejected(Rejection),
}

/// Applies an answer to `object`: `Ok(changed)`. A pod is decoded again after a non-empty patch
/// ([`defaulting::decoded_pod`]), as the real server decodes the patched JSON into its Go type and
/// defaults it.
fn apply(hook: &Hook, object: &mut Value, answer: Answer, is_pod: bool) -> Result<bool, CallError> {
    if !answer.allowed {
        return Err(CallError::Rejected(denial(&hook.name, answer.status.as_ref())));
    }
    let Some(patch) = answer.patch else { return Ok(false) };
    let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
        CallError::Rejected(internal_error(&format!("decoding the patch of webhook {:?}: {e}", hook.name)))
    })?;
    if ops.0.is_empty() {
        return Ok(false);
    }
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        CallError::Rejected(internal_error(&format!("applying the patch of webhook {:?}: {e}", hook.name)))
    })?;
    if is_pod {
        patched = defaulting::decoded_pod(&patched);
    }
    let changed = patched != *object;
    *object = patched;
    Ok(changed)
}

/// The object as the webhooks see it: the URL's namespace in `metadata.namespace` and, for pods,
/// the empty `status` the typed v1 form always carries.
pub fn versioned(mut object: Value, attrs: &Attributes) -> Value {
    if let Some(m) = object.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            json!(if attrs.group.is_empty() {
                attrs.version.clone()
            } else {
                format!("{}/{}", attrs.group, attrs.version)
            }),
        );
        m.insert("kind".into(), json!(attrs.kind));
        let md = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(md) = md.as_object_mut()
            && attrs.namespaced
        {
            md.insert("namespace".into(), json!(attrs.namespace));
        }
        if attrs.group.is_empty() && attrs.resource == "pods" {
            m.entry("status").or_insert_with(|| json!({}));
        }
    }
    object
}

/// The 404 of a create in a namespace that does not exist (NamespaceLifecycle).
pub fn namespace_not_found(namespace: &str) -> Rejection {
    ApiError::not_found("", "namespaces", namespace).into()
}

#[cfg(test)]
mod tests;

/// The admission of a CREATE the server received (POST): NamespaceLifecycle, then [`Chain::admit`]
/// with the stored MutatingWebhookConfigurations, the ServiceAccount plugin for pods, and HTTPS.
/// Every webhook call is recorded in `shared.admission_calls`.
pub async fn admit_create(
    shared: &Shared,
    rt: &ResourceType,
    namespace: &str,
    body: Value,
    dry_run: bool,
    field_manager: Option<String>,
) -> Result<Value, Rejection> {
    let attrs = Attributes {
        group: rt.group.clone(),
        version: rt.version.clone(),
        kind: rt.kind.clone(),
        resource: rt.plural.clone(),
        namespaced: rt.namespaced,
        namespace: if rt.namespaced { namespace.to_string() } else { String::new() },
        dry_run,
        user: shared.user.clone(),
        field_manager,
    };
    let store = &shared.store;
    let namespace_object = match store.find_type("", "v1", "namespaces").filter(|_| rt.namespaced) {
        Some(t) => store.get(&t, "", namespace).map_err(|_| namespace_not_found(namespace))?,
        None => json!({}),
    };
    let configurations = store
        .find_type("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
        .map(|t| store.list(&t, &Filter::default()).0)
        .unwrap_or_default();
    let is_pod = rt.group.is_empty() && rt.plural == "pods";
    let sa_type = store.find_type("", "v1", "serviceaccounts");
    let in_tree = |pod: &mut Value| -> Result<(), Rejection> {
        if !is_pod {
            return Ok(());
        }
        let name = service_account_name(pod);
        let sa = sa_type.as_ref().and_then(|t| store.get(t, namespace, &name).ok());
        // The `default` ServiceAccount is the one kube-controller-manager creates in every namespace.
        if sa.is_none() && name != "default" {
            return Err(missing_service_account(pod, namespace, &name));
        }
        service_account_admit(pod, sa.as_ref(), || format!("{TOKEN_VOLUME_PREFIX}{}", meta::name_suffix()));
        Ok(())
    };
    let mut chain = Chain {
        transport: &https::Https,
        hooks: hooks(&configurations),
        routes: lock(&shared.service_routes).clone(),
        fallback_ca: lock(&shared.webhook_ca).clone(),
        in_tree,
        new_uid: meta::uid,
        calls: Vec::new(),
    };
    let result = chain.admit(versioned(body, &attrs), &attrs, &namespace_object).await;
    lock(&shared.admission_calls).extend(chain.calls);
    result
}

//! Kubernetes objects read as JSON (`serde_json::Value`), so that every field the API server sends is
//! kept: the selector evaluation and the injector work on the objects as they are.

use serde_json::Value;

use super::{Cluster, ClusterError, Op};

/// A resource type, as the URL and RBAC name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The version (`v1`).
    pub version: &'static str,
    /// The plural (`pods`).
    pub plural: &'static str,
    /// The kind of its objects (`Pod`), written into list items (the API server leaves it out).
    pub kind: &'static str,
}

impl Resource {
    const fn new(group: &'static str, version: &'static str, plural: &'static str, kind: &'static str) -> Resource {
        Resource { group, version, plural, kind }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        let mut path = match namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        };
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    fn op(&self, verb: &str, namespace: Option<&str>, name: Option<&str>) -> Op {
        Op::new(verb, self.plural, namespace, name).in_group(self.group)
    }
}

/// Pods.
pub const PODS: Resource = Resource::new("", "v1", "pods", "Pod");
/// Namespaces.
pub const NAMESPACES: Resource = Resource::new("", "v1", "namespaces", "Namespace");
/// Services.
pub const SERVICES: Resource = Resource::new("", "v1", "services", "Service");
/// ConfigMaps.
pub const CONFIGMAPS: Resource = Resource::new("", "v1", "configmaps", "ConfigMap");
/// Deployments.
pub const DEPLOYMENTS: Resource = Resource::new("apps", "v1", "deployments", "Deployment");
/// StatefulSets.
pub const STATEFULSETS: Resource = Resource::new("apps", "v1", "statefulsets", "StatefulSet");
/// DaemonSets.
pub const DAEMONSETS: Resource = Resource::new("apps", "v1", "daemonsets", "DaemonSet");
/// Jobs.
pub const JOBS: Resource = Resource::new("batch", "v1", "jobs", "Job");
/// MutatingWebhookConfigurations.
pub const MUTATING_WEBHOOKS: Resource = Resource::new(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
);

impl Cluster {
    /// Lists `resource` in `namespace` (`None`: all namespaces, or cluster scope), optionally with a
    /// label selector; each item carries `kind` and `apiVersion`. Reads the list a page of
    /// [`PAGE_SIZE`] items at a time, as kubectl does, each page within the request timeout; when
    /// the server has dropped the snapshot a `continue` token reads (410 Expired), lists again from the
    /// start in one request, as client-go's pager does.
    pub async fn list_objects(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ClusterError> {
        let op = resource.op("list", namespace, None);
        let mut base = resource.path(namespace, None);
        base.push('?');
        if let Some(s) = selector {
            base.push_str("labelSelector=");
            base.push_str(&encode(s));
            base.push('&');
        }
        let mut items = Vec::new();
        let (mut limit, mut token) = (Some(PAGE_SIZE), None::<String>);
        loop {
            let mut uri = base.clone();
            if let Some(l) = limit {
                uri.push_str(&format!("limit={l}"));
            }
            if let Some(t) = &token {
                uri.push_str("&continue=");
                uri.push_str(&encode(t));
            }
            let uri = uri.trim_end_matches(['?', '&']);
            match self.bounded(&op.to_string(), self.request(&op, uri)).await {
                Ok(list) => {
                    let (page, next) = split_list(list);
                    items.extend(page);
                    match next {
                        Some(t) if token.as_ref() == Some(&t) => {
                            return Err(ClusterError::Failed {
                                what: op.to_string(),
                                reason: "the server answered the same continue token twice".into(),
                            });
                        }
                        Some(t) if limit.is_some() => token = Some(t),
                        _ => break,
                    }
                }
                Err(e) if e.code() == Some(410) && token.is_some() => {
                    items.clear();
                    (limit, token) = (None, None);
                }
                Err(e) => return Err(e),
            }
        }
        for item in &mut items {
            if let Some(o) = item.as_object_mut() {
                o.entry("kind").or_insert_with(|| Value::String(resource.kind.into()));
                o.entry("apiVersion").or_insert_with(|| Value::String(resource.api_version()));
            }
        }
        Ok(items)
    }

    /// Reads one object (`None`: not found).
    pub async fn get_object(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let op = resource.op("get", namespace, Some(name));
        let uri = resource.path(namespace, Some(&encode(name)));
        match self.bounded(&op.to_string(), self.request(&op, &uri)).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn request(&self, op: &Op, uri: &str) -> Result<Value, ClusterError> {
        let req = http::Request::get(uri)
            .body(Vec::new())
            .map_err(|e| ClusterError::Failed { what: op.to_string(), reason: e.to_string() })?;
        self.client.request::<Value>(req).await.map_err(|e| op.error(e))
    }
}

/// Items per page of a list (kubectl's default `--chunk-size`).
pub const PAGE_SIZE: usize = 500;

/// A list's items and its `continue` token (`None` when it is the last page).
fn split_list(list: Value) -> (Vec<Value>, Option<String>) {
    let Value::Object(mut m) = list else { return (Vec::new(), None) };
    let next = m
        .get("metadata")
        .and_then(|md| md.get("continue"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match m.remove("items") {
        Some(Value::Array(items)) => (items, next),
        _ => (Vec::new(), next),
    }
}

/// Percent-encodes a query value or path segment.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_rbac_names() {
        assert_eq!(PODS.path(Some("shop"), Some("web-1")), "/api/v1/namespaces/shop/pods/web-1");
        assert_eq!(PODS.path(None, None), "/api/v1/pods");
        assert_eq!(
            MUTATING_WEBHOOKS.path(None, None),
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        );
        assert_eq!(
            DEPLOYMENTS.op("get", Some("shop"), Some("web")).rule(),
            "a Role in namespace shop with the rule {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"get\"]}"
        );
        assert_eq!(encode("app=foo,v in (a)"), "app%3Dfoo%2Cv%20in%20%28a%29");
    }
}

//! Provenance: the Kubernetes and Istio objects behind Envoy resources, read from Istio's naming
//! conventions (`outbound|port|subset|host` clusters, `host:port` virtual hosts) and from
//! `filter_metadata.istio` (`config`, `workload`).

use serde::Serialize;

/// A Kubernetes or Istio object a piece of config came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// The kind, e.g. `Service`, `VirtualService`, `DestinationRule`, `Gateway`, `ServiceEntry`.
    pub kind: String,
    /// The API group (empty for core objects).
    pub group: String,
    /// The API version.
    pub version: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// A core `v1` Service.
    pub fn service(namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: "Service".into(),
            group: String::new(),
            version: "v1".into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `Kind namespace/name`.
    pub fn display(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// Parses `filter_metadata.istio.config`:
    /// `/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews`.
    pub fn from_istio_config(path: &str) -> Option<ObjectRef> {
        let rest = path.strip_prefix("/apis/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [group, version, "namespaces", namespace, kind, name] = parts.as_slice() else { return None };
        let kind: String = kind
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        if kind.is_empty() || name.is_empty() || namespace.is_empty() {
            return None;
        }
        Some(ObjectRef {
            kind,
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// The parts of an Istio cluster name `direction|port|subset|host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterKey {
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The service (or, inbound, the target) port.
    pub port: u16,
    /// The DestinationRule subset, when any.
    pub subset: Option<String>,
    /// The host (Service FQDN or ServiceEntry host; empty for inbound).
    pub host: String,
}

impl ClusterKey {
    /// Parses `outbound|9080|v1|reviews.default.svc.cluster.local` or `inbound|9080||`.
    pub fn parse(name: &str) -> Option<ClusterKey> {
        let mut it = name.splitn(4, '|');
        let direction = it.next()?;
        if direction != "outbound" && direction != "inbound" {
            return None;
        }
        let port = it.next()?.parse().ok()?;
        let subset = it.next()?;
        let host = it.next()?;
        Some(ClusterKey {
            direction: direction.to_string(),
            port,
            subset: (!subset.is_empty()).then(|| subset.to_string()),
            host: host.to_string(),
        })
    }

    /// The Kubernetes Service behind the host, when it is a cluster-local name.
    pub fn service(&self) -> Option<ObjectRef> {
        service_of_host(&self.host)
    }
}

/// `name.namespace.svc.<domain>` → Service namespace/name.
pub fn service_of_host(host: &str) -> Option<ObjectRef> {
    let host = host.split(':').next().unwrap_or(host);
    let (name, rest) = host.split_once('.')?;
    let (namespace, rest) = rest.split_once('.')?;
    if !rest.starts_with("svc") || name.is_empty() || namespace.is_empty() || name == "*" {
        return None;
    }
    Some(ObjectRef::service(namespace, name))
}

/// The parts of `filter_metadata.istio.workload`: `workload;namespace;canonical-service;revision;cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The workload (Deployment, or pod) name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `service.istio.io/canonical-name`.
    pub canonical_service: String,
    /// `service.istio.io/canonical-revision`.
    pub revision: String,
    /// The cluster ID.
    pub cluster: String,
}

impl Workload {
    /// Parses the `;`-separated form.
    pub fn parse(s: &str) -> Option<Workload> {
        let p: Vec<&str> = s.split(';').collect();
        let get = |i: usize| p.get(i).copied().unwrap_or_default().to_string();
        if p.len() < 2 || p[0].is_empty() {
            return None;
        }
        Some(Workload { name: get(0), namespace: get(1), canonical_service: get(2), revision: get(3), cluster: get(4) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_istio_names() {
        let k = ClusterKey::parse("outbound|50002|v1|bar-service.bar-namespace.svc.cluster.local").unwrap();
        assert_eq!((k.port, k.subset.as_deref()), (50002, Some("v1")));
        assert_eq!(k.service().unwrap().display(), "Service bar-namespace/bar-service");
        let k = ClusterKey::parse("inbound|9080||").unwrap();
        assert_eq!((k.direction.as_str(), k.subset.clone(), k.service()), ("inbound", None, None));
        assert!(ClusterKey::parse("PassthroughCluster").is_none());
        assert!(service_of_host("www.example.com").is_none());
        let o = ObjectRef::from_istio_config(
            "/apis/networking.istio.io/v1alpha3/namespaces/default/virtual-service/reviews",
        )
        .unwrap();
        assert_eq!((o.kind.as_str(), o.version.as_str(), o.name.as_str()), ("VirtualService", "v1alpha3", "reviews"));
        assert!(ObjectRef::from_istio_config("/apis/x").is_none());
        let w = Workload::parse("reviews-v1;default;reviews;v1;Kubernetes").unwrap();
        assert_eq!((w.name.as_str(), w.revision.as_str()), ("reviews-v1", "v1"));
    }
}

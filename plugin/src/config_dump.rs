//! A typed model of Envoy's `/config_dump` (JSON, or YAML as `yq -P` prints it): listeners, route
//! configurations, clusters and endpoints, each with its state (static, active, warming, draining)
//! and Envoy's `error_state` for rejected updates.
//!
//! Only the fields that routing and provenance depend on are kept; everything else is skipped while
//! parsing, so a large dump costs little more memory than its text. Unknown `@type`s are tolerated.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

mod cidr;
pub mod cluster;
pub mod listener;
mod number;
pub mod rbac;
pub mod route;

pub use cidr::CidrRange;
pub use cluster::{Cluster, ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints};
pub use listener::{Address, FilterChain, FilterChainMatch, Listener, NetworkFilter, Terminal};
pub use route::{Route, RouteConfiguration, RouteMatch, VirtualHost};

/// Errors reading a config dump.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDumpError {
    /// The JSON did not parse or did not have the config dump's shape.
    #[error("config dump is not valid JSON of Envoy's /config_dump shape: {0}")]
    Json(#[from] serde_json::Error),
    /// The YAML did not parse or did not have the config dump's shape.
    #[error("config dump is not valid YAML of Envoy's /config_dump shape: {0}")]
    Yaml(String),
    /// The document has no `configs` list.
    #[error("config dump has no \"configs\" list (is this the output of Envoy's /config_dump?)")]
    NoConfigs,
}

/// Where a resource came from and in which state Envoy holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// From the bootstrap.
    Static,
    /// From xDS, in use.
    Active,
    /// From xDS, waiting for its dependencies (e.g. a cluster's endpoints) before use.
    Warming,
    /// From xDS, being drained after removal or replacement.
    Draining,
    /// From xDS, rejected: only the `error_state` is known.
    Rejected,
}

/// Envoy's record of the last rejected update of a resource (`UpdateFailureState`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ErrorState {
    /// Why the update was rejected.
    pub details: String,
    /// When.
    pub last_update_attempt: Option<String>,
    /// The rejected version.
    pub version_info: Option<String>,
}

/// One resource of the dump with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource<T> {
    /// The resource's name.
    pub name: String,
    /// Static, active, warming, draining or rejected.
    pub state: ResourceState,
    /// The xDS version that delivered it.
    pub version_info: Option<String>,
    /// When Envoy last accepted it.
    pub last_updated: Option<String>,
    /// The last rejected update, when there was one.
    pub error_state: Option<ErrorState>,
    /// The resource itself (absent for [`ResourceState::Rejected`]).
    pub config: Option<T>,
}

/// A secret's bookkeeping (the secret itself is never kept).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretSummary {
    /// The secret's name, e.g. `default`, `ROOTCA`.
    pub name: String,
    /// Static, active or warming.
    pub state: ResourceState,
    /// The xDS version that delivered it.
    pub version_info: Option<String>,
    /// When Envoy last accepted it.
    pub last_updated: Option<String>,
}

/// The proxy's node, from the bootstrap.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Node {
    /// The node id, e.g. `sidecar~10.0.0.5~foo-abc.foo-namespace~foo-namespace.svc.cluster.local`.
    pub id: String,
    /// The node's cluster, e.g. `foo.foo-namespace`.
    pub cluster: String,
    /// Node metadata (`NAMESPACE`, `ISTIO_VERSION`, `CLUSTER_ID`, `LABELS`, ...).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Metadata of a resource: `filter_metadata` by filter name, keeping the string values only (the
/// ones provenance needs: `istio.config`, `istio.workload`, `istio.subset`, `tlsMode`), which keeps
/// large dumps small in memory.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Metadata {
    /// String values by filter name, then key, e.g. `istio` → `config` → `/apis/...`.
    pub filter_metadata: FilterMetadata,
}

/// The string values of `filter_metadata`: `(filter, [(key, value)])` in document order. Stored as
/// small vectors rather than maps: a dump has one per endpoint, and maps cost far more memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterMetadata(pub Vec<(String, Vec<(String, String)>)>);

impl FilterMetadata {
    /// The value of `filter.key`, when it is a string.
    pub fn get(&self, filter: &str, key: &str) -> Option<&str> {
        let (_, values) = self.0.iter().find(|(f, _)| f == filter)?;
        values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Serialize for FilterMetadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(f, values)| (f, values.iter().cloned().collect::<BTreeMap<_, _>>())))
    }
}

impl<'de> Deserialize<'de> for FilterMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number::string_maps(d).map(FilterMetadata)
    }
}

impl Metadata {
    /// A string under `filter_metadata.<filter>.<key>`.
    pub fn string(&self, filter: &str, key: &str) -> Option<&str> {
        self.filter_metadata.get(filter, key)
    }

    /// `filter_metadata.istio.config`: the Istio object behind the resource, as an API path.
    pub fn istio_config(&self) -> Option<&str> {
        self.string("istio", "config")
    }

    /// `filter_metadata.istio.workload`: `workload;namespace;canonical-service;revision;cluster`.
    pub fn istio_workload(&self) -> Option<&str> {
        self.string("istio", "workload")
    }

    /// `filter_metadata.istio.subset`.
    pub fn istio_subset(&self) -> Option<&str> {
        self.string("istio", "subset")
    }

    /// `filter_metadata.envoy.transport_socket_match.tlsMode` (`istio` for mTLS-capable endpoints).
    pub fn tls_mode(&self) -> Option<&str> {
        self.string("envoy.transport_socket_match", "tlsMode")
    }
}

/// A parsed config dump.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigDump {
    /// The node, when the dump has a bootstrap section.
    pub node: Option<Node>,
    /// Listeners (static first, then dynamic in dump order; a listener may appear once per state).
    pub listeners: Vec<Resource<Listener>>,
    /// Route configurations.
    pub route_configs: Vec<Resource<RouteConfiguration>>,
    /// Clusters.
    pub clusters: Vec<Resource<Cluster>>,
    /// Endpoints (only present when the dump was taken with `?include_eds`).
    pub endpoints: Vec<Resource<ClusterLoadAssignment>>,
    /// Secrets, without their contents.
    pub secrets: Vec<SecretSummary>,
    /// Whether the dump had an endpoints section at all.
    pub has_endpoints_section: bool,
}

/// Name lookups over the usable (static or active) resources of a dump.
#[derive(Debug, Default)]
pub struct Index<'a> {
    /// Listeners by name.
    pub listeners: HashMap<&'a str, &'a Listener>,
    /// Route configurations by name.
    pub route_configs: HashMap<&'a str, &'a RouteConfiguration>,
    /// Clusters by name.
    pub clusters: HashMap<&'a str, &'a Cluster>,
    /// Endpoints by cluster (EDS service) name.
    pub endpoints: HashMap<&'a str, &'a ClusterLoadAssignment>,
}

impl<'a> Index<'a> {
    /// The endpoints of a cluster: its EDS assignment, else its inline `load_assignment`.
    pub fn endpoints_of(&self, cluster: &'a Cluster) -> Option<&'a ClusterLoadAssignment> {
        self.endpoints.get(cluster.eds_name()).copied().or(cluster.load_assignment.as_ref())
    }
}

fn usable<T>(r: &Resource<T>) -> Option<&T> {
    match r.state {
        ResourceState::Static | ResourceState::Active => r.config.as_ref(),
        _ => None,
    }
}

impl ConfigDump {
    /// Parses a dump, JSON or YAML (detected from the first non-blank character).
    pub fn parse(bytes: &[u8]) -> Result<ConfigDump, ConfigDumpError> {
        let raw: raw::Dump = if mesh_core::documents::is_json(bytes) {
            serde_json::from_slice(bytes)?
        } else {
            let text = std::str::from_utf8(bytes).map_err(|e| ConfigDumpError::Yaml(e.to_string()))?;
            serde_saphyr::from_str(text).map_err(|e| ConfigDumpError::Yaml(e.to_string()))?
        };
        raw.into_model()
    }

    /// Parses a dump from a reader without holding its whole text in memory (JSON is streamed;
    /// YAML is read in full first).
    pub fn from_reader(reader: impl std::io::Read) -> Result<ConfigDump, ConfigDumpError> {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
        let is_json = loop {
            let buf = reader.fill_buf().map_err(serde_json::Error::io)?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let json = mesh_core::documents::is_json(&buf[i..=i]);
                    reader.consume(i);
                    break json;
                }
                None if buf.is_empty() => break false,
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        };
        if is_json {
            let raw: raw::Dump = serde_json::from_reader(reader)?;
            raw.into_model()
        } else {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut text).map_err(serde_json::Error::io)?;
            ConfigDump::parse(&text)
        }
    }

    /// Builds name lookups over the static and active resources.
    pub fn index(&self) -> Index<'_> {
        let mut index = Index::default();
        for r in &self.listeners {
            if let Some(l) = usable(r) {
                index.listeners.entry(r.name.as_str()).or_insert(l);
            }
        }
        for r in &self.route_configs {
            if let Some(c) = usable(r) {
                index.route_configs.entry(r.name.as_str()).or_insert(c);
            }
        }
        for r in &self.clusters {
            if let Some(c) = usable(r) {
                index.clusters.entry(r.name.as_str()).or_insert(c);
            }
        }
        for r in &self.endpoints {
            if let Some(c) = usable(r) {
                index.endpoints.entry(r.name.as_str()).or_insert(c);
            }
        }
        index
    }

    /// Every resource Envoy reports a problem with: warming, or with an `error_state`.
    pub fn problems(&self) -> Vec<Problem> {
        fn scan<T>(kind: &'static str, items: &[Resource<T>], out: &mut Vec<Problem>) {
            for r in items {
                if r.state == ResourceState::Warming || r.state == ResourceState::Rejected || r.error_state.is_some() {
                    out.push(Problem {
                        kind,
                        name: r.name.clone(),
                        state: r.state,
                        details: r.error_state.as_ref().map(|e| e.details.clone()),
                    });
                }
            }
        }
        let mut out = Vec::new();
        scan("listener", &self.listeners, &mut out);
        scan("route_config", &self.route_configs, &mut out);
        scan("cluster", &self.clusters, &mut out);
        scan("endpoints", &self.endpoints, &mut out);
        out
    }
}

/// A resource Envoy is not using as configured: warming, or with a rejected update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `listener`, `route_config`, `cluster` or `endpoints`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// Its state.
    pub state: ResourceState,
    /// Envoy's rejection message, when there is one.
    pub details: Option<String>,
}

/// The wire shape of the admin API's config dump.
mod raw {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Dump {
        configs: Option<Vec<Section>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Section {
        bootstrap: Option<Bootstrap>,
        static_listeners: Vec<Entry<Listener>>,
        dynamic_listeners: Vec<DynamicListener>,
        static_clusters: Vec<Entry<Cluster>>,
        dynamic_active_clusters: Vec<Entry<Cluster>>,
        dynamic_warming_clusters: Vec<Entry<Cluster>>,
        static_route_configs: Vec<Entry<RouteConfiguration>>,
        dynamic_route_configs: Vec<Entry<RouteConfiguration>>,
        static_endpoint_configs: Vec<Entry<ClusterLoadAssignment>>,
        dynamic_endpoint_configs: Vec<Entry<ClusterLoadAssignment>>,
        static_secrets: Vec<Secret>,
        dynamic_active_secrets: Vec<Secret>,
        dynamic_warming_secrets: Vec<Secret>,
        #[serde(rename = "@type")]
        type_url: String,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Bootstrap {
        node: Option<Node>,
    }

    #[derive(Deserialize)]
    #[serde(default)]
    struct Entry<T> {
        name: Option<String>,
        version_info: Option<String>,
        #[serde(alias = "listener", alias = "cluster", alias = "route_config", alias = "endpoint_config")]
        config: Option<T>,
        last_updated: Option<String>,
        error_state: Option<ErrorState>,
    }

    impl<T> Default for Entry<T> {
        fn default() -> Self {
            Entry { name: None, version_info: None, config: None, last_updated: None, error_state: None }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct DynamicListener {
        name: String,
        active_state: Option<Entry<Listener>>,
        warming_state: Option<Entry<Listener>>,
        draining_state: Option<Entry<Listener>>,
        error_state: Option<ErrorState>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Secret {
        name: String,
        version_info: Option<String>,
        last_updated: Option<String>,
    }

    trait Named {
        fn resource_name(&self) -> &str;
    }
    impl Named for Listener {
        fn resource_name(&self) -> &str {
            &self.name
        }
    }
    impl Named for Cluster {
        fn resource_name(&self) -> &str {
            &self.name
        }
    }
    impl Named for RouteConfiguration {
        fn resource_name(&self) -> &str {
            &self.name
        }
    }
    impl Named for ClusterLoadAssignment {
        fn resource_name(&self) -> &str {
            &self.cluster_name
        }
    }

    fn resource<T: Named>(e: Entry<T>, state: ResourceState, fallback_name: &str) -> Resource<T> {
        let name = e
            .config
            .as_ref()
            .map(|c| c.resource_name().to_string())
            .filter(|n| !n.is_empty())
            .or(e.name)
            .unwrap_or_else(|| fallback_name.to_string());
        let state = if e.config.is_none() && e.error_state.is_some() { ResourceState::Rejected } else { state };
        Resource {
            name,
            state,
            version_info: e.version_info,
            last_updated: e.last_updated,
            error_state: e.error_state,
            config: e.config,
        }
    }

    fn push_all<T: Named>(out: &mut Vec<Resource<T>>, entries: Vec<Entry<T>>, state: ResourceState) {
        out.extend(entries.into_iter().map(|e| resource(e, state, "")));
    }

    impl Dump {
        pub(super) fn into_model(self) -> Result<ConfigDump, ConfigDumpError> {
            let mut dump = ConfigDump::default();
            for s in self.configs.ok_or(ConfigDumpError::NoConfigs)? {
                if s.type_url.ends_with("EndpointsConfigDump") {
                    dump.has_endpoints_section = true;
                }
                if let Some(b) = s.bootstrap {
                    dump.node = b.node;
                }
                push_all(&mut dump.listeners, s.static_listeners, ResourceState::Static);
                for d in s.dynamic_listeners {
                    let mut any = false;
                    for (entry, state) in [
                        (d.active_state, ResourceState::Active),
                        (d.warming_state, ResourceState::Warming),
                        (d.draining_state, ResourceState::Draining),
                    ] {
                        if let Some(mut e) = entry {
                            if state != ResourceState::Draining && e.error_state.is_none() {
                                e.error_state = d.error_state.clone();
                            }
                            dump.listeners.push(resource(e, state, &d.name));
                            any = true;
                        }
                    }
                    if !any {
                        dump.listeners.push(Resource {
                            name: d.name,
                            state: ResourceState::Rejected,
                            version_info: None,
                            last_updated: None,
                            error_state: d.error_state,
                            config: None,
                        });
                    }
                }
                push_all(&mut dump.clusters, s.static_clusters, ResourceState::Static);
                push_all(&mut dump.clusters, s.dynamic_active_clusters, ResourceState::Active);
                push_all(&mut dump.clusters, s.dynamic_warming_clusters, ResourceState::Warming);
                push_all(&mut dump.route_configs, s.static_route_configs, ResourceState::Static);
                push_all(&mut dump.route_configs, s.dynamic_route_configs, ResourceState::Active);
                push_all(&mut dump.endpoints, s.static_endpoint_configs, ResourceState::Static);
                push_all(&mut dump.endpoints, s.dynamic_endpoint_configs, ResourceState::Active);
                for (secrets, state) in [
                    (s.static_secrets, ResourceState::Static),
                    (s.dynamic_active_secrets, ResourceState::Active),
                    (s.dynamic_warming_secrets, ResourceState::Warming),
                ] {
                    dump.secrets.extend(secrets.into_iter().map(|x| SecretSummary {
                        name: x.name,
                        state,
                        version_info: x.version_info,
                        last_updated: x.last_updated,
                    }));
                }
            }
            Ok(dump)
        }
    }
}

#[cfg(test)]
mod tests;

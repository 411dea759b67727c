//! What the discovery server remembers about each connected proxy: the resources it watches and,
//! per xDS type, the nonces sent and acknowledged and the last NACK. Renders istiod's debug views
//! (`/debug/syncz` JSON, `istio.io/debug/syncz` ClientConfigs, `istio.io/debug/config_dump`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::SystemTime;

use envoy_types::pb::envoy::admin::v3::{
    ClustersConfigDump, ConfigDump, ListenersConfigDump, RoutesConfigDump, UpdateFailureState, clusters_config_dump,
    listeners_config_dump, routes_config_dump,
};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::{ClientConfig, ConfigStatus, client_config};
use envoy_types::pb::google::protobuf::{Struct, Timestamp, Value, value};
use serde_json::json;

use super::resources::{ProxyIdentity, Resources, to_any};

/// CDS type URL.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// LDS type URL.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// RDS type URL.
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// EDS type URL.
pub const ENDPOINT_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// ECDS type URL.
pub const EXTENSION_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// istiod's debug type for sync status.
pub const DEBUG_SYNCZ_TYPE: &str = "istio.io/debug/syncz";
/// istiod's debug type for one proxy's config dump.
pub const DEBUG_CONFIG_DUMP_TYPE: &str = "istio.io/debug/config_dump";
/// The type URL of the ClientConfig messages in a syncz response.
pub const CLIENT_CONFIG_TYPE: &str = "type.googleapis.com/envoy.service.status.v3.ClientConfig";

/// The types istiod reports in syncz, in istioctl's column order.
pub const TRACKED_TYPES: [&str; 5] = [CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE];

/// One watched xDS type of one proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    /// Resource names the proxy asked for (empty: wildcard).
    pub names: BTreeSet<String>,
    /// The nonce of the last response sent.
    pub nonce_sent: String,
    /// The nonce of the last response the proxy ACKed.
    pub nonce_acked: String,
    /// The nonce of the last response the proxy NACKed.
    pub nonce_nacked: String,
    /// The version of the last response sent.
    pub version_sent: String,
    /// When the last response was sent.
    pub sent_at: Option<SystemTime>,
    /// When the last ACK arrived.
    pub acked_at: Option<SystemTime>,
    /// The last NACK's error message, cleared by the next ACK.
    pub last_error: String,
}

impl Watch {
    /// istiod's `debugSyncStatus`: ERROR, NOT_SENT, SYNCED or STALE.
    pub fn status(&self) -> ConfigStatus {
        if !self.last_error.is_empty() {
            ConfigStatus::Error
        } else if self.nonce_sent.is_empty() {
            ConfigStatus::NotSent
        } else if self.nonce_acked == self.nonce_sent {
            ConfigStatus::Synced
        } else {
            ConfigStatus::Stale
        }
    }
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    /// `<pod>.<namespace>`, istiod's proxy ID.
    pub id: String,
    /// The full Envoy node id, `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
    pub node_id: String,
    /// Pod, namespace and IP parsed from the node id.
    pub identity: ProxyIdentity,
    /// Node metadata string fields (CLUSTER_ID, ISTIO_VERSION, NAMESPACE, ...).
    pub metadata: BTreeMap<String, String>,
    /// Watched types by type URL.
    pub watches: BTreeMap<String, Watch>,
}

/// Parses an Istio node id `<type>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
pub fn parse_node_id(id: &str) -> Option<ProxyIdentity> {
    let mut parts = id.split('~');
    let _kind = parts.next()?;
    let ip: Ipv4Addr = parts.next()?.parse().ok()?;
    let (pod, namespace) = parts.next()?.rsplit_once('.')?;
    Some(ProxyIdentity { pod: pod.to_string(), namespace: namespace.to_string(), ip })
}

/// Reads the string fields of a node's metadata.
pub fn node_metadata(node: &Node) -> BTreeMap<String, String> {
    node.metadata
        .as_ref()
        .map(|m| {
            m.fields
                .iter()
                .filter_map(|(k, v)| match &v.kind {
                    Some(value::Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// istiod's form: UTC with nine fractional digits (`2023-11-14T22:13:20.000000000Z`).
fn rfc3339(t: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    time::OffsetDateTime::from(t).format(&format).unwrap_or_default()
}

fn string_struct(map: &BTreeMap<String, String>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), Value { kind: Some(value::Kind::StringValue(v.clone())) }))
            .collect(),
    }
}

impl Proxy {
    /// istiod's ClientConfig for this proxy (`istio.io/debug/syncz`): one generic xDS config per
    /// tracked type; types the proxy does not watch are UNKNOWN (istioctl prints IGNORED).
    pub fn client_config(&self) -> ClientConfig {
        let generic_xds_configs = TRACKED_TYPES
            .iter()
            .map(|type_url| {
                let mut config =
                    client_config::GenericXdsConfig { type_url: (*type_url).to_string(), ..Default::default() };
                if let Some(w) = self.watches.get(*type_url) {
                    config.config_status = w.status() as i32;
                    config.version_info = w.version_sent.clone();
                    config.last_updated = w.sent_at.map(timestamp);
                    if !w.last_error.is_empty() {
                        config.error_state =
                            Some(UpdateFailureState { details: w.last_error.clone(), ..Default::default() });
                    }
                }
                config
            })
            .collect();
        ClientConfig {
            node: Some(Node {
                id: self.id.clone(),
                metadata: Some(string_struct(&self.metadata)),
                ..Default::default()
            }),
            generic_xds_configs,
            ..Default::default()
        }
    }

    /// One entry of istiod's `GET /debug/syncz`.
    pub fn syncz_json(&self) -> serde_json::Value {
        let mut entry = json!({
            "cluster_id": self.metadata.get("CLUSTER_ID").cloned().unwrap_or_default(),
            "proxy": self.id,
            "proxy_type": "sidecar",
            "proxy_version": self.metadata.get("ISTIO_VERSION").cloned().unwrap_or_default(),
            "istio_version": self.metadata.get("ISTIO_VERSION").cloned().unwrap_or_default(),
        });
        let short = [
            (CLUSTER_TYPE, "cluster"),
            (LISTENER_TYPE, "listener"),
            (ROUTE_TYPE, "route"),
            (ENDPOINT_TYPE, "endpoint"),
            (EXTENSION_CONFIG_TYPE, "extensionconfig"),
        ];
        let mut resources = serde_json::Map::new();
        for (type_url, key) in short {
            if let Some(w) = self.watches.get(type_url) {
                entry[format!("{key}_sent")] = json!(w.nonce_sent);
                entry[format!("{key}_acked")] = json!(w.nonce_acked);
                let mut r = json!({ "sent": w.nonce_sent, "acked": w.nonce_acked });
                if let Some(t) = w.sent_at {
                    r["sentTime"] = json!(rfc3339(t));
                }
                if !w.last_error.is_empty() {
                    r["lastError"] = json!(w.last_error);
                }
                resources.insert(type_url.to_string(), r);
            }
        }
        entry["resources"] = serde_json::Value::Object(resources);
        entry
    }
}

/// The identifier istiod puts in `DiscoveryResponse.control_plane` (the ISTIOD column).
pub fn control_plane_identifier(istiod: &str, version: &str) -> String {
    json!({
        "Component": "istiod",
        "ID": istiod,
        "Info": { "version": version, "revision": "", "golang_version": "", "status": "", "tag": "" }
    })
    .to_string()
}

/// istiod's view of a proxy's config, as `istio.io/debug/config_dump` sends it: dynamic active
/// clusters, listeners and route configs (no endpoints, like istiod).
pub fn config_dump(resources: &Resources, version: &str, at: SystemTime) -> ConfigDump {
    let last_updated = Some(timestamp(at));
    let clusters = ClustersConfigDump {
        version_info: version.to_string(),
        dynamic_active_clusters: resources
            .clusters
            .iter()
            .map(|c| clusters_config_dump::DynamicCluster {
                version_info: version.to_string(),
                cluster: Some(to_any(c)),
                last_updated,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = ListenersConfigDump {
        version_info: version.to_string(),
        dynamic_listeners: resources
            .listeners
            .iter()
            .map(|l| listeners_config_dump::DynamicListener {
                name: l.name.clone(),
                active_state: Some(listeners_config_dump::DynamicListenerState {
                    version_info: version.to_string(),
                    listener: Some(to_any(l)),
                    last_updated,
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: resources
            .routes
            .iter()
            .map(|r| routes_config_dump::DynamicRouteConfig {
                version_info: version.to_string(),
                route_config: Some(to_any(r)),
                last_updated,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ConfigDump { configs: vec![to_any(&clusters), to_any(&listeners), to_any(&routes)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_parses_into_pod_namespace_ip() {
        let id = parse_node_id("sidecar~10.1.0.5~foo.foo-namespace~foo-namespace.svc.cluster.local").unwrap();
        assert_eq!(id.pod, "foo");
        assert_eq!(id.namespace, "foo-namespace");
        assert_eq!(id.ip, Ipv4Addr::new(10, 1, 0, 5));
        assert!(parse_node_id("garbage").is_none());
    }

    #[test]
    fn status_follows_istiod_rules() {
        let mut w = Watch::default();
        assert_eq!(w.status(), ConfigStatus::NotSent);
        w.nonce_sent = "1".into();
        assert_eq!(w.status(), ConfigStatus::Stale);
        w.nonce_acked = "1".into();
        assert_eq!(w.status(), ConfigStatus::Synced);
        w.last_error = "bad".into();
        assert_eq!(w.status(), ConfigStatus::Error);
    }

    #[test]
    fn rfc3339_formats_epoch_offsets() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000000Z");
    }
}

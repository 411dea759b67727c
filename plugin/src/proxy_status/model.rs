//! The proxy-status model: what istiod reports per proxy and xDS type (from `/debug/syncz` JSON or
//! `istio.io/debug/syncz` ClientConfigs), merged with the injected pods the API server knows.
//! Pure: no I/O; `now` is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The xDS types istioctl shows, in its (1.26) column order.
pub const XDS_TYPES: [XdsType; 5] = [XdsType::Cds, XdsType::Lds, XdsType::Eds, XdsType::Rds, XdsType::Ecds];

/// An xDS type with a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum XdsType {
    /// Clusters.
    #[serde(rename = "CDS")]
    Cds,
    /// Listeners.
    #[serde(rename = "LDS")]
    Lds,
    /// Endpoints.
    #[serde(rename = "EDS")]
    Eds,
    /// Routes.
    #[serde(rename = "RDS")]
    Rds,
    /// Extension configs.
    #[serde(rename = "ECDS")]
    Ecds,
}

impl XdsType {
    /// The column name (`CDS`, ...).
    pub fn short(self) -> &'static str {
        match self {
            XdsType::Cds => "CDS",
            XdsType::Lds => "LDS",
            XdsType::Eds => "EDS",
            XdsType::Rds => "RDS",
            XdsType::Ecds => "ECDS",
        }
    }

    /// The type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            XdsType::Cds => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            XdsType::Lds => "type.googleapis.com/envoy.config.listener.v3.Listener",
            XdsType::Eds => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            XdsType::Rds => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            XdsType::Ecds => "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        }
    }

    /// The type for a type URL, if it has a column.
    pub fn from_type_url(url: &str) -> Option<XdsType> {
        XDS_TYPES.into_iter().find(|t| t.type_url() == url)
    }

    /// The key prefix in `/debug/syncz` JSON (`cluster` in `cluster_sent`).
    fn syncz_key(self) -> &'static str {
        match self {
            XdsType::Cds => "cluster",
            XdsType::Lds => "listener",
            XdsType::Eds => "endpoint",
            XdsType::Rds => "route",
            XdsType::Ecds => "extensionconfig",
        }
    }
}

/// The sync status of one xDS type of one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The proxy ACKed the last response.
    Synced,
    /// A response is in flight or was never acknowledged.
    Stale,
    /// Nothing sent yet.
    NotSent,
    /// The proxy NACKed the last response.
    Error,
    /// The proxy does not subscribe to this type.
    Ignored,
    /// The pod's proxy is connected to no istiod.
    NotConnected,
}

impl Status {
    /// The text istioctl prints.
    pub fn label(self) -> &'static str {
        match self {
            Status::Synced => "SYNCED",
            Status::Stale => "STALE",
            Status::NotSent => "NOT SENT",
            Status::Error => "ERROR",
            Status::Ignored => "IGNORED",
            Status::NotConnected => "NOT CONNECTED",
        }
    }

    /// Whether this status is in order (SYNCED, or a type the proxy does not use).
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Synced | Status::Ignored)
    }

    /// From `envoy.service.status.v3.ConfigStatus`.
    pub fn from_config_status(value: i32) -> Status {
        match value {
            1 => Status::Synced,
            2 => Status::NotSent,
            3 => Status::Stale,
            4 => Status::Error,
            _ => Status::Ignored,
        }
    }
}

/// One type's state as istiod reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeSync {
    /// The status.
    pub status: Status,
    /// When istiod last sent this type.
    #[serde(skip)]
    pub last_updated: Option<SystemTime>,
    /// Seconds since the last send (filled in when the report is built).
    pub age_seconds: Option<u64>,
    /// The proxy's NACK message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One proxy as one istiod reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySync {
    /// `<pod>.<namespace>`.
    pub id: String,
    /// CLUSTER_ID.
    pub cluster: String,
    /// NAMESPACE from the node metadata (may be empty).
    pub namespace: String,
    /// ISTIO_VERSION.
    pub version: String,
    /// The istiod that holds the connection.
    pub istiod: String,
    /// Per type.
    pub types: BTreeMap<XdsType, TypeSync>,
}

impl ProxySync {
    fn namespace(&self) -> &str {
        if self.namespace.is_empty() { self.id.rsplit_once('.').map_or("", |(_, ns)| ns) } else { &self.namespace }
    }

    fn newest(&self) -> Option<SystemTime> {
        self.types.values().filter_map(|t| t.last_updated).max()
    }
}

/// Parses RFC 3339 timestamps such as `2026-01-02T03:04:05.123Z` or `...+02:00`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::from(t))
}

/// Reads istiod's `GET /debug/syncz` JSON (an array of entries).
pub fn from_syncz_json(body: &serde_json::Value, istiod: &str) -> Result<Vec<ProxySync>, String> {
    let entries = body.as_array().ok_or_else(|| format!("syncz from {istiod} is not a JSON array"))?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let text = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let id = text("proxy");
        if id.is_empty() {
            continue;
        }
        let resources = e.get("resources").and_then(|r| r.as_object());
        let mut types = BTreeMap::new();
        for t in XDS_TYPES {
            let (sent, acked, sent_time, error) = match resources.and_then(|r| r.get(t.type_url())) {
                Some(r) => (
                    r.get("sent").and_then(|v| v.as_str()).map(str::to_string),
                    r.get("acked").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                    r.get("sentTime").and_then(|v| v.as_str()).and_then(parse_rfc3339),
                    r.get("lastError").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string),
                ),
                None => (
                    e.get(format!("{}_sent", t.syncz_key())).and_then(|v| v.as_str()).map(str::to_string),
                    text(&format!("{}_acked", t.syncz_key())),
                    None,
                    None,
                ),
            };
            let Some(sent) = sent else {
                types.insert(
                    t,
                    TypeSync { status: Status::Ignored, last_updated: None, age_seconds: None, error: None },
                );
                continue;
            };
            let status = if error.is_some() {
                Status::Error
            } else if sent.is_empty() {
                Status::NotSent
            } else if sent == acked {
                Status::Synced
            } else {
                Status::Stale
            };
            types.insert(t, TypeSync { status, last_updated: sent_time, age_seconds: None, error });
        }
        out.push(ProxySync {
            id,
            cluster: text("cluster_id"),
            namespace: String::new(),
            version: {
                let v = text("istio_version");
                if v.is_empty() { text("proxy_version") } else { v }
            },
            istiod: istiod.to_string(),
            types,
        });
    }
    Ok(out)
}

/// An injected pod from the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedPod {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
}

impl InjectedPod {
    /// istiod's proxy ID for the pod.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// An istiod that was asked, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IstiodResult {
    /// The istiod pod's name.
    pub name: String,
    /// `http` (/debug/syncz on 15014) or `xds` (istio.io/debug/syncz on 15010), if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Number of proxies it reported.
    pub proxies: usize,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// `<pod>.<namespace>` (istioctl's NAME).
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// Whether the API server has an injected pod for it.
    pub has_pod: bool,
    /// Whether an istiod reports it.
    pub connected: bool,
    /// CLUSTER_ID.
    pub cluster: String,
    /// The istiod holding its connection.
    pub istiod: String,
    /// ISTIO_VERSION.
    pub version: String,
    /// Per type.
    pub xds: BTreeMap<XdsType, TypeSync>,
}

impl Row {
    /// Whether every type is in order and the proxy is connected.
    pub fn is_ok(&self) -> bool {
        self.connected && self.xds.values().all(|t| t.status.is_ok())
    }

    /// The NACK messages, `TYPE: message`.
    pub fn errors(&self) -> Vec<String> {
        self.xds.iter().filter_map(|(t, s)| s.error.as_ref().map(|e| format!("{}: {e}", t.short()))).collect()
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Rows sorted by name.
    pub proxies: Vec<Row>,
    /// The istiods asked.
    pub istiods: Vec<IstiodResult>,
    /// Whether everything is synced (exit code 0).
    pub synced: bool,
}

/// Which proxies to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace (None: all).
    pub namespace: Option<String>,
    /// Only the proxies of listed pods (a label selector was given).
    pub pods_only: bool,
    /// Only this proxy (`pod.ns`).
    pub proxy: Option<String>,
}

/// Builds the report: every injected pod (NOT CONNECTED if no istiod reports it) and every proxy
/// istiod reports (also those without a pod), filtered, sorted by name.
pub fn build_report(
    pods: &[InjectedPod],
    syncs: Vec<ProxySync>,
    istiods: Vec<IstiodResult>,
    filter: &Filter,
    now: SystemTime,
) -> Report {
    // A proxy reported by more than one istiod: keep the most recently updated connection.
    let mut by_id: BTreeMap<String, ProxySync> = BTreeMap::new();
    for s in syncs {
        match by_id.get(&s.id) {
            Some(prev) if prev.newest() >= s.newest() => {}
            _ => {
                by_id.insert(s.id.clone(), s);
            }
        }
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for pod in pods {
        let id = pod.proxy_id();
        let row = match by_id.remove(&id) {
            Some(s) => row_from(s, true, now),
            None => Row {
                name: id.clone(),
                namespace: pod.namespace.clone(),
                has_pod: true,
                connected: false,
                cluster: String::new(),
                istiod: String::new(),
                version: String::new(),
                xds: XDS_TYPES
                    .into_iter()
                    .map(|t| {
                        (
                            t,
                            TypeSync {
                                status: Status::NotConnected,
                                last_updated: None,
                                age_seconds: None,
                                error: None,
                            },
                        )
                    })
                    .collect(),
            },
        };
        rows.insert(id, row);
    }
    if !filter.pods_only {
        for (id, s) in by_id {
            if filter.namespace.as_deref().is_some_and(|ns| ns != s.namespace()) {
                continue;
            }
            rows.insert(id, row_from(s, false, now));
        }
    }
    let proxies: Vec<Row> =
        rows.into_values().filter(|r| filter.proxy.as_deref().is_none_or(|p| p == r.name)).collect();
    let answered = istiods.iter().all(|i| i.error.is_none());
    let synced = answered && proxies.iter().all(Row::is_ok);
    Report { proxies, istiods, synced }
}

fn row_from(s: ProxySync, has_pod: bool, now: SystemTime) -> Row {
    let namespace = s.namespace().to_string();
    let mut xds = s.types;
    for t in XDS_TYPES {
        let entry = xds.entry(t).or_insert(TypeSync {
            status: Status::Ignored,
            last_updated: None,
            age_seconds: None,
            error: None,
        });
        entry.age_seconds = entry.last_updated.map(|at| now.duration_since(at).unwrap_or_default().as_secs());
    }
    Row {
        name: s.id,
        namespace,
        has_pod,
        connected: true,
        cluster: s.cluster,
        istiod: s.istiod,
        version: s.version,
        xds,
    }
}

/// Kubernetes' `HumanDuration` (what istioctl prints in `SYNCED (3s)`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// A status cell: `SYNCED (3s)`, or the bare label when there is no age or it does not apply.
pub fn cell(t: &TypeSync) -> String {
    match (t.status, t.age_seconds) {
        (Status::Ignored | Status::NotConnected | Status::NotSent, _) | (_, None) => t.status.label().to_string(),
        (s, Some(age)) => format!("{} ({})", s.label(), human_duration(Duration::from_secs(age))),
    }
}

/// Reads an `istio.io/debug/syncz` answer: ClientConfig messages (protobuf) and the control plane
/// identifier (`{"Component":"istiod","ID":"<pod>",...}`) naming the istiod.
pub fn from_client_configs(
    resources: &[Vec<u8>],
    identifier: &str,
    fallback_istiod: &str,
) -> Result<Vec<ProxySync>, String> {
    use envoy_types::pb::envoy::service::status::v3::ClientConfig;
    use prost::Message;

    let istiod = serde_json::from_str::<serde_json::Value>(identifier)
        .ok()
        .and_then(|v| v["ID"].as_str().map(str::to_string))
        .unwrap_or_else(|| fallback_istiod.to_string());
    let mut out = Vec::with_capacity(resources.len());
    for bytes in resources {
        let cc = ClientConfig::decode(bytes.as_slice()).map_err(|e| format!("ClientConfig from {istiod}: {e}"))?;
        let node = cc.node.unwrap_or_default();
        let meta = |k: &str| {
            node.metadata
                .as_ref()
                .and_then(|m| m.fields.get(k))
                .and_then(|v| match &v.kind {
                    Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let mut types = BTreeMap::new();
        for g in &cc.generic_xds_configs {
            let Some(t) = XdsType::from_type_url(&g.type_url) else { continue };
            let last_updated = g.last_updated.and_then(|ts| {
                let secs = u64::try_from(ts.seconds).ok()?;
                let nanos = u32::try_from(ts.nanos).ok()?;
                Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
            });
            let error = g.error_state.as_ref().map(|e| e.details.clone()).filter(|d| !d.is_empty());
            types.insert(
                t,
                TypeSync {
                    status: Status::from_config_status(g.config_status),
                    last_updated,
                    age_seconds: None,
                    error,
                },
            );
        }
        out.push(ProxySync {
            id: node.id.clone(),
            cluster: meta("CLUSTER_ID"),
            namespace: meta("NAMESPACE"),
            version: meta("ISTIO_VERSION"),
            istiod: istiod.clone(),
            types,
        });
    }
    Ok(out)
}

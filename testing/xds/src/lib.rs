//! A discovery server for tests: ADS (state of the world) to real Envoy processes with Istio-shaped
//! resources built from a [`Scenario`], nonce tracking per proxy and type, NACK details, and
//! istiod's debug API (`GET /debug/syncz` over HTTP, `istio.io/debug/syncz` and
//! `istio.io/debug/config_dump` over xDS).
//!
//! Tests steer it: change the scenario (every proxy gets a push), push an invalid cluster so Envoy
//! NACKs, or hold back one proxy's responses of one type so its sent and acked nonces differ.

pub mod ads;
pub mod debug;
pub mod resources;
pub mod scenario;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use tokio::sync::{oneshot, watch};

pub use resources::{ProxyIdentity, Resources};
pub use scenario::Scenario;
pub use state::{Proxy, Watch};

use resources::to_any;
use state::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};

/// The Istio version the server reports for itself.
pub const ISTIOD_VERSION: &str = "1.28.0";

#[derive(Debug, Default)]
struct Faults {
    invalid_cluster: Option<String>,
    held: BTreeSet<(String, String)>,
    debug_delay: Option<Duration>,
}

#[derive(Debug, Default)]
struct Inner {
    scenario: Scenario,
    generation: u64,
    nonce: u64,
    next_conn: u64,
    proxies: BTreeMap<u64, Proxy>,
    simulated: Vec<Proxy>,
    faults: Faults,
}

/// State shared by the ADS connections and the debug endpoint.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    push: watch::Sender<u64>,
    istiod: String,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_conn += 1;
        inner.next_conn
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.push.subscribe()
    }

    fn notify(&self, inner: &mut Inner) {
        inner.generation += 1;
        self.push.send_replace(inner.generation);
    }

    fn connect(&self, conn: u64, proxy: Proxy) {
        tracing::debug!(conn, proxy = %proxy.id, "proxy connected");
        self.lock().proxies.insert(conn, proxy);
    }

    fn disconnect(&self, conn: u64) {
        self.lock().proxies.remove(&conn);
    }

    fn with_watch<R>(&self, conn: u64, type_url: &str, f: impl FnOnce(&mut Watch) -> R) -> R {
        let mut inner = self.lock();
        let mut scratch = Watch::default();
        let watch = match inner.proxies.get_mut(&conn) {
            Some(p) => p.watches.entry(type_url.to_string()).or_default(),
            None => &mut scratch,
        };
        f(watch)
    }

    fn watched_types(&self, conn: u64) -> BTreeSet<String> {
        self.lock().proxies.get(&conn).map(|p| p.watches.keys().cloned().collect()).unwrap_or_default()
    }

    fn is_held(&self, conn: u64, type_url: &str) -> bool {
        let inner = self.lock();
        inner.proxies.get(&conn).is_some_and(|p| inner.faults.held.contains(&(p.id.clone(), type_url.to_string())))
    }

    fn debug_delay(&self) -> Option<Duration> {
        self.lock().faults.debug_delay
    }

    fn resources(inner: &Inner, identity: &ProxyIdentity) -> Resources {
        let mut res = inner.scenario.resources_for(identity);
        if let Some(name) = &inner.faults.invalid_cluster {
            // A negative connect timeout violates the Cluster proto's constraints: Envoy NACKs.
            res.clusters.push(Cluster {
                name: name.clone(),
                cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                )),
                connect_timeout: Some(PbDuration { seconds: -1, nanos: 0 }),
                ..Default::default()
            });
        }
        res
    }

    /// Builds the next response of `type_url` for a connection and records it as sent.
    fn build_response(&self, conn: u64, type_url: &str) -> Option<DiscoveryResponse> {
        let mut inner = self.lock();
        let proxy = inner.proxies.get(&conn)?;
        let names = proxy.watches.get(type_url).map(|w| w.names.clone()).unwrap_or_default();
        let res = Self::resources(&inner, &proxy.identity);
        let wanted = |name: &str| names.is_empty() || names.contains(name);
        let resources = match type_url {
            CLUSTER_TYPE => res.clusters.iter().map(to_any).collect(),
            LISTENER_TYPE => res.listeners.iter().map(to_any).collect(),
            ROUTE_TYPE => res.routes.iter().filter(|r| wanted(&r.name)).map(to_any).collect(),
            ENDPOINT_TYPE => res.endpoints.iter().filter(|e| wanted(&e.cluster_name)).map(to_any).collect(),
            _ => Vec::new(),
        };
        inner.nonce += 1;
        let nonce = format!("{}-{}", inner.generation, inner.nonce);
        let version = format!("{}", inner.generation);
        let watch = inner.proxies.get_mut(&conn)?.watches.entry(type_url.to_string()).or_default();
        watch.nonce_sent = nonce.clone();
        watch.version_sent = version.clone();
        watch.sent_at = Some(SystemTime::now());
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_string(),
            nonce,
            control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
                identifier: state::control_plane_identifier(&self.istiod, ISTIOD_VERSION),
            }),
            ..Default::default()
        })
    }

    /// Connected proxies (and simulated ones), sorted by proxy id.
    pub fn proxies(&self) -> Vec<Proxy> {
        let inner = self.lock();
        let mut all: Vec<Proxy> = inner.proxies.values().cloned().chain(inner.simulated.iter().cloned()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn syncz_response(&self) -> DiscoveryResponse {
        ads::syncz(&self.proxies(), &self.istiod, ISTIOD_VERSION)
    }

    fn config_dump_response(&self, proxy_id: &str) -> DiscoveryResponse {
        let inner = self.lock();
        let res = inner.proxies.values().find(|p| p.id == proxy_id).map(|p| Self::resources(&inner, &p.identity));
        ads::config_dump_of(res.as_ref(), &self.istiod, ISTIOD_VERSION)
    }
}

/// A running test discovery server: ADS on one loopback port, the HTTP debug API on another.
/// Stops when dropped.
pub struct DiscoveryServer {
    hub: Arc<Hub>,
    xds: SocketAddr,
    debug: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
}

impl DiscoveryServer {
    /// Starts a server named `istiod-test` serving `scenario`. Needs a tokio runtime.
    pub async fn start(scenario: Scenario) -> anyhow::Result<DiscoveryServer> {
        Self::start_named("istiod-test", scenario).await
    }

    /// Starts a server that calls itself `istiod` (the pod name istioctl shows in the ISTIOD column).
    pub async fn start_named(istiod: &str, scenario: Scenario) -> anyhow::Result<DiscoveryServer> {
        let (push, _) = watch::channel(0);
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner { scenario, ..Default::default() }),
            push,
            istiod: istiod.to_string(),
        });
        let xds_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("binding xDS port")?;
        let debug_listener =
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("binding debug port")?;
        let xds = xds_listener.local_addr()?;
        let debug = debug_listener.local_addr()?;

        let (stop_xds, rx_xds) = oneshot::channel::<()>();
        let service = AggregatedDiscoveryServiceServer::new(ads::Ads { hub: Arc::clone(&hub) })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(256 << 20);
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(xds_listener);
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx_xds.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "test discovery server stopped");
            }
        });
        let (stop_debug, rx_debug) = oneshot::channel::<()>();
        let router = debug::router(Arc::clone(&hub));
        tokio::spawn(async move {
            let _ = axum::serve(debug_listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx_debug.await;
                })
                .await;
        });
        Ok(DiscoveryServer { hub, xds, debug, stop: vec![stop_xds, stop_debug] })
    }

    /// The ADS address (plaintext gRPC, like istiod's 15010).
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
    }

    /// The HTTP debug address (like istiod's 15014).
    pub fn debug_addr(&self) -> SocketAddr {
        self.debug
    }

    /// The istiod name the server reports.
    pub fn name(&self) -> &str {
        &self.hub.istiod
    }

    /// The shared state (for direct inspection).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Replaces the scenario and pushes every type to every proxy.
    pub fn set_scenario(&self, scenario: Scenario) {
        let mut inner = self.hub.lock();
        inner.scenario = scenario;
        self.hub.notify(&mut inner);
    }

    /// Changes the scenario in place and pushes.
    pub fn update(&self, f: impl FnOnce(&mut Scenario)) {
        let mut inner = self.hub.lock();
        f(&mut inner.scenario);
        self.hub.notify(&mut inner);
    }

    /// Adds an invalid cluster named `name` to every proxy's CDS and pushes: Envoy NACKs it.
    pub fn push_invalid_cluster(&self, name: &str) {
        let mut inner = self.hub.lock();
        inner.faults.invalid_cluster = Some(name.to_string());
        self.hub.notify(&mut inner);
    }

    /// Removes the invalid cluster and pushes.
    pub fn clear_invalid_cluster(&self) {
        let mut inner = self.hub.lock();
        inner.faults.invalid_cluster = None;
        self.hub.notify(&mut inner);
    }

    /// From now on, responses of `type_url` for proxy `proxy_id` (`pod.ns`) are recorded as sent but
    /// held back, so the proxy's sent and acked nonces differ (STALE).
    pub fn hold(&self, proxy_id: &str, type_url: &str) {
        self.hub.lock().faults.held.insert((proxy_id.to_string(), type_url.to_string()));
    }

    /// Delivers what was held for `proxy_id` and `type_url`, and stops holding.
    pub fn release(&self, proxy_id: &str, type_url: &str) {
        let mut inner = self.hub.lock();
        inner.faults.held.remove(&(proxy_id.to_string(), type_url.to_string()));
        self.hub.notify(&mut inner);
    }

    /// Makes `GET /debug/syncz` answer only after `delay` (an istiod that hangs).
    pub fn delay_debug(&self, delay: Option<Duration>) {
        self.hub.lock().faults.debug_delay = delay;
    }

    /// Adds `count` simulated, fully synced proxies `sim-<i>.<namespace>` to syncz (benchmarks).
    pub fn add_simulated_proxies(&self, namespace: &str, count: usize) {
        let now = SystemTime::now();
        let mut inner = self.hub.lock();
        for i in 0..count {
            let pod = format!("sim-{i}");
            let mut watches = BTreeMap::new();
            for t in [CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE] {
                watches.insert(
                    t.to_string(),
                    Watch {
                        nonce_sent: "1".into(),
                        nonce_acked: "1".into(),
                        version_sent: "1".into(),
                        sent_at: Some(now),
                        acked_at: Some(now),
                        ..Default::default()
                    },
                );
            }
            let octets = u32::try_from(i).unwrap_or(0).to_be_bytes();
            inner.simulated.push(Proxy {
                id: format!("{pod}.{namespace}"),
                node_id: format!(
                    "sidecar~10.{}.{}.{}~{pod}.{namespace}~{namespace}.svc.cluster.local",
                    octets[1], octets[2], octets[3]
                ),
                identity: ProxyIdentity {
                    pod,
                    namespace: namespace.to_string(),
                    ip: Ipv4Addr::new(10, octets[1], octets[2], octets[3]),
                },
                metadata: [
                    ("CLUSTER_ID".to_string(), "Kubernetes".to_string()),
                    ("ISTIO_VERSION".to_string(), ISTIOD_VERSION.to_string()),
                    ("NAMESPACE".to_string(), namespace.to_string()),
                ]
                .into(),
                watches,
            });
        }
    }

    /// The proxy `proxy_id` (`pod.ns`) if it is connected.
    pub fn proxy(&self, proxy_id: &str) -> Option<Proxy> {
        self.hub.proxies().into_iter().find(|p| p.id == proxy_id)
    }

    /// Waits (bounded) until `pred` holds for proxy `proxy_id`.
    pub async fn wait_for(
        &self,
        proxy_id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Proxy) -> bool,
    ) -> anyhow::Result<Proxy> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.proxy(proxy_id);
            if let Some(p) = &current
                && pred(p)
            {
                return Ok(p.clone());
            }
            if Instant::now() >= deadline {
                bail!("proxy {proxy_id} not {what} within {timeout:?}; last state: {current:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until proxy `proxy_id` watches CDS, LDS, EDS and RDS and has ACKed the latest of each.
    pub async fn wait_synced(&self, proxy_id: &str, timeout: Duration) -> anyhow::Result<Proxy> {
        self.wait_for(proxy_id, "synced", timeout, |p| {
            [CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE].iter().all(|t| {
                p.watches
                    .get(*t)
                    .is_some_and(|w| w.status() == envoy_types::pb::envoy::service::status::v3::ConfigStatus::Synced)
            })
        })
        .await
    }
}

impl Drop for DiscoveryServer {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
    }
}

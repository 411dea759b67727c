//! The ADS stream (state of the world): one task per connection answers requests, tracks nonces,
//! records NACKs, serves istiod's debug types, and pushes when the scenario changes.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::resources::to_any;
use super::state::{
    CLIENT_CONFIG_TYPE, CLUSTER_TYPE, DEBUG_CONFIG_DUMP_TYPE, DEBUG_SYNCZ_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, Proxy,
    ROUTE_TYPE, config_dump, control_plane_identifier, node_metadata, parse_node_id,
};

/// The ADS gRPC service.
#[derive(Clone)]
pub struct Ads {
    pub(super) hub: Arc<Hub>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let hub = Arc::clone(&self.hub);
        tokio::spawn(Connection::new(hub, tx).run(request.into_inner()));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("the test discovery server speaks state-of-the-world ADS only"))
    }
}

/// The order istiod pushes types in: clusters before endpoints, listeners before routes.
const PUSH_ORDER: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

struct Connection {
    hub: Arc<Hub>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    id: u64,
    proxy: Option<String>,
    /// Responses recorded as sent but held back by a test (per type).
    held: BTreeMap<String, DiscoveryResponse>,
}

impl Connection {
    fn new(hub: Arc<Hub>, tx: mpsc::Sender<Result<DiscoveryResponse, Status>>) -> Connection {
        let id = hub.next_id();
        Connection { hub, tx, id, proxy: None, held: BTreeMap::new() }
    }

    async fn run(mut self, mut requests: Streaming<DiscoveryRequest>) {
        let mut pushes = self.hub.subscribe();
        loop {
            tokio::select! {
                req = requests.next() => match req {
                    Some(Ok(req)) => {
                        if self.handle(req).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(status)) => {
                        tracing::debug!(conn = self.id, %status, "ads stream error");
                        break;
                    }
                    None => break,
                },
                changed = pushes.changed() => {
                    if changed.is_err() || self.push_all().await.is_err() {
                        break;
                    }
                }
            }
        }
        self.hub.disconnect(self.id);
    }

    async fn send(&self, resp: DiscoveryResponse) -> Result<(), ()> {
        self.tx.send(Ok(resp)).await.map_err(|_| ())
    }

    async fn handle(&mut self, req: DiscoveryRequest) -> Result<(), ()> {
        match req.type_url.as_str() {
            DEBUG_SYNCZ_TYPE => return self.send(self.hub.syncz_response()).await,
            DEBUG_CONFIG_DUMP_TYPE => {
                let name = req.resource_names.first().cloned().unwrap_or_default();
                return self.send(self.hub.config_dump_response(&name)).await;
            }
            _ => {}
        }
        if self.proxy.is_none() {
            let Some(node) = req.node.as_ref() else {
                let _ = self.tx.send(Err(Status::invalid_argument("first request carries no node"))).await;
                return Err(());
            };
            let Some(identity) = parse_node_id(&node.id) else {
                let _ = self
                    .tx
                    .send(Err(Status::invalid_argument(format!(
                        "node id {:?} is not sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local",
                        node.id
                    ))))
                    .await;
                return Err(());
            };
            let id = format!("{}.{}", identity.pod, identity.namespace);
            let proxy = Proxy {
                id: id.clone(),
                node_id: node.id.clone(),
                identity,
                metadata: node_metadata(node),
                watches: BTreeMap::new(),
            };
            self.hub.connect(self.id, proxy);
            self.proxy = Some(id);
        }
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let nonce = req.response_nonce.clone();
        let type_url = req.type_url.clone();
        let respond = self.hub.with_watch(self.id, &type_url, |w| {
            if nonce.is_empty() {
                w.names = names;
                return true;
            }
            if nonce != w.nonce_sent {
                // An answer to a response that has since been replaced: istiod ignores it.
                return false;
            }
            if let Some(err) = &req.error_detail {
                w.nonce_nacked = nonce;
                w.last_error = err.message.clone();
                return false;
            }
            w.nonce_acked = nonce;
            w.acked_at = Some(SystemTime::now());
            w.last_error.clear();
            if w.names != names {
                w.names = names;
                return true;
            }
            false
        });
        if respond { self.respond(&type_url).await } else { Ok(()) }
    }

    async fn respond(&mut self, type_url: &str) -> Result<(), ()> {
        let Some(resp) = self.hub.build_response(self.id, type_url) else {
            return Ok(());
        };
        if self.hub.is_held(self.id, type_url) {
            self.held.insert(type_url.to_string(), resp);
            return Ok(());
        }
        self.held.remove(type_url);
        self.send(resp).await
    }

    async fn push_all(&mut self) -> Result<(), ()> {
        let watched = self.hub.watched_types(self.id);
        for type_url in PUSH_ORDER {
            if !watched.contains(type_url) {
                continue;
            }
            let held = self.hub.is_held(self.id, type_url);
            if !held && let Some(resp) = self.held.remove(type_url) {
                // Released: deliver what was recorded as sent, then the current state.
                self.send(resp).await?;
            }
            self.respond(type_url).await?;
        }
        Ok(())
    }
}

/// Wraps istiod-side debug payloads into a DiscoveryResponse.
pub(super) fn debug_response(type_url: &str, resources: Vec<Any>, istiod: &str, version: &str) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.to_string(),
        resources,
        type_url: type_url.to_string(),
        nonce: String::new(),
        control_plane: Some(ControlPlane { identifier: control_plane_identifier(istiod, version) }),
        ..Default::default()
    }
}

/// The `istio.io/debug/syncz` answer: one ClientConfig per connected proxy.
pub(super) fn syncz(proxies: &[Proxy], istiod: &str, version: &str) -> DiscoveryResponse {
    debug_response(CLIENT_CONFIG_TYPE, proxies.iter().map(|p| to_any(&p.client_config())).collect(), istiod, version)
}

/// The `istio.io/debug/config_dump` answer for one proxy (no resources if it is not connected).
pub(super) fn config_dump_of(
    resources: Option<&super::resources::Resources>,
    istiod: &str,
    version: &str,
) -> DiscoveryResponse {
    let any = resources.map(|r| to_any(&config_dump(r, version, SystemTime::now())));
    debug_response(DEBUG_CONFIG_DUMP_TYPE, any.into_iter().collect(), istiod, version)
}

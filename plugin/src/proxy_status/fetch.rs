//! istiod's xDS debug API (debug types on 15010) through a port-forward; the API server, the
//! port-forwards and Envoy's admin API are in [`crate::cluster`].

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value};

use crate::cluster::{ClusterError, portforward};

/// The first byte of the `istio.io/debug/*` type URLs.
pub const DEBUG_SYNCZ: &str = "istio.io/debug/syncz";
/// istiod's per-proxy config dump debug type.
pub const DEBUG_CONFIG_DUMP: &str = "istio.io/debug/config_dump";

fn failed(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Failed { what: what.to_string(), reason: e.to_string() }
}

/// Sends one istiod debug request over ADS (plaintext gRPC, port 15010) through a port-forward and
/// returns the resources' payloads and the control plane identifier.
pub async fn xds_debug(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    type_url: &str,
    names: Vec<String>,
) -> Result<(Vec<Vec<u8>>, String), ClusterError> {
    let what = format!("{type_url} from {namespace}/{pod}:{port} (xDS over port-forward)");
    // Open the port-forward first so that a 403 names the permission, then connect gRPC through it.
    let mut pf = portforward(client, namespace, pod, port).await?;
    let stream = std::sync::Mutex::new(pf.take_stream(port));
    let connector = tower::service_fn(move |_: http::Uri| {
        let taken = stream.lock().map(|mut s| s.take()).unwrap_or(None);
        async move {
            taken
                .map(hyper_util::rt::TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the port-forward stream is already used"))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://istiod.invalid")
        .connect_with_connector(connector)
        .await
        .map_err(|e| failed(&what, e))?;
    let mut ads = AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let node = Node {
        id: format!("istioctl~0.0.0.0~kubectl-mesh.{namespace}~{namespace}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: [("Generator".to_string(), PbValue { kind: Some(value::Kind::StringValue("event".into())) })]
                .into(),
        }),
        ..Default::default()
    };
    let req = DiscoveryRequest {
        node: Some(node),
        type_url: type_url.to_string(),
        resource_names: names,
        ..Default::default()
    };
    let mut responses = ads
        .stream_aggregated_resources(futures::stream::iter(vec![req]))
        .await
        .map_err(|e| failed(&what, e))?
        .into_inner();
    let resp = responses
        .message()
        .await
        .map_err(|e| failed(&what, e))?
        .ok_or_else(|| failed(&what, "istiod closed the stream without an answer"))?;
    pf.abort();
    let identifier = resp.control_plane.map(|c| c.identifier).unwrap_or_default();
    Ok((resp.resources.into_iter().map(|a| a.value).collect(), identifier))
}

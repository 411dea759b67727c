//! The I/O of proxy-status: the API server (pods, port-forwards, pod proxy), istiod's debug API
//! (HTTP on 15014, xDS debug types on 15010) and Envoy's admin API, each call bounded by a timeout.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The first byte of the `istio.io/debug/*` type URLs.
pub const DEBUG_SYNCZ: &str = "istio.io/debug/syncz";
/// istiod's per-proxy config dump debug type.
pub const DEBUG_CONFIG_DUMP: &str = "istio.io/debug/config_dump";

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// RBAC denied a request.
    #[error(
        "forbidden: missing RBAC permission to {verb} {resource}{} ({message}); grant it with a Role/ClusterRole rule {{apiGroups: [\"\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}}",
        namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " in all namespaces".to_string())
    )]
    Forbidden {
        /// The verb (`list`, `create`, `get`).
        verb: String,
        /// The resource (`pods`, `pods/portforward`, `pods/proxy`).
        resource: String,
        /// The namespace (None: cluster-wide).
        namespace: Option<String>,
        /// The API server's message.
        message: String,
    },
    /// The call did not finish in time.
    #[error("{what}: no answer within {timeout:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// Any other failure.
    #[error("{what}: {message}")]
    Failed {
        /// What was being done.
        what: String,
        /// Why it failed.
        message: String,
    },
}

fn failed(what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Failed { what: what.to_string(), message: e.to_string() }
}

/// Maps a kube error to [`FetchError`], naming the RBAC permission on 403.
pub fn kube_error(e: kube::Error, verb: &str, resource: &str, namespace: Option<&str>, what: &str) -> FetchError {
    match e {
        kube::Error::Api(status) if status.code == 403 => FetchError::Forbidden {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            message: status.message.clone(),
        },
        other => failed(what, other),
    }
}

/// Runs `fut` with a timeout.
pub async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(FetchError::Timeout { what: what.to_string(), timeout }))
}

/// Builds a client from `--kubeconfig` / `--context` (else KUBECONFIG / ~/.kube/config / in-cluster).
pub async fn client(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> Result<kube::Client, FetchError> {
    let options = kube::config::KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| failed(&format!("reading kubeconfig {}", path.display()), e))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| failed("loading kubeconfig", e))?
        }
        None if context.is_some() => {
            kube::Config::from_kubeconfig(&options).await.map_err(|e| failed("loading kubeconfig", e))?
        }
        None => kube::Config::infer().await.map_err(|e| failed("loading kubeconfig", e))?,
    };
    kube::Client::try_from(config).map_err(|e| failed("building the API client", e))
}

/// Lists pods in `namespace` (None: all) matching `selector`.
pub async fn list_pods(
    client: &kube::Client,
    namespace: Option<&str>,
    selector: Option<&str>,
    timeout: Duration,
) -> Result<Vec<Pod>, FetchError> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = ListParams::default();
    if let Some(s) = selector {
        params = params.labels(s);
    }
    let what = format!("listing pods{}", namespace.map(|n| format!(" in {n}")).unwrap_or_default());
    bounded(timeout, &what, async {
        api.list(&params).await.map(|l| l.items).map_err(|e| kube_error(e, "list", "pods", namespace, &what))
    })
    .await
}

/// GETs `path` from the pod's `port` through a port-forward; returns the body on 200.
pub async fn http_via_portforward(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<Vec<u8>, FetchError> {
    let what = format!("GET {path} on pod {namespace}/{pod}:{port} (port-forward)");
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pf = api
        .portforward(pod, &[port])
        .await
        .map_err(|e| kube_error(e, "create", "pods/portforward", Some(namespace), &what))?;
    let stream = pf.take_stream(port).ok_or_else(|| failed(&what, "the port-forward has no stream"))?;
    let errors = pf.take_error(port);
    let request = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed(&what, e))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| failed(&what, e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&what, e))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| failed(&what, e))?.to_bytes().to_vec();
        if !status.is_success() {
            return Err(failed(&what, format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())));
        }
        Ok(body)
    };
    let result = match errors {
        Some(errors) => tokio::select! {
            r = request => r,
            Some(msg) = errors => Err(failed(&what, msg)),
        },
        None => request.await,
    };
    pf.abort();
    result
}

/// GETs `path` from the pod's `port` through the API server's pod proxy.
pub async fn http_via_proxy(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<Vec<u8>, FetchError> {
    let what = format!("GET {path} on pod {namespace}/{pod}:{port} (pod proxy)");
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let req = http::Request::get(uri).body(Vec::new()).map_err(|e| failed(&what, e))?;
    client
        .request_text(req)
        .await
        .map(String::into_bytes)
        .map_err(|e| kube_error(e, "get", "pods/proxy", Some(namespace), &what))
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
) -> Result<(Vec<Vec<u8>>, String), FetchError> {
    let what = format!("{type_url} from {namespace}/{pod}:{port} (xDS over port-forward)");
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // Probe once so that a 403 names the permission, then connect the gRPC channel through it.
    let mut pf = api
        .portforward(pod, &[port])
        .await
        .map_err(|e| kube_error(e, "create", "pods/portforward", Some(namespace), &what))?;
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

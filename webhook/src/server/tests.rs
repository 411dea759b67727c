//! Router tests: every outcome and every bad input, through `oneshot` (no socket).

use axum::body::{Body, Bytes};
use base64::Engine as _;
use http::Request;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::metrics::Outcome;

fn fixture(name: &str) -> Value {
    let bytes =
        mesh_test_data::read_shared(&format!("fixtures/kube-apiserver/{name}")).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&bytes).unwrap()
}

fn ready_state() -> Arc<AppState> {
    let state = Arc::new(AppState::new(Arc::new(CertStore::new())));
    state.set_config(InjectConfig::default());
    state.set_native_sidecars(true);
    state
}

fn review_of(pod: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "request": {"uid": "uid-1", "namespace": "foo", "operation": "CREATE", "object": pod}})
}

fn pod_with_annotations(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "foo", "annotations": annotations},
           "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
}

async fn post(state: &Arc<AppState>, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path).header("content-type", content_type).body(Body::from(body)).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

async fn post_review(state: &Arc<AppState>, path: &str, review: &Value) -> Value {
    let (status, body) = post(state, path, "application/json", serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn apply_patch(object: &Value, response: &Value) -> Value {
    assert_eq!(response["response"]["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(response["response"]["patch"].as_str().unwrap());
    let patch: json_patch::Patch = serde_json::from_slice(&bytes.unwrap()).unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

#[tokio::test]
async fn real_api_server_review_is_injected() {
    let state = ready_state();
    for name in ["admissionreview-v1-pod-foo.json", "admissionreview-v1-pod-generatename-owner.json"] {
        let review = fixture(name);
        let response = post_review(&state, "/inject", &review).await;
        assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response["kind"], "AdmissionReview");
        assert_eq!(response["response"]["uid"], review["request"]["uid"], "{name}: uid must be echoed");
        assert_eq!(response["response"]["allowed"], true);
        let patched = apply_patch(&review["request"]["object"], &response);
        assert!(container(&patched, "istio-proxy").is_some(), "{name}: no istio-proxy in {patched}");
        assert!(container(&patched, "istio-init").is_some(), "{name}: no istio-init in {patched}");
    }
    assert_eq!(state.metrics.requests(Outcome::Injected, ""), 2);
}

#[tokio::test]
async fn opted_out_pod_is_skipped_without_patch() {
    let state = ready_state();
    let response =
        post_review(&state, "/inject", &review_of(pod_with_annotations(json!({"sidecar.istio.io/inject": "false"}))))
            .await;
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(response["response"]["uid"], "uid-1");
    assert!(response["response"].get("patch").is_none(), "{response}");
    assert!(response["response"].get("patchType").is_none(), "{response}");
    assert_eq!(state.metrics.requests(Outcome::Skipped, "pod_opt_out"), 1);
}

#[tokio::test]
async fn bad_annotation_is_denied_with_its_name() {
    let state = ready_state();
    let pod = pod_with_annotations(json!({"traffic.sidecar.istio.io/excludeInboundPorts": "80,abc"}));
    let response = post_review(&state, "/inject", &review_of(pod)).await;
    assert_eq!(response["response"]["allowed"], false, "{response}");
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("excludeInboundPorts"), "{message}");
    assert!(message.contains("abc"), "{message}");
    assert_eq!(state.metrics.requests(Outcome::Denied, ""), 1);
}

#[tokio::test]
async fn cluster_and_network_come_from_the_path() {
    let state = ready_state();
    let review = fixture("admissionreview-v1-pod-foo.json");
    let response = post_review(&state, "/inject/cluster/cluster-7/net/network-3", &review).await;
    let patched = apply_patch(&review["request"]["object"], &response);
    let proxy = container(&patched, "istio-proxy").unwrap();
    let env =
        |name: &str| proxy["env"].as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(env("ISTIO_META_CLUSTER_ID"), Some(json!("cluster-7")), "{proxy}");
    assert_eq!(env("ISTIO_META_NETWORK"), Some(json!("network-3")), "{proxy}");
}

#[tokio::test]
async fn wrong_method_is_405() {
    let state = ready_state();
    for path in ["/inject", "/inject/cluster/c1/net/n1"] {
        let response = router(state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "POST");
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains("method GET is not allowed"), "{text:?}");
    }
    assert_eq!(state.metrics.requests(Outcome::Error, "method_not_allowed"), 2);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let state = ready_state();
    let body = serde_json::to_vec(&fixture("admissionreview-v1-pod-foo.json")).unwrap();
    let (status, text) = post(&state, "/inject", "text/plain", body).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&text).contains("application/json"));
    assert_eq!(state.metrics.requests(Outcome::Error, "unsupported_media_type"), 1);
}

#[tokio::test]
async fn body_over_3_mib_is_413() {
    let state = ready_state();
    let mut review = review_of(pod_with_annotations(json!({})));
    review["request"]["object"]["metadata"]["annotations"]["big"] = json!("x".repeat(MAX_BODY_BYTES));
    let (status, _) = post(&state, "/inject", "application/json", serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(state.metrics.requests(Outcome::Error, "too_large"), 1);
    // The server keeps serving afterwards.
    let response = post_review(&state, "/inject", &fixture("admissionreview-v1-pod-foo.json")).await;
    assert_eq!(response["response"]["allowed"], true);
}

#[tokio::test]
async fn malformed_reviews_are_400_with_a_message() {
    let state = ready_state();
    let cases: [(&[u8], &str); 4] = [
        (b"{not json", "malformed AdmissionReview JSON"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "has no request"),
        (br#"{"kind":"AdmissionReview","request":{"uid":"u-9"}}"#, "request u-9 has no object"),
        (br#"{"kind":"AdmissionReview","request":{"uid":"u-9","object":null}}"#, "request u-9 has no object"),
    ];
    for (body, expected) in cases {
        let (status, text) = post(&state, "/inject", "application/json", body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains(expected), "{text:?} should contain {expected:?}");
    }
    assert_eq!(state.metrics.requests(Outcome::Error, "bad_request"), 4);
}

#[tokio::test]
async fn unknown_path_keys_are_404() {
    let state = ready_state();
    let body = serde_json::to_vec(&fixture("admissionreview-v1-pod-foo.json")).unwrap();
    let (status, text) = post(&state, "/inject/zone/z1", "application/json", body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&text).contains("\"zone\""));
    let (status, _) = post(&state, "/mutate", "application/json", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// Regression: bytes that do not percent-decode to text were a 400 "Invalid URL" from the path
// extractor, not counted.
#[tokio::test]
async fn path_bytes_that_are_not_text_are_404_bad_path() {
    let state = ready_state();
    let body = serde_json::to_vec(&fixture("admissionreview-v1-pod-foo.json")).unwrap();
    let (status, text) = post(&state, "/inject/cluster/%00/net/%ff", "application/json", body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("\"%00\" decodes to a control character"), "{text}");
    let (status, text) = post(&state, "/inject/cluster/c/net/%ff", "application/json", body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&text).contains("\"%ff\" does not decode to UTF-8"));
    assert_eq!(state.metrics.requests(Outcome::Error, "bad_path"), 2);
    let response =
        post_review(&state, "/inject/cluster/c%2D1/net/n1", &fixture("admissionreview-v1-pod-foo.json")).await;
    assert_eq!(response["response"]["allowed"], true);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let state =
        Arc::new(AppState::new(Arc::new(CertStore::new())).with_body_timeout(std::time::Duration::from_millis(200)));
    state.set_config(InjectConfig::default());
    state.set_native_sidecars(true);
    let (mut tx, body) = {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
        (tx, Body::new(http_body_util::StreamBody::new(rx)))
    };
    futures::SinkExt::send(&mut tx, Ok(hyper::body::Frame::data(Bytes::from_static(b"{\"kind\"")))).await.unwrap();
    let request = Request::post("/inject").header("content-type", "application/json").body(body).unwrap();
    let started = std::time::Instant::now();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("not received within 200 ms"));
    assert_eq!(state.metrics.requests(Outcome::Error, "timeout"), 1);
    drop(tx);
}

#[tokio::test]
async fn no_config_yet_is_503() {
    let state = Arc::new(AppState::new(Arc::new(CertStore::new())));
    let body = serde_json::to_vec(&fixture("admissionreview-v1-pod-foo.json")).unwrap();
    let (status, _) = post(&state, "/inject", "application/json", body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

async fn get(state: &Arc<AppState>, path: &str) -> (StatusCode, String) {
    let response = health_router(state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    (status, String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

#[tokio::test]
async fn health_endpoints_follow_the_state() {
    let state = Arc::new(AppState::new(Arc::new(CertStore::new())));
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    let (status, text) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("InjectConfig"), "{text}");
    state.set_config(InjectConfig::default());
    assert!(get(&state, "/readyz").await.1.contains("certificate"));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&key).unwrap();
    state.certs.set(crate::tls::certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());
    assert!(get(&state, "/readyz").await.1.contains("node"));
    state.set_native_sidecars(true);
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    state.start_draining();
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, metrics) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("# TYPE mesh_webhook_requests counter"), "{metrics}");
    assert!(metrics.contains("mesh_webhook_request_duration_seconds"), "{metrics}");
}

fn with_uid_and_managed_time(review: &Value, uid: &str, time: &str) -> Value {
    let mut review = review.clone();
    review["request"]["uid"] = json!(uid);
    for entry in review["request"]["object"]["metadata"]["managedFields"].as_array_mut().unwrap() {
        entry["time"] = json!(time);
    }
    review
}

#[tokio::test]
async fn replicas_are_answered_from_the_cache_with_their_own_uid() {
    let state = ready_state();
    let uncached = Arc::new(AppState::new(Arc::new(CertStore::new())).with_review_cache(0));
    uncached.set_config(InjectConfig::default());
    uncached.set_native_sidecars(true);
    let template = fixture("admissionreview-v1-pod-generatename-owner.json");
    for (i, time) in ["2026-11-21T14:22:34Z", "2026-11-21T14:22:35Z", "2026-11-21T15:00:00Z"].iter().enumerate() {
        let review = with_uid_and_managed_time(&template, &format!("uid-{i}"), time);
        let response = post_review(&state, "/inject", &review).await;
        assert_eq!(response["response"]["uid"], format!("uid-{i}"));
        assert_eq!(response, post_review(&uncached, "/inject", &review).await, "replica {i}");
    }
    assert_eq!((state.metrics.review_cache_lookups(true), state.metrics.review_cache_lookups(false)), (2, 1));
    assert_eq!(state.metrics.requests(Outcome::Injected, ""), 3);
    assert_eq!(uncached.metrics.review_cache_lookups(false), 0, "no lookups with the cache off");
    assert_eq!(state.config().unwrap().cache.len(), 1);
}

#[tokio::test]
async fn the_cache_tells_apart_path_node_support_config_and_object() {
    let state = ready_state();
    let review = fixture("admissionreview-v1-pod-foo.json");
    let plain = post_review(&state, "/inject", &review).await;
    let pathed = post_review(&state, "/inject/cluster/cluster-7/net/network-3", &review).await;
    assert_ne!(plain, pathed);
    assert_eq!(state.metrics.review_cache_lookups(false), 2);
    assert_eq!(post_review(&state, "/inject/cluster/cluster-7/net/network-3", &review).await, pathed);
    assert_eq!(state.metrics.review_cache_lookups(true), 1);

    state.set_native_sidecars(false);
    let sidecar = post_review(&state, "/inject", &review).await;
    let patched = apply_patch(&review["request"]["object"], &sidecar);
    let proxy_among_containers =
        patched["spec"]["containers"].as_array().unwrap().iter().any(|c| c["name"] == "istio-proxy");
    assert!(proxy_among_containers, "without node support the proxy is a regular container: {patched}");
    assert_eq!(state.metrics.review_cache_lookups(false), 3);

    state.set_config(InjectConfig { cluster_domain: "example.internal".into(), ..InjectConfig::default() });
    let reconfigured = post_review(&state, "/inject", &review).await;
    assert_ne!(reconfigured, sidecar, "a new config starts an empty cache");
    assert_eq!(state.metrics.review_cache_lookups(false), 4);

    let mut changed = review.clone();
    changed["request"]["object"]["metadata"]["labels"]["version"] = json!("v2");
    let response = post_review(&state, "/inject", &changed).await;
    let patched = apply_patch(&changed["request"]["object"], &response);
    assert_eq!(patched["metadata"]["labels"]["version"], "v2");
    assert_eq!(state.metrics.review_cache_lookups(false), 5);
}

#[tokio::test]
async fn skips_and_denials_are_cached_with_their_reason() {
    let state = ready_state();
    let skipped = review_of(pod_with_annotations(json!({"sidecar.istio.io/inject": "false"})));
    let denied = review_of(pod_with_annotations(json!({"traffic.sidecar.istio.io/excludeInboundPorts": "80,abc"})));
    for uid in ["a", "b"] {
        let mut review = skipped.clone();
        review["request"]["uid"] = json!(uid);
        let response = post_review(&state, "/inject", &review).await;
        assert_eq!(
            (response["response"]["uid"].as_str(), response["response"]["allowed"].as_bool()),
            (Some(uid), Some(true))
        );
        let mut review = denied.clone();
        review["request"]["uid"] = json!(uid);
        let response = post_review(&state, "/inject", &review).await;
        assert_eq!(response["response"]["uid"], uid);
        assert!(response["response"]["status"]["message"].as_str().unwrap().contains("abc"), "{response}");
    }
    assert_eq!(state.metrics.requests(Outcome::Skipped, "pod_opt_out"), 2);
    assert_eq!(state.metrics.requests(Outcome::Denied, ""), 2);
    assert_eq!((state.metrics.review_cache_lookups(true), state.metrics.review_cache_lookups(false)), (2, 2));
}

/// Review lines written by `state`'s direct log writer for these reviews, with `tracing` logging at
/// `level` (the line is written only where `tracing` would write it).
async fn direct_review_lines(level: tracing::Level, reviews: &[Value]) -> Vec<Value> {
    let subscriber = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::sink).finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let out = crate::logsink::tests::Recorder::default();
    let (sink, guard) = crate::logsink::LogSink::spawn(out.clone()).unwrap();
    let state = Arc::new(
        AppState::new(Arc::new(CertStore::new())).with_review_log(Some(crate::reviewlog::ReviewLog::new(sink))),
    );
    state.set_config(InjectConfig::default());
    state.set_native_sidecars(true);
    for review in reviews {
        post_review(&state, "/inject", review).await;
    }
    drop(guard);
    out.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn review_lines_go_straight_to_the_json_log_writer() {
    let review = fixture("admissionreview-v1-pod-generatename-owner.json");
    let denied = review_of(pod_with_annotations(json!({"sidecar.istio.io/interceptionMode": "bogus"})));
    let reviews = [review.clone(), with_uid_and_managed_time(&review, "uid-2", "2026-11-21T14:22:35Z"), denied];
    let lines = direct_review_lines(tracing::Level::INFO, &reviews).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let pick = |l: &Value| {
        (l["level"].clone(), l["message"].clone(), l["namespace"].clone(), l["pod"].clone(), l["uid"].clone())
    };
    let uid = review["request"]["uid"].clone();
    assert_eq!(pick(&lines[0]), (json!("INFO"), json!("admission review"), json!("foo"), json!("bar-7d9f8b6c5-"), uid));
    assert_eq!((&lines[0]["outcome"], &lines[0]["cached"]), (&json!("injected"), &json!(false)));
    assert_eq!((&lines[1]["uid"], &lines[1]["cached"]), (&json!("uid-2"), &json!(true)));
    assert_eq!(lines[2]["outcome"], "denied");
    assert!(lines[2]["reason"].as_str().unwrap().contains("bogus"), "{}", lines[2]);
    assert!(lines.iter().all(|l| l["elapsed_us"].is_u64() && l["target"] == "mesh_webhook::server"));
}

#[tokio::test]
async fn review_lines_follow_the_log_level() {
    let review = fixture("admissionreview-v1-pod-generatename-owner.json");
    assert_eq!(direct_review_lines(tracing::Level::WARN, &[review]).await, Vec::<Value>::new());
}

mod token_volume;

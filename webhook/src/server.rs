//! The HTTP layer: AdmissionReviews in, injection decisions out ([`router`]), and the health
//! endpoints ([`health_router`]). Injection itself is `mesh_core::inject::Injector`, pure functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use mesh_core::inject::{Decision, InjectConfig, InjectRequest, Injector};

use crate::admission::{self, InjectTarget, Verdict};
use crate::cache::{self, Decided, ReviewCache};
use crate::metrics::{Metrics, Outcome};
use crate::reviewlog::{ReviewLine, ReviewLog};
use crate::tls::CertStore;

/// Largest accepted AdmissionReview body: 3 MiB, as the API server's own limit for objects.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Default time allowed to receive a request's body, counted from the end of its head.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A config in use: its injector and the answers decided with it.
#[derive(Debug)]
pub struct Configured {
    /// The injector for the config (with its prebuilt template parts).
    pub injector: Injector,
    /// Answers decided with this config.
    pub cache: ReviewCache,
}

/// Everything the handlers share. Config, certificate and node support change at runtime.
#[derive(Debug)]
pub struct AppState {
    config: ArcSwapOption<Configured>,
    cache_bytes: usize,
    body_timeout: Duration,
    native_sidecars: AtomicBool,
    nodes_synced: AtomicBool,
    draining: AtomicBool,
    /// The serving certificate.
    pub certs: Arc<CertStore>,
    /// The metrics.
    pub metrics: Metrics,
    /// Where review lines go without `tracing`'s formatter (JSON logs); `None`: through `tracing`.
    review_log: Option<ReviewLog>,
}

impl AppState {
    /// State with no config yet, no node information yet and an empty certificate store; the
    /// review cache has its default size ([`cache::DEFAULT_BYTES`]).
    pub fn new(certs: Arc<CertStore>) -> Self {
        AppState {
            config: ArcSwapOption::empty(),
            cache_bytes: cache::DEFAULT_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            native_sidecars: AtomicBool::new(false),
            nodes_synced: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            certs,
            metrics: Metrics::new(),
            review_log: None,
        }
    }

    /// The same state writing its review lines into `log` (the JSON log writer) directly.
    pub fn with_review_log(mut self, log: Option<ReviewLog>) -> Self {
        self.review_log = log;
        self
    }

    /// The same state with a review cache of at most `bytes` (0: no cache). Set before the first
    /// config.
    pub fn with_review_cache(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The same state allowing `timeout` to receive a request's body (answered 408 after it).
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Replaces the config atomically (with its prebuilt template parts and an empty review cache);
    /// reviews already running keep the one they started with.
    pub fn set_config(&self, config: InjectConfig) {
        let configured = Configured { injector: Injector::new(config), cache: ReviewCache::new(self.cache_bytes) };
        self.config.store(Some(Arc::new(configured)));
    }

    /// The config in use, if one is loaded.
    pub fn config(&self) -> Option<Arc<Configured>> {
        self.config.load_full()
    }

    /// Records what the nodes support (what `nativeSidecars: auto` resolves to) and that it is known.
    pub fn set_native_sidecars(&self, supported: bool) {
        self.native_sidecars.store(supported, Ordering::Relaxed);
        self.nodes_synced.store(true, Ordering::Release);
    }

    /// Whether the nodes' kubelet versions are known (or known to be unavailable).
    pub fn nodes_known(&self) -> bool {
        self.nodes_synced.load(Ordering::Acquire)
    }

    /// What `nativeSidecars: auto` resolves to now.
    pub fn native_sidecars(&self) -> bool {
        self.native_sidecars.load(Ordering::Relaxed)
    }

    /// Marks the server as shutting down: `/readyz` fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `Ok` when the server can answer reviews, else what is missing.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            return Err("shutting down");
        }
        if self.config.load().is_none() {
            return Err("no valid InjectConfig loaded yet");
        }
        if !self.certs.is_loaded() {
            return Err("no serving certificate loaded yet");
        }
        if !self.nodes_synced.load(Ordering::Acquire) {
            return Err("node kubelet versions not known yet");
        }
        Ok(())
    }
}

/// The HTTPS routes: `POST /inject` and `POST /inject/cluster/<c>/net/<n>`, bodies up to
/// [`MAX_BODY_BYTES`] received within the body timeout ([`AppState::with_body_timeout`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/inject", post(inject_default))
        .route("/inject/", post(inject_default))
        .route("/inject/{*rest}", post(inject_with_path))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The plain-HTTP routes: `/healthz`, `/readyz`, `/metrics`.
pub fn health_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], state.metrics.encode()).into_response()
}

/// 405 for any method but POST on the review paths, counted and logged like other rejected requests.
async fn method_not_allowed(State(state): State<Arc<AppState>>, method: http::Method) -> Response {
    let started = Instant::now();
    let failure = Failure {
        status: StatusCode::METHOD_NOT_ALLOWED,
        reason: "method_not_allowed",
        message: format!("method {method} is not allowed: send the AdmissionReview with POST"),
    };
    let mut response = rejected(&state, failure, started);
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

async fn inject_default(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let body = read_body(&headers, body, state.body_timeout).await;
    review(&state, Ok(InjectTarget::default()), &headers, body)
}

async fn inject_with_path(
    State(state): State<Arc<AppState>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The raw path, so that bytes that do not decode are answered like any other bad path.
    let rest = uri.path().strip_prefix("/inject/").unwrap_or(uri.path());
    let target = admission::parse_inject_path(rest);
    let body = read_body(&headers, body, state.body_timeout).await;
    review(&state, target, &headers, body)
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] within `timeout`. Every frame is copied into
/// one buffer, so the memory held is what was received (a frame can pin the whole read buffer it
/// arrived in).
async fn read_body(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        reason: "too_large",
        message: format!("request body is larger than {MAX_BODY_BYTES} bytes (3 MiB)"),
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|length: usize| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure {
                status: StatusCode::BAD_REQUEST,
                reason: "bad_body",
                message: format!("cannot read the request body: {e}"),
            })?;
            if let Some(data) = frame.data_ref() {
                if received.len() + data.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                received.extend_from_slice(data);
            }
        }
        Ok(received)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => Err(Failure {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: "timeout",
            message: format!("request body not received within {} ms; closing the connection", timeout.as_millis()),
        }),
    }
}

/// A review that could not be answered with an AdmissionReview.
struct Failure {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

fn review(
    state: &AppState,
    target: Result<InjectTarget, admission::PathError>,
    headers: &HeaderMap,
    body: Result<Vec<u8>, Failure>,
) -> Response {
    let started = Instant::now();
    match answer(state, target, headers, body) {
        Ok(answered) => {
            let elapsed = started.elapsed();
            state.metrics.observe_request(answered.decided.outcome, answered.decided.reason, elapsed);
            let line = ReviewLine {
                namespace: &answered.namespace,
                pod: &answered.pod,
                uid: &answered.uid,
                outcome: answered.decided.outcome.as_str(),
                reason: &answered.decided.reason_text,
                cached: answered.cached,
                elapsed_us: micros(elapsed),
            };
            match &state.review_log {
                Some(log) if tracing::enabled!(tracing::Level::INFO) => log.write(&line),
                _ => log_review_with_tracing(&line),
            }
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], answered.body).into_response()
        }
        Err(failure) => rejected(state, failure, started),
    }
}

/// A request answered with an HTTP error: counted, logged, the message as the body.
fn rejected(state: &AppState, failure: Failure, started: Instant) -> Response {
    let elapsed = started.elapsed();
    state.metrics.observe_request(Outcome::Error, failure.reason, elapsed);
    tracing::warn!(
        outcome = "error",
        reason = failure.reason,
        status = failure.status.as_u16(),
        error = %failure.message,
        elapsed_us = micros(elapsed),
        "admission review rejected"
    );
    (failure.status, format!("{}\n", failure.message)).into_response()
}

/// The review line through `tracing` (text logs, tests); [`ReviewLog`] writes the same JSON line.
pub(crate) fn log_review_with_tracing(line: &ReviewLine) {
    tracing::info!(
        namespace = line.namespace,
        pod = line.pod,
        uid = line.uid,
        outcome = line.outcome,
        reason = line.reason,
        cached = line.cached,
        elapsed_us = line.elapsed_us,
        "admission review"
    );
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

struct Answered {
    namespace: String,
    pod: String,
    uid: String,
    decided: Arc<Decided>,
    /// Whether the answer came from the review cache.
    cached: bool,
    body: Vec<u8>,
}

fn answer(
    state: &AppState,
    target: Result<InjectTarget, admission::PathError>,
    headers: &HeaderMap,
    body: Result<Vec<u8>, Failure>,
) -> Result<Answered, Failure> {
    let target =
        target.map_err(|e| Failure { status: StatusCode::NOT_FOUND, reason: "bad_path", message: e.to_string() })?;
    check_content_type(headers)?;
    let body = body?;
    let bad_request = |e: admission::AdmissionError| Failure {
        status: StatusCode::BAD_REQUEST,
        reason: "bad_request",
        message: e.to_string(),
    };
    let request = admission::parse_review(&body).map_err(bad_request)?;
    let configured = state.config().ok_or_else(|| Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "not_ready",
        message: "no valid InjectConfig loaded yet".into(),
    })?;
    let native = state.native_sidecars();
    let (cluster, network) = (target.cluster.as_deref(), target.network.as_deref());
    let cache = &configured.cache;
    let key = cache.enabled().then(|| cache::Key::new(&request, cluster, network, native));
    let hit = key.as_ref().and_then(|key| cache.get(key));
    if key.is_some() {
        state.metrics.review_cache(hit.is_some());
    }
    let cached = hit.is_some();
    let decided = match hit {
        Some(decided) => decided,
        None => {
            let object = request.object_value().map_err(bad_request)?;
            let inject_request = InjectRequest {
                namespace: &request.namespace,
                cluster_id: cluster,
                network,
                nodes_support_native_sidecars: native,
            };
            let decided = Arc::new(decide(configured.injector.inject(&object, &inject_request))?);
            if let Some(key) = key {
                cache.insert(key, decided.clone());
            }
            decided
        }
    };
    let body = admission::render_response(&request.api_version, &request.uid, &decided.verdict).map_err(internal)?;
    Ok(Answered { namespace: request.namespace, pod: request.name, uid: request.uid, decided, cached, body })
}

fn internal(e: serde_json::Error) -> Failure {
    Failure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "internal",
        message: format!("cannot serialise the AdmissionReview response: {e}"),
    }
}

/// The skip reason of a pod that already carries the injection the injector would write.
pub const ALREADY_INJECTED: &str = "already_injected";

/// The answer to an injection decision, as the cache keeps it.
fn decide(decision: Decision) -> Result<Decided, Failure> {
    Ok(match decision {
        Decision::Skip(why) => Decided {
            outcome: Outcome::Skipped,
            reason: why.label(),
            reason_text: why.label().to_string(),
            verdict: Verdict::Allow,
        },
        Decision::Deny(message) => Decided {
            outcome: Outcome::Denied,
            reason: "",
            reason_text: message.clone(),
            verdict: Verdict::Deny(message),
        },
        // The pod already carries this injection (the re-review after the API server's
        // ServiceAccount plugin mounted its token in the injected containers): allowed as it is.
        Decision::Patch(patch) if patch.0.is_empty() => Decided {
            outcome: Outcome::Skipped,
            reason: ALREADY_INJECTED,
            reason_text: ALREADY_INJECTED.to_string(),
            verdict: Verdict::Allow,
        },
        Decision::Patch(patch) => Decided {
            outcome: Outcome::Injected,
            reason: "",
            reason_text: String::new(),
            verdict: Verdict::patch(&patch).map_err(internal)?,
        },
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Failure> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Failure {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: "unsupported_media_type",
            message: format!("content-type {value:?} is not supported: send application/json"),
        })
    }
}

#[cfg(test)]
mod tests;

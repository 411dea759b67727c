//! `pods/proxy`: forwards an HTTP request to the pod's port (mapped by the test to a loopback address).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::resource::ResourceType;
use super::shared::{Body, Shared, lock};
use super::status::ApiError;

/// How long the whole proxied exchange may take before the server gives up.
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

fn unavailable(message: String) -> ApiError {
    ApiError { code: 503, reason: "ServiceUnavailable", message, details: None }
}

/// Splits `[scheme:]name[:port]` (the URL's pod segment).
fn split_name(segment: &str) -> (Option<&str>, &str, Option<&str>) {
    let parts: Vec<&str> = segment.split(':').collect();
    match parts.as_slice() {
        [name] => (None, name, None),
        [name, port] => (None, name, Some(port)),
        [scheme, name, port, ..] => (Some(scheme), name, Some(port)),
        [] => (None, segment, None),
    }
}

/// Forwards the request to the mapped address of (namespace, pod, port).
pub async fn forward(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    rt: &ResourceType,
    ns: &str,
    segment: &str,
    rest: &str,
) -> Result<Response<Body>, ApiError> {
    let (_scheme, name, port) = split_name(segment);
    let pod = shared.store.get(rt, ns, name)?;
    let port: u16 = match port {
        None | Some("") => 80,
        Some(p) => p.parse().map_err(|_| ApiError::bad_request(format!("invalid port {p:?} in {segment:?}")))?,
    };
    let pod_ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("").to_string();
    if pod_ip.is_empty() {
        return Err(ApiError::bad_request(format!("address not allowed: pod {name} has no IP")));
    }
    let target = lock(&shared.proxy_targets).get(&(ns.to_string(), name.to_string(), port)).copied();
    let Some(addr) = target else {
        return Err(unavailable(format!(
            "error trying to reach service: dial tcp {pod_ip}:{port}: connect: connection refused"
        )));
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let (parts, body) = req.into_parts();
    let mut out = Request::builder().method(parts.method).uri(path_and_query);
    for (k, v) in &parts.headers {
        if k != header::AUTHORIZATION && k != header::HOST && k != header::CONNECTION {
            out = out.header(k, v);
        }
    }
    out = out.header(header::HOST, format!("{pod_ip}:{port}"));
    let out = out.body(body).map_err(|e| ApiError::bad_request(format!("building the proxied request: {e}")))?;
    let exchange = async move {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("error trying to reach service: dial tcp {pod_ip}:{port}: connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("error trying to reach service: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(out).await.map_err(|e| format!("error trying to reach service: {e}"))
    };
    let resp = tokio::time::timeout(PROXY_TIMEOUT, exchange)
        .await
        .map_err(|_| unavailable("error trying to reach service: i/o timeout".into()))?
        .map_err(unavailable)?;
    let (parts, body) = resp.into_parts();
    let body: Body = body.map_err(std::io::Error::other).boxed();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_segment_forms() {
        assert_eq!(split_name("foo"), (None, "foo", None));
        assert_eq!(split_name("foo:15000"), (None, "foo", Some("15000")));
        assert_eq!(split_name("https:foo:443"), (Some("https"), "foo", Some("443")));
    }
}

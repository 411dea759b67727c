//! `pods/portforward` over WebSocket, with the channel protocol (`v4.channel.k8s.io`) that kube-rs and
//! kubectl speak: per port `i`, channel `2i` carries data and `2i+1` errors; each channel starts with a
//! frame holding the port number (little-endian u16), like the kubelet sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use super::shared::{Body, Shared, full, lock};
use super::status::ApiError;

/// Subprotocols the server accepts, in the kubelet's terms (binary channel protocols).
const PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// How long connecting to a mapped target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn ports_from(pairs: &[(String, String)]) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k == "ports" || k == "port") {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                ApiError::bad_request(format!("invalid port {k}={p:?}: must be a number between 1 and 65535"))
            })?;
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("query parameter \"ports\" is required"));
    }
    Ok(ports)
}

/// Answers the WebSocket upgrade and spawns the forwarding task.
pub fn upgrade(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    if !is_ws {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = offered.iter().find(|p| PROTOCOLS.contains(&p.as_str())).cloned() else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: the client offered subprotocols {offered:?}; supported: {PROTOCOLS:?}"
        )));
    };
    let ports = ports_from(pairs)?;
    let targets: Vec<(u16, Option<SocketAddr>)> = {
        let map = lock(&shared.forward_targets);
        ports.iter().map(|p| (*p, map.get(&(ns.to_string(), pod.to_string(), *p)).copied())).collect()
    };
    let label = format!("{pod}_{ns}");
    let accept = derive_accept_key(key.as_bytes());
    let upgrading = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                serve(ws, targets, label).await;
            }
            Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
        }
    });
    let mut resp = Response::new(full(Vec::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(resp)
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

async fn serve<S>(ws: WebSocketStream<S>, targets: Vec<(u16, Option<SocketAddr>)>, label: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let mut writers: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut open = 0_usize;
    for (i, (port, addr)) in targets.iter().enumerate() {
        let data_ch = u8::try_from(2 * i).unwrap_or(u8::MAX - 1);
        let err_ch = data_ch + 1;
        for ch in [data_ch, err_ch] {
            if sink.send(frame(ch, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
        let connected = match addr {
            Some(a) => match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(format!("dial tcp4 {a}: connect: {e}")),
                Err(_) => Err(format!("dial tcp4 {a}: i/o timeout")),
            },
            None => Err(format!("dial tcp4 127.0.0.1:{port}: connect: connection refused")),
        };
        match connected {
            Ok(stream) => {
                let (mut r, w) = stream.into_split();
                writers.push(Some(w));
                open += 1;
                let tx = out_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send(frame(data_ch, &buf[..n])).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    // An empty message marks this port's end for the writer loop.
                    let _ = tx.send(Message::Binary(vec![data_ch].into())).await;
                });
            }
            Err(reason) => {
                writers.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {label}, uid : failed to connect to localhost:{port} inside \
                     namespace \"{label}\", IPv4: {reason} IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
                );
                if sink.send(frame(err_ch, msg.as_bytes())).await.is_err() {
                    return;
                }
            }
        }
    }
    drop(out_tx);
    if open == 0 {
        let _ = sink.send(Message::Close(None)).await;
        return;
    }
    loop {
        tokio::select! {
            msg = out_rx.recv() => match msg {
                Some(Message::Binary(b)) if b.len() == 1 => {
                    open = open.saturating_sub(1);
                    if open == 0 {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                }
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                    let idx = usize::from(b[0] / 2);
                    if b[0] % 2 == 0
                        && b.len() > 1
                        && let Some(Some(w)) = writers.get_mut(idx)
                        && w.write_all(&b[1..]).await.is_err()
                    {
                        writers[idx] = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    for w in writers.iter_mut().flatten() {
                        let _ = w.shutdown().await;
                    }
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_from_csv_and_repeats() -> Result<(), ApiError> {
        let pairs = vec![("ports".to_string(), "80,1234".to_string()), ("ports".to_string(), "15000".to_string())];
        assert_eq!(ports_from(&pairs)?, vec![80, 1234, 15000]);
        assert!(ports_from(&[("ports".into(), "x".into())]).is_err());
        assert!(ports_from(&[]).is_err());
        Ok(())
    }
}

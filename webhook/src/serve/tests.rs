//! The listener's timeouts over real TLS connections on loopback, with short limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::*;
use crate::tls::{CertStore, certified_key, provider, server_config};

const REQUEST: &[u8] = b"POST /inject HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";

/// Serves a router answering `POST /inject` with `ok` under `limits`; returns the address and the
/// client configuration that trusts the server.
async fn start(limits: Limits) -> (std::net::SocketAddr, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    let store = Arc::new(CertStore::new());
    store.set(certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());
    let tls = Arc::new(server_config(store).unwrap());
    let app = Router::new().route("/inject", axum::routing::post(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, tls, app, limits, std::future::pending()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (addr, Arc::new(client))
}

async fn connect(addr: std::net::SocketAddr, client: &Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(client.clone()).connect(name, tcp).await.unwrap()
}

/// Reads one response to [`REQUEST`] (its body is `ok`); `None` when the connection ends first.
async fn read_response(conn: &mut TlsStream<TcpStream>) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n\r\nok") {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Waits for the server to end the connection; how long that took, or `None` after `within`.
async fn closed_within(conn: &mut TlsStream<TcpStream>, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at((started + within).into(), conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection to a server with these timeouts, after one request answered with 200.
async fn answered_once(header_read_timeout: Duration, idle_timeout: Duration) -> TlsStream<TcpStream> {
    let (addr, client) = start(Limits { header_read_timeout, idle_timeout, ..Limits::default() }).await;
    let mut conn = connect(addr, &client).await;
    conn.write_all(REQUEST).await.unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")), "{first:?}");
    conn
}

#[tokio::test]
async fn a_keep_alive_connection_waits_longer_than_the_header_timeout_for_its_next_request() {
    let mut conn = answered_once(Duration::from_millis(200), Duration::from_secs(30)).await;
    // Five header timeouts without a byte: the connection is idle, not slow.
    tokio::time::sleep(Duration::from_secs(1)).await;
    conn.write_all(REQUEST).await.unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")), "{second:?}");
}

#[tokio::test]
async fn a_request_head_that_does_not_complete_in_time_closes_the_connection() {
    let mut conn = answered_once(Duration::from_millis(300), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.write_all(b"POST /inject HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let took = closed_within(&mut conn, Duration::from_secs(5)).await;
    let took = took.expect("the connection stayed open with an unfinished head");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}, before the header timeout");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let mut conn = answered_once(Duration::from_secs(10), Duration::from_millis(400)).await;
    let took = closed_within(&mut conn, Duration::from_secs(5)).await.expect("the idle connection stayed open");
    assert!(took >= Duration::from_millis(300), "closed after {took:?}, before the idle timeout");
}

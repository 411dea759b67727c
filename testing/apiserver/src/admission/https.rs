//! The real transport of the admission chain: one HTTPS/1.1 POST per review, the server's
//! certificate verified against the webhook's caBundle for the Service's DNS name (or the URL's
//! host), the whole exchange bounded by the webhook's `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{Endpoint, Transport};

/// HTTPS to loopback addresses only (an [`Endpoint`] without an address does not resolve).
#[derive(Debug, Default, Clone, Copy)]
pub struct Https;

fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("clientConfig.caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("clientConfig.caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn exchange(endpoint: &Endpoint, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let Some(addr) = endpoint.addr else {
        return Err(format!("dial tcp: lookup {}: no such host", endpoint.host));
    };
    let config = client_config(&endpoint.ca_pem)?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            format!("dial tcp {addr}: connect: connection refused")
        } else {
            format!("dial tcp {addr}: {e}")
        }
    })?;
    let name =
        ServerName::try_from(endpoint.host.clone()).map_err(|e| format!("server name {:?}: {e}", endpoint.host))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::post(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!(
            "an error on the server ({:?}) has prevented the request from succeeding (HTTP {})",
            String::from_utf8_lossy(&body),
            status.as_u16()
        ));
    }
    Ok(body.to_vec())
}

impl Transport for Https {
    async fn post(&self, endpoint: &Endpoint, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
        match tokio::time::timeout(timeout, exchange(endpoint, body)).await {
            Ok(result) => result,
            Err(_) => Err("context deadline exceeded".into()),
        }
    }
}

//! The serving certificate: a rustls resolver whose certificate can be swapped at any time. Open
//! connections keep the certificate they were set up with; new handshakes see the new one.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate/key pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM has no `CERTIFICATE` block, or a block is broken.
    #[error("certificate: no valid PEM CERTIFICATE block ({0})")]
    Certificate(String),
    /// The key PEM has no private key block, or it is broken.
    #[error("private key: no valid PEM private key ({0})")]
    Key(String),
    /// The key type is not supported by the ring provider.
    #[error("private key: unsupported key type ({0})")]
    KeyType(rustls::Error),
    /// The key does not belong to the certificate.
    #[error("private key does not match the certificate ({0})")]
    Mismatch(rustls::Error),
    /// The rustls server configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Builds a rustls [`CertifiedKey`] from PEM text, checking that the key matches the certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("none found".into()));
    }
    let key: PrivateKeyDer<'static> = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Key("none found".into()),
        other => TlsError::Key(other.to_string()),
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::KeyType)?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(TlsError::Mismatch)?;
    Ok(certified)
}

/// The current serving certificate; empty until the first one is loaded.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertStore {
    /// An empty store (handshakes fail until [`CertStore::set`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the certificate for new handshakes.
    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Some(Arc::new(key)));
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// The current certificate, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// The ring crypto provider (installed as the process default by `run`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server TLS configuration: TLS 1.2 and 1.3 with ring, ALPN `h2` and `http/1.1`, certificates from
/// `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_matching_pairs_only() {
        let (cert_a, key_a) = pair("a");
        let (_, key_b) = pair("b");
        assert!(certified_key(cert_a.as_bytes(), key_a.as_bytes()).is_ok());
        let err = certified_key(cert_a.as_bytes(), key_b.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(certified_key(b"nope", key_a.as_bytes()).unwrap_err().to_string().contains("certificate"));
        assert!(certified_key(cert_a.as_bytes(), b"").unwrap_err().to_string().contains("private key"));
    }

    #[test]
    fn store_swaps() {
        let store = CertStore::new();
        assert!(!store.is_loaded());
        let (cert, key) = pair("a");
        store.set(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
        assert!(store.is_loaded());
        assert!(server_config(Arc::new(store)).is_ok());
    }
}

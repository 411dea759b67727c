//! The server's certificates: a fresh CA and a serving certificate for 127.0.0.1, ::1 and localhost.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors creating the certificates or the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating the test API server certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected the configuration.
    #[error("configuring TLS for the test API server: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The CA (PEM) clients trust and the server's TLS configuration.
pub struct Certificates {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// rustls server configuration (HTTP/1.1 via ALPN).
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Makes a CA and a serving certificate signed by it.
pub fn generate() -> Result<Certificates, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "mesh-test-apiserver-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    leaf_params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), CertificateDer::from(ca_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certificates { ca_pem: ca_cert.pem(), server_config: Arc::new(config) })
}

//! `--self-signed`: a CA and a serving certificate kept in a Secret (so replicas share one CA),
//! renewed before they expire, and the CA kept in the `caBundle` of the selected
//! MutatingWebhookConfigurations. The certificate logic is pure ([`plan`], [`new_ca`], [`issue`]);
//! [`ensure_secret`] and [`keep_ca_bundle`] talk to the API server with kube-rs.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Secret key of the CA certificate (PEM).
pub const KEY_CA_CERT: &str = "ca.crt";
/// Secret key of the CA private key (PEM).
pub const KEY_CA_KEY: &str = "ca.key";
/// Secret key of the serving certificate (PEM).
pub const KEY_TLS_CERT: &str = "tls.crt";
/// Secret key of the serving private key (PEM).
pub const KEY_TLS_KEY: &str = "tls.key";
/// Common name of the generated CA.
pub const CA_COMMON_NAME: &str = "mesh-webhook-ca";

/// Errors of the self-signed mode.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// rcgen could not generate or sign a certificate.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A call to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, e.g. `get Secret istio-system/mesh-webhook-tls`.
        what: String,
        /// The client error.
        source: kube::Error,
    },
    /// The Secret kept changing under us.
    #[error("Secret {0} keeps changing concurrently; giving up this round")]
    Contended(String),
}

/// Settings of the self-signed mode.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfSignedSettings {
    /// The Service's name.
    pub service_name: String,
    /// The namespace of the Service and the Secret.
    pub namespace: String,
    /// The Secret's name.
    pub secret_name: String,
    /// Label selector of the MutatingWebhookConfigurations to keep patched (none: patch nothing).
    pub webhook_selector: Option<String>,
    /// Lifetime of the CA.
    pub ca_validity: Duration,
    /// Lifetime of a serving certificate.
    pub serving_validity: Duration,
    /// Renew a certificate when less than this fraction of its lifetime remains (0..1).
    pub renew_fraction: f64,
    /// How often the Secret is checked (renewal, changes by other replicas, deletion).
    pub check_interval: Duration,
    /// ConfigMap in `namespace` that owns the Secret (`metadata.ownerReferences`), so the garbage
    /// collector deletes the Secret with it (none: the Secret has no owner).
    pub owner_configmap: Option<String>,
}

impl SelfSignedSettings {
    /// Settings with the defaults: CA for 10 years, serving certificates for 1 year, renewal in the
    /// last third of a lifetime, a check every 5 minutes.
    pub fn new(service_name: String, namespace: String, secret_name: String, webhook_selector: Option<String>) -> Self {
        SelfSignedSettings {
            service_name,
            namespace,
            secret_name,
            webhook_selector,
            ca_validity: Duration::from_secs(10 * 365 * 24 * 3600),
            serving_validity: Duration::from_secs(365 * 24 * 3600),
            renew_fraction: 1.0 / 3.0,
            check_interval: Duration::from_secs(300),
            owner_configmap: None,
        }
    }

    /// The DNS names of the serving certificate: `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`.
    pub fn dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service_name, &self.namespace);
        vec![svc.clone(), format!("{svc}.{ns}"), format!("{svc}.{ns}.svc")]
    }
}

/// The CA and serving certificate, as stored in the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// CA certificate PEM (what goes into `caBundle`).
    pub ca_cert: String,
    /// CA private key PEM.
    pub ca_key: String,
    /// Serving certificate PEM.
    pub cert: String,
    /// Serving private key PEM.
    pub key: String,
}

impl Bundle {
    /// Reads a bundle from Secret data; `None` when a key is missing or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<Bundle> {
        let data = secret.data.as_ref()?;
        let get = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
        Some(Bundle {
            ca_cert: get(KEY_CA_CERT)?,
            ca_key: get(KEY_CA_KEY)?,
            cert: get(KEY_TLS_CERT)?,
            key: get(KEY_TLS_KEY)?,
        })
    }

    /// The Secret data of this bundle.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [(KEY_CA_CERT, &self.ca_cert), (KEY_CA_KEY, &self.ca_key), (KEY_TLS_CERT, &self.cert), (KEY_TLS_KEY, &self.key)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2));
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Generates a CA valid from `now` for `lifetime`: (certificate PEM, key PEM).
pub fn new_ca(now: OffsetDateTime, lifetime: Duration) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, now, lifetime);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a serving certificate for `dns_names`, signed by the CA key: (certificate PEM, key PEM).
pub fn issue(
    ca_key_pem: &str,
    dns_names: &[String],
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<(String, String), rcgen::Error> {
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(ca_key_pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns_names.last().cloned().unwrap_or_default());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, lifetime);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What to do with the bundle found in the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// It is fine as it is.
    Keep,
    /// The CA is fine; issue a new serving certificate (expiring, wrong names, broken).
    NewServing,
    /// Start over with a new CA (none, broken or expiring).
    NewCa,
}

struct CertInfo {
    not_before: i64,
    not_after: i64,
    dns_names: Vec<String>,
    issuer_is_ca: bool,
    spki: Vec<u8>,
}

fn cert_info(pem: &str) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let issuer_is_ca = cert.issuer().iter_common_name().any(|cn| cn.as_str().ok() == Some(CA_COMMON_NAME));
    Some(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        issuer_is_ca,
        spki: cert.public_key().raw.to_vec(),
    })
}

fn expiring(info: &CertInfo, now: i64, fraction: f64) -> bool {
    let lifetime = (info.not_after - info.not_before).max(1) as f64;
    let remaining = (info.not_after - now) as f64;
    remaining < lifetime * fraction
}

fn key_matches(key_pem: &str, spki: &[u8]) -> bool {
    KeyPair::from_pem(key_pem).map(|k| k.subject_public_key_info() == spki).unwrap_or(false)
}

/// Decides whether the bundle in the Secret can be used at `now` for `dns_names`.
pub fn plan(bundle: Option<&Bundle>, dns_names: &[String], now: OffsetDateTime, renew_fraction: f64) -> Renewal {
    let Some(bundle) = bundle else { return Renewal::NewCa };
    let now = now.unix_timestamp();
    let Some(ca) = cert_info(&bundle.ca_cert) else { return Renewal::NewCa };
    if expiring(&ca, now, renew_fraction) || !key_matches(&bundle.ca_key, &ca.spki) {
        return Renewal::NewCa;
    }
    let Some(serving) = cert_info(&bundle.cert) else { return Renewal::NewServing };
    let names_ok = dns_names.iter().all(|n| serving.dns_names.contains(n));
    if !names_ok
        || !serving.issuer_is_ca
        || expiring(&serving, now, renew_fraction)
        || !key_matches(&bundle.key, &serving.spki)
    {
        return Renewal::NewServing;
    }
    Renewal::Keep
}

/// The reference to the ConfigMap `owner` that goes into the Secret's `metadata.ownerReferences`;
/// `None` when the object has no name or uid (it was never stored).
pub fn owner_reference(owner: &ConfigMap) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".to_string(),
        kind: "ConfigMap".to_string(),
        name: owner.metadata.name.clone()?,
        uid: owner.metadata.uid.clone()?,
        block_owner_deletion: None,
        controller: None,
    })
}

/// How the Secret's `ownerReferences` relate to the wanted owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// No owner wanted, or the Secret already references it.
    Current,
    /// The Secret does not reference an object of the owner's kind and name: add the reference.
    Missing,
    /// The Secret references an earlier object of the owner's kind and name (another uid): it was
    /// made for an earlier installation and is waiting for the garbage collector. Start over.
    Stale,
}

fn same_object(a: &OwnerReference, b: &OwnerReference) -> bool {
    a.kind == b.kind && a.name == b.name && a.api_version.split('/').next() == b.api_version.split('/').next()
}

/// Compares the Secret's `ownerReferences` with `owner`.
pub fn ownership(secret: &Secret, owner: Option<&OwnerReference>) -> Ownership {
    let Some(owner) = owner else { return Ownership::Current };
    let refs = secret.metadata.owner_references.as_deref().unwrap_or_default();
    match refs.iter().find(|r| same_object(r, owner)) {
        Some(r) if r.uid == owner.uid => Ownership::Current,
        Some(_) => Ownership::Stale,
        None => Ownership::Missing,
    }
}

/// The Secret's `ownerReferences` with `owner` in place of any reference to an object of the same
/// kind and name; other owners are kept.
pub fn with_owner(refs: Option<&[OwnerReference]>, owner: &OwnerReference) -> Vec<OwnerReference> {
    let mut out: Vec<OwnerReference> =
        refs.unwrap_or_default().iter().filter(|r| !same_object(r, owner)).cloned().collect();
    out.push(owner.clone());
    out
}

/// The Secret created for `bundle`, owned by `owner` when given.
pub fn new_secret(settings: &SelfSignedSettings, bundle: &Bundle, owner: Option<&OwnerReference>) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(settings.secret_name.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "mesh-webhook".to_string())])),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(bundle.to_data()),
        ..Default::default()
    }
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> SelfSignedError {
    move |source| SelfSignedError::Api { what, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// Makes sure the Secret holds a usable bundle (creating or renewing it, tolerating other replicas
/// doing the same) and returns it.
pub async fn ensure_secret(client: &Client, settings: &SelfSignedSettings) -> Result<Bundle, SelfSignedError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let name = &settings.secret_name;
    let id = format!("{}/{name}", settings.namespace);
    let dns_names = settings.dns_names();
    let owner = match &settings.owner_configmap {
        Some(owner) => {
            let what = format!("get ConfigMap {}/{owner} (--secret-owner-configmap)", settings.namespace);
            let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
            let configmap = configmaps.get(owner).await.map_err(api_error(what))?;
            owner_reference(&configmap)
        }
        None => None,
    };
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(api_error(format!("get Secret {id}")))?;
        let owned = existing.as_ref().map_or(Ownership::Current, |s| ownership(s, owner.as_ref()));
        let current = match owned {
            Ownership::Stale => {
                tracing::info!(secret = %id, "the Secret belongs to an earlier owner; starting over");
                None
            }
            _ => existing.as_ref().and_then(Bundle::from_secret),
        };
        let now = OffsetDateTime::now_utc();
        let bundle = match plan(current.as_ref(), &dns_names, now, settings.renew_fraction) {
            Renewal::Keep => match current {
                Some(bundle) if owned == Ownership::Current => return Ok(bundle),
                Some(bundle) => bundle,
                None => continue,
            },
            Renewal::NewServing => {
                let Some(current) = current else { continue };
                let (cert, key) = issue(&current.ca_key, &dns_names, now, settings.serving_validity)?;
                tracing::info!(secret = %id, "issuing a new serving certificate");
                Bundle { cert, key, ..current }
            }
            Renewal::NewCa => {
                let (ca_cert, ca_key) = new_ca(now, settings.ca_validity)?;
                let (cert, key) = issue(&ca_key, &dns_names, now, settings.serving_validity)?;
                tracing::info!(secret = %id, "generating a new CA and serving certificate");
                Bundle { ca_cert, ca_key, cert, key }
            }
        };
        let result = match existing {
            Some(mut secret) => {
                secret.data = Some(bundle.to_data());
                secret.string_data = None;
                if let Some(owner) = &owner {
                    secret.metadata.owner_references =
                        Some(with_owner(secret.metadata.owner_references.as_deref(), owner));
                }
                api.replace(name, &PostParams::default(), &secret).await
            }
            None => api.create(&PostParams::default(), &new_secret(settings, &bundle, owner.as_ref())).await,
        };
        match result {
            Ok(_) => return Ok(bundle),
            // Another replica wrote it first: use what it wrote.
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => return Err(SelfSignedError::Api { what: format!("write Secret {id}"), source: e }),
        }
    }
    Err(SelfSignedError::Contended(id))
}

/// The JSON Patch that sets every webhook's `clientConfig.caBundle` to `ca_pem`, or `None` when all
/// already have it. The patch first tests the resourceVersion so a concurrent edit is not lost.
pub fn ca_bundle_patch(config: &MutatingWebhookConfiguration, ca_pem: &str) -> Option<json_patch::Patch> {
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    let wanted = ca_pem.as_bytes();
    let stale: Vec<usize> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(wanted))
        .map(|(i, _)| i)
        .collect();
    if stale.is_empty() {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(wanted);
    let mut ops = Vec::with_capacity(stale.len() + 1);
    if let Some(rv) = &config.metadata.resource_version {
        ops.push(serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    for i in stale {
        ops.push(
            serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}),
        );
    }
    serde_json::from_value(serde_json::Value::Array(ops)).ok()
}

async fn patch_ca_bundle(api: &Api<MutatingWebhookConfiguration>, config: &MutatingWebhookConfiguration, ca_pem: &str) {
    let Some(patch) = ca_bundle_patch(config, ca_pem) else { return };
    let name = config.metadata.name.clone().unwrap_or_default();
    match api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
        Ok(_) => tracing::info!(webhook_configuration = %name, "patched caBundle"),
        // A concurrent change: the watch delivers the new version and we try again.
        Err(e) if is_status(&e, 409) || is_status(&e, 422) => {
            tracing::debug!(webhook_configuration = %name, error = %e, "caBundle patch raced a change")
        }
        Err(e) => tracing::warn!(webhook_configuration = %name, error = %e, "cannot patch caBundle"),
    }
}

/// Keeps the CA from `ca` in the `caBundle` of every MutatingWebhookConfiguration matching
/// `selector`, patching it back whenever someone changes it or the CA changes. Runs forever.
pub async fn keep_ca_bundle(client: Client, selector: String, mut ca: watch::Receiver<String>) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let stream =
        watcher::watcher(api.clone(), watcher::Config::default().labels(&selector)).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(config)) => {
                    let ca_pem = ca.borrow().clone();
                    patch_ca_bundle(&api, &config, &ca_pem).await;
                }
                Some(Err(e)) => tracing::warn!(error = %e, selector = %selector, "watching MutatingWebhookConfigurations failed; retrying"),
                None => return,
            },
            changed = ca.changed() => {
                if changed.is_err() {
                    return;
                }
                let ca_pem = ca.borrow_and_update().clone();
                match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => {
                        for config in &list.items {
                            patch_ca_bundle(&api, config, &ca_pem).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, selector = %selector, "cannot list MutatingWebhookConfigurations"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The volumes a template adds and the proxy's mounts of them. The sidecar, gateway and `grpc-agent`
//! templates declare the same volumes in the same order and differ only in the few a [`VolumeSet`]
//! names.

use serde_json::{Value, json};

use super::{BOOTSTRAP_OVERRIDE, Context, USER_VOLUME, USER_VOLUME_MOUNT, named_entries};

/// Where one template's volumes and mounts differ from the others'.
pub(super) struct VolumeSet {
    /// The `credential-socket` volume and its mount.
    credential_socket: bool,
    /// The socket and certificate volumes are `emptyDir`s rather than bare names.
    empty_dirs: bool,
    /// The optional `istio-ca-crl` ConfigMap and its mount.
    ca_crl: bool,
    /// The proxy mounts the `custom-bootstrap-volume` (the volume is declared by every template).
    bootstrap_mount: bool,
    /// The in-memory volume the agent writes its bootstrap to.
    proxy_dir: &'static str,
    /// The pod's `sidecar.istio.io/userVolume` and `userVolumeMount` annotations.
    user: bool,
}

impl VolumeSet {
    pub(super) const SIDECAR: VolumeSet = VolumeSet {
        credential_socket: true,
        empty_dirs: false,
        ca_crl: true,
        bootstrap_mount: true,
        proxy_dir: "istio-envoy",
        user: true,
    };
    pub(super) const GATEWAY: VolumeSet = VolumeSet {
        credential_socket: true,
        empty_dirs: true,
        ca_crl: false,
        bootstrap_mount: true,
        proxy_dir: "istio-envoy",
        user: false,
    };
    pub(super) const GRPC_AGENT: VolumeSet = VolumeSet {
        credential_socket: false,
        empty_dirs: false,
        ca_crl: false,
        bootstrap_mount: false,
        proxy_dir: "istio-xds",
        user: true,
    };
}

impl Context<'_> {
    /// The sidecar template's proxy mounts.
    pub(super) fn volume_mounts(&self) -> Vec<Value> {
        self.mounts(&VolumeSet::SIDECAR)
    }

    /// The sidecar template's volumes.
    pub(super) fn volumes(&self) -> Vec<Value> {
        // The certificate volume names the pod's service account.
        if !self.cfg.mount_mtls_certs
            && let Some(prebuilt) = self.reuse(|p| &p.volumes)
        {
            return prebuilt.clone();
        }
        self.volumes_of(&VolumeSet::SIDECAR)
    }

    /// The proxy's mounts of the volumes of `set`.
    pub(super) fn mounts(&self, set: &VolumeSet) -> Vec<Value> {
        let m = |name: &str, path: &str| json!({"name": name, "mountPath": path});
        let mut out = vec![m("workload-socket", "/var/run/secrets/workload-spiffe-uds")];
        if set.credential_socket {
            out.push(m("credential-socket", "/var/run/secrets/credential-uds"));
        }
        out.push(m("workload-certs", "/var/run/secrets/workload-spiffe-credentials"));
        if self.cfg.pilot_cert_provider == "istiod" {
            out.push(m("istiod-ca-cert", "/var/run/secrets/istio"));
            if set.ca_crl {
                out.push(m("istio-ca-crl", "/var/run/secrets/istio/crl"));
            }
        }
        out.push(m("istio-data", "/var/lib/istio/data"));
        if set.bootstrap_mount && self.ann(BOOTSTRAP_OVERRIDE).is_some() {
            out.push(m("custom-bootstrap-volume", "/etc/istio/custom-bootstrap"));
        }
        out.push(m(set.proxy_dir, "/etc/istio/proxy"));
        out.push(m("istio-token", "/var/run/secrets/tokens"));
        if self.cfg.mount_mtls_certs {
            out.push(json!({"mountPath": "/etc/certs/", "name": "istio-certs", "readOnly": true}));
        }
        out.push(m("istio-podinfo", "/etc/istio/pod"));
        if set.user {
            out.extend(named_entries(self.ann(USER_VOLUME_MOUNT)));
        }
        out
    }

    /// The volumes of `set`, in the templates' order.
    pub(super) fn volumes_of(&self, set: &VolumeSet) -> Vec<Value> {
        let cfg = self.cfg;
        let local =
            |name: &str| if set.empty_dirs { json!({"name": name, "emptyDir": {}}) } else { json!({"name": name}) };
        let mut out = vec![json!({"name": "workload-socket"})];
        if set.credential_socket {
            out.push(local("credential-socket"));
        }
        out.push(local("workload-certs"));
        if let Some(cm) = self.ann(BOOTSTRAP_OVERRIDE) {
            out.push(json!({"name": "custom-bootstrap-volume", "configMap": {"name": cm}}));
        }
        out.push(json!({"name": set.proxy_dir, "emptyDir": {"medium": "Memory"}}));
        out.push(json!({"name": "istio-data", "emptyDir": {}}));
        out.push(json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}}));
        out.push(json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200, "audience": cfg.sds_token_audience}}]}}));
        if cfg.pilot_cert_provider == "istiod" {
            let name = if cfg.trust_bundle_name.is_empty() { "istio-ca-root-cert" } else { &cfg.trust_bundle_name };
            out.push(json!({"name": "istiod-ca-cert", "configMap": {"name": name}}));
        }
        if set.ca_crl {
            out.push(json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}}));
        }
        if cfg.mount_mtls_certs {
            let account = self.service_account.filter(|a| !a.is_empty()).unwrap_or("default");
            out.push(
                json!({"name": "istio-certs", "secret": {"optional": true, "secretName": format!("istio.{account}")}}),
            );
        }
        if set.user {
            out.extend(named_entries(self.ann(USER_VOLUME)));
        }
        out
    }
}

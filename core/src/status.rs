//! The `sidecar.istio.io/status` annotation: what the injector added to a pod, so that a second
//! injection can strip exactly that before adding it again.

use serde::{Deserialize, Serialize};

/// Istio's `SidecarInjectionStatus`, serialised as the annotation's JSON value.
///
/// Istio writes `null` for an empty list (Go's nil slice); this type does the same, and accepts
/// both `null` and `[]` when parsing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Init containers the injector added (e.g. `istio-init`, and `istio-proxy` when native).
    #[serde(default, deserialize_with = "nullable_list", serialize_with = "nil_list")]
    pub init_containers: Vec<String>,
    /// Regular containers the injector added (`istio-proxy` when not native).
    #[serde(default, deserialize_with = "nullable_list", serialize_with = "nil_list")]
    pub containers: Vec<String>,
    /// Volumes the injector added.
    #[serde(default, deserialize_with = "nullable_list", serialize_with = "nil_list")]
    pub volumes: Vec<String>,
    /// Image pull secrets the injector added.
    #[serde(default, deserialize_with = "nullable_list", serialize_with = "nil_list")]
    pub image_pull_secrets: Vec<String>,
    /// The control plane revision that injected the pod (`default` when none).
    #[serde(default)]
    pub revision: String,
}

/// Errors reading the status annotation.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The annotation is not the JSON object Istio writes.
    #[error("invalid annotation sidecar.istio.io/status={value:?}: {source}")]
    Json {
        /// The annotation value as found.
        value: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
}

impl SidecarStatus {
    /// Parses the annotation value.
    pub fn parse(value: &str) -> Result<Self, StatusError> {
        serde_json::from_str(value).map_err(|source| StatusError::Json { value: value.to_owned(), source })
    }

    /// Serialises to the annotation value, in Istio's field order and with `null` for empty lists.
    pub fn to_annotation(&self) -> String {
        // Serialising plain strings and lists into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `name` is a container (init or regular) that the injector added.
    pub fn owns_container(&self, name: &str) -> bool {
        self.init_containers.iter().chain(&self.containers).any(|c| c == name)
    }
}

fn nullable_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn nil_list<S: serde::Serializer>(list: &[String], s: S) -> Result<S::Ok, S::Error> {
    if list.is_empty() { s.serialize_none() } else { list.serialize(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert","istio-ca-crl"],"imagePullSecrets":null,"revision":"default"}"#;

    #[test]
    fn round_trips_istio_annotation_byte_for_byte() {
        let status = SidecarStatus::parse(NATIVE).unwrap();
        assert_eq!(status.init_containers, ["istio-init", "istio-proxy"]);
        assert!(status.containers.is_empty());
        assert_eq!(status.volumes.len(), 9);
        assert_eq!(status.revision, "default");
        assert_eq!(status.to_annotation(), NATIVE);
    }

    #[test]
    fn accepts_empty_lists_and_missing_fields() {
        let status = SidecarStatus::parse(r#"{"containers":[],"revision":"canary"}"#).unwrap();
        assert!(status.containers.is_empty() && status.init_containers.is_empty());
        assert_eq!(status.revision, "canary");
    }

    #[test]
    fn owns_container_checks_both_lists() {
        let status = SidecarStatus {
            init_containers: vec!["istio-init".into()],
            containers: vec!["istio-proxy".into()],
            ..Default::default()
        };
        assert!(status.owns_container("istio-proxy"));
        assert!(status.owns_container("istio-init"));
        assert!(!status.owns_container("app"));
    }

    #[test]
    fn bad_json_names_the_annotation_and_value() {
        let err = SidecarStatus::parse("{not json").unwrap_err().to_string();
        assert!(err.contains("sidecar.istio.io/status"), "{err}");
        assert!(err.contains("{not json"), "{err}");
    }
}

//! The labels and annotations the sidecar template writes on the pod.

use serde_json::{Map, Value};

use super::Context;
use crate::names;

impl Context<'_> {
    pub(super) fn labels_out(&self) -> Vec<(String, String)> {
        let tls = self.label(names::LABEL_TLS_MODE).unwrap_or("istio");
        let mut out = vec![(names::LABEL_TLS_MODE.into(), tls.into())];
        out.extend(self.canonical_labels());
        out
    }

    /// The canonical service name and revision labels, from the pod's labels or its workload.
    pub(super) fn canonical_labels(&self) -> Vec<(String, String)> {
        let name = self
            .label(names::LABEL_CANONICAL_NAME)
            .or_else(|| self.label("app.kubernetes.io/name"))
            .or_else(|| self.label("app"))
            .unwrap_or(&self.workload.name);
        let name: String = name.chars().take(63).collect();
        let name = name.trim_matches(|c| c == '-' || c == '_' || c == '.');
        let revision = self
            .label(names::LABEL_CANONICAL_REVISION)
            .or_else(|| self.label("app.kubernetes.io/version"))
            .or_else(|| self.label("version"))
            .unwrap_or("latest");
        vec![
            (names::LABEL_CANONICAL_NAME.into(), name.into()),
            (names::LABEL_CANONICAL_REVISION.into(), revision.into()),
        ]
    }

    /// The revision and, unless set, the default (logs) container annotations: every template's first.
    pub(super) fn revision_annotations(&self) -> Vec<(String, String)> {
        let cfg = self.cfg;
        let rev = if cfg.revision.is_empty() { "default" } else { &cfg.revision };
        let mut out = vec![(names::ISTIO_REV.to_owned(), rev.to_owned())];
        if let Some(first) = self.app_containers().first() {
            for key in [names::DEFAULT_LOGS_CONTAINER, names::DEFAULT_CONTAINER] {
                if self.ann(key).is_none() {
                    out.push((key.into(), (*first).into()));
                }
            }
        }
        out
    }

    pub(super) fn annotations_out(&self) -> Vec<(String, String)> {
        let cfg = self.cfg;
        let mut out = self.revision_annotations();
        if cfg.cni.enabled {
            if cfg.cni.provider == "multus" {
                let networks = append_multus_network(self.ann("k8s.v1.cni.cncf.io/networks").unwrap_or(""));
                out.push(("k8s.v1.cni.cncf.io/networks".into(), networks));
            }
            out.push((names::INTERCEPTION_MODE.into(), self.interception_mode().to_owned()));
            for (key, default) in [
                (names::INCLUDE_OUTBOUND_IP_RANGES, &cfg.include_ip_ranges),
                (names::EXCLUDE_OUTBOUND_IP_RANGES, &cfg.exclude_ip_ranges),
            ] {
                let v = self.annotation(key, default);
                if !v.is_empty() {
                    out.push((key.into(), v));
                }
            }
            out.push((
                names::INCLUDE_INBOUND_PORTS.into(),
                self.annotation(names::INCLUDE_INBOUND_PORTS, &cfg.include_inbound_ports),
            ));
            out.push((names::EXCLUDE_INBOUND_PORTS.into(), self.exclude_inbound_ports()));
            if let Some(v) = self.include_outbound_ports() {
                out.push((names::INCLUDE_OUTBOUND_PORTS.into(), v));
            }
            if self.ann(names::EXCLUDE_OUTBOUND_PORTS).is_some() || !cfg.exclude_outbound_ports.is_empty() {
                out.push((
                    names::EXCLUDE_OUTBOUND_PORTS.into(),
                    self.annotation(names::EXCLUDE_OUTBOUND_PORTS, &cfg.exclude_outbound_ports),
                ));
            }
            for key in [names::KUBEVIRT_INTERFACES, names::REROUTE_VIRTUAL_INTERFACES, names::EXCLUDE_INTERFACES] {
                if let Some(v) = self.ann(key).filter(|v| !v.is_empty()) {
                    out.push((key.into(), v.into()));
                }
            }
        }
        out
    }
}

/// Istio's `appendMultusNetwork`: adds `default/istio-cni` to a Multus networks annotation (a comma
/// list or a JSON list), unless it is there already.
fn append_multus_network(existing: &str) -> String {
    const NET: &str = "default/istio-cni";
    if existing.is_empty() {
        return NET.into();
    }
    if let Some(i) = existing.rfind(']') {
        let Ok(networks) = serde_json::from_str::<Vec<Map<String, Value>>>(existing) else {
            return existing.into();
        };
        if networks.iter().any(|n| n.get("name").and_then(Value::as_str) == Some(NET)) {
            return existing.into();
        }
        return format!("{}, {{\"name\": \"{NET}\"}}]", &existing[..i]);
    }
    if existing.split(',').any(|n| n.trim() == NET) {
        return existing.into();
    }
    format!("{existing}, {NET}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multus_network_is_appended_once() {
        assert_eq!(append_multus_network(""), "default/istio-cni");
        assert_eq!(append_multus_network("a/b"), "a/b, default/istio-cni");
        assert_eq!(append_multus_network("a/b, default/istio-cni"), "a/b, default/istio-cni");
        assert_eq!(append_multus_network(r#"[{"name": "a"}]"#), r#"[{"name": "a"}, {"name": "default/istio-cni"}]"#);
    }
}

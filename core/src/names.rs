//! Annotation, label and container names of Istio's injector. The webhook, `mesh-init` and the plugin
//! all read and write pods through these names, so they are defined once, here.

/// Namespace label that turns injection on (`enabled`) or off (`disabled`).
pub const LABEL_ISTIO_INJECTION: &str = "istio-injection";
/// Revision label (namespaces and pods) and annotation (injected pods).
pub const ISTIO_REV: &str = "istio.io/rev";
/// Per-pod injection switch, as a label (wins) or an annotation: `"true"` or `"false"`.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
/// The comma list of injection templates to render, in order (`sidecar` when absent).
pub const INJECT_TEMPLATES: &str = "inject.istio.io/templates";
/// What the injector added, in [`crate::status::SidecarStatus`]'s JSON shape.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
/// Interception mode: `REDIRECT`, `TPROXY` or `NONE`.
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// Native sidecar opt-out per pod (`"false"`) or opt-in (`"true"`).
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
/// Proxy image override.
pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
/// Init image override.
pub const PROXY_INIT_IMAGE: &str = "sidecar.istio.io/proxyInitImage";
/// Proxy CPU request.
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
/// Proxy memory request.
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// Proxy CPU limit.
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
/// Proxy memory limit.
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
/// Whether the agent rewrites application probes to `:15020/app-health/...`.
pub const REWRITE_APP_HTTP_PROBERS: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
/// Agent log level, e.g. `default:info`.
pub const AGENT_LOG_LEVEL: &str = "sidecar.istio.io/agentLogLevel";
/// Envoy log level.
pub const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
/// Envoy component log levels.
pub const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
/// Whether Prometheus metrics of the app are merged into the agent's.
pub const ENABLE_METRICS_MERGE: &str = "prometheus.istio.io/merge-metrics";

/// Prefix of the traffic annotations (`traffic.sidecar.istio.io/*`).
pub const TRAFFIC_PREFIX: &str = "traffic.sidecar.istio.io/";
/// Outbound CIDRs to capture (`-i`).
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// Outbound CIDRs never captured (`-x`).
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
/// Inbound ports to capture (`-b`).
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
/// Inbound ports never captured (`-d`).
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
/// Outbound ports to capture (`-q`).
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
/// Outbound ports never captured (`-o`).
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
/// Virtual interfaces whose traffic is captured as outbound (`-k`).
pub const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
/// Interfaces excluded from capture (`-c`).
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
/// Newer spelling of [`KUBEVIRT_INTERFACES`]; wins when both are set.
pub const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
/// The agent's status port (`status.sidecar.istio.io/port`), excluded from inbound capture.
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";
/// Prefix of the readiness probe annotations (`readiness.status.sidecar.istio.io/*`).
pub const READINESS_PREFIX: &str = "readiness.status.sidecar.istio.io/";
/// Readiness probe initial delay in seconds.
pub const READINESS_INITIAL_DELAY: &str = "readiness.status.sidecar.istio.io/initialDelaySeconds";
/// Readiness probe period in seconds.
pub const READINESS_PERIOD: &str = "readiness.status.sidecar.istio.io/periodSeconds";
/// Readiness probe failure threshold.
pub const READINESS_FAILURE_THRESHOLD: &str = "readiness.status.sidecar.istio.io/failureThreshold";
/// Readiness application ports.
pub const READINESS_APPLICATION_PORTS: &str = "readiness.status.sidecar.istio.io/applicationPorts";

/// Pod label: `istio` when the proxy terminates mTLS, `disabled` otherwise.
pub const LABEL_TLS_MODE: &str = "security.istio.io/tlsMode";
/// Pod label: the canonical service name.
pub const LABEL_CANONICAL_NAME: &str = "service.istio.io/canonical-name";
/// Pod label: the canonical service revision.
pub const LABEL_CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
/// Annotation kubectl uses to pick the default container for `exec` and `logs`.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// Annotation kubectl uses to pick the default container for `logs`.
pub const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";

/// The sidecar container.
pub const CONTAINER_PROXY: &str = "istio-proxy";
/// The init container that programs capture.
pub const CONTAINER_INIT: &str = "istio-init";
/// The init container that validates capture set up by the CNI plugin.
pub const CONTAINER_VALIDATION: &str = "istio-validation";

/// Namespaces the injector never injects into, whatever their labels say.
pub const IGNORED_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "local-path-storage"];

/// Whether `key` is one of the traffic annotations (`traffic.sidecar.istio.io/*`).
pub fn is_traffic_annotation(key: &str) -> bool {
    key.starts_with(TRAFFIC_PREFIX)
}

/// Whether `key` is one of the readiness probe annotations (`readiness.status.sidecar.istio.io/*`).
pub fn is_readiness_annotation(key: &str) -> bool {
    key.starts_with(READINESS_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_istio() {
        assert_eq!(LABEL_ISTIO_INJECTION, "istio-injection");
        assert_eq!(ISTIO_REV, "istio.io/rev");
        assert_eq!(SIDECAR_INJECT, "sidecar.istio.io/inject");
        assert_eq!(SIDECAR_STATUS, "sidecar.istio.io/status");
        assert_eq!(INTERCEPTION_MODE, "sidecar.istio.io/interceptionMode");
        assert_eq!(STATUS_PORT, "status.sidecar.istio.io/port");
        assert_eq!(
            (CONTAINER_PROXY, CONTAINER_INIT, CONTAINER_VALIDATION),
            ("istio-proxy", "istio-init", "istio-validation")
        );
    }

    #[test]
    fn prefixes_cover_their_annotations() {
        for key in [
            INCLUDE_OUTBOUND_IP_RANGES,
            EXCLUDE_OUTBOUND_IP_RANGES,
            INCLUDE_INBOUND_PORTS,
            EXCLUDE_INBOUND_PORTS,
            INCLUDE_OUTBOUND_PORTS,
            EXCLUDE_OUTBOUND_PORTS,
            KUBEVIRT_INTERFACES,
            EXCLUDE_INTERFACES,
        ] {
            assert!(is_traffic_annotation(key), "{key}");
        }
        for key in [READINESS_INITIAL_DELAY, READINESS_PERIOD, READINESS_FAILURE_THRESHOLD, READINESS_APPLICATION_PORTS]
        {
            assert!(is_readiness_annotation(key), "{key}");
        }
        assert!(!is_traffic_annotation(SIDECAR_STATUS));
        assert!(!is_readiness_annotation(STATUS_PORT));
    }

    #[test]
    fn ignored_namespaces() {
        assert!(IGNORED_NAMESPACES.contains(&"kube-system"));
        assert!(IGNORED_NAMESPACES.contains(&"local-path-storage"));
        assert!(!IGNORED_NAMESPACES.contains(&"default"));
    }
}

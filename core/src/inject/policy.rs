//! Whether a pod is injected at all: Istio's `injectRequired`, pod by pod. Choosing namespaces is the
//! job of the webhook configuration's selectors, not of this module.

use serde_json::{Map, Value};

use super::config::{InjectConfig, InjectPolicy};
use super::{SkipReason, at};
use crate::names;

/// Returns why the pod is skipped, or `None` when it is to be injected.
pub fn skip_reason(pod: &Value, namespace: &str, cfg: &InjectConfig) -> Option<SkipReason> {
    if at(pod, "/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Some(SkipReason::HostNetwork);
    }
    if names::IGNORED_NAMESPACES.contains(&namespace) {
        return Some(SkipReason::IgnoredNamespace);
    }
    let empty = Map::new();
    let labels = at(pod, "/metadata/labels").and_then(Value::as_object).unwrap_or(&empty);
    let annotations = at(pod, "/metadata/annotations").and_then(Value::as_object).unwrap_or(&empty);
    // The label is the newer API and wins over the annotation.
    let switch =
        labels.get(names::SIDECAR_INJECT).or_else(|| annotations.get(names::SIDECAR_INJECT)).and_then(Value::as_str);
    let explicit = match switch {
        Some("true") => Some((true, None)),
        Some("false") => Some((false, Some(SkipReason::PodOptOut))),
        _ => None,
    };
    let explicit = explicit.or_else(|| {
        // An empty selector in these lists selects nothing (Istio skips them).
        let matches = |s: &super::LabelSelector| !s.is_empty();
        if cfg.never_inject_selector.iter().any(|s| matches(s) && s.matches(labels)) {
            return Some((false, Some(SkipReason::NeverInjectSelector)));
        }
        if cfg.always_inject_selector.iter().any(|s| matches(s) && s.matches(labels)) {
            return Some((true, None));
        }
        None
    });
    match (cfg.policy, explicit) {
        (_, Some((true, _))) => None,
        (_, Some((false, reason))) => reason,
        (InjectPolicy::Enabled, None) => None,
        (InjectPolicy::Disabled, None) => Some(SkipReason::PolicyDisabled),
    }
}

//! Native sidecars, auto mode: Istio turns them on when every node's kubelet supports them. The
//! decision is [`all_support_native_sidecars`] (pure); [`watch`] keeps it current from the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};

use crate::server::AppState;

/// The first kubelet minor version (of 1.x) whose native sidecars the injector relies on.
pub const NATIVE_SIDECAR_MIN_MINOR: u64 = 33;

/// Whether a kubelet version such as `v1.33.2` or `v1.34.0-eks-1234` is at least 1.33.
/// Unparseable versions count as unsupported.
pub fn kubelet_supports_native_sidecars(version: &str) -> bool {
    let version = version.trim().trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>());
    match (major, minor.and_then(|m| m.parse::<u64>().ok())) {
        (Some(major), Some(minor)) => major > 1 || (major == 1 && minor >= NATIVE_SIDECAR_MIN_MINOR),
        _ => false,
    }
}

/// Whether native sidecars can be used: there is at least one node and every kubelet supports them.
pub fn all_support_native_sidecars<'a>(kubelet_versions: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for version in kubelet_versions {
        if !kubelet_supports_native_sidecars(version) {
            return false;
        }
        any = true;
    }
    any
}

fn kubelet_version(node: &Node) -> String {
    node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone()).unwrap_or_default()
}

fn node_name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// Watches nodes forever and records in `state` whether all kubelets support native sidecars
/// (first after the initial list, then on every change).
pub async fn watch(client: kube::Client, state: Arc<AppState>) {
    let api = kube::Api::<Node>::all(client);
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut synced = false;
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => pending.clear(),
            Ok(Event::InitApply(node)) => {
                pending.insert(node_name(&node), kubelet_version(&node));
            }
            Ok(Event::InitDone) => {
                versions = std::mem::take(&mut pending);
                synced = true;
            }
            Ok(Event::Apply(node)) => {
                versions.insert(node_name(&node), kubelet_version(&node));
            }
            Ok(Event::Delete(node)) => {
                versions.remove(&node_name(&node));
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching nodes failed; retrying");
                continue;
            }
        }
        if synced {
            let supported = all_support_native_sidecars(versions.values().map(String::as_str));
            if supported != state.native_sidecars() || !state.nodes_known() {
                tracing::info!(nodes = versions.len(), native_sidecars = supported, "node kubelet versions");
            }
            state.set_native_sidecars(supported);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_versions() {
        assert!(kubelet_supports_native_sidecars("v1.33.0"));
        assert!(kubelet_supports_native_sidecars("v1.34.1-eks-abcdef"));
        assert!(kubelet_supports_native_sidecars("v2.0.0"));
        assert!(!kubelet_supports_native_sidecars("v1.32.9"));
        assert!(!kubelet_supports_native_sidecars("v1.9.0"));
        assert!(!kubelet_supports_native_sidecars(""));
        assert!(!kubelet_supports_native_sidecars("garbage"));
    }

    #[test]
    fn every_node_must_support_them() {
        assert!(all_support_native_sidecars(["v1.33.1", "v1.34.0"]));
        assert!(!all_support_native_sidecars(["v1.33.1", "v1.32.0"]));
        assert!(!all_support_native_sidecars(std::iter::empty()));
    }
}

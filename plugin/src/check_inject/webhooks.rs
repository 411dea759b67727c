//! What `check-inject` and `injector list` read from a cluster about its injectors: every
//! MutatingWebhookConfiguration, the objects the config of each mesh webhook is found in, and a
//! `--config FILE` that overrides them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use mesh_core::inject::InjectConfig;
use serde_json::Value;

use super::{is_mesh, pod_webhooks};
use crate::cluster::objects::{CONFIGMAPS, DEPLOYMENTS, MUTATING_WEBHOOKS, SERVICES};
use crate::cluster::{Cluster, ClusterError};

/// The cluster's webhook configurations and the objects their configs are found in (the Services,
/// Deployments and ConfigMaps of the mesh webhooks' namespaces).
#[derive(Debug, Clone, Default)]
pub struct ClusterWebhooks {
    /// Every MutatingWebhookConfiguration.
    pub mwcs: Vec<Value>,
    /// Services, Deployments and ConfigMaps of the namespaces mesh's webhook Services are in.
    pub objects: Vec<Value>,
}

/// Reads every MutatingWebhookConfiguration and, unless `with_configs` is false, what is needed to
/// find the config each mesh webhook serves.
pub async fn fetch_webhooks(cluster: &Cluster, with_configs: bool) -> Result<ClusterWebhooks, ClusterError> {
    let mwcs = cluster.list_objects(MUTATING_WEBHOOKS, None, None).await?;
    let mut namespaces = BTreeSet::new();
    for mwc in mwcs.iter().filter(|m| with_configs && is_mesh(m)) {
        for w in pod_webhooks(mwc) {
            if let Some(ns) = w.pointer("/clientConfig/service/namespace").and_then(Value::as_str) {
                namespaces.insert(ns.to_string());
            }
        }
    }
    let mut objects = Vec::new();
    for ns in &namespaces {
        let (svcs, deploys, cms) = futures::try_join!(
            cluster.list_objects(SERVICES, Some(ns), None),
            cluster.list_objects(DEPLOYMENTS, Some(ns), None),
            cluster.list_objects(CONFIGMAPS, Some(ns), None),
        )?;
        objects.extend(svcs.into_iter().chain(deploys).chain(cms));
    }
    Ok(ClusterWebhooks { mwcs, objects })
}

/// Reads `--config FILE`.
pub fn read_config(path: Option<&PathBuf>) -> anyhow::Result<Option<InjectConfig>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Some(InjectConfig::from_yaml(&text).with_context(|| format!("reading {}", p.display()))?))
}

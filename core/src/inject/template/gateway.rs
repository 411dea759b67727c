//! Istio's `gateway` template: the pod's own `istio-proxy` (usually `image: auto`) becomes a router,
//! with no init container, no capture and a pod sysctl that lets it bind low ports.

use serde_json::{Map, Value, json};

use super::volumes::VolumeSet;
use super::{BOOTSTRAP_OVERRIDE, Context, Rendered, insert_nonzero, number, resource_env};
use crate::{names, ports};

impl Context<'_> {
    /// Renders the `gateway` template.
    pub(super) fn render_gateway(&self, cluster_id: &str, network: &str) -> Rendered {
        let cfg = self.cfg;
        let mut c = Map::new();
        c.insert("name".into(), json!(names::CONTAINER_PROXY));
        c.insert("image".into(), json!(self.proxy_image()));
        c.insert(
            "ports".into(),
            json!([{"containerPort": ports::ENVOY_PROMETHEUS, "protocol": "TCP", "name": "http-envoy-prom"}]),
        );
        c.insert("args".into(), Value::Array(self.proxy_args("router")));
        c.insert(
            "securityContext".into(),
            json!({"runAsUser": number(&self.uid()), "runAsGroup": number(&self.gid())}),
        );
        c.insert("env".into(), Value::Array(self.gateway_env(cluster_id, network)));
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        let p = &cfg.proxy;
        let mut probe = Map::new();
        probe.insert("httpGet".into(), json!({"path": "/healthz/ready", "port": ports::HEALTH}));
        insert_nonzero(&mut probe, "initialDelaySeconds", &p.readiness_initial_delay_seconds.to_string());
        insert_nonzero(&mut probe, "periodSeconds", &p.readiness_period_seconds.to_string());
        probe.insert("timeoutSeconds".into(), json!(3));
        insert_nonzero(&mut probe, "failureThreshold", &p.readiness_failure_threshold.to_string());
        c.insert("readinessProbe".into(), Value::Object(probe));
        c.insert("volumeMounts".into(), Value::Array(self.mounts(&VolumeSet::GATEWAY)));
        Rendered {
            labels: self.canonical_labels(),
            annotations: self.revision_annotations(),
            init_containers: Vec::new(),
            containers: vec![Value::Object(c)],
            volumes: self.volumes_of(&VolumeSet::GATEWAY),
            image_pull_secrets: cfg.image_pull_secrets.clone(),
            security_context: Some(json!({"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]})),
        }
    }

    fn gateway_env(&self, cluster_id: &str, network: &str) -> Vec<Value> {
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let mut env = self.env_head();
        env.push(value("PROXY_CONFIG", &self.proxy_config_env()));
        env.push(value("ISTIO_META_POD_PORTS", &self.pod_ports()));
        env.push(resource_env("GOMEMLIMIT", "limits.memory"));
        env.push(maybe_value("ISTIO_META_APP_CONTAINERS", &self.app_containers().join(",")));
        env.push(value("ISTIO_META_CLUSTER_ID", if cluster_id.is_empty() { "Kubernetes" } else { cluster_id }));
        env.push(field("ISTIO_META_NODE_NAME", "spec.nodeName"));
        env.push(value("ISTIO_META_INTERCEPTION_MODE", self.proxy_config_interception_mode()));
        self.push_workload_env(&mut env, network);
        if self.ann(BOOTSTRAP_OVERRIDE).is_some() {
            env.push(value("ISTIO_BOOTSTRAP_OVERRIDE", "/etc/istio/custom-bootstrap/custom_bootstrap.json"));
        }
        self.push_mesh_env(&mut env);
        env.extend(self.metadata_env());
        env
    }

    /// `ISTIO_META_NETWORK`, `ISTIO_META_WORKLOAD_NAME` and `ISTIO_META_OWNER` as the gateway and
    /// gRPC templates write them (the workload's own name, no label override).
    pub(super) fn push_workload_env(&self, env: &mut Vec<Value>, network: &str) {
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        if !network.is_empty() {
            env.push(value("ISTIO_META_NETWORK", network));
        }
        if !self.workload.name.is_empty() {
            env.push(value("ISTIO_META_WORKLOAD_NAME", &self.workload.name));
        }
        if let Some(owner) = self.workload.owner_uri() {
            env.push(value("ISTIO_META_OWNER", &owner));
        }
    }
}

/// An env entry with a value, or without one when it is empty (as Kubernetes writes it).
pub(super) fn maybe_value(name: &str, v: &str) -> Value {
    if v.is_empty() { json!({"name": name}) } else { json!({"name": name, "value": v}) }
}

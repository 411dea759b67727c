//! The `istio-proxy` container: image, resources, ports, env (ProxyConfig, metadata, the mesh's ids),
//! args and security context.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{BOOTSTRAP_OVERRIDE, Context, insert_nonzero, number, resource_env};
use crate::inject::quantity;
use crate::{names, ports};

impl Context<'_> {
    pub(super) fn proxy_metadata(&self) -> Cow<'_, BTreeMap<String, String>> {
        let Some(Value::Object(meta)) = self.proxy_config.get("proxyMetadata") else {
            return Cow::Borrowed(&self.cfg.proxy_metadata);
        };
        let mut out = self.cfg.proxy_metadata.clone();
        for (k, v) in meta {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), v);
        }
        Cow::Owned(out)
    }

    pub(super) fn proxy_image(&self) -> String {
        match self.ann(names::PROXY_IMAGE) {
            Some(image) if image.contains('/') => image.to_owned(),
            Some(name) => with_name(&self.cfg.proxy.image, name),
            None => self.cfg.proxy.image.clone(),
        }
    }

    pub(super) fn uid(&self) -> String {
        self.proxy_uid.map_or_else(|| ports::PROXY_UID.to_string(), |u| u.to_string())
    }

    pub(super) fn gid(&self) -> String {
        self.proxy_gid.map_or_else(|| ports::PROXY_GID.to_string(), |g| g.to_string())
    }

    pub(super) fn resources(&self) -> Value {
        if let Some(prebuilt) = self.reuse(|p| &p.resources) {
            return prebuilt.clone();
        }
        let requests: Vec<(&str, &str)> = [("cpu", names::PROXY_CPU), ("memory", names::PROXY_MEMORY)]
            .into_iter()
            .filter_map(|(k, a)| self.ann(a).map(|v| (k, v)))
            .collect();
        let limits: Vec<(&str, &str)> = [("cpu", names::PROXY_CPU_LIMIT), ("memory", names::PROXY_MEMORY_LIMIT)]
            .into_iter()
            .filter_map(|(k, a)| self.ann(a).map(|v| (k, v)))
            .collect();
        let quantities = |list: Vec<(&str, &str)>| -> Value {
            Value::Object(list.into_iter().map(|(k, v)| (k.to_owned(), Value::String(canonical(v)))).collect())
        };
        let mut out = Map::new();
        if !requests.is_empty() || !limits.is_empty() {
            if !requests.is_empty() {
                out.insert("requests".into(), quantities(requests));
            }
            if !limits.is_empty() {
                out.insert("limits".into(), quantities(limits));
            }
        } else {
            let res = &self.cfg.proxy.resources;
            let map = |m: &BTreeMap<String, String>| -> Value {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(canonical(v)))).collect())
            };
            if !res.limits.is_empty() {
                out.insert("limits".into(), map(&res.limits));
            }
            if !res.requests.is_empty() {
                out.insert("requests".into(), map(&res.requests));
            }
        }
        Value::Object(out)
    }

    pub(super) fn agent_log_level(&self) -> String {
        self.annotation(names::AGENT_LOG_LEVEL, &self.cfg.log_level)
    }

    pub(super) fn metadata_env(&self) -> Vec<Value> {
        if self.default_proxy_inputs()
            && let Some(p) = self.prebuilt
        {
            return p.metadata_env.clone();
        }
        self.proxy_metadata().iter().map(|(k, v)| json!({"name": k, "value": v})).collect()
    }

    pub(super) fn pod_ports(&self) -> String {
        let mut out = String::from("[");
        let mut first = true;
        for port in self.containers.iter().filter_map(|c| c.get("ports").and_then(Value::as_array)).flatten() {
            let Some(port) = port.as_object() else { continue };
            let mut p = Map::new();
            for key in ["name", "hostPort", "containerPort", "protocol", "hostIP"] {
                match port.get(key) {
                    Some(Value::String(s)) if s.is_empty() => {}
                    Some(Value::Number(n)) if n.as_i64() == Some(0) && key != "containerPort" => {}
                    Some(v) if !v.is_null() => {
                        p.insert(key.into(), v.clone());
                    }
                    _ if key == "containerPort" => {
                        p.insert(key.into(), json!(0));
                    }
                    _ => {}
                }
            }
            out.push_str("\n    ");
            if !first {
                out.push(',');
            }
            out.push_str(&Value::Object(p).to_string());
            first = false;
        }
        out.push_str("\n]");
        out
    }

    /// The proxy's first env entries: they depend on the config alone.
    pub(super) fn env_head(&self) -> Vec<Value> {
        if let Some(p) = self.prebuilt {
            return p.env_head.clone();
        }
        let cfg = self.cfg;
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let ca_addr = if cfg.ca_address.is_empty() {
            let rev = if cfg.revision.is_empty() { String::new() } else { format!("-{}", cfg.revision) };
            format!("istiod{rev}.{}.svc:15012", cfg.istio_namespace)
        } else {
            cfg.ca_address.clone()
        };
        vec![
            value("PILOT_CERT_PROVIDER", &cfg.pilot_cert_provider),
            value("CA_ADDR", &ca_addr),
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("INSTANCE_IP", "status.podIP"),
            field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            field("HOST_IP", "status.hostIP"),
            resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        ]
    }

    /// The `PROXY_CONFIG` env value: the merged ProxyConfig as JSON.
    pub(super) fn proxy_config_env(&self) -> String {
        if self.default_proxy_inputs()
            && let Some(p) = self.prebuilt
        {
            return p.proxy_config_env.clone();
        }
        format!("{}\n", Value::Object(self.proxy_config.clone()))
    }

    pub(super) fn proxy_env(&self, cluster_id: &str, network: &str) -> Vec<Value> {
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let mut env = self.env_head();
        env.reserve(16);
        env.extend([
            value("PROXY_CONFIG", &self.proxy_config_env()),
            value("ISTIO_META_POD_PORTS", &self.pod_ports()),
            value("ISTIO_META_APP_CONTAINERS", &self.app_containers().join(",")),
            resource_env("GOMEMLIMIT", "limits.memory"),
            value("ISTIO_META_CLUSTER_ID", if cluster_id.is_empty() { "Kubernetes" } else { cluster_id }),
            field("ISTIO_META_NODE_NAME", "spec.nodeName"),
            value("ISTIO_META_INTERCEPTION_MODE", self.interception_mode()),
        ]);
        if !network.is_empty() {
            env.push(value("ISTIO_META_NETWORK", network));
        }
        let workload_name = self.label(crate::inject::annotations::WORKLOAD_NAME).unwrap_or(&self.workload.name);
        if !workload_name.is_empty() {
            env.push(value("ISTIO_META_WORKLOAD_NAME", workload_name));
        }
        if let Some(owner) = self.workload.owner_uri() {
            env.push(value("ISTIO_META_OWNER", &owner));
        }
        if self.ann(BOOTSTRAP_OVERRIDE).is_some() {
            env.push(value("ISTIO_BOOTSTRAP_OVERRIDE", "/etc/istio/custom-bootstrap/custom_bootstrap.json"));
        }
        self.push_mesh_env(&mut env);
        env.extend(self.metadata_env());
        env
    }

    /// `ISTIO_META_MESH_ID` (the mesh id, else the trust domain) and `TRUST_DOMAIN`.
    pub(super) fn push_mesh_env(&self, env: &mut Vec<Value>) {
        let cfg = self.cfg;
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let trust_domain = cfg.effective_trust_domain();
        if !cfg.mesh_id.is_empty() {
            env.push(value("ISTIO_META_MESH_ID", &cfg.mesh_id));
        } else if !trust_domain.is_empty() {
            env.push(value("ISTIO_META_MESH_ID", trust_domain));
        }
        if !trust_domain.is_empty() {
            env.push(value("TRUST_DOMAIN", trust_domain));
        }
    }

    /// The `--domain` and log level arguments every proxy gets after its mode (`sidecar`, `router`).
    pub(super) fn proxy_args(&self, mode: &str) -> Vec<Value> {
        let cfg = self.cfg;
        let mut args = vec![
            json!("proxy"),
            json!(mode),
            json!("--domain"),
            json!(format!("$(POD_NAMESPACE).svc.{}", cfg.cluster_domain)),
            json!(format!("--proxyLogLevel={}", self.annotation(names::LOG_LEVEL, &cfg.proxy.log_level))),
            json!(format!(
                "--proxyComponentLogLevel={}",
                self.annotation(names::COMPONENT_LOG_LEVEL, &cfg.proxy.component_log_level)
            )),
            json!(format!("--log_output_level={}", self.agent_log_level())),
        ];
        if cfg.log_as_json {
            args.push(json!("--log_as_json"));
        }
        args
    }

    pub(super) fn proxy_container(&self, cluster_id: &str, network: &str) -> Value {
        let env = Value::Array(self.proxy_env(cluster_id, network));
        if self.default_proxy_inputs()
            && let Some(prebuilt) = self.reuse(|p| if self.native { &p.native_proxy } else { &p.proxy })
        {
            let mut c = prebuilt.clone();
            if let Some(slot) = c.get_mut("env") {
                *slot = env;
            }
            return c;
        }
        self.proxy_container_with(env)
    }

    /// The `istio-proxy` container with the given env (a placeholder while prebuilding).
    pub(super) fn proxy_container_with(&self, env: Value) -> Value {
        let cfg = self.cfg;
        let status_port = self.status_port();
        let mut c = Map::new();
        c.insert("name".into(), json!(names::CONTAINER_PROXY));
        c.insert("image".into(), json!(self.proxy_image()));
        if self.native {
            c.insert("restartPolicy".into(), json!("Always"));
        }
        c.insert(
            "ports".into(),
            json!([{"containerPort": ports::ENVOY_PROMETHEUS, "protocol": "TCP", "name": "http-envoy-prom"}]),
        );
        c.insert("args".into(), Value::Array(self.proxy_args("sidecar")));
        if self.hold_application() {
            c.insert("lifecycle".into(), json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}));
        } else if self.native {
            c.insert(
                "lifecycle".into(),
                json!({"preStop": {"exec": {"command":
                    ["pilot-agent", "request", format!("--debug-port={status_port}"), "POST", "drain"]}}}),
            );
        }
        c.insert("env".into(), env);
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        if status_port != "0" {
            let ready = json!({"path": "/healthz/ready", "port": ports::HEALTH});
            if cfg.proxy.startup_probe.enabled {
                let mut probe = Map::new();
                probe.insert("httpGet".into(), ready.clone());
                probe.insert("periodSeconds".into(), json!(1));
                probe.insert("timeoutSeconds".into(), json!(3));
                insert_nonzero(&mut probe, "failureThreshold", &cfg.proxy.startup_probe.failure_threshold.to_string());
                c.insert("startupProbe".into(), Value::Object(probe));
            }
            c.insert("readinessProbe".into(), self.readiness_probe(ready));
        }
        c.insert("securityContext".into(), self.proxy_security_context());
        c.insert("resources".into(), self.resources());
        c.insert("volumeMounts".into(), Value::Array(self.volume_mounts()));
        Value::Object(c)
    }

    /// The proxy's readiness probe of `http_get`, with the probe annotations or the config's timings.
    pub(super) fn readiness_probe(&self, http_get: Value) -> Value {
        let p = &self.cfg.proxy;
        let mut probe = Map::new();
        probe.insert("httpGet".into(), http_get);
        insert_nonzero(
            &mut probe,
            "initialDelaySeconds",
            &self.annotation(names::READINESS_INITIAL_DELAY, &p.readiness_initial_delay_seconds.to_string()),
        );
        insert_nonzero(
            &mut probe,
            "periodSeconds",
            &self.annotation(names::READINESS_PERIOD, &p.readiness_period_seconds.to_string()),
        );
        probe.insert("timeoutSeconds".into(), json!(3));
        insert_nonzero(
            &mut probe,
            "failureThreshold",
            &self.annotation(names::READINESS_FAILURE_THRESHOLD, &p.readiness_failure_threshold.to_string()),
        );
        Value::Object(probe)
    }

    pub(super) fn proxy_security_context(&self) -> Value {
        let privileged = self.cfg.proxy.privileged;
        if self.proxy_metadata().get("IPTABLES_TRACE_LOGGING").map(String::as_str) == Some("true") {
            return json!({
                "allowPrivilegeEscalation": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "privileged": true,
                "readOnlyRootFilesystem": true,
                "runAsGroup": number(&self.gid()),
                "runAsNonRoot": false,
                "runAsUser": 0,
            });
        }
        let (tproxy, bind) = (self.tproxy(), self.cap_net_bind_service());
        let mut sc = Map::new();
        sc.insert("allowPrivilegeEscalation".into(), json!(privileged));
        let mut caps = Map::new();
        if tproxy || bind {
            let mut add = Vec::new();
            if tproxy {
                add.push(json!("NET_ADMIN"));
            }
            if bind {
                add.push(json!("NET_BIND_SERVICE"));
            }
            caps.insert("add".into(), Value::Array(add));
        }
        caps.insert("drop".into(), json!(["ALL"]));
        sc.insert("capabilities".into(), Value::Object(caps));
        sc.insert("privileged".into(), json!(privileged));
        sc.insert("readOnlyRootFilesystem".into(), json!(true));
        if tproxy || bind {
            sc.insert("runAsNonRoot".into(), json!(false));
            sc.insert("runAsUser".into(), json!(0));
            sc.insert("runAsGroup".into(), json!(ports::PROXY_GID));
        } else {
            sc.insert("runAsNonRoot".into(), json!(true));
            sc.insert("runAsUser".into(), number(&self.uid()));
            sc.insert("runAsGroup".into(), number(&self.gid()));
        }
        Value::Object(sc)
    }
}

/// A proxy image with its repository name replaced, keeping registry and tag (`hub/<name>:tag`).
fn with_name(image: &str, name: &str) -> String {
    let (hub, last) = image.rsplit_once('/').unwrap_or(("", image));
    let tag = last.split_once(':').map(|(_, t)| t);
    let mut out = String::new();
    if !hub.is_empty() {
        out.push_str(hub);
        out.push('/');
    }
    out.push_str(name);
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    out
}

/// The canonical form of a quantity that was validated before.
fn canonical(text: &str) -> String {
    quantity::canonical(text).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_image_name_override_keeps_hub_and_tag() {
        assert_eq!(
            with_name("docker.io/istio/proxyv2:1.28.0", "proxyv2-debug"),
            "docker.io/istio/proxyv2-debug:1.28.0"
        );
        assert_eq!(with_name("proxyv2", "other"), "other");
    }
}

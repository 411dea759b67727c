//! Istio's proxyless gRPC templates: `grpc-agent` (the agent without Envoy serves certificates and xDS
//! to the app over a socket) and `grpc-simple` (an init container writes an xDS bootstrap file).

use serde_json::{Map, Value, json};

use super::gateway::maybe_value;
use super::volumes::VolumeSet;
use super::{Context, Rendered};
use crate::names;

/// The agent's status port, which the `grpc-agent` proxy serves metrics and readiness on.
const AGENT_PORT: u16 = crate::ports::AGENT_STATUS;

/// The shell script of `grpc-simple`'s init container, as Istio's template writes it.
const GRPC_BOOTSTRAP_SCRIPT: &str = r#"
NODE_ID="sidecar~${INSTANCE_IP}~${POD_NAME}.${POD_NAMESPACE}~cluster.local"
SERVER_URI="dns:///istiod.${ISTIO_NAMESPACE}.svc:15010"
echo '
{
  "xds_servers": [
    {
      "server_uri": "'${SERVER_URI}'",
      "channel_creds": [{"type": "insecure"}],
      "server_features" : ["xds_v3"]
    }
  ],
  "node": {
    "id": "'${NODE_ID}'",
    "metadata": {
      "GENERATOR": "grpc"
    }
  }
}' > /var/lib/grpc/data/bootstrap.json"#;

impl Context<'_> {
    /// Renders the `grpc-agent` template.
    pub(super) fn render_grpc_agent(&self, cluster_id: &str, network: &str) -> Rendered {
        let cfg = self.cfg;
        let mut c = Map::new();
        c.insert("name".into(), json!(names::CONTAINER_PROXY));
        c.insert("image".into(), json!(self.proxy_image()));
        c.insert("ports".into(), json!([{"containerPort": AGENT_PORT, "protocol": "TCP", "name": "mesh-metrics"}]));
        c.insert("args".into(), Value::Array(self.proxy_args("sidecar")));
        c.insert(
            "lifecycle".into(),
            json!({"postStart": {"exec": {"command":
                ["pilot-agent", "wait", format!("--url=http://localhost:{AGENT_PORT}/healthz/ready")]}}}),
        );
        c.insert("env".into(), Value::Array(self.grpc_agent_env(cluster_id, network)));
        if !cfg.image_pull_policy.is_empty() {
            c.insert("imagePullPolicy".into(), json!(cfg.image_pull_policy));
        }
        if self.status_port() != "0" {
            let ready = json!({"path": "/healthz/ready", "port": AGENT_PORT});
            c.insert("readinessProbe".into(), self.readiness_probe(ready));
            c.insert("resources".into(), self.resources());
            c.insert("volumeMounts".into(), Value::Array(self.mounts(&VolumeSet::GRPC_AGENT)));
        }
        let m = |name: &str, path: &str| json!({"name": name, "mountPath": path});
        let mut containers = vec![Value::Object(c)];
        for app in self.app_containers() {
            containers.push(json!({
                "name": app,
                "env": [
                    {"name": "GRPC_XDS_EXPERIMENTAL_SECURITY_SUPPORT", "value": "true"},
                    {"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/istio/proxy/grpc-bootstrap.json"},
                ],
                "volumeMounts": [
                    m("istio-data", "/var/lib/istio/data"),
                    m("istio-xds", "/etc/istio/proxy"),
                    m("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
                ],
            }));
        }
        let volumes = self.volumes_of(&VolumeSet::GRPC_AGENT);
        let mut annotations = self.revision_annotations();
        annotations.push((names::REWRITE_APP_HTTP_PROBERS.into(), "false".into()));
        Rendered {
            labels: self.canonical_labels(),
            annotations,
            init_containers: Vec::new(),
            containers,
            volumes,
            image_pull_secrets: cfg.image_pull_secrets.clone(),
            security_context: None,
        }
    }

    fn grpc_agent_env(&self, cluster_id: &str, network: &str) -> Vec<Value> {
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let value = |name: &str, v: &str| json!({"name": name, "value": v});
        let mut env = vec![value("ISTIO_META_GENERATOR", "grpc"), value("OUTPUT_CERTS", "/var/lib/istio/data")];
        // The head without ISTIO_CPU_LIMIT, which this template does not set.
        env.extend(
            self.env_head().into_iter().filter(|e| e.get("name").and_then(Value::as_str) != Some("ISTIO_CPU_LIMIT")),
        );
        env.push(value("PROXY_CONFIG", &self.proxy_config_env()));
        env.push(value("ISTIO_META_POD_PORTS", &self.pod_ports()));
        env.push(maybe_value("ISTIO_META_APP_CONTAINERS", &self.app_containers().join(",")));
        env.push(value("ISTIO_META_CLUSTER_ID", if cluster_id.is_empty() { "Kubernetes" } else { cluster_id }));
        env.push(field("ISTIO_META_NODE_NAME", "spec.nodeName"));
        self.push_workload_env(&mut env, network);
        self.push_mesh_env(&mut env);
        env.extend(self.metadata_env());
        // gRPC resolves through xds:///, so the agent needs no DNS capture and runs no Envoy.
        env.push(value("ISTIO_META_DNS_CAPTURE", "false"));
        env.push(value("DISABLE_ENVOY", "true"));
        env
    }

    /// Renders the `grpc-simple` template: no proxy, an init container writing the bootstrap, and
    /// every container pointed at it.
    pub(super) fn render_grpc_simple(&self) -> Rendered {
        let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let mount = json!({"mountPath": "/var/lib/grpc/data/", "name": "grpc-io-proxyless-bootstrap"});
        let init = json!({
            "name": "grpc-bootstrap-init",
            "image": "busybox:1.28",
            "volumeMounts": [mount],
            "env": [
                field("INSTANCE_IP", "status.podIP"),
                field("POD_NAME", "metadata.name"),
                field("POD_NAMESPACE", "metadata.namespace"),
                {"name": "ISTIO_NAMESPACE", "value": format!("{}\n", self.cfg.istio_namespace)},
            ],
            "command": ["sh", "-c", GRPC_BOOTSTRAP_SCRIPT.trim_start_matches('\n')],
        });
        let containers = self
            .containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .map(|name| {
                json!({
                    "name": name,
                    "env": [
                        {"name": "GRPC_XDS_BOOTSTRAP", "value": "/var/lib/grpc/data/bootstrap.json"},
                        {"name": "GRPC_GO_LOG_VERBOSITY_LEVEL", "value": "99"},
                        {"name": "GRPC_GO_LOG_SEVERITY_LEVEL", "value": "info"},
                    ],
                    "volumeMounts": [mount],
                })
            })
            .collect();
        Rendered {
            labels: Vec::new(),
            annotations: vec![(names::REWRITE_APP_HTTP_PROBERS.into(), "false".into())],
            init_containers: vec![init],
            containers,
            volumes: vec![json!({"name": "grpc-io-proxyless-bootstrap", "emptyDir": {}})],
            image_pull_secrets: Vec::new(),
            security_context: None,
        }
    }
}

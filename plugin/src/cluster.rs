//! The cluster layer of every subcommand that talks to a cluster: kubectl's cluster flags
//! ([`ClusterArgs`], flattened into each subcommand's flags), the one client builder
//! ([`Cluster::connect`]), bounded calls, the errors a person can act on ([`ClusterError`]), and the
//! one way to read a sidecar's Envoy admin API ([`AdminVia`], [`Cluster::admin_get`]).

pub mod error;
pub mod objects;

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

pub use error::{ApiFailure, ClusterError, Op};

/// The timeout of each call when `--request-timeout` is not given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// kubectl's cluster flags, with kubectl's names and meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig file (default: $KUBECONFIG, which may list several files, else ~/.kube/config, else in-cluster).
    #[arg(long, value_name = "PATH", help_heading = "Cluster flags")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME", help_heading = "Cluster flags")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use.
    #[arg(long, value_name = "NAME", help_heading = "Cluster flags")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use.
    #[arg(long, value_name = "NAME", help_heading = "Cluster flags")]
    pub user: Option<String>,
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE", help_heading = "Cluster flags")]
    pub namespace: Option<String>,
    /// Timeout of each call (API server, istiod, Envoy): a duration such as 5s, 2m, or bare seconds;
    /// 0 means no limit. Default 20s. `--timeout` is accepted as an alias.
    #[arg(long, alias = "timeout", value_name = "DURATION", value_parser = parse_timeout, help_heading = "Cluster flags")]
    pub request_timeout: Option<Duration>,
    /// The user to impersonate.
    #[arg(long = "as", value_name = "USER", help_heading = "Cluster flags")]
    pub as_user: Option<String>,
    /// A group to impersonate (repeatable; needs --as).
    #[arg(long = "as-group", value_name = "GROUP", requires = "as_user", help_heading = "Cluster flags")]
    pub as_group: Vec<String>,
}

/// Parses `--request-timeout`: kubectl's form (a Go duration or bare seconds).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    mesh_core::duration::parse_or_seconds(text).map_err(|e| e.to_string())
}

/// How to reach a sidecar's Envoy admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminVia {
    /// A port-forward to the admin port (works with Istio, whose admin listens on 127.0.0.1).
    PortForward,
    /// The API server's pod proxy (`pods/NAME:PORT/proxy`; only when admin listens on the pod IP).
    Proxy,
}

/// A connected cluster: the client, the namespace the flags chose, the per-call timeout.
#[derive(Clone)]
pub struct Cluster {
    /// The API client (impersonation and kubeconfig selection applied).
    pub client: kube::Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
    /// The bound of each call (`Duration::MAX`: no limit).
    pub timeout: Duration,
}

/// Builds the client configuration the flags describe (no I/O beyond reading kubeconfig files).
pub async fn config(args: &ClusterArgs) -> Result<kube::Config, ClusterError> {
    let ClusterArgs { kubeconfig, context, cluster, user, namespace: _, request_timeout: _, as_user, as_group } = args;
    let options =
        kube::config::KubeConfigOptions { context: context.clone(), cluster: cluster.clone(), user: user.clone() };
    let config_error = |what: String, e: &dyn std::fmt::Display| ClusterError::Config { what, reason: e.to_string() };
    let mut config = match kubeconfig {
        Some(path) => {
            let what = format!("reading kubeconfig {}", path.display());
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| config_error(what.clone(), &e))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| config_error(what, &e))?
        }
        None if context.is_some() || cluster.is_some() || user.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| config_error("loading the kubeconfig ($KUBECONFIG or ~/.kube/config)".into(), &e))?,
        None => kube::Config::infer().await.map_err(|e| {
            config_error(
                "finding a cluster (no --kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster config)".into(),
                &e,
            )
        })?,
    };
    if let Some(user) = as_user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = (!as_group.is_empty()).then(|| as_group.clone());
    }
    // Each call is bounded by the command; a pod proxy's 503 (admin port unreachable) must be seen at
    // once, not retried until the timeout.
    config.default_retry = false;
    Ok(config)
}

impl Cluster {
    /// Connects as the flags say: the kubeconfig (or in-cluster config), impersonation, namespace
    /// and timeout.
    pub async fn connect(args: &ClusterArgs) -> Result<Cluster, ClusterError> {
        let config = config(args).await?;
        let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let timeout = match args.request_timeout {
            None => DEFAULT_REQUEST_TIMEOUT,
            Some(Duration::ZERO) => Duration::MAX,
            Some(t) => t,
        };
        let client = kube::Client::try_from(config)
            .map_err(|e| ClusterError::Config { what: "building the API client".into(), reason: e.to_string() })?;
        Ok(Cluster { client, namespace, timeout })
    }

    /// Runs `fut`, bounded by the cluster's timeout.
    pub async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        bounded(self.timeout, what, fut).await
    }

    /// Lists pods in `namespace` (None: all) matching `selector`.
    pub async fn list_pods(&self, namespace: Option<&str>, selector: Option<&str>) -> Result<Vec<Pod>, ClusterError> {
        let api: Api<Pod> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut params = ListParams::default();
        if let Some(s) = selector {
            params = params.labels(s);
        }
        let op = Op::new("list", "pods", namespace, None);
        self.bounded(&op.to_string(), async { api.list(&params).await.map(|l| l.items).map_err(|e| op.error(e)) }).await
    }

    /// Reads one pod (`None`: not found).
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let op = Op::new("get", "pods", Some(namespace), Some(name));
        self.bounded(&op.to_string(), async { api.get_opt(name).await.map_err(|e| op.error(e)) }).await
    }

    /// GETs `path` from a sidecar's Envoy admin port, through a port-forward or the pod proxy.
    pub async fn admin_get(
        &self,
        via: AdminVia,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<Vec<u8>, ClusterError> {
        let what = format!("GET {path} from the Envoy admin API of pod {namespace}/{pod}:{port}");
        self.bounded(&what, async {
            match via {
                AdminVia::PortForward => http_via_portforward(&self.client, namespace, pod, port, path).await,
                AdminVia::Proxy => http_via_proxy(&self.client, namespace, pod, port, path).await,
            }
        })
        .await
    }
}

/// Runs `fut` with a timeout.
pub async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(ClusterError::Timeout { what: what.to_string(), timeout }))
}

fn failed(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Failed { what: what.to_string(), reason: e.to_string() }
}

/// Opens a port-forward to the pod's `port` (both `get` and `create` on `pods/portforward`).
pub async fn portforward(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<kube::api::Portforwarder, ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let op = Op::new("create", "pods/portforward", Some(namespace), Some(pod));
    api.portforward(pod, &[port]).await.map_err(|e| op.error(e))
}

/// GETs `path` from the pod's `port` through a port-forward; returns the body on 200.
pub async fn http_via_portforward(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<Vec<u8>, ClusterError> {
    let what = format!("GET {path} on pod {namespace}/{pod}:{port} (port-forward)");
    let mut pf = portforward(client, namespace, pod, port).await?;
    let stream = pf.take_stream(port).ok_or_else(|| failed(&what, "the port-forward has no stream"))?;
    let errors = pf.take_error(port);
    let request = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed(&what, e))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| failed(&what, e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&what, e))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| failed(&what, e))?.to_bytes().to_vec();
        if !status.is_success() {
            return Err(failed(&what, format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())));
        }
        Ok(body)
    };
    let result = match errors {
        Some(errors) => tokio::select! {
            r = request => r,
            Some(msg) = errors => Err(failed(&what, msg)),
        },
        None => request.await,
    };
    pf.abort();
    result
}

/// GETs `path` from the pod's `port` through the API server's pod proxy.
pub async fn http_via_proxy(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<Vec<u8>, ClusterError> {
    let op = Op::new("get", "pods/proxy", Some(namespace), Some(pod));
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let req = http::Request::get(uri).body(Vec::new()).map_err(|e| failed(&op.to_string(), e))?;
    client.request_text(req).await.map(String::into_bytes).map_err(|e| op.error(e))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn kubectl_flags_parse() {
        let f = Flags::try_parse_from([
            "x",
            "--kubeconfig",
            "/k",
            "--context=c",
            "--cluster",
            "k",
            "--user",
            "u",
            "-n",
            "ns",
            "--request-timeout",
            "1m30s",
            "--as",
            "alice",
            "--as-group",
            "g1",
            "--as-group=g2",
        ])
        .unwrap();
        let want = ClusterArgs {
            kubeconfig: Some("/k".into()),
            context: Some("c".into()),
            cluster: Some("k".into()),
            user: Some("u".into()),
            namespace: Some("ns".into()),
            request_timeout: Some(Duration::from_secs(90)),
            as_user: Some("alice".into()),
            as_group: vec!["g1".into(), "g2".into()],
        };
        assert_eq!(f.cluster, want);
    }

    #[test]
    fn timeout_is_an_alias_and_takes_kubectl_forms() {
        for (flag, want) in [("--timeout=5s", 5), ("--timeout=7", 7), ("--request-timeout=0", 0)] {
            let f = Flags::try_parse_from(["x", flag]).unwrap();
            assert_eq!(f.cluster.request_timeout, Some(Duration::from_secs(want)), "{flag}");
        }
        let err = Flags::try_parse_from(["x", "--request-timeout", "soon"]).unwrap_err().to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
    }

    #[test]
    fn as_group_needs_as() {
        assert!(Flags::try_parse_from(["x", "--as-group", "g"]).is_err());
    }

    #[tokio::test]
    async fn impersonation_and_kubeconfig_selection_reach_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: one\n  cluster: {server: 'https://one.invalid'}\n- name: two\n  cluster: {server: 'https://two.invalid'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: a\n  context: {cluster: one, user: u, namespace: na}\n- name: b\n  context: {cluster: two, user: u, namespace: nb}\n",
        )
        .unwrap();
        let args = ClusterArgs {
            kubeconfig: Some(path.clone()),
            context: Some("b".into()),
            as_user: Some("alice".into()),
            as_group: vec!["devs".into()],
            ..Default::default()
        };
        let built = config(&args).await.unwrap();
        assert_eq!(built.cluster_url.to_string(), "https://two.invalid/");
        assert_eq!(built.default_namespace, "nb");
        assert_eq!(built.auth_info.impersonate.as_deref(), Some("alice"));
        assert_eq!(built.auth_info.impersonate_groups, Some(vec!["devs".to_string()]));
        assert!(!built.default_retry);
        let args = ClusterArgs { kubeconfig: Some(path), cluster: Some("two".into()), ..Default::default() };
        assert_eq!(config_url(&args).await, "https://two.invalid/");
        let missing = ClusterArgs { kubeconfig: Some(dir.path().join("nope")), ..Default::default() };
        let err = config(&missing).await.unwrap_err().to_string();
        assert!(err.starts_with("reading kubeconfig ") && err.contains("nope"), "{err}");
    }

    async fn config_url(args: &ClusterArgs) -> String {
        config(args).await.unwrap().cluster_url.to_string()
    }
}

//! A Kubernetes API server for tests: in memory, on loopback, over TLS with bearer-token auth.
//!
//! It is generic: any resource type can be registered ([`ResourceType`]) and seeded with objects as
//! `serde_json::Value`. It serves what kube-rs and the real kubectl use, in the real wire format
//! (the v1.36 server captured in `shared/fixtures/kube-apiserver/`):
//! `/version`; discovery at `/api` and `/apis`, legacy and aggregated (`apidiscovery.k8s.io/v2`);
//! get, list (label and field selectors, tables for `kubectl get`), watch (resourceVersion, bookmarks,
//! `sendInitialEvents`), create, update, patch (JSON patch, merge, strategic merge treated as merge,
//! server-side apply treated as merge), delete, deletecollection, the `status` subresource;
//! `pods/portforward` over WebSocket (`v4.channel.k8s.io`) and `pods/proxy` to loopback addresses the
//! test maps; `Status` errors (401, 403, 404, 409, 422) shaped like the real ones; denial rules
//! that produce RBAC's 403 message.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use mesh_test_apiserver::TestApiServer;
//! let server = TestApiServer::start()?;
//! server.put(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "foo", "namespace": "foo", "labels": {"app": "foo"}}}))?;
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! # Ok(()) }
//! ```

mod admission;
mod crd;
pub mod defaulting;
mod discovery;
mod meta;
mod portforward;
mod proxy;
mod resource;
mod router;
mod selector;
mod shared;
mod status;
mod store;
mod table;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

pub use admission::{AdmissionCall, TOKEN_MOUNT_PATH, TOKEN_VOLUME_PREFIX, service_account_admit, token_volume_source};
pub use crd::{CrdError, read_crds};
pub use resource::{PrinterColumn, ResourceType, Subresource, builtins};
pub use status::ApiError;

use router::{ForbidRule, Shared, lock};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding the socket or starting the runtime thread.
    #[error("starting the test API server: {0}")]
    Io(#[from] std::io::Error),
    /// The Istio CRDs could not be loaded.
    #[error("loading the Istio CRDs for the test API server: {0}")]
    Crd(String),
    /// Seeding an object failed.
    #[error("seeding the test API server: {0}")]
    Seed(#[from] ApiError),
}

/// How to start a [`TestApiServer`].
#[derive(Debug, Clone)]
pub struct Builder {
    token: String,
    user: String,
    builtins: bool,
    istio_crds: bool,
    system_namespaces: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            token: format!("mesh-test-{}", meta::uid()),
            user: "admin".into(),
            builtins: true,
            istio_crds: true,
            system_namespaces: true,
        }
    }
}

impl Builder {
    /// The bearer token clients must present (default: random).
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.into();
        self
    }

    /// The user the token authenticates as, named in 403 messages (default `admin`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.into();
        self
    }

    /// Whether to register the built-in types ([`builtins`]; default yes).
    pub fn builtins(mut self, yes: bool) -> Self {
        self.builtins = yes;
        self
    }

    /// Whether to register the Istio CRDs from the shared fixtures and store the CRD objects (default yes).
    pub fn istio_crds(mut self, yes: bool) -> Self {
        self.istio_crds = yes;
        self
    }

    /// Whether to create `default`, `kube-node-lease`, `kube-public` and `kube-system` (default yes).
    pub fn system_namespaces(mut self, yes: bool) -> Self {
        self.system_namespaces = yes;
        self
    }

    /// Starts the server on 127.0.0.1 with a random port, on its own runtime thread.
    pub fn start(self) -> Result<TestApiServer, ApiServerError> {
        let certs = tls::generate()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let address = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: store::Store::new(),
            token: self.token.clone(),
            user: self.user.clone(),
            address,
            rules: Mutex::new(Vec::new()),
            forward_targets: Mutex::new(Default::default()),
            proxy_targets: Mutex::new(Default::default()),
            requests: Mutex::new(Vec::new()),
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
            service_routes: Mutex::new(Default::default()),
            webhook_ca: Mutex::new(None),
            admission_calls: Mutex::new(Vec::new()),
            compact_after_page: Mutex::new(false),
        });
        let mut server =
            TestApiServer { shared: shared.clone(), ca_pem: certs.ca_pem.clone(), shutdown: None, thread: None };
        if self.builtins {
            for rt in builtins() {
                server.register(rt);
            }
        }
        if self.system_namespaces && self.builtins {
            for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
                server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
            }
        }
        if self.istio_crds {
            let crds = crd::istio_crds().map_err(ApiServerError::Crd)?;
            for c in crds {
                server.register_crd(c).map_err(|e| ApiServerError::Crd(e.to_string()))?;
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let acceptor = TlsAcceptor::from(certs.server_config);
        let thread =
            std::thread::Builder::new().name(format!("test-apiserver-{}", address.port())).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "test apiserver runtime");
                        return;
                    }
                };
                runtime.block_on(serve(std_listener, acceptor, shared, rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        server.shutdown = Some(tx);
        server.thread = Some(thread);
        Ok(server)
    }
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "test apiserver listener");
            return;
        }
    };
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                _ => return,
            };
            let service = service_fn(move |req| router::handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "test apiserver connection");
            }
        });
    }
}

/// A running test API server. Dropping it stops the server and ends every open connection and watch.
pub struct TestApiServer {
    shared: Arc<Shared>,
    ca_pem: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer").field("url", &self.url()).finish_non_exhaustive()
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

impl TestApiServer {
    /// Starts a server with the built-in types, the Istio CRDs and the system namespaces.
    pub fn start() -> Result<Self, ApiServerError> {
        Builder::default().start()
    }

    /// A builder for other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.address)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.address
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The CA certificate (PEM) that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig (context `mesh-test`, namespace `default`) that kube-rs and kubectl accept.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_for("mesh-test", "default")
    }

    /// A kubeconfig with the given context name and default namespace.
    pub fn kubeconfig_yaml_for(&self, context: &str, namespace: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {url}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: {context}\n  user:\n    token: {token}\ncontexts:\n- \
             name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n    namespace: {namespace}\n\
             current-context: {context}\npreferences: {{}}\n",
            url = self.url(),
            token = self.shared.token,
        )
    }

    /// Writes [`TestApiServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A kube-rs client configuration for this server (what the written kubeconfig gives).
    pub async fn kube_config(&self) -> Result<kube::Config, kube::config::KubeconfigError> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await
    }

    /// Registers (or replaces) a resource type; discovery is rebuilt from the registry on every request.
    pub fn register(&self, rt: ResourceType) {
        self.shared.store.register(rt);
    }

    /// Registers every served version of a CustomResourceDefinition and stores the CRD object itself.
    pub fn register_crd(&self, crd: &Value) -> Result<(), ApiError> {
        let types = crd::types_of(crd, "<object>").map_err(|e| ApiError::bad_request(e.to_string()))?;
        for rt in types {
            self.register(rt);
        }
        if self.shared.store.find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions").is_some() {
            self.put(crd.clone())?;
        }
        Ok(())
    }

    /// The registered types.
    pub fn types(&self) -> Vec<ResourceType> {
        self.shared.store.types()
    }

    /// Creates or replaces an object (its type must be registered; a missing namespace is created).
    /// Returns the stored object, with uid, resourceVersion and creationTimestamp filled in.
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        let rt = self.shared.store.type_of(&obj)?;
        self.shared.store.put(&rt, obj).map(|o| store::present(&rt, &o))
    }

    fn type_for(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.shared.store.types().into_iter().find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// Gets an object (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.type_for(api_version, kind)?;
        self.shared.store.get(&rt, namespace, name).ok().map(|o| store::present(&rt, &o))
    }

    /// Lists the objects of a kind in every namespace.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Some(rt) = self.type_for(api_version, kind) else { return Vec::new() };
        self.shared.store.list(&rt, &store::Filter::default()).0.iter().map(|o| store::present(&rt, o)).collect()
    }

    /// Deletes an object (watchers see DELETED); returns its last state.
    pub fn remove(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.type_for(api_version, kind)?;
        self.shared.store.delete(&rt, namespace, name).ok().map(|o| store::present(&rt, &o))
    }

    /// Replaces an object's `status` (watchers see MODIFIED).
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let rt = self.type_for(api_version, kind).ok_or_else(ApiError::no_resource)?;
        let out = self.shared.store.modify(&rt, namespace, name, true, |obj| {
            if let Value::Object(m) = obj {
                m.insert("status".into(), status);
            }
            Ok(())
        })?;
        Ok(store::present(&rt, &out))
    }

    /// Compacts the store right after the next list page that hands out a `continue` token (as etcd
    /// may while a client pages through a list): the token of that page is answered 410 Expired.
    pub fn compact_after_next_page(&self) {
        *lock(&self.shared.compact_after_page) = true;
    }

    /// The current resourceVersion (it only increases).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.resource_version()
    }

    /// Denies `verb` on `resource` (`pods`, `pods/portforward`, `virtualservices`, or `*`) in `namespace`
    /// (`None`: everywhere, cluster scope included), with RBAC's 403 message.
    pub fn forbid(&self, verb: &str, resource: &str, namespace: Option<&str>) {
        lock(&self.shared.rules).push(ForbidRule {
            verb: verb.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            cluster_scope_only: false,
        });
    }

    /// Denies `verb` on `resource` at the cluster scope only (e.g. listing pods across all namespaces),
    /// while namespaced requests stay allowed.
    pub fn forbid_cluster_scope(&self, verb: &str, resource: &str) {
        lock(&self.shared.rules).push(ForbidRule {
            verb: verb.into(),
            resource: resource.into(),
            namespace: None,
            cluster_scope_only: true,
        });
    }

    /// Removes every denial rule.
    pub fn allow_all(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Maps a pod's port to a loopback address for both `pods/portforward` and `pods/proxy`
    /// (a port listening on the pod IP).
    pub fn map_pod_port(&self, namespace: &str, pod: &str, port: u16, target: SocketAddr) {
        let key = (namespace.to_string(), pod.to_string(), port);
        lock(&self.shared.forward_targets).insert(key.clone(), target);
        lock(&self.shared.proxy_targets).insert(key, target);
    }

    /// Maps a pod's port for `pods/portforward` only (a port bound to the pod's localhost, like Envoy's
    /// admin port): `pods/proxy` to it fails the way it does on a real cluster.
    pub fn map_pod_localhost_port(&self, namespace: &str, pod: &str, port: u16, target: SocketAddr) {
        lock(&self.shared.forward_targets).insert((namespace.to_string(), pod.to_string(), port), target);
    }

    /// Every request seen so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// Serves Service `namespace/name` port `port` at `target`: where a webhook's
    /// `clientConfig.service` is called (as `https://<name>.<namespace>.svc:<port><path>`, the
    /// certificate verified for `<name>.<namespace>.svc`). An unrouted Service does not resolve.
    pub fn route_service(&self, namespace: &str, name: &str, port: u16, target: SocketAddr) {
        lock(&self.shared.service_routes).insert((namespace.to_string(), name.to_string(), port), target);
    }

    /// Trusts the CA in `ca_pem` for webhooks whose `caBundle` is empty (a real server would use
    /// its system roots); webhooks with a caBundle are verified against that only.
    pub fn trust_webhook_ca(&self, ca_pem: &str) {
        *lock(&self.shared.webhook_ca) = Some(ca_pem.to_string());
    }

    /// Every mutating webhook call so far, in order (webhook, round, uid, answer, error).
    pub fn admission_calls(&self) -> Vec<AdmissionCall> {
        lock(&self.shared.admission_calls).clone()
    }

    /// How often watches that allow bookmarks receive one (default 1 s).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *lock(&self.shared.bookmark_interval) = every.max(Duration::from_millis(10));
    }
}

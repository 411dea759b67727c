//! Helpers of the webhook tests: a test CA and serving certificates, the `mesh-webhook` process
//! (built on demand, stopped on drop), and a keep-alive HTTPS client for AdmissionReviews.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// A CA that signs serving certificates for `localhost` and 127.0.0.1.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA.
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "webhook test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// A serving certificate for `localhost`/127.0.0.1 with `cn` as common name: (cert PEM, key PEM).
    pub fn serving(&self, cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A client configuration that trusts this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_for(&self.pem)
    }
}

/// A client configuration that trusts the CA in `ca_pem` (TLS 1.2 and 1.3, ring, ALPN http/1.1).
pub fn client_config_for(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The `mesh-webhook` binary of this build, built first if needed.
pub fn webhook_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // <target>/<profile>/deps/<test binary>
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe.parent().and_then(Path::parent).ok_or("unexpected test binary location")?;
            let target_dir = profile_dir.parent().ok_or("unexpected test binary location")?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let mut build = Command::new(cargo);
            // `--workspace --bins`, as tests/run builds them: with `-p` cargo would unify features for that
            // package alone and build its dependencies a second time, in another configuration.
            build.args(["build", "--quiet", "--workspace", "--bins", "--target-dir"]);
            build.arg(target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().map_err(|e| format!("cannot run cargo build for mesh-webhook: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p mesh-webhook failed: {status}"));
            }
            Ok(profile_dir.join("mesh-webhook"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A running `mesh-webhook` on loopback; killed on drop.
pub struct Webhook {
    child: Child,
    /// HTTPS address.
    pub listen: SocketAddr,
    /// Health address.
    pub health: SocketAddr,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Starts the webhook with `args` (plus loopback listen addresses) and `env`; waits until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Webhook> {
        let mut command = Command::new(webhook_binary()?);
        command
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().context("starting mesh-webhook")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("mesh-webhook (not JSON): {line}");
                    continue;
                };
                if value["message"] == "serving" {
                    let _ = tx.send((value["listen"].clone(), value["health"].clone()));
                }
                if let Ok(mut logs) = sink.lock() {
                    logs.push(value);
                }
            }
        });
        let mut webhook = Webhook {
            child,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            health: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
        };
        let (listen, health) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addrs) => addrs,
            Err(_) => bail!("mesh-webhook did not log `serving` within 60 s; logs: {:?}", webhook.logs()),
        };
        webhook.listen = listen.as_str().context("listen")?.parse()?;
        webhook.health = health.as_str().context("health")?.parse()?;
        Ok(webhook)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The JSON log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The log lines with this `message`, once there are at least `count` of them (lines reach
    /// stdout through the webhook's log writer thread, up to a few milliseconds after the event).
    pub fn wait_logs(&self, message: &str, count: usize, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<Value> = self.logs().into_iter().filter(|l| l["message"] == message).collect();
            if lines.len() >= count {
                return Ok(lines);
            }
            if Instant::now() > deadline {
                bail!("{} log lines {message:?}, want >= {count} within {timeout:?}", lines.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the health port: (status, body).
    pub fn health_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect_timeout(&self.health, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.health_get("/readyz");
            if matches!(last, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("mesh-webhook not ready after {timeout:?}: {last:?}; logs: {:?}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of a metric line (`name{labels}`) on `/metrics`, 0 when absent.
    pub fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let (_, text) = self.health_get("/metrics")?;
        Ok(text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0))
    }

    /// Waits until a metric reaches `at_least`.
    pub fn wait_metric(&self, series: &str, at_least: f64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(series)?;
            if value >= at_least {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{series} is {value}, want >= {at_least} within {timeout:?}; logs: {:?}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("mesh-webhook did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTPS/1.1 connection.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The server's leaf certificate.
    pub peer_cert: CertificateDer<'static>,
}

/// What happened to a request.
#[derive(Debug)]
pub enum Sent {
    /// Answered.
    Answered(u16, http::HeaderMap, Bytes),
    /// The connection was closed before the request was written.
    Unsent,
    /// The request was written and no response came back.
    Lost(String),
}

impl Conn {
    /// Opens a connection to `localhost`.
    pub async fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> anyhow::Result<Conn> {
        Self::open_as(addr, config, "localhost").await
    }

    /// Opens a connection, verifying the certificate for `server_name`.
    pub async fn open_as(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<Conn> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr)).await??;
        tcp.set_nodelay(true)?;
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from(server_name.to_string())?, tcp),
        )
        .await??;
        let peer_cert =
            tls.get_ref().1.peer_certificates().and_then(|c| c.first()).context("no peer certificate")?.clone();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, peer_cert })
    }

    /// Posts a body to `path` with `content-type: application/json`.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Sent {
        if self.sender.ready().await.is_err() {
            return Sent::Unsent;
        }
        let request = http::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Sent::Lost(e.to_string()),
        };
        match tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(request)).await {
            Err(_) => Sent::Lost("no response within 30 s".into()),
            Ok(Err(e)) if e.is_canceled() => Sent::Unsent,
            Ok(Err(e)) => Sent::Lost(e.to_string()),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                match response.into_body().collect().await {
                    Ok(body) => Sent::Answered(status, headers, body.to_bytes()),
                    Err(e) => Sent::Lost(format!("body: {e}")),
                }
            }
        }
    }

    /// Whether the connection can still send.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// An AdmissionReview v1 body for `pod` in `namespace` with `uid`.
pub fn review_body(uid: &str, namespace: &str, pod: &Value) -> Bytes {
    let review = json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    Bytes::from(serde_json::to_vec(&review).unwrap_or_default())
}

/// The real AdmissionReview the API server sent for pod `foo`.
pub fn fixture_review() -> anyhow::Result<Bytes> {
    let path = crate::shared_dir()?.join("fixtures/kube-apiserver/admissionreview-v1-pod-foo.json");
    Ok(Bytes::from(std::fs::read(&path).with_context(|| path.display().to_string())?))
}

/// Applies the response's JSON patch (if any) to `object`; `Err` with the message for a denial.
pub fn apply_response(object: &Value, body: &[u8], uid: &str) -> anyhow::Result<Result<Value, String>> {
    use base64::Engine as _;
    let review: Value = serde_json::from_slice(body).context("response is not JSON")?;
    let response = &review["response"];
    if response["uid"] != uid {
        bail!("uid not echoed: got {}, want {uid}", response["uid"]);
    }
    if response["allowed"] != true {
        return Ok(Err(response["status"]["message"].as_str().unwrap_or_default().to_string()));
    }
    let mut object = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        if response["patchType"] != "JSONPatch" {
            bail!("patchType is {}, want JSONPatch", response["patchType"]);
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch)?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes)?;
        json_patch::patch(&mut object, &patch).context("applying the returned patch")?;
    }
    Ok(Ok(object))
}

/// Writes `files` into a fresh versioned directory under `dir` and points `dir/..data` at it, the
/// way the kubelet updates ConfigMap and Secret volumes; `dir/<name>` links through `..data`.
pub fn kubelet_update(dir: &Path, version: u32, files: &[(&str, &str)]) -> anyhow::Result<()> {
    let versioned = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&versioned)?;
    for (name, content) in files {
        std::fs::write(versioned.join(name), content)?;
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(versioned.file_name().context("name")?, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    Ok(())
}

/// Polls `check` every 100 ms until it holds; an error naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A binary of this workspace's build (`kubectl-mesh`, `kubectl_complete-mesh`, ...), built with the
/// others first if needed.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(webhook_binary()?.with_file_name(name))
}

/// `$MESH_PLUGIN`, the kubectl-mesh binary a test should run instead of this build's. A relative
/// path is taken from the workspace root (where the documented commands run), not from the test's
/// own directory (`tests/`, where cargo starts it).
pub fn plugin_from_env() -> Option<PathBuf> {
    plugin_path(std::env::var_os("MESH_PLUGIN")?, &crate::repo_root())
}

/// [`plugin_from_env`] with the variable's value and the root given.
pub fn plugin_path(value: std::ffi::OsString, root: &Path) -> Option<PathBuf> {
    let path = PathBuf::from(value);
    if path.as_os_str().is_empty() {
        None
    } else if path.is_absolute() {
        Some(path)
    } else {
        Some(root.join(path))
    }
}

/// Runs `kubectl mesh` in process with `args` (the first is the program name) on a blocking thread,
/// as the binary would: the exit code (or the error the binary would print) and what it wrote.
pub async fn run_plugin(args: Vec<String>) -> (anyhow::Result<u8>, String) {
    use clap::Parser as _;
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let result = kubectl_mesh::Cli::try_parse_from(args)
            .map_err(anyhow::Error::from)
            .and_then(|cli| kubectl_mesh::run(cli, &mut out));
        (result, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("the command's thread")
}

//! Wiring: flags to running tasks. Loads and watches the config and the certificate, watches nodes,
//! serves HTTPS and the health port, and drains on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mesh_core::inject::InjectConfig;
use tokio::net::TcpListener;

use crate::cli::{Args, LogFormat};
use crate::logsink::{LogGuard, LogSink};
use crate::metrics::ReloadResult;
use crate::reload::FileWatch;
use crate::reviewlog::ReviewLog;
use crate::selfsigned::{self, SelfSignedSettings};
use crate::serve::{self, Limits};
use crate::server::{self, AppState};
use crate::tls::{self, CertStore};

/// How often mounted files (config, certificate) are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Flags that do not fit together (exit code [`crate::cli::EX_USAGE`]).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// Neither files nor `--self-signed`.
    #[error("no certificate source: give --tls-cert and --tls-key, or --self-signed")]
    NoCertificate,
    /// Only one of `--tls-cert` and `--tls-key`.
    #[error("--tls-cert and --tls-key go together (got only {0})")]
    HalfPair(&'static str),
    /// Files and `--self-signed` together.
    #[error("--self-signed cannot be combined with --tls-cert/--tls-key")]
    BothSources,
    /// `--self-signed` without a namespace.
    #[error("--self-signed needs the namespace: set --namespace or POD_NAMESPACE")]
    NoNamespace,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CertSource {
    /// PEM files, reloaded on change.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Generated and kept in a Secret.
    SelfSigned(SelfSignedSettings),
}

/// Checks the flag combination and decides the certificate source.
pub fn cert_source(args: &Args, pod_namespace: Option<String>) -> Result<CertSource, UsageError> {
    match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(_), _, true) | (_, Some(_), true) => Err(UsageError::BothSources),
        (Some(cert), Some(key), false) => Ok(CertSource::Files { cert: cert.clone(), key: key.clone() }),
        (Some(_), None, false) => Err(UsageError::HalfPair("--tls-cert")),
        (None, Some(_), false) => Err(UsageError::HalfPair("--tls-key")),
        (None, None, false) => Err(UsageError::NoCertificate),
        (None, None, true) => {
            let namespace =
                args.namespace.clone().or(pod_namespace).filter(|n| !n.is_empty()).ok_or(UsageError::NoNamespace)?;
            let mut settings = SelfSignedSettings::new(
                args.service_name.clone(),
                namespace,
                args.secret_name.clone(),
                args.webhook_config_selector.clone(),
            );
            settings.owner_configmap = args.secret_owner_configmap.clone().filter(|n| !n.is_empty());
            Ok(CertSource::SelfSigned(settings))
        }
    }
}

/// What [`init_logging`] set up.
pub struct Logging {
    /// Stops the log writer thread; keep it until the end: dropping it writes what is left.
    pub guard: Option<LogGuard>,
    /// With JSON logs: the review lines' direct way into the log writer ([`ReviewLog`]).
    pub review_log: Option<ReviewLog>,
}

/// Sets up logging: JSON lines (or text) on stdout, level from `RUST_LOG` (default `info`), written
/// by a background thread ([`LogSink`]).
pub fn init_logging(format: LogFormat) -> Logging {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (sink, guard) = match LogSink::spawn(std::io::stdout()) {
        Ok((sink, guard)) => (Some(sink), Some(guard)),
        Err(e) => {
            eprintln!("mesh-webhook: cannot start the log writer thread ({e}); writing logs directly");
            (None, None)
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let mut review_log = None;
    let _ = match (format, sink) {
        (LogFormat::Json, Some(sink)) => {
            review_log = Some(ReviewLog::new(sink.clone()));
            builder.json().flatten_event(true).with_current_span(false).with_writer(sink).try_init()
        }
        (LogFormat::Json, None) => {
            builder.json().flatten_event(true).with_current_span(false).with_writer(std::io::stdout).try_init()
        }
        (LogFormat::Text, Some(sink)) => builder.with_writer(sink).try_init(),
        (LogFormat::Text, None) => builder.with_writer(std::io::stdout).try_init(),
    };
    Logging { guard, review_log }
}

/// The runtime that serves: `worker_threads` threads, or one per CPU available to the process when 0.
pub fn runtime(worker_threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if worker_threads > 0 {
        builder.worker_threads(usize::from(worker_threads));
    }
    builder.build()
}

/// Runs the webhook until SIGTERM or SIGINT, then drains.
pub async fn run(args: Args, source: CertSource, review_log: Option<ReviewLog>) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = Arc::new(CertStore::new());
    let cache_bytes = usize::try_from(args.review_cache_mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024);
    let state = Arc::new(
        AppState::new(certs.clone())
            .with_review_cache(cache_bytes)
            .with_body_timeout(args.body_timeout)
            .with_review_log(review_log),
    );

    match ConfigSource::of(&args) {
        None => {
            state.set_config(InjectConfig::default());
            state.metrics.config_reload(ReloadResult::Ok);
        }
        Some(source) => {
            let mut watch = FileWatch::new(source.paths());
            if let Some(snapshot) = watch.poll() {
                apply_config(&state, &source, snapshot);
            }
            tokio::spawn(watch_config(state.clone(), source, watch));
        }
    }

    let client = match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(e) => {
            if matches!(source, CertSource::SelfSigned(_)) {
                return Err(e).context("--self-signed needs access to the Kubernetes API");
            }
            tracing::warn!(error = %e, "no Kubernetes API access: nativeSidecars auto resolves to disabled");
            None
        }
    };
    match &client {
        Some(client) => {
            tokio::spawn(crate::nodes::watch(client.clone(), state.clone()));
        }
        None => state.set_native_sidecars(false),
    }

    match source {
        CertSource::Files { cert, key } => {
            let mut watch = FileWatch::new(vec![cert, key]);
            if let Some(snapshot) = watch.poll() {
                apply_cert(&state, snapshot);
            }
            tokio::spawn(watch_cert(state.clone(), watch));
        }
        CertSource::SelfSigned(settings) => {
            let client = client.context("--self-signed needs access to the Kubernetes API")?;
            tokio::spawn(manage_self_signed(client, settings, state.clone()));
        }
    }

    let tls = Arc::new(tls::server_config(certs)?);
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let health = TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.health_listen))?;
    let listen_addr = listener.local_addr()?;
    let health_addr = health.local_addr()?;
    let health_app = server::health_router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(health, health_app).await {
            tracing::error!(error = %e, "health server failed");
        }
    });
    tracing::info!(listen = %listen_addr, health = %health_addr, "serving");

    let limits =
        Limits { max_connections: args.max_connections, drain_timeout: args.drain_timeout, ..Limits::default() };
    let shutdown_state = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        shutdown_state.start_draining();
        tracing::info!(drain_timeout_ms = limits.drain_timeout.as_millis() as u64, "draining");
    };
    let report = serve::serve_tls(listener, tls, server::router(state), limits, shutdown).await;
    tracing::info!(
        elapsed_ms = report.elapsed.as_millis() as u64,
        abandoned_connections = report.abandoned_connections,
        "drained"
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; only ctrl-c stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Where the InjectConfig comes from: `--config` (InjectConfig YAML) or `--istio-config` (Istio's
/// ConfigMap keys in a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// An InjectConfig YAML file.
    Yaml(PathBuf),
    /// A directory with Istio's `mesh`, `config` and `values`.
    Istio(PathBuf),
}

impl ConfigSource {
    /// The source the flags name, if any.
    pub fn of(args: &Args) -> Option<ConfigSource> {
        match (&args.config, &args.istio_config) {
            (Some(path), _) => Some(ConfigSource::Yaml(path.clone())),
            (None, Some(dir)) => Some(ConfigSource::Istio(dir.clone())),
            (None, None) => None,
        }
    }

    /// The files to watch, read together.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            ConfigSource::Yaml(path) => vec![path.clone()],
            ConfigSource::Istio(dir) => mesh_core::inject::istio_config::FILES.iter().map(|f| dir.join(f)).collect(),
        }
    }

    /// The path for logs.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ConfigSource::Yaml(p) | ConfigSource::Istio(p) => p,
        }
    }

    /// Parses what [`ConfigSource::paths`] read, in that order.
    pub fn parse(&self, files: Vec<Vec<u8>>) -> Result<InjectConfig, String> {
        let paths = self.paths();
        let mut texts = Vec::with_capacity(files.len());
        for (file, path) in files.into_iter().zip(&paths) {
            texts.push(String::from_utf8(file).map_err(|_| format!("{} is not UTF-8", path.display()))?);
        }
        match (self, texts.as_slice()) {
            (ConfigSource::Yaml(path), [text]) => {
                InjectConfig::from_yaml(text).map_err(|e| format!("{}: {e}", path.display()))
            }
            (ConfigSource::Istio(dir), [mesh, config, values]) => {
                mesh_core::inject::istio_config::from_istio(mesh, config, values)
                    .map_err(|e| format!("{}: {e}", dir.display()))
            }
            _ => Err(format!("{}: expected {} files", self.path().display(), paths.len())),
        }
    }
}

fn apply_config(state: &AppState, source: &ConfigSource, snapshot: crate::reload::Snapshot) {
    let path = source.path();
    match snapshot.and_then(|files| source.parse(files)) {
        Ok(config) => {
            state.set_config(config);
            state.metrics.config_reload(ReloadResult::Ok);
            tracing::info!(path = %path.display(), "config loaded");
        }
        Err(reason) => {
            state.metrics.config_reload(ReloadResult::Failed);
            tracing::error!(path = %path.display(), error = %reason, "config rejected; keeping the previous one");
        }
    }
}

async fn watch_config(state: Arc<AppState>, source: ConfigSource, mut watch: FileWatch) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        if let Some(snapshot) = watch.poll() {
            apply_config(&state, &source, snapshot);
        }
    }
}

fn apply_cert(state: &AppState, snapshot: crate::reload::Snapshot) {
    let loaded = snapshot.and_then(|files| match files.as_slice() {
        [cert, key] => tls::certified_key(cert, key).map_err(|e| e.to_string()),
        _ => Err("expected a certificate and a key".to_string()),
    });
    match loaded {
        Ok(key) => {
            state.certs.set(key);
            state.metrics.cert_reload(ReloadResult::Ok);
            tracing::info!("serving certificate loaded");
        }
        Err(reason) => {
            state.metrics.cert_reload(ReloadResult::Failed);
            tracing::error!(error = %reason, "serving certificate rejected; keeping the previous one");
        }
    }
}

async fn watch_cert(state: Arc<AppState>, mut watch: FileWatch) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        if let Some(snapshot) = watch.poll() {
            apply_cert(&state, snapshot);
        }
    }
}

async fn manage_self_signed(client: kube::Client, settings: SelfSignedSettings, state: Arc<AppState>) {
    let (ca_tx, ca_rx) = tokio::sync::watch::channel(String::new());
    let mut ca_watch_started = false;
    let mut current: Option<selfsigned::Bundle> = None;
    loop {
        let wait = match selfsigned::ensure_secret(&client, &settings).await {
            Ok(bundle) if current.as_ref() == Some(&bundle) => settings.check_interval,
            Ok(bundle) => match tls::certified_key(bundle.cert.as_bytes(), bundle.key.as_bytes()) {
                Ok(key) => {
                    state.certs.set(key);
                    state.metrics.cert_reload(ReloadResult::Ok);
                    tracing::info!(secret = %settings.secret_name, namespace = %settings.namespace, "serving certificate loaded");
                    let _ = ca_tx.send(bundle.ca_cert.clone());
                    current = Some(bundle);
                    if !ca_watch_started {
                        ca_watch_started = true;
                        match &settings.webhook_selector {
                            Some(selector) => {
                                tokio::spawn(selfsigned::keep_ca_bundle(
                                    client.clone(),
                                    selector.clone(),
                                    ca_rx.clone(),
                                ));
                            }
                            None => tracing::warn!(
                                "no --webhook-config-selector: caBundle of the webhook configurations is not managed"
                            ),
                        }
                    }
                    settings.check_interval
                }
                Err(e) => {
                    state.metrics.cert_reload(ReloadResult::Failed);
                    tracing::error!(error = %e, "certificate from the Secret is unusable");
                    Duration::from_secs(5)
                }
            },
            Err(e) => {
                state.metrics.cert_reload(ReloadResult::Failed);
                tracing::error!(error = %e, "cannot set up the self-signed certificate; retrying");
                Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn worker_threads_size_the_runtime() {
        assert_eq!(super::runtime(1).unwrap().metrics().num_workers(), 1);
        assert_eq!(super::runtime(3).unwrap().metrics().num_workers(), 3);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(super::runtime(0).unwrap().metrics().num_workers(), cpus);
    }

    #[test]
    fn istio_config_source_reads_three_files_and_names_the_bad_key() {
        use clap::Parser as _;

        use super::ConfigSource;
        let args = crate::cli::Args::try_parse_from(["mesh-webhook", "--istio-config", "/etc/istio"]).unwrap();
        let source = ConfigSource::of(&args).unwrap();
        let names: Vec<String> = source.paths().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names, ["/etc/istio/mesh", "/etc/istio/config", "/etc/istio/values"]);
        let files = |config: &str| {
            vec![b"defaultConfig: {concurrency: 2}\n".to_vec(), config.as_bytes().to_vec(), b"{}".to_vec()]
        };
        let cfg = source.parse(files("policy: disabled\n")).unwrap();
        assert_eq!(cfg.policy, mesh_core::inject::InjectPolicy::Disabled);
        assert_eq!(cfg.mesh_config.default_config.get("concurrency"), Some(&serde_json::json!(2)));
        let err = source.parse(files("templates:\n  mine: |\n    spec: {}\n")).unwrap_err();
        assert!(err.contains("/etc/istio") && err.contains("templates.mine"), "{err}");
    }
}

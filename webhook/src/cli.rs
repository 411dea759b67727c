//! Command-line flags of `mesh-webhook`. Every flag has a `MESH_WEBHOOK_*` environment equivalent
//! (uppercase, dashes to underscores); a flag on the command line wins over the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Exit code for bad flags (`EX_USAGE` from sysexits.h).
pub const EX_USAGE: i32 = 64;
/// Exit code for any other failure to start or to run.
pub const EX_FAILURE: i32 = 1;

/// The flags of `mesh-webhook`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mesh-webhook",
    version,
    about = "Mutating admission webhook that injects the istio-proxy sidecar into pods (Istio-compatible).",
    long_about = "Mutating admission webhook that injects the istio-proxy sidecar into pods (Istio-compatible).\n\n\
        Serves AdmissionReview admission.k8s.io/v1 over HTTPS on POST /inject and \
        /inject/cluster/<cluster>/net/<network>; /healthz, /readyz and /metrics over plain HTTP on the \
        health port. Certificates come from files (--tls-cert/--tls-key, reloaded on change) or are \
        managed in a Secret (--self-signed)."
)]
pub struct Args {
    /// HTTPS address for AdmissionReviews.
    #[arg(long, env = "MESH_WEBHOOK_LISTEN", default_value = "0.0.0.0:15017", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, env = "MESH_WEBHOOK_HEALTH_LISTEN", default_value = "0.0.0.0:15014", value_name = "ADDR")]
    pub health_listen: SocketAddr,

    /// PEM certificate chain to serve (reloaded when the file changes). Needs --tls-key.
    #[arg(long, env = "MESH_WEBHOOK_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (reloaded when the file changes).
    #[arg(long, env = "MESH_WEBHOOK_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// InjectConfig YAML (optional; Istio defaults without it). Watched and reloaded on change.
    #[arg(long, env = "MESH_WEBHOOK_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Istio's injector configuration instead of --config: a directory with the files `mesh`
    /// (ConfigMap `istio`), `config` and `values` (ConfigMap `istio-sidecar-injector`). Watched and
    /// reloaded on change; a setting mesh cannot honour is rejected, naming the key.
    #[arg(long, env = "MESH_WEBHOOK_ISTIO_CONFIG", value_name = "DIR", conflicts_with = "config")]
    pub istio_config: Option<PathBuf>,

    /// Manage a CA and serving certificate in a Secret and patch caBundle into the webhook
    /// configurations (instead of --tls-cert/--tls-key).
    #[arg(long, env = "MESH_WEBHOOK_SELF_SIGNED", value_parser = clap::builder::BoolishValueParser::new())]
    pub self_signed: bool,

    /// Service name the serving certificate is for (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`).
    #[arg(long, env = "MESH_WEBHOOK_SERVICE_NAME", default_value = "mesh-webhook", value_name = "NAME")]
    pub service_name: String,

    /// Namespace of the Service and the Secret (default: $POD_NAMESPACE).
    #[arg(long, env = "MESH_WEBHOOK_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Secret that holds the CA and the serving certificate in --self-signed mode.
    #[arg(long, env = "MESH_WEBHOOK_SECRET_NAME", default_value = "mesh-webhook-tls", value_name = "NAME")]
    pub secret_name: String,

    /// ConfigMap in the Secret's namespace that owns the --self-signed Secret: the Secret gets an
    /// ownerReference to it, so deleting the ConfigMap (e.g. `helm uninstall`) deletes the Secret.
    #[arg(long, env = "MESH_WEBHOOK_SECRET_OWNER_CONFIGMAP", value_name = "NAME")]
    pub secret_owner_configmap: Option<String>,

    /// Label selector of the MutatingWebhookConfigurations whose caBundle is kept patched
    /// (e.g. `app.kubernetes.io/instance=mesh`).
    #[arg(long, env = "MESH_WEBHOOK_WEBHOOK_CONFIG_SELECTOR", value_name = "SELECTOR")]
    pub webhook_config_selector: Option<String>,

    /// On SIGTERM: stop accepting, answer the accepted reviews, exit within this time (e.g. 20s, 500ms, 1m).
    #[arg(long, env = "MESH_WEBHOOK_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Time allowed to receive a request's body after its head; a slower request is answered 408
    /// and its connection closed (e.g. 10s, 500ms).
    #[arg(long, env = "MESH_WEBHOOK_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub body_timeout: Duration,

    /// Log format.
    #[arg(long, env = "MESH_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Maximum number of concurrent HTTPS connections; more wait in the listen backlog.
    #[arg(long, env = "MESH_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_connections: u32,

    /// Size of the review cache in MiB (0: off). Replicas of a workload reach the webhook as the same
    /// object; their answer is kept and reused instead of injecting again. Emptied on config reload.
    #[arg(long, env = "MESH_WEBHOOK_REVIEW_CACHE_MIB", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(0..=4096), value_name = "MIB")]
    pub review_cache_mib: u32,

    /// Threads that serve connections (0: one per CPU available to the process, which follows the
    /// container's CPU limit). Set it to the CPUs the webhook should use when it shares a machine.
    #[arg(long, env = "MESH_WEBHOOK_WORKER_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024), value_name = "N")]
    pub worker_threads: u16,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Parses a Go duration (`20s`, `500ms`, `1m30s`) or a plain number of seconds ([`mesh_core::duration`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    mesh_core::duration::parse_or_seconds(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("abc").unwrap_err().contains("\"abc\""));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit \"d\""));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn defaults_match_the_contract() {
        let args = Args::try_parse_from(["mesh-webhook"]).unwrap();
        assert_eq!(args.listen.to_string(), "0.0.0.0:15017");
        assert_eq!(args.health_listen.to_string(), "0.0.0.0:15014");
        assert_eq!(args.service_name, "mesh-webhook");
        assert_eq!(args.secret_name, "mesh-webhook-tls");
        assert_eq!(args.drain_timeout, Duration::from_secs(20));
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.body_timeout, crate::server::DEFAULT_BODY_TIMEOUT);
        assert_eq!(args.max_connections, 1024);
        assert_eq!(args.review_cache_mib, 32);
        assert_eq!(args.review_cache_mib as usize * 1024 * 1024, crate::cache::DEFAULT_BYTES);
        assert_eq!(args.worker_threads, 0);
        assert!(!args.self_signed);
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "mesh-webhook",
            "--self-signed",
            "--namespace=istio-system",
            "--webhook-config-selector=app.kubernetes.io/instance=mesh",
            "--drain-timeout=5s",
            "--body-timeout=250ms",
            "--log-format=text",
            "--max-connections=8",
            "--review-cache-mib=0",
            "--worker-threads=1",
        ])
        .unwrap();
        assert!(args.self_signed);
        assert_eq!(args.namespace.as_deref(), Some("istio-system"));
        assert_eq!(args.webhook_config_selector.as_deref(), Some("app.kubernetes.io/instance=mesh"));
        assert_eq!(args.drain_timeout, Duration::from_secs(5));
        assert_eq!(args.body_timeout, Duration::from_millis(250));
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.max_connections, 8);
        assert_eq!(args.review_cache_mib, 0);
        assert_eq!(args.worker_threads, 1);
        assert!(Args::try_parse_from(["mesh-webhook", "--review-cache-mib=5000"]).is_err());
        assert!(Args::try_parse_from(["mesh-webhook", "--worker-threads=2000"]).is_err());
        assert!(Args::try_parse_from(["mesh-webhook", "--max-connections=0"]).is_err());
        assert!(Args::try_parse_from(["mesh-webhook", "--listen=nope"]).is_err());
        let args = Args::try_parse_from(["mesh-webhook", "--istio-config=/etc/istio"]).unwrap();
        assert_eq!(args.istio_config, Some(PathBuf::from("/etc/istio")));
        assert!(Args::try_parse_from(["mesh-webhook", "--istio-config=/a", "--config=/b"]).is_err());
    }
}

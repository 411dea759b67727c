//! The `explain` subcommand's flags (shared by the command and the pod mode, which import it and
//! not each other's).

use std::path::PathBuf;

use clap::Args;

use super::Format;
use crate::cluster::{AdminVia, ClusterArgs};

/// `kubectl mesh explain`: Envoy's routing decision, step by step, with the object behind each step.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  kubectl mesh explain pod/foo -n foo-namespace\n  kubectl mesh explain pod/foo --to bar-service.bar-namespace:50002/ -H 'x-user: alice'\n  kubectl mesh explain pod/foo --inbound 8080/api --plaintext\n  kubectl mesh explain --file config_dump.json --to reviews.default:9080/api",
    group(clap::ArgGroup::new("request").args(["to", "inbound"]))
)]
pub struct ExplainArgs {
    /// The pod, as `pod/NAME` or `NAME` (or use --file).
    #[arg(value_name = "pod/NAME", conflicts_with = "file", required_unless_present = "file")]
    pub pod: Option<String>,
    /// Read Envoy's /config_dump from a file (JSON, or YAML as `yq -P` prints it) instead of a pod.
    #[arg(short, long, value_name = "CONFIG_DUMP")]
    pub file: Option<PathBuf>,
    /// With --file: the pod (JSON or YAML) whose istio-init arguments give the capture settings.
    #[arg(long, value_name = "POD_FILE", requires = "file")]
    pub pod_file: Option<PathBuf>,
    /// Trace one request: HOST[:PORT][/PATH], HOST a Service name or an IP.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "HOST[:PORT][/PATH]")]
    pub to: Option<String>,
    /// Trace a request arriving at the pod on PORT (the port the client dials), path PATH.
    #[arg(long, value_name = "PORT[/PATH]", conflicts_with = "to")]
    pub inbound: Option<String>,
    /// With --inbound: the client is a sidecar speaking Istio mutual TLS (the default).
    #[arg(long, requires = "inbound", conflicts_with = "plaintext")]
    pub from_mtls: bool,
    /// With --inbound: the client has no sidecar and sends plaintext HTTP.
    #[arg(long, requires = "inbound")]
    pub plaintext: bool,
    /// A request header, 'name: value' (repeatable; `host:` sets the authority).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", requires = "request")]
    pub headers: Vec<String>,
    /// The request method.
    #[arg(long, requires = "request")]
    pub method: Option<String>,
    /// Trace a TLS connection with this SNI (the application originates TLS).
    #[arg(long, requires = "request")]
    pub sni: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// How to reach the sidecar's admin API.
    #[arg(long, value_enum, default_value_t = AdminVia::PortForward)]
    pub admin_via: AdminVia,
    /// The sidecar's admin port.
    #[arg(long, default_value_t = mesh_core::ports::ENVOY_ADMIN)]
    pub admin_port: u16,
    /// kubectl's cluster flags.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ExplainArgs {
    /// With `--inbound`: the kind of client (mutual TLS unless `--plaintext`).
    pub fn inbound_peer(&self) -> Option<super::trace::Peer> {
        self.inbound
            .as_ref()
            .map(|_| if self.plaintext { super::trace::Peer::Plaintext } else { super::trace::Peer::Mtls })
    }
}

//! The `explain` subcommand: flags, fetching (file or cluster), exit codes.

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context;
use clap::Args;

use super::{Format, Input, Request, explain, pod, pod_capture, render_report};
use crate::cluster::{AdminVia, ClusterArgs};
use crate::config_dump::ConfigDump;
use crate::exit::{OK as EXIT_OK, PROBLEM as EXIT_PROBLEM};

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

/// Runs `explain`, writing to `out`. Exit code 0: explained, nothing wrong; 2: the request would
/// fail (no listener, no route, unknown cluster, no endpoints...) or Envoy reports rejected or warming
/// resources or referenced objects are gone.
pub async fn run(args: ExplainArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let request = match (&args.to, &args.inbound) {
        (Some(to), _) => Some(Request::parse(to, &args.headers, args.method.as_deref(), args.sni.as_deref())?),
        (None, Some(spec)) => Some(Request::inbound(spec, &args.headers, args.method.as_deref(), args.sni.as_deref())?),
        (None, None) => None,
    };
    let inbound = args.inbound_peer();
    let report = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("reading config dump {}", path.display()))?;
            let dump =
                ConfigDump::from_reader(file).with_context(|| format!("reading config dump {}", path.display()))?;
            let capture = match &args.pod_file {
                Some(p) => {
                    let text = std::fs::read_to_string(p).with_context(|| format!("reading pod {}", p.display()))?;
                    let pod = mesh_core::documents::parse_one(&text)
                        .with_context(|| format!("pod {} is not valid JSON or YAML", p.display()))?;
                    pod_capture(&pod)?
                }
                None => None,
            };
            let source = format!("file {}", path.display());
            explain(&dump, Input { source, capture, request: request.as_ref(), resolution: None, inbound })
        }
        None => pod::explain_pod(&args, request.as_ref()).await?,
    };
    let color =
        args.output == Format::Text && anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never;
    if args.output == Format::Json {
        // Streamed: a whole-pod report of a large dump need not exist twice in memory.
        let mut w = std::io::BufWriter::new(&mut *out);
        serde_json::to_writer_pretty(&mut w, &report)?;
        w.write_all(b"\n")?;
        w.flush()?;
    } else {
        out.write_all(render_report(&report, args.output, color)?.as_bytes())?;
    }
    Ok(if problem(&report) { EXIT_PROBLEM } else { EXIT_OK })
}

fn problem(report: &super::Report) -> bool {
    let failed = report.trace.as_ref().is_some_and(|t| {
        t.outcome.cluster.is_none() && t.outcome.kind != "weighted_clusters" && t.outcome.kind != "direct_to_app"
            || t.outcome.status.is_some_and(|s| s >= 400)
            || t.outcome.clusters.iter().any(|c| {
                c.endpoints_known && c.endpoints.is_empty() && c.discovery_type.as_deref() != Some("ORIGINAL_DST")
            })
    });
    failed || !report.problems.is_empty() || report.objects.iter().any(|o| o.status == "missing")
}

//! The `explain` subcommand: fetching (file or cluster) and exit codes; its flags are in [`super::args`].

use std::io::Write as _;

use anyhow::Context;

use super::{Format, Input, Request, explain, pod, pod_capture, render_report};
use crate::config_dump::ConfigDump;
use crate::exit::{OK as EXIT_OK, PROBLEM as EXIT_PROBLEM};

pub use super::args::ExplainArgs;

/// Runs `explain`, writing to `out`. Exit code 0: explained, nothing wrong; 2: the request would
/// fail (no listener, no route, unknown cluster, no endpoints...) or Envoy reports rejected or warming
/// resources or referenced objects are gone, or (pod mode) Envoy's endpoints of a cluster differ from
/// the Service's EndpointSlices and still do 2 s later.
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
        serde_json::to_writer_pretty(&mut w, &crate::schema::versioned(crate::schema::Kind::Explanation, &report))?;
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
    failed
        || !report.problems.is_empty()
        || report.objects.iter().any(|o| o.status == "missing")
        || report.endpoint_checks.iter().any(|c| c.status == "drift")
}

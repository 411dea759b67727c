//! `kubectl mesh explain`: Envoy's routing decision, step by step, with the object behind each step.
//!
//! Pure core: a [`ConfigDump`] (and, when known, the pod) goes in, a [`Report`] comes out
//! ([`explain`]), and [`render_report`] turns it into a tree for people or JSON/YAML for machines.
//! The shell that fetches the dump and the objects from a cluster lives in [`pod`].

use mesh_core::{CaptureConfig, names};
use serde_json::Value;

use crate::schema::{Kind, versioned};

use crate::config_dump::ConfigDump;

pub mod args;
pub mod command;
pub mod endpoints;
pub mod matcher;
pub mod overview;
pub mod pod;
pub mod provenance;
pub mod rbac;
pub mod render;
pub mod report;
pub mod request;
pub mod trace;
mod views;

pub use report::Report;
pub use request::Request;
pub use trace::Resolution;

/// Errors of `explain`'s pure part.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The pod has no `istio-proxy` container.
    #[error("pod {pod} has no {container} container: it is not part of the mesh (is injection enabled for its namespace?)", container = names::CONTAINER_PROXY)]
    NoSidecar {
        /// `namespace/name`.
        pod: String,
    },
    /// The pod's `istio-init` arguments do not parse.
    #[error("pod {pod}: the {container} arguments do not parse: {source}", container = names::CONTAINER_INIT)]
    Capture {
        /// `namespace/name`.
        pod: String,
        /// The parse error.
        source: mesh_core::CaptureError,
    },
    /// JSON or YAML output failed.
    #[error("rendering the report: {0}")]
    Output(String),
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A tree for people.
    Text,
    /// JSON (schema in docs/explain.md, "Output schema").
    Json,
    /// YAML (same schema).
    Yaml,
}

fn pod_label(pod: &Value) -> String {
    let m = &pod["metadata"];
    format!("{}/{}", m["namespace"].as_str().unwrap_or("default"), m["name"].as_str().unwrap_or("?"))
}

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod["spec"][field].as_array().into_iter().flatten()
}

/// Checks that the pod has a sidecar and reads its capture settings from the `istio-init`
/// container (`None` when capture is done by the CNI plugin, without an init container).
pub fn pod_capture(pod: &Value) -> Result<Option<CaptureConfig>, ExplainError> {
    let has_proxy = containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .any(|c| c["name"] == names::CONTAINER_PROXY);
    if !has_proxy {
        return Err(ExplainError::NoSidecar { pod: pod_label(pod) });
    }
    let Some(init) = containers(pod, "initContainers").find(|c| c["name"] == names::CONTAINER_INIT) else {
        return Ok(None);
    };
    let words: Vec<String> = init["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(init["args"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let start = words.iter().position(|w| w.ends_with("istio-iptables")).map(|i| i + 1).unwrap_or(0);
    CaptureConfig::from_args(&words[start..])
        .map(Some)
        .map_err(|source| ExplainError::Capture { pod: pod_label(pod), source })
}

/// What to explain.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// Where the dump came from, for the report's header.
    pub source: String,
    /// The pod's capture settings, when a pod is known.
    pub capture: Option<CaptureConfig>,
    /// The request to trace; without one, the whole pod is shown.
    pub request: Option<&'a Request>,
    /// How the request's host was resolved (through the API server); offline resolution otherwise.
    pub resolution: Option<Resolution>,
    /// Trace the request as arriving at the pod (`--inbound`) from this kind of client.
    pub inbound: Option<trace::Peer>,
}

/// Explains a dump: the whole pod, or one request's path.
pub fn explain(dump: &ConfigDump, input: Input<'_>) -> Report {
    let index = dump.index();
    let Input { source, capture, request, resolution, inbound } = input;
    let mut report = Report {
        source,
        node: dump.node.as_ref().map(|n| n.id.clone()),
        capture: capture.as_ref().map(overview::capture_view),
        outbound: Vec::new(),
        inbound: Vec::new(),
        trace: None,
        problems: dump.problems(),
        objects: Vec::new(),
        endpoint_checks: Vec::new(),
    };
    match request {
        Some(req) if inbound.is_some() => {
            let peer = inbound.unwrap_or_default();
            let ip = req.ip.or_else(|| trace::instance_ip(dump));
            report.trace = Some(trace::trace_inbound(dump, &index, capture.as_ref(), req, peer, ip));
        }
        Some(req) => {
            let resolution = resolution.unwrap_or_else(|| trace::resolve_offline(dump, &index, req));
            report.trace = Some(trace::trace(dump, &index, capture.as_ref(), req, resolution));
        }
        None => {
            report.outbound = overview::outbound(dump, &index);
            report.inbound = overview::inbound(dump, &index);
        }
    }
    report.objects = report
        .referenced_objects()
        .into_iter()
        .map(|object| report::ObjectStatus { object, status: "unchecked".to_string(), generation: None })
        .collect();
    report
}

/// Renders the report in the chosen format; `color` applies to text only.
pub fn render_report(report: &Report, format: Format, color: bool) -> Result<String, ExplainError> {
    match format {
        Format::Text => Ok(render::render(report, color)),
        Format::Json => serde_json::to_string_pretty(&versioned(Kind::Explanation, report))
            .map(|s| s + "\n")
            .map_err(|e| ExplainError::Output(e.to_string())),
        Format::Yaml => serde_saphyr::to_string(&versioned(Kind::Explanation, report))
            .map_err(|e| ExplainError::Output(e.to_string())),
    }
}

//! Renders a proxy-status report: istioctl's table (`tabwriter` with padding 5), `-o wide` with the
//! NACK messages, and stable JSON/YAML documents.

use std::fmt::Write as _;

use super::model::{Report, Row, XDS_TYPES, cell};
use crate::schema::{Kind, versioned};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// istioctl's columns.
    Table,
    /// The table plus the proxies' NACK messages.
    Wide,
    /// A JSON document (schema in the docs).
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Lays out rows like Go's `tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)`: each column as wide as its
/// widest cell plus 5; the last column unpadded.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}", width = widths[i] + 5);
            }
        }
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_string() } else { s.to_string() }
}

fn table_row(row: &Row, wide: bool) -> Vec<String> {
    let mut cells = vec![row.name.clone(), or_dash(&row.cluster)];
    cells.extend(XDS_TYPES.iter().map(|t| row.xds.get(t).map(cell).unwrap_or_else(|| "IGNORED".to_string())));
    cells.push(if row.connected { or_dash(&row.istiod) } else { "NOT CONNECTED".to_string() });
    cells.push(or_dash(&row.version));
    if wide {
        let errors = row.errors();
        cells.push(if errors.is_empty() { "-".to_string() } else { errors.join("; ").replace('\n', " ") });
    }
    cells
}

/// The table (or wide table), followed by one line per istiod that did not answer.
pub fn table(report: &Report, wide: bool) -> String {
    let mut header: Vec<String> =
        ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"].map(String::from).to_vec();
    if wide {
        header.push("ERRORS".to_string());
    }
    let mut rows = vec![header];
    rows.extend(report.proxies.iter().map(|r| table_row(r, wide)));
    let mut out = tabulate(&rows);
    for i in report.istiods.iter().filter(|i| i.error.is_some()) {
        let _ = writeln!(out, "istiod {}: {}", i.name, i.error.as_deref().unwrap_or_default());
    }
    out
}

/// Renders in the chosen format.
pub fn render(report: &Report, output: Output) -> Result<String, String> {
    match output {
        Output::Table => Ok(table(report, false)),
        Output::Wide => Ok(table(report, true)),
        Output::Json => serde_json::to_string_pretty(&versioned(Kind::ProxyStatus, report))
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Output::Yaml => serde_saphyr::to_string(&versioned(Kind::ProxyStatus, report)).map_err(|e| e.to_string()),
    }
}

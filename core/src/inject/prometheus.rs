//! Prometheus merge: the app's `prometheus.io/*` annotations move into the agent's
//! `ISTIO_PROMETHEUS_ANNOTATIONS` and the pod is pointed at the agent's merged endpoint. Annotation
//! names are matched as Istio matches them, after Prometheus' label-name sanitising, so
//! `prometheus.io/scrape`, `prometheus.io.scrape` and `prometheus-io/scrape` are one key.

use serde_json::{Map, Value, json};

/// `prometheus.io/scrape`.
pub const SCRAPE: &str = "prometheus.io/scrape";
/// `prometheus.io/port`.
pub const PORT: &str = "prometheus.io/port";
/// `prometheus.io/path`.
pub const PATH: &str = "prometheus.io/path";

/// The sanitised forms of [`SCRAPE`], [`PORT`] and [`PATH`].
const SCRAPE_KEY: &str = "prometheus_io_scrape";
const PORT_KEY: &str = "prometheus_io_port";
const PATH_KEY: &str = "prometheus_io_path";

/// Prometheus' `SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn matching<'a>(annotations: &'a Map<String, Value>, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    annotations.iter().filter(move |(k, _)| sanitize(k) == key).filter_map(|(_, v)| v.as_str())
}

/// Istio's `getPrometheusScrape`: the first scrape annotation that is a boolean decides; true when
/// none is.
pub fn scrape(annotations: &Map<String, Value>) -> bool {
    matching(annotations, SCRAPE_KEY).find_map(super::parse_bool).unwrap_or(true)
}

/// The port annotation, in any of its spellings.
pub fn port(annotations: &Map<String, Value>) -> Option<&str> {
    matching(annotations, PORT_KEY).next()
}

/// Istio's `getPrometheusScrapeConfiguration`: the app's scrape, path and port as the agent's JSON,
/// or `None` when none is set.
pub fn scrape_configuration(annotations: &Map<String, Value>) -> Option<String> {
    let (mut scrape, mut path, mut port) = ("", "", "");
    for (k, v) in annotations {
        let Some(v) = v.as_str() else { continue };
        match sanitize(k).as_str() {
            SCRAPE_KEY => scrape = v,
            PORT_KEY => port = v,
            PATH_KEY => path = v,
            _ => {}
        }
    }
    if scrape.is_empty() && path.is_empty() && port.is_empty() {
        return None;
    }
    let mut sc = Map::new();
    sc.insert("scrape".into(), json!(scrape));
    sc.insert("path".into(), json!(path));
    sc.insert("port".into(), json!(port));
    Some(Value::Object(sc).to_string())
}

/// Points the pod at the agent's endpoint: every spelling of the three annotations is removed, then
/// Istio's are set.
pub fn point_at_agent(annotations: &mut Map<String, Value>, target_port: &str) {
    annotations.retain(|k, _| ![SCRAPE_KEY, PORT_KEY, PATH_KEY].contains(&sanitize(k).as_str()));
    annotations.insert(PORT.into(), json!(target_port));
    annotations.insert(PATH.into(), json!("/stats/prometheus"));
    annotations.insert(SCRAPE.into(), json!("true"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()
    }

    #[test]
    fn names_match_after_sanitising() {
        assert_eq!(sanitize("prometheus-io/scrape"), "prometheus_io_scrape");
        let a = map(&[("prometheus.io.scrape", "false")]);
        assert!(!scrape(&a));
        let a = map(&[("prometheus-io/scrape", "nonsense"), ("prometheus.io/scrape", "F")]);
        assert!(!scrape(&a), "the first boolean decides");
        assert!(scrape(&map(&[("prometheus.io/scrape", "FaLsE")])), "not a Go boolean: scrape");
        let a = map(&[("prometheus.io.port", "9090"), ("prometheus_io/path", "/m")]);
        assert_eq!(port(&a), Some("9090"));
        assert_eq!(scrape_configuration(&a).as_deref(), Some(r#"{"scrape":"","path":"/m","port":"9090"}"#));
        assert_eq!(scrape_configuration(&map(&[("other", "x")])), None);
    }

    #[test]
    fn pointing_at_the_agent_clears_every_spelling() {
        let mut a = map(&[("prometheus.io.path", "/m"), ("prometheus-io/port", "1"), ("keep", "x")]);
        point_at_agent(&mut a, "15020");
        assert_eq!(a, map(&[("keep", "x"), (PORT, "15020"), (PATH, "/stats/prometheus"), (SCRAPE, "true")]));
    }
}

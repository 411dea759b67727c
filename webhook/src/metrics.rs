//! Prometheus metrics of the webhook, served as text on the health port's `/metrics`.
//!
//! - `mesh_webhook_requests_total{outcome, reason}`: reviews by outcome (`injected`, `skipped`,
//!   `denied`, `error`); `reason` is the skip reason or the error kind, empty otherwise.
//! - `mesh_webhook_request_duration_seconds`: review latency, with sub-millisecond buckets.
//! - `mesh_webhook_config_reloads_total{result}` and `mesh_webhook_cert_reloads_total{result}`:
//!   `ok` or `failed`.
//! - `mesh_webhook_review_cache_total{result}`: review cache lookups, `hit` or `miss` (none when
//!   the cache is off).

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What happened to a review.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch.
    Injected,
    /// Allowed without a patch.
    Skipped,
    /// Refused (bad annotation values).
    Denied,
    /// Not answered with a review (bad request, unsupported media type, too large, ...).
    Error,
}

impl Outcome {
    /// The label value, also used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of `mesh_webhook_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The outcome.
    pub outcome: Outcome,
    /// Skip reason or error kind; empty for `injected` and `denied`.
    pub reason: &'static str,
}

/// Result of a reload.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new content is in use.
    Ok,
    /// The new content was rejected; the previous one stays in use.
    Failed,
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, if *self == ReloadResult::Ok { "ok" } else { "failed" })
    }
}

/// Labels of `mesh_webhook_review_cache_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of the reload counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `failed`.
    pub result: ReloadResult,
}

/// Upper bounds of the latency histogram, in seconds: 50 µs to 1 s.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// The webhook's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    config_reloads: Family<ReloadLabels, Counter>,
    cert_reloads: Family<ReloadLabels, Counter>,
    review_cache: Family<CacheLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mesh_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "AdmissionReview requests by outcome", requests.clone());
        let latency = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "request_duration",
            "Time to answer an AdmissionReview",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("config_reloads", "InjectConfig reloads by result", config_reloads.clone());
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("cert_reloads", "Serving certificate reloads by result", cert_reloads.clone());
        let review_cache = Family::<CacheLabels, Counter>::default();
        registry.register("review_cache", "Review cache lookups by result", review_cache.clone());
        // Series that always exist, so dashboards see zeros instead of nothing.
        for outcome in [Outcome::Injected, Outcome::Denied] {
            drop(requests.get_or_create(&RequestLabels { outcome, reason: "" }));
        }
        for result in [ReloadResult::Ok, ReloadResult::Failed] {
            drop(config_reloads.get_or_create(&ReloadLabels { result }));
            drop(cert_reloads.get_or_create(&ReloadLabels { result }));
        }
        Metrics { registry, requests, latency, config_reloads, cert_reloads, review_cache }
    }

    /// Counts one review and its latency.
    pub fn observe_request(&self, outcome: Outcome, reason: &'static str, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { outcome, reason }).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts one config reload.
    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// Counts one certificate reload.
    pub fn cert_reload(&self, result: ReloadResult) {
        self.cert_reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// Counts one review cache lookup.
    pub fn review_cache(&self, hit: bool) {
        self.review_cache.get_or_create(&CacheLabels { result: if hit { "hit" } else { "miss" } }).inc();
    }

    /// How many review cache lookups were hits (`true`) or misses so far.
    pub fn review_cache_lookups(&self, hit: bool) -> u64 {
        self.review_cache.get_or_create(&CacheLabels { result: if hit { "hit" } else { "miss" } }).get()
    }

    /// How many reviews had this outcome and reason so far.
    pub fn requests(&self, outcome: Outcome, reason: &'static str) -> u64 {
        self.requests.get_or_create(&RequestLabels { outcome, reason }).get()
    }

    /// How many config reloads had this result so far.
    pub fn config_reloads(&self, result: ReloadResult) -> u64 {
        self.config_reloads.get_or_create(&ReloadLabels { result }).get()
    }

    /// How many certificate reloads had this result so far.
    pub fn cert_reloads(&self, result: ReloadResult) -> u64 {
        self.cert_reloads.get_or_create(&ReloadLabels { result }).get()
    }

    /// The Prometheus text exposition of all metrics.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.observe_request(Outcome::Skipped, "pod_opt_out", Duration::from_micros(80));
        m.observe_request(Outcome::Injected, "", Duration::from_micros(300));
        m.config_reload(ReloadResult::Failed);
        m.cert_reload(ReloadResult::Ok);
        m.review_cache(true);
        m.review_cache(false);
        m.review_cache(true);
        let text = m.encode();
        assert!(text.contains("mesh_webhook_review_cache_total{result=\"hit\"} 2"), "{text}");
        assert!(text.contains("mesh_webhook_review_cache_total{result=\"miss\"} 1"), "{text}");
        assert!(text.contains("mesh_webhook_requests_total{outcome=\"skipped\",reason=\"pod_opt_out\"} 1"), "{text}");
        assert!(text.contains("mesh_webhook_requests_total{outcome=\"injected\",reason=\"\"} 1"), "{text}");
        assert!(text.contains("mesh_webhook_request_duration_seconds_bucket{le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("mesh_webhook_request_duration_seconds_bucket{le=\"0.0005\"} 2"), "{text}");
        assert!(text.contains("mesh_webhook_config_reloads_total{result=\"failed\"} 1"), "{text}");
        assert!(text.contains("mesh_webhook_cert_reloads_total{result=\"ok\"} 1"), "{text}");
        assert_eq!(m.requests(Outcome::Skipped, "pod_opt_out"), 1);
    }
}

//! Route configurations: virtual hosts, routes, their matchers and actions
//! (`envoy.config.route.v3.RouteConfiguration`).

use serde::{Deserialize, Serialize};

use super::Metadata;
use super::number::opt_u32;

/// A route configuration (RDS resource or inline in an HTTP connection manager).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteConfiguration {
    /// The name, e.g. `9080`, `inbound|9080||`, `http.8080`.
    pub name: String,
    /// The virtual hosts, in configuration order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Whether the port in `:authority` is ignored when matching domains (Istio gateways).
    pub ignore_port_in_host_matching: bool,
    /// Whether routes to unknown clusters are rejected at load time.
    pub validate_clusters: Option<bool>,
    /// Metadata, e.g. `filter_metadata.istio.config` naming the object behind the configuration.
    pub metadata: Option<Metadata>,
}

/// A virtual host: a set of domains and the routes for them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VirtualHost {
    /// The name, e.g. `reviews.default.svc.cluster.local:9080`, `allow_any`.
    pub name: String,
    /// The domains: exact, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    /// The routes, tried in order.
    pub routes: Vec<Route>,
    /// Metadata, when set.
    pub metadata: Option<Metadata>,
}

/// A route: a match and an action.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Route {
    /// The route's name (Istio: the VirtualService rule name, or `default`).
    pub name: String,
    /// What requests it takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Forward to a cluster.
    pub route: Option<RouteAction>,
    /// Answer with a redirect.
    pub redirect: Option<RedirectAction>,
    /// Answer directly.
    pub direct_response: Option<DirectResponse>,
    /// Metadata; Istio puts the VirtualService in `filter_metadata.istio.config`.
    pub metadata: Option<Metadata>,
}

/// The match of a route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteMatch {
    /// Path prefix (compared with the whole `:path`, query included).
    pub prefix: Option<String>,
    /// Exact path (query stripped).
    pub path: Option<String>,
    /// RE2 regex over the path (query stripped), full match.
    pub safe_regex: Option<RegexMatcher>,
    /// A prefix followed by the end of the path or `/` (query stripped).
    pub path_separated_prefix: Option<String>,
    /// Matches CONNECT requests.
    pub connect_matcher: Option<serde_json::Value>,
    /// Whether path matching is case sensitive (default true).
    pub case_sensitive: Option<bool>,
    /// Header matchers, all of which must match.
    pub headers: Vec<HeaderMatcher>,
    /// Query parameter matchers, all of which must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// A runtime fraction, when set (the tracer treats it as matching and says so).
    pub runtime_fraction: Option<serde_json::Value>,
    /// gRPC-only match, when set.
    pub grpc: Option<serde_json::Value>,
}

/// An RE2 regular expression.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RegexMatcher {
    /// The expression.
    pub regex: String,
}

/// A string matcher (`envoy.type.matcher.v3.StringMatcher`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct StringMatcher {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Ends with.
    pub suffix: Option<String>,
    /// Contains.
    pub contains: Option<String>,
    /// RE2 full match.
    pub safe_regex: Option<RegexMatcher>,
    /// Case-insensitive comparison (not for regexes).
    pub ignore_case: bool,
}

/// A header matcher. Pseudo-headers (`:method`, `:authority`, `:path`, `:scheme`) are headers here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HeaderMatcher {
    /// The header's name.
    pub name: String,
    /// The value matcher.
    pub string_match: Option<StringMatcher>,
    /// Deprecated: exact value.
    pub exact_match: Option<String>,
    /// Deprecated: prefix.
    pub prefix_match: Option<String>,
    /// Deprecated: suffix.
    pub suffix_match: Option<String>,
    /// Deprecated: contains.
    pub contains_match: Option<String>,
    /// Deprecated: RE2 full match.
    pub safe_regex_match: Option<RegexMatcher>,
    /// Presence (true) or absence (false).
    pub present_match: Option<bool>,
    /// Integer range, when set (`start` inclusive, `end` exclusive).
    pub range_match: Option<RangeMatch>,
    /// Inverts the result; a missing header still does not match (except with `present_match`).
    pub invert_match: bool,
    /// Match a missing header as the empty string.
    pub treat_missing_header_as_empty: bool,
}

/// An integer range `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RangeMatch {
    /// Inclusive start.
    pub start: serde_json::Value,
    /// Exclusive end.
    pub end: serde_json::Value,
}

/// A query parameter matcher.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct QueryParameterMatcher {
    /// The parameter's name.
    pub name: String,
    /// The value matcher.
    pub string_match: Option<StringMatcher>,
    /// Presence.
    pub present_match: Option<bool>,
}

/// Forwarding to one or more clusters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteAction {
    /// One cluster.
    pub cluster: Option<String>,
    /// The cluster named by a request header.
    pub cluster_header: Option<String>,
    /// Weighted clusters.
    pub weighted_clusters: Option<WeightedClusters>,
    /// Rewrites the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// Rewrites the Host header.
    pub host_rewrite_literal: Option<String>,
    /// The route timeout, as a protobuf duration string.
    pub timeout: Option<String>,
}

/// Weighted clusters of a route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct WeightedClusters {
    /// The clusters and their weights.
    pub clusters: Vec<ClusterWeight>,
    /// Deprecated total weight; when absent the sum of the weights.
    #[serde(deserialize_with = "opt_u32")]
    pub total_weight: Option<u32>,
    /// A request header carrying the random value that picks the cluster (deterministic selection).
    pub header_name: Option<String>,
}

/// One weighted cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterWeight {
    /// The cluster.
    pub name: String,
    /// Its weight.
    #[serde(deserialize_with = "opt_u32")]
    pub weight: Option<u32>,
    /// Metadata; Istio may set `filter_metadata.istio.config` here.
    pub metadata: Option<Metadata>,
}

/// A redirect answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RedirectAction {
    /// New host.
    pub host_redirect: Option<String>,
    /// New port.
    #[serde(deserialize_with = "opt_u32")]
    pub port_redirect: Option<u32>,
    /// New path.
    pub path_redirect: Option<String>,
    /// New prefix for the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// Switch to https.
    pub https_redirect: bool,
    /// New scheme.
    pub scheme_redirect: Option<String>,
    /// The response code name (default `MOVED_PERMANENTLY`).
    pub response_code: Option<String>,
}

/// A direct response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DirectResponse {
    /// The status code.
    #[serde(deserialize_with = "opt_u32")]
    pub status: Option<u32>,
    /// The body.
    pub body: Option<DataSource>,
}

/// An inline data source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DataSource {
    /// Inline text.
    pub inline_string: Option<String>,
    /// A file name.
    pub filename: Option<String>,
}

//! HTTP filters and the RBAC filter's configuration (`envoy.extensions.filters.http.rbac.v3.RBAC`,
//! `envoy.config.rbac.v3.RBAC`): the policies Istio builds from AuthorizationPolicies. Only the
//! RBAC filter's configuration is kept; other filters keep their name and `@type`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::cidr::CidrRange;
use super::number::opt_u32;
use super::route::{HeaderMatcher, StringMatcher};

/// The `@type` suffix of the RBAC HTTP filter's configuration.
const RBAC_TYPE: &str = ".filters.http.rbac.v3.RBAC";

/// One HTTP filter of an HTTP connection manager.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpFilter {
    /// The filter's name, e.g. `envoy.filters.http.rbac`, `istio.stats`, `envoy.filters.http.router`.
    pub name: String,
    /// Its configuration: the `@type`, and the policies for an RBAC filter.
    pub typed_config: Option<HttpFilterConfig>,
    /// Set when the configuration comes from ECDS (`config_discovery`) instead of `typed_config`.
    #[serde(deserialize_with = "present")]
    pub config_discovery: bool,
    /// Whether the filter is disabled unless a route enables it.
    pub disabled: bool,
}

impl HttpFilter {
    /// The RBAC configuration, when this is an RBAC filter with a parsed configuration.
    pub fn rbac(&self) -> Option<&RbacFilter> {
        self.typed_config.as_ref().and_then(|c| c.rbac.as_ref())
    }

    /// Whether the filter is an RBAC filter (by name or `@type`).
    pub fn is_rbac(&self) -> bool {
        self.name == "envoy.filters.http.rbac"
            || self.typed_config.as_ref().is_some_and(|c| c.type_url.ends_with(RBAC_TYPE))
    }
}

/// An optional value that is `None` when it does not have the expected shape.
pub(crate) fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<serde::de::IgnoredAny>::deserialize(d)?.is_some())
}

/// An HTTP filter's configuration: the `@type`; the RBAC fields only for an RBAC filter (other
/// filters' fields are skipped, so their shapes never matter).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpFilterConfig {
    /// The `@type`.
    #[serde(rename = "@type")]
    pub type_url: String,
    /// The RBAC configuration, for an RBAC filter.
    pub rbac: Option<RbacFilter>,
    /// Why an RBAC configuration could not be read, when it could not.
    pub unreadable: Option<String>,
}

impl<'de> Deserialize<'de> for HttpFilterConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FilterConfigVisitor)
    }
}

/// Reads `@type` (Envoy writes it first) and skips the rest of every filter but RBAC, so large
/// configurations (stats, Wasm) cost no memory; fields seen before `@type` are kept until it is known.
struct FilterConfigVisitor;

impl<'de> serde::de::Visitor<'de> for FilterConfigVisitor {
    type Value = HttpFilterConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an HTTP filter's typed_config (a map with \"@type\")")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(HttpFilterConfig::default())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut type_url: Option<String> = None;
        let mut kept = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "@type" {
                type_url = Some(map.next_value()?);
            } else if type_url.as_deref().is_some_and(|t| !t.ends_with(RBAC_TYPE)) {
                map.next_value::<serde::de::IgnoredAny>()?;
            } else {
                kept.insert(key, map.next_value()?);
            }
        }
        let type_url = type_url.unwrap_or_default();
        if !type_url.ends_with(RBAC_TYPE) {
            return Ok(HttpFilterConfig { type_url, rbac: None, unreadable: None });
        }
        Ok(match serde_json::from_value::<RbacFilter>(serde_json::Value::Object(kept)) {
            Ok(rbac) => HttpFilterConfig { type_url, rbac: Some(rbac), unreadable: None },
            Err(e) => HttpFilterConfig { type_url, rbac: None, unreadable: Some(e.to_string()) },
        })
    }
}

/// The RBAC HTTP filter: enforced rules and shadow (dry-run) rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RbacFilter {
    /// The enforced rules; absent means the filter enforces nothing.
    pub rules: Option<Rbac>,
    /// Rules that are evaluated and logged but never enforced (Istio: `istio-dry-run` policies).
    pub shadow_rules: Option<Rbac>,
    /// The stat prefix of the shadow rules (Istio: `istio_dry_run_allow_` / `istio_dry_run_deny_`).
    pub shadow_rules_stat_prefix: String,
    /// The matcher API form of the rules, when used instead of `rules`.
    pub matcher: Option<serde_json::Value>,
    /// The matcher API form of the shadow rules.
    pub shadow_matcher: Option<serde_json::Value>,
}

/// A set of policies and the action taken when one matches.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Rbac {
    /// `ALLOW` (the default), `DENY` or `LOG`.
    pub action: Option<String>,
    /// Policies by name; Envoy tries them in name order. Istio names them
    /// `ns[<namespace>]-policy[<AuthorizationPolicy>]-rule[<index>]`.
    pub policies: BTreeMap<String, Policy>,
}

impl Rbac {
    /// The action, `ALLOW` when unset.
    pub fn action(&self) -> &str {
        self.action.as_deref().unwrap_or("ALLOW")
    }
}

/// A policy: it matches when any permission and any principal match (and the condition holds).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Policy {
    /// What the request does (any of them).
    pub permissions: Vec<Permission>,
    /// Who sends it (any of them).
    pub principals: Vec<Principal>,
    /// A CEL condition, when set.
    pub condition: Option<serde_json::Value>,
    /// A checked CEL condition, when set.
    pub checked_condition: Option<serde_json::Value>,
}

/// A list of permissions (`and_rules` / `or_rules`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PermissionSet {
    /// The permissions.
    pub rules: Vec<Permission>,
}

/// A list of principals (`and_ids` / `or_ids`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PrincipalSet {
    /// The principals.
    pub ids: Vec<Principal>,
}

/// A path matcher (`url_path`): the path without query and fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PathMatcher {
    /// The string matcher over the path.
    pub path: Option<StringMatcher>,
}

/// A port range `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct PortRange {
    /// Inclusive start.
    #[serde(deserialize_with = "opt_u32")]
    pub start: Option<u32>,
    /// Exclusive end.
    #[serde(deserialize_with = "opt_u32")]
    pub end: Option<u32>,
}

/// One permission (a protobuf `oneof`: exactly one field is set).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Permission {
    /// All of these.
    pub and_rules: Option<PermissionSet>,
    /// Any of these.
    pub or_rules: Option<PermissionSet>,
    /// Everything.
    pub any: Option<bool>,
    /// A request header (pseudo-headers included).
    pub header: Option<HeaderMatcher>,
    /// The request path, without the query.
    pub url_path: Option<PathMatcher>,
    /// The destination IP.
    pub destination_ip: Option<CidrRange>,
    /// The destination port.
    #[serde(deserialize_with = "opt_u32")]
    pub destination_port: Option<u32>,
    /// A destination port range.
    pub destination_port_range: Option<PortRange>,
    /// Dynamic metadata.
    pub metadata: Option<serde_json::Value>,
    /// The negation of a permission.
    pub not_rule: Option<Box<Permission>>,
    /// The TLS server name.
    pub requested_server_name: Option<StringMatcher>,
    /// An extension matcher.
    pub matcher: Option<serde_json::Value>,
    /// A URI template.
    pub uri_template: Option<serde_json::Value>,
}

/// An authenticated peer's identity matcher.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Authenticated {
    /// The principal (URI SAN, e.g. `spiffe://cluster.local/ns/foo/sa/bar`); absent matches any.
    pub principal_name: Option<StringMatcher>,
}

/// A filter state matcher (Istio: `io.istio.peer_principal`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FilterStateMatcher {
    /// The filter state key.
    pub key: String,
    /// The string matcher over its value.
    pub string_match: Option<StringMatcher>,
}

/// One principal (a protobuf `oneof`: exactly one field is set).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Principal {
    /// All of these.
    pub and_ids: Option<PrincipalSet>,
    /// Any of these.
    pub or_ids: Option<PrincipalSet>,
    /// Everyone.
    pub any: Option<bool>,
    /// The TLS peer's identity.
    pub authenticated: Option<Authenticated>,
    /// The source IP (deprecated form).
    pub source_ip: Option<CidrRange>,
    /// The direct (socket) source IP.
    pub direct_remote_ip: Option<CidrRange>,
    /// The source IP after `x-forwarded-for` handling.
    pub remote_ip: Option<CidrRange>,
    /// A request header.
    pub header: Option<HeaderMatcher>,
    /// The request path.
    pub url_path: Option<PathMatcher>,
    /// Dynamic metadata.
    pub metadata: Option<serde_json::Value>,
    /// Filter state (Istio's peer identity).
    pub filter_state: Option<FilterStateMatcher>,
    /// The negation of a principal.
    pub not_id: Option<Box<Principal>>,
}

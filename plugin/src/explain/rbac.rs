//! Envoy's RBAC filter, as a pure function of the request: each policy's permissions and principals
//! are evaluated with three outcomes (match, no match, or cannot tell because the rule uses a field
//! the request does not carry, such as the client's identity), then the filter's action (`ALLOW`,
//! `DENY`, `LOG`) turns the policies' results into a verdict, the way
//! `RoleBasedAccessControlEngineImpl` does (policies tried in name order).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::matcher::{header_matches, path_without_query, string_matches};
use super::provenance::ObjectRef;
use super::request::Request;
use super::trace::Peer;
use crate::config_dump::CidrRange;
use crate::config_dump::rbac::{PathMatcher, Permission, Policy, Principal, Rbac, RbacFilter};

/// What the request offers to the RBAC rules.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The request (method, path, headers, destination port).
    pub request: &'a Request,
    /// Plaintext (no client identity) or mutual TLS (an identity the tracer does not know).
    pub peer: Peer,
    /// The destination IP, when known.
    pub ip: Option<IpAddr>,
    /// Whether the rules see an HTTP request (an HTTP filter) or only a connection (a network filter).
    pub http: bool,
}

/// The result of one rule: it matches, it does not (and why), or it cannot be evaluated (and which
/// fields it uses that the request does not tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eval {
    /// The rule matches.
    Match,
    /// The rule does not match, with the reason.
    NoMatch(String),
    /// The rule uses fields the tracer cannot know.
    Unknown(BTreeSet<String>),
}

impl Eval {
    fn unknown(field: &str) -> Eval {
        Eval::Unknown(BTreeSet::from([field.to_string()]))
    }

    fn from_bool(hit: bool, miss: impl FnOnce() -> String) -> Eval {
        if hit { Eval::Match } else { Eval::NoMatch(miss()) }
    }

    fn not(self, what: &str) -> Eval {
        match self {
            Eval::Match => Eval::NoMatch(format!("NOT ({what}) fails: the inner rule matches")),
            Eval::NoMatch(_) => Eval::Match,
            u => u,
        }
    }

    /// The result in words, e.g. `matches`, `does not match: ...`, `cannot evaluate: uses ...`.
    pub fn describe(&self) -> String {
        match self {
            Eval::Match => "matches".to_string(),
            Eval::NoMatch(why) => format!("does not match: {why}"),
            Eval::Unknown(fields) => format!("cannot evaluate: uses {}", join(fields)),
        }
    }
}

fn join(fields: &BTreeSet<String>) -> String {
    fields.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// All of `items` (an empty list matches).
fn all(items: impl Iterator<Item = Eval>) -> Eval {
    let mut unknown = BTreeSet::new();
    for e in items {
        match e {
            Eval::Match => {}
            no @ Eval::NoMatch(_) => return no,
            Eval::Unknown(f) => unknown.extend(f),
        }
    }
    if unknown.is_empty() { Eval::Match } else { Eval::Unknown(unknown) }
}

/// Any of `items` (an empty list does not match).
fn any(items: impl Iterator<Item = Eval>) -> Eval {
    let mut unknown = BTreeSet::new();
    let mut reasons = Vec::new();
    for e in items {
        match e {
            Eval::Match => return Eval::Match,
            Eval::NoMatch(r) => reasons.push(r),
            Eval::Unknown(f) => unknown.extend(f),
        }
    }
    if !unknown.is_empty() {
        return Eval::Unknown(unknown);
    }
    Eval::NoMatch(match reasons.len() {
        0 => "the list is empty".to_string(),
        1 => reasons.remove(0),
        n => {
            let shown: Vec<String> = reasons.into_iter().take(3).collect();
            format!("none of {n} alternatives: {}{}", shown.join("; "), if n > 3 { "; ..." } else { "" })
        }
    })
}

fn url_path(m: &PathMatcher, s: &Subject<'_>) -> Eval {
    if !s.http {
        return Eval::unknown("HTTP fields on a TCP connection");
    }
    let req = s.request;
    let path = path_without_query(&req.path);
    let Some(s) = &m.path else { return Eval::unknown("a url_path without a path matcher") };
    match string_matches(s, path) {
        Ok(hit) => {
            Eval::from_bool(hit, || format!("path {path:?} does not match {}", super::matcher::describe_string(s)))
        }
        Err(e) => Eval::unknown(&format!("an unreadable path matcher ({e})")),
    }
}

fn header(h: &crate::config_dump::route::HeaderMatcher, s: &Subject<'_>) -> Eval {
    if !s.http {
        return Eval::unknown("HTTP fields on a TCP connection");
    }
    match header_matches(h, s.request) {
        Ok(()) => Eval::Match,
        Err(why) if why.contains("does not compile") => Eval::unknown(&format!("an unreadable header matcher ({why})")),
        Err(why) => Eval::NoMatch(why),
    }
}

fn ip_in(range: &CidrRange, ip: Option<IpAddr>, what: &str) -> Eval {
    match ip.and_then(|ip| range.contains(ip).map(|hit| (ip, hit))) {
        Some((ip, hit)) => Eval::from_bool(hit, || format!("{what} {ip} is not in {}", range.display())),
        None => Eval::unknown(what),
    }
}

/// Evaluates one permission against the request.
pub fn permission(p: &Permission, s: &Subject<'_>) -> Eval {
    let req = s.request;
    if let Some(set) = &p.and_rules {
        return all(set.rules.iter().map(|r| permission(r, s)));
    }
    if let Some(set) = &p.or_rules {
        return any(set.rules.iter().map(|r| permission(r, s)));
    }
    if let Some(a) = p.any {
        return Eval::from_bool(a, || "any: false".to_string());
    }
    if let Some(h) = &p.header {
        return header(h, s);
    }
    if let Some(m) = &p.url_path {
        return url_path(m, s);
    }
    if let Some(port) = p.destination_port {
        return Eval::from_bool(port == u32::from(req.port), || format!("destination port {} ≠ {port}", req.port));
    }
    if let Some(r) = &p.destination_port_range {
        let (start, end) = (r.start.unwrap_or(0), r.end.unwrap_or(0));
        let port = u32::from(req.port);
        return Eval::from_bool(port >= start && port < end, || {
            format!("destination port {port} is not in [{start}, {end})")
        });
    }
    if let Some(r) = &p.destination_ip {
        return ip_in(r, s.ip, "the destination IP");
    }
    if let Some(m) = &p.requested_server_name {
        let sni = match (s.peer, req.sni.as_deref()) {
            (Peer::Plaintext, _) => "",
            (Peer::Mtls, Some(sni)) => sni,
            (Peer::Mtls, None) => return Eval::unknown("the TLS server name (give --sni)"),
        };
        return match string_matches(m, sni) {
            Ok(hit) => Eval::from_bool(hit, || format!("server name {sni:?} does not match")),
            Err(e) => Eval::unknown(&format!("an unreadable server name matcher ({e})")),
        };
    }
    if let Some(inner) = &p.not_rule {
        return permission(inner, s).not("not_rule");
    }
    if p.metadata.is_some() {
        return Eval::unknown("dynamic metadata");
    }
    if p.matcher.is_some() {
        return Eval::unknown("an extension matcher");
    }
    if p.uri_template.is_some() {
        return Eval::unknown("a URI template");
    }
    Eval::unknown("a permission field this tool does not read")
}

/// Istio's filter state key for the client's identity.
const PEER_PRINCIPAL: &str = "io.istio.peer_principal";

/// Evaluates one principal against the request.
pub fn principal(p: &Principal, s: &Subject<'_>) -> Eval {
    if let Some(set) = &p.and_ids {
        return all(set.ids.iter().map(|r| principal(r, s)));
    }
    if let Some(set) = &p.or_ids {
        return any(set.ids.iter().map(|r| principal(r, s)));
    }
    if let Some(a) = p.any {
        return Eval::from_bool(a, || "any: false".to_string());
    }
    if p.authenticated.is_some() {
        // Over plaintext there is no TLS peer, and Envoy's authenticated matcher never matches.
        return match s.peer {
            Peer::Plaintext => Eval::NoMatch("a plaintext client has no identity (principal)".to_string()),
            Peer::Mtls => Eval::unknown("the client's identity (source principal)"),
        };
    }
    if let Some(f) = &p.filter_state {
        return match (f.key.as_str(), s.peer) {
            (PEER_PRINCIPAL, Peer::Plaintext) => {
                Eval::NoMatch("a plaintext client has no identity (principal)".to_string())
            }
            (PEER_PRINCIPAL, Peer::Mtls) => Eval::unknown("the client's identity (source principal)"),
            (key, _) => Eval::unknown(&format!("filter state {key}")),
        };
    }
    if p.source_ip.is_some() || p.direct_remote_ip.is_some() || p.remote_ip.is_some() {
        return Eval::unknown("the source IP");
    }
    if let Some(h) = &p.header {
        return header(h, s);
    }
    if let Some(m) = &p.url_path {
        return url_path(m, s);
    }
    if let Some(inner) = &p.not_id {
        return principal(inner, s).not("not_id");
    }
    if p.metadata.is_some() {
        return Eval::unknown("dynamic metadata");
    }
    Eval::unknown("a principal field this tool does not read")
}

/// Evaluates a policy: any permission and any principal (and no CEL condition the tracer cannot run).
pub fn policy(p: &Policy, s: &Subject<'_>) -> Eval {
    let perms = any(p.permissions.iter().map(|x| permission(x, s)));
    let princ = any(p.principals.iter().map(|x| principal(x, s)));
    let cond = if p.condition.is_some() || p.checked_condition.is_some() {
        Eval::unknown("a CEL condition")
    } else {
        Eval::Match
    };
    match (perms, princ) {
        (Eval::NoMatch(why), _) => Eval::NoMatch(format!("permissions: {why}")),
        (_, Eval::NoMatch(why)) => Eval::NoMatch(format!("principals: {why}")),
        (a, b) => all([a, b, cond].into_iter()),
    }
}

/// What an RBAC rule set decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The request passes.
    Allowed,
    /// Envoy answers 403 `RBAC: access denied`.
    Denied,
    /// The result depends on fields the tracer does not know.
    Unknown,
    /// The rules are logged, not enforced (`LOG`, shadow rules, or no rules).
    NotEnforced,
}

/// One policy's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResult {
    /// The policy's name.
    pub name: String,
    /// Its result.
    pub eval: Eval,
}

/// An RBAC rule set's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `ALLOW`, `DENY` or `LOG`.
    pub action: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The policy that decided, when one did (the first matching one in name order).
    pub policy: Option<String>,
    /// The fields that kept the tracer from deciding.
    pub unknown: BTreeSet<String>,
    /// Every policy's result, in Envoy's order.
    pub policies: Vec<PolicyResult>,
}

impl Decision {
    /// The decision in words, e.g. `denied by ns[foo]-policy[deny-admin]-rule[0]`.
    pub fn describe(&self) -> String {
        let by = |p: &Option<String>| p.as_ref().map(|p| format!(" by {p}")).unwrap_or_default();
        match self.verdict {
            Verdict::Allowed if self.action == "DENY" => "allowed: no DENY policy matches".to_string(),
            Verdict::Allowed => format!("allowed{}", by(&self.policy)),
            Verdict::Denied if self.action == "ALLOW" && self.policies.is_empty() => {
                "denied: an ALLOW rule set with no policies allows nothing".to_string()
            }
            Verdict::Denied if self.action == "ALLOW" => "denied: no ALLOW policy matches".to_string(),
            Verdict::Denied => format!("denied{}", by(&self.policy)),
            Verdict::Unknown => format!("cannot evaluate: uses {}", join(&self.unknown)),
            Verdict::NotEnforced => match &self.policy {
                Some(p) => format!("logged (not enforced): {p} matches"),
                None => "logged (not enforced): no policy matches".to_string(),
            },
        }
    }
}

/// Decides a rule set: `ALLOW` passes the request when a policy matches, `DENY` refuses it when
/// one does, `LOG` only records it.
pub fn decide(rbac: &Rbac, s: &Subject<'_>) -> Decision {
    let action = rbac.action().to_ascii_uppercase();
    let policies: Vec<PolicyResult> =
        rbac.policies.iter().map(|(name, p)| PolicyResult { name: name.clone(), eval: policy(p, s) }).collect();
    let matched = policies.iter().find(|p| p.eval == Eval::Match).map(|p| p.name.clone());
    let unknown: BTreeSet<String> = policies
        .iter()
        .filter_map(|p| match &p.eval {
            Eval::Unknown(f) => Some(f.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    let verdict = match (action.as_str(), &matched) {
        ("LOG", _) => Verdict::NotEnforced,
        ("DENY", Some(_)) => Verdict::Denied,
        (_, Some(_)) => Verdict::Allowed,
        _ if !unknown.is_empty() => Verdict::Unknown,
        ("DENY", None) => Verdict::Allowed,
        _ => Verdict::Denied,
    };
    let unknown = if matched.is_some() { BTreeSet::new() } else { unknown };
    Decision { action, verdict, policy: matched, unknown, policies }
}

/// The RBAC filter's enforced decision (`rules`, or the matcher API the tracer does not evaluate),
/// and the shadow rules' decision.
pub fn filter_decision(f: &RbacFilter, s: &Subject<'_>) -> (Decision, Option<Decision>) {
    let enforced = match (&f.rules, &f.matcher) {
        (Some(rules), _) => decide(rules, s),
        (None, Some(_)) => Decision {
            action: "MATCHER".to_string(),
            verdict: Verdict::Unknown,
            policy: None,
            unknown: BTreeSet::from(["the matcher API (rules given as `matcher`)".to_string()]),
            policies: Vec::new(),
        },
        (None, None) => Decision {
            action: "NONE".to_string(),
            verdict: Verdict::NotEnforced,
            policy: None,
            unknown: BTreeSet::new(),
            policies: Vec::new(),
        },
    };
    let shadow = f.shadow_rules.as_ref().map(|r| {
        let mut d = decide(r, s);
        d.action = format!("shadow {}", d.action);
        d
    });
    (enforced, shadow)
}

/// The AuthorizationPolicy behind an Istio policy name (`ns[foo]-policy[bar]-rule[0]`, also with
/// a prefix such as `istio-ext-authz-`), with the rule index.
pub fn authorization_policy(name: &str) -> Option<(ObjectRef, usize)> {
    let rest = &name[name.find("ns[")? + 3..];
    let (namespace, rest) = rest.split_once("]-policy[")?;
    let (policy, rest) = rest.rsplit_once("]-rule[")?;
    let rule = rest.strip_suffix(']')?.parse().ok()?;
    if namespace.is_empty() || policy.is_empty() {
        return None;
    }
    Some((
        ObjectRef {
            kind: "AuthorizationPolicy".into(),
            group: "security.istio.io".into(),
            version: "v1".into(),
            namespace: namespace.to_string(),
            name: policy.to_string(),
        },
        rule,
    ))
}

#[cfg(test)]
mod tests;

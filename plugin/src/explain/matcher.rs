//! Envoy's matching rules, as pure functions: virtual host domains, route matchers (path, headers,
//! query parameters), string matchers and weighted cluster selection. Each check returns why it
//! failed, in words, so the trace can say why a candidate lost.

use regex::Regex;

use super::request::Request;
use crate::config_dump::route::{HeaderMatcher, QueryParameterMatcher, RouteMatch, StringMatcher, VirtualHost};

/// How a virtual host domain matched the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainMatch {
    /// The domain equals the host.
    Exact,
    /// A `*.suffix` (or `*suffix`) wildcard; longer suffixes win.
    Suffix,
    /// A `prefix.*` wildcard; longer prefixes win.
    Prefix,
    /// The `*` default.
    Any,
}

/// The virtual host Envoy picks for `host` (already lowercased and port-handled), with how and on
/// which domain it matched. Follows `RouteMatcher::findVirtualHost`: exact, then the longest suffix
/// wildcard, then the longest prefix wildcard, then `*`; a wildcard never matches an empty part.
pub fn select_virtual_host<'a>(
    vhosts: &'a [VirtualHost],
    host: &str,
) -> Option<(usize, &'a VirtualHost, DomainMatch, String)> {
    let mut best_suffix: Option<(usize, usize, &str)> = None;
    let mut best_prefix: Option<(usize, usize, &str)> = None;
    let mut default: Option<(usize, &str)> = None;
    for (i, vh) in vhosts.iter().enumerate() {
        for domain in &vh.domains {
            let d = domain.to_ascii_lowercase();
            if d == "*" {
                default.get_or_insert((i, domain));
            } else if let Some(suffix) = d.strip_prefix('*') {
                if suffix.len() < host.len() && host.ends_with(suffix) && best_suffix.is_none_or(|b| suffix.len() > b.1)
                {
                    best_suffix = Some((i, suffix.len(), domain));
                }
            } else if let Some(prefix) = d.strip_suffix('*') {
                if prefix.len() < host.len()
                    && host.starts_with(prefix)
                    && best_prefix.is_none_or(|b| prefix.len() > b.1)
                {
                    best_prefix = Some((i, prefix.len(), domain));
                }
            } else if d == host {
                return Some((i, vh, DomainMatch::Exact, domain.clone()));
            }
        }
    }
    if let Some((i, _, d)) = best_suffix {
        return Some((i, &vhosts[i], DomainMatch::Suffix, d.to_string()));
    }
    if let Some((i, _, d)) = best_prefix {
        return Some((i, &vhosts[i], DomainMatch::Prefix, d.to_string()));
    }
    default.map(|(i, d)| (i, &vhosts[i], DomainMatch::Any, d.to_string()))
}

/// Why a virtual host was not chosen for `host`, given the winner's kind of match.
pub fn why_not_virtual_host(vh: &VirtualHost, host: &str, winner: Option<DomainMatch>) -> String {
    let mut closest = None;
    for domain in &vh.domains {
        let d = domain.to_ascii_lowercase();
        let hit = if d == "*" {
            Some(DomainMatch::Any)
        } else if let Some(s) = d.strip_prefix('*') {
            (s.len() < host.len() && host.ends_with(s)).then_some(DomainMatch::Suffix)
        } else if let Some(p) = d.strip_suffix('*') {
            (p.len() < host.len() && host.starts_with(p)).then_some(DomainMatch::Prefix)
        } else {
            (d == host).then_some(DomainMatch::Exact)
        };
        if let Some(h) = hit {
            closest = Some((h, domain.clone()));
            break;
        }
    }
    match (closest, winner) {
        (Some((DomainMatch::Any, d)), Some(_)) => {
            format!("its {d:?} is the last resort; a more specific domain matched")
        }
        (Some((_, d)), Some(_)) => format!(
            "its domain {d:?} matches too, but less specifically (Envoy prefers exact, then longer suffix, then longer prefix wildcards)"
        ),
        (Some((_, d)), None) => format!("domain {d:?} matches"),
        (None, _) => format!("no domain matches {host:?} ({} domains)", vh.domains.len()),
    }
}

/// The host Envoy matches domains against: `:authority` lowercased, without the port when
/// `strip_port` says so.
pub fn host_for_matching(authority: &str, strip_port: bool) -> String {
    let host = if strip_port { strip_host_port(authority) } else { authority };
    host.to_ascii_lowercase()
}

/// `authority` without a trailing `:port` (IPv6 literals in brackets keep their colons).
pub fn strip_host_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].chars().all(|c| c.is_ascii_digit()) && !authority[..i].ends_with(':') => {
            let host = &authority[..i];
            if host.starts_with('[') || !host.contains(':') { host } else { authority }
        }
        _ => authority,
    }
}

/// The path without the query string and fragment.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

fn full_regex(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("regex {re:?} does not compile: {e}"))
}

fn starts_with(s: &str, prefix: &str, ignore_case: bool) -> bool {
    if ignore_case {
        s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    } else {
        s.starts_with(prefix)
    }
}

/// A one-line description of a route's match, e.g. `prefix /api, header x-user=alice`.
pub fn describe_match(m: &RouteMatch) -> String {
    let ci = if m.case_sensitive == Some(false) { " (case-insensitive)" } else { "" };
    let mut parts = Vec::new();
    if let Some(p) = &m.prefix {
        parts.push(format!("prefix {p}{ci}"));
    } else if let Some(p) = &m.path {
        parts.push(format!("path {p}{ci}"));
    } else if let Some(r) = &m.safe_regex {
        parts.push(format!("regex {}", r.regex));
    } else if let Some(p) = &m.path_separated_prefix {
        parts.push(format!("path_separated_prefix {p}{ci}"));
    } else if m.connect_matcher.is_some() {
        parts.push("CONNECT".to_string());
    } else {
        parts.push("(no path matcher)".to_string());
    }
    for h in &m.headers {
        parts.push(format!("header {}", describe_header(h)));
    }
    for q in &m.query_parameters {
        let v = match (&q.string_match, q.present_match) {
            (Some(s), _) => describe_string(s),
            (None, Some(true)) | (None, None) => "present".to_string(),
            (None, Some(false)) => "absent".to_string(),
        };
        parts.push(format!("query {} {v}", q.name));
    }
    if m.runtime_fraction.is_some() {
        parts.push("runtime_fraction".to_string());
    }
    parts.join(", ")
}

/// A string matcher in words, e.g. `= "a"`, `prefix "b" (ignore case)`.
pub fn describe_string(s: &StringMatcher) -> String {
    let ic = if s.ignore_case { " (ignore case)" } else { "" };
    if let Some(v) = &s.exact {
        format!("= {v:?}{ic}")
    } else if let Some(v) = &s.prefix {
        format!("prefix {v:?}{ic}")
    } else if let Some(v) = &s.suffix {
        format!("suffix {v:?}{ic}")
    } else if let Some(v) = &s.contains {
        format!("contains {v:?}{ic}")
    } else if let Some(r) = &s.safe_regex {
        format!("~ /{}/", r.regex)
    } else {
        "any".to_string()
    }
}

fn describe_header(h: &HeaderMatcher) -> String {
    let inv = if h.invert_match { "NOT " } else { "" };
    let value = match header_value_matcher(h) {
        HeaderValue::Present(true) => "present".to_string(),
        HeaderValue::Present(false) => "absent".to_string(),
        HeaderValue::String(s) => describe_string(&s),
        HeaderValue::Range(r) => format!("in [{}, {})", r.0, r.1),
    };
    format!("{} {inv}{value}", h.name)
}

enum HeaderValue {
    Present(bool),
    String(StringMatcher),
    Range((i64, i64)),
}

fn header_value_matcher(h: &HeaderMatcher) -> HeaderValue {
    let plain = |f: fn(&mut StringMatcher, String), v: &str| {
        let mut s = StringMatcher::default();
        f(&mut s, v.to_string());
        HeaderValue::String(s)
    };
    if let Some(s) = &h.string_match {
        HeaderValue::String(s.clone())
    } else if let Some(v) = &h.exact_match {
        plain(|s, v| s.exact = Some(v), v)
    } else if let Some(v) = &h.prefix_match {
        plain(|s, v| s.prefix = Some(v), v)
    } else if let Some(v) = &h.suffix_match {
        plain(|s, v| s.suffix = Some(v), v)
    } else if let Some(v) = &h.contains_match {
        plain(|s, v| s.contains = Some(v), v)
    } else if let Some(r) = &h.safe_regex_match {
        HeaderValue::String(StringMatcher { safe_regex: Some(r.clone()), ..Default::default() })
    } else if let Some(r) = &h.range_match {
        let n = |v: &serde_json::Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0);
        HeaderValue::Range((n(&r.start), n(&r.end)))
    } else {
        HeaderValue::Present(h.present_match.unwrap_or(true))
    }
}

/// Whether a string matcher matches `value`.
pub fn string_matches(m: &StringMatcher, value: &str) -> Result<bool, String> {
    let ic = m.ignore_case;
    Ok(if let Some(v) = &m.exact {
        if ic { value.eq_ignore_ascii_case(v) } else { value == v }
    } else if let Some(v) = &m.prefix {
        starts_with(value, v, ic)
    } else if let Some(v) = &m.suffix {
        if ic { value.to_ascii_lowercase().ends_with(&v.to_ascii_lowercase()) } else { value.ends_with(v.as_str()) }
    } else if let Some(v) = &m.contains {
        if ic { value.to_ascii_lowercase().contains(&v.to_ascii_lowercase()) } else { value.contains(v.as_str()) }
    } else if let Some(r) = &m.safe_regex {
        full_regex(&r.regex)?.is_match(value)
    } else {
        true
    })
}

/// Whether one header matcher matches the request; `Err` explains a mismatch.
pub fn header_matches(h: &HeaderMatcher, req: &Request) -> Result<(), String> {
    let name = h.name.to_ascii_lowercase();
    let value = req.header(&name);
    let matched = match header_value_matcher(h) {
        HeaderValue::Present(want) => (value.is_some() == want) != h.invert_match,
        other => {
            let v = match (&value, h.treat_missing_header_as_empty) {
                (Some(v), _) => v.as_str(),
                (None, true) => "",
                (None, false) => return Err(format!("header {} is missing (needs {})", h.name, describe_header(h))),
            };
            let hit = match other {
                HeaderValue::String(s) => string_matches(&s, v)?,
                HeaderValue::Range((start, end)) => v.parse::<i64>().is_ok_and(|n| n >= start && n < end),
                HeaderValue::Present(_) => true,
            };
            hit != h.invert_match
        }
    };
    if matched {
        Ok(())
    } else {
        Err(match value {
            Some(v) => format!("header {} is {v:?}, needs {}", h.name, describe_header(h)),
            None => format!("header {} is missing, needs {}", h.name, describe_header(h)),
        })
    }
}

/// The request's query parameters, decoded, in order (`a&b=1` gives `a=""`, `b="1"`).
pub fn query_params(path: &str) -> Vec<(String, String)> {
    let Some(q) = path.split_once('?').map(|(_, q)| q) else { return Vec::new() };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether one query parameter matcher matches; `Err` explains a mismatch.
pub fn query_matches(q: &QueryParameterMatcher, params: &[(String, String)]) -> Result<(), String> {
    let value = params.iter().find(|(k, _)| *k == q.name).map(|(_, v)| v.as_str());
    match (value, &q.string_match, q.present_match) {
        (None, _, Some(false)) => Ok(()),
        (None, _, _) => Err(format!("query parameter {} is missing", q.name)),
        (Some(_), _, Some(false)) => Err(format!("query parameter {} is present, must be absent", q.name)),
        (Some(_), _, Some(true)) | (Some(_), None, None) => Ok(()),
        (Some(v), Some(s), _) => {
            if string_matches(s, v)? {
                Ok(())
            } else {
                Err(format!("query parameter {} is {v:?}, needs {}", q.name, describe_string(s)))
            }
        }
    }
}

/// Whether the route's path matcher takes `path`; `Err` explains a mismatch.
pub fn path_matches(m: &RouteMatch, path: &str) -> Result<(), String> {
    let ignore_case = m.case_sensitive == Some(false);
    let bare = path_without_query(path);
    let (ok, what) = if let Some(p) = &m.prefix {
        (starts_with(bare, p, ignore_case), format!("prefix {p:?}"))
    } else if let Some(p) = &m.path {
        (if ignore_case { bare.eq_ignore_ascii_case(p) } else { bare == p }, format!("path {p:?}"))
    } else if let Some(r) = &m.safe_regex {
        (full_regex(&r.regex)?.is_match(bare), format!("regex {:?}", r.regex))
    } else if let Some(p) = &m.path_separated_prefix {
        let ok =
            starts_with(bare, p, ignore_case) && (bare.len() == p.len() || bare.as_bytes().get(p.len()) == Some(&b'/'));
        (ok, format!("path_separated_prefix {p:?}"))
    } else if m.connect_matcher.is_some() {
        return Err("matches only CONNECT requests".to_string());
    } else {
        (true, String::new())
    };
    if ok {
        Ok(())
    } else {
        let ci = if ignore_case { " (case-insensitive)" } else { "" };
        Err(format!("path {bare:?} does not match {what}{ci}"))
    }
}

/// Whether the whole route match takes the request; `Err` gives the first reason it does not.
pub fn route_matches(m: &RouteMatch, req: &Request) -> Result<(), String> {
    if m.connect_matcher.is_some() && !req.method.eq_ignore_ascii_case("CONNECT") {
        return Err("matches only CONNECT requests".to_string());
    }
    if m.connect_matcher.is_none() {
        path_matches(m, &req.path)?;
    }
    for h in &m.headers {
        header_matches(h, req)?;
    }
    let params = query_params(&req.path);
    for q in &m.query_parameters {
        query_matches(q, &params)?;
    }
    Ok(())
}

/// Whether route `earlier` takes every request that `later` takes, so `later` can never match.
/// Conservative: only says yes when it can prove it.
pub fn shadows(earlier: &RouteMatch, later: &RouteMatch) -> bool {
    if earlier.runtime_fraction.is_some() || earlier.grpc.is_some() || earlier.connect_matcher.is_some() {
        return false;
    }
    if later.connect_matcher.is_some() {
        return false;
    }
    // Every header and query condition of `earlier` must also be a condition of `later`.
    if !earlier.headers.iter().all(|h| later.headers.contains(h)) {
        return false;
    }
    if !earlier.query_parameters.iter().all(|q| later.query_parameters.contains(q)) {
        return false;
    }
    let e_ci = earlier.case_sensitive == Some(false);
    let l_ci = later.case_sensitive == Some(false);
    // A prefix of `earlier` covers a literal of `later` when every string that starts like `later`
    // also starts with the earlier prefix.
    let covers = |p: &str, lit: &str| {
        if e_ci {
            lit.len() >= p.len() && lit.is_char_boundary(p.len()) && lit[..p.len()].eq_ignore_ascii_case(p)
        } else {
            (!l_ci || !p.chars().any(|c| c.is_ascii_alphabetic())) && lit.starts_with(p)
        }
    };
    if let Some(p) = &earlier.prefix {
        if let Some(q) = later.prefix.as_deref().or(later.path.as_deref()).or(later.path_separated_prefix.as_deref()) {
            return covers(p, q);
        }
        return p.is_empty();
    }
    if let Some(p) = &earlier.path_separated_prefix {
        let check = |q: &str| covers(p, q) && (q.len() == p.len() || q.as_bytes().get(p.len()) == Some(&b'/'));
        if let Some(q) = later.path.as_deref().or(later.path_separated_prefix.as_deref()) {
            return check(q);
        }
        return false;
    }
    if let Some(p) = &earlier.path {
        return later.path.as_deref().is_some_and(|q| if e_ci { p.eq_ignore_ascii_case(q) } else { p == q && !l_ci });
    }
    if let Some(r) = &earlier.safe_regex {
        if later.safe_regex.as_ref().is_some_and(|s| s.regex == r.regex) {
            return true;
        }
        if let Some(q) = &later.path
            && !l_ci
            && let Ok(re) = full_regex(&r.regex)
        {
            return re.is_match(q);
        }
        return false;
    }
    // No path matcher at all takes every path.
    earlier.prefix.is_none()
        && earlier.path.is_none()
        && earlier.safe_regex.is_none()
        && earlier.path_separated_prefix.is_none()
}

/// The cluster a weighted selection picks for `value` (Envoy: `value % total`, walking the
/// cumulative weights), with the total.
pub fn pick_weighted(weights: &[u32], total: Option<u32>, value: u64) -> Option<(usize, u64)> {
    let sum: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let total = total.map(u64::from).filter(|t| *t > 0).unwrap_or(sum);
    if total == 0 {
        return None;
    }
    let selected = value % total;
    let mut end = 0u64;
    for (i, w) in weights.iter().enumerate() {
        let begin = end;
        end += u64::from(*w);
        if selected >= begin && selected < end {
            return Some((i, total));
        }
    }
    None
}

#[cfg(test)]
mod tests;

use super::*;
use crate::config_dump::route::{
    HeaderMatcher, QueryParameterMatcher, RegexMatcher, RouteMatch, StringMatcher, VirtualHost,
};

fn vh(name: &str, domains: &[&str]) -> VirtualHost {
    VirtualHost { name: name.into(), domains: domains.iter().map(|d| d.to_string()).collect(), ..Default::default() }
}

fn req(to: &str, headers: &[&str]) -> Request {
    Request::parse(to, &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(), None, None).unwrap()
}

#[test]
fn virtual_host_precedence_follows_envoy() {
    let vhosts = vec![
        vh("any", &["*"]),
        vh("prefix", &["foo.*"]),
        vh("short-suffix", &["*.com"]),
        vh("long-suffix", &["*.bar.com"]),
        vh("exact", &["foo.bar.com"]),
    ];
    let pick = |h: &str| select_virtual_host(&vhosts, h).map(|(_, v, m, _)| (v.name.clone(), m));
    assert_eq!(pick("foo.bar.com"), Some(("exact".into(), DomainMatch::Exact)));
    assert_eq!(pick("x.bar.com"), Some(("long-suffix".into(), DomainMatch::Suffix)));
    assert_eq!(pick("foo.baz.com"), Some(("short-suffix".into(), DomainMatch::Suffix)));
    assert_eq!(pick("foo.org"), Some(("prefix".into(), DomainMatch::Prefix)));
    assert_eq!(pick("other"), Some(("any".into(), DomainMatch::Any)));
    // A wildcard never matches an empty part: "*.bar.com" does not take ".bar.com".
    assert_eq!(pick(".bar.com"), Some(("short-suffix".into(), DomainMatch::Suffix)));
    // The port is part of the host unless stripped.
    assert_eq!(pick("foo.bar.com:80"), Some(("prefix".into(), DomainMatch::Prefix)));
    assert_eq!(host_for_matching("Foo.Bar.com:80", true), "foo.bar.com");
    assert_eq!(strip_host_port("[::1]:80"), "[::1]");
    assert_eq!(strip_host_port("::1"), "::1");
}

#[test]
fn path_matchers() {
    let m = |f: fn(&mut RouteMatch)| {
        let mut r = RouteMatch::default();
        f(&mut r);
        r
    };
    let prefix = m(|r| r.prefix = Some("/api".into()));
    assert!(path_matches(&prefix, "/api/x?y=1").is_ok());
    assert!(path_matches(&prefix, "/API").is_err());
    let ci = m(|r| {
        r.prefix = Some("/api".into());
        r.case_sensitive = Some(false);
    });
    assert!(path_matches(&ci, "/API/x").is_ok());
    let exact = m(|r| r.path = Some("/a".into()));
    assert!(path_matches(&exact, "/a?q").is_ok());
    assert!(path_matches(&exact, "/a/").is_err());
    let sep = m(|r| r.path_separated_prefix = Some("/a".into()));
    assert!(path_matches(&sep, "/a").is_ok());
    assert!(path_matches(&sep, "/a/b").is_ok());
    assert!(path_matches(&sep, "/ab").is_err());
    let re = m(|r| r.safe_regex = Some(RegexMatcher { regex: "/v[0-9]+/.*".into() }));
    assert!(path_matches(&re, "/v1/x?z").is_ok());
    assert!(path_matches(&re, "/x/v1/x").is_err(), "regexes match the whole path");
}

#[test]
fn header_and_query_matchers() {
    let h = |f: fn(&mut HeaderMatcher)| {
        let mut x = HeaderMatcher { name: "x-user".into(), ..Default::default() };
        f(&mut x);
        x
    };
    let exact = h(|x| x.string_match = Some(StringMatcher { exact: Some("alice".into()), ..Default::default() }));
    assert!(header_matches(&exact, &req("a", &["x-user: alice"])).is_ok());
    assert!(header_matches(&exact, &req("a", &["x-user: Alice"])).is_err());
    let inverted = h(|x| {
        x.string_match = Some(StringMatcher { exact: Some("alice".into()), ..Default::default() });
        x.invert_match = true;
    });
    assert!(header_matches(&inverted, &req("a", &["x-user: bob"])).is_ok());
    // Envoy: an inverted matcher still needs the header to be there.
    assert!(header_matches(&inverted, &req("a", &[])).is_err());
    let absent = h(|x| x.present_match = Some(false));
    assert!(header_matches(&absent, &req("a", &[])).is_ok());
    assert!(header_matches(&absent, &req("a", &["x-user: a"])).is_err());
    let method = HeaderMatcher {
        name: ":method".into(),
        string_match: Some(StringMatcher { exact: Some("GET".into()), ..Default::default() }),
        ..Default::default()
    };
    assert!(header_matches(&method, &req("a", &[])).is_ok());
    let q = QueryParameterMatcher {
        name: "v".into(),
        string_match: Some(StringMatcher { prefix: Some("2".into()), ..Default::default() }),
        present_match: None,
    };
    assert!(query_matches(&q, &query_params("/p?a&v=20")).is_ok());
    assert!(query_matches(&q, &query_params("/p?v=1&v=2")).is_err(), "only the first value counts");
    assert_eq!(query_params("/p?a%20b=c%2Fd"), vec![("a b".to_string(), "c/d".to_string())]);
}

#[test]
fn shadowing_is_detected_conservatively() {
    let p = |s: &str| RouteMatch { prefix: Some(s.into()), ..Default::default() };
    let path = |s: &str| RouteMatch { path: Some(s.into()), ..Default::default() };
    assert!(shadows(&p("/"), &p("/api")));
    assert!(shadows(&p("/api"), &path("/api/v1")));
    assert!(!shadows(&p("/api"), &p("/ap")));
    let with_header = RouteMatch {
        headers: vec![HeaderMatcher { name: "x".into(), present_match: Some(true), ..Default::default() }],
        ..p("/")
    };
    assert!(!shadows(&with_header, &p("/a")), "a header condition narrows the earlier route");
    assert!(shadows(&p("/"), &with_header));
}

#[test]
fn weighted_pick_walks_cumulative_weights() {
    assert_eq!(pick_weighted(&[30, 70], None, 29), Some((0, 100)));
    assert_eq!(pick_weighted(&[30, 70], None, 30), Some((1, 100)));
    assert_eq!(pick_weighted(&[30, 70], None, 130), Some((1, 100)));
    assert_eq!(pick_weighted(&[0, 0], None, 1), None);
}

use serde_json::{Value, json};

use super::*;
use crate::config_dump::rbac::HttpFilter;

fn filter(v: Value) -> RbacFilter {
    let f: HttpFilter = serde_json::from_value(json!({"name": "envoy.filters.http.rbac", "typed_config": v})).unwrap();
    f.rbac().cloned().expect("an RBAC configuration")
}

fn rules(action: &str, policies: Value) -> RbacFilter {
    filter(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": action, "policies": policies},
        "shadow_rules_stat_prefix": "istio_dry_run_allow_"
    }))
}

/// Istio's shape: `and_rules` of `or_rules` per field of `to.operation`.
fn istio_permission(fields: &[Value]) -> Value {
    let rules: Vec<Value> = fields.iter().map(|f| json!({"or_rules": {"rules": [f]}})).collect();
    json!({"and_rules": {"rules": rules}})
}

fn any_principal() -> Value {
    json!({"and_ids": {"ids": [{"any": true}]}})
}

fn req(method: &str, path: &str, headers: &[&str]) -> Request {
    let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    Request::inbound(&format!("8080{path}"), &headers, Some(method), None).unwrap()
}

fn verdict(f: &RbacFilter, r: &Request, peer: Peer) -> Decision {
    filter_decision(f, &Subject { request: r, peer, ip: None, http: true }).0
}

#[test]
fn allow_policies_pass_matching_requests_and_refuse_the_rest() {
    let f = rules(
        "ALLOW",
        json!({
            "ns[foo]-policy[allow-get]-rule[0]": {
                "permissions": [istio_permission(&[
                    json!({"header": {"name": ":method", "string_match": {"exact": "GET"}}}),
                    json!({"url_path": {"path": {"prefix": "/api/"}}}),
                ])],
                "principals": [any_principal()]
            }
        }),
    );
    let d = verdict(&f, &req("GET", "/api/x?q=1", &[]), Peer::Plaintext);
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Allowed, Some("ns[foo]-policy[allow-get]-rule[0]")));
    let d = verdict(&f, &req("POST", "/api/x", &[]), Peer::Plaintext);
    assert_eq!(d.verdict, Verdict::Denied, "{d:?}");
    assert!(d.describe().contains("no ALLOW policy matches"), "{}", d.describe());
    assert!(d.policies[0].eval.describe().contains("header :method is \"POST\""), "{:?}", d.policies);
    // url_path ignores the query; a path outside the prefix is refused.
    let d = verdict(&f, &req("GET", "/other?/api/", &[]), Peer::Plaintext);
    assert_eq!(d.verdict, Verdict::Denied, "{d:?}");
}

#[test]
fn deny_policies_refuse_matching_requests() {
    let f = rules(
        "DENY",
        json!({
            "ns[foo]-policy[deny-admin]-rule[0]": {
                "permissions": [istio_permission(&[json!({"url_path": {"path": {"exact": "/admin"}}})])],
                "principals": [any_principal()]
            },
            "ns[foo]-policy[deny-debug]-rule[1]": {
                "permissions": [istio_permission(&[json!({"header": {"name": "x-debug", "present_match": true}})])],
                "principals": [any_principal()]
            }
        }),
    );
    let d = verdict(&f, &req("GET", "/admin", &[]), Peer::Mtls);
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Denied, Some("ns[foo]-policy[deny-admin]-rule[0]")));
    let d = verdict(&f, &req("GET", "/ok", &["x-debug: 1"]), Peer::Mtls);
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Denied, Some("ns[foo]-policy[deny-debug]-rule[1]")));
    let d = verdict(&f, &req("GET", "/ok", &[]), Peer::Mtls);
    assert_eq!(d.verdict, Verdict::Allowed);
    assert_eq!(d.describe(), "allowed: no DENY policy matches");
}

#[test]
fn rules_on_the_clients_identity_cannot_be_evaluated_over_mtls() {
    let from_sleep = json!({"and_ids": {"ids": [{"or_ids": {"ids": [{"filter_state": {
        "key": "io.istio.peer_principal",
        "string_match": {"exact": "spiffe://cluster.local/ns/foo/sa/sleep"}}}]}}]}});
    let f = rules(
        "ALLOW",
        json!({"ns[foo]-policy[from-sleep]-rule[0]": {"permissions": [{"any": true}], "principals": [from_sleep]}}),
    );
    let d = verdict(&f, &req("GET", "/", &[]), Peer::Mtls);
    assert_eq!(d.verdict, Verdict::Unknown);
    assert_eq!(d.describe(), "cannot evaluate: uses the client's identity (source principal)");
    // A plaintext client has no identity: the policy cannot match, so ALLOW refuses it.
    let d = verdict(&f, &req("GET", "/", &[]), Peer::Plaintext);
    assert_eq!(d.verdict, Verdict::Denied, "{d:?}");
    // The older `authenticated` form behaves the same.
    let f = rules(
        "DENY",
        json!({"p": {"permissions": [{"any": true}], "principals": [{"not_id": {"authenticated": {}}}]}}),
    );
    assert_eq!(verdict(&f, &req("GET", "/", &[]), Peer::Plaintext).verdict, Verdict::Denied);
    assert_eq!(verdict(&f, &req("GET", "/", &[]), Peer::Mtls).verdict, Verdict::Unknown);
}

#[test]
fn a_determined_policy_wins_over_an_undetermined_one() {
    // ALLOW: one matching policy is enough, whatever the others say.
    let f = rules(
        "ALLOW",
        json!({
            "a-source-ip": {"permissions": [{"any": true}], "principals": [{"remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}]},
            "b-get": {"permissions": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}], "principals": [{"any": true}]}
        }),
    );
    let d = verdict(&f, &req("GET", "/", &[]), Peer::Mtls);
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Allowed, Some("b-get")));
    assert!(d.unknown.is_empty());
    let d = verdict(&f, &req("PUT", "/", &[]), Peer::Mtls);
    assert_eq!(d.verdict, Verdict::Unknown);
    assert_eq!(d.describe(), "cannot evaluate: uses the source IP");
    // A permission that fails decides the policy even when its principal is unknown.
    let d = verdict(
        &rules(
            "DENY",
            json!({"p": {"permissions": [{"destination_port": 9090}], "principals": [{"remote_ip": {"address_prefix": "10.0.0.0"}}]}}),
        ),
        &req("GET", "/", &[]),
        Peer::Mtls,
    );
    assert_eq!(d.verdict, Verdict::Allowed, "{d:?}");
}

#[test]
fn ports_negations_conditions_and_empty_rule_sets() {
    let port = |p: u16| Request::inbound(&format!("{p}/"), &[], None, None).unwrap();
    let f = rules(
        "DENY",
        json!({"p": {"permissions": [{"not_rule": {"destination_port_range": {"start": 8000, "end": 9000}}}], "principals": [{"any": true}]}}),
    );
    assert_eq!(verdict(&f, &port(8080), Peer::Mtls).verdict, Verdict::Allowed);
    assert_eq!(verdict(&f, &port(9000), Peer::Mtls).verdict, Verdict::Denied);
    let f = rules(
        "ALLOW",
        json!({"p": {"permissions": [{"any": true}], "principals": [{"any": true}], "condition": {"call_expr": {}}}}),
    );
    assert_eq!(verdict(&f, &port(8080), Peer::Mtls).describe(), "cannot evaluate: uses a CEL condition");
    let f = rules("ALLOW", json!({}));
    assert_eq!(verdict(&f, &port(8080), Peer::Mtls).verdict, Verdict::Denied);
    let f = rules("LOG", json!({"p": {"permissions": [{"any": true}], "principals": [{"any": true}]}}));
    let d = verdict(&f, &port(8080), Peer::Mtls);
    assert_eq!((d.verdict, d.describe().as_str()), (Verdict::NotEnforced, "logged (not enforced): p matches"));
    // Only shadow rules: nothing is enforced, the dry run is reported.
    let f = filter(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "shadow_rules": {"action": "DENY", "policies": {"p": {"permissions": [{"any": true}], "principals": [{"any": true}]}}}
    }));
    let (enforced, shadow) =
        filter_decision(&f, &Subject { request: &port(80), peer: Peer::Mtls, ip: None, http: true });
    assert_eq!(enforced.verdict, Verdict::NotEnforced);
    assert_eq!(shadow.map(|s| (s.action, s.verdict)), Some(("shadow DENY".to_string(), Verdict::Denied)));
}

#[test]
fn other_filters_keep_only_their_type() {
    let f: HttpFilter = serde_json::from_value(json!({"name": "istio.stats", "typed_config": {
        "@type": "type.googleapis.com/stats.PluginConfig", "rules": "not an RBAC shape"}}))
    .unwrap();
    assert!(!f.is_rbac() && f.rbac().is_none());
    assert_eq!(f.typed_config.unwrap().type_url, "type.googleapis.com/stats.PluginConfig");
    // A malformed RBAC configuration is reported, not a parse failure of the whole dump.
    let f: HttpFilter = serde_json::from_value(json!({"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", "rules": {"policies": []}}}))
    .unwrap();
    assert!(f.is_rbac() && f.rbac().is_none());
    assert!(f.typed_config.unwrap().unreadable.is_some());
    // Fields before `@type` (hand-edited YAML) are kept until the type is known.
    let f: HttpFilter = serde_json::from_str(
        r#"{"name": "rbac", "typed_config": {"rules": {"action": "DENY", "policies": {}},
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}"#,
    )
    .unwrap();
    assert_eq!(f.rbac().and_then(|r| r.rules.as_ref()).map(|r| r.action()), Some("DENY"));
}

#[test]
fn istio_policy_names_give_the_authorization_policy() {
    let (o, rule) = authorization_policy("ns[foo]-policy[deny-admin]-rule[2]").unwrap();
    assert_eq!((o.display(), rule), ("AuthorizationPolicy foo/deny-admin".to_string(), 2));
    assert_eq!(o.group, "security.istio.io");
    let (o, _) = authorization_policy("istio-ext-authz-ns[bar]-policy[ext]-rule[0]").unwrap();
    assert_eq!(o.display(), "AuthorizationPolicy bar/ext");
    assert!(authorization_policy("my-policy").is_none());
    assert!(authorization_policy("ns[]-policy[x]-rule[0]").is_none());
}

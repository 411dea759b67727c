//! The inbound direction: a request arriving at the pod on a port. Capture (`-b`/`-d`, the tunnel
//! port), virtualInbound's filter chain for the destination port, transport and ALPN (which is how
//! STRICT / PERMISSIVE / DISABLE decide whether plaintext is accepted), the HTTP filters, then the
//! `inbound|port||` cluster and the application port it delivers to.

use std::net::IpAddr;

use mesh_core::CaptureConfig;

use super::super::rbac::{self, Subject, Verdict};
use super::super::report::{Candidate, Outcome};
use super::chain::Connection;
use super::{Tracer, outcome, step};
use crate::config_dump::listener::FilterConfig;
use crate::config_dump::rbac::{HttpFilter, RbacFilter};
use crate::config_dump::{ConfigDump, FilterChain, Listener, Terminal};

/// How the client reaches the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// A sidecar client: Istio mutual TLS, ALPN `istio-http/1.1` / `istio`.
    #[default]
    Mtls,
    /// A client without a sidecar: plaintext HTTP/1.1.
    Plaintext,
}

/// ALPN values an Istio client sidecar offers on mutual TLS (HTTP first, then the generic `istio`).
const MTLS_ALPN: &[&str] = &["istio-http/1.1", "istio", "istio-peer-exchange"];

impl Connection {
    /// The connection of an inbound request: `Peer::Mtls` is TLS with Istio's ALPN, plaintext is
    /// HTTP/1.1 as the HTTP inspector detects it.
    pub fn inbound(listener: &Listener, port: u16, ip: Option<IpAddr>, peer: Peer, sni: Option<&str>) -> Self {
        match peer {
            Peer::Mtls => Connection {
                port: u32::from(port),
                ip,
                transport: "tls",
                sni: if listener.has_listener_filter("tls_inspector") {
                    sni.unwrap_or_default().to_string()
                } else {
                    String::new()
                },
                alpn: MTLS_ALPN.iter().map(|s| s.to_string()).collect(),
            },
            Peer::Plaintext => Connection {
                port: u32::from(port),
                ip,
                transport: "raw_buffer",
                sni: String::new(),
                alpn: if listener.has_listener_filter("http_inspector") {
                    vec!["http/1.1".to_string()]
                } else {
                    Vec::new()
                },
            },
        }
    }
}

/// An HTTP filter's name, with an RBAC filter's action and policy count.
fn filter_label(f: &HttpFilter) -> String {
    match f.rbac() {
        Some(cfg) => {
            let mut parts = Vec::new();
            if let Some(r) = &cfg.rules {
                parts.push(format!("{} {}", r.action(), plural(r.policies.len(), "policy", "policies")));
            }
            if let Some(r) = &cfg.shadow_rules {
                parts.push(format!("shadow {} {}", r.action(), plural(r.policies.len(), "policy", "policies")));
            }
            if cfg.matcher.is_some() {
                parts.push("matcher".to_string());
            }
            format!("{} ({})", f.name, parts.join(", "))
        }
        None => f.name.clone(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Why an RBAC filter decided as it did, in words.
fn rbac_why(enforced: &rbac::Decision, shadow: Option<&rbac::Decision>) -> String {
    let rule = match enforced.action.as_str() {
        "ALLOW" => "ALLOW: the request passes only if a policy matches",
        "DENY" => "DENY: the request is refused if a policy matches",
        "LOG" => "LOG: policies are logged, never enforced",
        "NONE" => "no enforced rules",
        _ => "rules given with the matcher API, which this tool does not evaluate",
    };
    let mut why = format!("{rule}; policies are tried in name order");
    if let Some(s) = shadow {
        why.push_str(&format!("; shadow (dry-run) rules {}: {}", s.action.trim_start_matches("shadow "), s.describe()));
    }
    why
}

/// The pod's own IP, from the node metadata Istio sets (`INSTANCE_IPS`).
pub fn instance_ip(dump: &ConfigDump) -> Option<IpAddr> {
    let node = dump.node.as_ref()?;
    let from_metadata = node.metadata.get("INSTANCE_IPS").and_then(|v| v.as_str()).unwrap_or_default();
    // The node id is `TYPE~IP~POD.NAMESPACE~DOMAIN`.
    from_metadata.split(',').chain(node.id.split('~').nth(1)).find_map(|s| s.trim().parse().ok())
}

/// The listener that receives captured inbound connections: bound to the inbound capture port
/// (15006, `virtualInbound`).
fn virtual_inbound(dump: &ConfigDump, capture_port: u16) -> Option<&Listener> {
    super::listener::serving(dump)
        .find(|l| l.socket_address().is_some_and(|(_, p)| p == u32::from(capture_port)))
        .or_else(|| super::listener::serving(dump).find(|l| l.name == "virtualInbound"))
}

impl<'a> Tracer<'a, '_> {
    /// Traces an inbound request from `peer` to the request's port.
    pub(super) fn run_inbound(
        &mut self,
        dump: &'a ConfigDump,
        capture: Option<&CaptureConfig>,
        peer: Peer,
        ip: Option<IpAddr>,
    ) -> Outcome {
        let req = self.req;
        let capture_port =
            capture.map(|c| c.effective_inbound_capture_port()).unwrap_or(mesh_core::ports::INBOUND_CAPTURE);
        if let Err(o) = self.inbound_capture(capture, peer) {
            return o;
        }
        let Some(listener) = virtual_inbound(dump, capture_port) else {
            self.steps.push(step("listener", "none", format!("no listener is bound to {capture_port}")));
            return outcome(
                "no_listener",
                None,
                format!("nothing listens on {capture_port}; the captured connection is refused"),
            );
        };
        self.steps.push(step(
            "listener",
            listener.name.clone(),
            format!(
                "iptables redirected the connection to {capture_port}; its original destination port is {}",
                req.port
            ),
        ));
        let conn = Connection::inbound(listener, req.port, ip, peer, req.sni.as_deref());
        let Some(chain) = self.select_chain(listener, &conn) else {
            let why = match peer {
                Peer::Plaintext => "plaintext is not accepted on this port (mTLS STRICT?)",
                Peer::Mtls => "mutual TLS is not accepted on this port",
            };
            return outcome(
                "no_filter_chain",
                None,
                format!("no filter chain of {} matches: {why}; Envoy closes the connection", listener.name),
            );
        };
        if chain.name.ends_with("blackhole") {
            return outcome("blackhole", None, format!("chain {} drops the connection", chain.name));
        }
        let mut undecided = match self.network_rbac(chain, peer, ip) {
            Ok(undecided) => undecided,
            Err(o) => return o,
        };
        match chain.terminal() {
            Some(Terminal::Http(hcm)) => {
                self.http_filters(hcm);
                match self.rbac(hcm, peer, ip) {
                    Ok(more) => undecided.extend(more),
                    Err(o) => return o,
                };
                let mut o = self.http(hcm);
                if !undecided.is_empty() && o.status.is_none() {
                    o.summary = format!("{} — unless RBAC denies it (403): {}", o.summary, undecided.join("; "));
                }
                self.delivered(o, req.port)
            }
            Some(Terminal::Tcp(tcp)) => {
                let clusters = super::tcp_clusters(self.index, tcp.cluster.as_deref(), tcp.weighted_clusters.as_ref());
                let mut o = self.finish_clusters(clusters, None, "tcp proxy");
                if !undecided.is_empty() {
                    o.summary = format!("{} — unless RBAC closes the connection: {}", o.summary, undecided.join("; "));
                }
                self.delivered(o, req.port)
            }
            None => super::unknown_terminal(chain),
        }
    }

    /// The inbound capture step: is the port redirected to the sidecar?
    fn inbound_capture(&mut self, capture: Option<&CaptureConfig>, peer: Peer) -> Result<(), Outcome> {
        let port = self.req.port;
        let Some(cfg) = capture else {
            self.steps.push(step(
                "capture",
                "assumed captured",
                "no pod given; Istio's default captures all inbound TCP to 15006",
            ));
            return Ok(());
        };
        if cfg.captures_inbound(port) {
            let to = cfg.effective_inbound_capture_port();
            self.steps.push(step(
                "capture",
                format!("captured → {to}"),
                format!("port {port} is captured inbound (-b/-d)"),
            ));
            return Ok(());
        }
        let why = if port == cfg.effective_inbound_tunnel_port() {
            format!("{port} is the tunnel port, never captured")
        } else {
            format!("port {port} is not captured inbound (-b/-d)")
        };
        self.steps.push(step("capture", "not captured", why.clone()));
        Err(match peer {
            Peer::Plaintext => outcome(
                "direct_to_app",
                None,
                format!("the connection reaches the application directly, bypassing the sidecar: {why}"),
            ),
            Peer::Mtls => outcome(
                "not_captured",
                None,
                format!("the application receives the client sidecar's TLS, which it cannot read: {why}"),
            ),
        })
    }

    /// Names the HTTP filters of the chain, in order (an RBAC filter with its action and policies).
    fn http_filters(&mut self, hcm: &FilterConfig) {
        let names: Vec<String> = hcm.http_filters.iter().map(filter_label).collect();
        let rbac = hcm.http_filters.iter().filter(|f| f.is_rbac()).count();
        let why = if rbac > 0 {
            format!("{rbac} RBAC filter(s): AuthorizationPolicies apply to this port; filters run in this order")
        } else {
            "no RBAC filter: no AuthorizationPolicy applies to this port".to_string()
        };
        self.steps.push(step("http_filters", names.join(" → "), why));
    }

    /// Runs the request through the chain's RBAC filters in order, one step each. `Err` is the
    /// refusal (403); `Ok` lists the filters whose verdict depends on what the tracer cannot know.
    fn rbac(&mut self, hcm: &FilterConfig, peer: Peer, ip: Option<IpAddr>) -> Result<Vec<String>, Outcome> {
        let subject = Subject { request: self.req, peer, ip, http: true };
        let mut undecided = Vec::new();
        for (i, f) in hcm.http_filters.iter().enumerate().filter(|(_, f)| f.is_rbac()) {
            let label = format!("#{i} {}", f.name);
            if f.disabled {
                self.steps.push(step("rbac", format!("{label}: disabled"), "disabled unless a route enables it"));
                continue;
            }
            let Some(cfg) = f.rbac() else {
                let why = match f.typed_config.as_ref().and_then(|c| c.unreadable.as_deref()) {
                    Some(e) => format!("its configuration does not parse: {e}"),
                    None if f.config_discovery => "its configuration comes from ECDS, not in the dump".to_string(),
                    None => "it has no RBAC configuration".to_string(),
                };
                self.steps.push(step("rbac", format!("{label}: cannot evaluate"), why.clone()));
                undecided.push(format!("{label}: {why}"));
                continue;
            };
            if let Some(u) = self.rbac_filter(&label, cfg, &subject)? {
                undecided.push(u);
            }
        }
        Ok(undecided)
    }

    /// The chain's network RBAC filters (`envoy.filters.network.rbac`, Istio's AuthorizationPolicies
    /// on TCP ports), before the terminal filter. `Err`: the connection is closed.
    fn network_rbac(&mut self, chain: &FilterChain, peer: Peer, ip: Option<IpAddr>) -> Result<Vec<String>, Outcome> {
        let subject = Subject { request: self.req, peer, ip, http: false };
        let mut undecided = Vec::new();
        for (i, f) in chain.filters.iter().enumerate().filter(|(_, f)| f.is_rbac()) {
            let label = format!("network filter #{i} {}", f.name);
            let cfg = f.typed_config.as_ref();
            let filter = RbacFilter {
                rules: cfg.and_then(|c| c.rules.clone()),
                shadow_rules: cfg.and_then(|c| c.shadow_rules.clone()),
                ..RbacFilter::default()
            };
            if let Some(u) = self.rbac_filter(&label, &filter, &subject)? {
                undecided.push(u);
            }
        }
        Ok(undecided)
    }

    /// One RBAC filter's step. `Err` is the refusal; `Ok(Some)` says why the verdict is open.
    fn rbac_filter(&mut self, label: &str, cfg: &RbacFilter, subject: &Subject<'_>) -> Result<Option<String>, Outcome> {
        let (enforced, shadow) = rbac::filter_decision(cfg, subject);
        let mut s = step(
            "rbac",
            format!("{label} ({}): {}", enforced.action, enforced.describe()),
            rbac_why(&enforced, shadow.as_ref()),
        );
        for d in std::iter::once(&enforced).chain(shadow.as_ref()) {
            for p in &d.policies {
                let prefix = if d.action.starts_with("shadow") { "shadow " } else { "" };
                let name = match rbac::authorization_policy(&p.name) {
                    Some((o, rule)) => {
                        format!("{prefix}{} (AuthorizationPolicy {}/{} rule {rule})", p.name, o.namespace, o.name)
                    }
                    None => format!("{prefix}{}", p.name),
                };
                s.rejected.push(Candidate { name, reason: p.eval.describe() });
                if let Some((o, _)) = rbac::authorization_policy(&p.name)
                    && !s.objects.contains(&o)
                {
                    s.objects.push(o);
                }
            }
        }
        self.steps.push(s);
        match enforced.verdict {
            Verdict::Denied => {
                let by = enforced
                    .policy
                    .as_ref()
                    .map(|p| match rbac::authorization_policy(p) {
                        Some((o, _)) => format!("{p} (AuthorizationPolicy {}/{})", o.namespace, o.name),
                        None => p.clone(),
                    })
                    .map(|p| format!("DENY policy {p} matches"))
                    .unwrap_or_else(|| "no ALLOW policy matches".to_string());
                Err(if subject.http {
                    outcome(
                        "rbac_denied",
                        Some(403),
                        format!(
                            "RBAC filter {label} refuses the request: {by}; Envoy answers 403 (RBAC: access denied)"
                        ),
                    )
                } else {
                    outcome("rbac_denied", None, format!("RBAC {label} refuses the connection: {by}; Envoy closes it"))
                })
            }
            Verdict::Unknown => Ok(Some(format!("{label} {}", enforced.describe()))),
            Verdict::Allowed | Verdict::NotEnforced => Ok(None),
        }
    }

    /// Adds the application port to a forwarded outcome.
    fn delivered(&mut self, mut o: Outcome, port: u16) -> Outcome {
        if let Some(c) = &o.cluster
            && c.starts_with("inbound|")
        {
            let app = c.split('|').nth(1).and_then(|p| p.parse::<u16>().ok()).unwrap_or(port);
            self.steps.push(step("application", format!("port {app}"), format!("{c} delivers to the application")));
            o.summary = format!("{}; the application receives it on port {app}", o.summary);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::{Input, Request, explain};
    use super::Peer;
    use crate::config_dump::ConfigDump;

    fn chain(name: &str, port: u32, transport: &str, alpn: &[&str]) -> serde_json::Value {
        json!({
            "name": name,
            "filter_chain_match": {"destination_port": port, "transport_protocol": transport, "application_protocols": alpn},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "cluster": format!("inbound|{port}||")}}]
        })
    }

    /// virtualInbound with port 8080 STRICT (TLS only) and port 9090 PERMISSIVE (TLS and plaintext).
    fn dump() -> ConfigDump {
        let listener = json!({
            "name": "virtualInbound",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector"}, {"name": "envoy.filters.listener.http_inspector"}],
            "filter_chains": [
                chain("0.0.0.0_8080", 8080, "tls", &["istio", "istio-peer-exchange"]),
                chain("0.0.0.0_9090", 9090, "tls", &["istio", "istio-peer-exchange"]),
                chain("0.0.0.0_9090", 9090, "raw_buffer", &[]),
            ]
        });
        let d = json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "virtualInbound", "active_state": {"listener": listener}}]
        }]});
        ConfigDump::parse(d.to_string().as_bytes()).expect("a valid dump")
    }

    fn kind(port: &str, peer: Peer) -> (String, Option<String>) {
        let d = dump();
        let req = Request::inbound(port, &[], None, None).expect("a valid --inbound");
        let r = explain(&d, Input { request: Some(&req), inbound: Some(peer), ..Default::default() });
        let t = r.trace.expect("a trace");
        (t.outcome.kind, t.outcome.cluster)
    }

    #[test]
    fn strict_port_refuses_plaintext_and_permissive_accepts_it() {
        assert_eq!(kind("8080", Peer::Plaintext).0, "no_filter_chain");
        assert_eq!(kind("8080", Peer::Mtls).1.as_deref(), Some("inbound|8080||"));
        assert_eq!(kind("9090", Peer::Plaintext).1.as_deref(), Some("inbound|9090||"));
        assert_eq!(kind("9090", Peer::Mtls).1.as_deref(), Some("inbound|9090||"));
    }

    /// virtualInbound with one HTTP chain on 8080: a DENY filter (`/admin`), then an ALLOW filter
    /// (GET only), as Istio orders them, then the router to `inbound|8080||`.
    fn rbac_dump() -> ConfigDump {
        let rbac = |action: &str, policies: serde_json::Value| {
            json!({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": action, "policies": policies}}})
        };
        let any = json!([{"and_ids": {"ids": [{"any": true}]}}]);
        let hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "inbound_0.0.0.0_8080",
            "route_config": {"name": "inbound|8080||", "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"],
                "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "inbound|8080||"}}]}]},
            "http_filters": [
                {"name": "istio.metadata_exchange", "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct"}},
                rbac("DENY", json!({"ns[foo]-policy[deny-admin]-rule[0]": {
                    "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/admin"}}}]}}]}}],
                    "principals": any}})),
                rbac("ALLOW", json!({"ns[foo]-policy[allow-get]-rule[0]": {
                    "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}}]}}],
                    "principals": any}})),
                {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
            ]
        });
        let listener = json!({
            "name": "virtualInbound",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector"}, {"name": "envoy.filters.listener.http_inspector"}],
            "filter_chains": [{"name": "0.0.0.0_8080", "filter_chain_match": {"destination_port": 8080, "transport_protocol": "raw_buffer"},
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]
        });
        let d = json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "virtualInbound", "active_state": {"listener": listener}}]
        }]});
        ConfigDump::parse(d.to_string().as_bytes()).expect("a valid dump")
    }

    fn rbac_trace(method: &str, path: &str) -> crate::explain::report::Trace {
        let d = rbac_dump();
        let req = Request::inbound(&format!("8080{path}"), &[], Some(method), None).expect("a valid --inbound");
        let r = explain(&d, Input { request: Some(&req), inbound: Some(Peer::Plaintext), ..Default::default() });
        r.trace.expect("a trace")
    }

    #[test]
    fn rbac_filters_decide_in_filter_order() {
        let t = rbac_trace("GET", "/api");
        assert_eq!(t.outcome.cluster.as_deref(), Some("inbound|8080||"), "{:?}", t.outcome);
        let filters = t.steps.iter().find(|s| s.stage == "http_filters").expect("the http_filters step");
        assert_eq!(
            filters.chosen,
            "istio.metadata_exchange → envoy.filters.http.rbac (DENY 1 policy) → envoy.filters.http.rbac (ALLOW 1 policy) → envoy.filters.http.router"
        );
        let rbac: Vec<&str> = t.steps.iter().filter(|s| s.stage == "rbac").map(|s| s.chosen.as_str()).collect();
        assert_eq!(
            rbac,
            [
                "#1 envoy.filters.http.rbac (DENY): allowed: no DENY policy matches",
                "#2 envoy.filters.http.rbac (ALLOW): allowed by ns[foo]-policy[allow-get]-rule[0]"
            ]
        );
        let allow = t.steps.iter().rfind(|s| s.stage == "rbac").expect("the ALLOW step");
        assert_eq!(allow.objects[0].display(), "AuthorizationPolicy foo/allow-get");
        assert_eq!(
            allow.rejected[0].name,
            "ns[foo]-policy[allow-get]-rule[0] (AuthorizationPolicy foo/allow-get rule 0)"
        );

        // The DENY filter comes first: even a GET is refused on /admin.
        let t = rbac_trace("GET", "/admin/x");
        assert_eq!((t.outcome.kind.as_str(), t.outcome.status), ("rbac_denied", Some(403)));
        assert!(t.outcome.summary.contains("DENY policy ns[foo]-policy[deny-admin]-rule[0]"), "{}", t.outcome.summary);
        assert!(!t.steps.iter().any(|s| s.stage == "route"), "a refused request is not routed");
        // The ALLOW filter refuses what no policy allows.
        let t = rbac_trace("POST", "/api");
        assert_eq!((t.outcome.kind.as_str(), t.outcome.status), ("rbac_denied", Some(403)));
        assert!(t.outcome.summary.contains("no ALLOW policy matches"), "{}", t.outcome.summary);
    }

    #[test]
    fn network_rbac_closes_tcp_connections() {
        // A PERMISSIVE TCP port whose AuthorizationPolicy denies clients without an identity.
        let mut tcp = chain("0.0.0.0_5432", 5432, "raw_buffer", &[]);
        tcp["filters"].as_array_mut().expect("filters").insert(
            0,
            json!({"name": "envoy.filters.network.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                "stat_prefix": "tcp.",
                "rules": {"action": "DENY", "policies": {"ns[db]-policy[mtls-only]-rule[0]": {
                    "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [{"destination_port": 5432}]}}]}}],
                    "principals": [{"and_ids": {"ids": [{"not_id": {"authenticated": {}}}]}}]}}}}}),
        );
        let listener = json!({
            "name": "virtualInbound",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector"}],
            "filter_chains": [chain("0.0.0.0_5432", 5432, "tls", &["istio"]), tcp]
        });
        let d = json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "virtualInbound", "active_state": {"listener": listener}}]}]});
        let d = ConfigDump::parse(d.to_string().as_bytes()).expect("a valid dump");
        let req = Request::inbound("5432", &[], None, None).expect("a valid --inbound");
        let r = explain(&d, Input { request: Some(&req), inbound: Some(Peer::Plaintext), ..Default::default() });
        let t = r.trace.expect("a trace");
        assert_eq!((t.outcome.kind.as_str(), t.outcome.status), ("rbac_denied", None), "{:?}", t.outcome);
        assert!(t.outcome.summary.contains("Envoy closes it"), "{}", t.outcome.summary);
        let step = t.steps.iter().find(|s| s.stage == "rbac").expect("the rbac step");
        assert_eq!(step.objects[0].display(), "AuthorizationPolicy db/mtls-only");
        // The mTLS chain has no RBAC filter: delivered.
        let r = explain(&d, Input { request: Some(&req), inbound: Some(Peer::Mtls), ..Default::default() });
        assert_eq!(r.trace.expect("a trace").outcome.cluster.as_deref(), Some("inbound|5432||"));
    }

    #[test]
    fn bad_inbound_port_names_the_flag() {
        let e = Request::inbound("http/x", &[], None, None).expect_err("not a port");
        assert!(e.to_string().contains("--inbound \"http/x\""), "{e}");
    }
}

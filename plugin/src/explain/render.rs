//! Renders a report as a tree for people; colour (ANSI) only when asked for.

use std::fmt::Write as _;

use super::report::{Action, AddressView, ChainView, ClusterView, Destination, EndpointCheck, Report, Step, Trace};

/// How many rejected candidates a step lists before summarising the rest.
const MAX_REJECTED: usize = 20;

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn ok(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn bad(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn obj(&self, s: &str) -> String {
        self.paint("36", s)
    }
}

/// Renders the report as text; `color` adds ANSI colours.
pub fn render(report: &Report, color: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", st.bold("source:"), report.source);
    if let Some(node) = &report.node {
        let _ = writeln!(out, "{} {node}", st.bold("node:"));
    }
    if let Some(c) = &report.capture {
        let _ = writeln!(out, "{}", st.bold("capture (from istio-init):"));
        let _ = writeln!(
            out,
            "  outbound → {} ({}): include cidrs {}; exclude cidrs {}; always-captured ports {}; excluded ports {}; bypass uid {:?} gid {:?}",
            c.outbound_port,
            c.mode,
            c.outbound_include_cidrs,
            c.outbound_exclude_cidrs,
            c.outbound_include_ports,
            c.outbound_exclude_ports,
            c.bypass_uids,
            c.bypass_gids
        );
        let _ = writeln!(
            out,
            "  inbound → {}: ports {}; excluded ports {}",
            c.inbound_port, c.inbound_include_ports, c.inbound_exclude_ports
        );
    }
    if let Some(t) = &report.trace {
        render_trace(&mut out, &st, t);
    } else {
        let _ = writeln!(out, "{}", st.bold("outbound:"));
        for (li, l) in report.outbound.iter().enumerate() {
            let last = li + 1 == report.outbound.len();
            let _ = writeln!(
                out,
                "{}listener {} {}",
                branch("", last),
                st.bold(&l.name),
                st.dim(&format!("({})", l.address))
            );
            let pad = indent("", last);
            for (ci, c) in l.chains.iter().enumerate() {
                render_chain(&mut out, &st, &pad, c, ci + 1 == l.chains.len());
            }
        }
        let _ = writeln!(out, "{}", st.bold("inbound:"));
        for (pi, p) in report.inbound.iter().enumerate() {
            let last = pi + 1 == report.inbound.len();
            let port = p.port.map(|p| format!("port {p}")).unwrap_or_else(|| "any other port".into());
            let _ = writeln!(out, "{}{} mTLS {}", branch("", last), st.bold(&port), p.mtls);
            let pad = indent("", last);
            for (ci, c) in p.chains.iter().enumerate() {
                render_chain(&mut out, &st, &pad, c, ci + 1 == p.chains.len());
            }
        }
    }
    if !report.endpoint_checks.is_empty() {
        render_endpoint_checks(&mut out, &st, &report.endpoint_checks);
    }
    if !report.problems.is_empty() {
        let _ = writeln!(out, "{}", st.bold("problems reported by Envoy:"));
        for p in &report.problems {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                st.bad("✗"),
                p.kind,
                p.name,
                format!("{:?}", p.state).to_lowercase()
                    + &p.details.as_ref().map(|d| format!(" — {d}")).unwrap_or_default()
            );
        }
    }
    if !report.objects.is_empty() {
        let _ = writeln!(out, "{}", st.bold("objects:"));
        for o in &report.objects {
            let status = match o.status.as_str() {
                // Only some kinds have a generation (Services do not).
                "found" => match o.generation {
                    Some(g) => st.ok(&format!("generation {g}")),
                    None => st.ok("found"),
                },
                "missing" => st.bad("MISSING: the proxy's config is stale"),
                other => st.dim(other),
            };
            let _ = writeln!(out, "  {} {status}", st.obj(&o.object.display()));
        }
    }
    out
}

fn address_list(items: &[AddressView]) -> String {
    items
        .iter()
        .map(|a| match &a.pod {
            Some(p) => format!("{} (pod {p})", a.address),
            None => a.address.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_endpoint_checks(out: &mut String, st: &Style, checks: &[EndpointCheck]) {
    let _ = writeln!(out, "{}", st.bold("endpoints vs Kubernetes:"));
    for c in checks {
        let verdict = match c.status.as_str() {
            "agree" => st.ok(&format!("endpoints agree ({})", c.envoy)),
            "drift" => st.bad(&format!("DRIFT: Envoy has {}, Kubernetes has {} ready", c.envoy, c.kubernetes)),
            other => st.dim(other),
        };
        let _ = writeln!(out, "  {} {verdict}", st.bold(&c.cluster));
        let _ = writeln!(out, "    {} {}", st.dim("from:"), c.source);
        if !c.missing.is_empty() {
            let _ = writeln!(out, "    {} missing from Envoy: {}", st.bad("✗"), address_list(&c.missing));
        }
        if !c.extra.is_empty() {
            let _ = writeln!(out, "    {} not ready in Kubernetes: {}", st.bad("✗"), address_list(&c.extra));
        }
        for e in &c.live {
            let state = if e.ejected {
                st.bad("EJECTED (outlier detection)")
            } else if e.unhealthy {
                st.bad("UNHEALTHY")
            } else {
                st.ok("healthy")
            };
            let flags = if e.flags.is_empty() { String::new() } else { format!(" [{}]", e.flags.join(", ")) };
            let _ = writeln!(out, "    {} {} {state} (EDS {}){flags}", st.dim("live:"), e.address, e.eds_health);
        }
    }
}

fn branch(pad: &str, last: bool) -> String {
    format!("{pad}{}", if last { "└─ " } else { "├─ " })
}

fn indent(pad: &str, last: bool) -> String {
    format!("{pad}{}", if last { "   " } else { "│  " })
}

fn render_chain(out: &mut String, st: &Style, pad: &str, c: &ChainView, last: bool) {
    let cfg = c.config.as_ref().map(|o| format!(" {}", st.obj(&format!("[{}]", o.display())))).unwrap_or_default();
    let dest = match &c.destination {
        Destination::Http(h) => {
            format!("HTTP → route config {}{}", h.route_config, if h.found { "" } else { " (NOT IN DUMP)" })
        }
        Destination::Tcp { .. } => "TCP proxy".to_string(),
        Destination::Other { filters } => format!("filters {}", filters.join(", ")),
    };
    let _ = writeln!(out, "{}chain {} [{}] {dest}{cfg}", branch(pad, last), c.name, c.criteria);
    let pad = indent(pad, last);
    match &c.destination {
        Destination::Http(h) => {
            for (vi, vh) in h.virtual_hosts.iter().enumerate() {
                let vlast = vi + 1 == h.virtual_hosts.len();
                let svc = vh
                    .service
                    .as_ref()
                    .map(|o| format!(" {}", st.obj(&format!("[{}]", o.display()))))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}virtual host {} domains {}{svc}",
                    branch(&pad, vlast),
                    st.bold(&vh.name),
                    vh.domains.join(", ")
                );
                let vpad = indent(&pad, vlast);
                for (ri, r) in vh.routes.iter().enumerate() {
                    let rlast = ri + 1 == vh.routes.len();
                    let name = if r.name.is_empty() { format!("#{ri}") } else { format!("#{ri} {}", r.name) };
                    let vs = r
                        .config
                        .as_ref()
                        .map(|o| format!(" {}", st.obj(&format!("[{}]", o.display()))))
                        .unwrap_or_default();
                    let shadow = r
                        .shadowed_by
                        .map(|j| format!(" {}", st.warn(&format!("(never matches: shadowed by #{j})"))))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{}route {name}: {} → {}{vs}{shadow}",
                        branch(&vpad, rlast),
                        r.criteria,
                        action_text(&r.action)
                    );
                    if let Action::Forward { clusters } = &r.action {
                        let rpad = indent(&vpad, rlast);
                        for (ki, k) in clusters.iter().enumerate() {
                            render_cluster(out, st, &rpad, k, ki + 1 == clusters.len());
                        }
                    }
                }
            }
        }
        Destination::Tcp { clusters } => {
            for (ki, k) in clusters.iter().enumerate() {
                render_cluster(out, st, &pad, k, ki + 1 == clusters.len());
            }
        }
        Destination::Other { .. } => {}
    }
}

fn action_text(a: &Action) -> String {
    match a {
        Action::Forward { clusters } if clusters.len() == 1 => "cluster".to_string(),
        Action::Forward { clusters } => format!("{} weighted clusters", clusters.len()),
        Action::ClusterHeader { header } => format!("cluster named by header {header}"),
        Action::Redirect { to, code } => format!("redirect {code} to {to}"),
        Action::DirectResponse { status, .. } => format!("direct response {status}"),
        Action::None => "no action".to_string(),
    }
}

fn render_cluster(out: &mut String, st: &Style, pad: &str, k: &ClusterView, last: bool) {
    let mut extra = String::new();
    if let (Some(w), Some(s)) = (k.weight, k.share_percent) {
        extra.push_str(&format!(" weight {w} ({s}%)"));
    }
    if let Some(s) = &k.service {
        extra.push_str(&format!(" {}", st.obj(&format!("[{}]", s.display()))));
    }
    if let Some(s) = &k.subset {
        extra.push_str(&format!(" subset {s}"));
    }
    if let Some(d) = &k.destination_rule {
        extra.push_str(&format!(" {}", st.obj(&format!("[{}]", d.display()))));
    }
    if k.found == Some(false) {
        extra.push_str(&format!(" {}", st.bad("(NOT IN DUMP: Envoy answers 503)")));
    } else if !k.endpoints_known && k.discovery_type.as_deref() == Some("EDS") {
        extra.push_str(&format!(" {}", st.dim("(endpoints not in dump)")));
    }
    let _ = writeln!(out, "{}cluster {}{extra}", branch(pad, last), st.bold(&k.name));
    let pad = indent(pad, last);
    for (ei, e) in k.endpoints.iter().enumerate() {
        let health = if e.health == "HEALTHY" { st.ok(&e.health) } else { st.warn(&e.health) };
        let mut line = format!("{} {health}", e.address);
        if !e.locality.is_empty() {
            line.push_str(&format!(" locality {}", e.locality));
        }
        if let Some(w) = e.weight {
            line.push_str(&format!(" weight {w}"));
        }
        if let Some(t) = &e.tls_mode {
            line.push_str(&format!(" tlsMode {t}"));
        }
        if let Some(w) = &e.workload {
            line.push_str(&format!(" {}", st.obj(&format!("[workload {}/{}]", w.namespace, w.name))));
        }
        let _ = writeln!(out, "{}{line}", branch(&pad, ei + 1 == k.endpoints.len()));
    }
}

fn render_step(out: &mut String, st: &Style, n: usize, s: &Step) {
    let _ = writeln!(out, "{:>2}. {:<13} {}", n, s.stage, st.ok(&s.chosen));
    let _ = writeln!(out, "    {} {}", st.dim("why:"), s.why);
    for o in &s.objects {
        let _ = writeln!(out, "    {} {}", st.dim("from:"), st.obj(&o.display()));
    }
    for c in s.rejected.iter().take(MAX_REJECTED) {
        // RBAC steps list every policy: the ones that match, and the ones the tracer cannot decide.
        let mark = if c.reason == "matches" {
            st.ok("✓")
        } else if c.reason.starts_with("cannot evaluate") {
            st.warn("?")
        } else {
            st.bad("✗")
        };
        let _ = writeln!(out, "    {mark} {}: {}", c.name, c.reason);
    }
    if s.rejected.len() > MAX_REJECTED {
        let _ = writeln!(out, "    {} {} more (see -o json)", st.bad("✗"), s.rejected.len() - MAX_REJECTED);
    }
}

fn render_trace(out: &mut String, st: &Style, t: &Trace) {
    let r = &t.request;
    let mut line = format!("{} {} http://{}{}", st.bold("request:"), r.method, r.authority, r.path);
    if r.authority != format!("{}:{}", r.host, r.port) && r.port != 80 {
        line.push_str(&format!(" to port {}", r.port));
    }
    for (k, v) in &r.headers {
        line.push_str(&format!(" -H '{k}: {v}'"));
    }
    if let Some(s) = &r.sni {
        line.push_str(&format!(" (TLS, SNI {s})"));
    }
    let _ = writeln!(out, "{line}");
    for (i, s) in t.steps.iter().enumerate() {
        render_step(out, st, i + 1, s);
    }
    let status = t.outcome.status.map(|s| format!(" [{s}]")).unwrap_or_default();
    let summary = if t.outcome.status.is_some_and(|s| s >= 400)
        || t.outcome.kind.starts_with("no_")
        || t.outcome.kind == "not_captured"
    {
        st.bad(&format!("{}{status}", t.outcome.summary))
    } else {
        st.ok(&format!("{}{status}", t.outcome.summary))
    };
    let _ = writeln!(out, "{} {summary}", st.bold("outcome:"));
    for (ki, k) in t.outcome.clusters.iter().enumerate() {
        render_cluster(out, st, "  ", k, ki + 1 == t.outcome.clusters.len());
    }
    if !t.shadowed_routes.is_empty() {
        let _ = writeln!(out, "{}", st.bold("routes that can never match:"));
        for s in &t.shadowed_routes {
            let _ = writeln!(out, "  {} route {} is shadowed by route {}", st.warn("!"), s.route, s.by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_dump::ConfigDump;
    use crate::explain::{Input, Request, explain};

    #[test]
    fn colour_only_when_asked() {
        let dump = ConfigDump::parse(
            br#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","static_listeners":[{"listener":{
              "name":"l","address":{"socket_address":{"address":"127.0.0.1","port_value":80}},
              "filter_chains":[{"filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{
                "@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "route_config":{"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
                  {"match":{"prefix":"/"},"direct_response":{"status":200}},
                  {"match":{"prefix":"/a"},"route":{"cluster":"c"}}]}]}}}]}]}}]}]}"#,
        )
        .unwrap();
        let req = Request::parse("127.0.0.1/a", &[], None, None).unwrap();
        let report = explain(&dump, Input { request: Some(&req), ..Default::default() });
        let plain = render(&report, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("direct response 200"), "{plain}");
        assert!(plain.contains("route #1 is shadowed by route #0"), "{plain}");
        assert!(render(&report, true).contains("\x1b[32m"));
    }
}

//! The HTTP steps: route configuration, virtual host (domains, with or without the port), the first
//! matching route (noting routes shadowed by earlier ones), and the route's action.

use super::super::matcher::{
    DomainMatch, host_for_matching, pick_weighted, route_matches, select_virtual_host, strip_host_port,
    why_not_virtual_host,
};
use super::super::report::{Action, Candidate, Outcome, Shadowed};
use super::super::views::{self, action_clusters, cluster_view, config_ref, route_config_of, shadowing, vhost_service};
use super::{Tracer, outcome, route_label, step};
use crate::config_dump::Route;
use crate::config_dump::listener::FilterConfig;
use crate::config_dump::route::{RouteAction, RouteConfiguration, VirtualHost};

/// Envoy's status for a redirect's `response_code`.
fn redirect_status(code: Option<&str>) -> u32 {
    match code.unwrap_or("MOVED_PERMANENTLY") {
        "FOUND" => 302,
        "SEE_OTHER" => 303,
        "TEMPORARY_REDIRECT" => 307,
        "PERMANENT_REDIRECT" => 308,
        _ => 301,
    }
}

impl<'a> Tracer<'a, '_> {
    /// Follows the request through the HTTP connection manager `hcm` to its outcome.
    pub(super) fn http(&mut self, hcm: &'a FilterConfig) -> Outcome {
        let rc = match self.route_config(hcm) {
            Ok(rc) => rc,
            Err(o) => return o,
        };
        let vh = match self.virtual_host(hcm, rc) {
            Ok(vh) => vh,
            Err(o) => return o,
        };
        let route = match self.route(vh) {
            Ok(r) => r,
            Err(o) => return o,
        };
        self.action(route)
    }

    /// The route configuration the connection manager names (RDS) or carries inline.
    fn route_config(&mut self, hcm: &'a FilterConfig) -> Result<&'a RouteConfiguration, Outcome> {
        let (rc_name, rc) = route_config_of(self.index, hcm);
        let Some(rc) = rc else {
            self.steps.push(step("route_config", rc_name.clone(), "not in the dump: RDS has not delivered it"));
            return Err(outcome(
                "no_route_config",
                Some(404),
                format!("route configuration {rc_name} is missing; Envoy answers 404"),
            ));
        };
        self.steps.push(step(
            "route_config",
            rc_name.clone(),
            if hcm.rds.is_some() {
                "from RDS, named by the HTTP connection manager"
            } else {
                "inline in the HTTP connection manager"
            },
        ));
        Ok(rc)
    }

    /// The virtual host whose domains match the request's authority.
    fn virtual_host(&mut self, hcm: &FilterConfig, rc: &'a RouteConfiguration) -> Result<&'a VirtualHost, Outcome> {
        let req = self.req;
        let strip = rc.ignore_port_in_host_matching
            || hcm.strip_any_host_port
            || hcm.strip_matching_host_port
                && strip_host_port(&req.authority) != req.authority
                && req.authority.ends_with(&format!(":{}", req.port));
        let host = host_for_matching(&req.authority, strip);
        let Some((vi, vh, how, domain)) = select_virtual_host(&rc.virtual_hosts, &host) else {
            let mut s = step(
                "virtual_host",
                "none",
                format!("no domain of {} virtual hosts matches {host:?}", rc.virtual_hosts.len()),
            );
            s.rejected = rc
                .virtual_hosts
                .iter()
                .take(50)
                .map(|v| Candidate { name: v.name.clone(), reason: why_not_virtual_host(v, &host, None) })
                .collect();
            self.steps.push(s);
            return Err(outcome(
                "no_virtual_host",
                Some(404),
                format!("no virtual host for {host:?}; Envoy answers 404 (NR)"),
            ));
        };
        let how_text = match how {
            DomainMatch::Exact => "exact domain",
            DomainMatch::Suffix => "longest suffix wildcard",
            DomainMatch::Prefix => "longest prefix wildcard",
            DomainMatch::Any => "the catch-all",
        };
        let mut s = step(
            "virtual_host",
            vh.name.clone(),
            format!("{how_text} {domain:?} matches host {host:?}{}", if strip { " (port ignored)" } else { "" }),
        );
        let mut others = 0usize;
        for (i, v) in rc.virtual_hosts.iter().enumerate() {
            if i == vi {
                continue;
            }
            let reason = why_not_virtual_host(v, &host, Some(how));
            if reason.starts_with("no domain matches") {
                others += 1;
            } else {
                s.rejected.push(Candidate { name: v.name.clone(), reason });
            }
        }
        if others > 0 {
            s.rejected.push(Candidate {
                name: format!("{others} other virtual hosts"),
                reason: format!("no domain matches {host:?}"),
            });
        }
        s.objects.extend(vhost_service(vh));
        self.steps.push(s);
        Ok(vh)
    }

    /// The first route of `vh` that matches; records the routes that earlier ones shadow.
    fn route(&mut self, vh: &'a VirtualHost) -> Result<&'a Route, Outcome> {
        let shadow = shadowing(&vh.routes);
        for (i, by) in shadow.iter().enumerate() {
            if let Some(j) = by {
                self.shadowed
                    .push(Shadowed { route: route_label(i, &vh.routes[i]), by: route_label(*j, &vh.routes[*j]) });
            }
        }
        let mut rejected = Vec::new();
        let mut chosen = None;
        for (i, r) in vh.routes.iter().enumerate() {
            match route_matches(&r.matcher, self.req) {
                Ok(()) => {
                    chosen = Some((i, r));
                    break;
                }
                Err(reason) => rejected.push(Candidate { name: route_label(i, r), reason }),
            }
        }
        let Some((ri, route)) = chosen else {
            let mut s = step("route", "none", format!("none of the {} routes matches", vh.routes.len()));
            s.rejected = rejected;
            self.steps.push(s);
            return Err(outcome("no_route", Some(404), "no route matches; Envoy answers 404 (NR)".to_string()));
        };
        let mut s = step(
            "route",
            route_label(ri, route),
            format!("first route that matches: {}", super::super::matcher::describe_match(&route.matcher)),
        );
        s.rejected = rejected;
        s.objects.extend(config_ref(route.metadata.as_ref()));
        self.steps.push(s);
        Ok(route)
    }

    /// The route's action: forward (one cluster, weighted, or from a header), redirect or answer.
    fn action(&mut self, route: &'a Route) -> Outcome {
        if let Some(a) = &route.route {
            return self.forward(a);
        }
        if let Some(red) = &route.redirect {
            let code = redirect_status(red.response_code.as_deref());
            let to = match views::action(self.index, route) {
                Action::Redirect { to, .. } => to,
                _ => String::new(),
            };
            self.steps.push(step("action", format!("redirect {code}"), format!("to {to}")));
            return outcome("redirect", Some(code), format!("Envoy answers {code}, redirecting to {to}"));
        }
        if let Some(d) = &route.direct_response {
            let status = d.status.unwrap_or(0);
            self.steps.push(step("action", format!("direct response {status}"), "Envoy answers itself"));
            return outcome("direct_response", Some(status), format!("Envoy answers {status} itself"));
        }
        outcome("no_action", Some(404), "the route has no action".to_string())
    }

    /// A forwarding action: the cluster from a header, else the cluster(s) named, with the weighted
    /// pick when it is determined.
    fn forward(&mut self, a: &RouteAction) -> Outcome {
        let req = self.req;
        if let Some(h) = &a.cluster_header {
            let name = req.header(&h.to_ascii_lowercase());
            self.steps.push(step("action", format!("cluster from header {h}"), format!("header value {name:?}")));
            return match name {
                Some(n) => self.finish_clusters(vec![cluster_view(self.index, &n, None, None)], None, "cluster_header"),
                None => outcome("cluster_header", Some(503), format!("header {h} is missing; Envoy answers 503 (NC)")),
            };
        }
        let clusters = action_clusters(self.index, a);
        let picked = a.weighted_clusters.as_ref().and_then(|w| {
            let weights: Vec<u32> = w.clusters.iter().map(|c| c.weight.unwrap_or(0)).collect();
            let nonzero: Vec<usize> = weights.iter().enumerate().filter(|(_, w)| **w > 0).map(|(i, _)| i).collect();
            if let [only] = nonzero.as_slice() {
                return Some((*only, "the only cluster with a non-zero weight".to_string()));
            }
            let header = w.header_name.as_deref()?;
            let value: u64 = req.header(&header.to_ascii_lowercase())?.trim().parse().ok()?;
            let (i, total) = pick_weighted(&weights, w.total_weight, value)?;
            Some((i, format!("header {header}: {value} % {total} = {} falls in its range", value % total)))
        });
        self.finish_clusters(clusters, picked, "route")
    }
}

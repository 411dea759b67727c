//! The listener step: after capture, virtualOutbound hands the connection to the listener bound to
//! its original destination (exact address, then the wildcard), or keeps it on its own chains.

use std::net::IpAddr;

use super::super::report::{Candidate, Step};
use super::{Tracer, step};
use crate::config_dump::{ConfigDump, Listener, ResourceState};

fn is_wildcard(address: &str) -> bool {
    address == "0.0.0.0" || address == "::"
}

/// The listeners Envoy is serving (static or active).
pub(super) fn serving(dump: &ConfigDump) -> impl Iterator<Item = &Listener> {
    dump.listeners
        .iter()
        .filter(|r| matches!(r.state, ResourceState::Static | ResourceState::Active))
        .filter_map(|r| r.config.as_ref())
}

/// Why a listener on the port lost to the chosen one.
fn why_not(l: &Listener, ip_text: Option<&str>, exact_found: bool, port: u32) -> String {
    let (a, _) = l.socket_address().unwrap_or(("?", 0));
    match ip_text {
        Some(i) if exact_found && is_wildcard(a) => format!("the exact listener for {i}:{port} wins over the wildcard"),
        Some(i) => format!("address {a} is not {i}"),
        None => format!("address {a}: the destination IP is unknown"),
    }
}

impl<'a> Tracer<'a, '_> {
    /// Picks the listener for the original destination `ip:port` and builds its step.
    pub(super) fn select_listener(
        &mut self,
        dump: &'a ConfigDump,
        virtual_outbound: Option<&'a Listener>,
        ip: Option<IpAddr>,
    ) -> Option<(&'a Listener, Step)> {
        let port = u32::from(self.req.port);
        let on_port: Vec<&Listener> = serving(dump)
            .filter(|l| l.use_original_dst != Some(true) && l.socket_address().is_some_and(|(_, p)| p == port))
            .collect();
        let ip_text = ip.map(|i| i.to_string());
        let exact =
            on_port.iter().copied().find(|l| l.socket_address().is_some_and(|(a, _)| Some(a) == ip_text.as_deref()));
        let wildcard = on_port.iter().copied().find(|l| l.socket_address().is_some_and(|(a, _)| is_wildcard(a)));
        let chosen_name = exact.or(wildcard).map(|l| l.name.as_str());
        let rejected: Vec<Candidate> = on_port
            .iter()
            .filter(|l| Some(l.name.as_str()) != chosen_name)
            .map(|l| Candidate { name: l.name.clone(), reason: why_not(l, ip_text.as_deref(), exact.is_some(), port) })
            .collect();
        let via = match virtual_outbound {
            Some(vo) => format!("{} hands the connection to the listener of its original destination: ", vo.name),
            None => String::new(),
        };
        let chosen = if let Some(l) = exact {
            Some((l, format!("{via}exact address {}:{port}", ip_text.clone().unwrap_or_default())))
        } else if let Some(l) = wildcard {
            Some((
                l,
                format!(
                    "{via}no listener for {}:{port}, so the wildcard 0.0.0.0:{port}",
                    ip_text.clone().unwrap_or_else(|| "the destination IP".into())
                ),
            ))
        } else {
            virtual_outbound
                .map(|vo| (vo, format!("no listener for port {port}; {} handles it with its own chains", vo.name)))
        };
        chosen.map(|(l, why)| {
            let mut s = step("listener", l.name.clone(), why);
            s.rejected = rejected;
            (l, s)
        })
    }
}

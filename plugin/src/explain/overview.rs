//! The whole-pod view: capture, outbound listeners and their chains down to endpoints, inbound
//! ports of `virtualInbound` with their mTLS mode.

use std::collections::BTreeMap;

use mesh_core::CaptureConfig;
use mesh_core::capture::{CidrList, PortList};

use super::report::{CaptureView, ChainView, InboundPort, ListenerView};
use super::views::chain_view;
use crate::config_dump::{ConfigDump, Index, Listener};

/// The capture settings in words.
pub fn capture_view(cfg: &CaptureConfig) -> CaptureView {
    let cidrs = |c: &Option<CidrList>, none: &str| match c {
        Some(CidrList::All) => "*".to_string(),
        Some(CidrList::List(l)) if !l.is_empty() => l.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        _ => none.to_string(),
    };
    let ports = |p: &Option<PortList>, none: &str| match p {
        Some(PortList::All) => "*".to_string(),
        Some(PortList::List(l)) if !l.is_empty() => l.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
        _ => none.to_string(),
    };
    CaptureView {
        outbound_port: cfg.effective_proxy_port(),
        inbound_port: cfg.effective_inbound_capture_port(),
        mode: cfg.effective_interception_mode().to_string(),
        outbound_include_cidrs: cidrs(&cfg.outbound_ip_ranges_include, "none"),
        outbound_exclude_cidrs: cidrs(&cfg.outbound_ip_ranges_exclude, "none"),
        outbound_include_ports: ports(&cfg.outbound_ports_include, "none"),
        outbound_exclude_ports: ports(&cfg.outbound_ports_exclude, "none"),
        bypass_uids: cfg.effective_proxy_uids(),
        bypass_gids: cfg.effective_proxy_gids(),
        inbound_include_ports: ports(&cfg.inbound_ports_include, "none"),
        inbound_exclude_ports: ports(&cfg.inbound_ports_exclude, "none"),
    }
}

fn is_inbound(l: &Listener) -> bool {
    l.name == "virtualInbound" || l.traffic_direction.as_deref() == Some("INBOUND")
}

fn listener_view(index: &Index<'_>, l: &Listener) -> ListenerView {
    let mut chains: Vec<ChainView> =
        l.filter_chains.iter().enumerate().map(|(i, c)| chain_view(index, &format!("#{i}"), c)).collect();
    if let Some(d) = &l.default_filter_chain {
        chains.push(chain_view(index, "default_filter_chain", d));
    }
    ListenerView { name: l.name.clone(), address: l.address.as_ref().map(|a| a.display()).unwrap_or_default(), chains }
}

/// The outbound listeners (everything but inbound ones), in dump order.
pub fn outbound(dump: &ConfigDump, index: &Index<'_>) -> Vec<ListenerView> {
    usable_listeners(dump).filter(|l| !is_inbound(l)).map(|l| listener_view(index, l)).collect()
}

fn usable_listeners(dump: &ConfigDump) -> impl Iterator<Item = &Listener> {
    dump.listeners
        .iter()
        .filter(|r| {
            matches!(r.state, crate::config_dump::ResourceState::Static | crate::config_dump::ResourceState::Active)
        })
        .filter_map(|r| r.config.as_ref())
}

/// The inbound chains grouped by destination port, with the effective mTLS mode of each port.
pub fn inbound(dump: &ConfigDump, index: &Index<'_>) -> Vec<InboundPort> {
    let mut ports: BTreeMap<Option<u32>, (Vec<ChainView>, bool, bool)> = BTreeMap::new();
    for l in usable_listeners(dump).filter(|l| is_inbound(l)) {
        let listener_port = if l.name == "virtualInbound" { None } else { l.socket_address().map(|(_, p)| p) };
        for (i, c) in l.filter_chains.iter().enumerate() {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            let port = m.destination_port.or(listener_port);
            let entry = ports.entry(port).or_default();
            let tls = m.transport_protocol == "tls" || c.transport_socket.is_some();
            if tls {
                entry.1 = true;
            } else {
                entry.2 = true;
            }
            entry.0.push(chain_view(index, &format!("{} #{i}", l.name), c));
        }
    }
    ports
        .into_iter()
        .map(|(port, (chains, tls, plain))| InboundPort {
            port,
            mtls: match (tls, plain) {
                (true, true) => "PERMISSIVE",
                (true, false) => "STRICT",
                _ => "DISABLE",
            }
            .to_string(),
            chains,
        })
        .collect()
}

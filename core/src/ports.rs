//! Well-known ports and identities of the sidecar data plane, as Istio defines them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Envoy's admin API (bound to localhost in the sidecar).
pub const ENVOY_ADMIN: u16 = 15000;
/// Outbound capture: iptables redirects the app's outbound TCP here (`virtualOutbound`).
pub const OUTBOUND_CAPTURE: u16 = 15001;
/// Port that istio-iptables' validation mode dials (`--iptables-probe-port`).
pub const IPTABLES_PROBE: u16 = 15002;
/// Inbound capture: iptables redirects inbound TCP here (`virtualInbound`).
pub const INBOUND_CAPTURE: u16 = 15006;
/// HBONE / tunnel port, never captured inbound.
pub const TUNNEL: u16 = 15008;
/// istiod's plaintext xDS port (debug types are served here too).
pub const ISTIOD_XDS_PLAINTEXT: u16 = 15010;
/// istiod's HTTP monitoring and debug port (`/debug/syncz`).
pub const ISTIOD_HTTP_DEBUG: u16 = 15014;
/// The default port of the injection webhook's HTTPS server.
pub const WEBHOOK_HTTPS: u16 = 15017;
/// Pilot agent: status, application health rewrites (`/app-health/...`) and merged metrics.
pub const AGENT_STATUS: u16 = 15020;
/// Sidecar health (`/healthz/ready`).
pub const HEALTH: u16 = 15021;
/// Envoy's Prometheus endpoint (`/stats/prometheus`).
pub const ENVOY_PROMETHEUS: u16 = 15090;
/// The DNS proxy port of the agent, used when DNS capture is on.
pub const DNS_PROXY: u16 = 15053;

/// The UID the proxy runs as; its traffic is never captured.
pub const PROXY_UID: u32 = 1337;
/// The GID the proxy runs as; its traffic is never captured.
pub const PROXY_GID: u32 = 1337;

/// Source address Envoy uses for inbound passthrough connections to the app (IPv4).
pub const INBOUND_PASSTHROUGH_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
/// Source address Envoy uses for inbound passthrough connections to the app (IPv6, `::6`).
pub const INBOUND_PASSTHROUGH_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);

/// The inbound ports that the injector always excludes from capture (`-d 15090,15021,...`).
pub const DEFAULT_EXCLUDED_INBOUND: [u16; 2] = [ENVOY_PROMETHEUS, HEALTH];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_match_istio() {
        assert_eq!(ENVOY_ADMIN, 15000);
        assert_eq!(OUTBOUND_CAPTURE, 15001);
        assert_eq!(INBOUND_CAPTURE, 15006);
        assert_eq!(TUNNEL, 15008);
        assert_eq!(AGENT_STATUS, 15020);
        assert_eq!(HEALTH, 15021);
        assert_eq!(ENVOY_PROMETHEUS, 15090);
        assert_eq!((PROXY_UID, PROXY_GID), (1337, 1337));
    }

    #[test]
    fn passthrough_sources() {
        assert_eq!(INBOUND_PASSTHROUGH_V4.to_string(), "127.0.0.6");
        assert_eq!(INBOUND_PASSTHROUGH_V6.to_string(), "::6");
    }
}

//! The typed values of capture settings: CIDRs, port lists, the interception mode and durations.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// An address with a prefix length, kept as written (`10.96.0.2/24` is not masked to `10.96.0.0/24`,
/// because istio-iptables passes it on as given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as written.
    pub addr: IpAddr,
    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies inside this range (always false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `ADDR/LEN`; a bare address means a single host (`/32` or `/128`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CIDR");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p)),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// A list of CIDRs, or `*` for every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrList {
    /// `*`: every address.
    All,
    /// These ranges (possibly none).
    List(Vec<Cidr>),
}

impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrList::All => f.write_str("*"),
            CidrList::List(l) => f.write_str(&l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl FromStr for CidrList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(CidrList::All);
        }
        super::split_list(s).iter().map(|c| c.parse()).collect::<Result<_, _>>().map(CidrList::List)
    }
}

/// A list of ports, or `*` for every port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortList {
    /// `*`: every port.
    All,
    /// These ports (possibly none).
    List(Vec<u16>),
}

impl PortList {
    /// Whether the list is `*` or names `port`.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortList::All => true,
            PortList::List(l) => l.contains(&port),
        }
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortList::All => f.write_str("*"),
            PortList::List(l) => f.write_str(&l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        }
    }
}

impl FromStr for PortList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(PortList::All);
        }
        super::split_list(s).iter().map(|p| super::parse_port(p)).collect::<Result<_, _>>().map(PortList::List)
    }
}

/// How inbound traffic is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterceptionMode {
    /// NAT REDIRECT: the app sees Envoy's address as the source.
    Redirect,
    /// TPROXY: the original source is kept (marks, a routing table and connmark).
    Tproxy,
    /// No capture at all: the injector adds no init container.
    None,
}

impl fmt::Display for InterceptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InterceptionMode::Redirect => "REDIRECT",
            InterceptionMode::Tproxy => "TPROXY",
            InterceptionMode::None => "NONE",
        })
    }
}

impl FromStr for InterceptionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "REDIRECT" => Ok(InterceptionMode::Redirect),
            "TPROXY" => Ok(InterceptionMode::Tproxy),
            "NONE" => Ok(InterceptionMode::None),
            other => Err(format!("{other:?} is not an interception mode (REDIRECT, TPROXY or NONE)")),
        }
    }
}

/// Parses a Go duration such as `5s`, `500ms`, `1m30s` or `1.5h` (Go's grammar, [`crate::duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Formats a duration the way Go prints simple ones: `5s`, `500ms`, `1m30s`.
pub fn format_duration(d: Duration) -> String {
    crate::duration::format(d)
}

//! What the rules are made of: tables, chains, families, positions, the rule in both syntaxes,
//! the rule set of a pod, and the pod facts and errors that building it depends on.

use std::fmt;

/// Facts about the pod that istio-iptables derives instead of taking as flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Whether IPv6 rules are programmed (from the namespace's interface addresses).
    pub ipv6: bool,
    /// IPv4 DNS servers (from `/etc/resolv.conf`), used when DNS capture is on.
    pub dns_servers_v4: Vec<String>,
    /// IPv6 DNS servers (from `/etc/resolv.conf`), used when DNS capture is on.
    pub dns_servers_v6: Vec<String>,
}

/// A netfilter table mesh-init writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `mangle` (TPROXY marks, drop-invalid); nft table `istio-proxy-mangle`.
    Mangle,
    /// `nat` (REDIRECT); nft table `istio-proxy-nat`.
    Nat,
    /// `raw` (DNS conntrack zones); nft table `istio-proxy-raw`.
    Raw,
}

impl Table {
    /// Every table, in iptables-restore order (sorted by name).
    pub const ALL: [Table; 3] = [Table::Mangle, Table::Nat, Table::Raw];

    /// The iptables table name.
    pub fn iptables_name(self) -> &'static str {
        match self {
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Raw => "raw",
        }
    }

    /// The nftables (inet family) table name.
    pub fn nft_name(self) -> &'static str {
        match self {
            Table::Mangle => "istio-proxy-mangle",
            Table::Nat => "istio-proxy-nat",
            Table::Raw => "istio-proxy-raw",
        }
    }
}

/// A chain, built-in (hooked) or one of Istio's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chain {
    /// Built-in `PREROUTING` (nft base chain `prerouting`).
    Prerouting,
    /// Built-in `OUTPUT` (nft base chain `output`).
    Output,
    /// `ISTIO_DROP`: drops conntrack-INVALID packets.
    Drop,
    /// `ISTIO_DIVERT`: marks TPROXY packets of established connections.
    Divert,
    /// `ISTIO_TPROXY`: TPROXY to the inbound capture port.
    Tproxy,
    /// `ISTIO_INBOUND`: inbound capture decisions (and DNS zones in raw).
    Inbound,
    /// `ISTIO_REDIRECT`: REDIRECT to the outbound capture port.
    Redirect,
    /// `ISTIO_IN_REDIRECT`: REDIRECT to the inbound capture port.
    InRedirect,
    /// `ISTIO_OUTPUT`: outbound capture decisions.
    IstioOutput,
    /// `ISTIO_OUTPUT_DNS`: DNS redirection and conntrack zones.
    OutputDns,
}

impl Chain {
    /// Every chain, built-in ones first (the order nft declares them in).
    pub const ALL: [Chain; 10] = [
        Chain::Prerouting,
        Chain::Output,
        Chain::Drop,
        Chain::Divert,
        Chain::Tproxy,
        Chain::Inbound,
        Chain::Redirect,
        Chain::InRedirect,
        Chain::IstioOutput,
        Chain::OutputDns,
    ];

    /// The iptables chain name.
    pub fn iptables_name(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Output => "OUTPUT",
            Chain::Drop => "ISTIO_DROP",
            Chain::Divert => "ISTIO_DIVERT",
            Chain::Tproxy => "ISTIO_TPROXY",
            Chain::Inbound => "ISTIO_INBOUND",
            Chain::Redirect => "ISTIO_REDIRECT",
            Chain::InRedirect => "ISTIO_IN_REDIRECT",
            Chain::IstioOutput => "ISTIO_OUTPUT",
            Chain::OutputDns => "ISTIO_OUTPUT_DNS",
        }
    }

    /// The nftables chain name.
    pub fn nft_name(self) -> &'static str {
        match self {
            Chain::Prerouting => "prerouting",
            Chain::Output => "output",
            Chain::Drop => "istio-drop",
            Chain::Divert => "istio-divert",
            Chain::Tproxy => "istio-tproxy",
            Chain::Inbound => "istio-inbound",
            Chain::Redirect => "istio-redirect",
            Chain::InRedirect => "istio-in-redirect",
            Chain::IstioOutput => "istio-output",
            Chain::OutputDns => "istio-output-dns",
        }
    }

    /// Whether the chain is a built-in (hooked) one, which mesh-init never creates or deletes.
    pub fn is_builtin(self) -> bool {
        matches!(self, Chain::Prerouting | Chain::Output)
    }
}

/// Which address family a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`iptables`, nft `ip`).
    V4,
    /// IPv6 (`ip6tables`, nft `ip6`).
    V6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At the end (`-A`, `add rule`).
    Append,
    /// At this 1-based position (`-I CHAIN n`, `insert rule ... index n-1`).
    Insert(u32),
}

/// One capture rule, in both syntaxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The table it lives in.
    pub table: Table,
    /// The chain it lives in.
    pub chain: Chain,
    /// `None` for both families, else only this one.
    pub family: Option<Family>,
    /// Append or insert.
    pub position: Position,
    /// The iptables rule specification (what follows `-A CHAIN`).
    pub iptables: Vec<String>,
    /// The nftables rule body (what follows `add rule inet TABLE CHAIN`).
    pub nft: String,
}

impl Rule {
    /// Whether the rule applies to `family`.
    pub fn applies_to(&self, family: Family) -> bool {
        self.family.is_none_or(|f| f == family)
    }
}

/// Settings that cannot be turned into rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A setting whose value istio-iptables rejects too.
    #[error("invalid value for {setting}: {value:?}: {reason}")]
    Invalid {
        /// The flag and environment variable.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong and what to use instead.
        reason: &'static str,
    },
}

/// The rendered rule list of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Every rule, in Istio's order.
    pub rules: Vec<Rule>,
    /// Whether IPv6 rules are programmed.
    pub ipv6: bool,
}

impl RuleSet {
    /// The rules of one family, in order.
    pub fn for_family(&self, family: Family) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.applies_to(family))
    }

    /// The families rules are programmed for: IPv4, and IPv6 when enabled.
    pub fn families(&self) -> Vec<Family> {
        if self.ipv6 { vec![Family::V4, Family::V6] } else { vec![Family::V4] }
    }
}

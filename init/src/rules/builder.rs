//! The rule builder and the list helpers the rule steps share.

use mesh_core::capture::{Cidr, CidrList, PortList};

use super::{Chain, Family, Position, Rule, RulesError, Table};

/// Builds rules in order; `ipt` arguments are space-separated tokens.
pub(super) struct Builder {
    pub(super) rules: Vec<Rule>,
}

impl Builder {
    pub(super) fn push(
        &mut self,
        family: Option<Family>,
        table: Table,
        chain: Chain,
        position: Position,
        ipt: &str,
        nft: &str,
    ) {
        self.rules.push(Rule {
            table,
            chain,
            family,
            position,
            iptables: ipt.split_whitespace().map(str::to_owned).collect(),
            nft: nft.to_owned(),
        });
    }

    pub(super) fn append(&mut self, table: Table, chain: Chain, ipt: &str, nft: &str) {
        self.push(None, table, chain, Position::Append, ipt, nft);
    }

    pub(super) fn append_v(&mut self, family: Family, table: Table, chain: Chain, ipt: &str, nft: &str) {
        self.push(Some(family), table, chain, Position::Append, ipt, nft);
    }

    pub(super) fn insert(&mut self, table: Table, chain: Chain, pos: u32, ipt: &str, nft: &str) {
        self.push(None, table, chain, Position::Insert(pos), ipt, nft);
    }

    pub(super) fn insert_v(&mut self, family: Family, table: Table, chain: Chain, pos: u32, ipt: &str, nft: &str) {
        self.push(Some(family), table, chain, Position::Insert(pos), ipt, nft);
    }

    /// A rule written once per family; `f` gets the family's loopback-ish value and nft address keyword.
    pub(super) fn versioned(
        &mut self,
        v4: &str,
        v6: &str,
        table: Table,
        chain: Chain,
        f: impl Fn(&str, &str) -> (String, String),
    ) {
        let (ipt, nft) = f(v4, "ip");
        self.append_v(Family::V4, table, chain, &ipt, &nft);
        let (ipt, nft) = f(v6, "ip6");
        self.append_v(Family::V6, table, chain, &ipt, &nft);
    }
}

/// CIDRs of one list, split by family (`*` is a wildcard for both).
pub(super) struct Ranges {
    pub(super) wildcard: bool,
    pub(super) v4: Vec<Cidr>,
    pub(super) v6: Vec<Cidr>,
}

impl Ranges {
    /// Whether a range's address is a loopback one (127.0.0.0/8, ::1), Istio's `HasLoopBackIP`.
    pub(super) fn has_loopback(&self) -> bool {
        self.v4.iter().chain(&self.v6).any(|c| c.addr.is_loopback())
    }
}

pub(super) fn split_ranges(list: Option<&CidrList>) -> Ranges {
    match list {
        Some(CidrList::All) => Ranges { wildcard: true, v4: vec![], v6: vec![] },
        Some(CidrList::List(l)) => Ranges {
            wildcard: false,
            v4: l.iter().filter(|c| c.addr.is_ipv4()).copied().collect(),
            v6: l.iter().filter(|c| c.addr.is_ipv6()).copied().collect(),
        },
        None => Ranges { wildcard: false, v4: vec![], v6: vec![] },
    }
}

pub(super) fn port_list(
    list: Option<&PortList>,
    setting: &'static str,
    allow_wildcard: bool,
) -> Result<Option<PortList>, RulesError> {
    match list {
        Some(PortList::All) if !allow_wildcard => {
            Err(RulesError::Invalid { setting, value: "*".into(), reason: "\"*\" is not allowed here; list the ports" })
        }
        Some(l) => Ok(Some(l.clone())),
        None => Ok(None),
    }
}

pub(super) fn ports_of(list: &Option<PortList>) -> Vec<u16> {
    match list {
        Some(PortList::List(l)) => l.clone(),
        _ => vec![],
    }
}

//! The nftables transaction: inet tables `istio-proxy-nat`, `istio-proxy-mangle` and
//! `istio-proxy-raw`, each added and flushed first so that applying it twice gives the same state.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Chain, Position, RuleSet, Table};

/// The order nft tables are written in.
const TABLE_ORDER: [Table; 3] = [Table::Nat, Table::Mangle, Table::Raw];

/// The hook declaration of a base chain in `table`.
fn base_chain_spec(table: Table, chain: Chain) -> Option<&'static str> {
    Some(match (table, chain) {
        (Table::Nat, Chain::Prerouting) => "{ type nat hook prerouting priority -100 ; }",
        (Table::Nat, Chain::Output) => "{ type nat hook output priority -100 ; }",
        (Table::Mangle, Chain::Prerouting) => "{ type filter hook prerouting priority -150 ; }",
        (Table::Mangle, Chain::Output) => "{ type route hook output priority -150 ; }",
        (Table::Raw, Chain::Prerouting) => "{ type filter hook prerouting priority -300 ; }",
        (Table::Raw, Chain::Output) => "{ type filter hook output priority -300 ; }",
        _ => return None,
    })
}

/// The tables the rule set uses, in transaction order.
pub fn tables(set: &RuleSet) -> Vec<Table> {
    TABLE_ORDER.into_iter().filter(|t| set.rules.iter().any(|r| r.table == *t)).collect()
}

/// The `nft -f -` transaction for the rule set (both families in the inet tables).
pub fn transaction(set: &RuleSet) -> String {
    transaction_named(set, Table::nft_name, true)
}

/// The transaction with table names from `name`; `hooks: false` declares every chain as a regular
/// chain (used to let nft canonicalise the rules in a scratch table that sees no traffic).
pub fn transaction_named(set: &RuleSet, name: impl Fn(Table) -> &'static str, hooks: bool) -> String {
    let mut out = String::new();
    for table in tables(set) {
        let t = name(table);
        let rules: Vec<_> = set.rules.iter().filter(|r| r.table == table).collect();
        let _ = writeln!(out, "add table inet {t}");
        let _ = writeln!(out, "flush table inet {t}");
        for chain in Chain::ALL.into_iter().filter(|c| rules.iter().any(|r| r.chain == *c)) {
            match base_chain_spec(table, chain).filter(|_| hooks) {
                Some(spec) => {
                    let _ = writeln!(out, "add chain inet {t} {} {spec}", chain.nft_name());
                }
                None => {
                    let _ = writeln!(out, "add chain inet {t} {}", chain.nft_name());
                }
            }
        }
        let mut counts: HashMap<Chain, u32> = HashMap::new();
        for r in rules {
            let count = counts.entry(r.chain).or_default();
            let c = r.chain.nft_name();
            match r.position {
                Position::Insert(n) if n >= 1 && n - 1 < *count => {
                    let _ = writeln!(out, "insert rule inet {t} {c} index {} {}", n - 1, r.nft);
                }
                _ => {
                    let _ = writeln!(out, "add rule inet {t} {c} {}", r.nft);
                }
            }
            *count += 1;
        }
    }
    out
}

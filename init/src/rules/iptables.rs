//! `iptables-restore` input for one address family.

use std::fmt::Write as _;

use super::{Chain, Family, Position, Rule, RuleSet, Table};

/// The `iptables-restore --noflush` input that creates the rules of `family`: one block per table
/// (sorted by name), the `-N` lines of mesh-init's chains in first-use order, then every rule.
pub fn restore_input(set: &RuleSet, family: Family) -> String {
    let rules: Vec<&Rule> = set.for_family(family).collect();
    let mut out = String::new();
    for table in Table::ALL {
        let in_table: Vec<&&Rule> = rules.iter().filter(|r| r.table == table).collect();
        if in_table.is_empty() {
            continue;
        }
        let _ = writeln!(out, "* {}", table.iptables_name());
        let mut created: Vec<Chain> = Vec::new();
        for r in &in_table {
            if !r.chain.is_builtin() && !created.contains(&r.chain) {
                created.push(r.chain);
                let _ = writeln!(out, "-N {}", r.chain.iptables_name());
            }
        }
        // A chain that is only jumped to in this family (the raw table's ISTIO_INBOUND when only
        // the other family has DNS servers) still has to exist for the jump to load.
        for r in &in_table {
            if let Some(target) = jump_target(r).filter(|c| !created.contains(c)) {
                created.push(target);
                let _ = writeln!(out, "-N {}", target.iptables_name());
            }
        }
        for r in &in_table {
            let _ = writeln!(out, "{}", rule_line(r));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// One rule as an `iptables-restore` line: `-A CHAIN spec` or `-I CHAIN n spec`.
pub fn rule_line(r: &Rule) -> String {
    let spec = r.iptables.join(" ");
    match r.position {
        Position::Append => format!("-A {} {spec}", r.chain.iptables_name()),
        Position::Insert(n) => format!("-I {} {n} {spec}", r.chain.iptables_name()),
    }
}

/// mesh-init's own chain a rule jumps to, if any.
fn jump_target(r: &Rule) -> Option<Chain> {
    let target = r.iptables.windows(2).find(|w| w[0] == "-j").map(|w| w[1].as_str())?;
    Chain::ALL.into_iter().find(|c| !c.is_builtin() && c.iptables_name() == target)
}

//! The `iptables-save` view of a namespace: which chains and rules belong to mesh-init, and the
//! restore input that removes (and optionally replaces) them in one transaction.

use std::collections::BTreeMap;

use crate::rules::{Family, Rule, RuleSet, Table, iptables};

/// One table of an `iptables-save` dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SavedTable {
    /// Declared chains (`:NAME POLICY [p:b]`), in order.
    chains: Vec<String>,
    /// Rules as `(chain, spec tokens)`, in order.
    rules: Vec<(String, Vec<String>)>,
}

/// A parsed `iptables-save` dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    tables: BTreeMap<String, SavedTable>,
}

impl Saved {
    /// Parses `iptables-save` output.
    pub fn parse(text: &str) -> Saved {
        let mut saved = Saved::default();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(table) = line.strip_prefix('*') {
                current = Some(table.trim().to_owned());
                saved.tables.entry(table.trim().to_owned()).or_default();
            } else if let (Some(chain), Some(t)) = (line.strip_prefix(':'), &current) {
                let name = chain.split_whitespace().next().unwrap_or_default().to_owned();
                saved.tables.entry(t.clone()).or_default().chains.push(name);
            } else if let (Some(rule), Some(t)) = (line.strip_prefix("-A "), &current) {
                let tokens = split_tokens(rule);
                if let Some((chain, spec)) = tokens.split_first() {
                    saved.tables.entry(t.clone()).or_default().rules.push((chain.clone(), spec.to_vec()));
                }
            }
        }
        saved
    }

    /// Whether the dump holds any rule at all (Istio's backend detection test).
    pub fn has_rules(&self) -> bool {
        self.tables.values().any(|t| !t.rules.is_empty() || t.chains.iter().any(|c| !is_builtin(c)))
    }

    /// Whether any chain or rule of mesh-init is present.
    pub fn owns_anything(&self) -> bool {
        Table::ALL.iter().any(|t| !self.owned_chains(*t).is_empty() || self.owned_rule_count(*t) > 0)
    }

    /// mesh-init's chains in `table`, sorted.
    pub fn owned_chains(&self, table: Table) -> Vec<String> {
        let mut chains: Vec<String> = self
            .tables
            .get(table.iptables_name())
            .map(|t| t.chains.iter().filter(|c| c.starts_with("ISTIO_")).cloned().collect())
            .unwrap_or_default();
        chains.sort();
        chains
    }

    /// How many of `table`'s rules are mesh-init's.
    pub fn owned_rule_count(&self, table: Table) -> usize {
        self.tables
            .get(table.iptables_name())
            .map(|t| t.rules.iter().filter(|(c, spec)| is_owned(table, c, spec)).count())
            .unwrap_or(0)
    }

    /// The restore input that removes mesh-init's rules and chains from `family` and, with `new`,
    /// creates the new ones in the same transaction per table. Empty when there is nothing to do.
    pub fn replace_input(&self, new: Option<&RuleSet>, family: Family) -> String {
        let new_text = new.map(|set| iptables::restore_input(set, family)).unwrap_or_default();
        let new_blocks = blocks(&new_text);
        let mut out = String::new();
        for table in Table::ALL {
            let name = table.iptables_name();
            let mut lines = Vec::new();
            if let Some(t) = self.tables.get(name) {
                for (chain, spec) in &t.rules {
                    if is_builtin(chain) && is_owned(table, chain, spec) {
                        lines.push(format!("-D {chain} {}", join_tokens(spec)));
                    }
                }
                let owned = self.owned_chains(table);
                lines.extend(owned.iter().map(|c| format!("-F {c}")));
                lines.extend(owned.iter().map(|c| format!("-X {c}")));
            }
            if let Some(block) = new_blocks.get(name) {
                lines.extend(block.iter().cloned());
            }
            if !lines.is_empty() {
                out.push_str(&format!("* {name}\n{}\nCOMMIT\n", lines.join("\n")));
            }
        }
        out
    }
}

/// The chains `rules` create in `table`, sorted.
pub fn chains_of<'a>(rules: impl Iterator<Item = &'a Rule>, table: Table) -> Vec<String> {
    let mut chains: Vec<String> = Vec::new();
    for r in rules.filter(|r| r.table == table && !r.chain.is_builtin()) {
        let name = r.chain.iptables_name().to_owned();
        if !chains.contains(&name) {
            chains.push(name);
        }
    }
    chains.sort();
    chains
}

/// The body lines of each `* table` block of a restore input.
fn blocks(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("* ") {
            current = Some(t.to_owned());
        } else if line == "COMMIT" {
            current = None;
        } else if let Some(t) = &current {
            out.entry(t.clone()).or_default().push(line.to_owned());
        }
    }
    out
}

fn is_builtin(chain: &str) -> bool {
    matches!(chain, "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING")
}

/// Whether a rule is one mesh-init writes: in an `ISTIO_*` chain, jumping to one, or one of the
/// built-in-chain rules of interface exclusion and TPROXY marking.
fn is_owned(table: Table, chain: &str, spec: &[String]) -> bool {
    if chain.starts_with("ISTIO_") {
        return true;
    }
    let target = spec.iter().position(|t| t == "-j").and_then(|i| spec.get(i + 1)).map(String::as_str);
    if target.is_some_and(|t| t.starts_with("ISTIO_")) {
        return true;
    }
    let iface_return =
        target == Some("RETURN") && spec.len() == 4 && matches!(spec.first().map(String::as_str), Some("-i" | "-o"));
    match table {
        Table::Nat => matches!(chain, "PREROUTING" | "OUTPUT") && iface_return,
        Table::Mangle => {
            matches!(chain, "PREROUTING" | "OUTPUT")
                && (iface_return
                    || matches!(target, Some("MARK" | "CONNMARK" | "TPROXY"))
                    || (target == Some("RETURN") && spec.iter().any(|t| t == "mark")))
        }
        Table::Raw => false,
    }
}

/// Splits a saved rule into tokens, keeping double-quoted strings together (with their quotes).
fn split_tokens(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

fn join_tokens(tokens: &[String]) -> String {
    tokens.join(" ")
}

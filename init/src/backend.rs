//! Applying a [`RuleSet`]: backend detection (iptables legacy or nft, or native nftables), atomic
//! and idempotent apply, reconcile and cleanup.

use std::fmt;

use crate::command::{Cmd, CommandError, Output, Runner};
use crate::rules::{Family, RuleSet, Table, iptables, nft};

mod saved;

pub use saved::Saved;

/// Which iptables binaries to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `iptables`, whatever the system links it to.
    Default,
    /// `iptables-legacy` (x_tables).
    Legacy,
    /// `iptables-nft` (nf_tables through the iptables compatibility layer).
    Nft,
}

impl Flavor {
    fn suffix(self) -> &'static str {
        match self {
            Flavor::Default => "",
            Flavor::Legacy => "-legacy",
            Flavor::Nft => "-nft",
        }
    }

    /// The binary of a tool (`""`, `"-save"` or `"-restore"`) for `family`.
    pub fn binary(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        format!("{base}{}{tool}", self.suffix())
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Default => "iptables",
            Flavor::Legacy => "iptables-legacy",
            Flavor::Nft => "iptables-nft",
        })
    }
}

/// The firewall backend mesh-init programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables-restore, per family.
    Iptables(Flavor),
    /// One `nft -f -` transaction on inet tables (`--native-nftables`).
    Nftables,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Iptables(flavor) => flavor.fmt(f),
            Backend::Nftables => f.write_str("nftables"),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rules were not there; they are now.
    Applied,
    /// Exactly these rules were already there; nothing changed.
    Unchanged,
    /// Different rules were there; they were replaced (`--reconcile` or `--force-apply`).
    Replaced,
    /// Cleanup removed mesh-init's rules (or there were none).
    Cleaned,
}

/// Errors applying rules, each naming the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A binary is missing.
    #[error("{program} not found: install {package} in the image (e.g. apt-get install {package}){alternative}")]
    MissingBinary {
        /// The binary.
        program: String,
        /// The package that provides it.
        package: &'static str,
        /// Another way out, if any.
        alternative: &'static str,
    },
    /// The kernel refused: no NET_ADMIN/NET_RAW.
    #[error(
        "{program} failed: permission denied ({detail}): the container needs the NET_ADMIN and NET_RAW capabilities \
         (securityContext.capabilities.add: [NET_ADMIN, NET_RAW]) and must run as root"
    )]
    Permission {
        /// The command that failed.
        program: String,
        /// The tool's message.
        detail: String,
    },
    /// A table or match is not available in the kernel.
    #[error(
        "{program} failed: {detail}: the kernel lacks a netfilter module; load it on the node \
         (modprobe ip_tables iptable_nat iptable_mangle iptable_raw xt_owner xt_REDIRECT xt_conntrack, \
         or nf_tables for --native-nftables), or use the other backend (--force-iptables-binary / --native-nftables)"
    )]
    KernelModule {
        /// The command that failed.
        program: String,
        /// The tool's message.
        detail: String,
    },
    /// Capture rules that differ from the wanted ones are already present.
    #[error(
        "different capture rules are already present ({detail}); rerun with --reconcile to replace them, \
         or --cleanup-only to remove them"
    )]
    DifferentRulesPresent {
        /// What differs.
        detail: String,
    },
    /// Any other command failure.
    #[error("{command} failed (exit {status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: i32,
        /// Its error output.
        stderr: String,
    },
    /// `--force-iptables-binary` names something else than an iptables flavor.
    #[error(
        "invalid value for --force-iptables-binary (FORCE_IPTABLES_BINARY): {value:?}: \
         use iptables-legacy, iptables-nft or iptables"
    )]
    UnknownBinary {
        /// The value as given.
        value: String,
    },
    /// A command could not be started.
    #[error(transparent)]
    Command(CommandError),
    /// The rules were applied but are not visible afterwards.
    #[error("verification failed after applying: {0}")]
    Verify(String),
}

fn package_of(program: &str) -> (&'static str, &'static str) {
    if program.starts_with("nft") {
        ("nftables", " or drop --native-nftables to use iptables")
    } else if program == "ip" {
        ("iproute2", "")
    } else {
        ("iptables", " or pass --native-nftables to use nft")
    }
}

/// Runs a command and turns failures into [`ApplyError`]s that name the cause and the fix.
pub fn run_checked(runner: &dyn Runner, cmd: &Cmd) -> Result<Output, ApplyError> {
    let out = runner.run(cmd).map_err(|e| match e {
        CommandError::NotFound { program } => {
            let (package, alternative) = package_of(&program);
            ApplyError::MissingBinary { program, package, alternative }
        }
        other => ApplyError::Command(other),
    })?;
    if out.success() {
        return Ok(out);
    }
    Err(classify(cmd, &out))
}

fn classify(cmd: &Cmd, out: &Output) -> ApplyError {
    let stderr = out.stderr.trim().to_owned();
    let lower = stderr.to_lowercase();
    let program = cmd.program.clone();
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        return ApplyError::Permission { program, detail: stderr };
    }
    if lower.contains("can't initialize")
        || lower.contains("unable to initialize table")
        || lower.contains("table does not exist")
        || lower.contains("do you need to insmod")
        || lower.contains("protocol not supported")
        || lower.contains("no such file or directory") && program.starts_with("nft")
    {
        return ApplyError::KernelModule { program, detail: stderr };
    }
    ApplyError::Failed { command: cmd.line(), status: out.status, stderr }
}

/// Linux capability numbers (`linux/capability.h`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Checks the effective capabilities in a `/proc/self/status` text: NET_ADMIN always, NET_RAW
/// for the iptables backends. Fails naming the missing ones and how to grant them.
pub fn check_capabilities(status: &str, need_raw: bool) -> Result<(), ApplyError> {
    let Some(eff) =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return Ok(()); // Not Linux-like /proc: let the tools report.
    };
    let mut missing = Vec::new();
    if eff & (1 << CAP_NET_ADMIN) == 0 {
        missing.push("NET_ADMIN");
    }
    if need_raw && eff & (1 << CAP_NET_RAW) == 0 {
        missing.push("NET_RAW");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Permission {
        program: "mesh-init".into(),
        detail: format!("missing capabilities {} (CapEff {eff:#x})", missing.join(", ")),
    })
}

/// Whether the kernel lists a legacy iptables table in the current network namespace
/// (`/proc/net/ip_tables_names`, `/proc/net/ip6_tables_names`, which `iptables-legacy-save` reads).
pub fn legacy_tables_listed() -> bool {
    ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| !t.trim().is_empty()))
}

/// Parses `--force-iptables-binary`: `None` when unset or empty (detect).
pub fn parse_forced(forced: Option<&str>) -> Result<Option<Flavor>, ApplyError> {
    match forced.map(str::trim) {
        Some("iptables-legacy" | "legacy") => Ok(Some(Flavor::Legacy)),
        Some("iptables-nft" | "nft") => Ok(Some(Flavor::Nft)),
        Some("iptables") => Ok(Some(Flavor::Default)),
        Some("") | None => Ok(None),
        Some(other) => Err(ApplyError::UnknownBinary { value: other.to_owned() }),
    }
}

/// The detected iptables flavor, with the dumps read while detecting (reused as the state
/// before applying, to save process starts).
#[derive(Debug, Clone)]
pub struct Detected {
    /// The flavor to use.
    pub flavor: Flavor,
    /// `-save` output of both families for `flavor`, when detection read it.
    pub saved: Option<Vec<(Family, Saved)>>,
}

/// Picks the iptables flavor as Istio does: `--force-iptables-binary` wins; else legacy if it
/// already holds rules, else nft if it does; with no rules anywhere, nft (the modern default) when
/// its tools work, else legacy. Each candidate is probed by dumping its tables.
///
/// `legacy_tables` says whether the kernel lists any legacy (x_tables) table in this namespace
/// (see [`legacy_tables_listed`]); when it lists none, legacy cannot hold rules and its dumps are
/// skipped.
pub fn detect(runner: &dyn Runner, forced: Option<&str>, legacy_tables: bool) -> Result<Detected, ApplyError> {
    let forced = parse_forced(forced)?;
    if let Some(flavor) = forced {
        return Ok(Detected { flavor, saved: None });
    }
    let mut usable = Vec::new();
    let mut first_error = None;
    let candidates: &[Flavor] = if legacy_tables { &[Flavor::Legacy, Flavor::Nft] } else { &[Flavor::Nft] };
    for &flavor in candidates {
        match save_all(runner, flavor) {
            Ok(saved) => {
                if saved.iter().any(|(_, s)| s.has_rules()) {
                    return Ok(Detected { flavor, saved: Some(saved) });
                }
                usable.push((flavor, saved));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match usable.pop() {
        Some((flavor, saved)) => Ok(Detected { flavor, saved: Some(saved) }),
        None => match first_error {
            // Neither flavored binary works: the plain `iptables` may still (older distributions).
            Some(ApplyError::MissingBinary { .. }) | None => Ok(Detected { flavor: Flavor::Default, saved: None }),
            Some(e) => Err(e),
        },
    }
}

/// Options of an apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Replace different rules instead of failing.
    pub reconcile: bool,
    /// Re-apply even when the rules are already there.
    pub force: bool,
}

/// Applies `set` with iptables: one `iptables-restore --noflush -w` per family. Idempotent: when
/// exactly these rules are present it changes nothing.
pub fn apply_iptables(
    runner: &dyn Runner,
    flavor: Flavor,
    set: &RuleSet,
    opts: ApplyOptions,
) -> Result<Outcome, ApplyError> {
    apply_iptables_from(runner, flavor, set, opts, None)
}

/// [`apply_iptables`] with the current state already read (from [`detect`]).
pub fn apply_iptables_from(
    runner: &dyn Runner,
    flavor: Flavor,
    set: &RuleSet,
    opts: ApplyOptions,
    saved: Option<Vec<(Family, Saved)>>,
) -> Result<Outcome, ApplyError> {
    let before = match saved {
        Some(s) => s,
        None => save_all(runner, flavor)?,
    };
    let wanted = set.families();
    let present = before.iter().any(|(_, s)| s.owns_anything());
    let outcome = if !present {
        for family in &wanted {
            restore(runner, flavor, *family, iptables::restore_input(set, *family))?;
        }
        Outcome::Applied
    } else {
        let diff = iptables_difference(runner, flavor, set, &before)?;
        match diff {
            None if !opts.force => Outcome::Unchanged,
            Some(detail) if !opts.reconcile && !opts.force => {
                return Err(ApplyError::DifferentRulesPresent { detail });
            }
            _ => {
                for (family, saved) in &before {
                    let new = if wanted.contains(family) { Some(set) } else { None };
                    let input = saved.replace_input(new, *family);
                    if !input.is_empty() {
                        restore(runner, flavor, *family, input)?;
                    }
                }
                Outcome::Replaced
            }
        }
    };
    for family in &wanted {
        let out = run_checked(runner, &Cmd::new(&flavor.binary(*family, "-save"), &[]))?;
        // An empty dump means the tool printed nothing at all (a recording); a real one after an
        // apply always lists the tables.
        if outcome != Outcome::Unchanged && !out.stdout.is_empty() && !Saved::parse(&out.stdout).owns_anything() {
            return Err(ApplyError::Verify(format!("no ISTIO_* chains in {} output", flavor.binary(*family, "-save"))));
        }
    }
    Ok(outcome)
}

/// Removes every rule and chain mesh-init owns, in both families.
pub fn cleanup_iptables(runner: &dyn Runner, flavor: Flavor) -> Result<Outcome, ApplyError> {
    for (family, saved) in save_all(runner, flavor)? {
        let input = saved.replace_input(None, family);
        if !input.is_empty() {
            restore(runner, flavor, family, input)?;
        }
    }
    Ok(Outcome::Cleaned)
}

fn save_all(runner: &dyn Runner, flavor: Flavor) -> Result<Vec<(Family, Saved)>, ApplyError> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let cmd = Cmd::new(&flavor.binary(family, "-save"), &[]);
        match run_checked(runner, &cmd) {
            Ok(o) => out.push((family, Saved::parse(&o.stdout))),
            // A kernel without IPv6 netfilter: nothing of ours can be there.
            Err(ApplyError::KernelModule { .. }) if family == Family::V6 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn restore(runner: &dyn Runner, flavor: Flavor, family: Family, input: String) -> Result<(), ApplyError> {
    let cmd = Cmd::new(&flavor.binary(family, "-restore"), &["--noflush", "-w"]).with_stdin(input);
    run_checked(runner, &cmd).map(|_| ())
}

/// `None` when the saved state holds exactly `set`'s rules, else what differs.
fn iptables_difference(
    runner: &dyn Runner,
    flavor: Flavor,
    set: &RuleSet,
    before: &[(Family, Saved)],
) -> Result<Option<String>, ApplyError> {
    let wanted = set.families();
    for (family, saved) in before {
        if !wanted.contains(family) {
            if saved.owns_anything() {
                return Ok(Some(format!("{family} rules present but IPv6 is off")));
            }
            continue;
        }
        let rules: Vec<_> = set.for_family(*family).collect();
        for table in Table::ALL {
            let want_chains = saved::chains_of(rules.iter().copied(), table);
            let have_chains = saved.owned_chains(table);
            if want_chains != have_chains {
                return Ok(Some(format!(
                    "{family} {} chains are [{}], expected [{}]",
                    table.iptables_name(),
                    have_chains.join(" "),
                    want_chains.join(" ")
                )));
            }
            let want = rules.iter().filter(|r| r.table == table).count();
            let have = saved.owned_rule_count(table);
            if want != have {
                return Ok(Some(format!(
                    "{family} {} table holds {have} capture rules, expected {want}",
                    table.iptables_name()
                )));
            }
        }
        for r in &rules {
            let mut args = vec!["-t", r.table.iptables_name(), "-C", r.chain.iptables_name()];
            args.extend(r.iptables.iter().map(String::as_str));
            let cmd = Cmd::new(&flavor.binary(*family, ""), &args);
            let out = runner.run(&cmd).map_err(ApplyError::Command)?;
            if !out.success() {
                return Ok(Some(format!("{family} rule missing: {}", iptables::rule_line(r))));
            }
        }
    }
    Ok(None)
}

/// Applies `set` with one `nft -f -` transaction. Idempotent: when the tables already hold
/// exactly these rules, nothing is applied.
pub fn apply_nft(runner: &dyn Runner, set: &RuleSet, opts: ApplyOptions) -> Result<Outcome, ApplyError> {
    let existing = nft_tables(runner)?;
    let txn = nft::transaction(set);
    if existing.is_empty() {
        run_checked(runner, &Cmd::new("nft", &["-f", "-"]).with_stdin(txn))?;
        return Ok(Outcome::Applied);
    }
    let diff = nft_difference(runner, set, &existing)?;
    match diff {
        None if !opts.force => Ok(Outcome::Unchanged),
        Some(detail) if !opts.reconcile && !opts.force => Err(ApplyError::DifferentRulesPresent { detail }),
        _ => {
            // Delete and re-create in one transaction: `flush table` alone would keep stale
            // (empty) chains and the old chain order.
            let mut input: String = existing.iter().map(|t| format!("delete table inet {}\n", t.nft_name())).collect();
            input.push_str(&txn);
            run_checked(runner, &Cmd::new("nft", &["-f", "-"]).with_stdin(input))?;
            Ok(Outcome::Replaced)
        }
    }
}

/// Deletes mesh-init's nft tables.
pub fn cleanup_nft(runner: &dyn Runner) -> Result<Outcome, ApplyError> {
    let existing = nft_tables(runner)?;
    if !existing.is_empty() {
        let input: String = existing.iter().map(|t| format!("delete table inet {}\n", t.nft_name())).collect();
        run_checked(runner, &Cmd::new("nft", &["-f", "-"]).with_stdin(input))?;
    }
    Ok(Outcome::Cleaned)
}

/// mesh-init's tables that exist, in transaction order.
fn nft_tables(runner: &dyn Runner) -> Result<Vec<Table>, ApplyError> {
    let out = run_checked(runner, &Cmd::new("nft", &["list", "tables", "inet"]))?;
    let names: Vec<&str> = out.stdout.lines().filter_map(|l| l.trim().strip_prefix("table inet ")).collect();
    Ok([Table::Nat, Table::Mangle, Table::Raw].into_iter().filter(|t| names.contains(&t.nft_name())).collect())
}

fn scratch_name(t: Table) -> &'static str {
    match t {
        Table::Nat => "mesh-init-check-nat",
        Table::Mangle => "mesh-init-check-mangle",
        Table::Raw => "mesh-init-check-raw",
    }
}

/// Lets nft canonicalise the wanted rules in scratch tables without hooks (they see no traffic),
/// then compares them with the live tables. `None` when identical.
fn nft_difference(runner: &dyn Runner, set: &RuleSet, existing: &[Table]) -> Result<Option<String>, ApplyError> {
    let wanted = nft::tables(set);
    if wanted != existing {
        let names = |ts: &[Table]| ts.iter().map(|t| t.nft_name()).collect::<Vec<_>>().join(" ");
        return Ok(Some(format!("tables are [{}], expected [{}]", names(existing), names(&wanted))));
    }
    let create = nft::transaction_named(set, scratch_name, false);
    run_checked(runner, &Cmd::new("nft", &["-f", "-"]).with_stdin(create))?;
    let mut canonical = String::new();
    let mut listed = Ok(());
    for t in &wanted {
        match run_checked(runner, &Cmd::new("nft", &["-s", "list", "table", "inet", scratch_name(*t)])) {
            Ok(out) => canonical.push_str(&out.stdout),
            Err(e) => {
                listed = Err(e);
                break;
            }
        }
    }
    let delete: String = wanted.iter().map(|t| format!("delete table inet {}\n", scratch_name(*t))).collect();
    run_checked(runner, &Cmd::new("nft", &["-f", "-"]).with_stdin(delete))?;
    listed?;
    let mut live = String::new();
    for t in &wanted {
        let out = run_checked(runner, &Cmd::new("nft", &["-s", "list", "table", "inet", t.nft_name()]))?;
        live.push_str(&out.stdout);
    }
    let normalize = |text: &str, name: fn(Table) -> &'static str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains(" hook ") && !l.trim().is_empty())
            .map(|l| {
                let mut l = l.trim().to_owned();
                for t in &wanted {
                    l = l.replace(name(*t), t.iptables_name());
                }
                l
            })
            .collect()
    };
    let want = normalize(&canonical, scratch_name);
    let have = normalize(&live, Table::nft_name);
    if want == have {
        return Ok(None);
    }
    let first = want.iter().zip(&have).find(|(a, b)| a != b);
    Ok(Some(match first {
        Some((w, h)) => format!("found {h:?} where {w:?} was expected"),
        None => format!("{} rule lines present, {} expected", have.len(), want.len()),
    }))
}

#[cfg(test)]
mod tests;

//! The flag tables in docs/ say what the binaries' `--help` says: for every command with a table,
//! the set of long flags in the table's first column equals the set of (visible) long flags the
//! command's parser accepts. mesh-init's table is checked cell by cell in `init/tests/cli.rs`, since
//! its `--help` is printed from the same table `CaptureConfig` parses.

use std::collections::BTreeSet;

use clap::CommandFactory as _;

/// The long flags in the first cell of every table row of `doc` between `heading` and the next heading.
fn documented_flags(doc: &str, heading: &str) -> BTreeSet<String> {
    let path = mesh_tests::repo_root().join("docs").join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut inside = false;
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with('#') {
            if inside {
                break;
            }
            inside = line.trim() == heading;
            continue;
        }
        if !inside || !line.starts_with('|') || line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
            continue;
        }
        let first = line.trim_start_matches('|').split(" | ").next().unwrap_or_default();
        flags.extend(long_flags(first));
    }
    assert!(!flags.is_empty(), "docs/{doc}: no flag table under {heading:?}");
    flags
}

/// `--name` tokens of a text (`--wait[=TIMEOUT]` gives `--wait`).
fn long_flags(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("--") {
        let tail = &rest[i + 2..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(tail.len());
        if tail.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push(format!("--{}", &tail[..end]));
        }
        rest = &tail[end..];
    }
    out
}

/// A clap command's long flags: the visible ones (not `--help` / `--version`), which the docs must
/// list, and every name it accepts (aliases too), which is all the docs may list.
struct ParserFlags {
    visible: BTreeSet<String>,
    accepted: BTreeSet<String>,
}

fn parser_flags(cmd: &clap::Command) -> ParserFlags {
    let args: Vec<&clap::Arg> = cmd.get_arguments().filter(|a| a.get_long() != Some("help")).collect();
    let visible = args
        .iter()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "version")
        .map(|l| format!("--{l}"))
        .collect();
    let accepted = args
        .iter()
        .flat_map(|a| a.get_long().into_iter().chain(a.get_all_aliases().unwrap_or_default()))
        .map(|l| format!("--{l}"))
        .collect();
    ParserFlags { visible, accepted }
}

fn plugin_subcommand(name: &str) -> clap::Command {
    let mut cli = kubectl_mesh::cli::Cli::command();
    cli.build();
    cli.find_subcommand(name).cloned().unwrap_or_else(|| panic!("kubectl mesh has no subcommand {name}"))
}

fn assert_same(what: &str, doc: &str, documented: BTreeSet<String>, parsed: ParserFlags) {
    let missing: Vec<_> = parsed.visible.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&parsed.accepted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/{doc} and {what} --help disagree: undocumented {missing:?}, documented but not accepted {stale:?}"
    );
}

#[test]
fn webhook_flag_table_equals_its_parser() {
    let mut cmd = mesh_webhook::cli::Args::command();
    cmd.build();
    assert_same("mesh-webhook", "webhook.md", documented_flags("webhook.md", "## Flags"), parser_flags(&cmd));
}

#[test]
fn proxy_status_flag_table_equals_its_parser() {
    let cmd = plugin_subcommand("proxy-status");
    assert_same(
        "kubectl mesh proxy-status",
        "proxy-status.md",
        documented_flags("proxy-status.md", "# kubectl mesh proxy-status")
            .union(&documented_flags("proxy-status.md", "## Cluster flags"))
            .cloned()
            .collect(),
        parser_flags(&cmd),
    );
}

#[test]
fn explain_flag_table_equals_its_parser() {
    let cmd = plugin_subcommand("explain");
    assert_same("kubectl mesh explain", "explain.md", documented_flags("explain.md", "## Usage"), parser_flags(&cmd));
}

#[test]
fn inject_flag_table_equals_its_parser() {
    let cmd = plugin_subcommand("inject");
    assert_same(
        "kubectl mesh inject",
        "inject.md",
        documented_flags("inject.md", "## `kubectl mesh inject`"),
        parser_flags(&cmd),
    );
}

#[test]
fn check_inject_and_injector_list_flag_tables_equal_their_parsers() {
    let cluster = documented_flags("proxy-status.md", "## Cluster flags");
    let with_cluster =
        |heading: &str| -> BTreeSet<String> { documented_flags("day2.md", heading).union(&cluster).cloned().collect() };
    let cmd = plugin_subcommand("check-inject");
    assert_same(
        "kubectl mesh check-inject",
        "day2.md",
        with_cluster("## `kubectl mesh check-inject`"),
        parser_flags(&cmd),
    );
    let injector = plugin_subcommand("injector");
    let list = injector.find_subcommand("list").expect("kubectl mesh injector list");
    assert_same(
        "kubectl mesh injector list",
        "day2.md",
        with_cluster("## `kubectl mesh injector list`"),
        parser_flags(list),
    );
}

#[test]
fn long_flags_are_read_from_table_cells() {
    assert_eq!(long_flags("`--kubeconfig`, `--context`"), ["--kubeconfig", "--context"]);
    assert_eq!(long_flags("`--wait[=TIMEOUT]`"), ["--wait"]);
    assert_eq!(long_flags("`-n, --namespace`"), ["--namespace"]);
    assert!(long_flags("`POD`").is_empty());
    assert!(long_flags("|---|---|").is_empty());
}

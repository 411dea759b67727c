//! Shell completion. `kubectl mesh completion SHELL` prints a script for the `kubectl-mesh` binary
//! (clap_complete); kubectl's plugin completion hook `kubectl_complete-mesh` answers `kubectl mesh
//! <TAB>` in cobra's `__complete` protocol (kubectl ≥ 1.26 runs it with the words after `kubectl
//! mesh`, the last one being the word under the cursor).
//!
//! [`plan`] walks the command line over the parser's own definition (subcommands, flags, value
//! enums), so completion follows the flags without a second list; names only the cluster knows
//! (pods, namespaces) or the kubeconfig holds (contexts, clusters, users) come back as a [`Lookup`],
//! which [`lookup`] answers and [`finish`] turns into candidates. [`render`] prints the protocol.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use clap::{Arg, CommandFactory as _, Parser as _};

use crate::cluster::{Cluster, ClusterArgs};

/// cobra's `ShellCompDirectiveDefault`: the shell may fall back to file names.
pub const DIRECTIVE_DEFAULT: u32 = 0;
/// cobra's `ShellCompDirectiveNoSpace`: no space after the completion (a flag prefix like `pod/`).
pub const DIRECTIVE_NO_SPACE: u32 = 2;
/// cobra's `ShellCompDirectiveNoFileComp`: no file names when there is no candidate.
pub const DIRECTIVE_NO_FILE_COMP: u32 = 4;

/// The timeout of a completion's cluster call when `--request-timeout` is not given (a person is
/// waiting at the prompt).
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The shells `kubectl mesh completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion 2).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
    /// PowerShell.
    Powershell,
}

/// `kubectl mesh completion`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  source <(kubectl mesh completion bash)\n  \
kubectl mesh completion zsh > \"${fpath[1]}/_kubectl-mesh\"\n  kubectl mesh completion fish > ~/.config/fish/completions/kubectl-mesh.fish\n  \
kubectl mesh completion powershell | Out-String | Invoke-Expression\n\n\
`kubectl mesh <TAB>` is completed by kubectl itself through the kubectl_complete-mesh hook (see docs/install.md).")]
pub struct CompletionArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for the `kubectl-mesh` binary.
pub fn script(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    // clap_complete's bash script names its per-subcommand cases inconsistently when the binary's
    // name has a `-` (`kubectl__mesh__subcmd__explain` vs `kubectl__subcmd__mesh__subcmd__explain`,
    // so no subcommand's flags complete): generate it for `kubectl_mesh`, then register it for
    // `kubectl-mesh`.
    let bin = if shell == Shell::Bash { BASH_NAME } else { "kubectl-mesh" };
    // Rendered into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut text = Vec::new();
    clap_complete::generate(generator, &mut crate::Cli::command().bin_name(bin), bin, &mut text);
    let mut text = String::from_utf8_lossy(&text).into_owned();
    if shell == Shell::Bash {
        text = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("complete ") {
                    line.replace(&format!(" {BASH_NAME}"), " kubectl-mesh")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    out.write_all(text.as_bytes())
}

/// The name the bash script is generated for (see [`script`]).
const BASH_NAME: &str = "kubectl_mesh";

/// One completion candidate: the word, and what it is (shown by zsh, fish and PowerShell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The completed word.
    pub value: String,
    /// A one-line description (empty: none).
    pub description: String,
}

/// The answer to one completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The candidates, in order.
    pub candidates: Vec<Candidate>,
    /// cobra's ShellCompDirective bits.
    pub directive: u32,
}

impl Completion {
    fn none() -> Completion {
        Completion { candidates: Vec::new(), directive: DIRECTIVE_NO_FILE_COMP }
    }

    fn files() -> Completion {
        Completion { candidates: Vec::new(), directive: DIRECTIVE_DEFAULT }
    }
}

/// Names completion needs from outside the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Pods, written `NAME` (`pod/NAME` when the word starts with `pod/`).
    Pods,
    /// Pods for proxy-status: `NAME`, or `NAME.NAMESPACE` with `-A`.
    ProxyPods,
    /// Namespaces.
    Namespaces,
    /// The kubeconfig's contexts.
    Contexts,
    /// The kubeconfig's clusters.
    Clusters,
    /// The kubeconfig's users.
    Users,
}

/// A completion that needs names from the cluster or the kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// What to list.
    pub source: Source,
    /// The cluster flags on the command line (which kubeconfig, context, namespace...).
    pub cluster: ClusterArgs,
    /// `-A` / `--all-namespaces` was given.
    pub all_namespaces: bool,
    /// What candidates start with and the name does not (`pod/`, `--namespace=`, `-n`).
    pub prefix: String,
    /// The part of the name already typed.
    pub typed: String,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The command line alone answers it.
    Done(Completion),
    /// Names must be looked up first.
    Lookup(Box<Lookup>),
}

/// Where the walk over the words ended.
struct Walk<'a> {
    command: &'a clap::Command,
    /// The path of subcommand names (`["explain"]`).
    path: Vec<String>,
    /// Flag values given, by argument.
    values: Vec<(&'a Arg, String)>,
    /// Ids of the flags given.
    seen: BTreeSet<String>,
    /// Positional words of the innermost command.
    positionals: usize,
    /// The flag whose value is the word under the cursor.
    pending: Option<&'a Arg>,
    /// After `--`: only positionals.
    dashdash: bool,
}

/// The completion plan for `words` (the words after `kubectl mesh`; the last one is the word under
/// the cursor, empty after a space).
pub fn plan(words: &[String]) -> Plan {
    let mut root = crate::Cli::command();
    root.build();
    plan_for(&root, words)
}

/// [`plan`] over any command definition (tests use the real one).
pub fn plan_for(root: &clap::Command, words: &[String]) -> Plan {
    let (current, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", &[][..]),
    };
    let walk = walk(root, before);
    if let Some(arg) = walk.pending {
        return values(&walk, arg, "", current);
    }
    if !walk.dashdash && current.starts_with("--") {
        if let Some((name, value)) = current.split_once('=') {
            return match find_long(walk.command, &name[2..]) {
                Some(arg) if takes_value(arg) => values(&walk, arg, &format!("{name}="), value),
                _ => Plan::Done(Completion::none()),
            };
        }
        return Plan::Done(flags(&walk, current));
    }
    if !walk.dashdash && current.starts_with('-') && current.len() > 1 {
        // `-nfoo`: a short flag with its value attached.
        let mut chars = current[1..].chars();
        if let Some(short) = chars.next()
            && let Some(arg) = walk.command.get_arguments().find(|a| a.get_short() == Some(short))
            && takes_value(arg)
            && current.len() > 2
        {
            return values(&walk, arg, &current[..2], chars.as_str());
        }
        return Plan::Done(flags(&walk, current));
    }
    if !walk.dashdash && current == "-" {
        return Plan::Done(flags(&walk, current));
    }
    if walk.command.has_subcommands() && walk.positionals == 0 {
        let candidates = walk
            .command
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name().starts_with(current))
            .map(|s| Candidate { value: s.get_name().to_owned(), description: about(s) })
            .collect();
        return Plan::Done(Completion { candidates, directive: DIRECTIVE_NO_FILE_COMP });
    }
    let positionals: Vec<&Arg> = walk.command.get_positionals().filter(|a| !a.is_hide_set()).collect();
    let arg = positionals
        .get(walk.positionals)
        .copied()
        .or_else(|| positionals.last().copied().filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1)));
    match arg {
        Some(arg) => values(&walk, arg, "", current),
        None => Plan::Done(Completion::none()),
    }
}

fn walk<'a>(root: &'a clap::Command, words: &'a [String]) -> Walk<'a> {
    let mut walk = Walk {
        command: root,
        path: Vec::new(),
        values: Vec::new(),
        seen: BTreeSet::new(),
        positionals: 0,
        pending: None,
        dashdash: false,
    };
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if walk.dashdash {
            walk.positionals += 1;
        } else if word == "--" {
            walk.dashdash = true;
        } else if let Some(long) = word.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            if let Some(arg) = find_long(walk.command, name) {
                walk.seen.insert(arg.get_id().to_string());
                if required_value(arg) {
                    match value {
                        Some(v) => walk.values.push((arg, v.to_owned())),
                        None => match words.next() {
                            Some(v) => walk.values.push((arg, v.clone())),
                            None => walk.pending = Some(arg),
                        },
                    }
                } else if let Some(v) = value {
                    walk.values.push((arg, v.to_owned()));
                }
            }
        } else if word.len() > 1 && word.starts_with('-') {
            for (i, short) in word.char_indices().skip(1) {
                let Some(arg) = walk.command.get_arguments().find(|a| a.get_short() == Some(short)) else {
                    continue;
                };
                walk.seen.insert(arg.get_id().to_string());
                if required_value(arg) {
                    let rest = &word[i + short.len_utf8()..];
                    if !rest.is_empty() {
                        walk.values.push((arg, rest.to_owned()));
                    } else {
                        match words.next() {
                            Some(v) => walk.values.push((arg, v.clone())),
                            None => walk.pending = Some(arg),
                        }
                    }
                    break;
                }
            }
        } else if let Some(sub) = (walk.positionals == 0).then(|| walk.command.find_subcommand(word)).flatten() {
            walk.command = sub;
            walk.path.push(sub.get_name().to_owned());
            walk.seen.clear();
        } else {
            walk.positionals += 1;
        }
    }
    walk
}

fn find_long<'a>(command: &'a clap::Command, name: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|aliases| aliases.contains(&name)))
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

/// A flag whose value is the next word when not attached with `=` (not `--wait[=TIMEOUT]`).
fn required_value(arg: &Arg) -> bool {
    takes_value(arg) && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append | clap::ArgAction::Count)
}

fn first_line(text: Option<&clap::builder::StyledStr>) -> String {
    text.map(|t| t.to_string().lines().next().unwrap_or_default().trim_end_matches('.').to_owned()).unwrap_or_default()
}

fn about(command: &clap::Command) -> String {
    first_line(command.get_about())
}

/// Flag names starting with `current` (cobra also offers `-x` shorthands when only `-` is typed);
/// flags already given are left out unless repeatable.
fn flags(walk: &Walk<'_>, current: &str) -> Completion {
    let mut candidates = Vec::new();
    for arg in walk.command.get_arguments().filter(|a| !a.is_positional() && !a.is_hide_set()) {
        if walk.seen.contains(arg.get_id().as_str()) && !repeatable(arg) {
            continue;
        }
        let description = first_line(arg.get_help());
        if let Some(long) = arg.get_long() {
            let value = format!("--{long}");
            if value.starts_with(current) {
                candidates.push(Candidate { value, description: description.clone() });
            }
        }
        if let Some(short) = arg.get_short()
            && current == "-"
        {
            candidates.push(Candidate { value: format!("-{short}"), description });
        }
    }
    Completion { candidates, directive: DIRECTIVE_NO_FILE_COMP }
}

/// What names an argument's values are, by command and argument.
fn source_of(path: &[String], arg: &Arg) -> Option<Source> {
    let command = path.first().map(String::as_str).unwrap_or_default();
    match (command, arg.get_id().as_str()) {
        ("explain", "pod") => Some(Source::Pods),
        ("proxy-status", "pod") => Some(Source::ProxyPods),
        (_, "namespace" | "istio_namespace") => Some(Source::Namespaces),
        (_, "context") => Some(Source::Contexts),
        (_, "cluster") => Some(Source::Clusters),
        (_, "user") => Some(Source::Users),
        _ => None,
    }
}

/// The values of `arg` that start with `typed`, each written after `prefix`.
fn values(walk: &Walk<'_>, arg: &Arg, prefix: &str, typed: &str) -> Plan {
    let possible: Vec<_> = arg.get_possible_values().into_iter().filter(|v| !v.is_hide_set()).collect();
    if !possible.is_empty() {
        let candidates = possible
            .iter()
            .filter(|v| v.get_name().starts_with(typed))
            .map(|v| Candidate { value: format!("{prefix}{}", v.get_name()), description: first_line(v.get_help()) })
            .collect();
        return Plan::Done(Completion { candidates, directive: DIRECTIVE_NO_FILE_COMP });
    }
    if let Some(source) = source_of(&walk.path, arg) {
        let (prefix, typed) = match (source, typed.split_once('/')) {
            (Source::Pods | Source::ProxyPods, Some((kind @ ("pod" | "pods"), name))) => {
                (format!("{prefix}{kind}/"), name.to_owned())
            }
            _ => (prefix.to_owned(), typed.to_owned()),
        };
        return Plan::Lookup(Box::new(Lookup {
            source,
            cluster: cluster_args(walk),
            all_namespaces: walk.seen.contains("all_namespaces"),
            prefix,
            typed,
        }));
    }
    let path_like =
        matches!(arg.get_value_hint(), clap::ValueHint::AnyPath | clap::ValueHint::FilePath | clap::ValueHint::DirPath);
    Plan::Done(if path_like { Completion::files() } else { Completion::none() })
}

/// The cluster flags among the flag values given, parsed by the cluster flags' own parser (a value
/// it rejects is left out).
fn cluster_args(walk: &Walk<'_>) -> ClusterArgs {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        cluster: ClusterArgs,
    }
    let ids: BTreeSet<String> = Flags::command().get_arguments().map(|a| a.get_id().to_string()).collect();
    let mut parsed = ClusterArgs::default();
    let mut argv = vec!["kubectl-mesh".to_owned()];
    for (arg, value) in &walk.values {
        if let Some(long) = arg.get_long().filter(|_| ids.contains(arg.get_id().as_str())) {
            let mut candidate = argv.clone();
            candidate.push(format!("--{long}={value}"));
            if let Ok(flags) = Flags::try_parse_from(&candidate) {
                parsed = flags.cluster;
                argv = candidate;
            }
        }
    }
    parsed
}

/// How pods are written for `source`: `NAME`, or `NAME.NAMESPACE` for proxy-status with `-A`.
pub fn pod_values(source: Source, all_namespaces: bool, pods: &[(String, String)]) -> Vec<String> {
    pods.iter()
        .map(
            |(namespace, name)| {
                if source == Source::ProxyPods && all_namespaces { format!("{name}.{namespace}") } else { name.clone() }
            },
        )
        .collect()
}

/// The candidates of a lookup from the names it found: those starting with what is typed, sorted,
/// written after the prefix.
pub fn finish(lookup: &Lookup, names: Vec<String>) -> Completion {
    let names: BTreeSet<String> = names.into_iter().filter(|n| n.starts_with(&lookup.typed)).collect();
    let candidates = names
        .into_iter()
        .map(|name| Candidate { value: format!("{}{name}", lookup.prefix), description: String::new() })
        .collect();
    Completion { candidates, directive: DIRECTIVE_NO_FILE_COMP }
}

/// cobra's `__complete` output: one `value<TAB>description` line per candidate, then `:<directive>`.
pub fn render(completion: &Completion) -> String {
    let mut out = String::new();
    for c in &completion.candidates {
        let value = c.value.replace(['\n', '\t'], " ");
        if c.description.is_empty() {
            let _ = writeln!(out, "{value}");
        } else {
            let _ = writeln!(out, "{value}\t{}", c.description.replace(['\n', '\t'], " "));
        }
    }
    let _ = writeln!(out, ":{}", completion.directive);
    out
}

/// Answers a lookup from the kubeconfig or the cluster; `None` when it cannot (no cluster, no
/// permission, timeout): completion then offers nothing rather than an error in the prompt.
pub async fn lookup(request: &Lookup) -> Option<Vec<String>> {
    match request.source {
        Source::Contexts | Source::Clusters | Source::Users => {
            let kubeconfig = match &request.cluster.kubeconfig {
                Some(path) => kube::config::Kubeconfig::read_from(path).ok()?,
                None => kube::config::Kubeconfig::read().ok()?,
            };
            Some(match request.source {
                Source::Contexts => kubeconfig.contexts.into_iter().map(|c| c.name).collect(),
                Source::Clusters => kubeconfig.clusters.into_iter().map(|c| c.name).collect(),
                _ => kubeconfig.auth_infos.into_iter().map(|u| u.name).collect(),
            })
        }
        Source::Namespaces | Source::Pods | Source::ProxyPods => {
            let mut cluster = Cluster::connect(&request.cluster).await.ok()?;
            if request.cluster.request_timeout.is_none() {
                cluster.timeout = LOOKUP_TIMEOUT;
            }
            if request.source == Source::Namespaces {
                return list_namespaces(&cluster).await;
            }
            let namespace = (!request.all_namespaces).then_some(cluster.namespace.as_str());
            let pods = cluster.list_pods(namespace, None).await.ok()?;
            let pods: Vec<(String, String)> = pods
                .into_iter()
                .filter_map(|p| Some((p.metadata.namespace.unwrap_or_default(), p.metadata.name?)))
                .collect();
            Some(pod_values(request.source, request.all_namespaces, &pods))
        }
    }
}

async fn list_namespaces(cluster: &Cluster) -> Option<Vec<String>> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(cluster.client.clone());
    let list = tokio::time::timeout(cluster.timeout, api.list(&kube::api::ListParams::default())).await.ok()?.ok()?;
    Some(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
}

/// The whole hook: completes `words` (the words after `kubectl mesh`), writes cobra's protocol to
/// `out`; returns the exit code (0; kubectl ignores the output of a failed hook).
pub fn hook_main(words: impl IntoIterator<Item = std::ffi::OsString>, out: &mut dyn std::io::Write) -> u8 {
    let words: Vec<String> = words.into_iter().map(|w| w.to_string_lossy().into_owned()).collect();
    let completion = match plan(&words) {
        Plan::Done(c) => c,
        Plan::Lookup(l) => {
            let names = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
                .and_then(|rt| rt.block_on(lookup(&l)));
            finish(&l, names.unwrap_or_default())
        }
    };
    match out.write_all(render(&completion).as_bytes()) {
        Ok(()) => crate::exit::OK,
        Err(_) => crate::exit::FAILED,
    }
}

#[cfg(test)]
mod tests;

//! The command line: subcommands and their flags; [`run`] builds the one async runtime the cluster
//! commands share.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::exit;

/// kubectl mesh: see into an Istio-compatible sidecar data plane.
#[derive(Debug, Parser)]
#[command(name = "kubectl-mesh", bin_name = "kubectl mesh", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the plugin's version.
    Version,
    /// Show the xDS sync status of every injected pod (with POD: istiod vs Envoy config diff).
    ProxyStatus(Box<crate::proxy_status::ProxyStatusArgs>),
    /// Explain Envoy's routing for a pod, or trace one request through it (`--to`).
    Explain(Box<crate::explain::command::ExplainArgs>),
    /// Inject the sidecar into manifests offline, like `istioctl kube-inject`.
    Inject(crate::inject::InjectArgs),
    /// Why a pod is (or is not) injected, and by which webhook.
    CheckInject(Box<crate::check_inject::CheckInjectArgs>),
    /// Print a shell completion script for kubectl-mesh (bash, zsh, fish, powershell).
    Completion(crate::completion::CompletionArgs),
    /// The injectors serving each namespace, and the pods whose sidecar is outdated or missing.
    Injector(crate::injector::InjectorArgs),
}

/// Runs a parsed command line, writing its output to `out`; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Version => {
            writeln!(out, "kubectl-mesh {}", env!("CARGO_PKG_VERSION"))?;
            Ok(exit::OK)
        }
        Command::Completion(args) => {
            crate::completion::script(args.shell, out)?;
            Ok(exit::OK)
        }
        Command::Inject(args) => crate::inject::run(args, out),
        Command::CheckInject(args) if args.file.is_some() => crate::check_inject::run(*args, out),
        Command::CheckInject(args) => runtime()?.block_on(crate::check_inject::live::run(*args, out)),
        Command::ProxyStatus(args) => runtime()?.block_on(crate::proxy_status::run(*args, out)),
        Command::Explain(args) => runtime()?.block_on(crate::explain::command::run(*args, out)),
        Command::Injector(args) => runtime()?.block_on(crate::injector::run(args, out)),
    }
}

/// The runtime of the commands that talk to a cluster (two workers: the calls are I/O bound).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The whole program for `main`: parses `args`, runs, prints errors to `err`; returns the exit
/// code (usage errors [`exit::USAGE`], `--help`/`--version` 0).
pub fn main_with(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{text}");
            } else {
                let _ = write!(out, "{text}");
            }
            return code;
        }
    };
    match run(cli, out) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-mesh").chain(args.iter().copied()))
    }

    #[test]
    fn every_cluster_command_takes_the_cluster_flags() {
        let flags = [
            "--kubeconfig=/k",
            "--context=c",
            "--cluster=k",
            "--user=u",
            "-n",
            "ns",
            "--request-timeout=5s",
            "--as=alice",
            "--as-group=g",
        ];
        for command in
            [&["proxy-status"][..], &["explain", "pod/foo"], &["check-inject", "pod/foo"], &["injector", "list"]]
        {
            let args: Vec<&str> = command.iter().chain(flags.iter()).copied().collect();
            let cluster = match parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
                Command::ProxyStatus(a) => a.cluster,
                Command::Explain(a) => a.cluster,
                Command::CheckInject(a) => a.cluster,
                Command::Injector(crate::injector::InjectorArgs {
                    command: crate::injector::InjectorCommand::List(a),
                }) => a.cluster,
                other => panic!("{other:?}"),
            };
            assert_eq!(cluster.context.as_deref(), Some("c"));
            assert_eq!(cluster.namespace.as_deref(), Some("ns"));
            assert_eq!(cluster.request_timeout, Some(std::time::Duration::from_secs(5)));
            assert_eq!(cluster.as_group, ["g"]);
        }
    }

    /// explain's --timeout took bare seconds only (`--timeout 5s` was a usage error).
    #[test]
    fn explain_timeout_takes_durations() {
        for t in ["5s", "5"] {
            let Command::Explain(a) = parse(&["explain", "pod/foo", "--timeout", t]).unwrap().command else {
                panic!("not explain")
            };
            assert_eq!(a.cluster.request_timeout, Some(std::time::Duration::from_secs(5)));
        }
    }

    #[test]
    fn proxy_status_flags() {
        assert!(parse(&["proxy-status", "-A", "-n", "x"]).is_err());
        let Command::ProxyStatus(a) = parse(&["proxy-status", "-A", "--wait", "--admin-via=proxy"]).unwrap().command
        else {
            panic!("not proxy-status")
        };
        assert_eq!(a.wait, Some(std::time::Duration::from_secs(120)));
        assert_eq!(a.admin_via, crate::cluster::AdminVia::Proxy);
    }

    #[test]
    fn check_inject_takes_one_of_target_labels_or_file() {
        assert!(parse(&["check-inject"]).is_err());
        assert!(parse(&["check-inject", "pod/x", "-l", "a=b"]).is_err());
        assert!(parse(&["check-inject", "-f", "x.yaml"]).is_err(), "-f needs --webhooks");
        assert!(parse(&["check-inject", "pod/x", "--webhooks", "w.yaml"]).is_err());
        assert!(parse(&["check-inject", "-f", "x.yaml", "--webhooks", "w.yaml", "-n", "shop"]).is_ok());
        assert!(parse(&["check-inject", "-n", "shop", "-l", "app=foo"]).is_ok());
        assert!(parse(&["injector", "list", "-A", "-n", "x"]).is_err());
    }

    #[test]
    fn usage_errors_exit_64() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main_with(["kubectl-mesh", "explain", "--nope"].map(Into::into), &mut out, &mut err);
        assert_eq!(code, exit::USAGE);
        assert!(String::from_utf8_lossy(&err).contains("--nope"));
        let code = main_with(["kubectl-mesh", "--version"].map(Into::into), &mut out, &mut err);
        assert_eq!(code, exit::OK);
    }
}

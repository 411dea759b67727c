//! The command line: subcommands, their flags, and the exit codes.

use clap::{Parser, Subcommand};

/// Exit code: success, everything in order.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command itself failed (bad input, unreachable server, ...).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command worked and found a problem (e.g. a proxy that is not synced).
pub const EXIT_PROBLEM: u8 = 2;

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
}

/// Runs a parsed command line, writing its output to `out`; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Version => {
            writeln!(out, "kubectl-mesh {}", env!("CARGO_PKG_VERSION"))?;
            Ok(EXIT_OK)
        }
        Command::ProxyStatus(args) => crate::proxy_status::run(*args, out),
        Command::Explain(args) => crate::explain::command::run(*args, out),
        Command::Inject(args) => crate::inject::run(args, out),
        Command::CheckInject(args) => crate::check_inject::run(*args, out),
    }
}

//! The orchestration: parse, derive facts, render, then print (`--dry-run`), apply, clean up or
//! validate. Maps every failure to an exit code.

use std::io::Write;

use anyhow::Context as _;
use mesh_core::capture::{CaptureConfig, InterceptionMode};

use crate::backend::{self, ApplyOptions, Backend, Outcome};
use crate::command::{Runner, System};
use crate::rules::{self, Family, RuleSet};
use crate::{facts, route, validation};

/// Exit code for bad flags or environment variables (sysexits `EX_USAGE`).
pub const EX_USAGE: i32 = 64;
/// Exit code when `--run-validation` finds that traffic is not captured (as Istio).
pub const EX_VALIDATION: i32 = 126;
/// Exit code for any other failure (applying, cleanup, missing tools or permissions).
pub const EX_FAILURE: i32 = 1;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: i32,
    /// What went wrong, with its causes.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        let error = e.into();
        let code = match error.downcast_ref::<backend::ApplyError>() {
            Some(backend::ApplyError::UnknownBinary { .. }) => EX_USAGE,
            _ => EX_FAILURE,
        };
        Failure { code, error }
    }
}

/// The first lines of `-h`/`--help`; the flag table follows.
const USAGE_HEAD: &str = "\
usage: mesh-init [istio-iptables] [flags]

Programs istio-iptables-compatible traffic capture (iptables or nftables) in the current network
namespace. Takes every istio-iptables flag and environment variable. A flag overrides its
environment variable, which overrides the default. Example:
  -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*' -d 15090,15021,15020

";

/// One row of the `--help` flag table: flags, environment variables, default, meaning.
pub fn help_row(flags: &[String], env: &[&str], default: &str, meaning: &str) -> String {
    let flags = if flags.is_empty() { "(env only)".to_owned() } else { flags.join(", ") };
    let env = if env.is_empty() { String::new() } else { format!(" [env {}]", env.join(", ")) };
    let default = if default.is_empty() { String::new() } else { format!(" (default: {default})") };
    format!("  {flags}{env}\n      {meaning}{default}\n")
}

/// The `-h`/`--help` text: the flag table is `CaptureConfig`'s own ([`mesh_core::capture::flag_docs`]).
pub fn usage() -> String {
    let mut out = String::from(USAGE_HEAD);
    for d in mesh_core::capture::flag_docs() {
        out.push_str(&help_row(&d.flags, &d.env, d.default, d.meaning));
    }
    out.push_str(&help_row(&["-h".into(), "--help".into()], &[], "", "this text"));
    out
}

/// Runs mesh-init with `args` (without the program name) and environment lookup `env`; normal
/// output (`--dry-run`) goes to `out`.
pub fn run(args: &[String], env: impl Fn(&str) -> Option<String>, out: &mut dyn Write) -> Result<(), Failure> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        out.write_all(usage().as_bytes())?;
        return Ok(());
    }
    let cfg = CaptureConfig::from_args_and_env(args, env)
        .map_err(|e| Failure { code: EX_USAGE, error: anyhow::Error::new(e).context("bad arguments") })?;
    init_logging(&cfg);
    execute(&cfg, &System, out)
}

/// Runs an already parsed configuration with `runner`.
pub fn execute(cfg: &CaptureConfig, runner: &dyn Runner, out: &mut dyn Write) -> Result<(), Failure> {
    let backend_of = |runner: &dyn Runner| -> Result<(Backend, Option<Vec<_>>), backend::ApplyError> {
        if cfg.native_nftables {
            Ok((Backend::Nftables, None))
        } else {
            let d = backend::detect(runner, cfg.force_iptables_binary.as_deref(), backend::legacy_tables_listed())?;
            Ok((Backend::Iptables(d.flavor), d.saved))
        }
    };
    backend::parse_forced(cfg.force_iptables_binary.as_deref())?;
    let check_caps = || -> Result<(), backend::ApplyError> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        backend::check_capabilities(&status, !cfg.native_nftables)
    };
    if cfg.cleanup_only {
        check_caps()?;
        let (backend, _) = backend_of(runner)?;
        match backend {
            Backend::Nftables => backend::cleanup_nft(runner)?,
            Backend::Iptables(flavor) => backend::cleanup_iptables(runner, flavor)?,
        };
        route::cleanup(runner, cfg.effective_tproxy_mark(), cfg.effective_tproxy_route_table())?;
        tracing::info!(%backend, outcome = "cleaned", "capture rules removed");
        return Ok(());
    }
    let facts = facts::derive(cfg)?;
    let set = rules::build(cfg, &facts)?;
    if cfg.dry_run {
        out.write_all(dry_run_text(&set, cfg.native_nftables).as_bytes())?;
        return Ok(());
    }
    if !cfg.skip_rule_apply {
        facts::check_owner_groups(cfg)?;
        check_caps()?;
        let start = std::time::Instant::now();
        let (backend, saved) = backend_of(runner)?;
        let opts = ApplyOptions { reconcile: cfg.reconcile, force: cfg.force_apply };
        let outcome = match backend {
            Backend::Nftables => backend::apply_nft(runner, &set, opts)?,
            Backend::Iptables(flavor) => backend::apply_iptables_from(runner, flavor, &set, opts, saved)?,
        };
        if cfg.effective_interception_mode() == InterceptionMode::Tproxy {
            route::setup(runner, &set.families(), cfg.effective_tproxy_mark(), cfg.effective_tproxy_route_table())
                .context("setting up TPROXY routing")?;
        }
        let outcome = match outcome {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Replaced => "replaced",
            Outcome::Cleaned => "cleaned",
        };
        let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(%backend, outcome, ipv6 = set.ipv6, rules = set.rules.len(), elapsed_ms, "capture rules");
    }
    if cfg.run_validation {
        let probe = validation::Probe {
            outbound: cfg.effective_proxy_port(),
            inbound: cfg.effective_inbound_capture_port(),
            probe_port: cfg.effective_iptables_probe_port(),
            uid: cfg.effective_proxy_uids().first().copied().unwrap_or(mesh_core::ports::PROXY_UID),
            gid: cfg.effective_proxy_gids().first().copied().unwrap_or(mesh_core::ports::PROXY_GID),
            timeout: cfg.effective_probe_timeout(),
            ipv6: set.ipv6,
        };
        match validation::validate(probe) {
            Ok(ports) => tracing::info!(?ports, ipv6 = set.ipv6, "validation passed: traffic is captured"),
            Err(e) => {
                return Err(Failure { code: EX_VALIDATION, error: anyhow::Error::new(e).context("validation failed") });
            }
        }
    }
    Ok(())
}

/// What `--dry-run` prints: the iptables-restore input for IPv4, then IPv6 when enabled; or the
/// nft transaction.
pub fn dry_run_text(set: &RuleSet, native_nftables: bool) -> String {
    if native_nftables {
        return rules::nft::transaction(set);
    }
    set.families().into_iter().map(|f: Family| rules::iptables::restore_input(set, f)).collect()
}

fn init_logging(cfg: &CaptureConfig) {
    let level = cfg
        .log_output_level
        .as_deref()
        .and_then(|l| l.split(',').find_map(|scope| scope.split_once(':').map(|(_, lvl)| lvl.to_owned())))
        .unwrap_or_else(|| "info".to_owned());
    let level = match level.as_str() {
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "error" | "fatal" => tracing::Level::ERROR,
        "none" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_max_level(level);
    let _ = if cfg.log_as_json { builder.json().try_init() } else { builder.try_init() };
}

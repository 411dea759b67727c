//! `CaptureConfig`: the traffic-capture settings, as istio-iptables takes them.
//!
//! One type, three users: the webhook renders the `istio-init` arguments with [`CaptureConfig::to_args`],
//! `mesh-init` parses them (and Istio's environment variables) with [`CaptureConfig::from_args_and_env`],
//! and `kubectl mesh explain` reads a pod's capture rules back with [`CaptureConfig::from_args`].
//!
//! Parsing follows Go's pflag, which istio-iptables uses: `-p 15001`, `-p=15001`, `-p15001`,
//! `--envoy-port 15001`, `--envoy-port=15001`; booleans as `--flag` or `--flag=true|false`. Every
//! setting is optional so that rendering gives back exactly the flags that were parsed, in Istio's
//! order; the `effective_*` accessors apply istio-iptables' defaults.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

mod value;

pub use value::{Cidr, CidrList, InterceptionMode, PortList, format_duration, parse_duration};

use crate::ports;

/// The `istio-init` arguments Istio's injector writes for a pod with default settings (after the
/// container's `istio-iptables` command word), the canonical example of the contract.
pub const ISTIO_DEFAULT_INIT_ARGS: [&str; 17] = [
    "istio-iptables",
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

/// The capture settings of one pod, with a lossless round trip to istio-iptables' arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureConfig {
    /// `-p`, `--envoy-port`: where outbound TCP is redirected (default 15001).
    pub proxy_port: Option<u16>,
    /// `-z`, `--inbound-capture-port`: where inbound TCP is redirected (default 15006).
    pub inbound_capture_port: Option<u16>,
    /// `-e`, `--inbound-tunnel-port`: the tunnel port, never captured (default 15008).
    pub inbound_tunnel_port: Option<u16>,
    /// `-u`, `--proxy-uid`: UIDs whose traffic is not captured (default 1337).
    pub proxy_uid: Option<Vec<u32>>,
    /// `-g`, `--proxy-gid`: GIDs whose traffic is not captured (default: the UIDs).
    pub proxy_gid: Option<Vec<u32>>,
    /// `-m`, `--istio-inbound-interception-mode`: REDIRECT (default) or TPROXY.
    pub interception_mode: Option<InterceptionMode>,
    /// `-t`, `--istio-inbound-tproxy-mark`: the packet mark TPROXY uses (default 1337).
    pub inbound_tproxy_mark: Option<u32>,
    /// `-r`, `--istio-inbound-tproxy-route-table`: the routing table TPROXY uses (default 133).
    pub inbound_tproxy_route_table: Option<u32>,
    /// `-b`, `--istio-inbound-ports`: inbound ports to capture; `*` for all, empty for none.
    pub inbound_ports_include: Option<PortList>,
    /// `-d`, `--istio-local-exclude-ports`: inbound ports never captured.
    pub inbound_ports_exclude: Option<PortList>,
    /// `-i`, `--istio-service-cidr`: outbound CIDRs to capture; `*` for all, empty for none.
    pub outbound_ip_ranges_include: Option<CidrList>,
    /// `-x`, `--istio-service-exclude-cidr`: outbound CIDRs never captured.
    pub outbound_ip_ranges_exclude: Option<CidrList>,
    /// `-q`, `--istio-outbound-ports`: outbound ports always captured, whatever the CIDRs say.
    pub outbound_ports_include: Option<PortList>,
    /// `-o`, `--istio-local-outbound-ports-exclude`: outbound ports never captured.
    pub outbound_ports_exclude: Option<PortList>,
    /// `-k`, `--kube-virt-interfaces`: virtual interfaces whose traffic is captured as outbound.
    pub kube_virt_interfaces: Option<Vec<String>>,
    /// `-c`, `--istio-exclude-interfaces`: interfaces excluded from capture.
    pub exclude_interfaces: Option<Vec<String>>,
    /// `-n`, `--dry-run`: print the rules instead of applying them.
    pub dry_run: bool,
    /// `--redirect-dns` (env `REDIRECT_DNS`, `ISTIO_META_DNS_CAPTURE`): capture DNS to the agent.
    pub redirect_dns: bool,
    /// `--capture-all-dns`: capture all DNS, not only to the resolv.conf servers.
    pub capture_all_dns: bool,
    /// `--drop-invalid` (env `DROP_INVALID`, `INVALID_DROP`): drop conntrack-INVALID packets.
    pub drop_invalid: bool,
    /// `--dual-stack` (env `DUAL_STACK`, `ISTIO_DUAL_STACK`): dual-stack mode.
    pub dual_stack: bool,
    /// `--skip-rule-apply`: skip applying rules (validation only).
    pub skip_rule_apply: bool,
    /// `--run-validation`: validate that capture works instead of programming it.
    pub run_validation: bool,
    /// `--probe-timeout`: how long validation waits (default 5s).
    pub probe_timeout: Option<Duration>,
    /// `--iptables-probe-port`: the port validation dials (default 15002).
    pub iptables_probe_port: Option<u16>,
    /// `--reconcile`: replace different rules already present instead of failing.
    pub reconcile: bool,
    /// `--cleanup-only`: remove everything mesh-init owns, then stop.
    pub cleanup_only: bool,
    /// `--force-apply`: apply even when the rules look present.
    pub force_apply: bool,
    /// `--native-nftables`: program nftables directly instead of iptables.
    pub native_nftables: bool,
    /// `--force-iptables-binary` (env `FORCE_IPTABLES_BINARY`): `iptables-legacy` or `iptables-nft`.
    pub force_iptables_binary: Option<String>,
    /// Env `ISTIO_OUTBOUND_OWNER_GROUPS`: only these groups' traffic is captured (`*` for all).
    pub outbound_owner_groups: Option<Vec<String>>,
    /// Env `ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE`: these groups' traffic is never captured.
    pub outbound_owner_groups_exclude: Option<Vec<String>>,
    /// Env `ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR`: the IPv4 loopback range (default 127.0.0.1/32).
    pub outbound_ipv4_loopback_cidr: Option<Cidr>,
    /// `--log_output_level`: Istio's logging scopes, e.g. `default:info`.
    pub log_output_level: Option<String>,
    /// `--log_as_json`: structured logs.
    pub log_as_json: bool,
}

/// Errors parsing istio-iptables arguments or environment variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// A flag istio-iptables does not have.
    #[error("unknown flag {flag:?}")]
    UnknownFlag {
        /// The flag as given.
        flag: String,
    },
    /// A flag that takes a value came last, without one.
    #[error("flag {flag} needs a value")]
    MissingValue {
        /// The flag, with its short and long names.
        flag: String,
    },
    /// A value that does not parse.
    #[error("invalid value for {flag}: {value:?}: {reason}")]
    InvalidValue {
        /// The flag (or `env NAME`) that carried it.
        flag: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A positional argument; istio-iptables takes none (a leading `istio-iptables` is allowed).
    #[error("unexpected argument {arg:?}: istio-iptables takes only flags")]
    UnexpectedArgument {
        /// The argument as given.
        arg: String,
    },
}

/// Which setting a flag or environment variable carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    ProxyPort,
    InboundCapturePort,
    InboundTunnelPort,
    ProxyUid,
    ProxyGid,
    InterceptionMode,
    TproxyMark,
    TproxyRouteTable,
    InboundPortsInclude,
    InboundPortsExclude,
    OutboundIpRangesInclude,
    OutboundIpRangesExclude,
    OutboundPortsInclude,
    OutboundPortsExclude,
    KubeVirtInterfaces,
    ExcludeInterfaces,
    DryRun,
    RedirectDns,
    CaptureAllDns,
    DropInvalid,
    DualStack,
    SkipRuleApply,
    RunValidation,
    ProbeTimeout,
    IptablesProbePort,
    Reconcile,
    CleanupOnly,
    ForceApply,
    NativeNftables,
    ForceIptablesBinary,
    OwnerGroups,
    OwnerGroupsExclude,
    LoopbackCidr,
    LogOutputLevel,
    LogAsJson,
}

/// One istio-iptables setting: its flag names, its environment variables, and whether it is a switch.
struct Spec {
    key: Key,
    short: Option<char>,
    /// Long flag name without dashes; empty for environment-only settings.
    long: &'static str,
    env: &'static [&'static str],
    switch: bool,
}

const fn spec(key: Key, short: Option<char>, long: &'static str, env: &'static [&'static str], switch: bool) -> Spec {
    Spec { key, short, long, env, switch }
}

/// Every setting, in the order Istio's injector writes them (the render order); settings the injector
/// never writes come last.
const SPECS: &[Spec] = &[
    spec(Key::ProxyPort, Some('p'), "envoy-port", &["ENVOY_PORT"], false),
    spec(Key::InboundCapturePort, Some('z'), "inbound-capture-port", &["INBOUND_CAPTURE_PORT"], false),
    spec(Key::ProxyUid, Some('u'), "proxy-uid", &["PROXY_UID"], false),
    spec(Key::InterceptionMode, Some('m'), "istio-inbound-interception-mode", &["INBOUND_INTERCEPTION_MODE"], false),
    spec(Key::OutboundIpRangesInclude, Some('i'), "istio-service-cidr", &["ISTIO_SERVICE_CIDR"], false),
    spec(Key::OutboundIpRangesExclude, Some('x'), "istio-service-exclude-cidr", &["ISTIO_SERVICE_EXCLUDE_CIDR"], false),
    spec(Key::InboundPortsInclude, Some('b'), "istio-inbound-ports", &["ISTIO_INBOUND_PORTS"], false),
    spec(Key::InboundPortsExclude, Some('d'), "istio-local-exclude-ports", &["ISTIO_LOCAL_EXCLUDE_PORTS"], false),
    spec(Key::OutboundPortsInclude, Some('q'), "istio-outbound-ports", &["ISTIO_OUTBOUND_PORTS"], false),
    spec(
        Key::OutboundPortsExclude,
        Some('o'),
        "istio-local-outbound-ports-exclude",
        &["ISTIO_LOCAL_OUTBOUND_PORTS_EXCLUDE"],
        false,
    ),
    spec(Key::KubeVirtInterfaces, Some('k'), "kube-virt-interfaces", &["KUBE_VIRT_INTERFACES"], false),
    spec(Key::ExcludeInterfaces, Some('c'), "istio-exclude-interfaces", &["ISTIO_EXCLUDE_INTERFACES"], false),
    spec(Key::LogOutputLevel, None, "log_output_level", &[], false),
    spec(Key::LogAsJson, None, "log_as_json", &[], true),
    spec(Key::RunValidation, None, "run-validation", &["RUN_VALIDATION"], true),
    spec(Key::SkipRuleApply, None, "skip-rule-apply", &["SKIP_RULE_APPLY"], true),
    spec(Key::ForceApply, None, "force-apply", &["FORCE_APPLY"], true),
    spec(Key::NativeNftables, None, "native-nftables", &["NATIVE_NFTABLES"], true),
    spec(Key::InboundTunnelPort, Some('e'), "inbound-tunnel-port", &["INBOUND_TUNNEL_PORT"], false),
    spec(Key::ProxyGid, Some('g'), "proxy-gid", &["PROXY_GID"], false),
    spec(Key::TproxyMark, Some('t'), "istio-inbound-tproxy-mark", &["INBOUND_TPROXY_MARK"], false),
    spec(Key::TproxyRouteTable, Some('r'), "istio-inbound-tproxy-route-table", &["INBOUND_TPROXY_ROUTE_TABLE"], false),
    spec(Key::DryRun, Some('n'), "dry-run", &["DRY_RUN"], true),
    spec(Key::RedirectDns, None, "redirect-dns", &["REDIRECT_DNS", "ISTIO_META_DNS_CAPTURE"], true),
    spec(Key::CaptureAllDns, None, "capture-all-dns", &["CAPTURE_ALL_DNS"], true),
    spec(Key::DropInvalid, None, "drop-invalid", &["DROP_INVALID", "INVALID_DROP"], true),
    spec(Key::DualStack, None, "dual-stack", &["DUAL_STACK", "ISTIO_DUAL_STACK"], true),
    spec(Key::ProbeTimeout, None, "probe-timeout", &["PROBE_TIMEOUT"], false),
    spec(Key::IptablesProbePort, None, "iptables-probe-port", &["IPTABLES_PROBE_PORT"], false),
    spec(Key::Reconcile, None, "reconcile", &["RECONCILE"], true),
    spec(Key::CleanupOnly, None, "cleanup-only", &["CLEANUP_ONLY"], true),
    spec(Key::ForceIptablesBinary, None, "force-iptables-binary", &["FORCE_IPTABLES_BINARY"], false),
    spec(Key::OwnerGroups, None, "", &["ISTIO_OUTBOUND_OWNER_GROUPS"], false),
    spec(Key::OwnerGroupsExclude, None, "", &["ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE"], false),
    spec(Key::LoopbackCidr, None, "", &["ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR"], false),
];

/// The default and meaning of a setting, as `mesh-init --help` and docs/init.md show them.
fn describe(key: Key) -> (&'static str, &'static str) {
    match key {
        Key::ProxyPort => ("15001", "outbound capture port"),
        Key::InboundCapturePort => ("15006", "inbound capture port"),
        Key::InboundTunnelPort => ("15008", "tunnel port, never captured"),
        Key::ProxyUid => ("1337", "UIDs whose traffic is not captured (comma list)"),
        Key::ProxyGid => ("the UIDs", "GIDs whose traffic is not captured"),
        Key::InterceptionMode => ("REDIRECT", "REDIRECT or TPROXY"),
        Key::TproxyMark => ("1337", "TPROXY packet mark"),
        Key::TproxyRouteTable => ("133", "TPROXY routing table"),
        Key::InboundPortsInclude => ("empty", "inbound ports to capture, * for all"),
        Key::InboundPortsExclude => ("empty", "inbound ports never captured (used with -b '*')"),
        Key::OutboundIpRangesInclude => ("empty", "outbound CIDRs to capture, * for all"),
        Key::OutboundIpRangesExclude => ("empty", "outbound CIDRs never captured (* is rejected)"),
        Key::OutboundPortsInclude => ("empty", "outbound ports always captured"),
        Key::OutboundPortsExclude => ("empty", "outbound ports never captured"),
        Key::KubeVirtInterfaces => ("empty", "virtual interfaces (KubeVirt) treated as outbound"),
        Key::ExcludeInterfaces => ("empty", "interfaces that are never captured"),
        Key::DryRun => ("false", "print the rules, change nothing"),
        Key::RedirectDns => ("false", "capture DNS to the agent (15053)"),
        Key::CaptureAllDns => ("false", "capture all DNS, not only traffic to the resolv.conf servers"),
        Key::DropInvalid => ("false", "drop packets that conntrack marks INVALID"),
        Key::DualStack => ("false", "turn IPv6 on when any global IPv6 address exists"),
        Key::SkipRuleApply => ("false", "apply nothing (use with --run-validation)"),
        Key::RunValidation => ("false", "check that capture works, for IPv4 and (when programmed) IPv6"),
        Key::ProbeTimeout => ("5s", "how long validation waits"),
        Key::IptablesProbePort => ("15002", "the port validation connects to"),
        Key::Reconcile => ("false", "replace different capture rules that are already present"),
        Key::CleanupOnly => ("false", "remove everything mesh-init owns, then exit"),
        Key::ForceApply => ("false", "re-apply even when the rules are already present"),
        Key::NativeNftables => ("false", "use nft (inet tables) instead of iptables"),
        Key::ForceIptablesBinary => ("detected", "iptables-legacy, iptables-nft or iptables"),
        Key::OwnerGroups => ("*", "capture only these groups' traffic (names or GIDs)"),
        Key::OwnerGroupsExclude => ("empty", "never capture these groups' traffic"),
        Key::LoopbackCidr => ("127.0.0.1/32", "the IPv4 loopback range"),
        Key::LogOutputLevel => {
            ("default:info", "Istio's log scopes; the level after : is used (debug, info, warn, error)")
        }
        Key::LogAsJson => ("false", "JSON logs on stderr"),
    }
}

/// One row of mesh-init's flag table, built from the same table the parser reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagDoc {
    /// The flags, e.g. `["-p", "--envoy-port"]`; empty for environment-only settings.
    pub flags: Vec<String>,
    /// The environment variables, in lookup order.
    pub env: Vec<&'static str>,
    /// The default, in words.
    pub default: &'static str,
    /// What the setting does.
    pub meaning: &'static str,
}

/// Every setting `CaptureConfig` parses, with its default and meaning, in table order: flags
/// first (as Istio's injector writes them), environment-only settings last.
pub fn flag_docs() -> Vec<FlagDoc> {
    SPECS
        .iter()
        .map(|s| {
            let mut flags: Vec<String> = s.short.map(|c| format!("-{c}")).into_iter().collect();
            if !s.long.is_empty() {
                flags.push(format!("--{}", s.long));
            }
            let (default, meaning) = describe(s.key);
            FlagDoc { flags, env: s.env.to_vec(), default, meaning }
        })
        .collect()
}

impl Spec {
    /// How errors name this setting: `-b/--istio-inbound-ports`, `--dry-run` or `env NAME`.
    fn label(&self) -> String {
        match (self.short, self.long) {
            (_, "") => format!("env {}", self.env.first().copied().unwrap_or_default()),
            (Some(s), long) => format!("-{s}/--{long}"),
            (None, long) => format!("--{long}"),
        }
    }
}

impl CaptureConfig {
    /// Parses istio-iptables arguments (a leading `istio-iptables` is ignored). No environment.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Self, CaptureError> {
        Self::from_args_and_env(args, |_| None)
    }

    /// Parses arguments over environment variables, as istio-iptables does: a flag wins over its
    /// environment variable, which wins over the default. `env` looks a variable up.
    pub fn from_args_and_env<S: AsRef<str>>(
        args: &[S],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CaptureError> {
        let mut cfg = CaptureConfig::default();
        for spec in SPECS {
            if let Some((name, value)) = spec.env.iter().find_map(|name| env(name).map(|v| (*name, v))) {
                let label = format!("env {name}");
                if spec.switch {
                    let on = parse_bool(&value).ok_or_else(|| invalid(&label, &value, "not a boolean"))?;
                    cfg.set_switch(spec.key, on);
                } else {
                    cfg.set_value(spec.key, &label, &value)?;
                }
            }
        }
        let mut args = args.iter().map(AsRef::as_ref).peekable();
        if args.peek() == Some(&"istio-iptables") {
            args.next();
        }
        while let Some(arg) = args.next() {
            let (spec, inline) = lookup(arg)?;
            if spec.switch {
                let on = match inline {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| invalid(&spec.label(), v, "not a boolean"))?,
                };
                cfg.set_switch(spec.key, on);
            } else {
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| CaptureError::MissingValue { flag: spec.label() })?,
                };
                cfg.set_value(spec.key, &spec.label(), value)?;
            }
        }
        Ok(cfg)
    }

    /// Renders the arguments, in the order Istio's injector writes them, short forms first and long
    /// flags after. Settings that are unset are left out; env-only settings are never rendered.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for spec in SPECS.iter().filter(|s| !s.long.is_empty()) {
            if spec.switch {
                if self.switch(spec.key) {
                    out.push(format!("--{}", spec.long));
                }
            } else if let Some(value) = self.value(spec.key) {
                match spec.short {
                    Some(short) => {
                        out.push(format!("-{short}"));
                        out.push(value);
                    }
                    None => out.push(format!("--{}={value}", spec.long)),
                }
            }
        }
        out
    }

    /// The environment-only settings as `(NAME, value)` pairs, for an init container's `env`.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        SPECS.iter().filter(|s| s.long.is_empty()).filter_map(|s| Some((s.env[0], self.value(s.key)?))).collect()
    }

    /// The outbound capture port (default 15001).
    pub fn effective_proxy_port(&self) -> u16 {
        self.proxy_port.unwrap_or(ports::OUTBOUND_CAPTURE)
    }

    /// The inbound capture port (default 15006).
    pub fn effective_inbound_capture_port(&self) -> u16 {
        self.inbound_capture_port.unwrap_or(ports::INBOUND_CAPTURE)
    }

    /// The tunnel port (default 15008).
    pub fn effective_inbound_tunnel_port(&self) -> u16 {
        self.inbound_tunnel_port.unwrap_or(ports::TUNNEL)
    }

    /// The UIDs whose traffic bypasses capture (default 1337).
    pub fn effective_proxy_uids(&self) -> Vec<u32> {
        self.proxy_uid.clone().unwrap_or_else(|| vec![ports::PROXY_UID])
    }

    /// The GIDs whose traffic bypasses capture (default: the UIDs, as in istio-iptables).
    pub fn effective_proxy_gids(&self) -> Vec<u32> {
        self.proxy_gid.clone().unwrap_or_else(|| self.effective_proxy_uids())
    }

    /// The inbound interception mode (default REDIRECT).
    pub fn effective_interception_mode(&self) -> InterceptionMode {
        self.interception_mode.unwrap_or(InterceptionMode::Redirect)
    }

    /// The TPROXY mark (default 1337).
    pub fn effective_tproxy_mark(&self) -> u32 {
        self.inbound_tproxy_mark.unwrap_or(1337)
    }

    /// The TPROXY routing table (default 133).
    pub fn effective_tproxy_route_table(&self) -> u32 {
        self.inbound_tproxy_route_table.unwrap_or(133)
    }

    /// How long validation waits (default 5 s).
    pub fn effective_probe_timeout(&self) -> Duration {
        self.probe_timeout.unwrap_or(Duration::from_secs(5))
    }

    /// The port validation dials (default 15002).
    pub fn effective_iptables_probe_port(&self) -> u16 {
        self.iptables_probe_port.unwrap_or(ports::IPTABLES_PROBE)
    }

    /// The IPv4 loopback range (default 127.0.0.1/32).
    pub fn effective_loopback_cidr(&self) -> Cidr {
        self.outbound_ipv4_loopback_cidr.unwrap_or(Cidr { addr: IpAddr::from([127, 0, 0, 1]), prefix: 32 })
    }

    /// Whether an outbound TCP connection from `uid`/`gid` to `dst:port` is redirected to the proxy.
    /// Follows istio-iptables' REDIRECT rules for the `ISTIO_OUTPUT` chain; the caller decides
    /// loopback and interface questions. Owner-group rules are not evaluated.
    pub fn captures_outbound(&self, uid: u32, gid: u32, dst: IpAddr, port: u16) -> OutboundVerdict {
        if self.effective_proxy_uids().contains(&uid) {
            return OutboundVerdict::BypassProxyUid(uid);
        }
        if self.effective_proxy_gids().contains(&gid) {
            return OutboundVerdict::BypassProxyGid(gid);
        }
        if let Some(PortList::List(ports)) = &self.outbound_ports_exclude
            && ports.contains(&port)
        {
            return OutboundVerdict::BypassExcludedPort(port);
        }
        if let Some(PortList::List(ports)) = &self.outbound_ports_include
            && ports.contains(&port)
        {
            return OutboundVerdict::Captured;
        }
        if let Some(CidrList::List(cidrs)) = &self.outbound_ip_ranges_exclude
            && let Some(c) = cidrs.iter().find(|c| c.contains(dst))
        {
            return OutboundVerdict::BypassExcludedCidr(*c);
        }
        match &self.outbound_ip_ranges_include {
            Some(CidrList::All) => OutboundVerdict::Captured,
            Some(CidrList::List(cidrs)) => match cidrs.iter().find(|c| c.contains(dst)) {
                Some(_) => OutboundVerdict::Captured,
                None => OutboundVerdict::BypassNotIncluded,
            },
            None => OutboundVerdict::BypassNotIncluded,
        }
    }

    /// Whether inbound TCP to `port` is redirected to the inbound capture port.
    pub fn captures_inbound(&self, port: u16) -> bool {
        if let Some(PortList::List(ports)) = &self.inbound_ports_exclude
            && ports.contains(&port)
        {
            return false;
        }
        if port == self.effective_inbound_tunnel_port() {
            return false;
        }
        match &self.inbound_ports_include {
            Some(PortList::All) => true,
            Some(PortList::List(ports)) => ports.contains(&port),
            None => false,
        }
    }

    fn switch(&self, key: Key) -> bool {
        match key {
            Key::DryRun => self.dry_run,
            Key::RedirectDns => self.redirect_dns,
            Key::CaptureAllDns => self.capture_all_dns,
            Key::DropInvalid => self.drop_invalid,
            Key::DualStack => self.dual_stack,
            Key::SkipRuleApply => self.skip_rule_apply,
            Key::RunValidation => self.run_validation,
            Key::Reconcile => self.reconcile,
            Key::CleanupOnly => self.cleanup_only,
            Key::ForceApply => self.force_apply,
            Key::NativeNftables => self.native_nftables,
            Key::LogAsJson => self.log_as_json,
            _ => false,
        }
    }

    fn set_switch(&mut self, key: Key, on: bool) {
        let field = match key {
            Key::DryRun => &mut self.dry_run,
            Key::RedirectDns => &mut self.redirect_dns,
            Key::CaptureAllDns => &mut self.capture_all_dns,
            Key::DropInvalid => &mut self.drop_invalid,
            Key::DualStack => &mut self.dual_stack,
            Key::SkipRuleApply => &mut self.skip_rule_apply,
            Key::RunValidation => &mut self.run_validation,
            Key::Reconcile => &mut self.reconcile,
            Key::CleanupOnly => &mut self.cleanup_only,
            Key::ForceApply => &mut self.force_apply,
            Key::NativeNftables => &mut self.native_nftables,
            Key::LogAsJson => &mut self.log_as_json,
            _ => return,
        };
        *field = on;
    }

    fn value(&self, key: Key) -> Option<String> {
        fn join<T: fmt::Display>(items: &[T]) -> String {
            items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
        match key {
            Key::ProxyPort => self.proxy_port.map(|v| v.to_string()),
            Key::InboundCapturePort => self.inbound_capture_port.map(|v| v.to_string()),
            Key::InboundTunnelPort => self.inbound_tunnel_port.map(|v| v.to_string()),
            Key::ProxyUid => self.proxy_uid.as_deref().map(join),
            Key::ProxyGid => self.proxy_gid.as_deref().map(join),
            Key::InterceptionMode => self.interception_mode.map(|m| m.to_string()),
            Key::TproxyMark => self.inbound_tproxy_mark.map(|v| v.to_string()),
            Key::TproxyRouteTable => self.inbound_tproxy_route_table.map(|v| v.to_string()),
            Key::InboundPortsInclude => self.inbound_ports_include.as_ref().map(ToString::to_string),
            Key::InboundPortsExclude => self.inbound_ports_exclude.as_ref().map(ToString::to_string),
            Key::OutboundIpRangesInclude => self.outbound_ip_ranges_include.as_ref().map(ToString::to_string),
            Key::OutboundIpRangesExclude => self.outbound_ip_ranges_exclude.as_ref().map(ToString::to_string),
            Key::OutboundPortsInclude => self.outbound_ports_include.as_ref().map(ToString::to_string),
            Key::OutboundPortsExclude => self.outbound_ports_exclude.as_ref().map(ToString::to_string),
            Key::KubeVirtInterfaces => self.kube_virt_interfaces.as_deref().map(join),
            Key::ExcludeInterfaces => self.exclude_interfaces.as_deref().map(join),
            Key::ProbeTimeout => self.probe_timeout.map(format_duration),
            Key::IptablesProbePort => self.iptables_probe_port.map(|v| v.to_string()),
            Key::ForceIptablesBinary => self.force_iptables_binary.clone(),
            Key::OwnerGroups => self.outbound_owner_groups.as_deref().map(join),
            Key::OwnerGroupsExclude => self.outbound_owner_groups_exclude.as_deref().map(join),
            Key::LoopbackCidr => self.outbound_ipv4_loopback_cidr.map(|c| c.to_string()),
            Key::LogOutputLevel => self.log_output_level.clone(),
            _ => None,
        }
    }

    fn set_value(&mut self, key: Key, label: &str, value: &str) -> Result<(), CaptureError> {
        let bad = |reason: String| invalid(label, value, &reason);
        let port = |v: &str| parse_port(v).map_err(&bad);
        let number = |v: &str| v.trim().parse::<u32>().map_err(|_| bad(format!("{v:?} is not a number")));
        match key {
            Key::ProxyPort => self.proxy_port = Some(port(value)?),
            Key::InboundCapturePort => self.inbound_capture_port = Some(port(value)?),
            Key::InboundTunnelPort => self.inbound_tunnel_port = Some(port(value)?),
            Key::ProxyUid => self.proxy_uid = Some(parse_ids(value).map_err(&bad)?),
            Key::ProxyGid => self.proxy_gid = Some(parse_ids(value).map_err(&bad)?),
            Key::InterceptionMode => {
                self.interception_mode = Some(InterceptionMode::from_str(value).map_err(&bad)?);
            }
            Key::TproxyMark => self.inbound_tproxy_mark = Some(number(value)?),
            Key::TproxyRouteTable => self.inbound_tproxy_route_table = Some(number(value)?),
            Key::InboundPortsInclude => self.inbound_ports_include = Some(value.parse().map_err(&bad)?),
            Key::InboundPortsExclude => self.inbound_ports_exclude = Some(value.parse().map_err(&bad)?),
            Key::OutboundIpRangesInclude => self.outbound_ip_ranges_include = Some(value.parse().map_err(&bad)?),
            Key::OutboundIpRangesExclude => self.outbound_ip_ranges_exclude = Some(value.parse().map_err(&bad)?),
            Key::OutboundPortsInclude => self.outbound_ports_include = Some(value.parse().map_err(&bad)?),
            Key::OutboundPortsExclude => self.outbound_ports_exclude = Some(value.parse().map_err(&bad)?),
            Key::KubeVirtInterfaces => self.kube_virt_interfaces = Some(split_list(value)),
            Key::ExcludeInterfaces => self.exclude_interfaces = Some(split_list(value)),
            Key::ProbeTimeout => self.probe_timeout = Some(parse_duration(value).map_err(&bad)?),
            Key::IptablesProbePort => self.iptables_probe_port = Some(port(value)?),
            Key::ForceIptablesBinary => self.force_iptables_binary = Some(value.to_owned()),
            Key::OwnerGroups => self.outbound_owner_groups = Some(split_list(value)),
            Key::OwnerGroupsExclude => self.outbound_owner_groups_exclude = Some(split_list(value)),
            Key::LoopbackCidr => self.outbound_ipv4_loopback_cidr = Some(parse_v4_cidr(value).map_err(&bad)?),
            Key::LogOutputLevel => self.log_output_level = Some(value.to_owned()),
            _ => return Err(bad("not a value setting".into())),
        }
        Ok(())
    }
}

/// Why [`CaptureConfig::captures_outbound`] decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundVerdict {
    /// Redirected to the outbound capture port.
    Captured,
    /// Sent directly: the UID is the proxy's.
    BypassProxyUid(u32),
    /// Sent directly: the GID is the proxy's.
    BypassProxyGid(u32),
    /// Sent directly: the port is in `-o`.
    BypassExcludedPort(u16),
    /// Sent directly: the destination is in a `-x` CIDR.
    BypassExcludedCidr(Cidr),
    /// Sent directly: the destination is in no `-i` CIDR.
    BypassNotIncluded,
}

/// Finds the spec of a flag argument; returns it with an inline `=value` (or `-pVALUE`) if any.
fn lookup(arg: &str) -> Result<(&'static Spec, Option<&str>), CaptureError> {
    let unknown = || CaptureError::UnknownFlag { flag: arg.to_owned() };
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let spec = SPECS.iter().find(|s| !s.long.is_empty() && s.long == name).ok_or_else(unknown)?;
        Ok((spec, inline))
    } else if let Some(short) = arg.strip_prefix('-') {
        let mut chars = short.chars();
        let c = chars.next().ok_or_else(unknown)?;
        let spec = SPECS.iter().find(|s| s.short == Some(c)).ok_or_else(unknown)?;
        let rest = chars.as_str();
        let inline = match rest.strip_prefix('=') {
            Some(v) => Some(v),
            None if rest.is_empty() => None,
            None if spec.switch => return Err(unknown()),
            None => Some(rest),
        };
        Ok((spec, inline))
    } else {
        Err(CaptureError::UnexpectedArgument { arg: arg.to_owned() })
    }
}

fn invalid(flag: &str, value: &str, reason: &str) -> CaptureError {
    CaptureError::InvalidValue { flag: flag.to_owned(), value: value.to_owned(), reason: reason.to_owned() }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A TCP port, 1 to 65535 (0 is accepted too: istio-iptables treats it as unset).
pub fn parse_port(v: &str) -> Result<u16, String> {
    v.trim().parse::<u16>().map_err(|_| format!("{:?} is not a port", v.trim()))
}

fn parse_ids(v: &str) -> Result<Vec<u32>, String> {
    split_list(v).iter().map(|id| id.parse::<u32>().map_err(|_| format!("{id:?} is not a numeric id"))).collect()
}

fn parse_v4_cidr(v: &str) -> Result<Cidr, String> {
    let cidr: Cidr = v.trim().parse()?;
    if !cidr.addr.is_ipv4() {
        return Err(format!("{:?} is not an IPv4 CIDR", v.trim()));
    }
    Ok(cidr)
}

/// Splits a comma-separated list, trimming entries and dropping empty ones (as istio-iptables does).
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests;

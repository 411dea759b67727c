//! mesh-init's apply semantics in real network namespaces: --dry-run prints exactly what is
//! applied and changes nothing, different rules fail without --reconcile and are replaced with it,
//! --cleanup-only removes everything (rules, chains, tables, TPROXY ip rules), --run-validation
//! passes with capture and exits 126 without, and errors name the missing capability or binary.

use std::process::Output;

use anyhow::{Context, Result, ensure};
use mesh_tests::netns::{self, Netns};

const DEFAULTS: [&str; 17] = mesh_core::capture::ISTIO_DEFAULT_INIT_ARGS;

fn ns(name: &str) -> Result<Netns> {
    netns::require_root_and_tools()?;
    Netns::create(&format!("{name}-{}", std::process::id()))
}

fn mesh_init(ns: &Netns, args: &[&str]) -> Result<Output> {
    let bin = netns::mesh_init_bin()?;
    ns.exec(bin.to_str().context("binary path")?, args)
}

fn ok(ns: &Netns, args: &[&str]) -> Result<String> {
    let out = mesh_init(ns, args)?;
    ensure!(out.status.success(), "mesh-init {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    DEFAULTS.iter().chain(extra).copied().collect()
}

fn state(ns: &Netns, nft: bool) -> Result<String> {
    state_of(ns, nft, "")
}

/// The ruleset (nft, or iptables of `flavor`: "", "-legacy", "-nft") plus the ip rules.
fn state_of(ns: &Netns, nft: bool, flavor: &str) -> Result<String> {
    Ok(if nft { netns::nft_state(ns)? } else { netns::iptables_state_of(ns, flavor)? } + &netns::ip_rules(ns)?)
}

fn dry_run_is_what_gets_applied(nft: bool) -> Result<()> {
    let extra: &[&'static str] = if nft { &["--native-nftables"] } else { &[] };
    let printed_ns = ns(&format!("mia-dry{}", u8::from(nft)))?;
    let applied_ns = ns(&format!("mia-app{}", u8::from(nft)))?;
    let empty = state(&printed_ns, nft)?;
    let text = ok(&printed_ns, &[with(extra), vec!["--dry-run"]].concat())?;
    ensure!(state(&printed_ns, nft)? == empty, "--dry-run changed the namespace");
    // Apply the printed text by hand in the same namespace; it must equal mesh-init's own apply.
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &text)?;
    let path = file.path().to_str().context("temp path")?;
    if nft {
        printed_ns.exec_ok("nft", &["-f", path])?;
    } else {
        printed_ns.exec_ok("sh", &["-c", &format!("iptables-restore --noflush < {path}")])?;
    }
    ok(&applied_ns, &with(extra))?;
    ensure!(state(&printed_ns, nft)? == state(&applied_ns, nft)?, "dry-run text differs from what is applied:\n{text}");
    Ok(())
}

#[test]
fn dry_run_prints_exactly_what_iptables_applies() -> Result<()> {
    dry_run_is_what_gets_applied(false)
}

#[test]
fn dry_run_prints_exactly_what_nft_applies() -> Result<()> {
    dry_run_is_what_gets_applied(true)
}

fn reconcile_and_cleanup(tag: &str, nft: bool, flavor: &'static str) -> Result<()> {
    let mut extra: Vec<&'static str> = vec![];
    if nft {
        extra.push("--native-nftables");
    } else {
        extra.push(flavor);
    }
    let saver = if flavor.ends_with("legacy") {
        "-legacy"
    } else if flavor.ends_with("nft") {
        "-nft"
    } else {
        ""
    };
    let state = |ns: &Netns, nft: bool| state_of(ns, nft, saver);
    let pod = ns(tag)?;
    let fresh = ns(&format!("{tag}f"))?;
    let old = [with(&extra), vec!["-m", "TPROXY"]].concat();
    let new = [with(&extra), vec!["-d", "15090"]].concat();
    ok(&pod, &old)?;
    let old_state = state(&pod, nft)?;
    ensure!(old_state.contains("fwmark 0x539 lookup 133"), "TPROXY ip rule missing:\n{old_state}");
    // Different rules present: a clear error, nothing changed.
    let out = mesh_init(&pod, &new)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "expected failure, got {:?}: {stderr}", out.status);
    ensure!(
        stderr.contains("different capture rules are already present") && stderr.contains("--reconcile"),
        "{stderr}"
    );
    ensure!(state(&pod, nft)? == old_state, "a failed apply changed the rules");
    // --reconcile replaces them: the result equals a fresh apply (except the TPROXY ip rule,
    // which only --cleanup-only removes).
    ok(&pod, &[new.clone(), vec!["--reconcile"]].concat())?;
    ok(&fresh, &new)?;
    // iptables: compare the chains and rules (an emptied built-in table may stay listed).
    let rules = |s: String| {
        s.lines()
            .filter(|l| !l.contains("lookup"))
            .filter(|l| nft || l.starts_with("-A ") || l.starts_with(":ISTIO"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (got, want) = (rules(state(&pod, nft)?), rules(state(&fresh, nft)?));
    ensure!(got == want, "reconciled state differs from a fresh apply:\n--- reconciled\n{got}\n--- fresh\n{want}");
    // --cleanup-only removes everything mesh-init owns.
    ok(&pod, &[&extra[..], &["--cleanup-only"]].concat())?;
    let after = state(&pod, nft)?;
    ensure!(!after.contains("ISTIO") && !after.contains("istio-proxy"), "rules left after cleanup:\n{after}");
    ensure!(!after.contains("fwmark"), "TPROXY ip rule left after cleanup:\n{after}");
    Ok(())
}

#[test]
fn reconcile_and_cleanup_iptables_nft() -> Result<()> {
    reconcile_and_cleanup("mia-rnft", false, "--force-iptables-binary=iptables-nft")
}

#[test]
fn reconcile_and_cleanup_iptables_legacy() -> Result<()> {
    let pod = ns("mia-leg")?;
    ok(&pod, &with(&["--force-iptables-binary=iptables-legacy"]))?;
    let legacy = netns::iptables_state_of(&pod, "-legacy")?;
    ensure!(legacy.contains(":ISTIO_OUTPUT"), "legacy backend not used:\n{legacy}");
    // Without the flag, detection finds the rules in legacy and leaves them (no nft copy).
    ok(&pod, &with(&[]))?;
    ensure!(netns::iptables_state_of(&pod, "-legacy")? == legacy, "legacy rules changed by a detected re-run");
    let nft = pod.exec_ok("iptables-nft-save", &[])?;
    ensure!(!nft.contains("ISTIO"), "detection picked nft although legacy holds the rules:\n{nft}");
    drop(pod);
    reconcile_and_cleanup("mia-rleg", false, "--force-iptables-binary=iptables-legacy")
}

#[test]
fn reconcile_and_cleanup_native_nftables() -> Result<()> {
    reconcile_and_cleanup("mia-rnat", true, "")
}

#[test]
fn validation_passes_with_capture_and_exits_126_without() -> Result<()> {
    for nft in [false, true] {
        let pod = ns(&format!("mia-val{}", u8::from(nft)))?;
        let extra: &[&'static str] = if nft { &["--native-nftables"] } else { &[] };
        ok(&pod, &with(extra))?;
        ok(&pod, &[with(extra), vec!["--skip-rule-apply", "--run-validation", "--probe-timeout=5s"]].concat())
            .with_context(|| format!("validation with rules (nft: {nft})"))?;
    }
    let bare = ns("mia-val-none")?;
    let out =
        mesh_init(&bare, &[with(&[]), vec!["--skip-rule-apply", "--run-validation", "--probe-timeout=1s"]].concat())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(126), "expected 126, got {:?}: {stderr}", out.status);
    ensure!(stderr.contains("127.0.0.6:15002") && stderr.contains("not redirected"), "{stderr}");
    Ok(())
}

/// With IPv6 rules programmed, `--run-validation` probes `[::6]` too: it passes when the IPv6
/// rules capture, names the missing `::6` address, and fails when only IPv4 is captured.
#[test]
fn validation_probes_ipv6_when_ipv6_rules_are_programmed() -> Result<()> {
    let validate = ["--skip-rule-apply", "--run-validation", "--probe-timeout=2s", "--dual-stack"];
    for nft in [false, true] {
        let pod = ns(&format!("mia-val6{}", u8::from(nft)))?;
        pod.exec_ok("ip", &["-6", "addr", "add", "fd00:77::2/128", "dev", "lo"])?;
        let extra: &[&'static str] = if nft { &["--native-nftables", "--dual-stack"] } else { &["--dual-stack"] };
        ok(&pod, &with(extra))?;
        let out = mesh_init(&pod, &[with(extra), validate.to_vec()].concat())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(126), "without ::6 (nft: {nft}): {:?}: {stderr}", out.status);
        ensure!(stderr.contains("ip -6 addr add ::6/128 dev lo"), "{stderr}");
        pod.exec_ok("ip", &["-6", "addr", "add", "::6/128", "dev", "lo"])?;
        ok(&pod, &[with(extra), validate.to_vec()].concat())
            .with_context(|| format!("IPv6 validation with rules (nft: {nft})"))?;
    }
    // IPv4 rules only: the IPv4 probe is captured, the IPv6 one is not.
    let pod = ns("mia-val6-v4only")?;
    // An IPv4 address first: without --dual-stack, mesh-init then programs IPv4 only.
    pod.exec_ok("ip", &["addr", "add", "10.77.0.2/32", "dev", "lo"])?;
    pod.exec_ok("ip", &["-6", "addr", "add", "fd00:77::2/128", "dev", "lo"])?;
    pod.exec_ok("ip", &["-6", "addr", "add", "::6/128", "dev", "lo"])?;
    ok(&pod, &with(&[]))?;
    let out = mesh_init(&pod, &[with(&[]), validate.to_vec()].concat())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(126), "expected 126, got {:?}: {stderr}", out.status);
    ensure!(stderr.contains("[::6]:15002") && stderr.contains("not redirected"), "{stderr}");
    Ok(())
}

#[test]
fn missing_capability_is_named() -> Result<()> {
    let pod = ns("mia-cap")?;
    let bin = netns::mesh_init_bin()?;
    let cmd = format!("{} -i '*' -b '*'", bin.display());
    let out = pod.exec("capsh", &["--drop=cap_net_admin,cap_net_raw", "--", "-c", &cmd])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{stderr}");
    ensure!(stderr.contains("NET_ADMIN") && stderr.contains("capabilities.add"), "{stderr}");
    ensure!(!netns::iptables_state(&pod)?.contains("ISTIO"), "rules applied without capabilities");
    Ok(())
}

#[test]
fn missing_binaries_are_named_with_the_package() -> Result<()> {
    let pod = ns("mia-bin")?;
    let bin = netns::mesh_init_bin()?;
    let bin = bin.to_str().context("binary path")?;
    for (extra, needle) in [
        (None, "install iptables in the image"),
        (Some("--native-nftables"), "nft not found: install nftables in the image"),
    ] {
        let mut args = vec!["PATH=/nonexistent", bin, "-i", "*"];
        args.extend(extra);
        let out = pod.exec("/usr/bin/env", &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(1) && stderr.contains(needle), "{extra:?}: {stderr}");
    }
    Ok(())
}
